"""The public surface of `import lamrunner`: what it exports, what importing it costs, and
`lamrunner.run()` for Python callers."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import lamrunner

ROOT = Path(__file__).resolve().parent.parent

DOCUMENTED = [
    "__version__",
    "run",
    "arun",
    "load_workflow",
    "Engine",
    "RunState",
    "LamrunnerError",
    "DefinitionError",
    "TemplateError",
    "HandlerError",
    "HttpStatusError",
    "TransportError",
    "ConditionError",
    "PollingError",
    "PollingFailed",
    "PollingExhausted",
    "DeadlineExceeded",
    "UnexpectedResponse",
    "PollingStalled",
]
ERRORS = DOCUMENTED[6:]


def test_all_is_exactly_the_documented_surface() -> None:
    assert lamrunner.__all__ == DOCUMENTED
    assert sorted(dir(lamrunner)) == sorted(DOCUMENTED)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(lamrunner, name)
    assert value is not None
    namespace: dict[str, object] = {}
    exec(f"from lamrunner import {name}", namespace)  # noqa: S102 - the import users write
    assert namespace[name] is value


def test_public_names_have_the_documented_kinds() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert lamrunner.__version__ == pyproject["project"]["version"]
    assert callable(lamrunner.run) and not inspect.iscoroutinefunction(lamrunner.run)
    assert inspect.iscoroutinefunction(lamrunner.arun)
    assert callable(lamrunner.load_workflow)
    assert inspect.isclass(lamrunner.Engine) and inspect.isclass(lamrunner.RunState)
    for name in ERRORS:
        assert issubclass(getattr(lamrunner, name), lamrunner.LamrunnerError), name
    polling = ("PollingFailed", "PollingExhausted", "DeadlineExceeded")
    for name in (*polling, "UnexpectedResponse", "PollingStalled"):
        assert issubclass(getattr(lamrunner, name), lamrunner.PollingError), name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        lamrunner.no_such_thing  # noqa: B018


def test_import_lamrunner_stays_light() -> None:
    """`import lamrunner` (and reading the version or an error class) loads no heavy library."""
    code = textwrap.dedent("""
        import json, sys
        import lamrunner
        lamrunner.__version__
        from lamrunner import DefinitionError, PollingFailed
        heavy = ("aiohttp", "quickjs", "structlog")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def _simple_workflow(folder: Path) -> Path:
    (folder / "double.py").write_text(
        "def transform(data):\n    return {'doubled': data['input']['n'] * 2}\n", encoding="utf-8"
    )
    (folder / "finish.py").write_text(
        textwrap.dedent("""
        async def transform(data):
            return {"lam.exit": True, "data": {"answer": data["step_1"]["data"]["doubled"] + 1}}
    """),
        encoding="utf-8",
    )
    (folder / "never.py").write_text(
        "def transform(data):\n    raise AssertionError('after lam.exit')\n", encoding="utf-8"
    )
    path = folder / "simple.yaml"
    path.write_text(
        textwrap.dedent("""
        name: simple
        config:
          greeting: ${LAM_GREETING:-hi}
        steps:
          - name: double
            handler: double.py
          - name: finish
            handler: finish.py
          - name: never
            handler: never.py
    """),
        encoding="utf-8",
    )
    return path


def test_run_a_python_workflow_without_network(tmp_path: Path) -> None:
    record = lamrunner.run(_simple_workflow(tmp_path), {"n": 20})

    assert set(record) == {"runId", "workflow", "status", "result", "error", "gwo"}
    assert record["status"] == "SUCCESS", record["error"]
    assert record["workflow"] == "simple"
    assert record["error"] is None
    assert record["result"] == {"answer": 41}
    assert record["gwo"]["input"] == {"n": 20}
    assert record["gwo"]["step_1"] == {"data": {"doubled": 40}}
    assert "step_3" not in record["gwo"]
    json.dumps(record)  # the record is plain JSON


async def test_arun_takes_a_path_string_and_an_env(tmp_path: Path) -> None:
    record = await lamrunner.arun(str(_simple_workflow(tmp_path)), {"n": 1}, env={})
    assert record["status"] == "SUCCESS"
    assert record["result"] == {"answer": 3}


def test_run_raises_definition_error_for_a_broken_workflow(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nsteps:\n  - handler: missing.py\n", encoding="utf-8")
    with pytest.raises(lamrunner.DefinitionError, match=r"missing\.py"):
        lamrunner.run(path, {})
