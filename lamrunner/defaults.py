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
SUBWORKFLOW_DEPTH = 8  # nested lam.execute & co.: the root run is depth 0
MAX_STEP_RUNS = 1000  # step executions in one run (route loops): limits.maxStepRuns

# network:
ALLOW_LINK_LOCAL = False

# lam.httpRequest
REQUEST_TIMEOUT = 30.0

# backoff, shared by retry: and loopUntil:
INITIAL_DELAY = 1.0
MAX_DELAY = 30.0
MULTIPLIER = 2.0
JITTER = "none"
MAX_THROTTLE_WAIT = 600.0  # throttled waits (429/503 + Retry-After) of one poll or one send

# retry:
RETRY_STRATEGY = "exponential"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRYABLE_EXCEPTIONS = frozenset({"timeout", "connection"})

# loopUntil:
POLL_STRATEGY = "fixed"
POLL_MAX_ATTEMPTS = 10

# loopUntil: fail-closed states, cheap polls, progress and stalls
CONDITIONAL_POLLS = True  # ETag / Last-Modified make the next GET conditional
STALL_TIMEOUT = None  # no stall detection unless asked for

# followAsync: (async request-reply). "done": a final answer (not 202) whose `status` (or
# `state`) field, if it has one, is one of FOLLOW_SUCCEEDED or FOLLOW_FAILED (those fail it);
# compared lower-cased with spaces, '-' and '_' removed.
FOLLOW_ASYNC = None  # None: a GET/HEAD poll whose first answer is a 202 + Location follows it
FOLLOW_SUCCEEDED = ("succeeded", "success", "successful", "completed", "complete", "done", "ok")
FOLLOW_FAILED = ("failed", "failure", "error", "canceled", "cancelled", "expired", "rejected")
FOLLOW_LOCATION_HEADERS = ("operation-location", "location")  # the first one present wins

# idempotencyKey: (a request's)
IDEMPOTENCY_HEADER = "Idempotency-Key"
NON_IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})  # get a key by default in a step that polls

# onGiveUp: (a polled request's) and `lamrunner cancel`
GIVE_UP_TIMEOUT = 10.0  # the longest an onGiveUp request may take (its own timeout if shorter)
GIVE_UP_RESPONSE_BYTES = 64_000  # a last response kept in the checkpoint for onGiveUp, at most
CANCEL_CHECK_INTERVAL = 0.5  # seconds between a running CLI run's looks for a cancel request
CANCEL_WAIT = 15.0  # how long `lamrunner cancel` waits for a running run to stop

# loopUntil.history: the per-attempt rows a poll keeps in the run store (the rest are counted)
HISTORY_FIRST = 5
HISTORY_LAST = 50

# lamrunner validate --explain: AWS Step Functions standard workflows, USD per 1,000 state
# transitions (us-east-1, AWS's price list as of 2026-12; the free tier is not counted)
SFN_PRICE_PER_1000_TRANSITIONS = 0.025
# ... and how many attempt rows of a timeline it prints before eliding the middle
EXPLAIN_TIMELINE_ROWS = 12
PAGINATION_MAX_PAGES = 100  # pages a request with `pagination` follows when maxPages is not set
PAGINATION_MAX_PAGES_LIMIT = 10_000  # the most maxPages may say: a step's response is all of them
OAUTH_REFRESH_EARLY = 30.0  # an oauth2 token is fetched again this long before it expires...
OAUTH_REFRESH_SHARE = 0.1  # ...or this share of its lifetime before, whichever is shorter
OAUTH_TOKEN_TIMEOUT = 30.0  # the longest a token request may take (the request's own if shorter)
