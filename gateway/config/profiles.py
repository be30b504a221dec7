"""Device profiles: one TOML file per sensor model under firmware-configs/, no Python per model.

A profile file has a `[profile]` table (`name`, defaulting to the file stem; `protocol`, which
picks the driver that compiles it; `description`), the protocol's own tables (points, sentence
fields, advert layout), and `[[example]]` vectors:

    [[example]]
    input = "01 03 04 00 02 00 5A"              # text form the protocol's decoder parses
    params = { mount_height = 1200.0 }          # optional device parameters
    readings = [ { quantity = "wind_sector", value = 2, unit = "" } ]
    # or, for input that must be refused:
    error = "checksum"                          # substring of the DecodeError message

Examples are checked whenever a profile is loaded (so `gateway check` catches a wrong table)
and by the test suite for every shipped profile. This module does no device I/O.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.contract import Decoder
from gateway.errors import DecodeError, Problem
from gateway.model import Observation, Value
from gateway.registry import driver_for_protocol, known_protocols
from gateway.section import Section

# The type a profile gives a device parameter (its examples' params): true/false, number, text.
ParamKind = type[bool] | type[float] | type[str]

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "firmware-configs"
SYSTEM_DIR = Path("/etc/gateway/firmware-configs")


def default_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Search order: configured dirs, $GATEWAY_PROFILES, /etc/gateway/firmware-configs, built-in."""
    dirs = [Path(d) for d in extra]
    env = os.environ.get("GATEWAY_PROFILES")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return [*dirs, SYSTEM_DIR, BUILTIN_DIR]


@dataclass(frozen=True)
class Example:
    input: str
    params: Mapping[str, Value]
    readings: tuple[Observation, ...] | None
    error: str | None


@dataclass(frozen=True)
class Profile:
    name: str
    protocol: str
    path: Path
    description: str
    decoder: Decoder
    examples: tuple[Example, ...]

    def param_kinds(self) -> dict[str, ParamKind]:
        """The device parameters the profile declares, by the type its examples give them.

        `bool`, `float` (an integer or a real) or `str`; the first example naming a key
        decides. A key no example names is not declared (callers keep it as text).
        """
        kinds: dict[str, ParamKind] = {}
        for example in self.examples:
            for key, value in example.params.items():
                kind = bool if isinstance(value, bool) else str if isinstance(value, str) else float
                kinds.setdefault(key, kind)
        return kinds


def find_profile_file(name: str, dirs: Sequence[Path]) -> Path | None:
    for base in dirs:
        if not base.is_dir():
            continue
        for candidate in sorted(base.rglob(f"{name}.toml")):
            return candidate
    return None


def all_profile_files(dirs: Sequence[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for base in dirs:
        if base.is_dir():
            for path in sorted(base.rglob("*.toml")):
                seen.setdefault(path.stem, path)
    return list(seen.values())


def load_profile(path: Path, problems: list[Problem]) -> Profile | None:
    """Parse, compile and self-check one profile file; problems name the file and key."""
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(Problem(where, f"cannot read: {exc.strerror or exc}"))
        return None
    except tomllib.TOMLDecodeError as exc:
        problems.append(Problem(where, f"not valid TOML: {exc}"))
        return None
    before = len(problems)
    doc = Section(raw, where, problems)
    head = doc.section("profile", required=True)
    name = head.text("name", path.stem)
    protocol = head.text("protocol")
    description = head.text("description", "")
    head.ignore(*head.raw.keys())  # the driver reads its own [profile] keys
    driver = driver_for_protocol(protocol) if protocol else None
    if protocol and driver is None:
        head.problem(
            "protocol",
            f'unknown protocol "{protocol}"; known: {", ".join(known_protocols()) or "none"}',
        )
    examples = [_parse_example(s) for s in doc.sections("example")]
    if driver is None or len(problems) > before:
        return None
    decoder: Decoder = driver.compile_profile(doc, protocol)
    doc.finish()
    if len(problems) > before:
        return None
    profile = Profile(name, protocol, path, description, decoder, tuple(examples))
    for i, example in enumerate(profile.examples):
        message = check_example(profile.decoder, example)
        if message:
            problems.append(Problem(f"{where}: example[{i}]", message))
    return profile if len(problems) == before else None


def _observation(item: Any, path: str, problems: list[Problem]) -> Observation:
    s = Section(item, path, problems)
    value = s.value("value")
    if not isinstance(value, bool | int | float | str):
        if value is not None:  # None: missing, already reported
            s.problem("value", "expected a number, string or boolean")
        value = ""
    obs = Observation(
        quantity=s.text("quantity"),
        value=value,
        unit=s.text("unit", ""),
        source=s.text("source", None),
        plausible=s.flag("plausible", True),
    )
    s.finish()
    return obs


def _parse_example(s: Section) -> Example:
    text = s.text("input")
    params = s.mapping("params", _param_value, "a number, string or boolean")
    readings = None
    if s.has("readings"):
        items = s.value("readings")
        if not isinstance(items, list):
            s.problem("readings", "expected an array of tables")
            items = []
        readings = tuple(
            _observation(item, f"{s.at('readings')}[{i}]", s.problems)
            for i, item in enumerate(items)
        )
    error = s.text("error", None)
    if (readings is None) == (error is None):
        s.problem(None, "an example needs exactly one of `readings` or `error`")
    s.finish()
    return Example(text, params, readings, error)


def _param_value(v: Any) -> Value:
    if isinstance(v, bool | int | float | str):
        return v
    raise TypeError(v)


def _same_value(a: Value, b: Value) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (a == b and type(a) is type(b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _key(o: Observation) -> tuple[str, str]:
    return (o.source or "", o.quantity)


def check_example(decoder: Decoder, example: Example) -> str | None:
    """Run one vector; None when it holds, else a message saying what differed."""
    try:
        data = decoder.parse_input(example.input)
        got = decoder.decode(data, example.params)
    except DecodeError as exc:
        if example.error is None:
            return f"input {example.input!r} did not decode: {exc}"
        if example.error.lower() not in str(exc).lower():
            return f"expected an error mentioning {example.error!r}, got {exc}"
        return None
    if example.error is not None:
        return f"expected an error mentioning {example.error!r}, got readings {_show(got)}"
    want = sorted(example.readings or (), key=_key)
    have = sorted(got, key=_key)
    if len(want) != len(have) or any(
        _key(w) != _key(h)
        or not _same_value(w.value, h.value)
        or w.unit != h.unit
        or w.plausible != h.plausible
        for w, h in zip(want, have, strict=False)
    ):
        return f"input {example.input!r}: expected {_show(want)}, got {_show(have)}"
    return None


def _show(observations: Iterable[Observation]) -> str:
    return (
        "["
        + ", ".join(
            f"{o.source + ':' if o.source else ''}{o.quantity}={o.value!r}{o.unit and ' ' + o.unit}"
            + ("" if o.plausible else " (implausible)")
            for o in observations
        )
        + "]"
    )


class ProfileLibrary:
    """Profiles by name, loaded once on first use from the search directories."""

    def __init__(self, dirs: Sequence[Path] | None = None) -> None:
        self.dirs = list(dirs) if dirs is not None else default_dirs()
        self._cache: dict[str, Profile | None] = {}

    def get(self, name: str, problems: list[Problem], where: str) -> Profile | None:
        """The named profile, or None with a problem at `where` (the referencing config key)."""
        if name not in self._cache:
            path = find_profile_file(name, self.dirs)
            if path is None:
                problems.append(Problem(where, self._unknown(name)))
                return None
            self._cache[name] = load_profile(path, problems)
        return self._cache[name]

    def names(self) -> list[str]:
        """Every profile name in the search directories (file stems, first one wins)."""
        return [path.stem for path in all_profile_files(self.dirs)]

    def _unknown(self, name: str) -> str:
        import difflib  # only for a mistake: not loaded by a sound config

        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
        quoted = " or ".join(f'"{c}"' for c in close)
        hint = f"; did you mean {quoted}?" if close else ""
        return (
            f'no profile "{name}" in {", ".join(map(str, self.dirs))}{hint} '
            "(`gateway profiles` lists them)"
        )

    def all(self, problems: list[Problem]) -> list[Profile]:
        profiles = []
        for path in all_profile_files(self.dirs):
            if path.stem not in self._cache:
                self._cache[path.stem] = load_profile(path, problems)
            profile = self._cache[path.stem]
            if profile is not None:
                profiles.append(profile)
        return profiles
