"""The compiled decoder (drivers.modbus.recipe) against the plain one: the same Observations,
or the same error, over every shipped profile and its examples, random profiles and hostile
register values. No I/O."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.decode import ModbusDecoder
from drivers.modbus.plan import plan
from drivers.modbus.points import Derived, Point
from drivers.modbus.recipe import Recipe
from gateway.config.profiles import BUILTIN_DIR, load_profile
from gateway.errors import DecodeError
from gateway.model import Observation

SHIPPED = sorted((BUILTIN_DIR / "modbus").glob("*.toml"))
PROFILES = [load_profile(p, []) for p in SHIPPED]
DECODERS = [p.decoder for p in PROFILES if p is not None]


def _exact(observations: Sequence[Observation]) -> list[tuple[object, ...]]:
    """Observations compared exactly: 1, 1.0 and True differ, and so do 0.0 and -0.0."""
    return [
        (o.quantity, type(o.value).__name__, repr(o.value), o.unit, o.source, o.plausible)
        for o in observations
    ]


def _outcome(call: Callable[[], list[Observation]]) -> tuple[str, object]:
    try:
        return "ok", _exact(call())
    except Exception as exc:  # whatever one raises, the other must raise too
        return type(exc).__name__, str(exc)


def _same(recipe: Recipe, values: Sequence[Sequence[object]], params: dict[str, object]) -> str:
    """Assert the recipe decodes `values` exactly as the plain decoder decodes the table they
    make; the outcome ("ok" or the error's type)."""
    got = _outcome(lambda: recipe.decode(values, params))  # type: ignore[arg-type]
    want = _outcome(lambda: recipe.decoder.decode(recipe.registers(values), params))  # type: ignore[arg-type]
    assert got == want
    # Again: the compiled path keeps scaled values it has worked out, and must not differ
    # once it does.
    assert _outcome(lambda: recipe.decode(values, params)) == want  # type: ignore[arg-type]
    return got[0]


def _lists(
    recipe: Recipe, table: dict[str, dict[int, int]], missing: object = None
) -> list[list[object]]:
    """The lists the link would read for `table` (an address it lacks holds `missing`)."""
    return [
        [table.get(b.kind, {}).get(a, missing) for a in range(b.address, b.end)]
        for b in recipe.blocks
    ]


def test_every_shipped_sensor_profile_takes_the_compiled_path() -> None:
    # Otherwise the comparisons below would compare the plain decoder with itself.
    names = {
        p.name
        for p in PROFILES
        if p is not None and Recipe(p.decoder, plan(p.decoder.spans())).compiled
    }
    assert names == {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
@pytest.mark.parametrize("gap", [0, 3])
def test_shipped_examples_decode_the_same(path: Path, gap: int) -> None:
    profile = load_profile(path, [])
    assert profile is not None and profile.examples
    decoder = profile.decoder
    recipe = Recipe(decoder, plan(decoder.spans(), gap))
    outcomes = set()
    for example in profile.examples:
        with contextlib.suppress(DecodeError):  # input that does not parse has no registers
            table = decoder.parse_input(example.input)
            for missing in (None, 0, 0xFFFF):
                outcome = _same(recipe, _lists(recipe, table, missing), example.params)
                if missing is None:
                    want = "ok" if example.error is None else "DecodeError"
                    full = all(
                        a in table.get(b.kind, {})
                        for b in recipe.blocks
                        for a in range(b.address, b.end)
                    )
                    assert outcome == want or not full
                outcomes.add(outcome)
    assert "ok" in outcomes


def test_example_readings_come_out_of_the_compiled_path() -> None:
    decoder = next(d for p, d in zip(SHIPPED, DECODERS, strict=True) if p.stem == "pressure-level")
    recipe = Recipe(decoder, plan(decoder.spans()))
    [water] = recipe.decode([[2, 5230]], {})
    assert (water.quantity, water.value, water.plausible) == ("water_level", 52.3, True)
    [low] = recipe.decode([[2, 0x8000]], {})
    assert (low.value, low.plausible) == (-327.68, False)
    with pytest.raises(DecodeError, match=r"decimals register holds 12, not 0\.\.9"):
        recipe.decode([[12, 523]], {})


def test_overlapping_blocks_take_the_later_blocks_value() -> None:
    # Blocks overlap when overlapping points cannot share one request; the table the plain
    # decoder gets keeps the later block's value for a register both read.
    point = Point("a", "a", "holding", 5, "u16")
    from drivers.modbus.plan import Block

    recipe = Recipe(ModbusDecoder((point,)), [Block("holding", 0, 6), Block("holding", 5, 2)])
    assert recipe.compiled
    [a] = recipe.decode([[0, 0, 0, 0, 0, 111], [222, 0]], {})
    assert a.value == 222
    assert _same(recipe, [[0, 0, 0, 0, 0, 111], [222, 0]], {}) == "ok"


# -- random profiles and hostile values ---------------------------------------------------
hostile = (
    st.integers(0, 0xFFFF)
    | st.sampled_from([0, 1, 2, 0x7FFF, 0x8000, 0xFFFF, 0x10000, -1, 9, 10])
    | st.booleans()
    | st.floats(allow_nan=True)
    | st.none()
    | st.text(max_size=2)
)


@st.composite
def _profiles(draw: st.DrawFn) -> ModbusDecoder:
    n = draw(st.integers(1, 6))
    points = []
    for i in range(n):
        kind = draw(st.sampled_from(["holding", "holding", "input", "coil", "discrete"]))
        bit = kind in ("coil", "discrete")
        typ = "bool" if bit else draw(st.sampled_from(["u16", "i16", "u16", "i16", "u32", "bits"]))
        # bounds a value often meets exactly (0.0 .. 10.0), so that the edges count
        lo = draw(st.none() | st.sampled_from([0.0, 1.0, 2.0, 10.0, -1.0]) | st.floats(-1000, 1000))
        points.append(
            Point(
                name=f"p{i}",
                quantity=f"q{i}",
                kind=kind,
                address=draw(st.integers(0, 12)),
                type=typ,
                bit=draw(st.integers(0, 8)) if typ == "bits" else 0,
                width=draw(st.integers(1, 8)) if typ == "bits" else 1,
                byte_order=draw(st.sampled_from(["big", "little"])),
                scale=draw(st.sampled_from([1.0, 1.0, 0.1, 0.01, 2.5, -0.1, 0.001, 3])),
                offset=draw(st.sampled_from([0.0, 0.0, -40.0, 0.5, -0.05, 0, 2])),  # ints too
                decimals=draw(st.none() | st.integers(0, 4)),
                decimals_from=draw(st.sampled_from(["", "", f"p{max(0, i - 1)}", f"p{n - 1}"])),
                lo=lo,
                hi=None
                if lo is None
                else lo + draw(st.sampled_from([0.0, 1.0, 8.0]) | st.floats(0, 500)),
                emit=draw(st.booleans() | st.just(True)),
            )
        )
    derived = ()
    if draw(st.booleans()):
        derived = (
            Derived(
                quantity="level",
                op=draw(st.sampled_from(["difference", "sum", "product"])),
                point=draw(st.sampled_from([p.name for p in points])),
                param="h",
                scale=draw(st.sampled_from([1.0, 0.1])),
                lo=draw(st.none() | st.just(0.0)),
                hi=draw(st.none() | st.just(100.0)),
            ),
        )
    return ModbusDecoder(tuple(points), derived)


@settings(max_examples=400, deadline=None)
@given(_profiles(), st.integers(0, 4), st.data())
def test_random_profiles_decode_the_same(
    decoder: ModbusDecoder, gap: int, data: st.DataObject
) -> None:
    recipe = Recipe(decoder, plan(decoder.spans(), gap))
    limit = {"coil": 1, "discrete": 1, "holding": 0xFFFF, "input": 0xFFFF}
    # Mostly what a link reads (ints in range), sometimes anything at all.
    words = [
        data.draw(
            st.lists(st.integers(0, limit[b.kind]) | hostile, min_size=b.count, max_size=b.count)
        )
        for b in recipe.blocks
    ]
    params = data.draw(
        st.fixed_dictionaries({}, optional={"h": st.floats(-1e3, 1e3) | st.text(max_size=1)})
    )
    _same(recipe, words, params)


@settings(max_examples=400, deadline=None)
@given(_profiles(), st.data())
def test_random_profiles_decode_clean_reads_the_same(
    decoder: ModbusDecoder, data: st.DataObject
) -> None:
    recipe = Recipe(decoder, plan(decoder.spans()))
    limit = {"coil": 1, "discrete": 1, "holding": 0xFFFF, "input": 0xFFFF}
    words = [
        data.draw(st.lists(st.integers(0, limit[b.kind]), min_size=b.count, max_size=b.count))
        for b in recipe.blocks
    ]
    _same(recipe, words, {"h": data.draw(st.floats(-1e3, 1e3))})


@settings(max_examples=200, deadline=None)
@given(_profiles(), st.data())
def test_many_polls_through_one_recipe_decode_the_same(
    decoder: ModbusDecoder, data: st.DataObject
) -> None:
    # A device's polls share its recipe (and its kept scaled values): raw values that repeat,
    # from a few to more than it keeps, in any order, each poll as the plain decoder has it.
    recipe = Recipe(decoder, plan(decoder.spans()))
    limit = {"coil": 1, "discrete": 1, "holding": 0xFFFF, "input": 0xFFFF}
    pool = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=300))
    for _ in range(data.draw(st.integers(1, 40))):
        words = [
            [data.draw(st.sampled_from(pool)) & limit[b.kind] for _ in range(b.count)]
            for b in recipe.blocks
        ]
        _same(recipe, words, {"h": 2.0})


def test_kept_scaled_values_are_bounded_and_still_right_past_the_bound() -> None:
    from drivers.modbus.recipe import _MEMO

    point = Point("t", "temperature", "holding", 0, "i16", scale=0.1, offset=-40.0)
    recipe = Recipe(ModbusDecoder((point,)), plan(ModbusDecoder((point,)).spans()))
    for raw in [*range(0, 3 * _MEMO, 3), *range(0, 3 * _MEMO, 7)]:  # past the bound, repeats
        assert _same(recipe, [[raw]], {}) == "ok"
    # The function's bound constants (recipe internals, read only): no dict beyond the bound.
    memos = [v for v in recipe._compiled.__globals__.values() if type(v) is dict]  # type: ignore[union-attr]
    memos = [m for m in memos if m and all(type(k) is int for k in m)]
    assert memos and all(len(m) <= _MEMO for m in memos)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DECODERS), st.data())
def test_shipped_profiles_decode_hostile_reads_the_same(
    decoder: ModbusDecoder, data: st.DataObject
) -> None:
    recipe = Recipe(decoder, plan(decoder.spans()))
    lists = [
        data.draw(st.lists(hostile, min_size=max(0, b.count - 1), max_size=b.count + 1))
        for b in recipe.blocks
    ]
    if data.draw(st.booleans()):
        lists = lists[:-1] if data.draw(st.booleans()) else [*lists, [0]]
    _same(
        recipe,
        lists,
        data.draw(st.sampled_from([{}, {"mount_height": 1000.0}, {"mount_height": "x"}])),
    )


def test_profile_text_never_becomes_source() -> None:
    # Names, units and quantities reach the compiled function as constants: text that would
    # be code if pasted into the source decodes as text.
    odd = "q\"'); raise SystemExit #\n"
    points = (
        Point(odd, odd, "holding", 0, "u16", scale=0.5, unit=odd, lo=0.0),
        Point("d" + odd, "", "holding", 1, "u16", emit=False),
        Point("x", "x", "holding", 2, "i16", decimals_from="d" + odd),
    )
    decoder = ModbusDecoder(points, (Derived("y", "sum", odd, "h"),))
    recipe = Recipe(decoder, plan(decoder.spans()))
    assert recipe.compiled and "SystemExit" not in recipe.source
    got = recipe.decode([[7, 1, 0xFFFF]], {"h": 1})
    assert [(o.quantity, o.value, o.unit) for o in got] == [
        (odd, 3.5, odd),
        ("x", -0.1, ""),
        ("y", 4.5, ""),
    ]
    assert _same(recipe, [[7, 1, 0xFFFF]], {"h": 1}) == "ok"
