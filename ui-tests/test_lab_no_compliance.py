"""A user without the compliance permission sees no audit viewer, and the API refuses them."""

from __future__ import annotations

from typing import Any

import pytest
from lab_support import Lab, LabOptions, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab_options() -> LabOptions:
    return LabOptions(compliance=False, vault=False)


def test_hide_audit_viewer_without_permission(page: Any, lab: Lab) -> None:
    page.locator('li.lm-TabBar-tab[data-id="jp-ProdDiscovery-sidebar"]').click()
    page.locator(".jp-ProdDiscovery-credentials").wait_for(state="visible")
    page.locator(".jp-ProdDiscovery-findings").wait_for(state="visible")
    # The UI asked the server (permissions.audit) and hid the viewer.
    page.locator('.jp-ProdDiscovery-sidebar[data-audit="hidden"]').wait_for(state="attached")
    assert page.locator(".jp-ProdDiscovery-openAudit").count() == 0
    assert page.evaluate("() => window.jupyterapp.commands.hasCommand('prod-discovery:export')")
    assert not page.evaluate(
        "() => window.jupyterapp.commands.hasCommand('prod-discovery:open-audit')"
    )
    status = page.evaluate(
        "async (token) => (await fetch('/prod-discovery/api/audit/events',"
        " {headers: {Authorization: 'token ' + token}})).status",
        lab.token,
    )
    assert status == 403
    shot(page, "no-audit-viewer")
