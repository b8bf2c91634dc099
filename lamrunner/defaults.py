"""Every default lamrunner applies when a workflow leaves a setting out, in one place.

The base layer (beside `units` and `errors`, importing nothing): the definition layer builds its
Limits and policies from these, and the boundaries below it (js/, http/) take their fallbacks
from here too. docs/workflow-format.md and docs/polling-and-retry.md state the same values;
tests/test_defaults.py checks that they agree. Durations are seconds, sizes are bytes (decimal:
`100MB` in a workflow is 100,000,000).
"""

from __future__ import annotations

# limits: (workflow-level)
HANDLER_TIMEOUT = 5.0
HANDLER_MEMORY = 100_000_000
CONDITION_TIMEOUT = 1.0
CONDITION_MEMORY = 64_000_000
CONCURRENCY = 10
MAX_RESPONSE_BYTES = 50_000_000

# network:
ALLOW_LINK_LOCAL = False

# lam.httpRequest
REQUEST_TIMEOUT = 30.0

# backoff, shared by retry: and loopUntil:
INITIAL_DELAY = 1.0
MAX_DELAY = 30.0
MULTIPLIER = 2.0
JITTER = "none"

# retry:
RETRY_STRATEGY = "exponential"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRYABLE_EXCEPTIONS = frozenset({"timeout", "connection"})

# loopUntil:
POLL_STRATEGY = "fixed"
POLL_MAX_ATTEMPTS = 10

# loopUntil.history: the per-attempt rows a poll keeps in the run store (the rest are counted)
HISTORY_FIRST = 5
HISTORY_LAST = 50

# lamrunner validate --explain: AWS Step Functions standard workflows, USD per 1,000 state
# transitions (us-east-1, AWS's price list as of 2026-12; the free tier is not counted)
SFN_PRICE_PER_1000_TRANSITIONS = 0.025
# ... and how many attempt rows of a timeline it prints before eliding the middle
EXPLAIN_TIMELINE_ROWS = 12
