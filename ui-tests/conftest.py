"""Fixtures of the browser tests: one JupyterLab per test module, one Chromium per session.

A module configures its JupyterLab with a ``lab_options`` fixture. Under CI=true a missing
Chromium fails the run (``require``) instead of skipping it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_support import (
    ARTIFACTS,
    LOAD_TIMEOUT,
    Lab,
    LabOptions,
    demo_dsn,
    free_port,
    run_lab,
    shot,
)

from jupyter_prod_discovery.demo.process import DemoProcess
from jupyter_prod_discovery.demo.seed import postgres_reachable
from jupyter_prod_discovery.pytest_plugin import CHROMIUM, CHROMIUM_ARGS, require


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    """Overrides pytest-jupyter's per-test loop (loaded for tests/ in the same run).

    That fixture closes the current event loop after each test, which is Playwright's running
    loop once the session's browser started; these tests are synchronous and need none.
    """
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    """Overrides pytest-jupyter's cleanup of an in-process server: these tests start none."""
    yield None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require(
        Path(CHROMIUM).is_file(),
        f"Chromium not found at {CHROMIUM} (apt-get install chromium)",
    )
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def lab(lab_options: LabOptions) -> Iterator[Lab]:
    with run_lab(lab_options) as running:
        yield running


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoProcess]:
    """The real demo (``jupyter prod-discovery demo``: OpenBao, the trusted service, the
    sample database and JupyterLab), once per module: it takes tens of seconds to start.

    The first-hour test starts its own through ``scripts/demo.sh``, since stopping it the way
    a terminal does is what it checks.
    """
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    proc = DemoProcess(free_port())
    try:
        yield proc.start(timeout=300)
    finally:
        proc.cleanup()


@pytest.fixture(scope="module")
def page(browser: Any, lab: Lab) -> Iterator[Any]:
    """One JupyterLab tab per module, loaded and logged in with the token."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(60_000)
    p.goto(f"{lab.url}/lab?token={lab.token}&reset", wait_until="domcontentloaded")
    p.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=LOAD_TIMEOUT)
    p.locator(".jp-ProdDiscovery-indicator").first.wait_for(state="visible", timeout=LOAD_TIMEOUT)
    try:
        yield p
    finally:
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.ui_failed = report.failed


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: Any) -> Iterator[None]:
    """A failing browser test leaves a screenshot of the tab under artifacts/."""
    yield
    if getattr(request.node, "ui_failed", False) and "page" in request.fixturenames:
        with contextlib.suppress(Exception):
            shot(request.getfixturevalue("page"), f"FAILED-{request.node.name}")
