"""A poll step at run time: its input mappings before the request, its outputs after it.

The polling itself is the engine's, as for any `loopUntil` request (`calls`): this module
only reads the GWO for `inputMappings` (the `<<mappings.name>>` values), makes the step's
GWO entry — `response` and `http` as every request has, and the outputs of seed 003's Poll
task and seed 000's full final response — and writes `outputMappings` into the GWO's
`steps_output`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lamrunner.definition.pollstep import MAPPINGS, STEPS_OUTPUT, PollStep
from lamrunner.definition.workflow import Step
from lamrunner.errors import DeadlineExceeded, LamrunnerError, PollingExhausted, TemplateError
from lamrunner.http.request import RenderedRequest
from lamrunner.jsonpath import NOTHING, write
from lamrunner.logs.masking import Secrets

SUCCESS, FAILURE, EXHAUSTED = "success", "failure", "exhausted"


def step_result(entry: Any) -> Any:
    """What the run record's `result` would be if the run ended with this GWO entry."""
    if not isinstance(entry, dict):
        return None
    if "executions" in entry:  # a lam.execute step: its children's results, in order
        return [e.get("result") for e in entry["executions"]]
    return entry["response"] if "response" in entry else entry.get("data")


def mapping_view(gwo: Mapping[str, Any], earlier: Sequence[Step]) -> dict[str, Any]:
    """The GWO as input mappings read it: `input`, `step_k`, and `steps_output` with each
    earlier step's result under its name (what outputMappings wrote there over it)."""
    outputs = {step.name: step_result(gwo.get(step.key)) for step in earlier if step.key in gwo}
    written = gwo.get(STEPS_OUTPUT)
    if isinstance(written, Mapping):
        outputs.update(written)
    return {**gwo, STEPS_OUTPUT: outputs}


def input_values(poll: PollStep, gwo: Mapping[str, Any], earlier: Sequence[Step]) -> Any:
    """The step's `{"mappings": {name: value}}`: a singular query's value, a list for one
    that may select several; a query that selects nothing is a TemplateError naming it."""
    view = mapping_view(gwo, earlier)
    values: dict[str, Any] = {}
    for mapping in poll.inputs:
        found = mapping.query.values(view)
        if not found:
            raise TemplateError(
                f"{mapping.where}: {mapping.query.text!r} selects nothing in the GWO (it has "
                f"{', '.join(sorted(map(str, view))) or 'nothing'}; steps_output has "
                f"{', '.join(sorted(map(str, view[STEPS_OUTPUT]))) or 'nothing'})"
            )
        values[mapping.name] = found[0] if mapping.query.singular else found
    return {MAPPINGS: values}


def extra_templates(output: Any) -> dict[str, Mapping[str, Any]]:
    """The template namespaces a poll step's request is rendered with (its saved output)."""
    values = output.get(MAPPINGS) if isinstance(output, Mapping) else None
    return {MAPPINGS: values if isinstance(values, Mapping) else {}}


def success_entry(
    poll: PollStep,
    stored: Mapping[str, Any],
    polls: int,
    request: RenderedRequest,
    secrets: Secrets,
) -> dict[str, Any]:
    """The GWO entry of a poll step whose successCondition held (masked)."""
    http = stored["http"]
    body = stored["response"]
    entry = {
        **stored,
        "status": SUCCESS,
        "pollCount": polls,
        "responseCode": http.get("status"),
        "responseHeaders": http.get("headers", {}),
        "responseBody": _text(body),
        "responseJson": None if isinstance(body, str) else body,
        "finalResponse": {
            "status": http.get("status"),
            "headers": http.get("headers", {}),
            "data": body,
        },
        **_request_outputs(poll, request),
    }
    return secrets.mask_data(entry)  # type: ignore[no-any-return]


def failure_entry(
    poll: PollStep, error: LamrunnerError, request: RenderedRequest, secrets: Secrets
) -> dict[str, Any]:
    """The GWO entry of a poll step that failed (failureCondition held: `failure`; its
    attempts used up or its deadline passed: `exhausted`), with its error (masked)."""
    exhausted = isinstance(error, PollingExhausted | DeadlineExceeded)
    body = getattr(error, "last_response", None)
    entry: dict[str, Any] = {
        "response": body,
        "status": EXHAUSTED if exhausted else FAILURE,
        "pollCount": getattr(error, "attempts", None),
        "responseCode": getattr(error, "last_status", getattr(error, "status", None)),
        "error": {"type": error.type_name, "message": error.message},
        **_request_outputs(poll, request),
    }
    return secrets.mask_data(entry)  # type: ignore[no-any-return]


def write_outputs(poll: PollStep, gwo: dict[str, Any], entry: Mapping[str, Any]) -> list[str]:
    """outputMappings: each source, read from the final response `{status, headers, data}`,
    written at its target under the GWO's `steps_output`; returns a warning for each source
    that selected nothing (its target gets null)."""
    final = entry.get("finalResponse", {})
    notes: list[str] = []
    for mapping in poll.outputs:
        found = mapping.source.values(final)
        if not found:
            notes.append(f"{mapping.where}: {mapping.source.text!r} selected nothing: wrote null")
        value = (found[0] if found else None) if mapping.source.singular else found
        if not isinstance(gwo.get(STEPS_OUTPUT), dict):
            gwo[STEPS_OUTPUT] = {}
        write(gwo, mapping.target, None if value is NOTHING else value)
    return notes


def _request_outputs(poll: PollStep, request: RenderedRequest) -> dict[str, Any]:
    assert poll.request.loop is not None
    interval = poll.interval
    if interval is None:
        interval = poll.request.loop.backoff.initial_delay
    return {
        "processedUrl": request.url,
        "interval": interval,
        "inputHeaders": dict(request.headers),
    }


def _text(body: Any) -> str | None:
    import json

    if body is None:
        return None
    return body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
