"""lamrunner's benchmark suite: `python -m bench` prints one table of figures and ratios, each
against a baseline measured in the same run on the same machine (see bench/README.md).

A scenario is a module in `bench.scenarios` with `run(bench) -> list[Row]`; its raw figures go
into `bench.raw[name]` for `--json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Row:
    """One line of the table. `goal` is ">= 0.90x" / "<= 1.50x" (on the ratio value/baseline)
    or ">= 10" / "<= 300" (on the value); empty when there is none."""

    scenario: str
    contender: str
    figure: str
    value: float | None
    baseline: float | None = None
    goal: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> str:
        if not self.goal:
            return "-"
        op, target = self.goal.split()
        measured = self.ratio if target.endswith("x") else self.value
        if measured is None:
            return "no"
        bound = float(target.rstrip("x"))
        return "yes" if (measured >= bound if op == ">=" else measured <= bound) else "no"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == int(value):
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


COLUMNS = (
    ("scenario", 11),
    ("contender", 24),
    ("figure", 32),
    ("value", 9),
    ("baseline", 9),
    ("ratio", 7),
    ("goal", 9),
    ("met", 3),
)


def format_table(rows: list[Row]) -> str:
    lines = ["  ".join(f"{name:<{width}}" for name, width in COLUMNS).rstrip()]
    notes: list[str] = []
    for row in rows:
        figure = row.figure
        if row.note:
            notes.append(row.note)
            figure += f" [{len(notes)}]"
        cells = (
            row.scenario,
            row.contender,
            figure,
            fmt(row.value),
            "-" if row.baseline is None else fmt(row.baseline),
            "-" if row.ratio is None else f"{row.ratio:.2f}",
            row.goal or "-",
            row.met,
        )
        lines.append(
            "  ".join(
                f"{cell:<{width}}" for cell, (_, width) in zip(cells, COLUMNS, strict=True)
            ).rstrip()
        )
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]
    return "\n".join(lines)
