"""JavaScript: the only place that imports quickjs (the QuickJS binding).

`runtime` runs handlers and conditions in sandboxed QuickJS contexts and translates every
QuickJS error; `simplecond` evaluates simple conditions in Python with QuickJS's answers.
"""
