"""Path-aware reading of one TOML table into typed values.

A `Section` wraps a raw dict, remembers its dotted path (`buses[1].devices[0]`), collects every
problem instead of stopping at the first, and flags keys nobody asked for with a "did you mean"
hint. The core and each driver parse their part of the config and of device profiles with it,
so every message names where the bad value is. It never raises on bad input; callers check
`problems` (or call `raise_problems`) once parsing is done.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar, overload

from gateway.errors import ConfigError, Problem

T = TypeVar("T")


class _Required(enum.Enum):
    """The default of a getter whose key must be present (a typed sentinel)."""

    KEY = enum.auto()


REQUIRED: Final = _Required.KEY


class _Absent(enum.Enum):
    ABSENT = enum.auto()


_ABSENT: Final = _Absent.ABSENT


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
    """A view of one table. Getters return a usable default after recording a problem.

    A getter without a default requires the key (a missing one is a problem and the getter
    returns the type's zero, or `lo`); with a default, an absent key returns the default as
    it is, and a `None` default makes the result optional.
    """

    def __init__(
        self,
        raw: object,
        path: str,
        problems: list[Problem] | None = None,
        defaults: dict[str, dict[str, object]] | None = None,
    ) -> None:
        """`defaults`, when given, is filled for this section and every nested one:
        path -> {key: the default a getter used because the key was absent}."""
        self.path = path
        self.problems: list[Problem] = [] if problems is None else problems
        self.defaults = defaults
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problems.append(Problem(path, f"expected a table, got {_show(raw)}"))
            raw = {}
        # The table as tomllib parsed it: for parsers that read a key another way (`ignore`).
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

    def _get(self, key: str, required: bool) -> object:
        """The raw value, or _ABSENT (a problem when `required`)."""
        self._used.add(key)
        if key in self.raw:
            return self.raw[key]
        if required:
            self.problem(key, "required key is missing")
        return _ABSENT

    def _defaulted(self, key: str, default: object) -> None:
        """Record that `key` was absent and `default` used (for `gateway config`)."""
        if self.defaults is not None and default is not None:
            if isinstance(default, tuple):
                default = list(default)
            self.defaults.setdefault(self.path, {})[key] = default

    # -- typed getters -------------------------------------------------------------------
    @overload
    def text(self, key: str, *, choices: Sequence[str] | None = None) -> str: ...
    @overload
    def text(self, key: str, default: str, *, choices: Sequence[str] | None = None) -> str: ...
    @overload
    def text(
        self, key: str, default: str | None, *, choices: Sequence[str] | None = None
    ) -> str | None: ...
    def text(
        self,
        key: str,
        default: str | _Required | None = REQUIRED,
        *,
        choices: Sequence[str] | None = None,
    ) -> str | None:
        value = self._get(key, default is REQUIRED)
        if value is _ABSENT:
            if isinstance(default, _Required):
                return ""
            self._defaulted(key, default)
            return default
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {_show(value)}")
            return default if isinstance(default, str) else ""
        if choices is not None and value not in choices:
            import difflib  # only for a mistake: not loaded by a sound config

            hint = difflib.get_close_matches(value, choices, n=1)
            extra = f" (did you mean {_show(hint[0])}?)" if hint else ""
            self.problem(key, f"expected one of {', '.join(choices)}; got {_show(value)}{extra}")
            return choices[0] if isinstance(default, _Required) else default
        return value

    @overload
    def integer(self, key: str, *, lo: int | None = None, hi: int | None = None) -> int: ...
    @overload
    def integer(
        self, key: str, default: int, *, lo: int | None = None, hi: int | None = None
    ) -> int: ...
    @overload
    def integer(
        self, key: str, default: int | None, *, lo: int | None = None, hi: int | None = None
    ) -> int | None: ...
    def integer(
        self,
        key: str,
        default: int | _Required | None = REQUIRED,
        *,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int | None:
        value = self._get(key, default is REQUIRED)
        if value is _ABSENT:
            if isinstance(default, _Required):
                return lo if lo is not None else 0
            self._defaulted(key, default)
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"expected an integer, got {_show(value)}")
            return (lo or 0) if isinstance(default, _Required) else default
        if self._in_range(key, value, lo, hi):
            return value
        if isinstance(default, int):
            return default
        return lo if lo is not None else hi

    @overload
    def number(self, key: str, *, lo: float | None = None, hi: float | None = None) -> float: ...
    @overload
    def number(
        self, key: str, default: float, *, lo: float | None = None, hi: float | None = None
    ) -> float: ...
    @overload
    def number(
        self,
        key: str,
        default: float | None,
        *,
        lo: float | None = None,
        hi: float | None = None,
    ) -> float | None: ...
    def number(
        self,
        key: str,
        default: float | _Required | None = REQUIRED,
        *,
        lo: float | None = None,
        hi: float | None = None,
    ) -> float | None:
        value = self._get(key, default is REQUIRED)
        if value is _ABSENT:
            if isinstance(default, _Required):
                return lo if lo is not None else 0.0
            self._defaulted(key, default)
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(key, f"expected a number, got {_show(value)}")
            return (lo or 0.0) if isinstance(default, _Required) else default
        if self._in_range(key, value, lo, hi):
            return float(value)
        fallback = default if isinstance(default, int | float) else lo if lo is not None else hi
        return None if fallback is None else float(fallback)

    def _in_range(self, key: str, value: float, lo: float | None, hi: float | None) -> bool:
        """True when lo <= value <= hi; otherwise records the problem."""
        if (lo is None or value >= lo) and (hi is None or value <= hi):
            return True
        if lo is not None and hi is not None:
            want = f"{lo}..{hi}"
        elif lo is not None:
            want = f">= {lo}"
        else:
            want = f"<= {hi}"
        self.problem(key, f"expected {want}, got {_show(value)}")
        return False

    def flag(self, key: str, default: bool | _Required = REQUIRED) -> bool:
        value = self._get(key, default is REQUIRED)
        if value is _ABSENT:
            if isinstance(default, _Required):
                return False
            self._defaulted(key, default)
            return default
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, got {_show(value)}")
            return False if isinstance(default, _Required) else default
        return value

    def strings(self, key: str, default: Iterable[str] | _Required = REQUIRED) -> tuple[str, ...]:
        value = self._get(key, default is REQUIRED)
        if value is _ABSENT:
            if isinstance(default, _Required):
                return ()
            self._defaulted(key, tuple(default))
            return tuple(default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, f"expected an array of strings, got {_show(value)}")
            return () if isinstance(default, _Required) else tuple(default)
        return tuple(str(v) for v in value)

    def value(self, key: str, default: object = REQUIRED) -> object:
        """The raw TOML value, for the caller to check with isinstance (None when a
        required key is missing)."""
        value = self._get(key, default is REQUIRED)
        if value is _ABSENT:
            if isinstance(default, _Required):
                return None
            self._defaulted(key, default)
            return default
        return value

    def section(self, key: str, *, required: bool = False) -> Section:
        value = self._get(key, required)
        raw = None if value is _ABSENT else value
        return Section(raw, self.at(key), self.problems, self.defaults)

    def sections(self, key: str, *, required: bool = False) -> list[Section]:
        value = self._get(key, required)
        if value is _ABSENT:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected an array of tables ([[{key}]]), got {_show(value)}")
            return []
        return [
            Section(v, f"{self.at(key)}[{i}]", self.problems, self.defaults)
            for i, v in enumerate(value)
        ]

    def mapping(self, key: str, convert: Callable[[Any], T], kind: str) -> dict[str, T]:
        """A free-form table whose values all pass `convert` (which raises TypeError or
        ValueError on a bad value: it is handed the raw TOML value, hence `Any`)."""
        value = self._get(key, False)
        if value is _ABSENT:
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
                import difflib  # only for a mistake: not loaded by a sound config

                hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                extra = f" (did you mean {_show(hint[0])}?)" if hint else ""
                self.problem(key, f"unknown key{extra}")

    def raise_problems(self) -> None:
        if self.problems:
            raise ConfigError(list(self.problems))
