"""Sub-workflows below the CLI: the directives' shapes, the workflows: map at load time, the
saved form of child runs, the store's migration, the engine resuming a child that ran beside
its parent, and the cloud hosts refusing what they cannot checkpoint."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Reply

from lamrunner.definition.directives import ExecuteDirective, PlainData, parse_directive
from lamrunner.definition.workflow import load_workflow
from lamrunner.deployed import load_deployed
from lamrunner.errors import DefinitionError
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import FAILED, ChildRun, RunState
from lamrunner.store.sqlite import STORE_VERSION, RunStore

CALL = {"lam.workflowId": 39, "lam.payload": {"n": 1}}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"lam.execute": CALL}, "lam.execute: expected a non-empty list"),
        ({"lam.execute": []}, "lam.execute: expected a non-empty list"),
        ({"lam.asyncExecute": [{"lam.payload": {}}]}, "lam.asyncExecute[0]: missing required"),
        ({"lam.execute": [{"lam.workflowId": True}]}, "lam.execute[0].lam.workflowId"),
        ({"lam.execute": [{**CALL, "lam.payloda": 1}]}, "did you mean 'lam.payload'"),
        ({"lam.execute": [CALL], "extra": 1}, "unexpected sibling key 'extra'"),
        ({"lam.resolveThenExecute": [CALL]}, "lam.resolveThenExecute: expected a mapping"),
        ({"lam.result": {"x": 1}}, "(the deprecated lam.result form)"),
        ({"lam.exekute": [CALL]}, "did you mean 'lam.execute'"),
    ],
)
def test_a_malformed_sub_workflow_directive_is_named(value, fragment):
    with pytest.raises(DefinitionError) as caught:
        parse_directive(value)
    assert fragment in caught.value.message


def test_the_directive_shapes():
    execute = parse_directive({"lam.execute": [CALL, {"lam.workflowId": "ship"}]})
    assert isinstance(execute, ExecuteDirective) and execute.blocks
    assert [(c.workflow_id, c.payload, c.where) for c in execute.calls] == [
        (39, {"n": 1}, "lam.execute[0]"),
        ("ship", {}, "lam.execute[1]"),  # no payload: an empty input
    ]
    old = parse_directive({"lam.result": [CALL]})
    assert isinstance(old, ExecuteDirective) and old.mode == "execute" and old.warnings
    resolve = parse_directive({"lam.resolveThenExecute": {**CALL, "lam.result": {"ok": 1}}})
    assert isinstance(resolve, ExecuteDirective)
    assert (resolve.mode, resolve.result, resolve.blocks) == ("resolve", {"ok": 1}, False)
    bare = parse_directive([CALL])
    assert isinstance(bare, PlainData) and "bare list" in bare.warnings[0]
    assert parse_directive([{"x": 1}]).warnings == ()


def test_a_workflow_that_names_itself_loads_once(tmp_path: Path):
    (tmp_path / "a.js").write_text("(data) => ({})\n")
    (tmp_path / "self.yaml").write_text("name: s\nworkflows: {1: ./self.yaml}\nsteps: [a.js]\n")
    workflow = load_workflow(tmp_path / "self.yaml", env={})
    assert workflow.child(1, "here") is workflow.child("1", "here")
    assert len(workflow.library) == 1
    with pytest.raises(DefinitionError, match=r"here: lam.workflowId '2' .* known ids: 1"):
        workflow.child(2, "here")


@pytest.mark.parametrize(
    ("workflows", "fragment"),
    [
        ("{39: ./nope.yaml}", "workflows.39: no such workflow file"),
        ("[./a.yaml]", "workflows: expected a mapping of workflow ids to files"),
        ("{39: ./c.yaml, '39': ./c.yaml}", "workflows.39: the id is given twice"),
        ("{true: ./c.yaml}", "a workflow id is a whole number or a name"),
        ("{39: 7}", "workflows.39: expected a non-empty string"),
    ],
)
def test_a_bad_workflows_map_is_refused_at_load(tmp_path: Path, workflows, fragment):
    (tmp_path / "a.js").write_text("(data) => ({})\n")
    (tmp_path / "c.yaml").write_text("name: c\nsteps: [a.js]\n")
    (tmp_path / "p.yaml").write_text(f"name: p\nworkflows: {workflows}\nsteps: [a.js]\n")
    with pytest.raises(DefinitionError) as caught:
        load_workflow(tmp_path / "p.yaml", env={})
    assert fragment in caught.value.message and "p.yaml" in caught.value.message


def test_a_python_handler_naming_an_unknown_id_is_refused_at_load(tmp_path: Path):
    (tmp_path / "go.py").write_text(
        'def transform(data):\n    return {"lam.execute": [{"lam.workflowId": "shp"}]}\n'
    )
    (tmp_path / "p.yaml").write_text("name: p\nworkflows: {ship: ./p.yaml}\nsteps: [go.py]\n")
    with pytest.raises(DefinitionError) as caught:
        load_workflow(tmp_path / "p.yaml", env={})
    message = caught.value.message
    assert "steps[0] (step_1).handler go.py" in message and "'shp' (line 2" in message
    assert "did you mean 'ship'" in message


def test_child_runs_are_saved_and_older_states_load_without_them():
    state = RunState.start("p", {"a": 1}, "r-1")
    assert "children" not in state.to_dict()  # a run without children saves as before
    state.children.append(ChildRun("r-2", 39, "step_1", 0, "async"))
    state.children.append(ChildRun("r-3", "x", "step_1", 1, "execute", FAILED, None, {"m": 1}))
    loaded = RunState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert loaded.children == state.children
    assert loaded.child("step_1", 1) == state.children[1]
    assert loaded.record()["subWorkflows"][0] == {
        "step": "step_1",
        "mode": "async",
        "workflowId": 39,
        "runId": "r-2",
        "status": "RUNNING",
    }
    bad = {**state.to_dict(), "children": [{"runId": "r", "mode": "x"}]}
    with pytest.raises(DefinitionError, match="children\\[0\\]: missing"):
        RunState.from_dict(bad)


def test_a_redrive_keeps_the_children_that_succeeded():
    state = RunState.start("p", {}, "r-1")
    state.children = [
        ChildRun("ok", 1, "step_1", 0, "execute", "SUCCESS", {"v": 1}),
        ChildRun("bad", 2, "step_1", 1, "execute", FAILED, None, {"type": "X"}),
    ]
    state.status, state.error = FAILED, {"type": "SubWorkflowFailed", "message": "m"}
    state.redrive(now=0)
    assert [c.run_id for c in state.children] == ["ok"]


def test_a_store_from_before_sub_workflows_opens_and_a_newer_one_is_refused(tmp_path: Path):
    old = tmp_path / "old.sqlite3"
    db = sqlite3.connect(old)
    db.execute(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT"
        " NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, pid INTEGER, invocation"
        " TEXT NOT NULL, state TEXT NOT NULL)"
    )
    state = RunState.start("w", {}, "old-run")
    db.execute(
        "INSERT INTO runs VALUES ('old-run', 'w', 'SUCCESS', 1, 1, NULL, '{}', ?)",
        (json.dumps(state.to_dict()),),
    )
    db.commit()
    db.close()
    store = RunStore(old)
    assert [s.run_id for s in store.list()] == ["old-run"]
    assert store.parent("old-run") is None and store.children("old-run") == []
    store.close()
    db = sqlite3.connect(old)
    assert db.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
    db.execute(f"PRAGMA user_version = {STORE_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(DefinitionError, match="made by a newer lamrunner"):
        RunStore(old)


class Saves(RunObserver):
    """A store in memory: the latest saved JSON of every run, the child runs' included."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.linked: list[tuple[str, str]] = []

    def save_run(self, state: RunState) -> None:
        self.states[state.run_id] = json.dumps(state.to_dict())

    def child_run(self, parent, child, call, file):
        self.linked.append((parent.run_id, child.run_id))
        self.save_run(child)

    def load(self, run_id: str) -> RunState | None:
        saved = self.states.get(run_id)
        return None if saved is None else RunState.from_dict(json.loads(saved))


async def test_a_resumed_parent_resumes_its_async_child_from_its_checkpoint(api, tmp_path):
    """The parent ran to its end while its asyncExecute child polled; the process died. Resumed,
    the parent restarts that child from the child's own checkpoint: its first request is not
    sent again, and the record lists it SUCCESS under the same run id."""
    api.script("POST", "/start", Reply(json={"id": "j"}))
    api.script("GET", "/poll", Reply(json={"done": False}), Reply(json={"done": True}))
    (tmp_path / "go.js").write_text(
        '(data) => ({ "lam.asyncExecute": [{ "lam.workflowId": 1, "lam.payload": {} }] })\n'
    )
    (tmp_path / "start.js").write_text(
        f'(data) => ({{ "lam.httpRequest": {{ method: "POST", url: "{api.url}/start" }} }})\n'
    )
    (tmp_path / "poll.js").write_text(
        f'(data) => ({{ "lam.httpRequest": {{ method: "GET", url: "{api.url}/poll" }} }})\n'
    )
    (tmp_path / "p.yaml").write_text("name: p\nworkflows: {1: ./c.yaml}\nsteps: [go.js]\n")
    (tmp_path / "c.yaml").write_text("name: c\nsteps: [start.js, poll.js]\n")
    workflow = load_workflow(tmp_path / "p.yaml", env={})
    saves = Saves()
    crashed = RunState.start("p", {}, "parent")
    crashed.children.append(ChildRun("child", 1, "step_1", 0, "async"))
    crashed.gwo["step_1"] = {"executions": [crashed.children[0].entry()]}
    crashed.next_step = 1  # the parent's one step was done; the child had done its first
    child = RunState.start("c", {}, "child")
    child.gwo["step_1"] = {"response": {"id": "j"}, "http": {}}
    child.next_step = 1
    saves.save_run(child)
    engine = Engine(workflow, observers=[saves], saved_runs=saves.load)
    record = await engine.resume(crashed)
    assert record["status"] == "SUCCESS"
    assert record["subWorkflows"][0]["runId"] == "child"
    assert record["subWorkflows"][0]["status"] == "SUCCESS"
    assert api.requests_to("/start") == []  # the child's finished step was not run again
    assert len(api.requests_to("/poll")) == 1
    assert saves.linked == [("parent", "child")]


def test_the_cloud_hosts_refuse_a_workflows_map(tmp_path: Path, monkeypatch):
    (tmp_path / "a.js").write_text("(data) => ({})\n")
    (tmp_path / "p.yaml").write_text("name: p\nworkflows: {1: ./p.yaml}\nsteps: [a.js]\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DefinitionError, match="not supported in a cloud function"):
        load_deployed({"LAMRUNNER_WORKFLOW": str(tmp_path / "p.yaml")})
    command = ["package", "p.yaml", "--target", "aws", "--output", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-m", "lamrunner", *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "not supported in a cloud function" in json.loads(done.stdout)["error"]["message"]
    assert not (tmp_path / "out").exists()
