"""The dashboard in a real browser (Debian's chromium + chromedriver through selenium): every view is refused
without the token, loads after signing in with the form, shows its chart and its table; a screenshot of each view
is written under the test's temporary folder (dashboard-<view>.png)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from bot.http.server import HttpServer
from tests.http.conftest import TOKEN

CHROMIUM = os.environ.get("KILROY_TEST_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("KILROY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
VIEWS = ("overview", "posts", "adapters", "runs", "stories")

pytestmark = pytest.mark.browser


def _browser_or_skip():
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    driver = DRIVER if Path(DRIVER).exists() else shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "no browser: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1400",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def drive(base: str, shots: Path) -> dict[str, dict]:
    """The browser session (synchronous selenium; runs in a thread so the server's loop keeps serving)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser_or_skip()
    seen: dict[str, dict] = {}
    try:
        for view in VIEWS:  # no token, no cookie: the sign-in page (served with 401)
            browser.get(f"{base}/{'' if view == 'overview' else view}")
            assert browser.find_elements(By.ID, "login") and not browser.find_elements(By.ID, "table"), view
        browser.save_screenshot(str(shots / "dashboard-refused.png"))
        browser.find_element(By.ID, "token").send_keys("not the token")
        browser.find_element(By.ID, "sign-in").click()
        WebDriverWait(browser, 10).until(lambda b: "not right" in b.page_source)
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "sign-in").click()
        WebDriverWait(browser, 10).until(lambda b: b.get_cookie("kilroy_session") is not None)
        cookie = browser.get_cookie("kilroy_session")
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
        assert browser.execute_script("return document.cookie") == ""  # invisible to scripts
        for view in VIEWS:
            browser.get(f"{base}/{'' if view == 'overview' else view}")
            svg = browser.find_element(By.CSS_SELECTOR, "#chart svg")
            table = browser.find_element(By.ID, "table")
            rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
            seen[view] = {"chart_px": svg.size["width"] * svg.size["height"], "rows": len(rows), "title": browser.title}
            browser.save_screenshot(str(shots / f"dashboard-{view}.png"))
        browser.find_element(By.ID, "nav-adapters").click()
        browser.find_element(By.CSS_SELECTOR, "#rollback button").click()  # a POST carrying the page's CSRF token
        WebDriverWait(browser, 10).until(lambda b: "Rolled back" in b.page_source)
        audit = browser.find_element(By.ID, "audit").text
        assert "dashboard" in audit and "rollback" in audit and ": ok" in audit
        browser.save_screenshot(str(shots / "dashboard-after-rollback.png"))
    finally:
        browser.quit()
    return seen


async def test_every_view_in_a_real_browser(app_env, tmp_path):
    _, ctx, _, rolled = app_env
    async with HttpServer(ctx, "127.0.0.1", 0) as server:
        seen = await asyncio.to_thread(drive, f"http://127.0.0.1:{server.port}", tmp_path)
    print(f"screenshots in {tmp_path}: {sorted(p.name for p in tmp_path.glob('dashboard-*.png'))}")
    for view in VIEWS:
        assert seen[view]["chart_px"] > 10_000 and seen[view]["rows"] >= 1, (view, seen[view])
        assert (tmp_path / f"dashboard-{view}.png").stat().st_size > 5_000
    assert rolled == ["x"]  # the button reached the rollback service once
