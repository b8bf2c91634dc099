"""Pure decisions: delay schedules and "what next" after a poll attempt or a retry.

No I/O, no clock, no sleeping: (policy, state, what was seen, now) → the next move. The async
driver in `lamrunner.runner` only sends, evaluates and sleeps, so every rule is tested here
without waiting.
"""
