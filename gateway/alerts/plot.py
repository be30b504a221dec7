"""The chart-drawing child process: `python -m gateway.alerts.plot` reads chart specs as JSON
on stdin and writes PNGs (base64 in one JSON object) on stdout.

Run once a day for the digest, and for the odd threshold or rate alert, by
gateway.alerts.renderer, so that the daemon never imports matplotlib (tens of MB) and keeps
its idle memory small; this process lives a second or two and is gone. The specs come from
gateway.alerts.chart (what to draw, in final words: labels, tick labels, limits, marks); this
module only draws, for a phone screen read outdoors: large type, thick lines, black on white,
nothing thin or pale that carries meaning.

Input: `{"charts": [spec, ...]}`; output: `{"png": [base64, ...], "font": "<family>",
"peak_rss_kb": <int>}`. Exit 2 for unreadable input, 3 when no installed font has a glyph the
labels need (Japanese: install fonts-ipaexfont-gothic), with one line on stderr saying so.
"""

from __future__ import annotations

import base64
import io
import json
import math
import resource
import sys
from collections.abc import Iterable
from typing import Any

# Fonts with Japanese glyphs, best first (Debian: fonts-ipaexfont-gothic, fonts-noto-cjk).
CJK_FAMILIES = (
    "IPAexGothic",
    "Noto Sans CJK JP",
    "IPAGothic",
    "Noto Sans JP",
    "TakaoGothic",
    "VL Gothic",
    "Droid Sans Fallback",
)
# The spec's sizes are inches: 6.4 in at 150 dpi = 960 px, shown 100% wide on a phone (about
# 360 CSS px: 24 pt ticks come out near 18 CSS px) and sharp on its 2-3x screen.
DPI = 150
INK = "#000000"
ALERT = "#d40000"


class NoFont(Exception):
    """No installed font has every glyph the labels need."""


def _texts(charts: list[dict[str, Any]]) -> Iterable[str]:
    for c in charts:
        yield c.get("title", "")
        for _t, label in c.get("ticks", []):
            yield label
        for p in c["panels"]:
            yield p.get("label", "")
            yield p.get("latest", "")
            for limit in p.get("limits", []):
                yield limit.get("label", "")


def pick_font(text: str) -> str:
    """The family to draw with: DejaVu Sans (matplotlib's own) when it has every glyph, else
    the first installed CJK family that has them all; raises NoFont naming what is missing."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    needed = {c for c in text if not c.isspace()}

    def covers(path: str) -> bool:
        font = FT2Font(path)
        return all(font.get_char_index(ord(c)) for c in needed)

    fm = font_manager.fontManager
    if covers(font_manager.findfont("DejaVu Sans", fallback_to_default=False)):
        return "DejaVu Sans"
    by_name = {f.name: f.fname for f in fm.ttflist}
    if not any(name in by_name for name in CJK_FAMILIES):
        # Installed after matplotlib's font cache was built: look at the system's files.
        for path in font_manager.findSystemFonts():
            try:
                family = FT2Font(path).family_name
            except (OSError, RuntimeError):
                continue
            if family in CJK_FAMILIES:
                fm.addfont(path)
                by_name.setdefault(family, path)
    for name in CJK_FAMILIES:
        if name in by_name and covers(by_name[name]):
            return name
    missing = "".join(sorted(needed))[:40]
    raise NoFont(
        f"no installed font has the glyphs of {missing!r} "
        "(install fonts-ipaexfont-gothic or fonts-noto-cjk)"
    )


def _with_gaps(points: list[list[float]], step: float) -> tuple[list[float], ...]:
    """Columns t, mean, low, high, with NaN where buckets are missing (the line breaks)."""
    cols: tuple[list[float], ...] = ([], [], [], [])
    prev: float | None = None
    for p in points:
        if prev is not None and p[0] - prev > 1.5 * step:
            for col in cols:
                col.append(math.nan)
        for col, v in zip(cols, p[:4], strict=False):
            col.append(v)
        prev = p[0]
    return cols


def _panel(ax: Any, panel: dict[str, Any], chart: dict[str, Any], last: bool) -> None:
    from matplotlib.patheffects import withStroke
    from matplotlib.ticker import MaxNLocator

    color = panel.get("color", "#0046ad")
    t, mean, low, high = _with_gaps(panel["points"], chart.get("step", 600))
    if any(lo != hi for lo, hi in zip(low, high, strict=True) if lo == lo):
        ax.fill_between(t, low, high, color=color, alpha=0.28, linewidth=0)
    ax.plot(t, mean, color=color, linewidth=5, solid_capstyle="round")
    if len([v for v in mean if v == v]) == 1:
        ax.plot(t, mean, "o", color=color, markersize=12)
    values = [v for v in low + high if v == v]
    for limit in panel.get("limits", []):
        values.append(limit["value"])
        ax.axhline(limit["value"], color=INK, linewidth=3.5, linestyle=(0, (5, 2.5)))
        # An upper limit's label below its line, a lower one's above: inside the panel.
        under = limit.get("side") == "above"
        ax.annotate(
            limit["label"], (0.01, limit["value"]), xycoords=("axes fraction", "data"),
            xytext=(0, -6 if under else 6), textcoords="offset points", fontsize=22,
            color=INK, va="top" if under else "bottom", ha="left",
            # A white halo, not a box: the label reads over a line without hiding it.
            path_effects=[withStroke(linewidth=5, foreground="white")], zorder=5,
        )  # fmt: skip
    for mark in panel.get("marks", []):
        ax.axvline(mark, color=ALERT, linewidth=4)
        ax.plot([mark], [1.0], "v", color=ALERT, markersize=22, clip_on=False,
                transform=ax.get_xaxis_transform())  # fmt: skip
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max((hi - lo) * 0.15, abs(hi) * 0.02, 0.5)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(chart["start"], chart["end"])
    # Above the panel, not inside it: nothing covers a line or a limit's label.
    ax.set_title(panel.get("label", ""), loc="left", fontsize=28, color=INK, pad=16)
    if panel.get("latest"):
        # Digits and a unit: DejaVu Sans has them all, in bold (the CJK fonts have no bold).
        ax.set_title(panel["latest"], loc="right", fontsize=30, color=color, pad=16,
                     fontweight="bold", fontfamily="DejaVu Sans")  # fmt: skip
    ticks = chart.get("ticks", [])
    ax.set_xticks([x for x, _ in ticks], [label for _, label in ticks] if last else [])
    ax.tick_params(axis="both", labelsize=24, width=2.5, length=8, colors=INK)
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.grid(axis="y", color="#767676", linewidth=1.5)
    for spine in ax.spines.values():
        spine.set_linewidth(2.5)
        spine.set_color(INK)


def draw(chart: dict[str, Any], family: str) -> bytes:
    """One chart spec as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = chart["panels"]
    width, height = chart.get("size", [6.4, 0.4 + 3.0 * len(panels)])
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained", h_pad=0.12, w_pad=0.1)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    if chart.get("title"):
        fig.suptitle(chart["title"], fontsize=32, x=0.02, ha="left", color=INK)
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        _panel(ax, panel, chart, last=i == len(panels) - 1)
    drawn = io.BytesIO()
    fig.savefig(drawn, format="png", dpi=DPI, facecolor="white")
    # A 64-colour palette keeps every line and label as drawn and makes the PNG about a
    # third of the size: a digest of ten paddies stays well under a megabyte on a phone plan.
    from PIL import Image

    out = io.BytesIO()
    Image.open(drawn).convert("RGB").quantize(colors=64).save(out, format="png", optimize=True)
    return out.getvalue()


def main() -> int:
    try:
        charts = json.load(sys.stdin)["charts"]
        assert isinstance(charts, list) and all(c["panels"] for c in charts)
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        print(f"plot: unreadable chart specs: {exc!r}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    try:
        family = pick_font("".join(_texts(charts)))
    except NoFont as exc:
        print(f"plot: {exc}", file=sys.stderr)
        return 3
    # DejaVu Sans first (digits, units and bold), the CJK family for the glyphs it lacks.
    matplotlib.rcParams["font.family"] = ["DejaVu Sans", family]
    pngs = [base64.b64encode(draw(c, family)).decode() for c in charts]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    json.dump({"png": pngs, "font": family, "peak_rss_kb": peak}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
