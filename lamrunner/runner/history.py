"""What a poll leaves behind for `lamrunner runs show`, and the excerpts its errors quote.

`attempt_row` is one plain row per poll attempt (the settling one included), handed to the
checkpointer: a person reading a failed run wants every attempt, the status each one got, how
long it took and how long the loop waited after it. The row of a failed poll's last attempt
carries the last response in full (bounded), because the ~200-character excerpt in the error
message is rarely the part of the body that explains the failure. Rows are masked here, where
they are made, with the run's own secrets, so no observer ever stores a secret. A poll's
history is bounded (`loopUntil.history`): each row names the earlier row that leaves it
(`decide.history.row_to_drop`), and a store that keeps rows deletes that one.

`failure_excerpt` is that error-message excerpt: for a JSON object it quotes the fields that
say why (`error`, `message`, `status`, `detail`, `reason`) first, then what fits of the rest.
"""

from __future__ import annotations

import json
from typing import Any

from lamrunner.decide.history import row_to_drop
from lamrunner.decide.polling import Decision, PollState, Succeed, Wait, eta_seconds
from lamrunner.definition.policies import HistoryWindow
from lamrunner.errors import LamrunnerError, TransportError
from lamrunner.http.transport import Response, excerpt
from lamrunner.logs.masking import MASK, SECRET_NAME, Secrets

REASON_KEYS = ("error", "message", "status", "detail", "reason")
EXCERPT_CHARS = 200  # the excerpt of an error message
REASON_CHARS = 1000  # the reason fields may take more: they are the point of the excerpt
LAST_RESPONSE_CHARS = 65_536  # of the body kept in the history (64 KB of ASCII)


def attempt_row(
    state: PollState,
    began: float,
    ended: float,
    response: Response | None,
    problem: str | None,
    error: TransportError | None,
    decision: Decision,
    last: Response | None,
    secrets: Secrets,
    window: HistoryWindow | None = None,
) -> dict[str, Any]:
    """One attempt as `runs show` prints it (times are epoch seconds; the store formats them),
    masked with the run's `secrets`. With the poll's history `window`, the row also says which
    earlier attempt's row now leaves the poll's bounded history (`dropAttempt`, or None) and
    the window (`history`: `{first, last}`), for a store that keeps rows to prune them."""
    waiting = isinstance(decision, Wait)
    status: int | str | None = response.status if response is not None else None
    if status is None and error is not None:
        status = error.kind
    failed = not waiting and not isinstance(decision, Succeed)
    row = {
        "attempt": state.attempt,
        "at": began,
        "status": status,
        "error": problem,
        "durationMs": _ms(ended - began),
        "delayMs": _ms(decision.delay) if isinstance(decision, Wait) else None,
        "nextDue": decision.until if isinstance(decision, Wait) else None,
        "outcome": _outcome(decision),
        "lastResponse": last_response(last, secrets) if failed and last is not None else None,
    }
    if state.progress is not None:  # loopUntil.progress: the value and the ETA after it
        eta = eta_seconds(state, ended)
        row["progress"] = {"percent": state.progress, "etaMs": None if eta is None else _ms(eta)}
    if window is not None:
        row["dropAttempt"] = row_to_drop(window, state.attempt)
        row["history"] = {"first": window.first, "last": window.last}
    return secrets.mask_data(row)  # type: ignore[no-any-return]


def last_response(response: Response, secrets: Secrets) -> dict[str, Any]:
    """`{status, headers, body, truncated}`: the body masked, then cut to LAST_RESPONSE_CHARS.

    Masking comes first so a secret that straddles the cut is not left half visible."""
    text = secrets.mask(response.text[: 2 * LAST_RESPONSE_CHARS])
    truncated = len(text) > LAST_RESPONSE_CHARS or len(response.text) > 2 * LAST_RESPONSE_CHARS
    headers = {k: MASK if SECRET_NAME.search(k) else v for k, v in response.headers.items()}
    return {
        "status": response.status,
        "headers": headers,
        "body": text[:LAST_RESPONSE_CHARS],
        "truncated": truncated,
    }


def failure_excerpt(response: Response, limit: int = EXCERPT_CHARS) -> str:
    """The body on one line for an error message, the fields that explain a failure first."""
    try:
        doc = response.value
    except TransportError:  # says it is JSON but is not: quote its start
        doc = None
    if not isinstance(doc, dict) or not any(k in doc for k in REASON_KEYS):
        return excerpt(response.text, limit)
    first = {k: doc[k] for k in REASON_KEYS if k in doc}
    head = _compact(first)
    if len(head) > REASON_CHARS:
        return head[: REASON_CHARS - 1] + "…"
    rest = {k: v for k, v in doc.items() if k not in first}
    if not rest:
        return head
    whole = head[:-1] + "," + _compact(rest)[1:]
    cap = max(limit, len(head))
    return whole if len(whole) <= cap else whole[: cap - 1] + "…"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _outcome(decision: Decision) -> str:
    if isinstance(decision, Wait):
        return "throttled" if decision.throttled else "wait"
    if isinstance(decision, Succeed):
        return "success"
    error: LamrunnerError = decision.error
    return error.type_name


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
