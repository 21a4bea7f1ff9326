"""The JupyterLab experience of a compliance user on a real server with real OpenBao.

The tests of this module share one JupyterLab and one tab and run in order, like a user's
session: indicator, credentials of the notebook's kernel, a redacted SSN, the export dialog,
and the audit viewer listing what this session did.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from lab_support import Lab, LabOptions, notebook, out_of_view, shot, ttl_seconds

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SSN = "536-22-8721"
NOTEBOOK = "pii.ipynb"
CLEAN = "clean.ipynb"


@pytest.fixture(scope="module")
def lab_options() -> LabOptions:
    return LabOptions(
        compliance=True,
        vault=True,
        short_lease=True,
        notebooks={
            NOTEBOOK: notebook(f"print('customer SSN {SSN}')"),
            CLEAN: notebook("total = sum(range(10))", "print(total)"),
        },
    )


def run_command(page: Any, command: str, args: dict[str, Any] | None = None) -> None:
    # Awaited, its result dropped: a command's result (a widget) may be too deep to serialize.
    page.evaluate(
        "async ([c, a]) => { await window.jupyterapp.commands.execute(c, a); }",
        [command, args or {}],
    )


def assert_notified(page: Any, text: str) -> None:
    """A notification with ``text`` was posted: looked up in JupyterLab's notification center,
    where it stays after its toast closed by itself (toasts may be gone on a slow machine)."""
    center = page.locator(".jp-Notification-List")
    if not center.is_visible():
        run_command(page, "apputils:display-notifications")  # a toggle
    page.locator(".jp-Notification-List-Item", has_text=text).first.wait_for(state="attached")
    if center.is_visible():
        run_command(page, "apputils:display-notifications")


def open_sidebar(page: Any) -> None:
    tab = page.locator('li.lm-TabBar-tab[data-id="jp-ProdDiscovery-sidebar"]')
    if tab.get_attribute("aria-selected") != "true":
        tab.click()
    page.locator(".jp-ProdDiscovery-credentials").wait_for(state="visible")


def test_show_indicator_configured_name(page: Any) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-ProdDiscovery-indicator')]"
        ".some(n => n.textContent.includes('Vault connected'))"
    )
    texts = page.locator(".jp-ProdDiscovery-indicator").all_inner_texts()
    assert any("Prod Discovery (ui-tests)" in t for t in texts)
    shot(page, "indicator")


def test_list_credentials_ttl_counts_down(page: Any, lab: Lab) -> None:
    run_command(page, "docmanager:open", {"path": NOTEBOOK})
    open_sidebar(page)
    lease = page.locator('.jp-ProdDiscovery-lease[data-profile="vault-token"]').first
    lease.wait_for(state="visible", timeout=90_000)
    kernel = page.locator(".jp-ProdDiscovery-kernel").first
    assert "vault-token" in kernel.inner_text()
    assert "warehouse-api" in kernel.inner_text()
    ttl = lease.locator(".jp-ProdDiscovery-ttl")
    first = ttl_seconds(ttl.inner_text())
    assert 0 < first <= 30 * 60  # the profile's TTL is 30m
    page.wait_for_function(
        "([sel, first]) => { const t = document.querySelector(sel).textContent;"
        " let s = 0; for (const [, v, u] of t.matchAll(/(\\d+)([hms])/g))"
        " s += Number(v) * ({h: 3600, m: 60, s: 1})[u]; return s > 0 && s < first; }",
        arg=[
            '.jp-ProdDiscovery-lease[data-profile="vault-token"] .jp-ProdDiscovery-ttl',
            first,
        ],
    )
    assert lease.get_attribute("data-health") == "ok"
    shot(page, "credentials")


def test_warn_lease_about_to_expire(page: Any) -> None:
    short = page.locator('.jp-ProdDiscovery-lease[data-profile="short-token"]').first
    short.wait_for(state="visible")
    assert short.get_attribute("data-health") == "expiring"
    notice = page.locator(".jp-ProdDiscovery-credentials [role=alert]")
    assert "about to expire" in notice.inner_text()
    assert_notified(page, "short-token")


def test_renew_credentials_from_panel(page: Any) -> None:
    renew = page.get_by_role("button", name=re.compile("Renew the credentials")).first
    renew.focus()
    page.keyboard.press("Enter")
    assert_notified(page, "renewed")
    assert page.locator(".jp-ProdDiscovery-renewError").count() == 0


def test_print_ssn_redacted_with_notification(page: Any) -> None:
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
        state="attached", timeout=90_000
    )
    run_command(page, "notebook:run-all-cells")
    output = page.locator(".jp-OutputArea-output", has_text="<US_SSN>").first
    output.wait_for(state="visible", timeout=60_000)
    outputs = " ".join(page.locator(".jp-OutputArea").all_inner_texts())
    assert SSN not in outputs
    marker = page.locator(".jp-ProdDiscovery-piiMarker").first
    marker.wait_for(state="visible")
    assert "US_SSN" in marker.inner_text()
    assert marker.get_attribute("data-action") == "redact"
    assert_notified(page, "Redacted by the PII guard: US_SSN")
    notes = page.evaluate(
        "() => [...document.querySelectorAll('.jp-Notification-List-Item, .Toastify__toast')]"
        ".map(n => n.textContent).join(' ')"
    )
    assert SSN not in notes
    finding = page.locator(".jp-ProdDiscovery-finding").first
    finding.wait_for(state="visible")
    assert "Cell 1" in finding.inner_text() and "US_SSN" in finding.inner_text()
    shot(page, "pii-redacted")


def test_export_dialog_shows_failing_and_passing_gates(page: Any) -> None:
    page.locator(".jp-ProdDiscovery-exportButton").first.click()
    dialog = page.locator(".jp-ProdDiscovery-exportDialog")
    dialog.wait_for(state="visible")
    dialog.get_by_role("button", name="Run gates and export").click()
    failed = dialog.locator('.jp-ProdDiscovery-gate[data-gate="no_pii"][data-state="failed"]')
    failed.wait_for(state="visible", timeout=120_000)
    assert "US_SSN" in failed.inner_text()
    assert SSN not in dialog.inner_text()
    # Gates show as they complete: the refusal comes once the job is done, the list stays.
    refused = dialog.locator('.jp-ProdDiscovery-exportResult[data-exported="false"]')
    refused.wait_for(state="visible", timeout=120_000)
    assert dialog.locator('.jp-ProdDiscovery-gate[data-state="passed"]').count() >= 1
    assert dialog.locator(".jp-ProdDiscovery-gate").count() == 6
    assert dialog.get_by_role("textbox", name="Reason for overriding no_pii").count() == 1
    # The refusal is in sight without scrolling the dialog (it used to sit under the gates).
    assert out_of_view(refused) == []
    failed.scroll_into_view_if_needed()
    shot(page, "export-gates")

    # Override the failed gate with a reason: exported, the gate marked as overridden.
    dialog.get_by_role("checkbox", name="Override with a reason").check()
    reason = dialog.get_by_role("textbox", name="Reason for overriding no_pii")
    reason.fill("synthetic SSN in a test fixture")
    reason.press("Enter")  # runs the export again; does not close the dialog
    result = dialog.locator('.jp-ProdDiscovery-exportResult[data-exported="true"]')
    result.wait_for(state="visible", timeout=180_000)
    overridden = dialog.locator('.jp-ProdDiscovery-gate[data-gate="no_pii"]')
    assert overridden.get_attribute("data-state") == "overridden"
    assert "synthetic SSN in a test fixture" in overridden.inner_text()
    dialog.get_by_role("button", name="Close").first.click()
    dialog.wait_for(state="detached")


def test_export_clean_notebook_signed(page: Any, lab: Lab) -> None:
    run_command(page, "docmanager:open", {"path": CLEAN})
    page.locator(".jp-NotebookPanel:visible .jp-ProdDiscovery-exportButton").first.click()
    dialog = page.locator(".jp-ProdDiscovery-exportDialog")
    dialog.wait_for(state="visible")
    dialog.get_by_role("button", name="Run gates and export").click()
    progress = dialog.locator(".jp-ProdDiscovery-progress progress")
    progress.wait_for(state="visible")
    # Each gate as it completes: while the clean run runs, the gates before it show passed.
    running = dialog.locator('.jp-ProdDiscovery-gate[data-gate="clean_run"][data-state="running"]')
    running.wait_for(state="visible", timeout=60_000)
    shown = dialog.locator(".jp-ProdDiscovery-gate").evaluate_all(
        "gates => gates.map(g => [g.dataset.gate, g.dataset.state, g.innerText])"
    )
    assert [state for _, state, _ in shown[:5]] == ["passed"] * 5, shown
    result = dialog.locator('.jp-ProdDiscovery-exportResult[data-exported="true"]')
    result.wait_for(state="visible", timeout=180_000)
    states = dialog.locator(".jp-ProdDiscovery-gate").evaluate_all(
        "gates => gates.map(g => g.dataset.state)"
    )
    assert states and set(states) == {"passed"}
    bundle = dialog.locator(".jp-ProdDiscovery-result-bundle").inner_text()
    assert bundle.startswith(".prod-discovery/exports/clean-")
    assert (lab.root / bundle / "signature.json").is_file()
    signature = dialog.locator('.jp-ProdDiscovery-result-signature[data-algorithm="vault-transit"]')
    signature.wait_for(state="visible")
    assert "transit/prod-discovery-export" in signature.inner_text()
    # Bundle, signer, signature and verification in sight as the job ends, no scrolling.
    assert out_of_view(result) == []
    for field in ("bundle", "signer", "signature", "verification"):
        assert out_of_view(dialog.locator(f".jp-ProdDiscovery-result-{field}")) == [], field
    result.scroll_into_view_if_needed()
    shot(page, "export-signed")
    dialog.get_by_role("button", name="Close").first.click()
    dialog.wait_for(state="detached")


def test_audit_viewer_lists_own_events_verified(page: Any, lab: Lab) -> None:
    kernel_id = page.locator(".jp-ProdDiscovery-kernel").first.get_attribute("data-kernel-id")
    assert kernel_id
    open_sidebar(page)
    page.get_by_role("button", name="Open the audit trail").click()
    viewer = page.locator(".jp-ProdDiscovery-audit")
    viewer.wait_for(state="visible")
    viewer.locator('.jp-ProdDiscovery-verify[data-state="verified"]').wait_for(timeout=30_000)
    assert "Chain verified" in viewer.locator(".jp-ProdDiscovery-verify").inner_text()
    viewer.get_by_label("Kernel", exact=True).fill(kernel_id)
    viewer.get_by_role("button", name="Apply filters").click()
    rows = viewer.locator(".jp-ProdDiscovery-auditTable tbody tr")
    page.wait_for_function(
        "(k) => { const rows = [...document.querySelectorAll("
        "'.jp-ProdDiscovery-auditTable tbody tr')];"
        " return rows.length > 0 && rows.every(r => r.textContent.includes(k))"
        " && rows.some(r => r.dataset.kind === 'pii'); }",
        arg=kernel_id,
    )
    kinds = set(
        page.evaluate(
            "() => [...document.querySelectorAll('.jp-ProdDiscovery-auditTable tbody tr')]"
            ".map(r => r.dataset.kind)"
        )
    )
    assert {"kernel", "execution", "pii", "credential"} <= kinds
    rows.first.focus()
    page.keyboard.press("Enter")
    assert kernel_id in viewer.locator(".jp-ProdDiscovery-auditDetails").inner_text()
    with page.expect_download() as download:
        viewer.get_by_role("button", name="Download CSV").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.startswith("seq,ts,kind,user,what,path,kernel_id,status")
    assert SSN not in csv_text
    with page.expect_download() as download:
        viewer.get_by_role("button", name="HTML report").click()
    report = Path(download.value.path()).read_text()
    assert "<h1>Audit report</h1>" in report and "intact" in report
    shot(page, "audit-viewer")


def test_follow_dark_theme(page: Any) -> None:
    sidebar = page.locator(".jp-ProdDiscovery-sidebar")
    light = sidebar.evaluate("n => getComputedStyle(n).backgroundColor")
    run_command(page, "apputils:change-theme", {"theme": "JupyterLab Dark"})
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    page.wait_for_function(
        "([sel, light]) => getComputedStyle(document.querySelector(sel)).backgroundColor !== light",
        arg=[".jp-ProdDiscovery-sidebar", light],
    )
    run_command(page, "docmanager:open", {"path": NOTEBOOK})
    page.locator(".jp-ProdDiscovery-piiMarker").first.wait_for(state="visible")
    shot(page, "dark-theme")


def test_notice_renewal_failed_when_openbao_down(page: Any, lab: Lab) -> None:
    """Last of the module: stops the real OpenBao so that a renewal really fails."""
    assert lab.bao is not None
    open_sidebar(page)
    lab.bao.stop()
    page.get_by_role("button", name=re.compile("Renew the credentials")).first.click()
    page.locator(".jp-ProdDiscovery-renewError").first.wait_for(state="visible")
    notice = page.locator(".jp-ProdDiscovery-credentials [role=alert]")
    assert "Renewal failed" in notice.inner_text()
    assert_notified(page, "Renewing credentials failed")
    shot(page, "renewal-failed")
