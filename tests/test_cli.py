"""The `lamrunner` command as a user runs it: real subprocesses against real local servers.

Every test starts `python -m lamrunner ...` and looks only at what a user sees: the exit status,
stdout (exactly one JSON document) and stderr (the logs). Servers the subprocesses talk to are
`samples/jobapi.py` started as a subprocess, and a small echo API served from a background
thread (the event loop of an async test would stall behind a blocking `subprocess.run`).

A lamrunner subprocess costs about half a second, so groups of independent invocations are
started together (`run_many`) and then checked one by one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import tomllib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import lamrunner

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TIMEOUT = 30
TRACEBACK = "Traceback (most recent call last)"
RECORD_KEYS = {"runId", "workflow", "status", "result", "error", "gwo"}
SECRET = "s3cr3t-token-value"

# Variables the samples and these tests read: never inherited from the developer's shell.
_SCRUB = (
    "JOBAPI_URL",
    "PROCESSOR_API_KEY",
    "JOBAPI_API_KEY",
    "ECHO_URL",
    "LAM_TEST_VALUE",
    "LAM_TEST_FILE_VAR",
    "LAM_TEST_GREETING",
    "LAM_TEST_MISSING",
)


# -- running the command ----------------------------------------------------------------------


@dataclass
class Invocation:
    args: list[Any]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None


@dataclass
class Result:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    def doc(self) -> dict[str, Any]:
        """stdout parsed as ONE JSON document (json.loads of the whole text)."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"stdout is not exactly one JSON document ({exc}):\n{self.stdout}\n"
                f"--- stderr ---\n{self.stderr}"
            ) from None

    def __str__(self) -> str:  # what a failing assert shows
        return (
            f"lamrunner {' '.join(self.args)} -> exit {self.code}\n--- stdout ---\n"
            f"{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONWARNINGS", None)
    return {**env, **extra}


def run_one(inv: Invocation) -> Result:
    args = [str(a) for a in inv.args]
    proc = subprocess.run(
        [sys.executable, "-m", "lamrunner", *args],
        cwd=inv.cwd,
        env=_env(inv.env),
        input=inv.stdin if inv.stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        encoding="utf-8",
    )
    return Result(args, proc.returncode, proc.stdout, proc.stderr)


def cli(
    *args: Any, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None
) -> Result:
    return run_one(Invocation(list(args), cwd, env or {}, stdin))


def run_many(invocations: dict[str, Invocation]) -> dict[str, Result]:
    """Start independent invocations side by side; results by name."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(run_one, inv) for name, inv in invocations.items()}
        return {name: future.result() for name, future in futures.items()}


def assert_record(result: Result) -> dict[str, Any]:
    record = result.doc()
    assert isinstance(record, dict) and set(record) == RECORD_KEYS, result
    return record


def assert_no_traceback(result: Result) -> None:
    assert TRACEBACK not in result.stderr, result
    assert TRACEBACK not in result.stdout, result


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def workflow(folder: Path, doc: dict[str, Any], name: str = "workflow.yaml") -> Path:
    """A workflow file (JSON is YAML) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def request_handler(folder: Path, name: str, request: dict[str, Any]) -> str:
    """A Python handler returning one lam.httpRequest."""
    literal = json.dumps({"lam.httpRequest": request})
    source = f"import json\n\ndef transform(data):\n    return json.loads({literal!r})\n"
    write(folder / name, source)
    return name


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line of `text` as JSON (fails naming the first line that is not)."""
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}\n--- stderr ---\n{text}") from None
    return events


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- servers ----------------------------------------------------------------------------------


async def _echo(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": list(request.query.items()),
            "headers": dict(request.headers),
            "json": body,
        }
    )


async def _fail_echo_escaped(request: web.Request) -> web.Response:
    """A 500 whose JSON body echoes the token with `/` escaped as `\\/`, as PHP's json_encode
    (and other encoders) write it: the same token, in its JSON spelling."""
    token = request.headers.get("Authorization", "").partition(" ")[2]
    escaped = json.dumps(token).replace("/", "\\/")
    return web.Response(
        status=500,
        content_type="application/json",
        text=f'{{"error": "token rejected", "token": {escaped}}}',
    )


async def _fail_echo(request: web.Request) -> web.Response:
    """A 500 whose body (and a header) echo the credentials the client sent."""
    auth = request.headers.get("Authorization", "")
    token = auth.partition(" ")[2]
    return web.json_response(
        {
            "error": f"token {token} rejected",
            "authorization": auth,
            "apiKey": request.headers.get("X-API-Key"),
            "hint": f"check {token!r}",
        },
        status=500,
        headers={"X-Echo-Token": token},
    )


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """An aiohttp server on 127.0.0.1 in a background thread: /echo and /fail-echo."""
    app = web.Application()
    app.router.add_route("*", "/fail-echo", _fail_echo)
    app.router.add_route("*", "/fail-echo-escaped", _fail_echo_escaped)
    app.router.add_route("*", "/{tail:.*}", _echo)

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["runner"] = runner
        state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        finally:
            ready.set()
        loop.run_forever()
        loop.run_until_complete(state["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="echo-api", daemon=True)
    thread.start()
    assert ready.wait(15) and "url" in state, "the echo API did not start"
    yield state["url"]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(15)


@pytest.fixture(scope="module")
def jobapi_url() -> Iterator[str]:
    """samples/jobapi.py as a subprocess on a free port, with fast job phases."""
    server = subprocess.Popen(
        [
            sys.executable,
            str(SAMPLES / "jobapi.py"),
            "--port",
            "0",
            "--quiet",
            "--phase-seconds",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_env({}),
    )
    lines: list[str] = []
    assert server.stdout is not None
    stdout = server.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(15)
    try:
        line = lines[0].strip() if lines else ""
        assert line.startswith("jobapi listening on http://127.0.0.1:"), line
        yield line.rsplit(" ", 1)[1]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        stdout.close()


# -- --version --------------------------------------------------------------------------------


def test_version_prints_the_version_and_exits_0() -> None:
    result = cli("--version")
    assert result.code == 0, result
    assert result.stdout.strip() == f"lamrunner {lamrunner.__version__}", result
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert lamrunner.__version__ == pyproject["project"]["version"]


# -- a real run against samples/jobapi.py -----------------------------------------------------


def test_run_succeeds_with_exactly_one_json_document_on_stdout(
    jobapi_url: str, tmp_path: Path
) -> None:
    dataset = f"cli-{uuid.uuid4().hex[:8]}"  # a fresh job on the shared server
    result = cli(
        "run",
        SAMPLES / "process-dataset.yaml",
        "--input",
        json.dumps({"datasetId": dataset}),
        cwd=tmp_path,
        env={"JOBAPI_URL": jobapi_url},
    )

    assert result.code == 0, result
    record = assert_record(result)
    assert record["status"] == "SUCCESS"
    assert record["error"] is None
    assert record["workflow"] == "process-dataset"
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", record["runId"]), record["runId"]
    gwo = record["gwo"]
    assert gwo["input"] == {"datasetId": dataset}
    assert gwo["step_1"]["response"]["status"] == "completed"
    assert gwo["step_1"]["http"]["status"] == 200
    assert gwo["step_1"]["http"]["attempts"] >= 2  # it polled
    # the result is the last step's data
    assert record["result"] == gwo["step_2"]["data"]
    assert record["result"]["datasetId"] == dataset
    assert record["result"]["status"] == "completed"
    assert record["result"]["location"].endswith(f"{dataset}.parquet")
    # the poll's progress is in the log (stderr is not a terminal: JSON lines)
    polls = [e for e in json_lines(result.stderr) if e.get("event") == "poll.attempt"]
    assert polls, result
    assert {"attempt", "status", "next_in"} <= set(polls[0]), polls[0]
    assert_no_traceback(result)


def test_failing_run_exits_1_with_the_error_and_its_step(tmp_path: Path) -> None:
    write(tmp_path / "first.py", "def transform(data):\n    return {'ok': True}\n")
    write(
        tmp_path / "explode.py",
        """
        def transform(data):
            raise RuntimeError("the dataset is empty")
    """,
    )
    path = workflow(
        tmp_path,
        {
            "name": "fails",
            "steps": [
                {"name": "prepare", "handler": "first.py"},
                {"name": "explode", "handler": "explode.py"},
            ],
        },
    )
    result = cli("run", path, "--output", "failed.json", cwd=tmp_path)

    assert result.code == 1, result
    record = assert_record(result)
    assert json.loads((tmp_path / "failed.json").read_text(encoding="utf-8")) == record
    assert record["status"] == "FAILED"
    assert record["workflow"] == "fails"
    assert record["result"] is None
    assert set(record["error"]) == {"type", "message", "step"}
    assert record["error"]["type"] == "HandlerError"
    assert record["error"]["step"] == "explode"
    assert "the dataset is empty" in record["error"]["message"]
    assert re.search(r"explode\.py:2\b", record["error"]["message"]), record  # its location
    assert record["gwo"]["step_1"] == {"data": {"ok": True}}
    assert "step_2" not in record["gwo"]
    assert_no_traceback(result)


# -- invalid workflows: exit 2, file and field named ------------------------------------------

HELLO_PY = "def transform(data):\n    return {'hello': 'world'}\n"

# case -> (workflow YAML text, extra files, fragments the message must contain)
INVALID: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "missing-name": (
        "steps:\n  - handler: hello.py\n",
        {"hello.py": HELLO_PY},
        ["name"],
    ),
    "unknown-key-with-suggestion": (
        "name: typo\ndescripton: oops\nsteps:\n  - handler: hello.py\n",
        {"hello.py": HELLO_PY},
        ["descripton", "description"],
    ),
    "handler-file-missing": (
        "name: nohandler\nsteps:\n  - name: first\n    handler: missing_handler.py\n",
        {},
        ["handler", "missing_handler.py"],
    ),
    "python-handler-without-transform": (
        "name: notransform\nsteps:\n  - handler: nofunc.py\n",
        {"nofunc.py": "def other(data):\n    return data\n"},
        ["handler", "nofunc.py", "transform"],
    ),
    "js-syntax-error": (
        "name: badjs\nsteps:\n  - handler: broken.js\n",
        {"broken.js": "(data) => { return {a: 1 ;\n"},
        ["handler", "broken.js", "SyntaxError"],
    ),
    "bad-duration-in-limits": (
        "name: baddur\nlimits:\n  handlerTimeout: 5 parsecs\nsteps:\n  - handler: hello.py\n",
        {"hello.py": HELLO_PY},
        ["limits", "handlerTimeout", "5 parsecs"],
    ),
    "duplicate-key": (
        "name: first\nsteps:\n  - handler: hello.py\nname: second\n",
        {"hello.py": HELLO_PY},
        ["name"],
    ),
    "yaml-syntax-error": (
        "name: badyaml\nsteps: [{handler: hello.py}\n  config: [\n",
        {"hello.py": HELLO_PY},
        [],
    ),
}


@pytest.fixture(scope="module")
def invalid_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """`run` and `validate` of every broken workflow, started side by side."""
    invocations = {}
    for case, (text, files, _) in INVALID.items():
        folder = tmp_path_factory.mktemp(case)
        for name, source in files.items():
            write(folder / name, source)
        path = folder / f"flow-{case}.yaml"
        path.write_text(text, encoding="utf-8")
        invocations[f"run:{case}"] = Invocation(["run", path], cwd=folder)
        invocations[f"validate:{case}"] = Invocation(["validate", path], cwd=folder)
    return run_many(invocations)


def _assert_names_file_and_field(text: str, case: str, fragments: list[str]) -> None:
    assert f"flow-{case}.yaml" in text, text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    if case == "unknown-key-with-suggestion":
        assert re.search(r"did you mean\W+description", text, re.IGNORECASE), text
    if case in ("yaml-syntax-error", "duplicate-key"):  # where in the file
        assert re.search(rf"flow-{case}\.yaml:\d+|line \d+", text), text


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_workflow_exits_2_naming_file_and_field(
    invalid_runs: dict[str, Result], case: str
) -> None:
    result = invalid_runs[f"run:{case}"]
    assert result.code == 2, result
    record = assert_record(result)
    assert record["runId"] is None
    assert record["status"] == "FAILED"
    assert record["gwo"] is None and record["result"] is None
    assert record["error"]["type"] == "DefinitionError"
    assert record["error"]["step"] is None
    fragments = INVALID[case][2]
    _assert_names_file_and_field(record["error"]["message"], case, fragments)
    _assert_names_file_and_field(result.stderr, case, fragments)
    assert_no_traceback(result)


@pytest.mark.parametrize("case", list(INVALID))
def test_validate_rejects_broken_workflow_with_exit_2(
    invalid_runs: dict[str, Result], case: str
) -> None:
    result = invalid_runs[f"validate:{case}"]
    assert result.code == 2, result
    doc = result.doc()
    assert doc["valid"] is False, result
    assert doc["error"]["type"] == "DefinitionError"
    _assert_names_file_and_field(doc["error"]["message"], case, INVALID[case][2])
    _assert_names_file_and_field(result.stderr, case, INVALID[case][2])
    assert_no_traceback(result)


# -- validate ---------------------------------------------------------------------------------

SAMPLE_WORKFLOWS = sorted(p.name for p in SAMPLES.glob("*.yaml"))


@pytest.fixture(scope="module")
def sample_validations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    cwd = tmp_path_factory.mktemp("validate")  # any directory: handler paths are file-relative
    return run_many(
        {name: Invocation(["validate", SAMPLES / name], cwd=cwd) for name in SAMPLE_WORKFLOWS}
    )


def test_there_are_samples_to_validate() -> None:
    assert {"process-dataset.yaml", "job-lifecycle.yaml", "batch.yaml"} <= set(SAMPLE_WORKFLOWS)


@pytest.mark.parametrize("name", SAMPLE_WORKFLOWS)
def test_validate_accepts_every_sample(sample_validations: dict[str, Result], name: str) -> None:
    result = sample_validations[name]
    assert result.code == 0, result
    doc = result.doc()
    assert doc["valid"] is True, result
    assert doc["workflow"] == name.removesuffix(".yaml")
    assert doc["steps"] and all({"name", "handler", "language"} <= set(s) for s in doc["steps"])
    assert_no_traceback(result)


def test_validate_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    write(
        tmp_path / "side_effect.py",
        f"""
        from pathlib import Path

        def transform(data):
            Path({str(marker)!r}).write_text("ran")
            return {{}}
    """,
    )
    write(tmp_path / "throws.js", "(data) => { throw new Error('called at run time only'); }\n")
    path = workflow(tmp_path, {"name": "quiet", "steps": ["side_effect.py", "throws.js"]})
    result = cli("validate", path, cwd=tmp_path)
    assert result.code == 0, result
    assert result.doc()["valid"] is True
    assert [s["language"] for s in result.doc()["steps"]] == ["python", "javascript"]
    assert not marker.exists()


# -- --input ----------------------------------------------------------------------------------

INPUT = {"datasetId": "ds-ünï", "ids": [1, 2.5, None], "nested": {"ok": True}}


@pytest.fixture(scope="module")
def input_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    folder = tmp_path_factory.mktemp("input")
    write(folder / "echo_input.py", "def transform(data):\n    return data['input']\n")
    path = workflow(folder, {"name": "echo-input", "steps": ["echo_input.py"]})
    (folder / "input.json").write_text(json.dumps(INPUT, ensure_ascii=False), encoding="utf-8")
    (folder / "broken.json").write_text('{"datasetId": ', encoding="utf-8")
    text = json.dumps(INPUT)
    return run_many(
        {
            "json-text": Invocation(["run", path, "--input", text], cwd=folder),
            "at-file": Invocation(["run", path, "--input", "@input.json"], cwd=folder),
            "stdin": Invocation(["run", path, "--input", "-"], cwd=folder, stdin=text),
            "none": Invocation(["run", path], cwd=folder),
            "invalid-json-text": Invocation(
                ["run", path, "--input", "{'single': quotes}"], cwd=folder
            ),
            "invalid-json-file": Invocation(["run", path, "--input", "@broken.json"], cwd=folder),
            "invalid-json-stdin": Invocation(
                ["run", path, "--input", "-"], cwd=folder, stdin="not json"
            ),
            "missing-file": Invocation(["run", path, "--input", "@nowhere.json"], cwd=folder),
        }
    )


@pytest.mark.parametrize("form", ["json-text", "at-file", "stdin"])
def test_input_reaches_the_gwo(input_runs: dict[str, Result], form: str) -> None:
    result = input_runs[form]
    assert result.code == 0, result
    record = assert_record(result)
    assert record["gwo"]["input"] == INPUT
    assert record["result"] == INPUT


def test_no_input_is_an_empty_object(input_runs: dict[str, Result]) -> None:
    result = input_runs["none"]
    assert result.code == 0, result
    assert assert_record(result)["gwo"]["input"] == {}


@pytest.mark.parametrize(
    "form", ["invalid-json-text", "invalid-json-file", "invalid-json-stdin", "missing-file"]
)
def test_bad_input_exits_2_with_definition_error(input_runs: dict[str, Result], form: str) -> None:
    result = input_runs[form]
    assert result.code == 2, result
    record = assert_record(result)
    assert record["runId"] is None and record["status"] == "FAILED"
    assert record["error"]["type"] == "DefinitionError"
    assert "--input" in record["error"]["message"]
    assert "--input" in result.stderr
    assert "step.start" not in result.stderr  # nothing ran
    assert_no_traceback(result)


# -- config: --set, --config, ${VAR} ----------------------------------------------------------


def test_set_values_are_typed_when_they_reach_a_template(echo_url: str, tmp_path: Path) -> None:
    handler = request_handler(
        tmp_path,
        "post.py",
        {
            "method": "POST",
            "url": "<<config.url>>/echo",
            "body": {
                "n": "<<config.n>>",
                "flag": "<<config.flag>>",
                "name": "<<config.name>>",
                "obj": "<<config.obj>>",
                "nested": "<<config.a.b>>",
                "text": "id-<<config.n>>",
                "nothing": "<<config.nothing>>",
                "quoted": "<<config.quoted>>",
            },
        },
    )
    path = workflow(
        tmp_path, {"name": "typed", "config": {"url": echo_url, "n": 1}, "steps": [handler]}
    )
    result = cli(
        "run",
        path,
        "--set",
        "n=5",
        "--set",
        "flag=true",
        "--set",
        "name=ds-42",
        "--set",
        'obj={"k": [1, 2]}',
        "--set",
        "a.b=1.5",
        "--set",
        "nothing=null",
        "--set",
        'quoted="7"',
        cwd=tmp_path,
    )
    assert result.code == 0, result
    sent = assert_record(result)["result"]["json"]
    assert sent == {
        "n": 5,
        "flag": True,
        "name": "ds-42",
        "obj": {"k": [1, 2]},
        "nested": 1.5,
        "text": "id-5",
        "nothing": None,
        "quoted": "7",
    }


def test_config_files_layer_in_order_and_expand_the_environment(
    echo_url: str, tmp_path: Path
) -> None:
    handler = request_handler(
        tmp_path,
        "post.py",
        {
            "method": "POST",
            "url": "<<config.url>>/echo",
            "body": {
                key: f"<<config.{key}>>"
                for key in (
                    "layer",
                    "order",
                    "keep",
                    "nested",
                    "greeting",
                    "fromEnv",
                    "fromFile",
                    "list",
                )
            },
        },
    )
    path = workflow(
        tmp_path,
        {
            "name": "layers",
            "steps": [handler],
            "config": {
                "url": "${ECHO_URL}",
                "layer": "workflow",
                "order": "workflow",
                "keep": "from-workflow",
                "nested": {"a": 1, "b": 1, "deep": {"x": 1, "y": 1}},
                "greeting": "${LAM_TEST_GREETING:-hello}",
                "fromEnv": "value=${LAM_TEST_VALUE}",
                "list": [1, 2, 3],
            },
        },
    )
    write(
        tmp_path / "one.yaml",
        """
        layer: one
        order: one
        nested:
          b: 2
          c: 2
          deep: {y: 2}
        fromFile: ${LAM_TEST_FILE_VAR:-file-default}
        list: [9]
    """,
    )
    (tmp_path / "two.json").write_text(
        json.dumps({"order": "two", "nested": {"c": 3, "deep": {"z": 3}}}), encoding="utf-8"
    )
    result = cli(
        "run",
        path,
        "--config",
        "one.yaml",
        "--config",
        "two.json",
        "--set",
        "layer=set",
        cwd=tmp_path,
        env={"ECHO_URL": echo_url, "LAM_TEST_VALUE": "from-env", "LAM_TEST_FILE_VAR": "file-env"},
    )
    assert result.code == 0, result
    assert assert_record(result)["result"]["json"] == {
        "layer": "set",  # --set wins over every file
        "order": "two",  # the later --config wins
        "keep": "from-workflow",
        "nested": {"a": 1, "b": 2, "c": 3, "deep": {"x": 1, "y": 2, "z": 3}},  # deep-merged
        "greeting": "hello",  # ${VAR:-default} with VAR unset
        "fromEnv": "value=from-env",  # ${VAR} inside a longer string
        "fromFile": "file-env",  # ${VAR:-default} with VAR set, in a config file
        "list": [9],  # lists replace
    }


@pytest.mark.parametrize("where", ["workflow-config", "config-file"])
def test_missing_environment_variable_exits_2(tmp_path: Path, where: str) -> None:
    write(tmp_path / "hello.py", HELLO_PY)
    config = {"url": "${LAM_TEST_MISSING}"} if where == "workflow-config" else {}
    path = workflow(tmp_path, {"name": "env", "config": config, "steps": ["hello.py"]})
    write(tmp_path / "extra.yaml", "token: ${LAM_TEST_MISSING}\n")
    extra = ["--config", "extra.yaml"] if where == "config-file" else []
    result = cli("run", path, *extra, cwd=tmp_path)
    assert result.code == 2, result
    record = assert_record(result)
    assert record["error"]["type"] == "DefinitionError"
    assert "LAM_TEST_MISSING" in record["error"]["message"]
    assert "LAM_TEST_MISSING" in result.stderr
    assert ("url" if where == "workflow-config" else "extra.yaml") in record["error"]["message"]
    assert "step.start" not in result.stderr
    assert_no_traceback(result)


# -- --output ---------------------------------------------------------------------------------


def test_output_file_holds_the_same_record(tmp_path: Path) -> None:
    """(The failing run's --output is checked in test_failing_run_exits_1_...)"""
    write(tmp_path / "hello.py", HELLO_PY)
    good = workflow(tmp_path, {"name": "good", "steps": ["hello.py"]}, "good.yaml")
    invalid = write(tmp_path / "invalid.yaml", "steps: []\n")
    results = run_many(
        {
            "good": Invocation(["run", good, "--output", "good.json"], cwd=tmp_path),
            "invalid": Invocation(["run", invalid, "--output", "invalid.json"], cwd=tmp_path),
        }
    )
    for name, code in (("good", 0), ("invalid", 2)):
        result = results[name]
        assert result.code == code, result
        written = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        assert written == assert_record(result)


# -- what handlers print goes to stderr -------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_flow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("noisy")
    write(
        folder / "chatty.py",
        """
        import sys

        def transform(data):
            print("PY-PRINT-MARKER")
            print("PY-NOEOL-MARKER", end="")
            sys.stdout.write("PY-WRITE-MARKER\\n")
            return {"step": 1}
    """,
    )
    write(
        folder / "chatty_async.py",
        """
        async def transform(data):
            print("PY-ASYNC-MARKER", flush=True)
            return {"step": 2}
    """,
    )
    write(
        folder / "chatty.js",
        """
        (data) => {
          console.log("JS-LOG-MARKER");
          console.warn("JS-WARN-MARKER");
          console.error("JS-ERROR-MARKER");
          return { step: 3 };
        }
    """,
    )
    return workflow(
        folder,
        {
            "name": "noisy",
            "steps": [
                {"name": "py", "handler": "chatty.py"},
                {"name": "py_async", "handler": "chatty_async.py"},
                {"name": "js", "handler": "chatty.js"},
            ],
        },
    )


@pytest.fixture(scope="module")
def noisy_runs(noisy_flow: Path) -> dict[str, Result]:
    cwd = noisy_flow.parent
    return run_many(
        {
            "auto": Invocation(["run", noisy_flow], cwd=cwd),
            "json": Invocation(["run", noisy_flow, "--log-format", "json"], cwd=cwd),
            "console": Invocation(["run", noisy_flow, "--log-format", "console"], cwd=cwd),
            "quiet": Invocation(["run", noisy_flow, "--log-format", "json", "-q"], cwd=cwd),
        }
    )


PRINT_MARKERS = (
    "PY-PRINT-MARKER",
    "PY-NOEOL-MARKER",
    "PY-WRITE-MARKER",
    "PY-ASYNC-MARKER",
    "JS-LOG-MARKER",
    "JS-WARN-MARKER",
    "JS-ERROR-MARKER",
)


@pytest.mark.parametrize("fmt", ["auto", "json", "console"])
def test_handler_output_goes_to_stderr_never_stdout(
    noisy_runs: dict[str, Result], fmt: str
) -> None:
    result = noisy_runs[fmt]
    assert result.code == 0, result
    record = assert_record(result)
    assert record["result"] == {"step": 3}
    for marker in PRINT_MARKERS:
        assert marker in result.stderr, f"{marker} missing from stderr\n{result}"
        assert marker not in result.stdout, f"{marker} on stdout\n{result}"


def test_log_format_json_gives_json_lines_on_stderr(noisy_runs: dict[str, Result]) -> None:
    for fmt in ("json", "auto"):  # auto: stderr is not a terminal here
        result = noisy_runs[fmt]
        events = json_lines(result.stderr)
        assert all(isinstance(e, dict) and "event" in e and "level" in e for e in events), result
        names = [e["event"] for e in events]
        assert names[0] == "run.start" and names[-1] == "run.done", names
        assert names.count("step.start") == 3
        printed = [e for e in events if "PY-PRINT-MARKER" in json.dumps(e)]
        assert printed and printed[0].get("step") == "py", printed


def test_log_format_json_holds_for_refusals_and_validate_too(tmp_path: Path) -> None:
    """With --log-format json every stderr line is JSON, also when nothing runs."""
    write(tmp_path / "hello.py", HELLO_PY)
    good = workflow(tmp_path, {"name": "hello", "steps": ["hello.py"]}, "good.yaml")
    bad = write(tmp_path / "bad.yaml", "name: bad\nsteps:\n  - handler: missing.py\n")
    results = run_many(
        {
            "run-invalid": Invocation(["run", bad, "--log-format", "json"], cwd=tmp_path),
            "validate-ok": Invocation(["validate", good, "--log-format", "json"], cwd=tmp_path),
            "validate-invalid": Invocation(["validate", bad, "--log-format", "json"], cwd=tmp_path),
        }
    )
    for name, result in results.items():
        assert result.code == (0 if name == "validate-ok" else 2), result
        events = json_lines(result.stderr)
        assert events, result
        if name != "validate-ok":
            assert "missing.py" in json.dumps(events), result
            assert any(e.get("level") == "error" for e in events), result


def test_log_format_console_is_readable_text(noisy_runs: dict[str, Result]) -> None:
    result = noisy_runs["console"]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result
    assert not any(line.lstrip().startswith("{") for line in lines), result
    assert "run.done" in result.stderr
    assert "\x1b[" not in result.stderr  # no colour codes when stderr is not a terminal


def test_quiet_shows_only_warnings_and_errors(noisy_runs: dict[str, Result]) -> None:
    result = noisy_runs["quiet"]
    assert result.code == 0, result
    assert assert_record(result)["status"] == "SUCCESS"
    events = json_lines(result.stderr)
    assert not [e for e in events if e.get("level") in ("info", "debug")], result
    assert "run.start" not in result.stderr and "step.start" not in result.stderr
    assert "JS-WARN-MARKER" in result.stderr and "JS-ERROR-MARKER" in result.stderr


def test_quiet_still_reports_a_failure(tmp_path: Path) -> None:
    write(tmp_path / "bad.py", "def transform(data):\n    raise ValueError('QUIET-FAILURE')\n")
    path = workflow(tmp_path, {"name": "bad", "steps": ["bad.py"]})
    result = cli("run", path, "-q", "--log-format", "json", cwd=tmp_path)
    assert result.code == 1, result
    events = json_lines(result.stderr)
    assert events and all(e["level"] in ("warning", "error", "critical") for e in events), result
    assert "QUIET-FAILURE" in result.stderr


def test_handler_printing_at_import_time_stays_off_stdout(tmp_path: Path) -> None:
    """stdout carries exactly one JSON document, even when a handler module prints on import."""
    write(
        tmp_path / "loud_import.py",
        """
        print("IMPORT-TIME-MARKER")

        def transform(data):
            return {"ok": True}
    """,
    )
    path = workflow(tmp_path, {"name": "loud", "steps": ["loud_import.py"]})
    results = run_many(
        {
            "run": Invocation(["run", path], cwd=tmp_path),
            "validate": Invocation(["validate", path], cwd=tmp_path),
        }
    )
    for result in results.values():
        assert result.code == 0, result
        result.doc()  # the whole stdout is one JSON document
        assert "IMPORT-TIME-MARKER" not in result.stdout, result
        assert "IMPORT-TIME-MARKER" in result.stderr, result


# -- secrets ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_runs(echo_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """A request with a secret in Authorization and X-API-Key; the server echoes it in a 500."""
    folder = tmp_path_factory.mktemp("secret")
    handler = request_handler(
        folder,
        "call.py",
        {
            "method": "POST",
            "url": "<<config.url>>/fail-echo",
            "headers": {
                "Authorization": "Bearer <<config.apiKey>>",
                "X-API-Key": "<<config.apiKey>>",
            },
            "body": {"note": "no secret in the body"},
            "retry": {"maxAttempts": 2, "initialDelay": "50ms"},
        },
    )
    path = workflow(
        folder,
        {
            "name": "secret",
            "config": {"url": echo_url, "apiKey": SECRET},
            "steps": [{"name": "call", "handler": handler}],
        },
    )
    other = "0ther-s3cr3t-from-set"
    return run_many(
        {
            "json": Invocation(["run", path, "--log-format", "json", "-v"], cwd=folder),
            "console": Invocation(["run", path, "--log-format", "console", "-v"], cwd=folder),
            "set": Invocation(["run", path, "--set", f"apiKey={other}", "-v"], cwd=folder),
        }
    )


@pytest.mark.parametrize("how", ["json", "console", "set"])
def test_secret_never_appears_in_logs_or_errors(secret_runs: dict[str, Result], how: str) -> None:
    secret = "0ther-s3cr3t-from-set" if how == "set" else SECRET
    result = secret_runs[how]
    assert result.code == 1, result
    record = assert_record(result)
    error = record["error"]
    assert error["type"] == "HttpStatusError", result
    assert error["step"] == "call"
    assert "500" in error["message"]
    assert "rejected" in error["message"]  # the body's excerpt is there, masked
    assert secret not in error["message"], error
    assert secret not in result.stderr, result
    assert secret not in result.stdout, result  # the failed response is not in the GWO either
    assert "***" in error["message"]
    assert_no_traceback(result)


def test_secret_echoed_in_its_json_escaped_spelling_is_masked(
    echo_url: str, tmp_path: Path
) -> None:
    """A base64 token holds `/`; a server that escapes it as `\\/` in JSON still echoes it."""
    secret = "c2VjcmV0/dG9rZW4+dmFsdWU="
    handler = request_handler(
        tmp_path,
        "call.py",
        {
            "method": "GET",
            "url": "<<config.url>>/fail-echo-escaped",
            "headers": {"Authorization": "Bearer <<config.apiToken>>"},
        },
    )
    path = workflow(
        tmp_path,
        {
            "name": "escaped",
            "config": {"url": echo_url, "apiToken": secret},
            "steps": [{"name": "call", "handler": handler}],
        },
    )
    result = cli("run", path, "-v", cwd=tmp_path)
    assert result.code == 1, result
    error = assert_record(result)["error"]
    assert error["type"] == "HttpStatusError" and "token rejected" in error["message"], error
    escaped = secret.replace("/", "\\/")
    for spelling in (secret, escaped):
        assert spelling not in error["message"], error
        assert spelling not in result.stderr, result


# -- user mistakes never show a Python traceback ----------------------------------------------

# case -> (handler file, handler source, expected exit, error type)
MISTAKES: dict[str, tuple[str, str, int, str]] = {
    "python-handler-raises": (
        "raises.py",
        "def transform(data):\n    return data['input']['missing']\n",
        1,
        "HandlerError",
    ),
    "js-handler-throws": (
        "throws.js",
        "(data) => { throw new TypeError('bad input'); }\n",
        1,
        "HandlerError",
    ),
    "bad-directive": (
        "directive.py",
        "def transform(data):\n    return {'lam.httpRequestz': {'method': 'GET', 'url': 'x'}}\n",
        1,
        "DefinitionError",
    ),
    "condition-syntax-error": (
        "cond.py",
        "def transform(data):\n"
        "    return {'lam.httpRequest': {'method': 'GET', 'url': 'http://127.0.0.1:9/x',\n"
        "            'loopUntil': {'condition': '(ctx) => ctx.status ==='}}}\n",
        1,
        "ConditionError",
    ),
    "template-missing-key": (
        "template.py",
        "def transform(data):\n"
        "    return {'lam.httpRequest': {'method': 'GET', 'url': '<<config.nowhere>>/x'}}\n",
        1,
        "TemplateError",
    ),
    "unreachable-host": ("unreachable.py", "PORT", 1, "TransportError"),
}


@pytest.fixture(scope="module")
def mistake_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    invocations = {}
    port = closed_port()
    for case, (name, source, _, _) in MISTAKES.items():
        folder = tmp_path_factory.mktemp(case)
        if source == "PORT":
            request_handler(folder, name, {"method": "GET", "url": f"http://127.0.0.1:{port}/x"})
        else:
            write(folder / name, source)
        path = workflow(folder, {"name": case, "steps": [{"name": "oops", "handler": name}]})
        invocations[case] = Invocation(["run", path], cwd=folder)
    folder = tmp_path_factory.mktemp("invocation")
    write(folder / "hello.py", HELLO_PY)
    path = workflow(folder, {"name": "hello", "steps": ["hello.py"]})
    invocations["missing-config-file"] = Invocation(["run", path, "--config", "nope.yaml"], folder)
    invocations["bad-set"] = Invocation(["run", path, "--set", "no equals sign"], folder)
    invocations["missing-workflow"] = Invocation(["run", folder / "nope.yaml"], folder)
    return run_many(invocations)


@pytest.mark.parametrize("case", list(MISTAKES))
def test_run_time_mistake_fails_cleanly(mistake_runs: dict[str, Result], case: str) -> None:
    _, _, code, error_type = MISTAKES[case]
    result = mistake_runs[case]
    assert_no_traceback(result)
    assert result.code == code, result
    record = assert_record(result)
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == error_type, record["error"]
    assert record["error"]["step"] == "oops"
    assert record["error"]["message"]
    json_lines(result.stderr)  # stderr is not a terminal: nothing but JSON log lines


@pytest.mark.parametrize("case", ["missing-config-file", "bad-set", "missing-workflow"])
def test_invocation_mistake_exits_2_cleanly(mistake_runs: dict[str, Result], case: str) -> None:
    result = mistake_runs[case]
    assert_no_traceback(result)
    assert result.code == 2, result
    record = assert_record(result)
    assert record["runId"] is None
    assert record["error"]["type"] == "DefinitionError"


def test_output_to_an_unwritable_place_fails_cleanly(tmp_path: Path) -> None:
    """A bad --output path is a user mistake: a message, not a traceback, and stdout keeps
    its one JSON document."""
    write(tmp_path / "hello.py", HELLO_PY)
    write(tmp_path / "a-file", "a missing folder is created; one under a file cannot be")
    path = workflow(tmp_path, {"name": "hello", "steps": ["hello.py"]})
    result = cli("run", path, "--output", tmp_path / "a-file" / "dir" / "out.json", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.code != 0, result
    assert_record(result)
    assert "out.json" in result.stderr


def test_handler_calling_sys_exit_is_a_handler_error(tmp_path: Path) -> None:
    """SystemExit raised by a handler is an exception in a handler: the run fails with a
    HandlerError and a record, the runner does not exit with the handler's code."""
    write(tmp_path / "quits.py", "import sys\n\ndef transform(data):\n    sys.exit(3)\n")
    path = workflow(tmp_path, {"name": "quits", "steps": [{"name": "q", "handler": "quits.py"}]})
    result = cli("run", path, cwd=tmp_path)
    assert_no_traceback(result)
    assert result.code == 1, result
    record = assert_record(result)
    assert record["error"]["type"] == "HandlerError"
    assert record["error"]["step"] == "q"


def test_invalid_option_exits_2_with_a_record_on_stdout(tmp_path: Path) -> None:
    """Exit 2 means the invocation is invalid; stdout then holds the DefinitionError record."""
    write(tmp_path / "hello.py", HELLO_PY)
    path = workflow(tmp_path, {"name": "hello", "steps": ["hello.py"]})
    result = cli("run", path, "--log-format", "xml", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.code == 2, result
    assert "--log-format" in result.stderr
    record = assert_record(result)
    assert record["runId"] is None
    assert record["error"]["type"] == "DefinitionError"
    assert "--log-format" in record["error"]["message"]
