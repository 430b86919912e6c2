"""Headless Chromium driven by Selenium, from Debian's packages: no browser or driver download.

scripts/bootstrap installs `chromium` and `chromium-driver` (as root, with apt-get) and requirements-dev.txt pins
selenium. Used by the page's browser tests and by scripts/screenshot_emulator.py.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile

#: Debian's paths first; any chromium / chromedriver on PATH otherwise
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")
# As root (CI, containers) Chromium needs --no-sandbox. The background-networking flags stop it from calling
# Google's services: this machine's network refuses them, and a test page needs none.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")


def _find(candidates: tuple[str, ...]) -> str | None:
    return next((found for found in map(shutil.which, candidates) if found), None)


def missing() -> str | None:
    """What is missing to drive Chromium here, with how to install it; None when everything is there."""
    problems = []
    if _find(CHROMIUM_CANDIDATES) is None:
        problems.append("chromium (apt-get install chromium)")
    if _find(DRIVER_CANDIDATES) is None:
        problems.append("chromedriver (apt-get install chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        problems.append("selenium (pip install -r requirements-dev.txt)")
    return ("missing: " + ", ".join(problems) + "; scripts/bootstrap installs them as root") if problems else None


class Chromium:
    """A headless Chromium with a fresh profile; ``driver`` is the Selenium WebDriver. Use as a context manager."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.width, self.height = width, height
        self.profile = None
        self.driver = None

    def __enter__(self) -> Chromium:
        # Imported here: whoever only asks missing() needs no selenium.
        from selenium import webdriver  # pylint: disable=import-outside-toplevel
        from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel

        self.profile = tempfile.mkdtemp(prefix="retrace-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = _find(CHROMIUM_CANDIDATES)
        for flag in (*FLAGS, f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}"):
            options.add_argument(flag)
        # With both the browser and the driver given, Selenium never runs its driver manager (no download).
        self.driver = webdriver.Chrome(service=Service(_find(DRIVER_CANDIDATES)), options=options)
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self.driver is not None:
                self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def full_page_screenshot(self, path: os.PathLike | str) -> None:
        """A PNG of the whole page: the window is made as tall as the document first."""
        height = self.driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
        self.driver.set_window_size(self.width, max(height, 400))
        self.driver.save_screenshot(str(path))
