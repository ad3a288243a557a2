"""The report page as a person sees it: headless Chromium (Debian `chromium`) opens
the file, plotly.js draws every chart, and the screenshot is not blank; the numbers
in the DOM after the scripts ran equal the report's (tests/page_check.py).

Skipped when chromium is not installed (.ci/run installs it)."""

import json
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
from page_check import TODAY, check_page, generated_report, parse

from agents.page import render_page

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)"
)
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(report, page path, dumped DOM, screenshot array)."""
    from datetime import UTC, datetime

    tmp = tmp_path_factory.mktemp("browser")
    report = generated_report(tmp)
    page = tmp / "page.html"
    page.write_text(render_page(report, generated_at=datetime(2026, 12, 1, tzinfo=UTC)))
    shot = tmp / "page.png"
    # both at once, each with its own profile (a second chromium on the same profile
    # would hand its work over to the first)
    dom = chromium(tmp / "p1", "--dump-dom", page)
    png = chromium(tmp / "p2", f"--screenshot={shot}", page, "--window-size=1400,2000")
    dumped = finish(dom)
    finish(png)
    return report, page, dumped, decode_png(shot.read_bytes())


def chromium(profile, action, page, *more):
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--no-first-run", *more, action, page.as_uri()]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc):
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-2000:]
    return out


def test_every_chart_is_drawn(rendered):
    _, page, dom, _ = rendered
    doc = parse(dom)
    specs = json.loads(parse(page.read_text()).one("script", id="opspulse-charts").text())
    assert len(specs) > 20
    assert doc.one("body").attrs["data-charts"] == str(len(specs))
    for cid in specs:
        div = doc.one("div", id=cid)
        svgs = [n for n in div.all("svg") if "main-svg" in n.classes()]
        assert svgs, f"{cid}: plotly drew nothing"


def test_numbers_after_the_scripts_ran_are_the_reports(rendered):
    report, _, dom, _ = rendered
    checked = check_page(dom, report, TODAY)
    assert checked["paths"] > 150
    # the funnel chart's labels show the report's 7-day totals
    funnel = parse(dom).one("div", id="chart-funnel-0").text()
    name, f = next(iter(report["funnels"].items()))
    days = sorted(report["days"])[-7:]
    first = sum(f["days"][d][0] for d in days if d in f["days"])
    assert f"{first:,}" in funnel


def test_the_screenshot_is_not_blank(rendered):
    *_, pixels = rendered
    rgb = pixels[..., :3].astype(np.int16)
    assert rgb.shape[:2] == (2000, 1400)
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours = len(np.unique(packed))
    # the charts' lines, bars and fills: saturated colours (text and background are grey)
    saturated = float(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).mean())
    # header band dark, page background light: laid out with the page's styles
    assert tuple(rgb[5, 5]) == (0x1F, 0x29, 0x33)
    assert colours > 500, colours
    assert saturated > 0.02, saturated  # measured ~9%; without plotly.js ~0.2%


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB(A), non-interlaced PNG (what chromium writes) as an (h, w, c) array:
    zlib and the five PNG row filters (no image library in the project)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = np.frombuffer(raw, np.uint8, stride, start + 1).astype(np.int64)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: running sum along the row, per channel
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif ftype == 2:  # Up
            cur = (line + prev) % 256
        else:  # Average, Paeth: each byte depends on the one decoded before it
            b, up, c = line.tolist(), prev.tolist(), [0] * stride
            for i in range(stride):
                left = c[i - bpp] if i >= bpp else 0
                if ftype == 3:
                    c[i] = (b[i] + ((left + up[i]) >> 1)) & 255
                    continue
                ul = up[i - bpp] if i >= bpp else 0
                p = left + up[i] - ul
                pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - ul)
                c[i] = (b[i] + (left if pa <= pb and pa <= pc else up[i] if pb <= pc else ul)) & 255
            cur = np.array(c, dtype=np.int64)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)
