"""The environment indicator in a real browser: Debian's Chromium driving the demo's JupyterLab.

Never a downloaded browser (no ``playwright install``): Playwright drives /usr/bin/chromium.
Under CI=true a missing Chromium fails the run instead of skipping it.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_prod_discovery.demo.process import DemoProcess
from jupyter_prod_discovery.pytest_plugin import CHROMIUM, CHROMIUM_ARGS, require

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoProcess]:
    proc = DemoProcess(free_port())
    try:
        yield proc.start(timeout=30)  # acceptance: JupyterLab serves within 30 s
        assert proc.stop() == 0
        assert proc.leftover_processes() == []
    finally:
        proc.cleanup()


def test_show_indicator_vault_connected(demo: DemoProcess) -> None:
    require(
        Path(CHROMIUM).is_file() or shutil.which("chromium") is not None,
        f"Chromium not found at {CHROMIUM} (apt-get install chromium)",
    )
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{demo.url}/lab?token={demo.token}", wait_until="domcontentloaded")
            indicator = page.locator(".jp-ProdDiscovery-indicator").first
            # Generous: JupyterLab's first load on a busy 2-core CI machine is slow.
            indicator.wait_for(state="visible", timeout=90_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-ProdDiscovery-indicator')]"
                ".some(n => n.textContent.includes('Vault connected'))",
                timeout=60_000,
            )
            page.screenshot(path=str(ARTIFACTS / "indicator.png"))
            texts = page.locator(".jp-ProdDiscovery-indicator").all_inner_texts()
            assert any("Prod Discovery (demo)" in t and "Vault connected" in t for t in texts)
            assert all(demo.token not in t for t in texts)
        finally:
            browser.close()
