"""A full-page PNG of a report, from headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium): how ``docs/report.png`` is made (``ifd report RUN --screenshot FILE``)."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path

from ifd.errors import IfdError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# True once every chart on the page and in the tearsheet frame has been drawn.
RENDERED_JS = """
const plotted = (doc) => Array.from(doc.querySelectorAll('.plotly-graph-div'))
  .every(d => d.classList.contains('js-plotly-plot') && d.querySelector('.main-svg'));
const frame = document.getElementById('tearsheet-frame');
const inner = frame ? frame.contentDocument : null;
return plotted(document) && (!frame || (inner && inner.readyState === 'complete' && plotted(inner)));
"""


def save_screenshot(report: Path, png: Path, width: int = 1400, timeout_s: float = 60.0) -> Path:
    """Open ``report`` in headless Chromium, wait for its charts, save the whole page as ``png``."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import TimeoutException
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        raise IfdError("--screenshot needs selenium (pip install selenium, or the project's [test] extra)") from None
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            raise IfdError(f"{binary}: not installed (--screenshot needs Debian's chromium and chromium-driver)")
    png = Path(png)
    if not png.parent.is_dir():
        raise IfdError(f"{png.parent}: no such folder for the screenshot")
    profile = tempfile.mkdtemp(prefix="ifd-report-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-extensions", "--hide-scrollbars",
                 f"--user-data-dir={profile}", f"--window-size={width},1000"):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.get(Path(report).resolve().as_uri())
        WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda d: d.execute_script(RENDERED_JS))
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True,
             "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}},
        )
    except TimeoutException:
        raise IfdError(f"{report}: the charts did not finish drawing within {timeout_s:g} s") from None
    except WebDriverException as exc:
        raise IfdError(f"{report}: Chromium failed ({exc.msg or type(exc).__name__})") from None
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    tmp = png.with_name(f".{png.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(base64.b64decode(shot["data"]))
        os.replace(tmp, png)
    finally:
        tmp.unlink(missing_ok=True)
    return png
