"""Path-aware reading of one TOML table into typed values.

A `Section` wraps a raw dict, remembers its dotted path (`buses[1].devices[0]`), collects every
problem instead of stopping at the first, and flags keys nobody asked for with a "did you mean"
hint. The core and each driver parse their part of the config and of device profiles with it,
so every message names where the bad value is. It never raises on bad input; callers check
`problems` (or call `raise_problems`) once parsing is done.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from gateway.errors import ConfigError, Problem

T = TypeVar("T")
_MISSING: Any = object()
REQUIRED: Any = object()


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value).replace("'", '"') if "'" in repr(value)[1:-1] else f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


class Section:
    """A view of one table. Getters return a usable default after recording a problem."""

    def __init__(self, raw: Any, path: str, problems: list[Problem] | None = None) -> None:
        self.path = path
        self.problems: list[Problem] = [] if problems is None else problems
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problems.append(Problem(path, f"expected a table, got {_show(raw)}"))
            raw = {}
        self.raw: dict[str, Any] = raw
        self._used: set[str] = set()

    # -- paths and problems --------------------------------------------------------------
    def at(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str | None, message: str) -> None:
        self.problems.append(Problem(self.at(key) if key is not None else self.path, message))

    def has(self, key: str) -> bool:
        return key in self.raw

    def _get(self, key: str, default: Any) -> Any:
        self._used.add(key)
        if key in self.raw:
            return self.raw[key]
        if default is REQUIRED:
            self.problem(key, "required key is missing")
            return _MISSING
        return default

    # -- typed getters -------------------------------------------------------------------
    def text(
        self, key: str, default: Any = REQUIRED, *, choices: Sequence[str] | None = None
    ) -> Any:
        value = self._get(key, default)
        if value is _MISSING:
            return "" if default is REQUIRED else default
        if value is default and key not in self.raw:
            return value
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {_show(value)}")
            return "" if default in (REQUIRED, None) else default
        if choices is not None and value not in choices:
            hint = difflib.get_close_matches(value, choices, n=1)
            extra = f" (did you mean {_show(hint[0])}?)" if hint else ""
            self.problem(key, f"expected one of {', '.join(choices)}; got {_show(value)}{extra}")
            return choices[0] if default is REQUIRED else default
        return value

    def integer(
        self, key: str, default: Any = REQUIRED, *, lo: int | None = None, hi: int | None = None
    ) -> Any:
        value = self._get(key, default)
        if value is _MISSING:
            return lo if lo is not None else 0
        if value is default and key not in self.raw:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"expected an integer, got {_show(value)}")
            return default if default is not REQUIRED else (lo or 0)
        return self._check_range(key, value, lo, hi, default)

    def number(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        lo: float | None = None,
        hi: float | None = None,
    ) -> Any:
        value = self._get(key, default)
        if value is _MISSING:
            return lo if lo is not None else 0.0
        if value is default and key not in self.raw:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(key, f"expected a number, got {_show(value)}")
            return default if default is not REQUIRED else (lo or 0.0)
        return float(self._check_range(key, value, lo, hi, default))

    def _check_range(self, key: str, value: Any, lo: Any, hi: Any, default: Any) -> Any:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                want = f"{lo}..{hi}"
            elif lo is not None:
                want = f">= {lo}"
            else:
                want = f"<= {hi}"
            self.problem(key, f"expected {want}, got {_show(value)}")
            if default is not REQUIRED and default is not None:
                return default
            return lo if lo is not None else hi
        return value

    def flag(self, key: str, default: Any = REQUIRED) -> Any:
        value = self._get(key, default)
        if value is _MISSING:
            return False
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {_show(value)}")
            return bool(default) if default is not REQUIRED else False
        return value

    def strings(self, key: str, default: Any = REQUIRED) -> tuple[str, ...]:
        value = self._get(key, default)
        if value is _MISSING:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            self.problem(key, f"expected an array of strings, got {_show(value)}")
            return tuple(default) if default not in (REQUIRED, None) else ()
        return tuple(value)

    def value(self, key: str, default: Any = REQUIRED) -> Any:
        value = self._get(key, default)
        return None if value is _MISSING else value

    def section(self, key: str, *, required: bool = False) -> Section:
        value = self._get(key, REQUIRED if required else None)
        return Section(None if value is _MISSING else value, self.at(key), self.problems)

    def sections(self, key: str, *, required: bool = False) -> list[Section]:
        value = self._get(key, REQUIRED if required else None)
        if value is None or value is _MISSING:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected an array of tables ([[{key}]]), got {_show(value)}")
            return []
        return [Section(v, f"{self.at(key)}[{i}]", self.problems) for i, v in enumerate(value)]

    def mapping(self, key: str, convert: Callable[[Any], T], kind: str) -> dict[str, T]:
        """A free-form table whose values all pass `convert` (which raises on a bad value)."""
        value = self._get(key, None)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, got {_show(value)}")
            return {}
        out: dict[str, T] = {}
        for k, v in value.items():
            try:
                out[k] = convert(v)
            except (TypeError, ValueError):
                self.problems.append(
                    Problem(f"{self.at(key)}.{k}", f"expected {kind}, got {_show(v)}")
                )
        return out

    def backoff(self, initial: float, maximum: float) -> tuple[float, float]:
        """`reconnect_min` and `reconnect_max` (seconds), checked to be in order."""
        low = self.number("reconnect_min", initial, lo=0.01, hi=3600.0)
        high = self.number("reconnect_max", maximum, lo=0.01, hi=86400.0)
        if high < low:
            self.problem("reconnect_max", f"must be >= reconnect_min ({low}), got {high}")
        return low, high

    # -- closing -------------------------------------------------------------------------
    def ignore(self, *keys: str) -> None:
        """Mark keys as handled elsewhere (another parser reads them from `raw`)."""
        self._used.update(keys)

    def finish(self, known: Iterable[str] = ()) -> None:
        """Report every key nobody read, with the closest known key as a hint."""
        valid = sorted(self._used | set(known))
        for key in self.raw:
            if key not in self._used:
                hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                extra = f" (did you mean {_show(hint[0])}?)" if hint else ""
                self.problem(key, f"unknown key{extra}")

    def raise_problems(self) -> None:
        if self.problems:
            raise ConfigError(list(self.problems))
