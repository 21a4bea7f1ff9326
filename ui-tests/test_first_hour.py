"""The first hour of a newcomer (issue 18): the README's demo steps, as written, in Chromium.

``bash scripts/demo.sh`` with its output piped into ``tee`` (as ``bash scripts/demo.sh | tee
demo.log``), open the URL it prints, run the README's example in a new notebook and see the
SSNs and emails come back redacted, open the credentials panel and the audit viewer, export the
notebook from its toolbar (the trusted service runs every gate, clean_run included, and signs;
the bundle then verifies with the demo's published public key alone), then stop the demo the way
a terminal does (Ctrl-C, or SIGHUP when the terminal is closed: to the whole pipeline, tee
included). Afterwards no process, lease (OpenBao is gone with them) or database role of the demo
may remain, and the trail verifies.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from lab_support import LOAD_TIMEOUT, run_in_new_notebook, shot

from jupyter_prod_discovery.demo.process import DemoProcess
from jupyter_prod_discovery.demo.runner import DEFAULT_DSN, EXPORT_PUBLIC_KEY
from jupyter_prod_discovery.demo.seed import postgres_reachable
from jupyter_prod_discovery.pytest_plugin import require

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: The example the README's demo section tells a newcomer to run.
EXAMPLE = (
    'import os, psycopg; psycopg.connect("").execute("select * from customers limit 5").fetchall()'
)
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
#: The promotion gates, in the order the exporter runs them.
GATES = (
    "outputs_stripped",
    "no_pii",
    "no_secrets",
    "no_interactive",
    "dependencies_locked",
    "clean_run",
)
#: Until the export dialog shows its result: clean_run starts a kernel as the sandbox user.
EXPORT_TIMEOUT_MS = 600_000


def demo_dsn() -> str:
    return os.environ.get("PROD_DISCOVERY_DEMO_DSN", DEFAULT_DSN)


def roles_with_prefix(prefix: str) -> list[str]:
    with psycopg.connect(demo_dsn()) as conn:
        rows = conn.execute(
            "select rolname from pg_roles where starts_with(rolname, %s)", (prefix,)
        ).fetchall()
    return [r[0] for r in rows]


def test_readme_still_says_what_this_test_does() -> None:
    """The steps below are the README's: if it changes, this test must change with it."""
    assert "bash scripts/demo.sh" in README
    assert f"`{EXAMPLE}`" in README
    assert "come back redacted" in README
    assert "bash scripts/demo.sh | tee demo.log" in README


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "sighup"])
def test_first_hour_with_the_demo(browser: Any, stop: int) -> None:
    require(postgres_reachable(demo_dsn()), f"PostgreSQL is unreachable at {demo_dsn()}")
    demo = DemoProcess(0, command=["bash", str(ROOT / "scripts" / "demo.sh")], piped=True)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        demo.start(timeout=300)  # the first run of demo.sh may still install
        assert demo.output.rstrip().splitlines()[-1].strip().startswith(demo.url)  # URL last
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{demo.url}/lab?token={demo.token}", wait_until="domcontentloaded")
        page.locator(".jp-ProdDiscovery-indicator").first.wait_for(timeout=LOAD_TIMEOUT)

        # "Open a notebook and run ...": a new Python notebook from the launcher.
        run_in_new_notebook(page, EXAMPLE)
        output = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").first
        output.wait_for(state="visible", timeout=120_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
            ".some(n => n.textContent.includes('<US_SSN>'))",
            timeout=60_000,
        )
        text = output.inner_text()
        assert "<US_SSN>" in text and "<EMAIL_ADDRESS>" in text  # "come back redacted"
        assert not SSN.search(text) and "@" not in text
        shot(page, "first-hour-redacted")

        # The credentials panel: the kernel's own database login.
        page.locator('li.lm-TabBar-tab[data-id="jp-ProdDiscovery-sidebar"]').click()
        panel = page.locator(".jp-ProdDiscovery-credentials")
        panel.wait_for(state="visible")
        page.locator(".jp-ProdDiscovery-lease").first.wait_for(state="visible", timeout=90_000)
        assert page.locator(".jp-ProdDiscovery-kernel").count() >= 1
        shot(page, "first-hour-credentials")

        # The audit viewer: the demo's user may open it; the chain verifies.
        page.get_by_role("button", name="Open the audit trail").click()
        viewer = page.locator(".jp-ProdDiscovery-audit")
        viewer.wait_for(state="visible")
        viewer.locator('.jp-ProdDiscovery-verify[data-state="verified"]').wait_for(timeout=60_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.jp-ProdDiscovery-auditTable tbody tr').length > 0"
        )
        shot(page, "first-hour-audit")

        # Export from the notebook's toolbar: the trusted service runs every gate (clean_run
        # as the sandbox user, with the profiles of the author's running kernel) and signs.
        page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text=".ipynb").first.click()
        page.locator(".jp-NotebookPanel:visible .jp-ProdDiscovery-exportButton").first.click()
        dialog = page.locator(".jp-ProdDiscovery-exportDialog")
        dialog.wait_for(state="visible")
        for target in ("papermill", "airflow", "dagster", "kubernetes"):
            assert dialog.get_by_role("checkbox", name=target).count() == 1
        assert dialog.get_by_role("textbox", name=re.compile("Parameters")).count() == 1
        started = time.monotonic()
        dialog.get_by_role("button", name="Run gates and export").click()
        result = dialog.locator(".jp-ProdDiscovery-exportResult")
        # The result (or an error) once the job is done; clean_run starts a kernel as the
        # sandbox user on a loaded machine: generous.
        dialog.locator(
            ".jp-ProdDiscovery-exportResult[data-state], .jp-ProdDiscovery-exportResult [role=alert]"
        ).first.wait_for(timeout=EXPORT_TIMEOUT_MS)
        print(f"first hour: export from the dialog took {time.monotonic() - started:.1f} s")
        result.scroll_into_view_if_needed()
        shot(page, "first-hour-export")
        gates = {
            row.get_attribute("data-gate"): (
                row.get_attribute("data-state"),
                row.locator(".jp-ProdDiscovery-gateReason").inner_text(),
            )
            for row in dialog.locator("li.jp-ProdDiscovery-gate").all()
        }
        assert result.get_attribute("data-state") == "exported", (result.inner_text(), gates)
        assert list(gates) == list(GATES), gates
        assert all(state == "passed" for state, _ in gates.values()), gates
        for name, (_, reason) in gates.items():
            print(f"first hour: gate {name}: {reason}")
        signer = result.locator(".jp-ProdDiscovery-result-signer").inner_text()
        assert signer.startswith("the trusted service"), signer
        signature = result.locator(".jp-ProdDiscovery-result-signature")
        assert signature.get_attribute("data-verified") == "true", signature.inner_text()
        verification = result.locator(".jp-ProdDiscovery-result-verification")
        assert verification.get_attribute("data-ok") == "true", verification.inner_text()
        bundle = (
            Path(demo.notebooks) / result.locator(".jp-ProdDiscovery-result-bundle").inner_text()
        )
        dialog.get_by_role("button", name="Close").first.click()

        # Integration's check, outside the browser: the published public key alone.
        public_key = Path(demo.workdir) / EXPORT_PUBLIC_KEY
        verified = subprocess.run(
            [
                *(sys.executable, "-m", "jupyter_prod_discovery.cli", "export", "verify"),
                *(str(bundle), "--public-key", str(public_key)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        tree = demo.tree()
        context.close()

        # Stop as a terminal does: the signal to the pipeline, tee included.
        assert demo.stop(stop, group=True, timeout=120) == 0
        assert demo.tee is not None and demo.tee.returncode == -stop
        assert [p.pid for p in tree if p.is_running() and p.status() != "zombie"] == []
        assert demo.leftover_processes() == []
        assert demo.role_prefix and roles_with_prefix(demo.role_prefix) == []
        log = demo.demo_log()
        assert "stopped: no processes, leases or database roles left" in log
        done = subprocess.run(
            [sys.executable, "-m", "jupyter_prod_discovery.cli", *demo.verify_after_command[2:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0 and "intact" in done.stdout, done.stdout + done.stderr
    except BaseException:
        for open_page in context.pages:  # what the newcomer saw when it failed
            shot(open_page, f"FAILED-first-hour-{signal.Signals(stop).name}")
        raise
    finally:
        context.close()
        demo.cleanup()
