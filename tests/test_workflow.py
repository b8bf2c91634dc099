"""Loading workflow files: handler forms, limits, and every mistake named by file and field."""

from __future__ import annotations

import json

import pytest
from conftest import run_path

from lamrunner.definition.workflow import Limits, load_workflow
from lamrunner.errors import DefinitionError


def write(tmp_path, doc) -> str:
    path = tmp_path / "flow.yaml"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def error_of(tmp_path, doc, env=None) -> str:
    with pytest.raises(DefinitionError) as info:
        load_workflow(write(tmp_path, doc), env=env or {})
    return info.value.message


async def test_python_handler_forms(tmp_path, wf):
    wf.handler("plain.py", "def transform(data):\n    return 'file'\n")
    wf.handler("named.py", "def shout(data):\n    return 'func'\n")
    (tmp_path / "pkg_lamtest").mkdir()
    (tmp_path / "pkg_lamtest" / "__init__.py").write_text("")
    (tmp_path / "pkg_lamtest" / "mod.py").write_text("async def go(data):\n    return 'module'\n")
    path = wf.workflow(["plain.py", "named.py:shout", "pkg_lamtest.mod:go"])
    workflow = load_workflow(path, env={})
    assert [s.handler.language for s in workflow.steps] == ["python"] * 3
    assert workflow.steps[2].handler.is_async
    record = await run_path(path)
    assert [record["gwo"][f"step_{i}"]["data"] for i in (1, 2, 3)] == ["file", "func", "module"]


async def test_js_handler_forms(wf):
    wf.handler("arrow.js", "(data) => ({arrow: true});\n")
    wf.handler("func.js", "function transform(data) { return {func: true}; }\n")
    record = await run_path(wf.workflow(["arrow.js", "func.js"]))
    assert record["gwo"]["step_1"]["data"] == {"arrow": True}
    assert record["result"] == {"func": True}


def test_defaults_and_limits(tmp_path, wf):
    wf.py_step("a", "1")
    workflow = load_workflow(wf.workflow(["a.py"]), env={})
    assert workflow.limits == Limits()
    assert workflow.steps[0].name == "step_1" and workflow.steps[0].key == "step_1"
    path = wf.workflow(
        ["a.py"],
        limits={
            "handlerTimeout": "2s",
            "handlerMemory": "10MB",
            "conditionTimeout": 0.5,
            "concurrency": 3,
            "maxResponseBytes": 1024,
        },
    )
    limits = load_workflow(path, env={}).limits
    assert (
        limits.handler_timeout,
        limits.handler_memory,
        limits.condition_timeout,
        limits.concurrency,
        limits.max_response_bytes,
    ) == (2.0, 10_000_000, 0.5, 3, 1024)


def test_config_env_expansion(tmp_path, wf):
    wf.py_step("a", "1")
    path = wf.workflow(["a.py"], config={"url": "${BASE:-http://x}/v1", "key": "${KEY}"})
    workflow = load_workflow(path, env={"KEY": "k1"})
    assert workflow.config == {"url": "http://x/v1", "key": "k1"}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"steps": [{"handler": "a.py"}]}, "missing required key 'name'"),
        ({"name": "x"}, "missing required key 'steps'"),
        ({"name": "x", "steps": []}, "steps must be a non-empty list"),
        ({"name": "x", "step": []}, "did you mean 'steps'"),
        (
            {"name": "x", "steps": [{"handler": "a.py", "nmae": "s"}]},
            "steps[0]: unknown key 'nmae' (did you mean 'name'?)",
        ),
        ({"name": "x", "steps": [{"handler": "nope.py"}]}, "steps[0].handler: handler file"),
        (
            {"name": "x", "steps": [{"handler": "a.py"}], "limits": {"handlerTimeout": "5 secs"}},
            "limits.handlerTimeout: '5 secs' is not a duration",
        ),
        (
            {"name": "x", "steps": [{"handler": "a.py"}], "limits": {"concurency": 2}},
            "did you mean 'concurrency'",
        ),
        (
            {"name": "x", "steps": [{"handler": "a.py"}, {"handler": "a.py", "name": "step_1"}]},
            "already called 'step_1'",
        ),
        ({"name": "x", "steps": [{"handler": "a.txt"}]}, "is not a handler"),
        (
            {"name": "x", "config": {"k": "${MISSING}"}, "steps": [{"handler": "a.py"}]},
            "MISSING is not set",
        ),
    ],
)
def test_mistakes_name_the_file_and_field(tmp_path, doc, expected):
    (tmp_path / "a.py").write_text("def transform(data):\n    return 1\n")
    message = error_of(tmp_path, doc)
    assert str(tmp_path / "flow.yaml") in message
    assert expected in message


def test_python_handler_without_transform(tmp_path):
    (tmp_path / "h.py").write_text("def other(data):\n    return 1\n")
    assert "does not define transform(data)" in error_of(tmp_path, {"name": "x", "steps": ["h.py"]})


def test_python_handler_with_wrong_signature(tmp_path):
    (tmp_path / "h.py").write_text("def transform(a, b):\n    return 1\n")
    assert "exactly one argument" in error_of(tmp_path, {"name": "x", "steps": ["h.py"]})


def test_python_handler_that_fails_to_import(tmp_path):
    (tmp_path / "h.py").write_text("import json\nraise RuntimeError('no config')\n")
    message = error_of(tmp_path, {"name": "x", "steps": ["h.py"]})
    assert "h.py:2" in message and "RuntimeError: no config" in message


def test_js_handler_that_does_not_compile(tmp_path):
    (tmp_path / "h.js").write_text("(data) => {\n  return {a: };\n}\n")
    message = error_of(tmp_path, {"name": "x", "steps": ["h.js"]})
    assert "h.js" in message and "SyntaxError" in message and "line 2" in message


def test_js_file_that_is_not_a_function(tmp_path):
    (tmp_path / "h.js").write_text("42\n")
    assert "h.js" in error_of(tmp_path, {"name": "x", "steps": ["h.js"]})


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    message = error_of(tmp_path, "name: x\nsteps:\n  - handler: [a.py\n")
    assert "flow.yaml:" in message


def test_missing_module(tmp_path):
    message = error_of(tmp_path, {"name": "x", "steps": ["no_such_pkg_lam.mod:fn"]})
    assert "cannot import module 'no_such_pkg_lam.mod'" in message
