"""The HTTP API of `lamrunner serve`: the aiohttp.web Application and its handlers.

Handlers are thin: they read the request (the body capped at --max-body, JSON errors with
their line and column), ask the JobService, and shape its answer as Laminar's callers expect
(sync execute) or as seed 004's job API does (async jobs). Two middlewares wrap them all:
`errors` turns every failure — a bad request, aiohttp's own 404/405/413, a bug — into one JSON
error `{"error": {"type", "message"}}` (a bug's traceback goes to the log, never the body),
and `authenticate` checks the API key. The access log goes through lamrunner's log chain with
the `api_key` query parameter masked.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from lamrunner.definition.yamlfile import parse_json
from lamrunner.errors import DefinitionError, LamrunnerError
from lamrunner.http.netpolicy import is_blocked
from lamrunner.logs.chain import get_logger
from lamrunner.runner.state import iso_ms
from lamrunner.server import auth, openapi
from lamrunner.server.callbacks import shown_url
from lamrunner.server.jobs import JOB_STATUSES, Job, JobRequestError, JobService
from lamrunner.server.page import PAGE_PATHS, add_page_routes
from lamrunner.server.views import SecretsFor
from lamrunner.units import format_size

RETRY_AFTER = 2  # seconds a poller of a new job is asked to wait
MAX_LIST = 500
ENDED = ("completed", "failed", "canceled", "expired")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Settings:
    """What the handlers need besides the JobService."""

    api_key: auth.ApiKey | None = None
    max_body: int = 10 * 1000 * 1000
    workflows: tuple[str, ...] = ()  # the served names, for "unknown workflow" messages
    link_local: Mapping[str, bool] = field(default_factory=dict)  # name -> allowLinkLocal
    store_path: Path | None = None  # the run store the runs page reads (None: no page)
    secrets_for: SecretsFor | None = None  # a served workflow's secrets, for the page


class ApiError(LamrunnerError):
    """A request the API refuses: `status`, a `kind` (the error's type) and the message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


SERVICE = web.AppKey("service", JobService)
SETTINGS = web.AppKey("settings", Settings)
KINDS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed"}
KINDS |= {409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType"}


def make_app(service: JobService, settings: Settings) -> web.Application:
    app = web.Application(middlewares=[errors, authenticate], client_max_size=settings.max_body)
    app[SERVICE] = service
    app[SETTINGS] = settings
    app.add_routes(ROUTES)
    if settings.store_path is not None:
        served = {name: one.workflow for name, one in service.served.items()}
        add_page_routes(
            app, settings.store_path, secrets_for=settings.secrets_for, workflows=served
        )
    return app


# -- middlewares ---------------------------------------------------------------------------


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON error; never a traceback, never aiohttp's HTML page."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.kind, exc.message)
    except JobRequestError as exc:
        return error_response(exc.status, KINDS.get(exc.status, "BadRequest"), exc.message)
    except DefinitionError as exc:
        return error_response(400, "BadRequest", exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # a redirect
        return error_response(exc.status, _kind(exc), _http_message(request, exc))
    except Exception as exc:  # noqa: BLE001 - a bug: the caller gets a 500, the log the trace
        get_logger().error(
            "server.internal_error",
            method=request.method,
            path=request.path,
            exception=type(exc).__name__,
            trace=traceback.format_exc(),
        )
        return error_response(
            500,
            "InternalError",
            f"internal error ({type(exc).__name__}): a bug in lamrunner, not in your request; "
            "the server's log has the details",
        )


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.app[SETTINGS].api_key
    if key is None or request.path in auth.UNAUTHENTICATED:
        return await handler(request)
    given = auth.given_key(request.headers, request.query, request.cookies)
    if not key.matches(given):
        raise ApiError(401, "Unauthorized", auth.UNAUTHORIZED_MESSAGE)
    if (
        request.method == "GET"
        and _is_page(request.path)
        and key.matches(request.query.get(auth.QUERY))
    ):
        return _cookie_redirect(request, key)
    return await handler(request)


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith("/runs/")


def _cookie_redirect(request: web.Request, key: auth.ApiKey) -> web.StreamResponse:
    """The runs page opened as /?api_key=KEY: keep the key in a cookie, drop it from the URL."""
    rest = [(k, v) for k, v in request.query.items() if k != auth.QUERY]
    location = request.rel_url.raw_path + (f"?{urlencode(rest)}" if rest else "")
    response = web.Response(status=303, headers={"Location": location})
    response.set_cookie(
        auth.COOKIE, key.value, httponly=True, samesite="Strict", path="/", max_age=7 * 86400
    )
    return response


def error_response(
    status: int,
    kind: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return _json({"error": {"type": kind, "message": message}, **extra}, status, headers)


def _kind(exc: web.HTTPException) -> str:
    return KINDS.get(exc.status, exc.reason.replace(" ", "") or "HttpError")


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{request.method} is not allowed on {request.path}; it answers {allowed}"
    if isinstance(exc, web.HTTPNotFound):
        return f"no such endpoint: {request.method} {request.path} (see /openapi.json)"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return _too_large(request.app[SETTINGS].max_body)
    return exc.text if exc.text and not exc.text.startswith("<") else exc.reason


def _too_large(limit: int) -> str:
    return f"the request body is over the server's limit of {format_size(limit)} (--max-body)"


# -- request reading -------------------------------------------------------------------------


async def _input(request: web.Request) -> Any:
    """The workflow input: the JSON body, {} when empty."""
    limit = request.app[SETTINGS].max_body
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "PayloadTooLarge", _too_large(limit))
    raw = await request.read()  # aiohttp stops reading at the cap: 413 then too
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "BadRequest", f"the request body is not UTF-8 (byte {exc.start}); JSON expected"
        ) from None
    if not text.strip():
        return {}
    return parse_json(text, "the request body")


def _workflow(request: web.Request) -> str:
    name = request.match_info["name"]
    served = request.app[SETTINGS].workflows
    if name not in served:
        known = ", ".join(served) or "none"
        raise ApiError(404, "NotFound", f"no workflow named {name!r}; this server runs: {known}")
    return name


def _callback_url(request: web.Request, workflow: str) -> str | None:
    url = request.query.get("callback_url")
    if url is None:
        return None
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise ApiError(
            400, "BadRequest", "callback_url: spaces and control characters must be %-encoded"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"callback_url: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(
            400, "BadRequest", f"callback_url: {url!r} is not an http:// or https:// URL"
        )
    allowed = request.app[SETTINGS].link_local.get(workflow, False)
    if is_blocked(parts.hostname) and not allowed:
        raise ApiError(
            400,
            "BadRequest",
            f"callback_url: {parts.hostname} is a link-local / cloud metadata address; "
            "the workflow must set network: {allowLinkLocal: true} to allow it",
        )
    return url


async def _submit(request: web.Request) -> Job:
    name = _workflow(request)
    callback = _callback_url(request, name)
    data = await _input(request)
    query = request.query
    return await request.app[SERVICE].submit(
        name,
        data,
        configuration=query.get("configuration"),
        start_from_step=_step(query, "start_from_step"),
        end_at_step=_step(query, "end_at_step"),
        callback_url=callback,
    )


def _step(query: Mapping[str, str], name: str) -> int | None:
    """A step number (1 is the first step); the service checks it is one of the workflow's."""
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.strip().isdigit() or not raw.strip().isascii():
        raise ApiError(
            400, "BadRequest", f"{name}: expected a step number (1 for the first step), got {raw!r}"
        )
    return int(raw.strip())


# -- execute ---------------------------------------------------------------------------------


async def execute(request: web.Request) -> web.StreamResponse:
    """Laminar's synchronous execute: the run's result, its lam.response, or its error."""
    service = request.app[SERVICE]
    submitted = await _submit(request)
    headers = {"X-Lamrunner-Job-Id": submitted.job_id, "Location": f"/jobs/{submitted.job_id}"}
    try:
        job = await service.settled(submitted.job_id)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this request's own cancel (the client went away)
        return _stopping(submitted, headers)  # the server stops: the job goes on after
    if job.status in ("failed", "canceled"):
        error = job.error or {"type": "Failed", "message": "the run failed", "step": None}
        return _json({"error": error, "job_id": job.job_id}, 500, headers)
    if job.ended_by == "lam.response" and isinstance(job.result, dict):
        return _lam_response(job, headers)
    if job.status in ("pending", "processing") and job.ended_by is None:
        # it waits as a row (its next poll beyond --hold): the caller polls Location
        headers = {**headers, "Retry-After": str(RETRY_AFTER)}
        return _json(job_document(request, job), 202, headers)
    raw = service.result_json(job.job_id) if job.status == "completed" else None
    if raw is not None:  # the stored JSON as it is, however large
        return web.Response(body=raw, content_type="application/json", headers=headers)
    return _json(job.result, 200, headers)  # a resolveThenExecute's lam.result, early


def _lam_response(job: Job, headers: dict[str, str]) -> web.Response:
    """A step's lam.response: its statusCode, its object. A 1xx cannot end an answer."""
    status = job.result.get("statusCode") if isinstance(job.result, dict) else None
    if not isinstance(status, int) or isinstance(status, bool):
        status = 200
    if status < 200:
        message = (
            f"the workflow answered lam.response statusCode {status}, an informational "
            f"status that cannot end an HTTP answer; job {job.job_id} completed with it"
        )
        return error_response(500, "InvalidResponse", message, job_id=job.job_id, headers=headers)
    return _json(job.result, status, headers)


def _stopping(job: Job, headers: dict[str, str]) -> web.Response:
    message = (
        f"the server is stopping; job {job.job_id} keeps its checkpoint and goes on when the "
        f"server starts again: poll /jobs/{job.job_id}"
    )
    return error_response(503, "ServiceUnavailable", message, job_id=job.job_id, headers=headers)


async def execute_async(request: web.Request) -> web.StreamResponse:
    job = await _submit(request)
    return _accepted(job, {})


def _accepted(job: Job, headers: dict[str, str]) -> web.Response:
    """202 and where to poll a new async job."""
    body = {"job_id": job.job_id, "status": "pending", "created_at": iso_ms(job.created_at)}
    headers = {**headers, "Location": f"/jobs/{job.job_id}", "Retry-After": str(RETRY_AFTER)}
    return _json(body, 202, headers)


# -- jobs ------------------------------------------------------------------------------------


def job_document(request: web.Request, job: Job) -> dict[str, Any]:
    """Seed 004's job object; a result of 5 MB or more is a pointer to its own URL."""
    document = job.document()
    if job.status == "completed" and job.large:
        url = f"{request.url.origin()}/jobs/{job.job_id}/result"
        document["result"] = {"is_url": True, "url": url}
    return document


def _job(request: web.Request, workflow: str | None = None) -> Job:
    job_id = request.match_info["job_id"]
    job = request.app[SERVICE].get(job_id)
    if job is None or (workflow is not None and job.workflow != workflow):
        where = f" of workflow {workflow!r}" if workflow else ""
        raise ApiError(404, "NotFound", f"no job {job_id!r}{where}")
    return job


async def get_job(request: web.Request) -> web.StreamResponse:
    return _json(job_document(request, _job(request)))


async def get_result(request: web.Request) -> web.StreamResponse:
    return _result(request, _job(request))


def _result(request: web.Request, job: Job) -> web.StreamResponse:
    if job.status == "expired":
        return _json(job.result)
    if job.status != "completed":
        raise ApiError(
            409, "Conflict", f"job {job.job_id} is {job.status}: only a completed job has a result"
        )
    raw = request.app[SERVICE].result_json(job.job_id)
    if raw is None:
        return _json(job.result)
    return web.Response(body=raw, content_type="application/json")


async def cancel_job(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    return _json(job_document(request, await request.app[SERVICE].cancel(job.job_id)))


async def resume_job(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    return _json(job_document(request, await request.app[SERVICE].resume(job.job_id)))


async def list_jobs(request: web.Request) -> web.StreamResponse:
    return _listing(request, request.query.get("workflow") or None)


def _listing(request: web.Request, workflow: str | None) -> web.StreamResponse:
    query = request.query
    status = query.get("status") or None
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(
            400, "BadRequest", f"status: {status!r} is not one of {', '.join(JOB_STATUSES)}"
        )
    limit = _limit(query.get("limit"))
    before = query.get("before") or None
    jobs = request.app[SERVICE].list(workflow=workflow, status=status, limit=limit, before=before)
    following = jobs[-1].job_id if len(jobs) == limit else None
    return _json({"jobs": [job_document(request, j) for j in jobs], "next": following})


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 50
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST:
        raise ApiError(400, "BadRequest", f"limit: {raw!r} is not a whole number from 1 to 500")
    return limit


# -- Laminar's views of the same jobs ----------------------------------------------------------


async def executions(request: web.Request) -> web.StreamResponse:
    return _listing(request, _workflow(request))


async def execution(request: web.Request) -> web.StreamResponse:
    return _json(job_document(request, _job(request, _workflow(request))))


async def execution_status(request: web.Request) -> web.StreamResponse:
    job = _job(request, _workflow(request))
    document = job_document(request, job)
    keys = ("job_id", "status", "created_at", "updated_at")
    return _json({k: document[k] for k in keys})


async def execution_result(request: web.Request) -> web.StreamResponse:
    return _result(request, _job(request, _workflow(request)))


# -- the rest --------------------------------------------------------------------------------


async def health(request: web.Request) -> web.StreamResponse:
    return _json({"ok": True})


async def openapi_document(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    return _json(openapi.document(PAGE_PATHS, settings.workflows))


ROUTES = [
    web.get("/health", health),
    web.get("/openapi.json", openapi_document),
    web.post("/workflow/execute/{name}", execute),
    web.post("/workflow/execute/{name}/async", execute_async),
    web.get("/jobs", list_jobs),
    web.get("/jobs/{job_id}", get_job),
    web.get("/jobs/{job_id}/result", get_result),
    web.post("/jobs/{job_id}/cancel", cancel_job),
    web.post("/jobs/{job_id}/resume", resume_job),
    web.get("/workflow/{name}/executions", executions),
    web.get("/workflow/{name}/executions/{job_id}", execution),
    web.get("/workflow/{name}/executions/{job_id}/status", execution_status),
    web.get("/workflow/{name}/executions/{job_id}/result", execution_result),
]


def _json(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    text = json.dumps(value, ensure_ascii=False)
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


class AccessLog(AbstractAccessLogger):
    """One log line per request through lamrunner's chain; the api_key query value masked,
    no header logged (X-API-KEY, cookies)."""

    def log(self, request: Any, response: Any, time: float) -> None:
        get_logger().info(
            "http.request",
            method=request.method,
            path=masked_path(request.rel_url.path, request.query),
            status=response.status,
            ms=round(time * 1000, 1),
            remote=request.remote,
        )


def masked_path(path: str, query: Mapping[str, str]) -> str:
    """The path for the log: the key masked, a callback URL without its query (a token)."""
    if not query:
        return path
    shown = [(k, _shown_value(k, v)) for k, v in query.items()]
    return f"{path}?{urlencode(shown)}"


def _shown_value(name: str, value: str) -> str:
    if name == auth.QUERY:
        return "***"
    if name == "callback_url":
        try:
            return shown_url(value)
        except ValueError:
            return "***"
    return value
