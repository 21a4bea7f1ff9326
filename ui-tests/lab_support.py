"""Helpers of the browser tests: a real JupyterLab with the extension on a real OpenBao.

Debian's Chromium only, never a downloaded browser (no ``playwright install``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from jupyter_prod_discovery.demo.openbao import DevServer
from jupyter_prod_discovery.demo.runner import demo_config, lab_command
from jupyter_prod_discovery.demo.seed import seed_vault

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
AUDIT_KEY = "ui-tests-audit-key-0123456789"
TRANSIT_KEY = "prod-discovery-export"
#: The labextension as ``jlpm build`` writes it in this checkout (package.json "outputDir").
CHECKOUT_LABEXTENSION = (
    Path(__file__).resolve().parent.parent / "jupyter_prod_discovery/labextension"
)
# Generous: JupyterLab's first load on a busy 2-core CI machine is slow.
LOAD_TIMEOUT = 120_000


def demo_dsn() -> str:
    """The PostgreSQL superuser DSN the demo seeds its sample database with."""
    from jupyter_prod_discovery.demo.runner import DEFAULT_DSN

    return os.environ.get("PROD_DISCOVERY_DEMO_DSN", DEFAULT_DSN)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The RTC and execution extensions the test extras install (tests/test_paths_*.py), off.
PLAIN_SERVER = {
    "jupyter_server_documents": False,
    "jupyter_server_ydoc": False,
    "jupyter_server_nbmodel": False,
    "jupyter_mcp_server": False,
}
PLAIN_LAB = {
    "@datalayer/jupyter-server-nbmodel": False,
    "@jupyter-ai-contrib/server-documents": False,
    "@jupyter/docprovider-extension": False,
    "@jupyter/collaboration-extension": False,
}


@dataclass
class LabOptions:
    """How a module's JupyterLab is configured."""

    compliance: bool = True
    vault: bool = True
    notebooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    short_lease: bool = False
    #: Server extensions (c.ServerApp.jpserver_extensions) and lab extensions
    #: (labconfig/page_config.json) switched on or off explicitly: which RTC/execution stack
    #: runs. By default plain JupyterLab, whatever the test extras installed.
    server_extensions: dict[str, bool] = field(default_factory=lambda: dict(PLAIN_SERVER))
    labextensions: dict[str, bool] = field(default_factory=lambda: dict(PLAIN_LAB))
    #: More c.ProdDiscoveryApp settings (e.g. terminals).
    app_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lab:
    """A running JupyterLab: its URL, token and folders."""

    url: str
    token: str
    root: Path
    audit_log: Path
    proc: subprocess.Popen[bytes]
    log: Path
    bao: DevServer | None = None

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, f"{self.url}/{path}", headers=headers, timeout=30, **kwargs)


def notebook(*sources: str) -> dict[str, Any]:
    """An nbformat 4 notebook with one code cell per source and no outputs."""
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell-{i}",
                "source": src,
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
            for i, src in enumerate(sources)
        ],
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM JupyterLab (its kernels stop and leases are revoked), then kill the group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@contextlib.contextmanager
def run_lab(options: LabOptions) -> Iterator[Lab]:
    """Start OpenBao (when asked), seed it, and run JupyterLab on it until the block ends."""
    work = Path(tempfile.mkdtemp(prefix="pd-ui-"))
    root = work / "notebooks"
    root.mkdir()
    for name, nb in options.notebooks.items():
        (root / name).write_text(json.dumps(nb))
    bao = DevServer(log_path=str(work / "openbao.log")) if options.vault else None
    proc: subprocess.Popen[bytes] | None = None
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        config: dict[str, Any] = {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_prod_discovery": True},
                "root_dir": str(root),
                "open_browser": False,
                "allow_unauthenticated_access": False,
            },
            "ProdDiscoveryApp": {"environment_name": "Prod Discovery (ui-tests)"},
        }
        if bao is not None:
            bao.start()
            seed = seed_vault(bao.client(), dsn=None)
            config = demo_config(seed, root)
            # Export signs manifests with OpenBao transit: the seed created the ed25519 key.
            assert (seed.export_key_mount, seed.export_key_name) == ("transit", TRANSIT_KEY)
            config["NotebookExporter"] = {
                "signer_class": "jupyter_prod_discovery.export.signing.TransitSigner"
            }
            if options.short_lease:
                # A lease inside the UI's expiry warning (120 s by default) from the start.
                token = next(
                    p for p in config["CredentialBroker"]["profiles"] if p["type"] == "token"
                )
                short = {**token, "name": "short-token", "ttl": "90s"}
                short["env"] = {"SHORT_VAULT_TOKEN": "{token}"}
                short.pop("description", None)
                config["CredentialBroker"]["profiles"].append(short)
            config["ProdDiscoveryApp"] = {"environment_name": "Prod Discovery (ui-tests)"}
            env.update({"VAULT_ADDR": bao.address, "VAULT_TOKEN": bao.root_token})
        audit_log = work / "audit" / "audit.jsonl"
        config["AuditTrail"] = {
            "mac_key": AUDIT_KEY,
            "spool_dir": str(work / "spool"),
            "compliance_users": ["*"] if options.compliance else [],
        }
        config["JSONLSink"] = {"path": str(audit_log)}
        # window.jupyterapp lets the tests run commands as a user would from the palette.
        config["LabApp"] = {
            "workspaces_dir": str(work / "workspaces"),
            "user_settings_dir": str(work / "settings"),
            "expose_app_in_browser": True,
        }
        # The checkout's own build first, when there is one: the tests drive the TypeScript and
        # CSS of this checkout, not whatever build the venv installed (another clone's, older).
        if (CHECKOUT_LABEXTENSION / "package.json").is_file():
            own = work / "labextensions"
            own.mkdir()
            (own / "jupyter-prod-discovery").symlink_to(CHECKOUT_LABEXTENSION)
            config["LabApp"]["extra_labextensions_path"] = [str(own)]
        # No "Jupyter news?" toast over the notifications under test.
        news = work / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)
        (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        config["ServerApp"]["jpserver_extensions"].update(options.server_extensions)
        config["ProdDiscoveryApp"].update(options.app_config)
        (work / "config" / "labconfig").mkdir(parents=True)
        (work / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        disabled = {name: not on for name, on in options.labextensions.items()}
        (work / "config" / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": disabled})
        )
        token = secrets.token_hex(24)
        port = free_port()
        env.update(
            {
                "JUPYTER_CONFIG_DIR": str(work / "config"),
                # This lab's config above the venv's (which turns the RTC/execution extensions
                # off, scripts/install.sh): in a venv jupyter prefers the venv's by default.
                "JUPYTER_PREFER_ENV_PATH": "0",
                "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
                "JUPYTER_DATA_DIR": str(work / "data"),
                "JUPYTER_TOKEN": token,
                "PYTHONUNBUFFERED": "1",
            }
        )
        cmd = lab_command(port)
        log = work / "lab.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        lab = Lab(url, token, root, audit_log, proc, log, bao)
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if lab.api("GET", "api/status").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not serve:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield lab
    finally:
        if proc is not None:
            _stop(proc)
        if bao is not None:
            bao.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_in_new_notebook(page: Any, code: str) -> None:
    """Open a new Python notebook from the launcher, wait until its kernel is idle (its
    credentials are issued before that), and run ``code`` in its first cell."""
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    editor = page.locator(".jp-NotebookPanel:visible .jp-Cell .cm-content").first
    editor.wait_for(state="visible")
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$")).first.wait_for(
        timeout=120_000
    )
    editor.click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


def shot(page: Any, name: str) -> None:
    """Save a screenshot under artifacts/ (git-ignored) for the CI artefacts."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


#: Why an element is not wholly in sight: outside the window, or cut by an ancestor that scrolls
#: or clips (a dialog body); [] when the user sees all of it without scrolling.
_OUT_OF_VIEW = """
el => {
  const r = el.getBoundingClientRect();
  const why = [];
  if (r.height === 0 || r.width === 0) why.push('not laid out');
  if (r.top < 0 || r.bottom > window.innerHeight + 1) {
    why.push(`outside the window: ${JSON.stringify([r.top, r.bottom, window.innerHeight])}`);
  }
  // The page itself is the window (checked above); JupyterLab's body has no height.
  for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
    if (getComputedStyle(a).overflowY === 'visible') continue;
    const b = a.getBoundingClientRect();
    if (r.top < b.top - 1 || r.bottom > b.bottom + 1) {
      why.push(`cut by ${a.tagName.toLowerCase()}.${a.className}: ${JSON.stringify([r.top, r.bottom, b.top, b.bottom])}`);
    }
  }
  return why;
}
"""


def out_of_view(locator: Any) -> list[str]:
    """[] when the element is entirely visible where it is (nothing scrolled for it)."""
    return list(locator.evaluate(_OUT_OF_VIEW))


def ttl_seconds(text: str) -> int:
    """'4m 05s' / '1h 02m' / '12s' -> seconds."""
    total = 0
    for value, unit in re.findall(r"(\d+)([hms])", text):
        total += int(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total
