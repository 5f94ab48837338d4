"""Headless Chromium from the distribution's packages, driven by selenium (no browser download).

``scripts/test.sh`` installs ``chromium`` and ``chromium-driver`` when they are missing. When a
browser test fails, a screenshot of the page is kept in ``test-artifacts/screenshots/``
(``$RELAYBOX_ARTIFACTS`` moves it), named after the test.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from conftest import IN_CI

CHROMIUM = os.environ.get("RELAYBOX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RELAYBOX_CHROMEDRIVER", "/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("RELAYBOX_ARTIFACTS", ROOT / "test-artifacts"))


def start_chromium(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = (
            f"{', '.join(missing)} not found: apt-get install chromium chromium-driver"
            " (scripts/test.sh does it)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    return driver


def keep_screenshot(driver: webdriver.Chrome, test_name: str) -> Path:
    """Save what the browser shows now, for a failed test; returns the file."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name) + ".png")
    driver.save_screenshot(str(path))
    return path
