"""Benchmarks: `python -m bench [--quick]` prints figures, the last line a JSON object.

Each module `bench/<name>.py` with `def run(quick: bool) -> dict[str, float]` is found by
convention and contributes its figures. Benchmarks never assert; they measure.
"""
