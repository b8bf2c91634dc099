"""The `lamrunner` command: parse, run, print one JSON document, return the exit code.

stdout carries exactly one JSON document (the run record, or the validation result; `runs`
prints a table unless --json); logs and whatever handlers print go to stderr. Exit status:
0 success, 1 the run failed, 2 the invocation or the definition is invalid and nothing ran,
3 the run suspended at its --budget (resume it at its resumeAt), 130 the run was interrupted
(Ctrl-C, SIGTERM) and can be resumed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from lamrunner import __version__

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_SUSPENDED = 3


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lamrunner",
        description="Run Laminar-style workflows: steps that call HTTP APIs and poll jobs.",
    )
    parser.add_argument("--version", action="version", version=f"lamrunner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = commands

    run = commands.add_parser("run", help="run a workflow and print its run record")
    run.add_argument("workflow", help="the workflow YAML file")
    run.add_argument(
        "--input",
        metavar="JSON|@FILE|-",
        help="workflow input: JSON text, @file.json, or - for stdin",
    )
    run.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML/JSON config layer, deep-merged over the workflow's config:",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one config value (dotted key; JSON values are typed)",
    )
    run.add_argument("--output", metavar="FILE", help="also write the run record to FILE")
    _budget_option(run)
    _store_options(run, allow_off=True)
    _log_options(run)

    validate = commands.add_parser("validate", help="check a workflow file; runs nothing")
    validate.add_argument("workflow", help="the workflow YAML file")
    validate.add_argument(
        "--explain",
        action="store_true",
        help="also print the schedule of every loopUntil and retry it can see",
    )
    validate.add_argument(
        "--input",
        metavar="JSON|@FILE|-",
        help="with --explain: call the JavaScript handlers (sandboxed) on this input",
    )
    validate.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="a config layer"
    )
    validate.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="set one config value"
    )
    _log_options(validate)

    resume = commands.add_parser("resume", help="continue an interrupted run from the store")
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument(
        "--redrive",
        action="store_true",
        help="re-run a FAILED run from the step that failed, keeping what succeeded",
    )
    resume.add_argument("--output", metavar="FILE", help="also write the run record to FILE")
    _budget_option(resume)
    _store_options(resume)
    _log_options(resume)

    cancel = commands.add_parser(
        "cancel", help="stop a run (sending its polls' onGiveUp); it ends FAILED, Cancelled"
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    _store_options(cancel)
    _log_options(cancel)

    runs = commands.add_parser("runs", help="list stored runs, newest first; `runs show ID`")
    runs.add_argument("show", nargs="?", choices=("show",), help="show one run")
    runs.add_argument("run_id", nargs="?", metavar="RUN_ID")
    runs.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    runs.add_argument("--limit", type=int, default=50, help="how many runs (default 50)")
    _store_options(runs)
    _log_options(runs)

    _serve_parser(commands)

    from lamrunner.cli import packageargs  # not cli.package: only `package` pays its imports

    packageargs.add_parser(commands)
    _log_options(commands.choices["package"])
    return parser


def _serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="serve workflows over HTTP: execute them, as jobs that survive restarts"
    )
    serve.add_argument(
        "workflows", nargs="+", metavar="WORKFLOW_OR_FOLDER", help="workflow files or folders"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=8780, help="port to listen on (8780; 0: any free one)"
    )
    serve.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="a config layer callers pick with ?configuration=NAME (its file name)",
    )
    serve.add_argument(
        "--api-key-env", metavar="NAME", help="the environment variable holding the API key"
    )
    serve.add_argument(
        "--signing-key-env",
        metavar="NAME",
        help="the environment variable holding the callback signing key (default: the API key)",
    )
    serve.add_argument(
        "--retention", default="7d", metavar="DURATION", help="keep ended jobs this long (7d)"
    )
    serve.add_argument(
        "--hold",
        default="60",
        metavar="SECONDS",
        help="a job whose next poll is further away leaves memory for the store (60)",
    )
    serve.add_argument(
        "--max-body", default="10MB", metavar="SIZE", help="largest request body (10MB)"
    )
    _store_options(serve)
    _log_options(serve)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0: any free one)")
    return port


def _budget_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget",
        metavar="DURATION",
        help="suspend (exit 3) rather than wait for a poll due after DURATION (30s, 5m)",
    )


def _store_options(parser: argparse.ArgumentParser, allow_off: bool = False) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="the run store (default $LAMRUNNER_STORE, else ~/.local/state/lamrunner/runs.sqlite3)",
    )
    if allow_off:
        parser.add_argument(
            "--no-store",
            action="store_true",
            help="do not checkpoint this run (it cannot be resumed)",
        )


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="logs on stderr: readable in a terminal, JSON lines otherwise",
    )
    loudness = parser.add_mutually_exclusive_group()  # -q -v together: which one was meant?
    loudness.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug logs (every request)")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad invocation as a DefinitionError, so it gets a record too,
    and answers a mistyped command or option with the closest one (most are typos)."""

    commands: Any = None  # the sub-command action, to find the options of the one given

    def error(self, message: str) -> NoReturn:
        from lamrunner.errors import DefinitionError

        raise DefinitionError(f"{self.prog}: {message} (see {self.prog} --help)")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # name the options of the sub-command given, not the top level's
            commands = self.commands.choices if self.commands else {}
            commands.get(getattr(parsed, "command", None), self).unknown(extras)
        return parsed

    def unknown(self, extras: list[str]) -> NoReturn:
        from lamrunner.definition.validation import did_you_mean

        option = next((e.split("=", 1)[0] for e in extras if e.startswith("-")), None)
        if option is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        known = [name for action in self._actions for name in action.option_strings]
        self.error(f"unknown option {option!r}{did_you_mean(option, known)}")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        from lamrunner.definition.validation import did_you_mean

        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            raise argparse.ArgumentError(
                action,
                f"invalid choice {value!r}"
                f"{did_you_mean(str(value), choices)}; "
                f"choose from {', '.join(choices)}",
            )


def main(argv: list[str] | None = None) -> int:
    """The command. Whatever goes wrong inside lamrunner, the user still gets one JSON record,
    an exit status and a one-line error, never a traceback (that goes to the -v log)."""
    global _EMITTED
    _EMITTED = False
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C outside a run's event loop (which handles its own)
        return _last_word(
            EXIT_INTERRUPTED, "Interrupted", "stopped by a signal; nothing ran to completion", None
        )
    except Exception as exc:  # noqa: BLE001 - a bug in lamrunner: InternalError and its record
        import traceback

        from lamrunner.errors import InternalError

        command = next(
            (
                a
                for a in argv
                if a in ("run", "validate", "resume", "cancel", "runs", "package", "serve")
            ),
            "run",
        )
        return _last_word(
            EXIT_FAILED,
            "InternalError",
            InternalError.of(exc, command).message,
            traceback.format_exc(),
        )


def _last_word(code: int, kind: str, message: str, trace: str | None) -> int:
    """The record when everything else failed: runId null, the error, logged; once only."""
    from lamrunner.runner.state import failed_record

    log = _log()
    log.error("internal.error" if trace else "run.interrupted", error=message)
    if trace:
        log.debug("internal.traceback", exception=trace)  # -v only; masked by the log chain
    if not _EMITTED:
        _emit(
            failed_record(None, {"type": kind, "message": message, "step": None}), sys.stdout, None
        )
    return code


_EMITTED = False  # main's one record went out: a failure after it must not print a second


def _main(argv: list[str]) -> int:
    from lamrunner.errors import DefinitionError

    parser = build_parser()
    try:
        if not argv:  # bare `lamrunner`: the usage for people, the one record for scripts
            parser.print_help(sys.stderr)
            raise DefinitionError(
                "lamrunner: no command given; choose one of run, validate, "
                "resume, cancel, runs, package, serve (see lamrunner --help)"
            )
        args = parser.parse_args(argv)  # --version and --help exit here, cheaply
    except DefinitionError as exc:
        from lamrunner.logs.chain import configure

        configure("auto", 0)
        return _refuse(exc, None)
    from lamrunner.logs.chain import configure, stdout_to_log

    configure(args.log_format, -1 if args.quiet else (1 if args.verbose else 0))
    command = {"run": _run, "validate": _validate, "resume": _resume, "runs": _runs}
    command["cancel"] = _cancel
    command["package"] = _package
    command["serve"] = _serve
    with stdout_to_log() as stdout:  # handlers may print at import time too
        try:
            return command[args.command](args, stdout)
        except DefinitionError as exc:
            return _refuse(exc, stdout, getattr(args, "output", None))


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    from lamrunner.cli import launch

    _check_output(args.output)
    input_data = parse_input(args.input)
    invocation = launch.Invocation.of(args.workflow, args.config, args.set)
    loaded = invocation.load()  # every definition problem surfaces before the store records a run
    budget = _budget(args)
    if budget is not None and args.no_store:
        from lamrunner.errors import DefinitionError

        raise DefinitionError(
            "--budget: a suspended run is resumed from the store; drop --no-store"
        )
    store = None if args.no_store else _store(args)
    record = launch.start(invocation, input_data, store, loaded, budget)
    return _finish(record, stdout, args.output)


def _resume(args: argparse.Namespace, stdout: TextIO) -> int:
    from lamrunner.cli import launch

    _check_output(args.output)
    record = launch.resume(args.run_id, _store(args), _budget(args), redrive=args.redrive)
    return _finish(record, stdout, args.output)


def _cancel(args: argparse.Namespace, stdout: TextIO) -> int:
    """The run's record once it stopped: 0 when it ended cancelled, else 1 (it finished
    before the cancel took, or it had not stopped within CANCEL_WAIT)."""
    from lamrunner.cli import launch

    record = launch.cancel(args.run_id, _store(args))
    cancelled = (record.get("error") or {}).get("type") == "Cancelled"
    return _emit(record, stdout, None) or (EXIT_OK if cancelled else EXIT_FAILED)


def _serve(args: argparse.Namespace, stdout: TextIO) -> int:
    """Serve until SIGTERM / Ctrl-C: 0. Refused before listening: 2 with the one record."""
    import asyncio

    from lamrunner.server.serve import ServeOptions, serve
    from lamrunner.store.sqlite import default_path
    from lamrunner.units import parse_duration, parse_size

    options = ServeOptions(
        paths=tuple(args.workflows),
        store=Path(args.store).expanduser() if args.store else default_path(),
        host=args.host,
        port=args.port,
        configs=tuple(args.config),
        api_key_env=args.api_key_env,
        signing_key_env=args.signing_key_env,
        retention=parse_duration(args.retention, "--retention"),
        hold=parse_duration(args.hold, "--hold"),
        max_body=parse_size(args.max_body, "--max-body"),
    )
    return asyncio.run(_served_with_gc_policy(serve(options, stdout)))


async def _served_with_gc_policy(serving: Coroutine[Any, Any, int]) -> int:
    """A server holds thousands of polls in memory: the CLI's GC policy keeps their pauses short."""
    from lamrunner.cli import gcpolicy

    async with gcpolicy.hold():
        return await serving


def _budget(args: argparse.Namespace) -> float | None:
    from lamrunner.units import parse_duration

    return None if args.budget is None else parse_duration(args.budget, "--budget")


def _finish(record: dict[str, Any], stdout: TextIO, output: str | None) -> int:
    codes = {"SUCCESS": EXIT_OK, "FAILED": EXIT_FAILED, "SUSPENDED": EXIT_SUSPENDED}
    code = codes.get(record["status"], EXIT_INTERRUPTED)
    if record.get("error") and record["error"].get("type") == "Interrupted":
        code = EXIT_INTERRUPTED  # a signal stopped `resume` while it waited: still SUSPENDED
    return _emit(record, stdout, output) or code


def _runs(args: argparse.Namespace, stdout: TextIO) -> int:
    from lamrunner.errors import DefinitionError

    store = _store(args)
    if args.show:
        if not args.run_id:
            raise DefinitionError("runs show: which run? give its RUN_ID (see lamrunner runs)")
        state, _invocation, status = store.load(args.run_id)
        record = state.record()
        record["status"] = status
        polls = store.attempts(args.run_id)
        shown = {"run": record, "polls": polls, "pollCounts": store.poll_counts(args.run_id)}
        shown["route"] = [run.to_dict() for run in state.route]  # every step execution
        parent = store.parent(args.run_id)
        if parent is not None:  # a sub-workflow's run: whose it is
            shown["parent"] = parent
        children = store.children(args.run_id)
        if children:  # the runs it started, each with its own: the tree
            shown["children"] = children
        _emit(shown, stdout, None)
        return EXIT_OK
    if args.run_id:
        raise DefinitionError(f"runs: unexpected {args.run_id!r}; did you mean runs show?")
    summaries = [s.to_dict() for s in store.list(args.limit)]
    if args.json:
        _emit(summaries, stdout, None)  # type: ignore[arg-type]
        return EXIT_OK
    stdout.write(
        f"{'RUN ID':<24} {'WORKFLOW':<24} {'STATUS':<12} {'STARTED (UTC)':<21} STEPS DONE\n"
    )
    for s in summaries:
        stdout.write(
            f"{s['runId']:<24} {s['workflow'][:24]:<24} {s['status']:<12} "
            f"{s['createdAt']:<21} {s['stepsDone']}\n"
        )
    return EXIT_OK


def _store(args: argparse.Namespace) -> Any:
    from lamrunner.store.sqlite import RunStore, default_path

    return RunStore(args.store or default_path())


def _package(args: argparse.Namespace, stdout: TextIO) -> int:
    from lamrunner.cli import package

    return _emit(package.command(args), stdout, None) or EXIT_OK


def _validate(args: argparse.Namespace, stdout: TextIO) -> int:
    from lamrunner.cli.pathcheck import unused_path_params
    from lamrunner.definition.workflow import load_workflow
    from lamrunner.errors import DefinitionError, LamrunnerError

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
    for note in workflow.warnings:  # what can be seen without running: the file's durations
        _log().warning("duration.suspicious", note=note)
    unused = unused_path_params(workflow)  # and the handlers' literal request objects
    for note in unused:
        _log().warning("request.path_param_unused", note=note)
    document: dict[str, Any] = {
        "valid": True,
        "workflow": workflow.name,
        "steps": steps,
        "warnings": [*workflow.warnings, *unused],
    }
    if workflow.workflows:  # the sub-workflows it may start, each loaded and checked too
        document["workflows"] = {key: str(file) for key, file in workflow.workflows.items()}
    if args.explain:
        try:
            document["explain"] = _explain(args, workflow)
        except LamrunnerError as exc:
            _log().error("workflow.invalid", error=exc.message)
            failed = {"valid": False, "workflow": args.workflow, "error": _error(exc)}
            _emit(failed, stdout, None)
            return EXIT_INVALID
    elif args.input is not None:
        raise DefinitionError("validate: --input is only used with --explain")
    _emit(document, stdout, None)
    return EXIT_OK


def _explain(args: argparse.Namespace, workflow: Any) -> list[Any]:
    import asyncio
    import os

    from lamrunner.cli.explain import explain
    from lamrunner.definition.config import build_config
    from lamrunner.errors import LamrunnerError
    from lamrunner.logs.masking import Secrets

    config = build_config(workflow.config, args.config, args.set, os.environ)
    input_data = None if args.input is None else parse_input(args.input)
    try:
        return asyncio.run(explain(workflow, config, input_data))
    except LamrunnerError as exc:  # a program's templates gave it the config's secrets
        raise exc.replaced(message=Secrets.of_config(config).mask(exc.message)) from None


def parse_input(raw: str | None) -> Any:
    """--input: JSON text, @file.json, or - (stdin). No input is an empty object."""
    from lamrunner.definition.yamlfile import parse_json
    from lamrunner.errors import DefinitionError

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
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise DefinitionError(f"{source}: cannot read {path}: {reason}") from None
    return parse_json(raw, source)


def _check_output(output: str | None) -> None:
    """Make --output's folder now, as --store does, so a run never ends with nowhere to write;
    refuse one that cannot be made before running anything."""
    from lamrunner.errors import DefinitionError

    if not output:
        return
    try:
        Path(output).resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DefinitionError(f"--output {output}: cannot create its folder: {reason}") from None


def _refuse(exc: Any, stdout: TextIO | None, output: str | None = None) -> int:
    from lamrunner.runner.state import failed_record

    _log().error("run.refused", error=exc.message)
    _emit(failed_record(None, _error(exc)), stdout or sys.stdout, output)
    return EXIT_INVALID


def _error(exc: Any) -> dict[str, Any]:
    """A refusal's error: made before any config was resolved, so it has no secrets to mask
    (a run masks its own errors with its own secrets)."""
    return exc.to_dict()  # type: ignore[no-any-return]


def _emit(document: dict[str, Any], stdout: TextIO, output: str | None) -> int:
    """Print the document; also write it to --output. Returns EXIT_FAILED if that write fails."""
    global _EMITTED
    text = json.dumps(document, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them as \u escapes, as JSON allows
        text = json.dumps(document, indent=2)
    _EMITTED = True
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
    from lamrunner.logs.chain import get_logger

    return get_logger()
