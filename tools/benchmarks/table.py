"""The printed result: one Markdown table (pasted as is into docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .stats import median, ratio, spread


def fmt(value: float | None, digits: int | None = None) -> str:
    """Numbers as a reader wants them: thousands separated, fewer decimals as they grow."""
    if value is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


@dataclass(frozen=True, slots=True)
class Target:
    """A target printed beside a figure; `at_least` or `below` a bound, on the ratio or value."""

    text: str
    bound: float
    on_ratio: bool = True
    at_least: bool = True

    def verdict(self, value: float | None, value_ratio: float | None) -> str:
        seen = value_ratio if self.on_ratio else value
        if seen is None:
            return "n/a"
        ok = seen >= self.bound if self.at_least else seen < self.bound
        return "met" if ok else "missed"


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    unit: str
    runs: tuple[float | None, ...]
    floor_name: str | None = None
    floor: float | None = None
    targets: tuple[Target, ...] = ()
    note: str = ""
    # cores busy with processes outside the benchmark while each run was measured
    others: tuple[float | None, ...] = ()
    # CPU milliseconds the measured process spent per message / request, per run
    cost: tuple[float | None, ...] = ()

    @property
    def value(self) -> float | None:
        return median(self.runs)

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.floor)

    def cells(self) -> list[str]:
        lo_hi = spread(self.runs)
        ratio_text = (f"{fmt(self.ratio, 2 if (self.ratio or 0) >= 0.01 else 4)} × {self.floor_name}"
                      if self.floor_name else "")
        target = "; ".join(f"{t.text}: {t.verdict(self.value, self.ratio)}" for t in self.targets)
        present = sum(1 for r in self.runs if r is not None)
        return [
            self.figure,
            fmt(self.value),
            self.unit,
            ratio_text,
            target,
            f"{fmt(lo_hi[0])}–{fmt(lo_hi[1])}" if lo_hi else "n/a",
            f"{present}/{len(self.runs)}",
            fmt(median(self.cost), 3) if any(c is not None for c in self.cost) else "",
            fmt(median(self.others), 2) if self.others else "",
            self.note,
        ]


HEADER = ["figure", "median", "unit", "ratio", "target", "min–max", "runs", "CPU ms/unit",
          "other load", "note"]


def format_table(rows: Sequence[Row], header: Sequence[str] = HEADER) -> str:
    """A Markdown pipe table with columns padded to line up in a terminal too."""
    body = [row.cells() for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(header)]
    numeric = {1, 5, 6, 7, 8}

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in numeric else ("-" * (w + 2))
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in body)])
