"""The README's benchmark table, rendered from one run's JSON line (`python -m bench
--markdown FILE`), so the table is copied from a run, never typed.

Only figures that carry an `about` text get a row (the rest are checks, e.g. rows counted); a
row whose settings are the row above's says so instead of repeating them. The note under the
table names the run: command, commit, date, machine and load.
Pure: reads the text it is given, returns text.
"""

from __future__ import annotations

import json
from typing import Any

DASH = "\u2013"  # an en dash, between the lowest and highest repeat
AS_ABOVE = "as above"


def last_record(text: str) -> dict[str, Any]:
    """The last line of `text` that is a bench run's JSON object (a saved run's whole output,
    or just its last line)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("figures"), dict):
            return record
    raise ValueError("no bench result line (a JSON object with 'figures') in the input")


def number(value: Any) -> str:
    """12345 -> '12,345'; 0.5 -> '0.5'; text stays text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != value:
        return "—"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,}"


def settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key} {number(value)}" for key, value in settings.items())


def cell(figure: dict[str, Any]) -> str:
    n = figure["n"]
    runs = f"{n} run{'s' if n != 1 else ''}"
    if n == 1:
        return f"{number(figure['median'])} ({runs})"
    return (
        f"{number(figure['median'])} ({number(figure['min'])}{DASH}{number(figure['max'])}, {runs})"
    )


def rows(record: dict[str, Any]) -> list[str]:
    out = [
        f"| figure | settings | target | median (lowest{DASH}highest repeat) |",
        "| --- | --- | --- | --- |",
    ]
    above: object = None
    for name, figure in record["figures"].items():
        if not figure.get("about"):
            continue
        settings = figure.get("settings", {})
        shown = AS_ABOVE if settings == above else settings_text(settings)
        above = settings
        out.append(
            "| "
            + " | ".join(
                _escape(c)
                for c in (
                    f"`{name}` ({figure['about']})",
                    shown,
                    figure.get("target", ""),
                    cell(figure),
                )
            )
            + " |"
        )
    return out


def note(record: dict[str, Any]) -> str:
    load = record.get("load", {})
    parts = [
        f"From one run: `{record.get('command', 'python -m bench')}`",
        f"commit {record['commit']}" if record.get("commit") else "",
        str(record.get("date", "")),
        str(record.get("machine", "")),
        (
            f"load average {load['before']} before, {load['after']} after"
            if "before" in load and "after" in load
            else ""
        ),
        f"{record['seconds']:.0f} s" if "seconds" in record else "",
    ]
    return (
        "; ".join(p for p in parts if p)
        + ". Each figure is the median of its repeats; in brackets the lowest and the highest."
    )


def markdown(text: str) -> str:
    record = last_record(text)
    return "\n".join([*rows(record), "", note(record)]) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
