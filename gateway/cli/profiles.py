"""`gateway profiles [NAME] [--profile-dir DIR]`: the device profiles this box can use.

Without NAME: one line per profile found in the search directories (`[gateway]
profile_dirs` of the config when it can be read, $GATEWAY_PROFILES,
/etc/gateway/firmware-configs, the built-in ones): name, protocol, the quantities it emits
with their units, and its description (the sensor model). With NAME: that profile in detail
(file, quantities, the device parameters its examples use, how many examples). Quantities
come from the profile's `[[example]]` readings and, for register maps, its points. A profile
that does not load is listed on stderr with its problems. Exit 0, or 1 for an unknown NAME
or a profile that does not load.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from gateway.config import loader as config_mod
from gateway.config.profiles import Profile, ProfileLibrary, default_dirs
from gateway.errors import ConfigError, Problem


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("profiles", help="list the device profiles, or show one (NAME)")
    p.add_argument("name", nargs="?", help="a profile to show in detail")
    p.add_argument("--profile-dir", action="append", help="extra profile directory")
    p.add_argument(
        "-c",
        "--config",
        default=str(config_mod.DEFAULT_PATH),
        help="read its [gateway] profile_dirs when it exists (default: %(default)s)",
    )
    p.set_defaults(func=main)


def quantities(profile: Profile) -> dict[str, str]:
    """quantity -> unit: from the examples' readings, then the decoder's points if it has any."""
    found: dict[str, str] = {}
    for example in profile.examples:
        for o in example.readings or ():
            found.setdefault(o.quantity, o.unit)
    # Register maps (drivers.modbus) keep their points and derived values on the decoder.
    for attr in ("points", "derived"):
        for point in getattr(profile.decoder, attr, ()):
            quantity, unit = getattr(point, "quantity", None), getattr(point, "unit", "")
            if isinstance(quantity, str) and getattr(point, "emit", True):
                found.setdefault(quantity, unit if isinstance(unit, str) else "")
    return found


def _show_quantities(found: dict[str, str]) -> str:
    return ", ".join(f"{q} ({u})" if u else q for q, u in found.items()) or "-"


def _dirs(args: argparse.Namespace) -> list[Path]:
    extra: list[str] = list(args.profile_dir or ())
    if Path(args.config).is_file():
        # A broken config is `gateway check`'s to report; the other directories still list.
        with contextlib.suppress(ConfigError):
            extra += config_mod.load(args.config).site.profile_dirs
    return default_dirs(extra)


def _detail(profile: Profile) -> None:
    print(f"{profile.name} ({profile.protocol}): {profile.description or '-'}")
    print(f"  file: {profile.path}")
    print("  quantities:")
    for quantity, unit in quantities(profile).items():
        print(f"    {quantity:<24} {unit}")
    kinds = profile.param_kinds()
    kind_names = {bool: "true/false", float: "number", str: "text"}
    shown = ", ".join(f"{k} ({kind_names[v]})" for k, v in kinds.items()) or "none"
    print(f"  device params: {shown}")
    print(f"  examples: {len(profile.examples)}")


def main(args: argparse.Namespace) -> int:
    library = ProfileLibrary(_dirs(args))
    problems: list[Problem] = []
    if args.name:
        profile = library.get(args.name, problems, "profiles")
        for p in problems:
            print(p, file=sys.stderr)
        if profile is None:
            return 1
        _detail(profile)
        return 0
    profiles = library.all(problems)
    width = max((len(p.name) for p in profiles), default=0)
    for profile in sorted(profiles, key=lambda p: (p.protocol, p.name)):
        print(
            f"{profile.name:<{width}}  {profile.protocol:<7}  "
            f"{_show_quantities(quantities(profile))}  — {profile.description}"
        )
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0
