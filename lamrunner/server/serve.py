"""The `lamrunner serve` host: load the workflows, start the JobService, the callbacks and the
app, announce the address, and stop cleanly on SIGTERM / Ctrl-C.

Everything that can be refused is refused before anything listens: a file that does not load,
two workflows with one name, a config name given twice, an API key variable that is unset, a
non-loopback host without a key. A folder serves each workflow file in it; a file in it that
is not a workflow is skipped, and said so on stderr (the log). On start one JSON line goes to
stdout, `{"listening": URL, "workflows": [...], "store": PATH}`, with the real port when
`--port 0` asked for any free one.

Stopping does not end jobs: each keeps its checkpoint in the store, and the next start of the
server (with the same store) wakes it where it was, as it delivers the callbacks it had not.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.logs.chain import get_logger
from lamrunner.logs.masking import Secrets
from lamrunner.server import app as api
from lamrunner.server import auth
from lamrunner.server.callbacks import CallbackPolicy, CallbackSender
from lamrunner.server.jobs import Job, JobService, Served
from lamrunner.store.callbacks import CallbackOutbox

WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class ServeOptions:
    paths: tuple[str, ...]
    store: Path
    host: str = "127.0.0.1"
    port: int = 8780
    configs: tuple[str, ...] = ()
    api_key_env: str | None = None
    signing_key_env: str | None = None
    retention: float = 7 * 86400.0
    hold: float = 60.0
    max_body: int = 10 * 1000 * 1000
    callbacks: CallbackPolicy = field(default_factory=CallbackPolicy)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def load_served(paths: tuple[str, ...]) -> dict[str, Served]:
    """Each workflow by its name; a folder's files that are not workflows are skipped, logged."""
    served: dict[str, Served] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = [_in_folder(f) for f in sorted(path.iterdir()) if _candidate(f)]
            loaded = [item for item in found if item is not None]
            if not loaded:
                raise DefinitionError(f"{given}: no workflow file (*.yaml, *.yml, *.json) in it")
        elif path.exists():
            loaded = [Served(load_workflow(path), str(path.resolve()))]
        else:
            raise DefinitionError(f"{given}: no such file or folder")
        for item in loaded:
            _add(served, item)
    return served


def _candidate(file: Path) -> bool:
    return file.is_file() and file.suffix.lower() in WORKFLOW_SUFFIXES


def _in_folder(file: Path) -> Served | None:
    try:
        return Served(load_workflow(file), str(file.resolve()))
    except DefinitionError as exc:
        get_logger().warning("serve.skipped", file=str(file), reason=exc.message)
        return None


def _add(served: dict[str, Served], item: Served) -> None:
    name = item.workflow.name
    other = served.get(name)
    if other is not None and other.file != item.file:
        raise DefinitionError(
            f"two workflows are named {name!r}: {other.file} and {item.file}; "
            "rename one (its `name:`) or serve only one of them"
        )
    served[name] = item


def config_files(files: tuple[str, ...]) -> dict[str, Path]:
    """--config files by name (the file name without its suffix): `?configuration=NAME`."""
    configs: dict[str, Path] = {}
    for given in files:
        path = Path(given)
        if not path.is_file():
            raise DefinitionError(f"--config {given}: no such file")
        if path.stem in configs:
            raise DefinitionError(
                f"--config: two config files are named {path.stem!r} "
                f"({configs[path.stem]} and {path.resolve()}); ?configuration= names them "
                "by file name, so rename one"
            )
        configs[path.stem] = path.resolve()
    return configs


@dataclass
class Server:
    """A started server (for the CLI and for tests): its URL, and how to stop it."""

    url: str
    service: JobService
    sender: CallbackSender
    runner: web.AppRunner
    outbox: CallbackOutbox
    workflows: tuple[str, ...]

    async def close(self) -> None:
        await self.runner.cleanup()  # stops listening, then the jobs (on_shutdown), then waits
        await self.sender.close()
        self.outbox.close()


async def start(options: ServeOptions) -> Server:
    """Check everything, then start the jobs, the callbacks and the listener."""
    key = auth.api_key(options.api_key_env, options.env)
    auth.check_bind(options.host, key)
    signing = auth.api_key(options.signing_key_env, options.env) or key
    served = load_served(options.paths)
    configs = config_files(options.configs)
    service = JobService(
        served,
        configs,
        options.store,
        hold=options.hold,
        retention=options.retention,
        env=options.env,
    )
    outbox = CallbackOutbox(options.store)
    sender = CallbackSender(outbox, key=signing, policy=options.callbacks)
    origin: list[str] = []  # the server's URL, once it listens (large results' pointers)
    service.listen(_on_job_end(sender, served, origin))
    await service.start()
    await sender.start()
    settings = api.Settings(
        api_key=None if key is None else auth.ApiKey(key),
        max_body=options.max_body,
        workflows=tuple(served),
        link_local={n: s.workflow.network.allow_link_local for n, s in served.items()},
        store_path=options.store,
        secrets_for=_secrets_for(served, configs, options.env),
    )
    app = api.make_app(service, settings)

    async def stop_jobs(_app: web.Application) -> None:
        await service.close()  # handover: checkpoints stay; sync callers waiting get a 503

    app.on_shutdown.append(stop_jobs)
    runner = web.AppRunner(
        app, access_log_class=api.AccessLog, handle_signals=False, shutdown_timeout=5.0
    )
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()  # closes the service too
        await sender.close()
        outbox.close()
        raise DefinitionError(
            f"--host {options.host} --port {options.port}: cannot listen ({exc.strerror or exc})"
        ) from None
    origin.append(_url(options.host, runner))
    return Server(origin[0], service, sender, runner, outbox, tuple(served))


def _on_job_end(sender: CallbackSender, served: Mapping[str, Served], origin: list[str]) -> Any:
    """The listener that queues a job's callback with its final document (large results as
    an absolute pointer: the receiver is elsewhere)."""

    def ended(job: Job) -> None:
        if not job.callback_url:
            return
        item = served.get(job.workflow)
        allow = bool(item and item.workflow.network.allow_link_local)
        document = job.document()
        if job.large and origin:
            document["result"] = {"is_url": True, "url": f"{origin[0]}/jobs/{job.job_id}/result"}
        body = json.dumps(document, ensure_ascii=False)
        sender.add(job.job_id, job.callback_url, body, allow_link_local=allow)

    return ended


def _secrets_for(
    served: Mapping[str, Served], configs: Mapping[str, Path], env: Mapping[str, str]
) -> Callable[[str], Secrets | None]:
    """A served workflow's secrets under every configuration it may run with: the page masks
    step results with them."""
    known: dict[str, Secrets] = {}
    for name, item in served.items():
        secrets = Secrets()
        layers = [[str(path)] for path in configs.values()] or [[]]
        for files in layers:
            try:
                secrets.add_config(build_config(item.workflow.config, files, (), env))
            except DefinitionError:
                continue  # the service refused it at start already
        known[name] = secrets
    return known.get


def _url(host: str, runner: web.AppRunner) -> str:
    port = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve(options: ServeOptions, stdout: TextIO) -> int:
    """Run until SIGTERM or SIGINT; 0 when stopped so."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        handled.append(signal.SIGINT)
    for signum in handled:  # before the announcement: a script may signal right after it
        loop.add_signal_handler(signum, stopped.set)
    try:
        server = await start(options)
    except BaseException:
        for signum in handled:
            loop.remove_signal_handler(signum)
        raise
    announce = {
        "listening": server.url,
        "workflows": sorted(server.workflows),
        "store": str(options.store),
    }
    stdout.write(json.dumps(announce) + "\n")
    stdout.flush()
    get_logger().info("serve.listening", url=server.url, workflows=announce["workflows"])
    try:
        await stopped.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        get_logger().info("serve.stopping", hint="jobs keep their checkpoints")
        await server.close()
    return 0
