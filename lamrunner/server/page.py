"""The runs page: `GET /` and `GET /runs/{job_id}`, its static files, and its JSON.

The page is one HTML file with one script and one stylesheet (`static/`, no build step, no
framework, nothing fetched from elsewhere): the script reads the address (`/?status=failed&
workflow=x`, `/runs/ID`), fetches `/api/page/runs` or `/api/page/runs/{job_id}` and renders
them with DOM text nodes only, so run data (user data) can never become markup. Every answer
carries a Content-Security-Policy of `default-src 'self'` (no inline script, no other origin).
Cancel and Resume are the API's own `POST /jobs/{job_id}/cancel|resume`, which the page calls.

Authentication is the app's (its middleware guards these routes like any other; the page's
fetches send the cookie `GET /?api_key=KEY` set). Mounted by the app factory through
`add_page_routes`; `PAGE_PATHS` is these routes' part of the OpenAPI document.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import web

from lamrunner.definition.workflow import Workflow
from lamrunner.errors import LamrunnerError
from lamrunner.server.views import STATUSES, SecretsFor, run_view, runs_view
from lamrunner.store.pageviews import PageViews

ASSETS = {"page.js": "text/javascript", "page.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none';"
        " form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # run data, and a page that must show the newest script
}
VIEWS_KEY = web.AppKey("lamrunner_page_views", PageViews)


def add_page_routes(
    app: web.Application,
    store_path: str | Path,
    *,
    secrets_for: SecretsFor | None = None,
    workflows: Mapping[str, Workflow] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Mount the page on `app`, reading the run store at `store_path` (which the server has
    created). `secrets_for(workflow)`: the secrets of a served workflow's config, to mask its
    runs' step results with; `workflows`: the served workflows by name, for the workflow
    filter (without them the store is asked) and a run's steps that have not run yet;
    `clock`: now, for the duration of runs in progress."""
    static = files("lamrunner.server") / "static"
    html = (static / "page.html").read_bytes()
    assets = {name: (static / name).read_bytes() for name in ASSETS}

    async def on_startup(app: web.Application) -> None:
        app[VIEWS_KEY] = PageViews(store_path)

    async def on_cleanup(app: web.Application) -> None:
        app[VIEWS_KEY].close()

    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=html, content_type="text/html", headers=SECURITY_HEADERS)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            return _error(404, "NotFound", f"no page asset {name!r}")
        return web.Response(body=assets[name], content_type=ASSETS[name], headers=SECURITY_HEADERS)

    async def runs(request: web.Request) -> web.Response:
        return _answer(lambda: runs_view(request.app[VIEWS_KEY], request.query, clock(), workflows))

    async def run(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        return _answer(
            lambda: run_view(request.app[VIEWS_KEY], job_id, clock(), secrets_for, workflows),
            missing=f"no run {job_id!r} in the run store",
        )

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/", page)
    app.router.add_get("/runs/{job_id}", page)
    app.router.add_get("/page/static/{name}", asset)
    app.router.add_get("/api/page/runs", runs)
    app.router.add_get("/api/page/runs/{job_id}", run)


def _answer(
    view: Callable[[], Mapping[str, Any] | None], missing: str = "not found"
) -> web.Response:
    """The view as JSON; bad query input is a 400 naming it, an unknown run a 404."""
    try:
        shown = view()
    except LamrunnerError as exc:
        return _error(400, exc.type_name, exc.message)
    if shown is None:
        return _error(404, "NotFound", missing)
    return web.json_response(
        shown, headers=SECURITY_HEADERS, dumps=lambda v: json.dumps(v, default=str)
    )


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"type": kind, "message": message}}, status=status, headers=SECURITY_HEADERS
    )


# -- the routes' part of the OpenAPI document (openapi.document(extra_paths=PAGE_PATHS)) ------

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_HTML = {"200": {"description": "the runs page", "content": {"text/html": {}}}}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_RUNS_QUERY = [
    _query("status", "only runs in this status", {"type": "string", "enum": list(STATUSES)}),
    _query("workflow", "only runs of this workflow", {"type": "string"}),
    _query("before", "the `older` cursor of the previous page", {"type": "string"}),
    _query("limit", "runs per page (1 to 200, default 50)", {"type": "string"}),
]
_OBJECT = {"type": "object"}
PAGE_PATHS: dict[str, Any] = {
    "/": {"get": {"summary": "the runs page (HTML)", "responses": _HTML}},
    "/runs/{job_id}": {
        "parameters": [_JOB_ID],
        "get": {"summary": "a run's page (HTML)", "responses": _HTML},
    },
    "/api/page/runs": {
        "get": {
            "summary": "the runs page's list: newest first, filtered, paged",
            "parameters": _RUNS_QUERY,
            "responses": {
                "200": {
                    "description": "runs",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["runs", "older", "live"],
                                "properties": {
                                    "runs": {"type": "array", "items": _OBJECT},
                                    "older": {"type": ["string", "null"]},
                                    "live": {"type": "boolean"},
                                },
                            }
                        }
                    },
                },
                "400": {"description": "a bad filter, limit or cursor", "content": _ERROR},
                "401": {"description": "missing or wrong API key", "content": _ERROR},
            },
        }
    },
    "/api/page/runs/{job_id}": {
        "parameters": [_JOB_ID],
        "get": {
            "summary": "a run's page: its steps, polls and attempts",
            "responses": {
                "200": {
                    "description": "the run",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["run", "steps", "children"],
                                "properties": {
                                    "run": _OBJECT,
                                    "steps": {"type": "array", "items": _OBJECT},
                                    "children": {"type": "array", "items": _OBJECT},
                                },
                            }
                        }
                    },
                },
                "401": {"description": "missing or wrong API key", "content": _ERROR},
                "404": {"description": "no such run", "content": _ERROR},
            },
        },
    },
}
