"""The one boundary to Cloud Tasks (google-cloud-tasks): a task is made, sized and created here,
and the client's errors become a `CloudTasksError` here, so nothing else sees a Google type.

A task's name is deterministic (`task_id`): the same run and label always name the same task,
so an invocation that Cloud Tasks retries after it already scheduled its continuation gets
ALREADY_EXISTS, which means "scheduled" — two chains of continuations can never run one run.
That also makes creating a task safe to retry, so transient errors are retried for a while.

What real Cloud Tasks requires, from the client's reference and the service's quotas page: a
task ID of letters, digits, `-` and `_`, at most 500 characters; a task of at most 1 MB; a
`schedule_time` at most 30 days ahead; an HTTP task's `dispatch_deadline` between 15 seconds
and 30 minutes. A name stays taken for about an hour after its task ran or was deleted.

Google's libraries are imported on the first task, not with this module: a function whose
runs finish within their budget never pays for them (see docs/deploy.md for the figures).
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lamrunner.errors import LamrunnerError
from lamrunner.gcp.settings import TaskSettings
from lamrunner.units import format_size

if TYPE_CHECKING:
    from google.cloud.tasks_v2 import CloudTasksClient, Task

TASK_SIZE_LIMIT = 1_000_000  # bytes: "maximum task size 1 MB" (Cloud Tasks quotas and limits)
MAX_AHEAD = 30 * 86400.0 - 600  # schedule_time: at most 30 days ahead; ten minutes to spare
DEADLINE_RANGE = (15.0, 1800.0)  # an HTTP task's dispatch_deadline, in seconds
CREATE_TIMEOUT = 20.0  # seconds per CreateTask call (the client's default)
RETRY_FOR = 30.0  # seconds over which a transient CreateTask failure is retried
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")
# google-api-core warns on every import under Python 3.11 that its support ends in 2027.
_PY_SUPPORT = r"You are using a Python version .* which Google will stop supporting"


class CloudTasksError(LamrunnerError):
    """Cloud Tasks did not take a task. `kind`: `unavailable` (transient: try again later),
    `refused` (the queue, its permissions or the task are wrong: fix the deployment) or
    `too_large` (over Cloud Tasks' task size limit: it never will take it)."""

    def __init__(self, message: str, *, kind: str, step: str | None = None) -> None:
        super().__init__(message, step=step)
        self.kind = kind


def task_id(run_id: str, label: str) -> str:
    """The task ID of `run_id`'s task `label` (`c3`: its third continuation; `record`: its
    final record): the same every time. It starts with a hash because Cloud Tasks asks for
    evenly spread names, and run ids start with a timestamp."""
    digest = hashlib.sha256(f"{run_id}\0{label}".encode()).hexdigest()[:12]
    return f"{digest}-{_NOT_IN_ID.sub('_', run_id)[:400]}-{_NOT_IN_ID.sub('_', label)[:60]}"


@dataclass(frozen=True)
class HttpTask:
    """One task: POST `body` (JSON) to `url` (None: the function's own) at `at` (epoch
    seconds; None: now)."""

    run_id: str
    label: str
    url: str | None
    body: bytes
    at: float | None = None
    deadline: float | None = None  # seconds the target may take; None: Cloud Tasks' 10 minutes
    what: str = "task"  # for messages: "continuation", "callback"


class TaskQueue:
    """Creates tasks on the configured queue, OIDC-authenticated when a service account is
    given. The client is made on the first task and shared by the container's requests."""

    def __init__(self, settings: TaskSettings) -> None:
        self.settings = settings

    def create(self, task: HttpTask) -> bool:
        """Schedule `task`: True when created now, False when it already existed (a retried
        invocation scheduled it before), which is as good; a CloudTasksError otherwise."""
        try:
            _import_google()
        except ImportError as exc:
            reason = f"{exc.name} is not installed (pip install 'lamrunner[gcp]')"
            raise _error(task, self.settings, "refused", reason) from None
        made = self._task(task)
        size = _size(made)
        if size > TASK_SIZE_LIMIT:
            raise CloudTasksError(
                f"run {task.run_id}: its {task.what} task would be {format_size(size)} "
                f"({size} bytes), over Cloud Tasks' limit of {format_size(TASK_SIZE_LIMIT)} per "
                "task; keep large data out of the run's state (step results, input)",
                kind="too_large",
            )
        return _create(self.settings, made, task)

    def _task(self, task: HttpTask) -> Task:
        from google.cloud import tasks_v2

        url = task.url or self.settings.self_url
        request = tasks_v2.HttpRequest(
            url=url,
            http_method=tasks_v2.HttpMethod.POST,
            headers={"Content-Type": "application/json"},
            body=task.body,
        )
        account = self.settings.service_account
        if account:
            request.oidc_token = tasks_v2.OidcToken(service_account_email=account, audience=url)
        made = tasks_v2.Task(
            name=f"{self.settings.queue}/tasks/{task_id(task.run_id, task.label)}",
            http_request=request,
        )
        if task.at is not None:
            at = min(task.at, time.time() + MAX_AHEAD)
            made.schedule_time = datetime.fromtimestamp(at, UTC)
        if task.deadline is not None:
            low, high = DEADLINE_RANGE
            made.dispatch_deadline = timedelta(seconds=min(high, max(low, task.deadline)))
        return made


def _size(task: Task) -> int:
    from google.cloud import tasks_v2

    return int(tasks_v2.Task.pb(task).ByteSize())


def _create(settings: TaskSettings, made: Task, task: HttpTask) -> bool:
    """CreateTask, its errors translated: ALREADY_EXISTS is success."""
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError

    try:
        client = _client(settings.endpoint)
        client.create_task(parent=settings.queue, task=made, retry=_retry(), timeout=CREATE_TIMEOUT)
    except exceptions.AlreadyExists:
        return False
    except exceptions.GoogleAPICallError as exc:
        kind = "unavailable" if _transient(exc) else "refused"
        raise _error(task, settings, kind, f"{type(exc).__name__}: {exc.message}") from None
    except exceptions.RetryError as exc:
        reason = f"still unavailable after retrying for {RETRY_FOR:g}s: {exc.cause}"
        raise _error(task, settings, "unavailable", reason) from None
    except GoogleAuthError as exc:
        raise _error(task, settings, "refused", f"no credentials ({type(exc).__name__})") from None
    return True


def _error(task: HttpTask, settings: TaskSettings, kind: str, reason: str) -> CloudTasksError:
    return CloudTasksError(
        f"run {task.run_id}: Cloud Tasks did not take its {task.what} task on "
        f"{settings.queue}: {reason}",
        kind=kind,
    )


def _transient(exc: Exception) -> bool:
    from google.api_core import exceptions

    transient = (
        exceptions.ServiceUnavailable,
        exceptions.DeadlineExceeded,
        exceptions.InternalServerError,
        exceptions.TooManyRequests,
        exceptions.Aborted,
    )
    return isinstance(exc, transient)


@functools.cache
def _client(endpoint: str | None) -> CloudTasksClient:
    """One client per container: the service's (Application Default Credentials), or an
    emulator's at `endpoint` over an insecure channel, with no credentials looked up."""
    _import_google()
    from google.cloud import tasks_v2

    if endpoint is None:
        return tasks_v2.CloudTasksClient()
    import grpc  # type: ignore[import-untyped]
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(endpoint)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


@functools.cache
def _retry() -> Any:
    from google.api_core import retry

    return retry.Retry(
        predicate=retry.if_transient_error, initial=0.25, maximum=4.0, timeout=RETRY_FOR
    )


@functools.cache
def _import_google() -> None:
    """Import Google's modules once, without the one FutureWarning they give on Python 3.11
    (a notice about 2027, not a problem; under `-W error` it would break the import)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PY_SUPPORT, category=FutureWarning)
        import google.api_core.exceptions
        import google.cloud.tasks_v2  # noqa: F401
