"""The console in a real browser (headless Chromium from Debian, driven by selenium): the
overview's counts, a delivery enqueued by the test appearing without a reload, a retry clicked
in the page reaching the store, the login when credentials are configured, and stored script
tags staying inert. A failing test leaves a screenshot in test-artifacts/screenshots/."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

import relaybox
from _browser import keep_screenshot, start_chromium
from _console import XSS, console_server, seed_store, settings_with
from relaybox.config import parse_config
from relaybox.outbox import inspect
from relaybox.store import Store, open_store

WAIT = 10.0


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def browser(
    chromium: webdriver.Chrome, request: pytest.FixtureRequest
) -> Iterator[webdriver.Chrome]:
    """The shared browser, with a screenshot kept if the test fails."""
    chromium.delete_all_cookies()
    yield chromium
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        path = keep_screenshot(chromium, request.node.nodeid)
        print(f"screenshot of the failed page: {path}")


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Store, dict[str, int], str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'relaybox.db'}"
    ids = seed_store(url)
    store = open_store(url)
    with console_server(store, poll_seconds=0.2) as base:
        yield base, store, ids, url
    store.close()


def _wait(driver: webdriver.Chrome) -> WebDriverWait:  # type: ignore[type-arg]
    return WebDriverWait(driver, WAIT)


def test_overview_shows_the_right_counts(browser: webdriver.Chrome, seeded: tuple) -> None:  # type: ignore[type-arg]
    base, _store, _ids, _url = seeded
    browser.get(base + "/")
    sms = browser.find_element(By.CSS_SELECTOR, 'tr[data-channel="sms"]')
    assert sms.find_element(By.CSS_SELECTOR, "td.queued").text == "2"
    assert sms.find_element(By.CSS_SELECTOR, "td.unknown").text == "1"
    assert sms.find_element(By.CSS_SELECTOR, "td.failures").text == "1"
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 4


def test_a_delivery_enqueued_by_the_test_appears_without_reload(
    browser: webdriver.Chrome,
    seeded: tuple,  # type: ignore[type-arg]
) -> None:
    base, _store, _ids, url = seeded
    browser.get(base + "/deliveries")
    _wait(browser).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "on"
    )
    browser.execute_script("window.__sameDocument = true;")

    async def enqueue() -> int:
        config = parse_config({"channels": {"chat": {"transport": "memory"}}})
        rb = relaybox.open(url, config=config)
        try:
            made = await rb.enqueue(channel="chat", thread_id="live", recipient="r", parts=["new"])
            return made.delivery.id
        finally:
            rb.close()

    new_id = asyncio.run(enqueue())
    _wait(browser).until(ec.presence_of_element_located((By.ID, f"delivery-{new_id}")))
    assert browser.execute_script("return window.__sameDocument === true;")


def test_a_retry_clicked_in_the_page_changes_the_store(
    browser: webdriver.Chrome,
    seeded: tuple,  # type: ignore[type-arg]
) -> None:
    base, store, ids, _url = seeded
    target = ids["chat-failed-6"]
    browser.get(f"{base}/deliveries/{target}")
    assert browser.find_element(By.ID, "status").text == "failed"
    browser.find_element(By.ID, "retry").click()
    _wait(browser).until(lambda d: d.find_element(By.ID, "status").text == "queued")
    assert store.read_sync(inspect.get_delivery(target)).status == "queued"


def test_stored_script_tags_stay_inert(browser: webdriver.Chrome, seeded: tuple) -> None:  # type: ignore[type-arg]
    base, _store, ids, _url = seeded
    for path in (
        f"/deliveries/{ids['reply']}",
        "/deliveries",
        f"/failures/{ids['failure']}",
        "/failures?by=thread",
        f"/trace?ref=inbound:{ids['inbound']}",
        "/tasks",
    ):
        browser.get(base + path)
        assert browser.execute_script("return window.__xss === undefined;"), path
    browser.get(f"{base}/deliveries/{ids['reply']}")
    shown = browser.find_element(By.ID, "last-error").text
    assert XSS in shown  # the text is shown literally, as text


def test_login_is_required_when_configured(browser: webdriver.Chrome, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'relaybox.db'}")
    settings = settings_with(admin_password="correct horse", viewer_token="viewer-token-1")
    try:
        with console_server(store, settings) as base:
            browser.get(base + "/deliveries")
            _wait(browser).until(lambda d: "/login" in d.current_url)
            browser.find_element(By.ID, "user").send_keys("admin")
            browser.find_element(By.ID, "password").send_keys("wrong")
            browser.find_element(By.ID, "login").click()
            _wait(browser).until(ec.presence_of_element_located((By.ID, "login-error")))
            browser.find_element(By.ID, "user").send_keys("admin")
            browser.find_element(By.ID, "password").send_keys("correct horse")
            browser.find_element(By.ID, "login").click()
            _wait(browser).until(lambda d: d.current_url.endswith("/deliveries"))
            assert browser.find_element(By.ID, "who").text == "admin (admin)"
    finally:
        store.close()


def test_a_failed_browser_test_keeps_a_screenshot(
    browser: webdriver.Chrome,
    seeded: tuple,  # type: ignore[type-arg]
) -> None:
    """The helper the failure hook calls writes a real PNG of the page."""
    base = seeded[0]
    browser.get(base + "/")
    path = keep_screenshot(browser, "tests/test_console_browser.py::example[sqlite]")
    try:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.name == "tests_test_console_browser.py_example_sqlite_.png"
    finally:
        path.unlink()
