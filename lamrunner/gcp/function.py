"""The HTTP function functions-framework serves: parse the request, run, answer in JSON.

    POST {"input": ..., "config": {...}, "callbackUrl": ...}   start a run
    POST <a continuation task's body>                          continue a suspended run

    200  the run finished, SUCCESS or FAILED: the run record (a FAILED run is an answer, not
         a failure of the function: the record says what failed, and Cloud Tasks must not
         run it again)
    202  the run suspended: the SUSPENDED record; its continuation is scheduled
    400  the request is wrong (not JSON, a wrong type, an unknown key): one error record
    405  not a POST
    500  the deployment is wrong (the workflow, a setting) or lamrunner has a bug
    503  Cloud Tasks did not take the continuation (transient): try again

Every answer is one JSON document; no traceback or secret is ever in one (an unexpected
exception's traceback goes to the log, masked, at debug level).
"""

from __future__ import annotations

import functools
import json
import os
import traceback
from typing import Protocol

from lamrunner.errors import DefinitionError, InternalError, LamrunnerError
from lamrunner.gcp.events import Start, parse_event
from lamrunner.gcp.runs import Invocation, Reply
from lamrunner.gcp.settings import Settings
from lamrunner.logs.chain import configure, get_logger
from lamrunner.runner.state import failed_record


class Request(Protocol):
    """What the function reads of functions-framework's (Flask's) request."""

    @property
    def method(self) -> str: ...

    def get_data(self) -> bytes: ...


Response = tuple[str, int, dict[str, str]]


def http_function(request: Request) -> Response:
    """The entry point (`--entry-point http_function`)."""
    _logs()
    if request.method != "POST":
        error = DefinitionError(f"{request.method}: not supported; POST a JSON body")
        return _response(Reply(405, failed_record(None, error.to_dict())), {"Allow": "POST"})
    try:
        reply = _answer(request.get_data())
    except Exception as exc:  # noqa: BLE001 - a bug in lamrunner: a 500 record, never a traceback
        reply = _internal(exc)
    return _response(reply)


def _answer(body: bytes) -> Reply:
    try:
        settings = Settings.from_env(os.environ)
        workflow, config = settings.load()
    except DefinitionError as exc:  # the deployment's problem, not the caller's
        return _refused(500, None, exc)
    try:
        event = parse_event(body, workflow.name)
    except DefinitionError as exc:
        return _refused(400, workflow.name, exc)
    invocation = Invocation(workflow, config, settings)
    return invocation.start(event) if isinstance(event, Start) else invocation.proceed(event)


def _refused(status: int, workflow: str | None, exc: LamrunnerError) -> Reply:
    """An invocation refused before anything ran: the record says why (runId null)."""
    get_logger().warning("request.refused", http_status=status, error=exc.message)
    return Reply(status, failed_record(workflow, exc.to_dict()))


def _internal(exc: Exception) -> Reply:
    """Names only the exception's type: its text may hold data from the run."""
    log = get_logger()
    error = InternalError(
        f"internal error ({type(exc).__name__}): this is a bug in lamrunner, not in your "
        "workflow; please report it with the function's log"
    )
    log.error("internal.error", error=error.message)
    log.debug("internal.traceback", exception=traceback.format_exc())
    return Reply(500, failed_record(None, error.to_dict()))


def _response(reply: Reply, headers: dict[str, str] | None = None) -> Response:
    try:
        text = json.dumps(reply.record, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: kept as \\u escapes, as JSON allows
        text = json.dumps(reply.record)
    return text, reply.status, {"Content-Type": "application/json", **(headers or {})}


@functools.cache
def _logs() -> None:
    """JSON log lines on stderr, once per container: Cloud Logging keeps each as one entry."""
    configure("json", 0, capture_logging=False)


__all__ = ["http_function"]
