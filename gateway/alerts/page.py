"""The HTML part of a mail with charts: a phone-width page for reading outdoors (large type,
black on white, no pale text), the charts inline as `cid:` images of a multipart/related part
(what phone mail clients show; `data:` URIs are blocked by several), beside the plain-text
part the mail always has (multipart/alternative: a client that shows no HTML shows the text).

`digest_page` and `alert_page` write the page; `attach` turns a text mail into the
text + HTML + images mail. Pure functions: no I/O, no clock, no drawing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from gateway.alerts.alert import Summary
from gateway.alerts.chart import quantity_text, unit_text

_BODY = (
    "margin:0;padding:12px;background:#ffffff;color:#000000;"
    "font-family:sans-serif;font-size:19px;line-height:1.5"
)
_H1 = "font-size:24px;margin:0 0 12px 0"
_H2 = "font-size:22px;margin:22px 0 6px 0;padding-top:10px;border-top:4px solid #000000"
_IMG = "display:block;width:100%;max-width:600px;height:auto;margin:8px 0;border:0"
_SMALL = "font-size:16px;margin-top:24px"
_WORDS = {
    "ja": {
        "latest": "最新",
        "range": "最小 {lo} / 最大 {hi}",
        "alerts": "本日の警報",
        "none": "なし",
    },
    "en": {
        "latest": "latest",
        "range": "min {lo} / max {hi}",
        "alerts": "Alerts today",
        "none": "none",
    },
}
_URL = re.compile(r"^https://\S+$")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: list[str], lang: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title></head>\n"
        f'<body style="{_BODY}">\n' + "\n".join(body) + "\n</body></html>\n"
    )


def _img(cid: str, alt: str) -> str:
    return f'<img src="cid:{_e(cid)}" alt="{_e(alt)}" width="600" style="{_IMG}">'


def _num(v: float) -> str:
    return f"{v:g}"


def digest_page(
    summary: Summary, subject: str, lang: str, tz: ZoneInfo, footer: str, cids: dict[str, str]
) -> str:
    """The digest as a page: per device its figures and chart (`cids`: device key -> the
    Content-ID of its chart), then the day's alerts."""
    w = _WORDS[lang]
    body = [f'<h1 style="{_H1}">{_e(subject)}</h1>']
    for key, info in summary["devices"].items():
        name = info.get("name") or key
        body.append(f'<h2 style="{_H2}">{_e(name)}</h2>')
        figures = []
        for q, s in info["stats"].items():
            unit = unit_text(s.get("unit", ""))
            rng = w["range"].format(lo=_num(s["min"]), hi=_num(s["max"]))
            figures.append(
                f"<b>{_e(quantity_text(q, lang))} {_e(_num(s['latest']))}{_e(unit)}</b> ({_e(rng)})"
            )
        if figures:
            body.append('<p style="margin:0">' + "<br>".join(figures) + "</p>")
        if key in cids:
            body.append(_img(cids[key], name))
    body.append(f'<h2 style="{_H2}">{_e(w["alerts"])}</h2>')
    if not summary["alerts"]:
        body.append(f"<p>{_e(w['none'])}</p>")
    else:
        items = []
        for a in summary["alerts"]:
            when = datetime.fromtimestamp(float(a["ts"]), tz).strftime("%H:%M")
            what = a["what_ja"] if lang == "ja" else a["what_en"]
            trap = f" #{a['trap']}" if a.get("trap") else ""
            items.append(f"<li><b>{_e(when)}</b> {_e(what)} {_e(a['device_name'] + trap)}</li>")
        body.append('<ul style="padding-left:22px;margin:0">' + "".join(items) + "</ul>")
    body.append(f'<p style="{_SMALL}">{_e(footer)}</p>')
    return _page(subject, body, lang)


def alert_page(subject: str, text: str, lang: str, cid: str, alt: str) -> str:
    """An alert mail's page: its text as it is (links made links), the chart after the
    facts and before the footer: the mail stays text-first."""
    lines = text.rstrip("\n").split("\n")
    cut = lines.index("--") if "--" in lines else len(lines)
    facts, footer = lines[:cut], lines[cut + 1 :]
    body = [f'<h1 style="{_H1}">{_e(facts[0])}</h1>'] if facts else []
    para: list[str] = []
    for line in [*facts[1:], ""]:
        if line:
            link = _URL.match(line)
            para.append(f'<a href="{_e(line)}">{_e(line)}</a>' if link else _e(line))
        elif para:
            body.append(
                '<p style="margin:10px 0;overflow-wrap:anywhere">' + "<br>".join(para) + "</p>"
            )
            para = []
    body.append(_img(cid, alt))
    body.append(f'<p style="{_SMALL}">' + "<br>".join(_e(x) for x in footer) + "</p>")
    return _page(subject, body, lang)


def attach(msg: EmailMessage, page: str, images: Sequence[tuple[str, bytes]]) -> None:
    """Make `msg` (a text/plain mail) text + HTML with `images` ((Content-ID, PNG) pairs)
    inline in a multipart/related part."""
    msg.add_alternative(page, subtype="html", charset="utf-8")
    parts = msg.get_payload()
    assert isinstance(parts, list)  # add_alternative made it multipart
    part = parts[-1]
    assert isinstance(part, EmailMessage)
    for n, (cid, png) in enumerate(images, 1):
        part.add_related(
            png, maintype="image", subtype="png", cid=f"<{cid}>",
            filename=f"chart-{n}.png", disposition="inline",
        )  # fmt: skip
