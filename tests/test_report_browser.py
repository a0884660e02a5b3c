"""The compare report in a real browser: headless Chromium renders every figure, with a clean console.

Needs Debian's chromium and chromium-driver (.ci/run installs them): skipped without them on a
developer's machine, an error under CI.  Set MEMDESC_SCREENSHOT=PATH to keep the screenshot and
MEMDESC_REPORT=PATH to check a report already written instead of the sample comparison's;
docs/compare.png is made that way, from ``make run``'s report::

    make run && MEMDESC_REPORT=report/compare.html MEMDESC_SCREENSHOT=docs/compare.png \
        pytest tests/test_report_browser.py
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
def report(tmp_path_factory, request) -> Path:
    missing = available()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} missing: .ci/run installs Debian's chromium and chromium-driver")
        pytest.skip(f"{missing} missing")
    given = os.environ.get("MEMDESC_REPORT")
    if given:
        return Path(given)
    return write_html(request.getfixturevalue("sample_comparison"),
                      tmp_path_factory.mktemp("report") / "compare.html")


def _designs(report: Path) -> int:
    """Design columns of the report's first table."""
    return len(re.findall(r"<th>([^<]+)</th>", report.read_text().split("</thead>")[0]))


def test_report_is_self_contained(report):
    text = report.read_text()
    # no script, no external resource: every src/href is a data URI or an in-page anchor
    assert "<script" not in text
    refs = re.findall(r'(?:src|href|xlink:href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if
                                                                       not r.startswith(("data:", "#"))]
    assert "@import" not in text and "url(http" not in text
    # one figure per plot and per design's memory map, each with the command that reproduces it
    nd = _designs(report)
    assert text.count("<figure>") == 5 + nd and text.count('<pre class="cmd">') >= 5 + nd + 2


def test_report_renders_in_chromium(report, tmp_path):
    shot = tmp_path / "compare.png"
    page = open_page(report, shot, width=1100, height=1400)
    assert page.title == "memdesc compare"
    svgs = [f for f in page.figures if f[0] == "svg"]
    images = [f for f in page.figures if f[0] in ("img", "image")]
    assert len(svgs) == report.read_text().count("<figure>")
    assert len(images) == _designs(report)  # the memory maps: raster images inside their SVG
    bad = [f for f in page.figures if not (f[1] > 50 and f[2] > 10 and f[3])]
    assert not bad, bad
    errors = [m for m in page.console if m.get("level") in ("SEVERE", "WARNING")]
    assert not errors, errors
    assert page.resources == []  # nothing fetched: no network needed to read the report
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("MEMDESC_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
