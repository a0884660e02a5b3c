"""The compare report in a real browser: headless Chromium renders every figure, with a clean console.

Needs Debian's chromium and chromium-driver (.ci/run installs them): skipped without them on a
developer's machine, an error under CI.  Set MEMDESC_SCREENSHOT=PATH to keep the screenshot
(docs/compare.png is made that way).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from browser import available, open_page
from memdesc.report import write_html

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report(tmp_path_factory, sample_comparison) -> Path:
    missing = available()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} missing: .ci/run installs Debian's chromium and chromium-driver")
        pytest.skip(f"{missing} missing")
    return write_html(sample_comparison, tmp_path_factory.mktemp("report") / "compare.html")


def test_report_is_self_contained(report):
    text = report.read_text()
    # no script, no external resource: every src/href is a data URI or an in-page anchor
    assert "<script" not in text
    refs = re.findall(r'(?:src|href|xlink:href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if
                                                                       not r.startswith(("data:", "#"))]
    assert "@import" not in text and "url(http" not in text
    # one figure per plot and per design's memory map, each with the command that reproduces it
    nd = len(re.findall(r"<th>([^<]+)</th>", text.split("</thead>")[0]))
    assert text.count("<figure>") == 5 + nd and text.count('<pre class="cmd">') >= 5 + nd + 2


def test_report_renders_in_chromium(report, tmp_path):
    shot = tmp_path / "compare.png"
    page = open_page(report, shot)
    assert page.title == "memdesc compare"
    svgs = [f for f in page.figures if f[0] == "svg"]
    images = [f for f in page.figures if f[0] in ("img", "image")]
    assert len(svgs) == report.read_text().count("<figure>")
    assert len(images) == 3  # the memory maps: raster images inside their SVG
    bad = [f for f in page.figures if not (f[1] > 50 and f[2] > 10 and f[3])]
    assert not bad, bad
    errors = [m for m in page.console if m.get("level") in ("SEVERE", "WARNING")]
    assert not errors, errors
    assert page.resources == []  # nothing fetched: no network needed to read the report
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("MEMDESC_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
