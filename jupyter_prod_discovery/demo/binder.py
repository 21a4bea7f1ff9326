"""Vault for a JupyterLab someone else starts (Binder): ``eval "$(python -m ...demo.binder)"``.

On Binder the platform starts JupyterLab itself (its port, its token), so ``jupyter
prod-discovery demo`` cannot own the server. ``binder/start`` runs this module instead, before
Binder's command: it starts an OpenBao dev server in the background (it lives as long as the
container), seeds it (KV and token only: Binder has no PostgreSQL), writes the non-secret part of
the configuration (credential profiles, environment name) into the user's Jupyter config, and
prints ``export VAULT_ADDR=... VAULT_TOKEN=...`` for the start script to ``eval``, so the token
reaches only the environment of the server, never a file.

Binder has no PostgreSQL for the trusted service's ledger, so this is the same-user topology
(evaluation only: the server says so). Still no root token past seeding: the server gets the
least-privilege token of its profiles (the one the service would hold) and the root token is
revoked (``trusted.hand_over_vault``).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .openbao import DevServer
from .runner import demo_config
from .seed import SeedResult, seed_vault
from .trusted import hand_over_vault

__all__ = ["main", "start_background_vault", "write_user_config"]


def write_user_config(config_dir: Path, config: dict[str, Any]) -> Path:
    """Merge ``config`` into ``config_dir/jupyter_server_config.json``.

    Merged two levels deep, so a user's own settings (other traits, other enabled extensions)
    survive; our values win where both set the same trait.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "jupyter_server_config.json"
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    for section, values in config.items():
        target = current.setdefault(section, {})
        for trait, value in values.items():
            if isinstance(value, dict) and isinstance(target.get(trait), dict):
                target[trait].update(value)
            else:
                target[trait] = value
    path.write_text(json.dumps(current, indent=1) + "\n")
    return path


def start_background_vault(state_dir: Path, dsn: str | None = None) -> tuple[DevServer, SeedResult]:
    """Start and seed an OpenBao dev server that outlives this process (its own session)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    server = DevServer(log_path=str(state_dir / "openbao.log")).start()
    try:
        seed = seed_vault(server.client(), dsn=dsn)
    except Exception:
        server.stop()
        raise
    (state_dir / "openbao.pid").write_text(f"{server.process.pid if server.process else ''}\n")
    return server, seed


def main(argv: list[str] | None = None) -> int:
    """Print the shell exports; diagnostics go to stderr so ``eval`` sees only the exports."""
    home = Path(os.environ.get("HOME", "."))
    config_dir = Path(os.environ.get("JUPYTER_CONFIG_DIR", home / ".jupyter"))
    dsn = os.environ.get("PROD_DISCOVERY_DEMO_DSN") or None  # None on Binder: no database
    server, seed = start_background_vault(home / ".prod-discovery", dsn)
    config = demo_config(seed, Path(os.environ.get("PROD_DISCOVERY_ROOT_DIR", home)))
    profiles = config.get("CredentialBroker", {}).get("profiles", [])
    handover = hand_over_vault(server.client(), profiles)
    config["ServerApp"] = {"jpserver_extensions": {"jupyter_prod_discovery": True}}
    path = write_user_config(config_dir, config)
    for note in seed.notes:
        print(f"[prod-discovery] {note}", file=sys.stderr)
    print(f"[prod-discovery] OpenBao at {server.address}; config in {path}", file=sys.stderr)
    print(f"export VAULT_ADDR={shlex.quote(server.address)}")
    print(f"export VAULT_TOKEN={shlex.quote(handover.service_token)}")
    # Detach: the dev server keeps running after this process exits.
    server.process = None
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
