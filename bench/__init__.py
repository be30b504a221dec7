"""Benchmarks: `python -m bench [--smoke | --quick] [--repeats N]` prints figures, the last
line one JSON object; `python -m bench --markdown FILE` renders the README table from it.

Each module `bench/<name>.py` with `REPEATS` (its default repeats) and
`def run(mode, repeats) -> dict[str, bench.figures.Figure]` is found by convention: every
figure is the median of its repeats, with the lowest and highest, and the settings it ran
with. Benchmarks never assert; they measure.
"""
