"""The one parser for durations (`500ms`, `1m30s`, or seconds) and sizes (`64MB`, or bytes)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from lamrunner.errors import DefinitionError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ms|s|m|h|d))+")


def parse_duration(value: object, where: str) -> float:
    """Seconds in `value`; `where` names the field for the error message.

    Plain numbers (and numeric strings) are seconds. Negative, NaN and infinite values are
    refused: a delay or timeout of that kind is always a mistake.
    """
    if isinstance(value, bool) or value is None:
        raise _bad(value, where)
    if isinstance(value, int | float):
        try:
            return _note(_checked(float(value), value, where), where)
        except OverflowError:
            raise _bad(value, where) from None
    if not isinstance(value, str):
        raise _bad(value, where)
    text = value.strip().lower().replace(" ", "")
    try:
        return _note(_checked(float(text), value, where), where)
    except ValueError:
        pass
    if not text or not _WHOLE.fullmatch(text):
        raise _bad(value, where)
    total = sum(float(num) * _UNITS[unit] for num, unit in _PART.findall(text))
    return _checked(total, value, where)


SUSPICIOUS_SECONDS = 1000.0
_NOTES: ContextVar[list[str] | None] = ContextVar("lamrunner_duration_notes", default=None)


@contextmanager
def noting_durations() -> Iterator[list[str]]:
    """Collect a warning for every suspicious bare number parse_duration meets in the block.

    A warning is not an error, so parse_duration cannot raise it, and threading a list
    through every parser of every duration field would be noise: whoever can show warnings
    (a Workflow, a directive) opens the block and keeps what it gathered.
    """
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)


def suspicious_duration(seconds: float, where: str) -> str | None:
    """The warning for a bare number of seconds that reads like milliseconds (2000), or None.

    Durations elsewhere are often milliseconds; here a bare number is seconds, so 2000 means
    33 minutes. Legal, so a warning: `2000ms`, `'2000s'` or `'33m20s'` say what is meant.
    """
    if seconds < SUSPICIOUS_SECONDS:
        return None
    shown = _number_text(seconds)  # '1e3' and 1000.0 are written 1000
    return (
        f"{where}: {shown} seconds ({format_duration(seconds)}); "
        f"write '{shown}ms' if you meant milliseconds"
    )


def _note(seconds: float, where: str) -> float:
    notes = _NOTES.get()
    if notes is not None:
        note = suspicious_duration(seconds, where)
        if note is not None:
            notes.append(note)
    return seconds


def _number_text(seconds: float) -> str:
    return str(int(seconds)) if seconds.is_integer() else str(seconds)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?")
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(value: object, where: str) -> int:
    """Bytes in `value`: a whole number of bytes or a string such as '64MB', '512KiB', '1.5GB'."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_BYTES:
        return value
    match = _SIZE.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    number = float(match.group(1)) * _SIZE_UNITS[match.group(2)] if match else 0.0
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_BYTES:
        number = float("inf")
    if number > MAX_BYTES:
        raise DefinitionError(f"{where}: {value!r} is larger than {format_size(MAX_BYTES)}")
    size = int(number)
    if size <= 0:
        raise DefinitionError(
            f"{where}: {value!r} is not a size; use a number of bytes or a string such as "
            "'64MB', '512KiB', '1GB'"
        )
    return size


def format_size(size: int) -> str:
    """Short human form: 50 MB, 512 KB, 300 B."""
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= factor:
            return f"{size / factor:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{size} B"


def format_duration(seconds: float) -> str:
    """Short human form used in logs and errors: 250ms, 1.5s, 2m, 1m30s."""
    if round(seconds * 1000) < 1000:
        return f"{round(seconds * 1000)}ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


MAX_SECONDS = 10 * 365 * 86400.0  # ten years: anything longer is a mistake (and overflows QuickJS)
MAX_BYTES = 2**40  # one TiB


def _checked(seconds: float, original: object, where: str) -> float:
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise _bad(original, where)
    if seconds > MAX_SECONDS:
        raise DefinitionError(f"{where}: {original!r} is longer than ten years")
    return seconds


def _bad(value: object, where: str) -> DefinitionError:
    return DefinitionError(
        f"{where}: {value!r} is not a duration; use a number of seconds or a string such as "
        "'500ms', '1.5s', '2m', '1h', '1m30s'"
    )
