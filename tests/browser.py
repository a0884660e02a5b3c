"""Headless Chromium for tests: open a page, measure its figures, read its console, screenshot.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when missing),
driven by selenium through the matching ``/usr/bin/chromedriver``: no browser download,
no network.  Chromium runs with a fresh empty profile and without background networking.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")

#: every figure-like element: tag, size, and for images whether the picture decoded
FIGURES_JS = """
const out = [];
for (const e of document.querySelectorAll('svg, img, image')) {
  if (e.tagName.toLowerCase() !== 'svg' && e.closest('svg') && e.tagName.toLowerCase() !== 'image') continue;
  if (e.tagName.toLowerCase() === 'svg' && e.parentElement.closest('svg')) continue;
  const r = e.getBoundingClientRect();
  let ok = true;
  if (e.tagName.toLowerCase() === 'img') ok = e.complete && e.naturalWidth > 0;
  out.push([e.tagName.toLowerCase(), r.width, r.height, ok]);
}
return out;
"""


def find(paths) -> str | None:
    for p in paths:
        if Path(p).is_file():
            return p
    return None


def available() -> str | None:
    """None when Chromium, chromedriver and selenium are all there, else what is missing."""
    missing = [n for n, paths in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not find(paths)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    return ", ".join(missing) or None


@dataclass
class PageReport:
    figures: list[tuple[str, float, float, bool]]
    console: list[dict]
    resources: list[str]
    title: str
    height: int


def open_page(path: Path, screenshot: Path | None = None, width: int = 1280, height: int = 1400,
              full_page: bool = False) -> PageReport:
    """Open ``path``; with ``screenshot``, save the first ``height`` pixels (or the whole page) as PNG."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="memdesc-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = find(CHROMIUM)
    for f in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(find(CHROMEDRIVER)), options=opts)
    try:
        driver.get(path.resolve().as_uri())
        driver.execute_script("return document.readyState")
        figures = [tuple(x) for x in driver.execute_script(FIGURES_JS)]
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        title = driver.title
        full = int(driver.execute_script("return document.documentElement.scrollHeight"))
        if screenshot is not None:
            args = {"format": "png"}
            if full_page:
                args.update(captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": width, "height": full, "scale": 1})
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", args)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        console = driver.get_log("browser")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return PageReport(figures, console, resources, title, full)
