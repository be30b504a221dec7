"""The bench harness's bookkeeping (bench.figures, bench.table, bench.subscriber.hold_start):
medians and spreads, the run's JSON line, the README table rendered from it, and where the
uplink's end-of-drain hold starts in a subscriber's arrivals. No figure is measured here."""

from __future__ import annotations

import json

import pytest

from bench.figures import Doc, Figure, collect, repeat, run_record
from bench.subscriber import hold_start
from bench.table import AS_ABOVE, last_record, markdown, number


def test_a_figure_is_the_median_of_its_repeats_with_the_lowest_and_highest() -> None:
    f = Figure([91_134.4, 58_326.0, 151_395.0, 60_000.0, 88_000.0])
    assert (f.median, f.low, f.high) == (88_000, 58_326, 151_395)
    even = Figure([1.0, 2.0, 4.0, 10.0])
    assert even.median == 3  # the mean of the middle two
    assert Figure([0.123456]).record()["median"] == 0.1235


def test_collect_keeps_every_repeat_and_the_settings_per_figure() -> None:
    calls = iter(
        [
            {"a_per_s": 10.0, "b_ms": 2.0},
            {"a_per_s": 30.0, "b_ms": 1.0},
            {"a_per_s": 20.0, "b_ms": 3.0},
        ]
    )
    samples = repeat(3, lambda: next(calls))
    figures = collect(samples, {"batch": 1000}, {"a_per_s": Doc("things", "≥ 15")})
    a = figures["a_per_s"].record()
    assert a == {
        "median": 20,
        "min": 10,
        "max": 30,
        "n": 3,
        "values": [10, 30, 20],
        "settings": {"batch": 1000},
        "about": "things",
        "target": "≥ 15",
    }
    assert figures["b_ms"].median == 2 and "about" not in figures["b_ms"].record()
    assert len(repeat(0, lambda: {"x": 1.0})) == 1  # a figure always has one repeat at least


def test_repeats_that_report_different_figures_are_refused() -> None:
    with pytest.raises(ValueError, match="different figures"):
        collect([{"a": 1.0}, {"a": 1.0, "b": 2.0}], {})


def _record() -> dict[str, object]:
    figures = collect(
        [{"e2e_per_s": 90_000.0, "rows": 5.0}, {"e2e_per_s": 100_000.0, "rows": 5.0}],
        {"batch_max_readings": 1000, "sync": "full"},
        {"e2e_per_s": Doc("synthetic | e2e", "≥ 50,000")},
    )
    figures |= collect(
        [{"idle_pct": 0.25}, {"idle_pct": 0.3}],
        {"batch_max_readings": 1000, "sync": "full"},
        {"idle_pct": Doc("idle")},
    )
    figures |= collect([{"bytes": 23.08}], {"readings": 432}, {"bytes": Doc("paddy day")})
    return run_record(
        figures,
        command="python -m bench",
        commit="abc1234",
        date="2026-12-01 03:00 UTC",
        machine="AMD EPYC x2, Python 3.11.7",
        load={"before": 0.03, "after": 1.2},
        seconds=840,
    )


def test_the_table_is_rendered_from_the_last_json_line_of_a_saved_run() -> None:
    saved = "core: e2e_per_s 95000\n{not json\n" + json.dumps(_record()) + "\n"
    text = markdown(saved)
    lines = text.splitlines()
    assert lines[0].startswith("| figure | settings | target |")
    rows = [line for line in lines[2:] if line.startswith("| `")]
    # Documented figures only (rows is a check), in the order measured, pipes escaped.
    assert [r.split("`")[1] for r in rows] == ["e2e_per_s", "idle_pct", "bytes"]
    assert rows[0] == (
        "| `e2e_per_s` (synthetic \\| e2e) | batch_max_readings 1,000, sync full | ≥ 50,000 "
        "| 95,000 (90,000\u2013100,000, 2 runs) |"
    )
    assert f"| {AS_ABOVE} |" in rows[1]  # the same settings as the row above
    assert rows[2].endswith("| readings 432 |  | 23.08 (1 run) |")
    note = lines[-1]
    for part in (
        "`python -m bench`",
        "abc1234",
        "2026-12-01 03:00 UTC",
        "AMD EPYC",
        "0.03",
        "840 s",
    ):
        assert part in note


def test_input_without_a_result_line_is_refused() -> None:
    with pytest.raises(ValueError, match="no bench result line"):
        last_record('core: 5 s\n{"machine": "x"}\n')


def test_numbers_print_with_thousands_separators() -> None:
    assert [number(v) for v in (151395, 151395.0, 0.5, 12.25, "full", float("nan"))] == [
        "151,395",
        "151,395",
        "0.5",
        "12.25",
        "full",
        "—",
    ]


def test_the_hold_is_the_last_messages_one_per_device_after_a_quiet_spell() -> None:
    bulk = [(0.001 * i, f"/json/k/dev-{i % 3}/attrs") for i in range(30)]
    held = [
        (15.2, "/json/k/dev-0/attrs"),
        (15.2, "/json/k/dev-1/attrs"),
        (15.3, "/json/k/dev-2/attrs"),
    ]
    assert hold_start(bulk + held) == 30
    assert hold_start(bulk) == 30  # nothing held: the whole stream is bulk
    # A quiet spell in the middle of the stream is not a hold: a device repeats after it.
    stalled = bulk[:10] + [(t + 5.0, topic) for t, topic in bulk[10:]]
    assert hold_start(stalled) == len(stalled)
    # Held messages released a little apart still count from the first quiet spell.
    assert hold_start(bulk + held[:1] + [(16.0, held[1][1])]) == 30
    assert hold_start([]) == 0 and hold_start([(1.0, "t")]) == 1


def test_profile_summary_counts_own_and_inclusive_samples_without_the_wrappers():
    from bench.profile import summarise

    main, pump = "_run_module_as_main (<frozen runpy>:198)", "Uplink._pump (/x/gateway/uplink"
    raw = "\n".join(
        [
            f"{main};{pump}/session.py:9);iso (/x/gateway/clock.py:3) 30",
            f"{main};{pump}/session.py:12) 10",
            "Thread.run (threading.py:982);dumps (/usr/lib/python3.11/json/__init__.py:231) 60",
            "garbage line",
        ]
    )
    text = summarise(raw, 5)
    own, inclusive = text.split("-- inclusive")
    assert text.startswith("100 samples")
    assert own.splitlines()[2:5] == [
        " 60.0%  dumps (json/__init__.py)",
        " 30.0%  iso (gateway/clock.py)",
        " 10.0%  Uplink._pump (gateway/uplink/session.py)",
    ]
    assert "40.0%  Uplink._pump (gateway/uplink/session.py)" in inclusive  # two lines, one frame
    assert "_run_module_as_main" not in inclusive and "Thread.run" not in inclusive
