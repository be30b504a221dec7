"""Declared argument schemas for platform commands: what a handler accepts, checked before it acts.

A command's argument is whatever the platform sent (decoded JSON, or a text holding JSON or a
bare value). A `Schema` names its fields (`Field`: kind, bounds, length, an extra test) and the
field a bare value stands for (`{"siren": 30}` means seconds = 30). `Schema.check` returns a
plain dict of checked values or raises `ArgumentError` naming the field and what it wants:
numbers are always finite, text is bounded, unknown keys are refused. Handlers declare a
schema (`gateway.contract.Command`) and never hand-parse; the command router checks it.

Part of the core foundation: imports only the standard library. No I/O, no logging.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("number", "integer", "boolean", "text")
MAX_TEXT = 128  # characters of a text argument (device ids, rule names) unless a field says


class ArgumentError(ValueError):
    """A command's argument does not match its schema; the message says which and why."""


@dataclass(frozen=True)
class Field:
    """One argument: `kind` (number, integer, boolean, text); numbers are finite and within
    [lo, hi]; `from_text` lets a number arrive as text ("30", as a CLI sends it); `accept` is
    an extra test on a well-typed value, `expect` says what it wants (for the error)."""

    kind: str
    required: bool = False
    lo: float | None = None
    hi: float | None = None
    max_length: int = MAX_TEXT
    from_text: bool = False
    accept: Callable[[Any], bool] | None = None
    expect: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown field kind {self.kind!r}; known: {', '.join(KINDS)}")

    def check(self, name: str, value: object) -> object:
        """The value, checked (a number as float or int); ArgumentError when it is not."""
        checked = self._typed(name, value)
        number = isinstance(checked, int | float) and not isinstance(checked, bool)
        if number and (
            (self.lo is not None and checked < self.lo)  # type: ignore[operator]  # a number
            or (self.hi is not None and checked > self.hi)  # type: ignore[operator]  # a number
        ):
            raise ArgumentError(f'"{name}" must be in [{self._bounds()}], got {_show(value)}')
        if self.accept is not None and not self.accept(checked):
            raise ArgumentError(f'"{name}" must be {self.expect or "valid"}, got {_show(value)}')
        return checked

    def _typed(self, name: str, value: object) -> object:
        kind = self.kind
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ArgumentError(f'"{name}" must be true or false, got {_show(value)}')
            return value
        if kind == "text":
            if not isinstance(value, str) or not value or len(value) > self.max_length:
                raise ArgumentError(
                    f'"{name}" must be a text of 1..{self.max_length} characters, '
                    f"got {_show(value)}"
                )
            return value
        if self.from_text and isinstance(value, str) and len(value) <= 32:
            with contextlib.suppress(ValueError):
                value = float(value) if kind == "number" else int(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ArgumentError(f'"{name}" must be {_article(kind)}, got {_show(value)}')
        if kind == "integer" and not isinstance(value, int):
            raise ArgumentError(f'"{name}" must be an integer, got {_show(value)}')
        if isinstance(value, float) and not math.isfinite(value):
            raise ArgumentError(f'"{name}" must be a finite number, got {_show(value)}')
        return value

    def _bounds(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{lo}, {hi}"


@dataclass(frozen=True)
class Schema:
    """A command's arguments: an object of `fields`, or a bare value meaning `bare` (a field
    name). `Schema()` takes no arguments: whatever is sent is ignored (ping, reload)."""

    fields: Mapping[str, Field] = field(default_factory=dict)
    bare: str | None = None

    def check(self, args: object) -> dict[str, object]:
        """The checked arguments (absent optional fields left out); ArgumentError if not."""
        if not self.fields:
            return {}
        if isinstance(args, str) and args.strip().startswith("{"):
            args = _json_object(args)
        if args is None or args == "":
            args = {}
        if not isinstance(args, dict):
            if self.bare is None:
                raise ArgumentError(f"expected an object with {self._keys()}, got {_show(args)}")
            args = {self.bare: args}
        unknown = [k for k in args if k not in self.fields]
        if unknown:
            shown = ", ".join(_clip(str(k), 32) for k in sorted(unknown)[:5])
            raise ArgumentError(f"unknown key(s) {shown}; known: {self._keys()}")
        out: dict[str, object] = {}
        for name, spec in self.fields.items():
            if name in args:
                out[name] = spec.check(name, args[name])
            elif spec.required:
                raise ArgumentError(f'"{name}" is required')
        return out

    def _keys(self) -> str:
        return ", ".join(self.fields)


def _json_object(text: str) -> object:
    """A text argument holding a JSON object (the router already bounded its size)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ArgumentError(f"argument is not valid JSON: {_clip(str(exc), 80)}") from None


def _article(kind: str) -> str:
    return "an integer" if kind == "integer" else f"a {kind}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: object) -> str:
    """A short, always-encodable picture of a refused value for the answer and the log."""
    text = json.dumps(value, ensure_ascii=True) if _plain(value) else type(value).__name__
    return _clip(text, 40)


def _plain(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
