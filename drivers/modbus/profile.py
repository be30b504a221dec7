"""A Modbus profile file -> a ModbusDecoder: the [profile] head, points, derived values and
triggers, cross-checked (names unique, references resolve, quantities reported once).

Problems are recorded on the Section with their path; no I/O here.
"""

from __future__ import annotations

from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.points import Derived, Point, parse_derived, parse_point, parse_trigger
from gateway.errors import Problem
from gateway.section import Section


def compile_profile(section: Section, protocol: str) -> ModbusDecoder:
    head = section.section("profile")
    head.ignore("name", "protocol", "description")
    head.text("kind", "", choices=("coil", "discrete", "holding", "input"))
    head.text("byte_order", "big", choices=("big", "little"))
    head.text("word_order", "big", choices=("big", "little"))
    head.finish()
    points = []
    for s in section.sections("point", required=True):
        points.append(parse_point(s, head))
        s.finish()
    derived = []
    for s in section.sections("derived"):
        derived.append(parse_derived(s))
        s.finish()
    triggers = []
    for s in section.sections("trigger"):
        triggers.append(parse_trigger(s))
        s.finish()
    _cross_check(section, points, derived)
    attributes = {p.quantity: p.attr for p in points if p.emit and p.attr}
    attributes.update({d.quantity: d.attr for d in derived if d.attr})
    if not points:
        # An empty decoder is still returned so the caller can report every problem at once.
        return ModbusDecoder(points=(), attributes=attributes)
    return ModbusDecoder(tuple(points), tuple(derived), tuple(triggers), "modbus", attributes)


def _cross_check(section: Section, points: list[Point], derived: list[Derived]) -> None:
    names: dict[str, int] = {}
    quantities: set[str] = set()
    for i, p in enumerate(points):
        where = f"{section.at('point')}[{i}]"
        if p.name in names:
            section.problems.append(Problem(where, f'duplicate point name "{p.name}"'))
        names[p.name] = i
        if p.emit and p.quantity in quantities:
            section.problems.append(
                Problem(where, f'quantity "{p.quantity}" is reported twice; add a suffix')
            )
        quantities.add(p.quantity)
    for i, p in enumerate(points):
        if p.decimals_from and p.decimals_from not in names:
            section.problems.append(
                Problem(
                    f"{section.at('point')}[{i}].decimals_from",
                    f'no point named "{p.decimals_from}"; known: {", ".join(names)}',
                )
            )
    for i, d in enumerate(derived):
        if d.point and d.point not in names:
            section.problems.append(
                Problem(
                    f"{section.at('derived')}[{i}].point",
                    f'no point named "{d.point}"; known: {", ".join(names)}',
                )
            )
        elif d.point and points[names[d.point]].type in ("bool", "bit"):
            section.problems.append(
                Problem(f"{section.at('derived')}[{i}].point", "cannot compute with a bit")
            )
        if d.quantity in quantities:
            section.problems.append(
                Problem(
                    f"{section.at('derived')}[{i}].quantity", f'"{d.quantity}" is reported twice'
                )
            )
        quantities.add(d.quantity)
