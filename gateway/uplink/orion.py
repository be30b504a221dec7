"""Orion-safe text: the one rule for every string the FIWARE formats put in a payload.

FIWARE Orion refuses (400 BadRequest, "Invalid characters in attribute value") any string value
that contains one of `< > " ' = ; ( )`, also a string nested in an object or a list, in a key
or in metadata (Orion manual, "Forbidden characters"). The IoT Agent forwards a measure after
the broker's PUBACK, so a refused update is lost without anyone being told.

The rule: each of those characters becomes its fullwidth form (`chr(ord(c) + 0xFEE0)`, the
Unicode "Halfwidth and Fullwidth Forms" block), which Orion accepts, reads naturally in
Japanese and English text, and is reversible (`restore`):

    <  ＜ U+FF1C    >  ＞ U+FF1E    "  ＂ U+FF02    '  ＇ U+FF07
    =  ＝ U+FF1D    ;  ； U+FF1B    (  （ U+FF08    )  ） U+FF09

`safe(text, also)` applies it (UltraLight adds its separators `|` and `#`, which become ｜ and
＃ the same way); `safe_value` applies it to every string (and object key) inside a value.
Names are different: Orion takes only printable ASCII in an entity id or attribute name, so a
name cannot be made safe by the rule. `name_problem` (gateway.config.names: the config
refuses such names at load time) says what is wrong with one, and `safe_name` is the encoder's
last resort for a name the config never saw (a quantity a driver or profile declares).
Pure: no I/O, no logging.
"""  # noqa: RUF002  (the fullwidth forms are the point of this table)

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config.names import NAME_FORBIDDEN, NAME_MAX, VALUE_FORBIDDEN, name_problem

__all__ = ["FORBIDDEN", "is_safe", "name_problem", "restore", "safe", "safe_name", "safe_value"]

FORBIDDEN = VALUE_FORBIDDEN  # < > " ' = ; ( )
FULLWIDTH = 0xFEE0  # U+FF01..U+FF5E are U+0021..U+007E shifted by this much
UL_SEPARATORS = "|#"  # UltraLight 2.0: fields and measure groups

_TABLES: dict[str, dict[int, str]] = {}


def _table(chars: str) -> dict[int, str]:
    table = _TABLES.get(chars)
    if table is None:
        table = _TABLES[chars] = {ord(c): chr(ord(c) + FULLWIDTH) for c in chars}
    return table


def safe(text: str, also: str = "") -> str:
    """`text` with every character Orion refuses (and each of `also`) in its fullwidth form."""
    return text.translate(_table(FORBIDDEN + also))


def restore(text: str) -> str:
    """The inverse of `safe` (also UltraLight's separators): the original text, provided it
    held no fullwidth forms of these characters of its own."""
    return text.translate({ord(c) + FULLWIDTH: c for c in FORBIDDEN + UL_SEPARATORS})


_PLAIN = frozenset({float, int, bool, type(None)})


def safe_value(value: Any) -> Any:
    """`value` with `safe` applied to every string in it, keys of objects included; numbers,
    booleans and None unchanged; tuples become lists (as JSON has them)."""
    if value.__class__ in _PLAIN:  # nearly every reading: one set lookup, no ABC checks
        return value
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, Mapping):
        return {safe(str(k)): safe_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_value(v) for v in value]
    return value


def is_safe(value: Any) -> bool:
    """No string anywhere in `value` (keys included) holds a character Orion refuses."""
    if isinstance(value, str):
        return not any(c in FORBIDDEN for c in value)
    if isinstance(value, Mapping):
        return all(is_safe(str(k)) and is_safe(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(is_safe(v) for v in value)
    return True


def safe_name(name: str) -> str:
    """`name` with every character Orion refuses in a name replaced by `_` (the encoder's last
    resort: names from the config are refused at load time instead)."""
    if name_problem(name) is None:
        return name
    fixed = "".join(c if "!" <= c <= "~" and c not in NAME_FORBIDDEN else "_" for c in name)
    return fixed[:NAME_MAX] or "_"
