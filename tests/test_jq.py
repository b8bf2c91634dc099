"""JQ handler programs and templates inside programs (JavaScript and JQ), end to end through the
engine against a real local server: the GWO in, one JSON value out, directives handled as a
JavaScript handler's, errors naming the file (and the line jq gives), the handler limits, and
secrets a program was given kept out of what it returns, logs and the record."""

from __future__ import annotations

import sys

import pytest
from conftest import Reply, run_path

import lamrunner.jq
from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.runner.engine import Engine
from lamrunner.runner.state import RunState


async def test_a_jq_directive_is_sent_and_its_response_reaches_the_next_program(api, wf):
    api.script("POST", "/jobs", Reply(json={"id": "j1", "status": "done"}))
    first = wf.handler(
        "submit.jq",
        '{"lam.httpRequest": {method: "POST", url: "<<config.api>>/jobs", body: {n: .input.n}}}',
    )
    second = wf.handler("read.jq", "{job: .step_1.response.id, sent: .input.n}")
    record = await run_path(wf.workflow([first, second], config={"api": api.url}), {"n": 3})
    assert record["status"] == "SUCCESS", record
    assert record["result"] == {"job": "j1", "sent": 3}
    assert [(s.method, s.path, s.body) for s in api.seen] == [("POST", "/jobs", b'{"n":3}')]


@pytest.mark.parametrize(
    ("program", "fragment"),
    [
        ("1, 2", "produced more than one value; collect them into an array"),
        ("repeat(.)", "produced more than one value"),
        ("empty", "produced no value"),
        ('.input + "x"', 'jq error: object ({}) and string ("x") cannot be added'),
        ("last(range(1e12))", "ran longer than its 0.5s time limit (limits.handlerTimeout)"),
        ("[range(1e9)] | length", "ran out of its 40 MB memory limit (or jq stopped"),
    ],
)
async def test_jq_failures_are_handler_errors_naming_the_file(wf, program, fragment):
    timeout = "30s" if "1e9" in program else "500ms"  # the memory cap, not the clock, stops it
    path = wf.workflow(
        [wf.handler("p.jq", program)], limits={"handlerTimeout": timeout, "handlerMemory": "40MB"}
    )
    record = await run_path(path, {})
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "HandlerError" and record["error"]["step"] == "step_1"
    assert record["error"]["message"].startswith(str(wf.root / "p.jq"))
    assert fragment in record["error"]["message"], record["error"]


def test_a_jq_syntax_error_is_refused_at_load_time_with_its_line(wf):
    path = wf.workflow([wf.handler("bad.jq", "# fine\n{a: 1,\n b: (.x | }\n")])
    with pytest.raises(DefinitionError) as info:
        load_workflow(path)
    assert f"{wf.root / 'bad.jq'}:3: jq: syntax error" in info.value.message
    assert "(line 3, column" in info.value.message


def test_without_the_jq_package_a_jq_handler_says_how_to_install_it(wf, monkeypatch):
    path = wf.workflow([wf.handler("p.jq", ".")])
    monkeypatch.setitem(sys.modules, "jq", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "lamrunner.jq.runtime", raising=False)
    monkeypatch.delattr(lamrunner.jq, "runtime", raising=False)
    with pytest.raises(DefinitionError) as info:
        load_workflow(path)
    assert "needs the jq package: pip install 'lamrunner[jq]'" in info.value.message


AUTH_JS = """
(data) => {
  if (data.input.apiKey !== "{{config.validApiKey}}") {
    return {"lam.response": {statusCode: 401, message: "bad key, not {{config.validApiKey}}"}};
  }
  return {"lam.httpRequest": {method: "GET", url: "{{config.api}}/ok",
          headers: {"X-Key": "{{config.validApiKey}}"}}};
}
"""


@pytest.mark.parametrize("language", ["js", "jq"])
async def test_a_program_compares_with_a_templated_secret_that_stays_hidden(
    api, wf, language, capsys
):
    api.script("GET", "/ok", Reply(json={"ok": True}))
    key = "k'ey\"`${x}\\(y)"  # quotes and interpolation syntax of both languages
    source = (
        AUTH_JS
        if language == "js"
        else (
            'if .input.apiKey != "{{config.validApiKey}}" then '
            '{"lam.response": {statusCode: 401, message: "bad key, not {{config.validApiKey}}"}} '
            'else {"lam.httpRequest": {method: "GET", url: "{{config.api}}/ok", '
            'headers: {"X-Key": "{{config.validApiKey}}"}}} end'
        )
    )
    path = wf.workflow(
        [wf.handler(f"auth.{language}", source)],
        config={"api": api.url, "validApiKey": key.replace("${", "$${")},  # $${: a literal ${
    )
    good = await run_path(path, {"apiKey": key})
    assert good["status"] == "SUCCESS" and good["result"] == {"ok": True}, good
    assert api.seen[0].headers["X-Key"] == key  # the wire has the value
    bad = await run_path(path, {"apiKey": "wrong"})
    assert bad["result"] == {"statusCode": 401, "message": "bad key, not ***"}
    assert key not in str(good) and key not in str(bad)  # the record has it masked
    workflow = load_workflow(path)
    state = RunState.start(workflow.name, {"apiKey": key})
    output = await Engine(workflow, {"api": api.url, "validApiKey": key}).call_handler(state)
    # what is saved (store, cloud checkpoint) has the template back, not the secret
    assert output["lam.httpRequest"]["headers"] == {"X-Key": "{{config.validApiKey}}"}
    assert key not in capsys.readouterr().err


def test_a_template_in_a_regex_literal_is_refused_at_load_time(wf):
    path = wf.workflow([wf.handler("re.js", "(d) => /{{config.x}}/.test(d.input.s)")])
    with pytest.raises(DefinitionError) as info:
        load_workflow(path)
    assert "{{config.x}} is inside a regular expression literal" in info.value.message
    assert "new RegExp" in info.value.message


async def test_program_templates_are_filled_per_run_from_that_runs_config(wf):
    path = wf.workflow(
        [
            wf.handler(
                "n.js", "(d) => ({n: {{config.n}}, s: 'n={{config.n}}', w: \"{{config.n}}\"})"
            )
        ],
        config={"n": 1},
    )
    one = await run_path(path, {})
    two = await run_path(path, {}, sets=("n=2",))
    assert one["result"] == {"n": 1, "s": "n=1", "w": 1}  # a whole literal keeps the type
    assert two["result"] == {"n": 2, "s": "n=2", "w": 2}


async def test_a_missing_program_template_key_names_the_file_and_line(wf):
    path = wf.workflow([wf.handler("m.js", "// x\n(d) => ({v: '{{config.nope}}'})")])
    record = await run_path(path, {})
    assert record["error"]["type"] == "TemplateError"
    assert (
        f"{wf.root / 'm.js'}:2: {{{{config.nope}}}} needs config key 'nope'"
        in (record["error"]["message"])
    )
