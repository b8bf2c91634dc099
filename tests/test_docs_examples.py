"""Every fenced code block of README.md and docs/*.md is checked, so the docs cannot drift.

A block may be preceded by a marker, `<!-- example: KIND key=value ... -->` (values are JSON or
bare words); without one, its language picks the default kind. The kinds:

    yaml   workflow        loaded with lamrunner's loader; `run input=JSON status=S error=T
                           result=JSON` also runs it against samples/jobapi.py on 127.0.0.1
           workflow-part   merged over a one-step workflow and loaded (limits:, network:)
           config-file     loaded as a --config file (a json block too); `expect=JSON`
                           compares the config it makes
    js     js / handler    compiled and called on a sample GWO in lamrunner's JS engine; the
                           result must be JSON and a valid directive (`expect=JSON` compares)
           request-fields  object fields (`loopUntil: {...}, retry: {...}`) put into a request
                           that a JS handler returns, then validated as a directive
           condition       a loopUntil condition evaluated in QuickJS on `ctx=JSON`
    python python / handler  `transform` (or `func=NAME`) called on a sample GWO, as above
           script          executed in the repo root with JOBAPI_URL pointing at the job API
    json   json            parsed;   record: parsed and has exactly the run record's keys
    sh     sh              every command is checked: lamrunner commands and options against
                           the CLI's parser, scripts and sample files must exist
    text   synopsis        the CLI synopsis: every command and option against the parser
           signature       `lamrunner.run(...)` lines: parameters match the real functions

Handler and workflow blocks share a folder per document: `file=NAME` writes a block there so a
workflow block of the same page can use it; the repo's handlers/ are copied beside it, so
`../handlers/x.js` works as in samples/. `same-as=PATH` also checks the block is in that file.
An unknown language or kind fails: new examples cannot go untested.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import lamrunner
from lamrunner.cli.main import build_parser
from lamrunner.definition.config import load_config_file
from lamrunner.definition.directives import parse_directive
from lamrunner.js.runtime import CONDITION_LIMITS, HANDLER_LIMITS, JsEngine, check_condition

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RECORD_KEYS = {"runId", "workflow", "status", "result", "error", "gwo"}
DEFAULT_KIND = {
    "yaml": "workflow",
    "js": "js",
    "python": "python",
    "json": "json",
    "sh": "sh",
    "text": None,
}
KINDS = {
    "yaml": {"workflow", "workflow-part", "config-file"},
    "js": {"js", "handler", "request-fields", "condition"},
    "python": {"python", "handler", "script"},
    "json": {"json", "record", "config-file"},
    "sh": {"sh"},
    "text": {"synopsis", "signature"},
}
SAMPLE_GWO = {
    "input": {"datasetId": "ds-1"},
    "step_1": {
        "response": {"job_id": "job-1", "status": "completed", "progress": 100},
        "http": {
            "status": 200,
            "headers": {"content-type": "application/json; charset=utf-8"},
            "attempts": 4,
            "durationMs": 2150,
        },
    },
}


@dataclass
class Block:
    doc: Path
    line: int
    lang: str
    code: str
    kind: str
    opts: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _parse_opts(text: str, where: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        match = re.compile(r"\s*([\w-]+)(=?)").match(text, pos)
        if not match or not match.group(1):
            break
        key, pos = match.group(1), match.end()
        if not match.group(2):
            opts[key] = True
            continue
        if pos < len(text) and text[pos] in '{["':
            opts[key], pos = decoder.raw_decode(text, pos)
        else:
            bare = re.compile(r"\S+").match(text, pos)
            assert bare, f"{where}: {key}= without a value"
            raw, pos = bare.group(0), bare.end()
            try:
                opts[key] = json.loads(raw)
            except ValueError:
                opts[key] = raw
    assert not text[pos:].strip(), f"{where}: cannot read the marker at {text[pos:]!r}"
    return opts


def extract(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks, marker, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        found = re.fullmatch(r"\s*<!--\s*example:\s*(.*?)\s*-->\s*", line)
        if found:
            marker = (found.group(1), i + 1)
        elif line.startswith("```"):
            lang, start = line[3:].strip(), i + 1
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            where = f"{doc.relative_to(ROOT)}:{start}"
            kind, opts = DEFAULT_KIND.get(lang), {}
            if marker is not None and marker[1] >= start - 2:
                words = marker[0].split(None, 1)
                kind = words[0]
                opts = _parse_opts(words[1] if len(words) > 1 else "", where)
            blocks.append(Block(doc, start, lang, "\n".join(body) + "\n", kind or "", opts))
            marker = None
        elif line.strip():
            marker = None
        i += 1
    return blocks


BLOCKS = [b for doc in DOCS for b in extract(doc)]


def test_every_block_is_of_a_known_kind() -> None:
    assert len(BLOCKS) > 30, len(BLOCKS)
    for block in BLOCKS:
        assert block.lang in KINDS, f"{block.id}: a ```{block.lang} block: no test knows it"
        assert block.kind in KINDS[block.lang], (
            f"{block.id}: kind {block.kind!r} is not one of {sorted(KINDS[block.lang])} for "
            f"```{block.lang}; add a <!-- example: KIND --> marker"
        )


def test_docs_never_link_outside_the_project() -> None:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        assert "../shared" not in text, doc
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


# -- the job API and the per-document folders -------------------------------------------------


@pytest.fixture(scope="module")
def jobapi_url() -> Iterator[str]:
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "samples" / "jobapi.py"),
            "--port",
            "0",
            "--quiet",
            "--phase-seconds",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JOBAPI_API_KEY": "dev-key"},
    )
    assert server.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(server.stdout.readline()), daemon=True)
    reader.start()
    reader.join(15)
    try:
        line = lines[0].strip() if lines else ""
        assert line.startswith("jobapi listening on "), line
        yield line.rsplit(" ", 1)[1]
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """One folder per document: <tmp>/samples (the blocks' files) beside <tmp>/handlers."""
    made = {}
    for doc in DOCS:
        root = tmp_path_factory.mktemp(doc.stem)
        shutil.copytree(ROOT / "handlers", root / "handlers")
        (root / "samples").mkdir()
        (root / "samples" / "hello.py").write_text("def transform(data):\n    return {}\n")
        for block in BLOCKS:
            if block.doc == doc and "file" in block.opts:
                (root / "samples" / block.opts["file"]).write_text(block.code, encoding="utf-8")
        made[doc] = root / "samples"
    return made


def _check_directive(result: Any) -> None:
    json.dumps(result)  # JSON

    def check(source: str, where: str) -> None:
        check_condition(source)

    parse_directive(result, check)


async def _call_js(source: str, gwo: Any) -> Any:
    engine = JsEngine(workers=1)
    try:
        text = await engine.call_handler(
            source, json.dumps(gwo), HANDLER_LIMITS, lambda level, text: None
        )
        return json.loads(text)
    finally:
        engine.close()


def _call_python(block: Block, folder: Path) -> Any:
    namespace: dict[str, Any] = {"__name__": f"docs_example_{block.line}"}
    sys.path.insert(0, str(folder))
    try:
        exec(compile(block.code, block.id, "exec"), namespace)  # noqa: S102 - the docs' example
    finally:
        sys.path.remove(str(folder))
    func = namespace[block.opts.get("func", "transform")]
    result = func(json.loads(json.dumps(block.opts.get("gwo", SAMPLE_GWO))))
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return result


# -- the checks, one test per block -----------------------------------------------------------


def _check_same_as(block: Block) -> None:
    if "same-as" in block.opts:
        text = (ROOT / block.opts["same-as"]).read_text(encoding="utf-8")
        assert block.code.strip() in text, f"{block.id} differs from {block.opts['same-as']}"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b.id}-{b.kind}")
def test_example(
    block: Block,
    folders: dict[Path, Path],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = folders[block.doc]
    _check_same_as(block)
    kind = block.kind
    if kind in ("workflow", "workflow-part"):
        _check_workflow(block, folder, request)
    elif kind == "config-file":
        path = folder / f"config-{block.line}.{'json' if block.lang == 'json' else 'yaml'}"
        path.write_text(block.code, encoding="utf-8")
        config = load_config_file(str(path), {})
        assert isinstance(config, dict)
        if "expect" in block.opts:
            assert config == block.opts["expect"], f"{block}: the config it makes"
    elif kind in ("js", "handler") and block.lang == "js":
        result = asyncio.run(_call_js(block.code, block.opts.get("gwo", SAMPLE_GWO)))
        _check_result(block, result)
    elif kind == "request-fields":
        source = (
            '(data) => ({"lam.httpRequest": {method: "GET", url: "http://127.0.0.1:9/x",\n'
            f"{block.code}\n}}}})"
        )
        _check_directive(asyncio.run(_call_js(source, SAMPLE_GWO)))
    elif kind == "condition":
        assert (
            asyncio.run(_condition(block.code.strip(), block.opts["ctx"])) is block.opts["expect"]
        ), block.id
    elif kind in ("python", "handler"):
        _check_result(block, _call_python(block, folder))
    elif kind == "script":
        monkeypatch.setenv("JOBAPI_URL", request.getfixturevalue("jobapi_url"))
        monkeypatch.chdir(ROOT)
        exec(compile(block.code, block.id, "exec"), {"__name__": "__docs__"})  # noqa: S102
    elif kind in ("json", "record"):
        doc = json.loads(block.code)
        if kind == "record":
            assert set(doc) == RECORD_KEYS, block.id
    elif kind in ("sh", "synopsis"):
        _check_commands(block)
    elif kind == "signature":
        _check_signatures(block)
    else:  # pragma: no cover - test_every_block_is_of_a_known_kind names it
        pytest.fail(f"{block.id}: unknown kind {kind}")


def _check_result(block: Block, result: Any) -> None:
    if "expect" in block.opts:
        assert result == block.opts["expect"], f"{block.id}: {result!r}"
    _check_directive(result)


async def _condition(source: str, ctx: Any) -> bool:
    engine = JsEngine(workers=1)
    try:
        condition = await engine.open_condition(source, CONDITION_LIMITS)
        try:
            return await condition.evaluate(json.dumps(ctx))
        finally:
            await condition.aclose()
    finally:
        engine.close()


def _check_workflow(block: Block, folder: Path, request: pytest.FixtureRequest) -> None:
    if block.kind == "workflow-part":
        doc = {"name": "part", "steps": [{"handler": "hello.py"}], **yaml.safe_load(block.code)}
        text = json.dumps(doc)
    else:
        text = block.code
    path = folder / f"workflow-{block.line}.yaml"
    path.write_text(text, encoding="utf-8")
    env = {"JOBAPI_URL": "http://127.0.0.1:9"}
    if "run" in block.opts:
        env["JOBAPI_URL"] = request.getfixturevalue("jobapi_url")
    workflow = lamrunner.load_workflow(path, env=env)
    if "run" not in block.opts:
        return
    record = lamrunner.run(workflow, block.opts.get("input"), env=env)
    assert record["status"] == block.opts.get("status", "SUCCESS"), record
    if "error" in block.opts:
        assert record["error"]["type"] == block.opts["error"], record
    if "result" in block.opts:
        assert record["result"] == block.opts["result"], record


# -- commands ---------------------------------------------------------------------------------


def _cli_options() -> dict[str, set[str]]:
    parser = build_parser()
    options = {"": set(parser._option_string_actions)}
    for action in parser._actions:
        for name, sub in (getattr(action, "choices", None) or {}).items():
            if hasattr(sub, "_option_string_actions"):
                options[name] = set(sub._option_string_actions)
    return options


_OK_COMMANDS = ("pip install", "source .venv/bin/activate", "echo ", "export ", "cd ")


def _check_commands(block: Block) -> None:
    options = _cli_options()
    text = block.code.replace("\\\n", " ")
    commands: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"\s#\s.*$|^#.*$", "", line).strip()
        if not line:
            continue
        if block.kind == "synopsis" and not line.startswith("lamrunner") and commands:
            commands[-1] += " " + line  # a continuation line of the synopsis
        else:
            commands.extend(
                part.strip() for part in ([line] if block.kind == "synopsis" else line.split(" | "))
            )
    assert commands, block.id
    for command in commands:
        words = shlex.split(command) if block.kind == "sh" else command.split()
        program = words[0]
        if program in ("lamrunner", ".venv/bin/lamrunner"):
            _check_lamrunner(words[1:], options, f"{block.id}: {command}")
        elif program == "bash":
            assert (ROOT / words[1]).is_file(), f"{block.id}: {words[1]} does not exist"
        elif program in (".venv/bin/python", "python"):
            target = words[1]
            if target == "-m":
                assert (ROOT / words[2]).is_dir(), f"{block.id}: no module {words[2]}"
            else:
                assert (ROOT / target).is_file(), f"{block.id}: {target} does not exist"
        elif program == "aws":
            _check_aws(words[1:], f"{block.id}: {command}")
        elif program in _CLOUD_TOOLS:
            _check_cloud_tool(words, f"{block.id}: {command}")
        else:
            assert command.startswith(_OK_COMMANDS), f"{block.id}: no check knows {command!r}"


# The AWS CLI is generated from botocore's service models (installed here with boto3, which the
# durable execution SDK needs), so an `aws SERVICE OPERATION --param` line is checked against
# the model the real CLI reads; these are the CLI's own options on top of the API's.
_AWS_CLI_OPTIONS = {"--cli-binary-format", "--query", "--output", "--region", "--profile"}
_AWS_OUTFILE = {"invoke"}  # operations whose response payload goes to a trailing file name
# sam and gcloud are not installable from PyPI: their commands are checked against the
# subcommands and options their references document, for the lines the docs use.
_CLOUD_TOOLS = {
    "sam": {
        "deploy": {"--guided", "--template-file", "--stack-name", "--capabilities"},
        "build": {"--template-file"},
        "logs": {"--stack-name", "--name", "--tail"},
    },
    "gcloud": {
        "functions deploy": {
            "--gen2",
            "--runtime",
            "--entry-point",
            "--trigger-http",
            "--source",
            "--set-env-vars",
            "--region",
            "--timeout",
            "--no-allow-unauthenticated",
            "--service-account",
            "--memory",
            "--update-env-vars",
        },
        "functions describe": {"--gen2", "--region", "--format"},
        "functions add-invoker-policy-binding": {"--region", "--member"},
        "tasks queues create": {"--location", "--max-attempts", "--min-backoff"},
        "auth print-identity-token": set(),
        "iam service-accounts create": {"--display-name"},
        "iam service-accounts add-iam-policy-binding": {"--member", "--role"},
        "projects add-iam-policy-binding": {"--member", "--role"},
        "logging read": {"--limit", "--format", "--freshness"},
    },
    "curl": {"": set()},  # no subcommands; the docs use its short options only
}


def _check_aws(words: list[str], where: str) -> None:
    import botocore.session

    service, operation, *rest = words
    model = botocore.session.get_session().get_service_model(service)
    names = {botocore.xform_name(op, "-"): op for op in model.operation_names}
    assert operation in names, f"{where}: no operation {operation!r} in aws {service}"
    shape = model.operation_model(names[operation]).input_shape
    params = {"--" + botocore.xform_name(m, "-") for m in (shape.members if shape else {})}
    flags = [w for w in rest if w.startswith("--")]
    for flag in flags:
        assert flag in params | _AWS_CLI_OPTIONS, (
            f"{where}: aws {service} {operation} has no {flag}"
        )
    if operation in _AWS_OUTFILE:
        assert not rest[-1].startswith("-"), f"{where}: {operation} needs an output file last"


def _check_cloud_tool(words: list[str], where: str) -> None:
    commands = _CLOUD_TOOLS[words[0]]
    plain = [w for w in words[1:] if not w.startswith("-")]
    command = next((c for c in commands if plain[: len(c.split())] == c.split()), None)
    assert command is not None, f"{where}: no documented {words[0]} command"
    for word in words[1:]:
        flag = word.split("=", 1)[0]
        if flag.startswith("--"):
            assert flag in commands[command], f"{where}: {words[0]} {command} has no {flag}"


def _check_lamrunner(words: list[str], options: dict[str, set[str]], where: str) -> None:
    command = words[0] if words and not words[0].startswith("-") else ""
    assert command in options, f"{where}: no command {command!r}"
    known = options[command] | options[""] if not command else options[command]
    for word in words:
        for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", word):
            if word.startswith(("'", '"', "{", "[", "@")) or ("=" in word and flag not in word):
                continue
            assert flag in known, f"{where}: {command or 'lamrunner'} has no option {flag}"
    if command == "runs" and len(words) > 1 and words[1][:1].isalpha():
        assert words[1] == "show", where


def _check_signatures(block: Block) -> None:
    for line in block.code.splitlines():
        match = re.search(r"lamrunner\.(\w+)\((.*)\)", line)
        assert match, f"{block.id}: {line!r}"
        func = getattr(lamrunner, match.group(1))
        documented = [p.split("=")[0].strip() for p in match.group(2).split(",")]
        documented = [p for p in documented if p and p != "*"]
        real = [p for p in inspect.signature(func).parameters if p != "options"]
        if match.group(1) == "run":
            real = list(inspect.signature(lamrunner.arun).parameters)
        assert documented == real, f"{block.id}: {documented} != {real}"
