"""lamrunner: run Laminar-style workflows whose steps call HTTP APIs and poll long-running jobs.

The public surface is small; everything here is imported lazily so that `lamrunner --version`
and `import lamrunner` stay fast.

    >>> import lamrunner
    >>> record = lamrunner.run("samples/process-dataset.yaml", input={"datasetId": "ds-42"})
    >>> record["status"]
    'SUCCESS'
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - the documented order (docs/python-api.md), pinned by a test
    "__version__",
    "run",
    "arun",
    "load_workflow",
    "Engine",
    "RunState",
    "LamrunnerError",
    "DefinitionError",
    "TemplateError",
    "HandlerError",
    "HttpStatusError",
    "TransportError",
    "ConditionError",
    "PollingError",
    "PollingFailed",
    "PollingExhausted",
    "DeadlineExceeded",
    "UnexpectedResponse",
    "PollingStalled",
]

_WHERE = {
    "run": "api",
    "arun": "api",
    "load_workflow": "definition.workflow",
    "Engine": "runner.engine",
    "RunState": "runner.state",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    if name in __all__:
        return getattr(import_module(".errors", __name__), name)
    raise AttributeError(f"module 'lamrunner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
