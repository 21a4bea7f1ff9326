"""Server start-up: installed and enabled, fail-closed on Vault, documented options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from jupyter_prod_discovery.demo.openbao import free_even_port

JUPYTER = str(Path(sys.executable).parent / "jupyter")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "JUPYTER_"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        HOME=str(tmp_path),
    )
    env.update(extra)
    return env


def _jupyter(
    tmp_path: Path, *args: str, timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``jupyter *args`` in the isolated environment of ``_env`` (``env`` replaces it)."""
    kwargs.setdefault("env", _env(tmp_path))
    return subprocess.run(
        [JUPYTER, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def _start_server(tmp_path: Path, vault_addr: str, vault_token: str) -> str:
    """Start ``jupyter server`` against that Vault; it must exit (fail closed): its output."""
    env = _env(tmp_path, VAULT_ADDR=vault_addr, VAULT_TOKEN=vault_token)
    argv = ("server", "--no-browser", f"--port={free_even_port()}")
    proc = _jupyter(tmp_path, *argv, env=env, timeout=90, cwd=tmp_path)
    assert proc.returncode != 0
    return proc.stderr + proc.stdout


def test_server_extension_is_enabled_and_ok(tmp_path: Path) -> None:
    out = _jupyter(tmp_path, "server", "extension", "list", check=True)
    text = out.stdout + out.stderr
    assert "jupyter_prod_discovery enabled" in " ".join(text.replace("\x1b[32m", "").split())
    assert "jupyter_prod_discovery 0." in text and "OK" in text


def test_labextension_is_enabled_and_ok(tmp_path: Path) -> None:
    out = _jupyter(tmp_path, "labextension", "list", check=True)
    line = next(
        (ln for ln in (out.stdout + out.stderr).splitlines() if "jupyter-prod-discovery" in ln),
        "",
    )
    assert "enabled" in line and "OK" in line, out.stdout + out.stderr


def test_server_refuses_to_start_when_vault_unreachable(tmp_path: Path) -> None:
    port = free_even_port()
    out = _start_server(tmp_path, f"http://127.0.0.1:{port}", "whatever")
    assert f"Vault at http://127.0.0.1:{port} is unreachable" in out
    assert "whatever" not in out


def test_server_refuses_to_start_with_invalid_token(tmp_path: Path, openbao: object) -> None:
    address = openbao.address  # type: ignore[attr-defined]
    out = _start_server(tmp_path, address, "s.invalid-token-value")
    assert "refused the server's token: invalid" in out
    assert "s.invalid-token-value" not in out


def test_help_all_documents_every_option(tmp_path: Path) -> None:
    out = _jupyter(tmp_path, "server", "--help-all", check=True).stdout
    from jupyter_prod_discovery.extension import ProdDiscoveryApp

    for cls in [ProdDiscoveryApp, *ProdDiscoveryApp.classes]:
        for name, trait in cls.class_traits(config=True).items():
            if name in ("open_browser", "default_url", "handlers", "static_paths"):
                continue
            if trait.this_class is not cls and cls is ProdDiscoveryApp:
                continue  # inherited ExtensionApp options are jupyter_server's to document
            assert f"--{cls.__name__}.{name}" in out, f"{cls.__name__}.{name} missing"
            assert (trait.help or "").strip(), f"{cls.__name__}.{name} has no help"
