"""A redacted SSN in Chromium with each RTC stack: jupyter-server-documents with server-side
execution (outputs written into the shared document by the server) and jupyter-collaboration 5
(outputs over the kernel websocket). The raw value must appear nowhere in the page."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import pytest
from lab_support import LOAD_TIMEOUT, Lab, LabOptions, notebook, run_lab, shot

from jupyter_prod_discovery.pytest_plugin import require

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SSN = "536-22-8721"
NOTEBOOK = "paths.ipynb"
CODE = f"print('customer SSN {SSN[:7]}' + '{SSN[7:]}')"
DOCUMENTS_LAB = "@jupyter-ai-contrib/server-documents"
#: jupyter-collaboration's frontend (jupyter-server-documents uses it too).
COLLABORATION_LABS = {
    "@jupyter/docprovider-extension": True,
    "@jupyter/collaboration-extension": True,
}

STACKS = {
    "documents": LabOptions(
        compliance=True,
        vault=False,
        notebooks={NOTEBOOK: notebook(CODE)},
        server_extensions={
            "jupyter_server_documents": True,
            "jupyter_server_ydoc": False,
            "jupyter_server_nbmodel": False,
            "jupyter_mcp_server": False,
        },
        labextensions={**COLLABORATION_LABS, DOCUMENTS_LAB: True},
    ),
    "collaboration": LabOptions(
        compliance=True,
        vault=False,
        notebooks={NOTEBOOK: notebook(CODE)},
        server_extensions={
            "jupyter_server_documents": False,
            "jupyter_server_ydoc": True,
            "jupyter_server_nbmodel": False,
            "jupyter_mcp_server": False,
        },
        labextensions=COLLABORATION_LABS,
    ),
}


@pytest.fixture(scope="module", params=sorted(STACKS))
def stack(request: Any) -> str:
    module = "jupyter_server_documents" if request.param == "documents" else "jupyter_server_ydoc"
    require(importlib.util.find_spec(module) is not None, f"{module} is not installed")
    return str(request.param)


@pytest.fixture(scope="module")
def stack_lab(stack: str) -> Iterator[Lab]:
    with run_lab(STACKS[stack]) as running:
        yield running


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every dict inside a decoded audit line (the payload sits in the event envelope)."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _dicts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _dicts(v)


def test_ssn_redacted_in_page(browser: Any, stack: str, stack_lab: Lab) -> None:
    lab = stack_lab
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{lab.url}/lab?token={lab.token}&reset", wait_until="domcontentloaded")
        page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=LOAD_TIMEOUT)
        indicator = page.locator(".jp-ProdDiscovery-indicator").first
        indicator.wait_for(state="visible", timeout=LOAD_TIMEOUT)
        page.wait_for_function(
            "() => document.querySelector('.jp-ProdDiscovery-indicator').dataset.paths === 'ok'"
        )
        assert indicator.get_attribute("data-terminals") == "audit"
        config = json.loads(page.locator("#jupyter-config-data").text_content() or "{}")
        if stack == "documents":
            assert config.get("serverSideExecution") == "true"
        page.evaluate(
            "([c, a]) => window.jupyterapp.commands.execute(c, a)",
            ["docmanager:open", {"path": NOTEBOOK}],
        )
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
            state="attached", timeout=90_000
        )
        page.evaluate("(c) => window.jupyterapp.commands.execute(c)", "notebook:run-all-cells")
        page.locator(".jp-OutputArea-output", has_text="<US_SSN>").first.wait_for(
            state="visible", timeout=90_000
        )
        shot(page, f"paths-{stack}")
        assert SSN not in page.content()
        assert SSN not in " ".join(page.locator(".jp-OutputArea").all_inner_texts())
        if stack == "documents":
            # Executed by the server, recorded as such, with the user.
            found = [
                r
                for line in lab.audit_log.read_text().splitlines()
                for r in _dicts(json.loads(line))
                if r.get("via") == "server-side:jupyter-server-documents"
            ]
            assert found and all((r.get("user") or {}).get("username") for r in found)
    finally:
        context.close()


DENY = LabOptions(compliance=True, vault=False, app_config={"terminals": "deny"})


@pytest.fixture(scope="module")
def deny_lab() -> Iterator[Lab]:
    with run_lab(DENY) as running:
        yield running


def test_terminals_denied_ui_says_why(browser: Any, deny_lab: Lab) -> None:
    lab = deny_lab
    resp = lab.api("POST", "api/terminals")
    assert resp.status_code == 403 and "terminals are disabled" in resp.reason
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{lab.url}/lab?token={lab.token}&reset", wait_until="domcontentloaded")
        page.locator(".jp-Launcher").first.wait_for(state="visible", timeout=LOAD_TIMEOUT)
        indicator = page.locator(".jp-ProdDiscovery-indicator").first
        page.wait_for_function(
            "() => document.querySelector('.jp-ProdDiscovery-indicator').dataset.terminals"
            " === 'deny'"
        )
        assert "terminals are disabled" in (indicator.get_attribute("title") or "")
        assert page.locator(".jp-LauncherCard", has_text="Terminal").count() == 0
        shot(page, "paths-terminals-denied")
    finally:
        context.close()
