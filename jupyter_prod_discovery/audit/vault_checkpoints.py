"""Checkpoints in a Vault/OpenBao KV v2 secret: the second place for deployments that have Vault.

The writer overwrites one KV v2 secret with the newest checkpoint (KV v2 keeps earlier versions);
verification reads the newest. A writer that can also delete the secret's versions could hide a
truncation, so give the server's Vault policy ``create``/``update`` on the path and keep
``delete``/``destroy`` for compliance.
"""

from __future__ import annotations

from typing import Any

__all__ = ["read_checkpoint", "split", "write_checkpoint"]


def split(spec: str) -> tuple[str, str]:
    """'secret/prod-discovery/audit' -> ('secret', 'prod-discovery/audit')."""
    mount, _, path = spec.strip("/").partition("/")
    if not mount or not path:
        raise ValueError(f"a KV v2 path is '<mount>/<path>', got {spec!r}")
    return mount, path


def write_checkpoint(client: Any, spec: str, checkpoint: dict[str, Any]) -> None:
    mount, path = split(spec)
    client.secrets.kv.v2.create_or_update_secret(
        path=path, secret={k: str(v) for k, v in checkpoint.items()}, mount_point=mount
    )


def read_checkpoint(client: Any, spec: str) -> list[dict[str, Any]]:
    """The newest checkpoint (empty when none was written yet)."""
    import hvac.exceptions

    mount, path = split(spec)
    try:
        got = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        return []
    data = dict(got["data"]["data"])
    data["seq"] = int(data.get("seq", 0))
    return [data]
