"""lamrunner's date-fns (`format`, `parseISO` preloaded in JavaScript handlers) against the real
date-fns 2.30.0, run by Node on the same inputs, in the same time zones.

The real date-fns is npm-installed into .cache/npm by scripts/bootstrap.sh (which also installs
node and npm when missing and it may), so this test runs in CI, never skips: without them it
fails saying how to get them. QuickJS reads TZ as Node does, so both run in subprocesses with
TZ set: UTC, a zone with daylight saving (America/New_York) and one with a half-hour offset
(Asia/Kolkata).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATE_FNS = ROOT / ".cache" / "npm" / "node_modules" / "date-fns"
ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]

# The same program runs in both: a handler in lamrunner, a function in Node.
COMPARE = """(cases) => cases.map(([kind, arg, pattern]) => {
  try {
    if (kind === "format") return format(typeof arg === "number" ? new Date(arg) : arg, pattern);
    const d = parseISO(arg);
    return isNaN(d.getTime()) ? "Invalid Date" : [d.getTime(), format(d, "yyyy-MM-dd'T'HH:mm:ss.SSSxxx")];
  } catch (e) {
    return "!" + e.name + ": " + e.message;
  }
})"""

TOKENS = str.split(
    "G GG GGG GGGG GGGGG y yo yy yyy yyyy yyyyy u uu uuuu Q Qo QQ QQQ QQQQ QQQQQ q qo qq qqq "
    "qqqq qqqqq M Mo MM MMM MMMM MMMMM L Lo LL LLL LLLL LLLLL d do dd DDD Do DDDD E EE EEE EEEE "
    "EEEEE EEEEEE e eo ee eee eeee eeeee eeeeee c co cc ccc cccc ccccc cccccc i io ii iii iiii "
    "iiiii iiiiii a aa aaa aaaa aaaaa b bb bbb bbbb bbbbb B BB BBB BBBB BBBBB h ho hh H Ho HH K "
    "Ko KK k ko kk m mo mm s so ss S SS SSS SSSS X XX XXX XXXX XXXXX x xx xxx xxxx xxxxx O OOOO "
    "z zz zzz zzzz t tt T TT P PP PPP PPPP PPPPP p pp ppp pppp Pp PPpp PPPppp PPPPpppp"
)
PATTERNS = [
    *TOKENS,
    "yyyy-MM-dd",
    "yyyy-MM-dd'T'HH:mm:ss.SSSxxx",
    "yyyy-MM-dd'T'HH:mm:ssXXX",
    "dd/MM/yyyy HH:mm",
    "MMM d, yyyy h:mm a",
    "EEEE, MMMM do yyyy",
    "'Today is' EEEE",
    "h 'o''clock'",
    "''",
    "'unterminated",
    "yyyy-MM-DD",  # protected token: date-fns throws
    "YYYY",
    "D",
    "Jq",  # unknown letter: RangeError
    "yyyy 😀 MM — ü",
    "HH:mm:ss.SSS aaa",
]
FIXED_DATES = [
    0,
    951782400000,  # 2000-02-29
    1709164800000,  # 2024-02-29
    1710054000000,  # 2024-03-10T07:00Z, New York's spring-forward
    1730613600000,  # 2024-11-03T06:00Z, New York's fall-back
    1704067199999,  # 2023-12-31T23:59:59.999Z
    1704110400000,  # 2024-01-01T12:00Z
    -2208988800000,  # 1900-01-01
    -62135596800000,  # 0001-01-01
    -62198755200000,  # year 0: 1 BC
    253402300799999,  # 9999-12-31
    -1,
    1234567890123,
]
PARSE = [
    "2024-03-04",
    "2024-03-04T05:06:07",
    "2024-03-04T05:06:07Z",
    "2024-03-04T05:06:07.123+02:00",
    "2024-03-04T05:06:07,5-0530",
    "2024-03-04 05:06",
    "20240304T050607Z",
    "2024-W10-2",
    "2024W102",
    "2024-064",
    "2024-02-30",
    "2023-02-29",
    "2024-13-01",
    "2024-03-04T24:00:00",
    "2024-03-04T25:00:00",
    "2024-03-04T12:60",
    "2024-03-04T05:06:07+02:70",
    "+002024-03-04",
    "-000050-01-01",
    "20",
    "2024",
    "2024-03",
    "T10:00",
    "not a date",
    "soon",
    "x",
    "W10",
    "",
    "2024-03-04T05:06:07.123456789Z",
    "2024-03-04T05.5",
    "2024-03-04T05:06:07 Z",
]


def _cases() -> list[list[Any]]:
    rng = random.Random(2_30_0)
    dates = FIXED_DATES + [rng.randint(-2208988800000, 4102444800000) for _ in range(40)]
    cases: list[list[Any]] = [["format", d, p] for d in dates for p in PATTERNS]
    cases += [["format", None, "yyyy"], ["format", "2024-01-01", "yyyy"], ["format", 1e20, "y"]]
    cases += [["parse", s, None] for s in PARSE]
    return cases


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None or not (DATE_FNS / "package.json").is_file():
        pytest.fail(
            f"{tool} and date-fns 2.30.0 in {DATE_FNS.parent} are needed to check lamrunner's "
            "date-fns against the real one: run `bash scripts/bootstrap.sh` (it installs both)"
        )
    return found


def _node(cases: list[list[Any]], zone: str) -> Any:
    node = _need("node")
    script = (
        f"const {{format, parseISO}} = require({json.dumps(str(DATE_FNS))});"
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        f"process.stdout.write(JSON.stringify(({COMPARE})(cases)));"
    )
    out = subprocess.run(
        [node, "-e", script],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": zone},
        timeout=60,
    )
    return json.loads(out.stdout)


def _lamrunner(cases: list[list[Any]], zone: str) -> Any:
    script = (
        "import asyncio, json, sys\n"
        "from lamrunner.js.runtime import JsEngine, JsLimits\n"
        "async def main():\n"
        "    js = JsEngine(workers=1)\n"
        "    try:\n"
        "        limits = JsLimits(timeout=30, memory=500_000_000)\n"
        "        out = await js.call_handler(sys.argv[1], sys.stdin.read(), limits, "
        "lambda *a: None)\n"
        "    finally:\n"
        "        js.close()\n"
        "    sys.stdout.write(out)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, COMPARE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": zone},
        timeout=120,
    )
    return json.loads(out.stdout)


STANDARD_TIME = -2177452800000  # 1901-01-01: zones had local mean time before about then
INPUT = re.compile(r" to the input `[^`]*`")  # String(date): each engine writes its own


def _comparable(case: list[Any], zone: str) -> bool:
    """Whether the engines agree on the local time itself. Before standard time, a zone's
    offset had seconds (LMT: Kolkata +05:53:28), which V8 keeps and QuickJS rounds to minutes;
    week-numbering tokens are not supported (a RangeError, tested below)."""
    kind, arg, pattern = case
    if kind == "format" and pattern[:1] in ("Y", "R", "w", "I"):
        return False
    if zone == "UTC":
        return True
    if kind == "parse":
        return not arg.startswith(("-", "+0000"))
    return not isinstance(arg, int | float) or arg >= STANDARD_TIME


def _same(want: Any, have: Any) -> bool:
    if isinstance(want, str) and isinstance(have, str):
        return INPUT.sub("", want) == INPUT.sub("", have)
    return bool(want == have)


@pytest.mark.parametrize("zone", ZONES)
def test_format_and_parse_iso_match_date_fns(zone: str) -> None:
    cases = _cases()
    expected, got = _node(cases, zone), _lamrunner(cases, zone)
    assert len(expected) == len(got) == len(cases)
    compared = [
        (case, want, have)
        for case, want, have in zip(cases, expected, got, strict=True)
        if _comparable(case, zone)
    ]
    assert len(compared) > 0.9 * len(cases)
    diffs = [(case, want, have) for case, want, have in compared if not _same(want, have)]
    assert diffs[:20] == [], f"{len(diffs)} of {len(cases)} differ in TZ={zone}"


def test_the_time_zone_is_honoured() -> None:
    """The non-UTC runs above mean something only if QuickJS reads TZ."""
    cases = [["format", 0, "xxx"]]
    assert _lamrunner(cases, "Asia/Kolkata") == ["+05:30"]
    assert _lamrunner(cases, "UTC") == ["+00:00"]


def test_week_numbering_tokens_are_refused_with_a_clear_error() -> None:
    got = _lamrunner([["format", 0, "RRRR-'W'II"], ["format", 0, "w"]], "UTC")
    assert got == [
        "!RangeError: the week-numbering token `RRRR` is not supported by lamrunner's date-fns "
        "(format `RRRR-'W'II`)",
        "!RangeError: the week-numbering token `w` is not supported by lamrunner's date-fns "
        "(format `w`)",
    ]
