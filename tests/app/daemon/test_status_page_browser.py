"""The status page in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by
Selenium opens the page of a daemon running on the simulator.

Without chromium the test is skipped on a workstation and fails in CI (CI=true, or RECONCILER_REQUIRE_BROWSER=1
as .ci/run sets after installing chromium when it is missing).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.app.serving import serve
from reconciler.presentation.status_site import status_pages
from tests.app.daemon.conftest import DaemonWorld, server

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None or DRIVER is None:
        reason = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true" or os.environ.get("RECONCILER_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    # The driver is the system's: Selenium Manager is never asked to download one.
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_shows_every_environment_and_server_and_an_agent_going_away(
    world_of: Callable[..., DaemonWorld], browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(browser, WebDriver)
    w = world_of(3)
    w.write({"tb0": [server("alpha"), server("beta")], "tb1": [server("gamma")], "tb2": [server("delta")]})
    d = w.daemon(listen="127.0.0.1:0")
    d.site = status_pages
    srv = serve(d)
    try:
        d.cycle()
        d.cycle()
        browser.get(f"http://{srv.address}/")
        rows = browser.find_elements(By.CSS_SELECTOR, "#environments tr.env")
        verdicts = {r.get_attribute("data-env"): r.get_attribute("data-verdict") for r in rows}
        assert verdicts == {"tb0": "in-sync", "tb1": "in-sync", "tb2": "in-sync"}
        assert {r.find_element(By.CSS_SELECTOR, "td.verdict").text for r in rows} == {"in sync"}
        servers = {s.get_attribute("data-server") for s in browser.find_elements(By.CSS_SELECTOR, "tr.server")}
        assert servers == {"alpha", "beta", "gamma", "delta"}
        assert browser.find_elements(By.CSS_SELECTOR, "svg.timeline rect")  # the journalled cycles, drawn

        w.sim.sim.set_faults(1, drop=True)  # tb1's agent stops answering
        d.cycle()
        browser.refresh()
        rows = browser.find_elements(By.CSS_SELECTOR, "#environments tr.env")
        first = rows[0]
        assert first.get_attribute("data-env") == "tb1" and first.get_attribute("data-verdict") == "incomplete"
        assert first.find_element(By.CSS_SELECTOR, "td.verdict").text == "incomplete"
        assert "not-observed" in first.text
        assert {r.get_attribute("data-verdict") for r in rows[1:]} == {"in-sync"}
        # Without JavaScript the details are still one click away: the link goes to the server table.
        first.find_element(By.TAG_NAME, "a").click()
        assert browser.current_url.endswith("#env-0")
        shot = tmp_path / "status-page.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
    finally:
        srv.stop()
