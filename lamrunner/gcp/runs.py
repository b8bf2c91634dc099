"""One invocation's share of a run: start or continue it within the budget, then hand on.

    the run finished (SUCCESS or FAILED)  200, the record; finished in a continuation, the
                                          record also goes to the start's callbackUrl, as a task
    the run suspended                     its continuation is scheduled at resumeAt     202
    Cloud Tasks did not take the task     503 (transient) or 500, an error record       retried
    the saved state is over the task size the run ends FAILED with the CloudTasksError  200

Cloud Tasks retries a continuation whose answer is not 2xx, so a 2xx means "nothing to do
again": a FAILED run is 200 (retrying would fail again, or re-send what was sent), a state
that can never fit in a task is 200 too. Only a task not taken is worth a retry; the retried
continuation resumes the state it carries, so the work since its run last suspended is done
again (at least once between checkpoints, as after any crash). Every record an invocation
ends with is logged as one JSON line (`run.record`), masked like the response.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from lamrunner.definition.config import deep_merge
from lamrunner.definition.workflow import Workflow
from lamrunner.errors import DefinitionError, LamrunnerError
from lamrunner.gcp.events import Continuation, Start
from lamrunner.gcp.settings import Settings
from lamrunner.gcp.tasks import CloudTasksError, HttpTask, TaskQueue
from lamrunner.logs.chain import get_logger
from lamrunner.logs.masking import Secrets
from lamrunner.runner import loop as aio
from lamrunner.runner.engine import Engine
from lamrunner.runner.observe import RunObserver
from lamrunner.runner.state import FAILED, SUSPENDED, RunState, failed_record, iso_ms

EARLY = 30.0  # seconds: a continuation this much before its resumeAt is scheduled again
DEADLINE_MARGIN = 60.0  # seconds a continuation's request may take beyond the budget


@dataclass(frozen=True)
class Reply:
    status: int  # the HTTP status
    record: dict[str, Any]  # the run record (masked), or an error record


@dataclass(frozen=True)
class Onward:
    """What every continuation of a run carries besides its state."""

    config: dict[str, Any]  # the start's overrides, merged again over the workflow's config
    callback: str | None
    count: int  # the number of the next continuation (its task's name)


class _Last(RunObserver):
    """The state the run stopped with: what a continuation carries."""

    state: RunState | None = None

    def run_finished(self, state: RunState) -> None:
        self.state = state


class Invocation:
    """A request's run, with the deployment's workflow, config and settings."""

    def __init__(self, workflow: Workflow, config: dict[str, Any], settings: Settings) -> None:
        self.workflow = workflow
        self.base = config
        self.settings = settings

    def start(self, event: Start) -> Reply:
        config = deep_merge(self.base, event.config)
        last = _Last()
        engine = Engine(self.workflow, config, observers=[last])
        record = aio.run(engine.run(event.input, budget=self.settings.budget))
        return self._hand_on(record, last, Onward(event.config, event.callback, 1), config)

    def proceed(self, event: Continuation) -> Reply:
        onward = Onward(event.config, event.callback, event.count + 1)
        config = deep_merge(self.base, event.config)
        state = event.state
        at = state.resume_at
        if state.status == SUSPENDED and at is not None and at - time.time() > EARLY:
            return self._suspended(state.record(), state, onward, config)  # 30 days a hop
        last = _Last()
        engine = Engine(self.workflow, config, observers=[last])
        record = aio.run(engine.resume(state, budget=self.settings.budget))
        return self._hand_on(record, last, onward, config)

    def _hand_on(
        self, record: dict[str, Any], last: _Last, onward: Onward, config: dict[str, Any]
    ) -> Reply:
        if record["status"] == SUSPENDED and last.state is not None:
            return self._suspended(record, last.state, onward, config)
        if onward.count > 1 and onward.callback:  # finished in a continuation
            try:
                self._deliver(record, onward.callback, config)
            except (CloudTasksError, DefinitionError) as exc:
                return _not_taken(record, exc, config)
        return _logged(Reply(200, record), config)

    def _suspended(
        self, record: dict[str, Any], state: RunState, onward: Onward, config: dict[str, Any]
    ) -> Reply:
        """Schedule the continuation: 202; or say why it could not be."""
        body = {"continuation": onward.count, "state": state.to_dict(), "config": onward.config}
        if onward.callback:
            body["callbackUrl"] = onward.callback
        task = HttpTask(
            state.run_id,
            f"c{onward.count}",
            None,  # the function itself
            _json(body),
            at=state.resume_at,
            deadline=self.settings.budget + DEADLINE_MARGIN,
            what="continuation",
        )
        try:
            self._schedule(task)
        except CloudTasksError as exc:
            if exc.kind != "too_large":
                return _not_taken(record, exc, config)
            ended = {k: v for k, v in record.items() if k != "resumeAt"}
            ended.update(status=FAILED, error=exc.to_dict())  # it can never be carried on
            return self._hand_on(ended, _Last(), onward, config)
        except DefinitionError as exc:  # a setting the queue needs is missing
            return _not_taken(record, exc, config)
        return _logged(Reply(202, record), config)

    def _deliver(self, record: dict[str, Any], url: str, config: dict[str, Any]) -> None:
        """The final record to the callback, as a task, so Cloud Tasks retries the delivery;
        without its GWO if it is too large for a task with it."""
        masked = Secrets.of_config(config).mask_data(record)
        for document in (masked, {**masked, "gwo": None}):
            task = HttpTask(record["runId"], "record", url, _json(document), what="callback")
            try:
                self._schedule(task)
                return
            except CloudTasksError as exc:
                if exc.kind != "too_large":
                    raise
                get_logger(run_id=record["runId"]).warning("callback.too_large", error=exc.message)

    def _schedule(self, task: HttpTask) -> None:
        """Create the task; one that exists already was scheduled by an earlier try of this
        invocation (Cloud Tasks retried it), which is as good."""
        created = TaskQueue(self.settings.tasks()).create(task)
        log = get_logger(run_id=task.run_id)
        event = "task.created" if created else "task.already_scheduled"
        log.info(
            event, task=task.label, what=task.what, at=None if task.at is None else iso_ms(task.at)
        )


def _not_taken(record: dict[str, Any], exc: LamrunnerError, config: dict[str, Any]) -> Reply:
    """Cloud Tasks did not take a task: 503 when it may next time, else 500 (the deployment
    is wrong); Cloud Tasks retries either, a caller may."""
    transient = isinstance(exc, CloudTasksError) and exc.kind == "unavailable"
    return _logged(Reply(503 if transient else 500, _refusal(record, exc)), config)


def _refusal(record: dict[str, Any], exc: LamrunnerError) -> dict[str, Any]:
    """The error record of a run that could not be handed on: its id, the reason."""
    return {**failed_record(record["workflow"], exc.to_dict()), "runId": record["runId"]}


def _logged(reply: Reply, config: dict[str, Any]) -> Reply:
    """The reply, masked with the run's config secrets, logged as one JSON line."""
    record = Secrets.of_config(config).mask_data(reply.record)
    log = get_logger(run_id=record.get("runId"), workflow=record.get("workflow"))
    level = log.info if reply.status < 500 else log.error
    level("run.record", http_status=reply.status, status=record.get("status"), record=record)
    return Reply(reply.status, record)


def _json(document: Any) -> bytes:
    """UTF-8 JSON; a lone surrogate (which UTF-8 cannot carry) as its \\u escape."""
    try:
        return json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(document).encode()
