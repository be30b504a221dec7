"""`gateway decode PROFILE INPUT [-p KEY=VALUE ...]`: try a profile on a captured frame.

INPUT is the profile's text form (hex bytes, a register list, a line); `-` reads one input
per line from stdin and goes on after a line that fails. Each `-p` value takes the type the
profile declares for that parameter (its `[[example]]` params: a number, true/false or
text); a parameter the profile does not declare stays text, so a bindkey of 32 decimal digits
is never read as a number. Prints one JSON array of readings per input. Exit 0 when every
input decoded, 1 when any failed (or the profile is unknown), 2 for a bad `-p`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence

from gateway.config.profiles import ParamKind, ProfileLibrary, default_dirs
from gateway.errors import DecodeError, Problem
from gateway.model import Observation, Value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("decode", help="decode one input (or '-' for stdin lines) with a profile")
    p.add_argument("profile")
    p.add_argument("input", help="hex bytes, a register list or a text line; '-' reads stdin")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        help="device parameter KEY=VALUE, typed as the profile declares it (else text)",
    )
    p.add_argument("--profile-dir", action="append", help="extra profile directory")
    p.set_defaults(func=main)


def _typed(key: str, raw: str, kind: ParamKind) -> Value:
    """`raw` as `kind`; ValueError naming the parameter when it is not one."""
    if kind is bool:
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"-p {key}: expected true or false, got {raw!r}")
        return raw.lower() == "true"
    if kind is float:
        try:
            return int(raw)
        except ValueError:
            pass
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"-p {key}: expected a number, got {raw!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"-p {key}: expected a finite number, got {raw!r}")
        return number
    return raw


def params(items: Sequence[str], kinds: Mapping[str, ParamKind]) -> dict[str, Value]:
    """`-p KEY=VALUE` options, each typed by `kinds` (a key missing there stays text)."""
    out: dict[str, Value] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-p {item!r}: expected KEY=VALUE")
        out[key] = _typed(key, raw, kinds.get(key, str))
    return out


def readings_json(observations: Sequence[Observation]) -> str:
    out = []
    for o in observations:
        item: dict[str, Value | None] = {"quantity": o.quantity, "value": o.value, "unit": o.unit}
        if o.source is not None:
            item["source"] = o.source
        if not o.plausible:
            item["plausible"] = False
        out.append(item)
    return json.dumps(out, ensure_ascii=False)


def main(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    library = ProfileLibrary(default_dirs(args.profile_dir or ()))
    profile = library.get(args.profile, problems, "profile")
    if profile is None:
        for p in problems:
            print(p, file=sys.stderr)
        return 1
    try:
        device_params = params(args.param or (), profile.param_kinds())
    except ValueError as exc:
        print(f"gateway decode: {exc}", file=sys.stderr)
        return 2
    stdin = args.input == "-"
    lines = sys.stdin if stdin else [args.input]
    failed = 0
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\r\n")
        if stdin and not text.strip():
            continue
        try:
            observations = profile.decoder.decode(profile.decoder.parse_input(text), device_params)
        except DecodeError as exc:
            failed += 1
            # From stdin the error stays in line with the readings around it.
            where = f"line {number}: " if stdin else ""
            print(f"error: {where}{exc}", file=sys.stdout if stdin else sys.stderr, flush=True)
            continue
        print(readings_json(observations), flush=True)
    return 1 if failed else 0
