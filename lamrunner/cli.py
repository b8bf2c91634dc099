"""The `lamrunner` command: parse, run, print one JSON document, return the exit code.

stdout carries exactly one JSON document (the run record, or the validation result); logs and
whatever handlers print go to stderr. Exit status: 0 success, 1 the run failed, 2 the invocation
or the definition is invalid and nothing ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lamrunner",
        description="Run Laminar-style workflows: steps that call HTTP APIs and poll jobs.",
    )
    parser.add_argument("--version", action="version", version=f"lamrunner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a workflow and print its run record")
    run.add_argument("workflow", help="the workflow YAML file")
    run.add_argument("--input", metavar="JSON|@FILE|-",
                     help="workflow input: JSON text, @file.json, or - for stdin")  # fmt: skip
    run.add_argument("--config", action="append", default=[], metavar="FILE",
                     help="a YAML/JSON config layer, deep-merged over the workflow's config:")  # fmt: skip
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="set one config value (dotted key; JSON values are typed)")  # fmt: skip
    run.add_argument("--output", metavar="FILE", help="also write the run record to FILE")
    _log_options(run)

    validate = commands.add_parser("validate", help="check a workflow file; runs nothing")
    validate.add_argument("workflow", help="the workflow YAML file")
    _log_options(validate)
    return parser


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("auto", "console", "json"), default="auto",
                        help="logs on stderr: readable in a terminal, JSON lines otherwise")  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs (every request)")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad invocation as a DefinitionError, so it gets a record too."""

    def error(self, message: str) -> NoReturn:
        from .errors import DefinitionError

        raise DefinitionError(f"{self.prog}: {message} (see {self.prog} --help)")


def main(argv: list[str] | None = None) -> int:
    from .errors import DefinitionError
    from .logs import configure, stdout_to_log

    try:
        args = build_parser().parse_args(argv)
    except DefinitionError as exc:
        configure("auto", 0)
        return _refuse(exc, None)
    configure(args.log_format, -1 if args.quiet else (1 if args.verbose else 0))
    with stdout_to_log() as stdout:  # handlers may print at import time too
        if args.command == "validate":
            return _validate(args, stdout)
        return _run(args, stdout)


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    import asyncio

    from .config import build_config
    from .engine import Engine
    from .errors import DefinitionError
    from .workflow import load_workflow

    try:
        _check_output(args.output)
        input_data = parse_input(args.input)
        workflow = load_workflow(args.workflow)
        config = build_config(workflow.config, args.config, args.set, os.environ)
    except DefinitionError as exc:
        return _refuse(exc, stdout, args.output)
    try:
        record = asyncio.run(Engine(workflow, config).run(input_data))
    except KeyboardInterrupt:
        _log().warning("run.interrupted")
        return 130
    code = EXIT_OK if record["status"] == "SUCCESS" else EXIT_FAILED
    return _emit(record, stdout, args.output) or code


def _validate(args: argparse.Namespace, stdout: TextIO) -> int:
    from .errors import DefinitionError
    from .workflow import load_workflow

    try:
        workflow = load_workflow(args.workflow)
    except DefinitionError as exc:
        _log().error("workflow.invalid", error=exc.message)
        _emit({"valid": False, "workflow": args.workflow, "error": _error(exc)}, stdout, None)
        return EXIT_INVALID
    steps = [
        {"name": s.name, "handler": s.handler.spec, "language": s.handler.language}
        for s in workflow.steps
    ]
    _log().info("workflow.valid", workflow=workflow.name, steps=len(steps))
    _emit({"valid": True, "workflow": workflow.name, "steps": steps}, stdout, None)
    return EXIT_OK


def parse_input(raw: str | None) -> Any:
    """--input: JSON text, @file.json, or - (stdin). No input is an empty object."""
    from .errors import DefinitionError

    if raw is None:
        return {}
    source = "--input"
    if raw == "-":
        raw, source = sys.stdin.read(), "--input - (stdin)"
    elif raw.startswith("@"):
        path = Path(raw[1:])
        source = f"--input {raw}"
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DefinitionError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise DefinitionError(f"{source}: not valid JSON ({exc})") from None


def _check_output(output: str | None) -> None:
    """Refuse an --output we could not write before running anything."""
    from .errors import DefinitionError

    if output and not Path(output).resolve().parent.is_dir():
        raise DefinitionError(f"--output {output}: the folder {Path(output).parent} does not exist")


def _refuse(exc: Any, stdout: TextIO | None, output: str | None = None) -> int:
    from .runstate import failed_record

    _log().error("run.refused", error=exc.message)
    _emit(failed_record(None, _error(exc)), stdout or sys.stdout, output)
    return EXIT_INVALID


def _error(exc: Any) -> dict[str, Any]:
    from .masking import SECRETS

    return {"type": exc.type_name, "message": SECRETS.mask(exc.message), "step": exc.step}


def _emit(document: dict[str, Any], stdout: TextIO, output: str | None) -> int:
    """Print the document; also write it to --output. Returns EXIT_FAILED if that write fails."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    stdout.write(text + "\n")
    stdout.flush()
    if output:
        try:
            Path(output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            _log().error("output.unwritable", path=output, error=exc.strerror or str(exc))
            return EXIT_FAILED
    return 0


def _log() -> Any:
    from .logs import get_logger

    return get_logger()
