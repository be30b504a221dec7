"""Which names FIWARE Orion takes as an entity id or attribute name (NGSIv2 "Field syntax
restrictions"): 1..256 printable ASCII characters, no whitespace, none of `& ? / #` and none
of the characters Orion refuses in any value, `< > " ' = ; ( )`.

The config refuses a device id or attribute name that breaks this rule (gateway.config.loader:
the platform would refuse every update naming it, after the broker's PUBACK); the uplink's
encoders use it as a last resort for names the config never saw (gateway.uplink.orion).
Pure: no I/O.
"""

from __future__ import annotations

VALUE_FORBIDDEN = "<>\"'=;()"  # Orion: "Invalid characters in attribute value"
NAME_FORBIDDEN = VALUE_FORBIDDEN + "&?/#"
NAME_MAX = 256


def name_problem(name: str) -> str | None:
    """Why Orion would refuse `name` as an entity id or attribute name, or None."""
    if not name:
        return "must not be empty"
    if len(name) > NAME_MAX:
        return f"longer than {NAME_MAX} characters"
    bad = sorted({c for c in name if not ("!" <= c <= "~") or c in NAME_FORBIDDEN})
    if not bad:
        return None
    shown = " ".join(c if c.isprintable() and not c.isspace() else f"U+{ord(c):04X}" for c in bad)
    return (
        f"FIWARE Orion refuses {shown} in a name (it takes printable ASCII without spaces "
        f"and without {' '.join(NAME_FORBIDDEN)})"
    )
