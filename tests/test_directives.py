"""parse_directive / parse_request: what a handler's return value asks the runner to do."""

from __future__ import annotations

import pytest

from lamrunner.definition.directives import (
    ExitDirective,
    HttpDirective,
    PlainData,
    ResponseDirective,
    parse_directive,
    parse_request,
)
from lamrunner.errors import ConditionError, DefinitionError

GET = {"method": "GET", "url": "http://api.test/x"}


@pytest.mark.parametrize("value", [None, 1, "text", [1, 2], [{"lam.exit": True}], True])
def test_non_mapping_is_plain_data(value):
    assert parse_directive(value) == PlainData(value)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"a": 1},
        {"lam": 1, "lamb.exit": True, "exit": True},
        {"nested": {"lam.exit": True}},
        {1: "x"},
    ],
)
def test_mapping_without_lam_keys_is_plain_data(value):
    assert parse_directive(value) == PlainData(value)


def test_http_request():
    directive = parse_directive({"lam.httpRequest": GET})
    assert isinstance(directive, HttpDirective)
    assert directive.batch is False
    [spec] = directive.requests
    assert (spec.method, spec.url) == ("GET", "http://api.test/x")


def test_http_requests_keeps_order():
    items = [dict(GET, url=f"http://api.test/{i}") for i in range(3)]
    directive = parse_directive({"lam.httpRequests": items})
    assert directive.batch is True
    assert [s.url for s in directive.requests] == [f"http://api.test/{i}" for i in range(3)]
    assert [s.where for s in directive.requests] == [f"lam.httpRequests[{i}]" for i in range(3)]


@pytest.mark.parametrize("items", [[], {}, GET, None, "x"])
def test_http_requests_needs_a_non_empty_list(items):
    with pytest.raises(DefinitionError, match=r"lam\.httpRequests"):
        parse_directive({"lam.httpRequests": items})


def test_bad_element_of_a_batch_is_named():
    items = [GET, GET, {"method": "GET"}]
    with pytest.raises(DefinitionError, match=r"lam\.httpRequests\[2\]") as info:
        parse_directive({"lam.httpRequests": items})
    assert "url" in str(info.value)


def test_exit_true_with_data():
    assert parse_directive({"lam.exit": True, "data": {"done": 1}}) == ExitDirective({"done": 1})


def test_exit_true_without_data():
    assert parse_directive({"lam.exit": True}) == ExitDirective(None)


def test_exit_false_is_plain_data():
    assert isinstance(parse_directive({"lam.exit": False, "data": 5}), PlainData)


@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_exit_needs_a_boolean(flag):
    with pytest.raises(DefinitionError, match=r"lam\.exit"):
        parse_directive({"lam.exit": flag})


def test_response_directive():
    value = {"statusCode": 404, "message": "not found", "data": {"id": 1}, "error": "E1"}
    assert parse_directive({"lam.response": value}) == ResponseDirective(value)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"message": "m"}, "statusCode"),
        ({"statusCode": 200}, "message"),
        ({"statusCode": 700, "message": "m"}, "statusCode"),
        ({"statusCode": "200", "message": "m"}, "statusCode"),
        ({"statusCode": True, "message": "m"}, "statusCode"),
        ({"statusCode": 200, "message": 5}, "message"),
        ({"statusCode": 200, "message": "m", "extra": 1}, "extra"),
        ("ok", "lam.response"),
    ],
)
def test_response_directive_validation(value, field):
    with pytest.raises(DefinitionError, match=field):
        parse_directive({"lam.response": value})


def test_response_typo_suggests_the_field():
    with pytest.raises(DefinitionError, match="did you mean 'message'"):
        parse_directive({"lam.response": {"statusCode": 200, "mesage": "m"}})


@pytest.mark.parametrize(
    ("key", "closest"),
    [
        ("lam.httpRequestz", "lam.httpRequest"),
        ("lam.httprequests", "lam.httpRequests"),
        ("lam.exti", "lam.exit"),
        ("lam.respons", "lam.response"),
    ],
)
def test_unknown_directive_names_it_and_the_closest_known_key(key, closest):
    with pytest.raises(DefinitionError) as info:
        parse_directive({key: GET})
    message = str(info.value)
    assert repr(key) in message
    assert f"did you mean {closest!r}" in message


def test_two_directives_together_is_an_error():
    with pytest.raises(DefinitionError) as info:
        parse_directive({"lam.httpRequest": GET, "lam.exit": True})
    assert "lam.httpRequest" in str(info.value) and "lam.exit" in str(info.value)


# --- request objects ------------------------------------------------------------------------


def test_request_defaults():
    spec = parse_request(GET, "lam.httpRequest", None)
    assert spec.timeout == 30.0
    assert spec.fail_on_http_error is True
    assert spec.retry is None and spec.loop is None
    assert (
        dict(spec.headers) == {} and dict(spec.query_params) == {} and dict(spec.path_params) == {}
    )
    assert spec.has_body is False


def test_request_fields():
    spec = parse_request(
        {
            "method": "post",
            "url": "http://api.test/{id}",
            "pathParams": {"id": 1},
            "queryParams": {"a": 1},
            "headers": {"X": "y"},
            "body": {"b": 2},
            "timeout": "5s",
            "failOnHttpError": False,
            "retry": {"maxAttempts": 3},
            "loopUntil": {"condition": "ctx.status === 200"},
        },
        "lam.httpRequest",
        None,
    )
    assert spec.method == "POST"
    assert spec.timeout == 5.0
    assert spec.fail_on_http_error is False
    assert spec.has_body and spec.body == {"b": 2}
    assert spec.retry.max_attempts == 3
    assert spec.loop.condition == "ctx.status === 200"


def test_explicit_null_body_is_a_body():
    assert parse_request(dict(GET, body=None), "r", None).has_body is True


@pytest.mark.parametrize("missing", ["method", "url"])
def test_method_and_url_are_required(missing):
    data = dict(GET)
    del data[missing]
    with pytest.raises(DefinitionError, match=missing):
        parse_directive({"lam.httpRequest": data})


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_every_documented_method_is_accepted(method):
    assert parse_request(dict(GET, method=method), "r", None).method == method


def test_bad_method_suggests_the_closest():
    with pytest.raises(DefinitionError) as info:
        parse_request(dict(GET, method="GTE"), "lam.httpRequest", None)
    assert "lam.httpRequest.method" in str(info.value)
    assert "did you mean 'GET'" in str(info.value)


@pytest.mark.parametrize("method", ["FETCH", "", 5, None])
def test_unknown_method_is_an_error(method):
    with pytest.raises(DefinitionError, match="method"):
        parse_request(dict(GET, method=method), "lam.httpRequest", None)


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("loopUnitl", "loopUntil"),
        ("header", "headers"),
        ("queryParam", "queryParams"),
        ("failOnHTTPError", "failOnHttpError"),
    ],
)
def test_unknown_request_key_suggests_the_known_one(typo, suggestion):
    with pytest.raises(DefinitionError) as info:
        parse_directive({"lam.httpRequest": dict(GET, **{typo: {}})})
    assert repr(typo) in str(info.value)
    assert f"did you mean {suggestion!r}" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", "soon"),
        ("timeout", -1),
        ("failOnHttpError", "no"),
        ("headers", "x"),
        ("queryParams", [1]),
        ("pathParams", "id"),
        ("url", ""),
        ("retry", {}),
        ("loopUntil", {"maxAttempts": 2}),
    ],
)
def test_bad_request_field_names_it(field, value):
    with pytest.raises(DefinitionError) as info:
        parse_request(dict(GET, **{field: value}), "lam.httpRequest", None)
    assert f"lam.httpRequest.{field}" in str(info.value)


def test_check_condition_is_called_for_condition_and_fail_when():
    calls = []
    loop = {"condition": "ctx.status === 200", "failWhen": "ctx.status >= 500"}
    parse_directive(
        {"lam.httpRequest": dict(GET, loopUntil=loop)},
        lambda source, where: calls.append((source, where)),
    )
    assert calls == [
        ("ctx.status === 200", "lam.httpRequest.loopUntil.condition"),
        ("ctx.status >= 500", "lam.httpRequest.loopUntil.failWhen"),
    ]


def test_check_condition_gets_batch_paths():
    calls = []
    items = [GET, dict(GET, loopUntil={"condition": "c"})]
    parse_directive({"lam.httpRequests": items}, lambda s, w: calls.append(w))
    assert calls == ["lam.httpRequests[1].loopUntil.condition"]


def test_check_condition_not_called_without_loop_until():
    calls = []
    parse_directive({"lam.httpRequest": GET}, lambda s, w: calls.append(w))
    assert calls == []


def test_check_condition_error_propagates():
    def reject(source: str, where: str) -> None:
        raise ConditionError(f"{where}: syntax error")

    with pytest.raises(ConditionError, match=r"loopUntil\.condition"):
        parse_directive({"lam.httpRequest": dict(GET, loopUntil={"condition": "ctx.("})}, reject)
