"""The function's environment, and the workflow it runs, loaded once per container.

`lamrunner package --target gcp` sets LAMRUNNER_WORKFLOW and LAMRUNNER_CONFIG (paths relative
to the function's source root, which is its working directory); the deployer sets the rest.
The environment is read on every request, since reading it costs nothing and a test or a
local server may change it; the workflow is loaded (handlers resolved, JavaScript compiled,
config files read) once per (workflow, config files), because that is what a cold start costs.
The Cloud Tasks settings are only required once a run suspends: a function whose runs always
finish within the budget needs no queue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lamrunner.definition.workflow import Workflow
from lamrunner.deployed import config_files, load_deployed, workflow_path
from lamrunner.errors import DefinitionError
from lamrunner.units import format_duration, parse_duration

BUDGET = "LAMRUNNER_BUDGET"
QUEUE = "LAMRUNNER_TASKS_QUEUE"
SELF_URL = "LAMRUNNER_SELF_URL"
SERVICE_ACCOUNT = "LAMRUNNER_TASKS_SERVICE_ACCOUNT"
ENDPOINT = "LAMRUNNER_TASKS_ENDPOINT"

DEFAULT_BUDGET = 9 * 60.0  # seconds: under the 10 minutes the docs deploy the function with
# A continuation is an HTTP task, whose request Cloud Tasks cancels after at most 30 minutes
# (dispatch_deadline): a budget must leave room for the request in flight and the scheduling.
MAX_BUDGET = 29 * 60.0
_QUEUE = re.compile(r"projects/[A-Za-z0-9.:-]+/locations/[A-Za-z0-9-]+/queues/[A-Za-z0-9-]{1,100}")


@dataclass(frozen=True)
class TaskSettings:
    """Where continuations go: the queue, the function's own URL, how tasks authenticate."""

    queue: str
    self_url: str
    service_account: str | None = None  # tasks carry an OIDC token of this account
    endpoint: str | None = None  # host:port of an emulator: insecure channel, no credentials


@dataclass(frozen=True)
class Settings:
    workflow: str
    config_files: tuple[str, ...]
    budget: float
    env: Mapping[str, str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """The settings, or a DefinitionError naming the variable that is wrong."""
        return cls(workflow_path(env), config_files(env), _budget(env), env)

    def load(self) -> tuple[Workflow, dict[str, Any]]:
        """The workflow and its config (workflow `config:` under the config files)."""
        return load_deployed(self.env)

    def tasks(self) -> TaskSettings:
        """The Cloud Tasks settings a suspended run needs; a DefinitionError if one is missing."""
        queue, url = self.env.get(QUEUE, ""), self.env.get(SELF_URL, "")
        for name, value in ((QUEUE, queue), (SELF_URL, url)):
            if not value:
                raise DefinitionError(
                    f"{name} is not set: a run that suspends schedules its continuation with "
                    "Cloud Tasks, which needs the queue and the function's own URL"
                )
        if not _QUEUE.fullmatch(queue):
            raise DefinitionError(
                f"{QUEUE}: expected projects/PROJECT/locations/LOCATION/queues/QUEUE, got {queue!r}"
            )
        if not url.startswith(("https://", "http://")):
            raise DefinitionError(f"{SELF_URL}: expected the function's https:// URL")
        return TaskSettings(
            queue, url, self.env.get(SERVICE_ACCOUNT) or None, self.env.get(ENDPOINT) or None
        )


def _budget(env: Mapping[str, str]) -> float:
    raw = env.get(BUDGET)
    if not raw:
        return DEFAULT_BUDGET
    budget = parse_duration(raw, BUDGET)
    if budget > MAX_BUDGET:
        raise DefinitionError(
            f"{BUDGET}: {raw!r} is longer than {format_duration(MAX_BUDGET)}; Cloud Tasks "
            "cancels a continuation's request after 30 minutes"
        )
    return budget
