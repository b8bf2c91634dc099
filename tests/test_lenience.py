"""Laminar's lenience where its own examples rely on it: a `pathParams` entry that the url does
not use is a warning, not an error — from `validate` (read off the handler's literal request
objects) and at run time (once per field of a step) — and the request is sent without it."""

from __future__ import annotations

import asyncio

from conftest import Reply, WorkflowDir
from test_templated_fields import lamrunner

BATCH_JS = """
(data) => ({
  "lam.httpRequests": data.input.ids.map((id) => ({
    method: "GET",
    url: "{{config.api}}/users/{userId}",
    pathParams: { userId: id, region: "eu" },
  })),
})
"""

PYTHON = """
def transform(data):
    return {"lam.httpRequest": {
        "method": "GET",
        "url": "<<config.api>>/users/{{userId}}",
        "pathParams": {"userId": "u1", "page": 2},
    }}
"""

USED_JS = """
(data) => ({ "lam.httpRequest": {
  method: "GET", url: "{{config.api}}/users/{userId}", pathParams: { userId: "u1" } } })
"""


async def test_validate_warns_naming_file_line_step_and_key(tmp_path):
    wf = WorkflowDir(tmp_path)
    path = wf.workflow(
        [
            {"name": "fetch", "handler": wf.handler("batch.js", BATCH_JS)},
            {"name": "one", "handler": wf.handler("one.py", PYTHON)},
            {"name": "fine", "handler": wf.handler("used.js", USED_JS)},
        ],
        config={"api": "http://127.0.0.1:9"},
    )
    code, document, stderr = await lamrunner("validate", path, cwd=tmp_path)
    assert code == 0 and document["valid"] is True, document
    batch, one = document["warnings"]
    assert batch.startswith(f"{tmp_path / 'batch.js'}:5: step 'fetch': pathParams 'region'")
    assert "is not used in the url '{{config.api}}/users/{userId}' and is ignored" in batch
    assert one.startswith(f"{tmp_path / 'one.py'}:5: step 'one': pathParams 'page'")
    assert stderr.count("request.path_param_unused") == 2, stderr


async def test_run_sends_the_batch_and_warns_once(api, tmp_path):
    for user in ("u1", "u2", "u3"):
        api.script("GET", f"/users/{user}", Reply(json={"id": user}))
    wf = WorkflowDir(tmp_path)
    path = wf.workflow([wf.handler("batch.js", BATCH_JS)], config={"api": api.url})
    code, record, stderr = await lamrunner(
        "run", path, "--no-store", "--input", '{"ids": ["u1", "u2", "u3"]}', cwd=tmp_path
    )
    assert code == 0 and record["result"] == [{"id": "u1"}, {"id": "u2"}, {"id": "u3"}], record
    assert sorted(s.path for s in api.seen) == ["/users/u1", "/users/u2", "/users/u3"]
    assert all(s.query == [] for s in api.seen)  # the unused entry goes nowhere
    assert stderr.count("request.path_param_unused") == 1, stderr
    assert "lam.httpRequests[0].pathParams: 'region' is not used in the url" in stderr


async def test_a_used_path_param_warns_nowhere(api, tmp_path):
    api.script("GET", "/users/u1", Reply(json={"id": "u1"}))
    wf = WorkflowDir(tmp_path)
    path = wf.workflow([wf.handler("used.js", USED_JS)], config={"api": api.url})
    (code, record, stderr), (vcode, document, _) = await asyncio.gather(
        lamrunner("run", path, "--no-store", cwd=tmp_path),
        lamrunner("validate", path, cwd=tmp_path),
    )
    assert code == 0 and record["result"] == {"id": "u1"}, record
    assert "path_param_unused" not in stderr
    assert vcode == 0 and document["warnings"] == []
