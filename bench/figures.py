"""What a bench run reports: each figure as the median of its repeats with the spread (the
lowest and the highest repeat), the settings it ran with, and what it measures.

Pure bookkeeping: nothing here measures, times or prints. A module measures one repeat as a
dict of numbers; `repeat` runs it n times and `collect` turns the repeats into figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# smoke: tiny sizes, one repeat, for CI (it must finish; its figures mean little).
# quick: smaller sizes. full: the sizes the README's table comes from.
Mode = Literal["smoke", "quick", "full"]
MODES: tuple[Mode, ...] = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Doc:
    """What a figure measures (the README table's text) and the goal it is held to, if any."""

    about: str
    target: str = ""


@dataclass
class Figure:
    values: list[float]
    settings: dict[str, Any] = field(default_factory=dict)
    doc: Doc = Doc("")

    @property
    def median(self) -> float:
        return _tidy(statistics.median(self.values))

    @property
    def low(self) -> float:
        return _tidy(min(self.values))

    @property
    def high(self) -> float:
        return _tidy(max(self.values))

    def record(self) -> dict[str, Any]:
        """The figure as the JSON line carries it."""
        out: dict[str, Any] = {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "n": len(self.values),
            "values": [_tidy(v) for v in self.values],
            "settings": self.settings,
        }
        if self.doc.about:
            out["about"] = self.doc.about
        if self.doc.target:
            out["target"] = self.doc.target
        return out


def repeat(n: int, once: Callable[[], Mapping[str, float]]) -> list[Mapping[str, float]]:
    """`once()` run n times (at least once), each repeat's figures in order."""
    return [once() for _ in range(max(1, n))]


def collect(
    samples: Sequence[Mapping[str, float]],
    settings: Mapping[str, Any],
    docs: Mapping[str, Doc] | None = None,
    prefix: str = "",
) -> dict[str, Figure]:
    """One Figure per name the repeats report, all with the same settings.

    Every repeat must report the same names: a figure missing from one repeat would make its
    median a median of fewer runs than the output says.
    """
    if not samples:
        return {}
    names = list(samples[0])
    for s in samples[1:]:
        if list(s) != names:
            raise ValueError(f"repeats report different figures: {names} vs {list(s)}")
    docs = docs or {}
    return {
        prefix + name: Figure(
            [float(s[name]) for s in samples], dict(settings), docs.get(prefix + name, Doc(""))
        )
        for name in names
    }


def run_record(figures: Mapping[str, Figure], **context: Any) -> dict[str, Any]:
    """The run's last line: every figure's record plus where, when and how it ran."""
    return {"figures": {name: f.record() for name, f in figures.items()}, **context}


def _tidy(value: float) -> float:
    """Whole numbers and figures of 1,000 or more print as integers; below 1 four decimals,
    else two."""
    if value != value or value in (float("inf"), float("-inf")):
        return value
    if float(value).is_integer() or abs(value) >= 1000:
        return round(value)
    return round(value, 4 if abs(value) < 1 else 2)
