"""The defaults the docs state are the ones lamrunner applies (lamrunner/defaults.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lamrunner import defaults
from lamrunner.definition.directives import parse_directive
from lamrunner.definition.policies import parse_loop_until, parse_retry
from lamrunner.definition.workflow import Limits
from lamrunner.units import parse_duration, parse_size

DOCS = Path(__file__).resolve().parent.parent / "docs"
ROW = re.compile(r"^\| `(\w+)` \| `([^`]+)` \|", re.MULTILINE)


def documented(doc: str, heading: str) -> dict[str, str]:
    """The `key` → `default` rows of the table under `## heading` in docs/`doc`."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return dict(ROW.findall(section))


def value(text: str, kind: str) -> object:
    if kind == "duration":
        return parse_duration(text, "docs")
    if kind == "size":
        return parse_size(text, "docs")
    return json.loads(text) if text[0] in "[0123456789" else text


LIMITS = {
    "handlerTimeout": ("duration", defaults.HANDLER_TIMEOUT),
    "handlerMemory": ("size", defaults.HANDLER_MEMORY),
    "conditionTimeout": ("duration", defaults.CONDITION_TIMEOUT),
    "conditionMemory": ("size", defaults.CONDITION_MEMORY),
    "concurrency": ("plain", defaults.CONCURRENCY),
    "maxResponseBytes": ("size", defaults.MAX_RESPONSE_BYTES),
    "subWorkflowDepth": ("plain", defaults.SUBWORKFLOW_DEPTH),
}
BACKOFF = {
    "initialDelay": ("duration", defaults.INITIAL_DELAY),
    "maxDelay": ("duration", defaults.MAX_DELAY),
    "multiplier": ("plain", defaults.MULTIPLIER),
    "jitter": ("plain", defaults.JITTER),
}
LOOP = {
    **BACKOFF,
    "maxAttempts": ("plain", defaults.POLL_MAX_ATTEMPTS),
    "strategy": ("plain", defaults.POLL_STRATEGY),
    "maxThrottleWait": ("duration", defaults.MAX_THROTTLE_WAIT),
}
RETRY = {
    **BACKOFF,
    "strategy": ("plain", defaults.RETRY_STRATEGY),
    "retryableStatusCodes": ("plain", sorted(defaults.RETRYABLE_STATUSES)),
    "retryableExceptions": ("plain", sorted(defaults.RETRYABLE_EXCEPTIONS)),
    "maxThrottleWait": ("duration", defaults.MAX_THROTTLE_WAIT),
}


@pytest.mark.parametrize(
    ("doc", "heading", "expected"),
    [
        ("workflow-format.md", "Limits", LIMITS),
        ("polling-and-retry.md", "`loopUntil`", LOOP),
        ("polling-and-retry.md", "`retry`", RETRY),
    ],
)
def test_the_docs_tables_state_the_defaults(doc, heading, expected):
    table = documented(doc, heading)
    for key, (kind, constant) in expected.items():
        got = value(table[key], kind)
        assert sorted(got) == constant if isinstance(got, list) else got == constant, key


def test_the_docs_state_the_request_timeout():
    text = (DOCS / "directives.md").read_text(encoding="utf-8")
    stated = re.search(r"^\| `timeout` \| `([^`]+)` \| per HTTP attempt", text, re.MULTILINE)
    assert stated and parse_duration(stated[1], "docs") == defaults.REQUEST_TIMEOUT


def test_the_workflow_format_example_shows_the_defaults():
    text = (DOCS / "workflow-format.md").read_text(encoding="utf-8")
    block = text.split("\nlimits:", 1)[1].split("\nnetwork:", 1)[0]
    shown = dict(re.findall(r"^\s+(\w+): (\S+)", block, re.MULTILINE))
    for key, raw in shown.items():
        kind, constant = LIMITS[key]
        assert value(raw, kind) == constant, key


def test_lamrunner_applies_the_defaults():
    assert Limits() == Limits(
        defaults.HANDLER_TIMEOUT,
        defaults.HANDLER_MEMORY,
        defaults.CONDITION_TIMEOUT,
        defaults.CONDITION_MEMORY,
        defaults.CONCURRENCY,
        defaults.MAX_RESPONSE_BYTES,
    )
    poll = parse_loop_until({"condition": "true"}, "loopUntil")
    assert poll.max_attempts == defaults.POLL_MAX_ATTEMPTS
    assert poll.backoff.strategy == defaults.POLL_STRATEGY
    retry = parse_retry({"maxAttempts": 2}, "retry")
    assert retry.backoff.strategy == defaults.RETRY_STRATEGY
    assert retry.retryable_statuses == defaults.RETRYABLE_STATUSES
    assert retry.retryable_exceptions == defaults.RETRYABLE_EXCEPTIONS
    for backoff in (poll.backoff, retry.backoff):
        assert (backoff.initial_delay, backoff.max_delay) == (
            defaults.INITIAL_DELAY,
            defaults.MAX_DELAY,
        )
        assert (backoff.multiplier, backoff.jitter) == (defaults.MULTIPLIER, defaults.JITTER)
    request = parse_directive({"lam.httpRequest": {"method": "GET", "url": "http://x/"}})
    assert request.requests[0].timeout == defaults.REQUEST_TIMEOUT
