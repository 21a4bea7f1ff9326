"""The crash state file as a journal: what a dead server's file says is what it still held.

The broker's state-file part runs here on a minimal broker (no server, no Vault): the journal's
replay must list exactly the live leases after any sequence of issues and revocations, survive
a cut last line, compact itself, and read the single-snapshot files of earlier versions.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jupyter_prod_discovery.credentials.records import KernelCredentials, Lease
from jupyter_prod_discovery.credentials.statefile import CrashStateFile, read_state


class Broker(CrashStateFile):
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = str(state_dir)
        self.app: Any = SimpleNamespace(vault=SimpleNamespace(url="http://vault:8200"))
        self.log = logging.getLogger("test-statefile")
        self._kernels: dict[str, KernelCredentials] = {}
        self._pending_revoke: list[tuple[str, Lease]] = []

    def issue(self, kernel_id: str, *lease_ids: str) -> None:
        leases = [
            Lease(
                profile="p",
                kind="lease",
                lease_id=i,
                request_id="",
                ttl=60,
                renewable=True,
                expires_at=0.0,
            )
            for i in lease_ids
        ]
        self._kernels[kernel_id] = KernelCredentials(
            kernel_id=kernel_id,
            kernel_name="python3",
            owner="ann",
            profiles=["p"],
            leases=leases,
            secrets={"s3cret-value"},
            user=None,
        )
        self._write_state()

    def revoke(self, kernel_id: str) -> None:
        self._kernels.pop(kernel_id)
        self._write_state()

    def live(self) -> set[str]:
        return {e[2] for e in self._live_entries()}


def listed(path: Path) -> set[str]:
    return {row["id"] for row in read_state(path)["leases"]}


def test_state_journal_replays_to_the_live_leases(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    path = broker.state_path
    assert not path.exists()  # nothing issued, nothing written
    rng = random.Random(7)
    kernels: list[str] = []
    for step in range(400):
        if kernels and rng.random() < 0.45:
            broker.revoke(kernels.pop(rng.randrange(len(kernels))))
        else:
            kid = f"k{step}"
            kernels.append(kid)
            broker.issue(kid, f"database/creds/r/{step}a", f"database/creds/r/{step}b")
        assert listed(path) == broker.live()
    state = read_state(path)
    assert state["pid"] == os.getpid()
    assert state["vault"] == "http://vault:8200"
    assert "s3cret-value" not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # Compacted along the way: far fewer lines than the 400 changes.
    assert len(path.read_bytes().splitlines()) <= len(broker.live()) + 260


def test_state_journal_cut_last_line_is_skipped(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.issue("k1", "lease-1")
    broker.issue("k2", "lease-2")
    path = broker.state_path
    with path.open("ab") as f:
        f.write(b'{"add": [{"kernel_id": "k3", "kind": "lease", "id": "lea')  # a crash mid-append
    assert listed(path) == {"lease-1", "lease-2"}


def test_state_file_of_an_earlier_version_is_read(tmp_path: Path) -> None:
    path = tmp_path / "prod-discovery-credentials-1.json"
    snapshot = {
        "pid": 1,
        "vault": "http://v",
        "leases": [{"kernel_id": "k", "kind": "token", "id": "acc"}],
    }
    path.write_text(json.dumps(snapshot))
    assert read_state(path) == snapshot


def test_state_file_unreadable_head_raises(tmp_path: Path) -> None:
    path = tmp_path / "prod-discovery-credentials-2.jsonl"
    path.write_text("not json\n")
    with pytest.raises(ValueError):
        read_state(path)


def test_state_removed_only_when_nothing_is_left(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.issue("k1", "lease-1")
    broker._remove_state()
    assert broker.state_path.exists()  # a lease is still live: kept for the next start
    broker.revoke("k1")
    broker._remove_state()
    assert not broker.state_path.exists()
    broker.issue("k2", "lease-2")  # written afresh after removal
    assert listed(broker.state_path) == {"lease-2"}


def test_state_unwritable_dir_logs_and_retries(tmp_path: Path, caplog: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    broker = Broker(blocker / "state")  # a directory that cannot be created
    with caplog.at_level(logging.ERROR, logger="test-statefile"):
        broker.issue("k1", "lease-1")
    assert "Cannot write the credential state file" in caplog.text
    broker.state_dir = str(tmp_path / "state")
    broker.issue("k2", "lease-2")  # the next change writes everything live, not just itself
    assert listed(broker.state_path) == {"lease-1", "lease-2"}
