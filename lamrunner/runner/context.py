"""One run's context: everything a run needs, in one object made for that run alone.

The engine builds a `RunContext` when a run starts or resumes and hands it down to every step
and request; nothing a run needs lives in a module global, so an engine embedded in a service
can run many workflows at once (or one after another for days) and each run sees only its own
secrets, log binding and observers. What a run owns (its transport and JS workers, unless the
engine was given shared ones) is closed when the run ends.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lamrunner.definition.workflow import Workflow
from lamrunner.http.transport import Transport
from lamrunner.logs.masking import Secrets
from lamrunner.runner.clock import Clock
from lamrunner.runner.observe import Observers
from lamrunner.runner.subruns import SubRuns
from lamrunner.runner.tokens import TokenCache


@dataclass(frozen=True, eq=False)
class RunContext:
    """What one run carries from step to step (the progress itself is in its RunState)."""

    run_id: str
    workflow: Workflow
    config: Mapping[str, Any]  # the resolved config templates are filled from
    secrets: Secrets  # this run's values only: its config's secrets and credential headers
    log: Any  # the bound logger (run_id, workflow)
    transport: Transport
    js: Any  # the JsEngine for handlers and conditions
    clock: Clock
    observer: Observers
    subruns: SubRuns  # its sub-workflow runs: started, resumed, awaited before it ends
    rand: Callable[[], float] = field(default=random.random)  # jitter
    budget_end: float | None = None  # epoch seconds: a poll due after it suspends the run
    hold: float | None = None  # seconds: a poll due more than this after now suspends the run
    tokens: TokenCache = field(default_factory=TokenCache)  # this run's oauth2 tokens

    @property
    def condition_limits(self) -> Any:
        """The JsLimits a loopUntil condition runs under (limits.conditionTimeout/Memory)."""
        from lamrunner.js.runtime import JsLimits  # QuickJS loads only when a run needs it

        limits = self.workflow.limits
        return JsLimits(limits.condition_timeout, limits.condition_memory)

    @property
    def handler_limits(self) -> Any:
        """The JsLimits a JavaScript handler runs under (limits.handlerTimeout/Memory)."""
        from lamrunner.js.runtime import JsLimits

        limits = self.workflow.limits
        return JsLimits(limits.handler_timeout, limits.handler_memory)
