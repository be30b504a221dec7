"""The farmer's mail as the farmer sees it: the digest received by a real SMTP server
(aiosmtpd) has its plain text and an HTML part with one inline PNG chart per paddy, drawn by
the real child process; the PNGs are real images with the lines, limits and alert marks in
them; Japanese labels are drawn with a font that has their glyphs; a threshold alert's mail
carries the hour before it, a trap's does not; a renderer that fails or hangs leaves the mail
text-only with one log line; the daemon never imports matplotlib. And the digest's HTML is
rendered by a browser at phone width (headless Chromium) and looked at: not blank, charts in.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psutil
import pytest
import structlog
from PIL import Image

from gateway.alerts.chart import COLORS
from gateway.alerts.plot import CJK_FAMILIES
from gateway.alerts.renderer import ChartFailed, Renderer
from gateway.clock import FixedClock
from gateway.model import Observation
from tests.alert_setup import config_text, parse, stack
from tests.smtp_peer import MailSink

JST = ZoneInfo("Asia/Tokyo")
DUE = datetime(2026, 6, 1, 18, 0, tzinfo=JST).timestamp()
DIGEST = '[alerts.digest]\nat = "18:00"\ngroups = ["farmers"]\n'
BLUE, ORANGE, RED = COLORS["water_level"], COLORS["water_temperature"], "#d40000"


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])


def _image(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _count(img: np.ndarray, color: str, tol: int = 40) -> int:
    """Pixels within `tol` of `color` in every channel."""
    return int((np.abs(img - _rgb(color)) <= tol).all(axis=2).sum())


def _ink(img: np.ndarray) -> float:
    """The share of pixels that are not (near) white."""
    return float((img < 235).any(axis=2).mean())


def _parts(msg: EmailMessage) -> tuple[str | None, str | None, dict[str, bytes]]:
    """The plain text, the HTML and the inline images by Content-ID."""
    text = msg.get_body(("plain",))
    page = msg.get_body(("html",))
    images = {
        str(p["Content-ID"]).strip("<>"): p.get_content()
        for p in msg.walk()
        if p.get_content_type() == "image/png"
    }
    return (
        text.get_content() if text is not None else None,
        page.get_content() if page is not None else None,
        images,
    )


def _stage_day(pipe, start: float) -> None:  # type: ignore[no-untyped-def]
    """A day in 10-minute steps: paddy-01 dries out around 06:00 (below the paddy-dry rule's
    2.0 cm) and fills again; paddy-02 (not configured) stays wet."""
    for i in range(144):
        ts = start + i * 600
        dry = 1.2 if 70 <= i <= 80 else 0.0
        level = 4.0 + 1.2 * np.sin(i / 23) - dry * 2
        temp = 21 + 4 * np.sin((i - 40) / 144 * 2 * np.pi)
        pipe.stage(
            "paddy-01",
            [
                Observation("water_level", round(float(level), 2), "cm"),
                Observation("water_temperature", round(float(temp), 2), "degC"),
            ],
            ts,
        )
        pipe.stage("paddy-02", [Observation("water_level", 6.0 + i % 3 * 0.1, "cm")], ts)


def _screenshot(page: str, images: dict[str, bytes], workdir: Path) -> bytes:
    """The HTML part as a phone shows it: cid: links resolved to the inline images (what a
    mail client does), rendered by headless Chromium 412 CSS px wide at 2x."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: bash .ci/setup installs it"
    for n, (cid, png) in enumerate(images.items()):
        (workdir / f"img{n}.png").write_bytes(png)
        page = page.replace(f"cid:{cid}", f"img{n}.png")
    assert "cid:" not in page
    (workdir / "mail.html").write_text(page, encoding="utf-8")
    shot = workdir / "shot.png"
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--force-device-scale-factor=2", "--window-size=412,1700",
            f"--user-data-dir={workdir / 'profile'}", f"--screenshot={shot}",
            (workdir / "mail.html").as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return shot.read_bytes()


@pytest.mark.slow  # the chart child process (several charts) and a browser
async def test_digest_and_threshold_alert_mail_carry_their_charts(tmp_path: Path) -> None:
    sink = await MailSink().start()
    try:
        cfg = parse(config_text(sink.port, str(tmp_path / "o.sqlite"), extra=DIGEST))
        clock = FixedClock(DUE - 60)
        async with stack(cfg, tmp_path / "o.sqlite", {}, clock=clock) as (_b, pipe, alerting):
            _stage_day(pipe, DUE - 86400)
            await sink.wait_for(2)  # paddy-dry raised and cleared (farmers only)
            assert alerting.digest is not None
            await alerting.digest.send(DUE)
            got = await sink.wait_for(3)
    finally:
        await sink.stop()
    by_subject = {r.message["Subject"]: r for r in got}
    digest = by_subject["日報 Test field 2026-06-01"].message
    text, page, images = _parts(digest)
    assert text is not None and "■ North paddy" in text and "■ paddy-02" in text
    assert page is not None and len(images) == 2
    cids = re.findall(r'src="cid:([^"]+)"', page)
    assert cids == list(images)  # one chart per paddy, each shown where it belongs
    assert page.index("North paddy") < page.index(cids[0]) < page.index("paddy-02")
    for png in images.values():
        img = _image(png)
        assert img.shape[1] == 960 and 400 <= img.shape[0] <= 1000  # 6.4 in at 150 dpi
        assert 0.04 < _ink(img) < 0.6  # drawn on, and still mostly white paper
        assert _count(img, BLUE) > 2000  # the water level's thick line
    north, south = (_image(images[c]) for c in cids)
    assert _count(north, ORANGE) > 2000  # its water temperature panel
    assert _count(north, RED, tol=30) > 500  # the alert's mark
    assert _count(south, ORANGE) < 50 and _count(south, RED, tol=30) < 50

    (alert,) = [
        r.message for r in got if r.message["Subject"].startswith("【注意】paddy-dry North")
    ]
    text, page, images = _parts(alert)
    assert text is not None and "https://maps.gsi.go.jp/" in text  # text-first, map links
    assert page is not None and len(images) == 1
    (png,) = images.values()
    (tmp_path / "alert.png").write_bytes(png)  # to look at
    img = _image(png)
    assert _count(img, BLUE) > 1000 and _count(img, RED, tol=30) > 300

    # The digest as a phone shows it.
    shot = _image(
        _screenshot(digest.get_body(("html",)).get_content(), _parts(digest)[2], tmp_path)
    )  # type: ignore[union-attr]
    assert shot.shape[1] == 824  # 412 CSS px at 2x
    assert 0.03 < _ink(shot) < 0.6
    assert _count(shot, BLUE) > 2000 and _count(shot, ORANGE) > 1000  # the charts are in it
    keep = os.environ.get("DIGEST_SCREENSHOT")  # how docs/digest-example.png is made
    if keep:
        shutil.copy(tmp_path / "shot.png", keep)


async def test_a_trap_alert_mail_has_no_chart(tmp_path: Path) -> None:
    sink = await MailSink().start()
    try:
        cfg = parse(config_text(sink.port, str(tmp_path / "o.sqlite")))
        async with stack(cfg, tmp_path / "o.sqlite", {}) as (_box, pipe, alerting):
            pipe.stage("traps", [Observation("trap_state", "triggered", "", source="7")])
            got = await sink.wait_for(2)
            assert alerting.mailer is not None and alerting.mailer.renderer.drawn == 0
    finally:
        await sink.stop()
    for r in got:
        assert r.message.get_content_type() == "text/plain"
        assert "わな7" in r.message["Subject"] or "trap 7" in r.message["Subject"]


def _failing(log: object, code: str, **kwargs: object) -> Renderer:
    return Renderer(log=log, command=[sys.executable, "-c", code], **kwargs)  # type: ignore[arg-type]


async def test_a_failing_renderer_gives_a_text_only_digest_and_one_log_line(
    tmp_path: Path,
) -> None:
    sink = await MailSink().start()
    log = structlog.get_logger().bind(component="mailer")
    crash = "import sys; print('Traceback: boom', file=sys.stderr); sys.exit(3)"
    try:
        cfg = parse(config_text(sink.port, str(tmp_path / "o.sqlite"), extra=DIGEST))
        clock = FixedClock(DUE - 60)
        with structlog.testing.capture_logs() as logs:
            renderer = _failing(log, crash)
            async with stack(cfg, tmp_path / "o.sqlite", {}, clock=clock, renderer=renderer) as (
                _b, pipe, alerting,
            ):  # fmt: skip
                for i in range(12):
                    ts = DUE - 7200 + i * 600
                    pipe.stage("paddy-01", [Observation("water_level", 4.0, "cm")], ts)
                assert alerting.digest is not None
                await alerting.digest.send(DUE)
                pipe.stage("paddy-01", [Observation("water_level", 4.2, "cm")], DUE + 3600)
                await alerting.digest.send(DUE + 86400)  # the next day's: still broken
                got = await sink.wait_for(2)
    finally:
        await sink.stop()
    for r in got:
        assert r.message.get_content_type() == "text/plain"  # the text, never lost
        assert "■ North paddy" in r.message.get_content() or "データなし" in r.message.get_content()
    failures = [e for e in logs if e["event"].startswith("charts not drawn")]
    assert len(failures) == 1 and renderer.failed == 2
    assert failures[0]["error"] == "chart process exited with 3: Traceback: boom"


async def test_a_hung_renderer_is_killed_at_its_timeout() -> None:
    renderer = _failing(structlog.get_logger(), "import time; time.sleep(60)", timeout=0.5)
    with pytest.raises(ChartFailed, match=r"timed out after 0\.5 s"):
        await renderer.render([{"panels": [{"points": []}]}])
    assert psutil.Process().children() == []  # not left behind


@pytest.mark.slow  # the chart child process
def test_japanese_labels_are_drawn_with_a_font_that_has_their_glyphs() -> None:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    base = {
        "start": 0, "end": 3600, "step": 60, "size": [8.0, 4.6],
        "ticks": [[0, "18時"], [1800, "18時30分"], [3600, "19時"]],
        "panels": [{
            "label": "水位 (cm)", "color": BLUE,
            "points": [[t, 3 + t / 3600, 2.9 + t / 3600, 3.1 + t / 3600]
                       for t in range(0, 3601, 60)],
            "limits": [{"value": 3.5, "side": "below", "label": "下限 3.5cm"}],
            "marks": [1800], "latest": "4.0 cm",
        }],
    }  # fmt: skip
    specs = [dict(base, title="北の田んぼ 水位"), dict(base, title="北の田んぼ 水温")]
    res = subprocess.run(
        [sys.executable, "-m", "gateway.alerts.plot"],
        input=json.dumps({"charts": specs}), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "missing from font" not in res.stderr and "Glyph" not in res.stderr
    answer = json.loads(res.stdout)
    assert answer["font"] in CJK_FAMILIES
    font = FT2Font(font_manager.findfont(answer["font"], fallback_to_default=False))
    assert all(font.get_char_index(ord(c)) for c in "北の田んぼ水位温下限時分")
    a, b = (_image(base64.b64decode(p)) for p in answer["png"])
    # Tofu draws every missing glyph as the same box: two titles that differ in one kanji
    # would come out the same. They must differ in the title band, and only there.
    band = slice(0, 110)
    assert _ink(a[band]) > 0.05 and _ink(b[band]) > 0.05
    assert (np.abs(a[band] - b[band]) > 40).any(axis=2).sum() > 100
    # Below it the same picture (up to the adaptive palette's rounding).
    assert (np.abs(a[120:] - b[120:]) > 40).any(axis=2).sum() < 50


def test_the_daemon_never_imports_the_plotting_library() -> None:
    probe = (
        "import sys, gateway.daemon, gateway.cli.main, gateway.alerts.wiring, "
        "gateway.alerts.mailer, gateway.alerts.renderer, gateway.alerts.chart; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'numpy', 'PIL'}))"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


async def test_a_label_no_installed_font_can_draw_fails_with_a_clear_reason() -> None:
    renderer = Renderer(log=structlog.get_logger())
    spec = {"title": "\U000f0000", "start": 0, "end": 60, "panels": [{"points": [[0, 1, 1, 1]]}]}
    with pytest.raises(ChartFailed, match="exited with 3: plot: no installed font has the glyphs"):
        await renderer.render([spec])
