"""The saved run state: typed records, a versioned JSON form, schema-1 states loaded, newer ones
and damaged ones refused by name (a DefinitionError, never a KeyError or TypeError)."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamrunner.decide.polling import OPTIONAL_FIELDS, PollState
from lamrunner.errors import DefinitionError
from lamrunner.runner.state import SCHEMA, ElementState, PendingStep, RunState

# -- strategies ----------------------------------------------------------------------------------

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
texts = st.text(max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)
poll_states = st.builds(
    PollState,
    started_at=times,
    deadline=st.none() | times,
    attempt=st.integers(0, 10_000),
    requests=st.integers(0, 10_000),
    next_due=times,
    last_status=st.none() | st.integers(100, 599),
    last_excerpt=st.none() | texts,
    last_error=st.none() | texts,
    throttled=st.integers(0, 10_000),
    throttled_s=st.floats(0, 1e7, allow_nan=False),
    follow_url=st.none() | texts,
    progress=st.none() | st.floats(-1e6, 1e6),
    progress_origin=st.none() | st.lists(st.floats(0, 2e9), min_size=2, max_size=2),
    fingerprint=st.none() | texts,
    changed_at=st.none() | st.floats(0, 2e9),
    last_response=st.none() | json_objects,
)
results = st.fixed_dictionaries({"response": json_values, "http": json_objects})
elements = (
    st.none() | st.builds(ElementState, poll=poll_states) | st.builds(ElementState, result=results)
)
pending_steps = st.builds(
    PendingStep,
    output=st.fixed_dictionaries({"lam.httpRequests": st.lists(json_objects, max_size=3)}),
    elements=st.lists(elements, max_size=4),
    keys=st.none() | st.lists(st.uuids().map(str), min_size=1, max_size=4),
)
run_states = st.builds(
    RunState,
    run_id=texts,
    workflow=texts,
    gwo=json_objects,
    next_step=st.integers(0, 50),
    pending=st.none() | pending_steps,
    status=st.sampled_from(["RUNNING", "SUCCESS", "FAILED"]),
    result=json_values,
    error=st.none() | json_objects,
    meta=json_objects,
)


# -- round trips ---------------------------------------------------------------------------------


@settings(max_examples=300)
@given(run_states)
def test_every_run_state_round_trips_through_json(state):
    saved = state.to_dict()
    assert saved["schema"] == SCHEMA
    assert RunState.from_dict(saved) == state
    assert RunState.from_dict(json.loads(json.dumps(saved, allow_nan=False))) == state


@given(poll_states)
def test_every_poll_state_round_trips_through_json(poll):
    saved = poll.to_dict()
    every = [f.name for f in dataclasses.fields(PollState)]
    throttle = ("throttled", "throttled_s")  # saved only when not 0
    # flat, every field, the optional ones only when set
    assert list(saved) == [
        n
        for n in every
        if (n not in OPTIONAL_FIELDS or getattr(poll, n) is not None)
        and (n not in throttle or poll.throttled_s or poll.throttled)
    ]
    assert PollState.from_dict(json.loads(json.dumps(saved))) == poll


def test_a_poll_state_saved_without_the_optional_keys_loads_as_it_was():
    before_issue_10 = {
        "started_at": 1.0,
        "deadline": None,
        "attempt": 2,
        "requests": 3,
        "next_due": 5.0,
        "last_status": 202,
        "last_excerpt": "{}",
        "last_error": None,
    }
    poll = PollState.from_dict(before_issue_10)
    assert poll.follow_url is None and poll.progress is None and poll.changed_at is None
    assert poll.to_dict() == before_issue_10
    with pytest.raises(DefinitionError, match=r"progress_origin: expected \[epoch seconds"):
        PollState.from_dict({**before_issue_10, "progress_origin": [1]})
    with pytest.raises(DefinitionError, match=r"progress: expected a number or null"):
        PollState.from_dict({**before_issue_10, "progress": "50%"})


@given(elements.filter(lambda e: e is not None))
def test_every_element_round_trips_through_json(element):
    assert ElementState.from_dict(json.loads(json.dumps(element.to_dict()))) == element


@given(pending_steps)
def test_every_pending_step_round_trips_through_json(pending):
    assert PendingStep.from_dict(json.loads(json.dumps(pending.to_dict()))) == pending


def test_poll_state_to_dict_is_a_copy():
    poll = PollState(started_at=1.0)
    saved = poll.to_dict()
    poll.attempt = 5
    assert saved["attempt"] == 0


def test_element_is_a_poll_or_a_result():
    poll = PollState(started_at=1.0)
    assert ElementState(poll=poll).to_dict() == {"poll": poll.to_dict()}
    assert not ElementState(poll=poll).done
    done = ElementState(result={"response": 1, "http": {"status": 200}})
    assert done.done and done.to_dict() == {"result": {"response": 1, "http": {"status": 200}}}


# -- schema 1: the layout the previous release saved ---------------------------------------------

# dataclasses.asdict(RunState) as the release before versioned states wrote it: no "schema";
# elements are null (not started), {"poll": PollState.__dict__} or {"result": GWO entry}.
SCHEMA_1 = {
    "run_id": "20250101-000000-abc123",
    "workflow": "process-dataset",
    "gwo": {
        "input": {"datasetId": "ds-7"},
        "step_1": {"response": {"jobId": "j1"}, "http": {"status": 202, "attempts": 1}},
    },
    "next_step": 1,
    "pending": {
        "output": {
            "lam.httpRequests": [
                {"method": "GET", "url": "http://api/jobs/1"},
                {"method": "GET", "url": "http://api/jobs/2", "loopUntil": {"condition": "true"}},
                {"method": "GET", "url": "http://api/jobs/3"},
            ]
        },
        "elements": [
            {"result": {"response": {"state": "done"}, "http": {"status": 200, "attempts": 1}}},
            {
                "poll": {
                    "started_at": 1735689600.25,
                    "deadline": 1735689660.25,
                    "attempt": 3,
                    "requests": 4,
                    "next_due": 1735689608.5,
                    "last_status": 202,
                    "last_excerpt": '{"state": "processing"}',
                    "last_error": None,
                }
            },
            None,
        ],
    },
    "status": "RUNNING",
    "result": None,
    "error": None,
    "meta": {},
}


def test_a_schema_1_state_loads_as_the_same_run():
    state = RunState.from_dict(copy.deepcopy(SCHEMA_1))

    assert state == RunState(
        run_id="20250101-000000-abc123",
        workflow="process-dataset",
        gwo=SCHEMA_1["gwo"],
        next_step=1,
        pending=PendingStep(
            output=SCHEMA_1["pending"]["output"],
            elements=[
                ElementState(
                    result={"response": {"state": "done"}, "http": {"status": 200, "attempts": 1}}
                ),
                ElementState(
                    poll=PollState(
                        started_at=1735689600.25,
                        deadline=1735689660.25,
                        attempt=3,
                        requests=4,
                        next_due=1735689608.5,
                        last_status=202,
                        last_excerpt='{"state": "processing"}',
                        last_error=None,
                    )
                ),
                None,
            ],
        ),
    )
    assert state.to_dict() == {"schema": 2, **SCHEMA_1}  # saved again: schema 2, same layout


def test_a_finished_schema_1_state_loads():
    finished = {**SCHEMA_1, "pending": None, "next_step": 2, "status": "FAILED"}
    finished["error"] = {"type": "PollingExhausted", "message": "no", "step": "step_2"}
    state = RunState.from_dict(finished)
    assert state.finished and state.pending is None and state.error["type"] == "PollingExhausted"


@pytest.mark.parametrize("schema", [3, 17])
def test_a_newer_schema_is_refused_saying_so(schema):
    with pytest.raises(DefinitionError) as caught:
        RunState.from_dict({**SCHEMA_1, "schema": schema})
    assert (
        f"saved by a newer lamrunner: schema {schema}; this one reads 1–2" in caught.value.message
    )


@pytest.mark.parametrize("schema", [0, -1, "2", 2.0, True, None])
def test_a_schema_that_is_not_a_version_is_refused(schema):
    with pytest.raises(DefinitionError, match="schema: expected a version number"):
        RunState.from_dict({**SCHEMA_1, "schema": schema})


# -- bad shapes ----------------------------------------------------------------------------------


def changed(path: tuple[Any, ...], value: Any = ..., data: Any = None) -> Any:
    """SCHEMA_1 with the item at `path` set to `value` (deleted when no value is given)."""
    data = copy.deepcopy(SCHEMA_1) if data is None else data
    where = data
    for key in path[:-1]:
        where = where[key]
    if value is ...:
        del where[path[-1]]
    else:
        where[path[-1]] = value
    return data


POLL = ("pending", "elements", 1, "poll")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "saved run state: expected an object, got a list"),
        (changed(("gwo",)), "saved run state (schema 1): missing gwo"),
        (changed(("meta",)), "missing meta"),
        (changed(("surprise",), 1), "saved run state (schema 1): unknown surprise"),
        (changed(("run_id",), 7), "run_id: expected a string, got a number (7)"),
        (changed(("gwo",), []), "gwo: expected an object, got a list"),
        (changed(("next_step",), -1), "next_step: expected a step index >= 0"),
        (changed(("next_step",), True), "next_step: expected a step index >= 0"),
        (
            changed(("status",), "DONE"),
            "status: expected one of RUNNING, SUSPENDED, SUCCESS, FAILED",
        ),
        (changed(("error",), "boom"), "error: expected an object or null, got a string"),
        (changed(("pending",), []), "pending: expected an object, got a list"),
        (changed(("pending", "output")), "pending: missing output"),
        (changed(("pending", "output"), None), "pending.output: expected the handler's"),
        (changed(("pending", "elements"), {}), "pending.elements: expected a list"),
        (changed(("pending", "elements", 2), 5), "pending.elements[2]: expected an object"),
        (changed(("pending", "elements", 2), {}), "pending.elements[2]: expected one of poll"),
        (
            changed(("pending", "elements", 2), {"poll": {}, "result": {}}),
            "pending.elements[2]: expected one of poll, result, error or fetch, got poll, result",
        ),
        (changed(("pending", "elements", 2), {"done": 1}), "pending.elements[2]: unknown done"),
        (
            changed(("pending", "elements", 0, "result", "http")),
            "pending.elements[0].result: missing http",
        ),
        (
            changed(("pending", "elements", 0, "result", "http"), 200),
            "pending.elements[0].result.http: expected an object, got a number (200)",
        ),
        (changed(POLL, "x"), 'pending.elements[1].poll: expected an object, got "x"'),
        (
            changed((*POLL, "deadline")),
            "saved run state (schema 1): pending.elements[1].poll: missing deadline",
        ),
        (changed((*POLL, "paused"), True), "pending.elements[1].poll: unknown paused"),
        (
            changed((*POLL, "attempt"), "3"),
            'pending.elements[1].poll: attempt: expected a whole number >= 0, got "3"',
        ),
        (changed((*POLL, "attempt"), -1), "attempt: expected a whole number >= 0, got -1"),
        (changed((*POLL, "requests"), 1.5), "requests: expected a whole number >= 0, got 1.5"),
        (changed((*POLL, "started_at"), None), "started_at: expected epoch seconds (a number),"),
        (changed((*POLL, "next_due"), float("nan")), "next_due: expected epoch seconds"),
        (changed((*POLL, "deadline"), "soon"), "deadline: expected epoch seconds (a number) or"),
        (changed((*POLL, "last_status"), "202"), "last_status: expected an HTTP status or null"),
        (changed((*POLL, "last_excerpt"), 5), "last_excerpt: expected a string or null, got 5"),
        (changed((*POLL, "last_error"), False), "last_error: expected a string or null"),
    ],
)
def test_a_bad_shape_is_a_definition_error_naming_what_is_wrong(data, message):
    with pytest.raises(DefinitionError) as caught:
        RunState.from_dict(data)
    assert message in caught.value.message


def test_poll_state_refuses_what_it_does_not_know_and_names_what_is_missing():
    saved = PollState(started_at=1.0).to_dict()
    with pytest.raises(DefinitionError, match=r"^poll state: missing attempt, next_due$"):
        PollState.from_dict({k: v for k, v in saved.items() if k not in ("attempt", "next_due")})
    with pytest.raises(DefinitionError, match=r"^poll state: unknown extra$"):
        PollState.from_dict({**saved, "extra": 1})
    with pytest.raises(DefinitionError, match=r"^poll state: expected an object, got null$"):
        PollState.from_dict(None)
    assert PollState.from_dict({**saved, "started_at": 1}).started_at == 1.0  # ints are times


def leaf_paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key or index path in `data`, the containers' own included."""
    paths = [path] if path else []
    if isinstance(data, dict):
        items: Any = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return paths
    for key, value in items:
        paths += leaf_paths(value, (*path, key))
    return paths


PATHS = leaf_paths(SCHEMA_1)


@settings(max_examples=300)
@given(st.sampled_from(PATHS), st.none() | st.just(...) | json_values)
def test_any_damage_loads_or_is_a_definition_error(path, value):
    """Delete or replace anything anywhere: the state loads (the damage was a legal value) or
    fails with a DefinitionError; never a KeyError, TypeError or AttributeError."""
    data = changed(path, value)
    try:
        state = RunState.from_dict(data)
    except DefinitionError as exc:
        message = exc.message
    else:
        assert RunState.from_dict(state.to_dict()) == state
        return
    assert message.startswith("saved run state")


def test_a_poll_snapshot_is_apart_from_the_loop_and_refreshed_in_place():
    live = PollState(started_at=1.0, attempt=1)
    snapshot = live.copy()
    live.attempt = 2
    assert snapshot == PollState(started_at=1.0, attempt=1) and snapshot is not live
    snapshot.update_from(live)
    assert snapshot == live and snapshot is not live
