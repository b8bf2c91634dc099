"""The OpenAPI 3.1 document of `lamrunner serve`, served at /openapi.json.

Written out as data, one function per kind of thing (parameters, the job schema, the error
schema), so the test that keeps it true (every route of the app is here and every path here
is a route; real answers validate against these schemas) reads it the way a client would.
"""

from __future__ import annotations

from typing import Any

from lamrunner import __version__
from lamrunner.server.jobs import JOB_STATUSES

JSON = "application/json"
Schema = dict[str, Any]

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "step": {"type": ["string", "null"]},
                },
            },
            "job_id": {"type": "string"},
        },
    },
    "LargeResult": {
        "type": "object",
        "required": ["is_url", "url"],
        "properties": {"is_url": {"const": True}, "url": {"type": "string"}},
    },
    "Job": {
        "type": "object",
        "required": ["job_id", "status", "created_at", "updated_at"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"enum": list(JOB_STATUSES)},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "workflow": {"type": "string"},
            "result": {"description": "completed: the output (or a LargeResult); expired: a stub"},
            "error": {
                "description": "failed: why",
                "type": "string",
            },
        },
    },
    "JobAccepted": {
        "type": "object",
        "required": ["job_id", "status", "created_at"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"const": "pending"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "next"],
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "next": {
                "type": ["string", "null"],
                "description": "pass as `before` for the next page; null on the last",
            },
        },
    },
    "JobStatus": {
        "type": "object",
        "required": ["job_id", "status", "created_at", "updated_at"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"enum": list(JOB_STATUSES)},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["ok"],
        "properties": {"ok": {"const": True}, "workflows": {"type": "array"}},
    },
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: Schema | None = None) -> Schema:
    content: Schema = {JSON: {"schema": schema if schema is not None else {}}}
    return {"description": description, "content": content}


def _errors(*codes: int) -> dict[str, Schema]:
    why = {
        400: "bad request: the message names what is wrong and where",
        401: "missing or wrong API key",
        404: "no such workflow or job",
        409: "the job is not in a state that allows it",
        413: "the request body is over the server's --max-body",
        500: "internal error",
    }
    return {str(code): _json(why[code], _ref("Error")) for code in codes}


def _path(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


WORKFLOW = _path("name", "the workflow's `name`")


def _workflow_param(names: tuple[str, ...]) -> Schema:
    """The `name` parameter: one of the served workflows, when the server says which."""
    if not names:
        return WORKFLOW
    return {**WORKFLOW, "schema": {"type": "string", "enum": list(names)}}


JOB_ID = _path("job_id", "the id the submission answered")
EXECUTE_QUERY = [
    _query("configuration", "a config file the server was given (--config), by its name"),
    _query("start_from_step", "the step to start at (1: the first)", {"type": "integer"}),
    _query("end_at_step", "the last step to run (1: the first)", {"type": "integer"}),
    _query("callback_url", "POST the final job here when it ends (http or https)"),
]
LIST_QUERY = [
    _query("status", "only jobs with this status", {"enum": list(JOB_STATUSES)}),
    _query("limit", "at most this many (1-500, default 50)", {"type": "integer"}),
    _query("before", "the `next` of the previous page"),
]
BODY = {
    "required": False,
    "description": "the workflow input (any JSON; an empty body is {})",
    "content": {JSON: {"schema": {}}},
}


def _job_view(summary: str, schema: str) -> Schema:
    return {
        "summary": summary,
        "responses": {"200": _json(summary, _ref(schema)), **_errors(401, 404)},
    }


def _result_view(summary: str) -> Schema:
    return {
        "summary": summary,
        "responses": {
            "200": _json("the result JSON (an expired job's stub)"),
            **_errors(401, 404, 409),
        },
    }


def paths(names: tuple[str, ...] = ()) -> dict[str, Schema]:
    """Every route of the app, by its path; `names`: the served workflows."""
    workflow = _workflow_param(names)
    workflow_and_job = [workflow, JOB_ID]
    return {
        "/health": {
            "get": {
                "summary": "liveness; needs no key",
                "security": [],
                "responses": {"200": _json("the server is up", _ref("Health"))},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "this document (it names the served workflows)",
                "responses": {"200": _json("the OpenAPI document"), **_errors(401)},
            }
        },
        "/workflow/execute/{name}": {
            "parameters": [workflow],
            "post": {
                "summary": "run the workflow and answer with its result (Laminar's execute)",
                "parameters": EXECUTE_QUERY,
                "requestBody": BODY,
                "responses": {
                    "200": _json("the last step's output"),
                    "202": {
                        **_json(
                            "the run waits for a poll more than --hold away: the job; "
                            "poll Location",
                            _ref("Job"),
                        ),
                        "headers": {
                            "Location": {"schema": {"type": "string"}},
                            "Retry-After": {"schema": {"type": "integer"}},
                        },
                    },
                    "500": _json(
                        "the run failed (error.type names why) or an internal error",
                        _ref("Error"),
                    ),
                    "default": _json("a step's lam.response: its statusCode, its object"),
                    **_errors(400, 401, 404, 413),
                },
            },
        },
        "/workflow/execute/{name}/async": {
            "parameters": [workflow],
            "post": {
                "summary": "start the workflow as a job; poll Location",
                "parameters": EXECUTE_QUERY,
                "requestBody": BODY,
                "responses": {
                    "202": {
                        **_json("the job was accepted", _ref("JobAccepted")),
                        "headers": {
                            "Location": {"schema": {"type": "string"}},
                            "Retry-After": {"schema": {"type": "integer"}},
                        },
                    },
                    **_errors(400, 401, 404, 413),
                },
            },
        },
        "/page/static/{name}": {
            "parameters": [_path("name", "page.js or page.css")],
            "get": {
                "summary": "the runs page's script and stylesheet",
                "responses": {
                    "200": {
                        "description": "the asset",
                        "content": {"text/javascript": {}, "text/css": {}},
                    },
                    **_errors(401, 404),
                },
            },
        },
        "/jobs": {
            "get": {
                "summary": "jobs, newest first",
                "parameters": [*LIST_QUERY, _query("workflow", "only this workflow's jobs")],
                "responses": {"200": _json("a page of jobs", _ref("JobList")), **_errors(400, 401)},
            }
        },
        "/jobs/{job_id}": {"parameters": [JOB_ID], "get": _job_view("the job", "Job")},
        "/jobs/{job_id}/result": {
            "parameters": [JOB_ID],
            "get": _result_view("a completed job's result, however large"),
        },
        "/jobs/{job_id}/cancel": {
            "parameters": [JOB_ID],
            "post": {
                "summary": "cancel the job: its polls stop, nothing more is sent",
                "responses": {
                    "200": _json("the job, canceled", _ref("Job")),
                    **_errors(401, 404, 409),
                },
            },
        },
        "/jobs/{job_id}/resume": {
            "parameters": [JOB_ID],
            "post": {
                "summary": "resume a failed or canceled job from where it stopped",
                "responses": {
                    "200": _json("the job, pending again", _ref("Job")),
                    **_errors(401, 404, 409),
                },
            },
        },
        "/workflow/{name}/executions": {
            "parameters": [workflow],
            "get": {
                "summary": "the workflow's jobs, newest first (Laminar's executions)",
                "parameters": LIST_QUERY,
                "responses": {
                    "200": _json("a page of jobs", _ref("JobList")),
                    **_errors(400, 401, 404),
                },
            },
        },
        "/workflow/{name}/executions/{job_id}": {
            "parameters": workflow_and_job,
            "get": _job_view("one execution (the job)", "Job"),
        },
        "/workflow/{name}/executions/{job_id}/status": {
            "parameters": workflow_and_job,
            "get": _job_view("one execution's status", "JobStatus"),
        },
        "/workflow/{name}/executions/{job_id}/result": {
            "parameters": workflow_and_job,
            "get": _result_view("one execution's result"),
        },
    }


def document(
    extra_paths: dict[str, Schema] | None = None, workflows: tuple[str, ...] = ()
) -> Schema:
    """The whole document; `extra_paths`: routes another part of the server adds (the page);
    `workflows`: the served names (the `name` parameter's values)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lamrunner serve",
            "version": __version__,
            "description": "Run Laminar-style workflows over HTTP: synchronously, or as "
            "jobs that survive restarts. See docs/server.md.",
        },
        "paths": {**paths(workflows), **(extra_paths or {})},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
                "ApiKeyCookie": {"type": "apiKey", "in": "cookie", "name": "lamrunner_api_key"},
            },
        },
        "security": [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}, {"ApiKeyCookie": []}],
    }
