"""render_request: from a validated request object and the config to what goes on the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lamrunner.definition.directives import parse_request
from lamrunner.errors import DefinitionError, TemplateError
from lamrunner.runner.rendering import render_request

CONFIG = {
    "base": "http://api.test",
    "token": "t0k3n",
    "jobId": "j 1",
    "page": 2,
    "payload": {"x": [1, 2]},
}


def rendered(config: dict[str, Any] | None = None, **request: Any):
    request.setdefault("method", "GET")
    spec = parse_request(request, "lam.httpRequest", None)
    return render_request(spec, CONFIG if config is None else config)


def header(req, name: str) -> str | None:
    return next((v for k, v in req.headers if k.lower() == name.lower()), None)


def test_plain_get():
    req = rendered(url="http://api.test/jobs")
    assert (req.method, req.url, req.body) == ("GET", "http://api.test/jobs", None)
    assert req.timeout == 30.0


@pytest.mark.parametrize(
    "url",
    ["http://api.test/jobs/{{id}}", "http://api.test/jobs/{id}", "http://api.test/jobs/{{ id }}"],
)
def test_path_params_both_spellings(url):
    assert rendered(url=url, pathParams={"id": 42}).url == "http://api.test/jobs/42"


def test_path_param_is_url_encoded():
    req = rendered(url="http://api.test/files/{name}", pathParams={"name": "a b/c"})
    assert req.url == "http://api.test/files/a%20b%2Fc"


def test_path_param_special_characters_are_encoded():
    req = rendered(url="http://api.test/q/{v}", pathParams={"v": "é?&#%"})
    assert req.url == "http://api.test/q/%C3%A9%3F%26%23%25"


def test_path_param_from_template():
    req = rendered(url="<<config.base>>/jobs/{{id}}", pathParams={"id": "<<config.jobId>>"})
    assert req.url == "http://api.test/jobs/j%201"


def test_same_path_param_twice():
    req = rendered(url="http://api.test/{id}/copy/{{id}}", pathParams={"id": "x"})
    assert req.url == "http://api.test/x/copy/x"


def test_missing_path_param_is_template_error():
    with pytest.raises(TemplateError) as info:
        rendered(url="http://api.test/jobs/{{jobId}}", pathParams={})
    assert "jobId" in str(info.value)


def test_unused_path_param_is_a_warning_and_the_request_is_still_made():
    """Laminar ignores a pathParams entry the url does not use (its batching example has one):
    a warning naming the field and the key, and the url without it."""
    spec = parse_request(
        {"method": "GET", "url": "http://api.test/jobs/{id}", "pathParams": {"id": 1, "page": 2}},
        "lam.httpRequest",
        None,
    )
    notes: list[str] = []
    req = render_request(spec, CONFIG, warnings=notes)
    assert req.url == "http://api.test/jobs/1"
    assert notes == [
        "lam.httpRequest.pathParams: 'page' is not used in the url and is ignored "
        "(write {{page}} or {page} where it belongs, or drop it)"
    ]
    assert rendered(url="http://api.test/jobs", pathParams={"id": 1}).url == "http://api.test/jobs"


def test_query_params_appended_in_order():
    req = rendered(url="http://api.test/s", queryParams={"z": 1, "a": "x y", "m": True})
    assert req.url == "http://api.test/s?z=1&a=x+y&m=true"


def test_query_list_value_repeats_the_key():
    req = rendered(url="http://api.test/s", queryParams={"tag": ["a", "b"], "n": 1})
    assert req.url == "http://api.test/s?tag=a&tag=b&n=1"


def test_existing_query_string_is_kept():
    req = rendered(url="http://api.test/s?fixed=1", queryParams={"page": "<<config.page>>"})
    assert req.url == "http://api.test/s?fixed=1&page=2"


def test_query_value_special_characters_are_encoded():
    req = rendered(url="http://api.test/s", queryParams={"q": "a&b=c#d"})
    assert req.url == "http://api.test/s?q=a%26b%3Dc%23d"


def test_json_body_and_content_type():
    req = rendered(
        method="POST",
        url="http://api.test/jobs",
        body={"id": "<<config.jobId>>", "data": "<<config.payload>>", "n": 1},
    )
    assert json.loads(req.body) == {"id": "j 1", "data": {"x": [1, 2]}, "n": 1}
    assert header(req, "Content-Type") == "application/json"


def test_list_body_is_json():
    req = rendered(method="POST", url="http://api.test/jobs", body=[1, "<<config.page>>"])
    assert json.loads(req.body) == [1, 2]


def test_explicit_content_type_is_not_replaced():
    req = rendered(
        method="POST",
        url="http://api.test/jobs",
        body={"a": 1},
        headers={"Content-Type": "application/vnd.api+json"},
    )
    assert [v for k, v in req.headers if k.lower() == "content-type"] == [
        "application/vnd.api+json"
    ]
    assert json.loads(req.body) == {"a": 1}


@pytest.mark.parametrize("name", ["Content-Type", "content-type"])
def test_form_body_when_content_type_says_so(name):
    req = rendered(
        method="POST",
        url="http://api.test/token",
        headers={name: "application/x-www-form-urlencoded"},
        body={
            "grant_type": "client_credentials",
            "scope": ["a b", "c"],
            "secret": "<<config.token>>",
        },
    )
    assert req.body == b"grant_type=client_credentials&scope=a+b&scope=c&secret=t0k3n"


def test_string_body_is_sent_as_is():
    req = rendered(
        method="POST",
        url="http://api.test/raw",
        body="<xml a='1'/>",
        headers={"Content-Type": "application/xml"},
    )
    assert req.body == b"<xml a='1'/>"
    assert header(req, "Content-Type") == "application/xml"


def test_string_body_with_template():
    req = rendered(method="POST", url="http://api.test/raw", body="id=<<config.jobId>>")
    assert req.body == b"id=j 1"


def test_headers_are_rendered():
    req = rendered(
        url="http://api.test/",
        headers={"Authorization": "Bearer <<config.token>>", "X-Page": "<<config.page>>"},
    )
    assert header(req, "Authorization") == "Bearer t0k3n"
    assert header(req, "X-Page") == "2"


def test_missing_template_in_header_names_key_and_field():
    with pytest.raises(TemplateError) as info:
        rendered(url="http://api.test/", headers={"Authorization": "Bearer <<config.apiKey>>"})
    assert "apiKey" in str(info.value)
    assert "headers.Authorization" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "<<config.nope>>/x"),
        ("queryParams", {"a": "<<config.nope>>"}),
        ("pathParams", {"id": "<<config.nope>>"}),
        ("body", {"a": ["<<config.nope>>"]}),
    ],
)
def test_missing_template_anywhere_names_the_field(field, value):
    request = {
        "url": "http://api.test/{id}" if field == "pathParams" else "http://api.test/",
        field: value,
    }
    with pytest.raises(TemplateError) as info:
        rendered(method="POST", **request)
    assert "nope" in str(info.value)
    assert f"lam.httpRequest.{field}" in str(info.value)


@pytest.mark.parametrize(
    "url", ["/jobs", "api.test/jobs", "ftp://api.test/x", "http://", "<<config.page>>"]
)
def test_non_absolute_url_is_definition_error(url):
    with pytest.raises((DefinitionError, TemplateError)) as info:
        rendered(url=url)
    assert "url" in str(info.value)


def test_relative_url_is_definition_error():
    with pytest.raises(DefinitionError):
        rendered(url="/jobs")


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\rb"])
def test_header_newline_injection_is_refused(value):
    with pytest.raises(DefinitionError):
        rendered(url="http://api.test/", headers={"X-Note": value})


def test_header_newline_from_config_is_refused():
    with pytest.raises(DefinitionError):
        rendered(
            {"v": "ok\r\nSet-Cookie: x"}, url="http://api.test/", headers={"X": "<<config.v>>"}
        )
