"""Every error lamrunner raises, in one tree.

    LamrunnerError                  .step: the step it happened in (or None)
    ├── DefinitionError             bad workflow file, handler, directive, duration, --input/--set
    ├── TemplateError               a <<config.*>> / path-parameter template that cannot be filled
    ├── HandlerError                an exception (or a JS limit) inside a handler
    ├── HttpStatusError             a final status >= 400 with failOnHttpError
    ├── TransportError              no usable response: timeout, connection, protocol, size cap
    ├── ConditionError              a loopUntil condition that does not compile or breaks a limit
    ├── InternalError               a bug in lamrunner itself, never the user's mistake: the
    │                               CLI's last line of defence turns any other exception into it
    ├── HostLimitError              more than a host holds: a step's output over a durable
    │                               function's checkpoint limit, a state over a task's size
    ├── Cancelled                   `lamrunner cancel` (or Engine.cancel) stopped the run
    ├── BatchFailed                 a lam.httpRequests with minSuccess / toleratedFailures
    │                               can no longer have enough requests succeed
    ├── RequestCancelled            a batch request stopped because its batch had failed
    ├── AuthenticationError         an oauth2 token endpoint refused the client or gave no
    │                               token (`authentication: {type: oauth2}`)
    ├── SubWorkflowFailed           a child workflow (lam.execute & co.) ended FAILED: names the
    │                               child, carries its error
    ├── SubWorkflowDepthExceeded    sub-workflows nested deeper than limits.subWorkflowDepth
    ├── ResultFetchFailed           followResultUrl: the result a pointer names could not be
    │                               fetched (status >= 400, not JSON, too big, no answer)
    └── PollingError
        ├── PollingFailed           failWhen held
        ├── PollingExhausted        maxAttempts used up
        ├── DeadlineExceeded        loopUntil.timeout reached
        ├── UnexpectedResponse      with pendingWhen: an answer neither success, failure nor
        │                           pending
        └── PollingStalled          stallTimeout: the progress (or the body) did not change

    ScriptError                     internal: what the QuickJS module reports to its callers,
                                    who turn it into a HandlerError or ConditionError.

Messages are written for a person to act on; they never contain secrets (the run engine masks
them before they leave). Third-party exceptions are translated at one boundary each: aiohttp in
``transport``, QuickJS in ``jsengine``.
"""

from __future__ import annotations

from typing import Any, Self


class LamrunnerError(Exception):
    """Base of every error a workflow run can end with."""

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step

    @property
    def type_name(self) -> str:
        return type(self).__name__

    def in_step(self, step: str) -> Self:
        """This error attributed to `step`, for `raise err.in_step(x) from None`: a new error
        (errors are never changed once made), or this one when it already names its step."""
        return self if self.step is not None else self.replaced(step=step)

    def replaced(self, **changes: Any) -> Self:
        """A new error of the same type with every attribute kept but `changes` (`message`
        included, which also becomes its `args`): how a caller that knows more — the step, the
        batch index, the attempts made — says so without changing an error someone holds."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__, **changes)
        Exception.__init__(new, new.message)
        return new

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "message": self.message, "step": self.step}

    def __str__(self) -> str:
        return self.message


class DefinitionError(LamrunnerError):
    """The workflow, a handler, a directive or the invocation is invalid."""


class TemplateError(LamrunnerError):
    """A template names something the config or pathParams do not have."""


class HandlerError(LamrunnerError):
    """A handler raised, returned something that is not JSON, or broke a JS limit."""


class HttpStatusError(LamrunnerError):
    """The final response had status >= 400 and the request did not allow it."""

    def __init__(self, message: str, *, status: int, attempts: int, step: str | None = None):
        super().__init__(message, step=step)
        self.status = status
        self.attempts = attempts


class TransportError(LamrunnerError):
    """No usable response. ``kind`` is timeout, connection, protocol or too_large."""

    def __init__(self, message: str, *, kind: str, attempts: int = 1, step: str | None = None):
        super().__init__(message, step=step)
        self.kind = kind
        self.attempts = attempts


class ConditionError(LamrunnerError):
    """A loopUntil condition or failWhen does not compile or broke its time/memory limit."""


class InternalError(LamrunnerError):
    """A bug in lamrunner: an exception nothing else translated. Says how to report it."""

    @classmethod
    def of(cls, exc: BaseException, command: str) -> InternalError:
        """Names only the exception's type: its text may hold data from the run (see the log)."""
        return cls(
            f"internal error ({type(exc).__name__}): this is a bug in lamrunner, not in your "
            f"workflow; please report it on lamrunner's issue tracker with the log from "
            f"`lamrunner {command} ... -v`"
        )


class HostLimitError(LamrunnerError):
    """What a step produced is larger than the host (a cloud function) can checkpoint or carry:
    the message names the step, the size and the limit, so it fails the same way locally."""


class BatchFailed(LamrunnerError):
    """More requests of a tolerant batch (`minSuccess`, `toleratedFailures`) failed than it
    tolerates: counts of what succeeded, failed and was cancelled, and what was needed."""

    def __init__(
        self,
        message: str,
        *,
        succeeded: int,
        failed: int,
        cancelled: int,
        min_success: int,
        step: str | None = None,
    ) -> None:
        super().__init__(message, step=step)
        self.succeeded = succeeded
        self.failed = failed
        self.cancelled = cancelled
        self.min_success = min_success


class RequestCancelled(LamrunnerError):
    """A request of a tolerant batch that was stopped (or never started) because the batch
    could no longer succeed: its element's error in the GWO."""


class PollingError(LamrunnerError):
    """A loopUntil ended without its condition holding."""

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        last_status: int | None,
        step: str | None = None,
    ) -> None:
        super().__init__(message, step=step)
        self.attempts = attempts
        self.last_status = last_status


class PollingFailed(PollingError):
    """failWhen held."""


class PollingExhausted(PollingError):
    """Every allowed attempt was made and the condition never held."""


class DeadlineExceeded(PollingError):
    """The loop's overall timeout came before the condition held."""


class UnexpectedResponse(PollingError):
    """With `pendingWhen` given, an answer that is neither success (`condition`), failure
    (`failWhen`) nor pending (`pendingWhen`): fail-closed, never polled until exhaustion."""


class PollingStalled(PollingError):
    """`stallTimeout`: the poll's progress (or, without `progress`, its body) stayed the same
    for that long."""


class ResultFetchFailed(LamrunnerError):
    """`followResultUrl`: the request (or poll) succeeded, but the result its pointer
    (`{"is_url": true, "url": ...}`) names could not be fetched. The message names the request
    and the URL (masked); ``status`` is the fetch's HTTP status (None when no answer came),
    ``kind`` what went wrong (status, not_json, too_large, timeout, connection, ...)."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status: int | None = None,
        attempts: int = 1,
        step: str | None = None,
    ) -> None:
        super().__init__(message, step=step)
        self.kind = kind
        self.status = status
        self.attempts = attempts


class ScriptError(Exception):
    """A JavaScript failure, as the QuickJS module reports it (internal).

    ``kind`` is one of: syntax, shape, exception, timeout, memory, stack, result, and badjson
    (the ctx handed to a condition did not parse: the response body is not JSON).
    ``line``/``column`` are 1-based positions in the script when QuickJS gives them.
    """

    def __init__(
        self, message: str, *, kind: str, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.line = line
        self.column = column

    @property
    def is_limit(self) -> bool:
        return self.kind in ("timeout", "memory", "stack")

    def __str__(self) -> str:
        return self.message


class SubWorkflowFailed(LamrunnerError):
    """A child workflow started by `lam.execute` (or `lam.result`'s list form) ended FAILED:
    the message names the child (its workflowId, file and run id) and repeats its error, kept
    whole in `cause` so a caller can tell what the child met without opening its run."""

    def __init__(
        self,
        message: str,
        *,
        workflow_id: int | str,
        run_id: str,
        cause: dict[str, Any] | None,
        step: str | None = None,
    ) -> None:
        super().__init__(message, step=step)
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.cause = cause

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "workflowId": self.workflow_id,
            "runId": self.run_id,
            "cause": self.cause,
        }


class SubWorkflowDepthExceeded(LamrunnerError):
    """A sub-workflow would start deeper than `limits.subWorkflowDepth` (a workflow that calls
    itself, directly or through others, with no end): nothing of that child is run."""


class Cancelled(LamrunnerError):
    """The run was cancelled (`lamrunner cancel RUN_ID`): it ends FAILED with this error."""


class AuthenticationError(LamrunnerError):
    """An oauth2 token endpoint refused the client or answered without a usable token.

    ``status`` is the token endpoint's HTTP status (None when its answer had no token). A
    token endpoint that cannot be reached is a TransportError instead, so a request's
    `retry` (and a poll) treats it as any failed send."""

    def __init__(self, message: str, *, status: int | None = None, step: str | None = None):
        super().__init__(message, step=step)
        self.status = status


class RouteError(LamrunnerError):
    """A route the run was asked to take leads nowhere: an action in a response (or a step's
    route decided at run time) names a step the workflow does not have. The run ends FAILED:
    it is a mismatch between the workflow and the service, not a failure onError handles."""


class StepRunsExceeded(LamrunnerError):
    """The run has made `limits.maxStepRuns` step executions: a route loop that did not end.
    Never caught by a step's onError or continueOnFailure (it would loop again)."""
