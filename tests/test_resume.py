"""A run's progress is one plain value: stop a run mid-poll, keep only its JSON, resume it."""

from __future__ import annotations

import json

import pytest
from conftest import Reply

from lamrunner.definition.config import build_config
from lamrunner.definition.workflow import load_workflow
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import ElementState, RunState


class Crash(BaseException):
    """Stands in for the process dying: nothing in lamrunner catches it."""


class Recorder(RunObserver):
    """A checkpointer that keeps every saved state as JSON text, like a store would."""

    def __init__(self, on_save=None):
        self.saved: list[str] = []
        self.entries: list[ElementState] = []
        self.on_save = on_save

    def save_run(self, state):
        self.saved.append(json.dumps(state.to_dict()))
        if self.on_save:
            self.on_save(state)

    def save_element(self, state, index, entry):
        self.entries.append(entry)
        state.pending.elements[index] = entry
        self.save_run(state)


def engine_for(path, checkpoint=None):
    workflow = load_workflow(path, env={})
    observers = () if checkpoint is None else (checkpoint,)
    return Engine(workflow, build_config(workflow.config), observers=observers)


@pytest.fixture
def two_step_flow(api, wf):
    api.script("POST", "/start", Reply(json={"id": "j1"}))
    api.script(
        "GET", "/jobs/j1", *[Reply(json={"state": "pending"})] * 4, Reply(json={"state": "done"})
    )
    start = wf.request_step("start", {"method": "POST", "url": api.url + "/start"})
    wf.handler(
        "wait.py",
        f"""
        def transform(data):
            return {{"lam.httpRequest": {{
                "method": "GET", "url": "{api.url}/jobs/{{id}}",
                "pathParams": {{"id": data["step_1"]["response"]["id"]}},
                "loopUntil": {{"condition": "ctx.response.state === 'done'",
                               "initialDelay": "20ms", "maxAttempts": 10, "timeout": "30s"}}}}}}
    """,
    )
    return wf.workflow([start, {"name": "wait", "handler": "wait.py"}])


async def test_resume_mid_poll_keeps_counters_and_sends_nothing_twice(api, two_step_flow):
    def crash_after_second_attempt(state: RunState) -> None:
        element = state.pending.elements[0] if state.pending else None
        if element and element.poll and element.poll.attempt == 2:
            raise Crash

    recorder = Recorder(crash_after_second_attempt)
    saved = recorder.saved
    with pytest.raises(Crash):
        await engine_for(two_step_flow, recorder).run({})
    assert len(api.requests_to("/jobs/j1")) == 2
    last = RunState.from_dict(json.loads(saved[-1]))
    assert last.next_step == 1 and last.pending is not None
    deadline = last.pending.elements[0].poll.deadline

    again = Recorder()
    record = await engine_for(two_step_flow, again).resume(last)
    resumed = [json.loads(text) for text in again.saved]

    assert record["status"] == "SUCCESS"
    assert record["runId"] == last.run_id
    assert record["gwo"]["step_2"]["http"]["attempts"] == 5
    assert len(api.requests_to("/jobs/j1")) == 5
    assert len(api.requests_to("/start")) == 1
    polls = [s["pending"]["elements"][0]["poll"] for s in resumed if s["pending"]]
    assert [p["attempt"] for p in polls] == [3, 4]
    assert {p["deadline"] for p in polls} == {deadline}


async def test_checkpoints_at_step_boundaries_and_after_each_attempt(api, two_step_flow):
    recorder = Recorder()
    await engine_for(two_step_flow, recorder).run({})
    states = [json.loads(text) for text in recorder.saved]
    attempts = [
        e["poll"]["attempt"]
        for s in states
        if s["pending"]
        for e in s["pending"]["elements"]
        if e and "poll" in e
    ]
    assert attempts == [1, 2, 3, 4]
    assert [s["next_step"] for s in states if not s["pending"]][-2:] == [2, 2]
    assert states[-1]["status"] == "SUCCESS"
    json.dumps(states)  # every checkpoint is plain JSON
    assert {s["schema"] for s in states} == {2}
    assert {type(e) for e in recorder.entries} == {ElementState}  # the engine passes records


async def test_a_state_saved_before_schemas_resumes_like_its_schema_2_twin(api, two_step_flow):
    def crash_after_second_attempt(state: RunState) -> None:
        element = state.pending.elements[0] if state.pending else None
        if element and element.poll and element.poll.attempt == 2:
            raise Crash

    recorder = Recorder(crash_after_second_attempt)
    with pytest.raises(Crash):
        await engine_for(two_step_flow, recorder).run({})
    saved = json.loads(recorder.saved[-1])
    assert saved.pop("schema") == 2
    old = RunState.from_dict(json.loads(json.dumps(saved)))  # the previous release's layout

    record = await engine_for(two_step_flow, Recorder()).resume(old)

    assert record["status"] == "SUCCESS"
    assert record["gwo"]["step_2"]["http"]["attempts"] == 5
    assert len(api.requests_to("/jobs/j1")) == 5 and len(api.requests_to("/start")) == 1
