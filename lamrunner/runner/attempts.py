"""The hosts API: lamrunner's polls driven one attempt at a time, by a host that owns the waiting.

A durable-function host (a Lambda durable function, Cloud Tasks) cannot hold a process through
a poll that waits hours. It opens the request with `Engine.poller(request)` and calls
`Poller.attempt(state)` whenever the state says an attempt is due; each call sends the request
(with its `retry` inside the attempt), evaluates `condition` and `failWhen`, and decides, with
exactly the semantics of the engine's own poll loop — which is built on the same `attempt`:

    outcome = await poller.attempt(state)      # an AttemptOutcome
    outcome.decision                           # Succeed() | Wait(until, delay) | Fail(error)
    outcome.state                              # the PollState, updated (save it: to_dict)
    outcome.result                             # on Succeed: the CallResult

The state is plain JSON (`PollState.to_dict` / `from_dict`), so the next attempt may run in
another process. See docs/python-api.md, "The hosts API".
"""

from __future__ import annotations

from lamrunner.decide.polling import Decision, Fail, PollState, Succeed, Wait
from lamrunner.runner.calls import AttemptOutcome, CallResult, Poller

__all__ = [
    "AttemptOutcome",
    "CallResult",
    "Decision",
    "Fail",
    "PollState",
    "Poller",
    "Succeed",
    "Wait",
]
