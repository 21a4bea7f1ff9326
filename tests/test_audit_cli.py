"""``jupyter prod-discovery audit verify|query|report|init-db`` on real logs and a real database."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from audit_support import KEY, writer_role
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from traitlets.config import Config

from jupyter_prod_discovery.audit.sinks import JSONLSink, PostgresSink
from jupyter_prod_discovery.audit.trail import AuditTrail
from jupyter_prod_discovery.cli import main


def fill(tmp_path: Path, **sections: Any) -> AuditTrail:
    config = {
        "AuditTrail": {
            "mac_key": KEY,
            "spool_dir": str(tmp_path / "spool"),
            "checkpoint_path": str(tmp_path / "cp" / "cp.jsonl"),
            **sections.pop("AuditTrail", {}),
        },
        "JSONLSink": {"path": str(tmp_path / "log" / "audit.jsonl")},
        **sections,
    }
    trail = AuditTrail(config=Config(config))
    trail.start()
    trail.record("contents", {"operation": "get", "path": "a.csv", "status": "ok"}, user="ann")
    trail.record("kernel", {"action": "start", "kernel_id": "k1"}, user="ann")
    trail.record("credential", {"action": "issue", "kernel_id": "k1", "lease_id": "l1"}, user="ann")
    trail.record(
        "pii", {"source": "live", "kernel_id": "k1", "entities": {"EMAIL_ADDRESS": 2}}, user="ann"
    )
    trail.record("contents", {"operation": "save", "path": "b.csv", "status": "ok"}, user="bob")
    assert trail.flush()
    trail.stop()
    return trail


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    return str(path)


def verify_args(tmp_path: Path, key_file: str) -> list[str]:
    log, cp = tmp_path / "log" / "audit.jsonl", tmp_path / "cp" / "cp.jsonl"
    return ["audit", "verify", "--log", str(log), "--checkpoints", str(cp), "--key-file", key_file]


def test_verify_cli_intact(tmp_path: Path, key_file: str, capsys: Any) -> None:
    fill(tmp_path)
    assert main(verify_args(tmp_path, key_file)) == 0
    assert "intact: 5 records" in capsys.readouterr().out


def test_verify_cli_reports_first_broken_record(tmp_path: Path, key_file: str, capsys: Any) -> None:
    fill(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    lines = log.read_text().splitlines()
    lines[2] = lines[2].replace('"l1"', '"l2"')
    log.write_text("\n".join(lines) + "\n")
    assert main(verify_args(tmp_path, key_file)) == 1
    assert "record #3 (seq 3): modified" in capsys.readouterr().out


def test_verify_cli_reports_truncation(tmp_path: Path, key_file: str, capsys: Any) -> None:
    fill(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    log.write_text("\n".join(log.read_text().splitlines()[:3]) + "\n")
    assert main(verify_args(tmp_path, key_file)) == 1
    assert "truncated" in capsys.readouterr().out


def test_verify_cli_without_key(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("PROD_DISCOVERY_AUDIT_KEY", raising=False)
    fill(tmp_path)
    assert main(["audit", "verify", "--log", str(tmp_path / "log" / "audit.jsonl")]) == 2
    assert "no MAC key" in capsys.readouterr().err


def test_verify_cli_missing_log(tmp_path: Path, key_file: str, capsys: Any) -> None:
    assert (
        main(["audit", "verify", "--log", str(tmp_path / "x.jsonl"), "--key-file", key_file]) == 2
    )
    assert "no audit log" in capsys.readouterr().err


def test_query_cli_formats_and_filters(tmp_path: Path, capsys: Any) -> None:
    fill(tmp_path)
    log = str(tmp_path / "log" / "audit.jsonl")
    assert main(["audit", "query", "--log", log, "--user", "ann", "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in got] == ["contents", "kernel", "credential", "pii"]
    assert main(["audit", "query", "--log", log, "--type", "contents", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["user"], r["path"]) for r in rows] == [("ann", "a.csv"), ("bob", "b.csv")]
    assert main(["audit", "query", "--log", log, "--kernel", "k1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["seq", "ts", "kind", "user", "what", "path", "kernel_id", "status"]
    assert len(table) == 4
    assert main(["audit", "query", "--log", log, "--since", "2999-01-01"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["audit", "query", "--log", log, "--until", "not a date"]) == 2


def test_report_cli_html(tmp_path: Path, key_file: str, capsys: Any) -> None:
    fill(tmp_path)
    out = tmp_path / "report.html"
    log = str(tmp_path / "log" / "audit.jsonl")
    args = ["audit", "report", "--log", log, "--key-file", key_file, "--format", "html"]
    assert main([*args, "--checkpoints", str(tmp_path / "cp" / "cp.jsonl"), "-o", str(out)]) == 0
    text = out.read_text()
    assert "intact: 5 records" in text
    assert "<h2>User ann</h2>" in text
    assert "<h3>Session k1</h3>" in text
    assert "PII finding" in text
    assert "EMAIL_ADDRESS:2" in text
    assert "credential" in text


def test_init_db_cli_then_verify_dsn(
    tmp_path: Path, key_file: str, postgres_database: str, capsys: Any, monkeypatch: Any
) -> None:
    role = "pd_cli_writer_" + uuid.uuid4().hex[:8]
    monkeypatch.setenv("PROD_DISCOVERY_AUDIT_WRITER_PASSWORD", "pw-123456")
    assert main(["audit", "init-db", "--dsn", postgres_database, "--writer-role", role]) == 0
    params = conninfo_to_dict(postgres_database)
    params.update(user=role, password="pw-123456")
    dsn = make_conninfo(**params)  # type: ignore[arg-type]
    try:
        trail = fill(
            tmp_path,
            AuditTrail={"sink_classes": [PostgresSink, JSONLSink]},
            PostgresSink={"dsn": dsn, "create_tables": False},
        )
        assert trail.sinks[0].read_checkpoints()
        trail.sinks[0].close()
        args = ["audit", "verify", "--dsn", dsn, "--key-file", key_file]
        assert main(args) == 0
        assert "intact: 5 records" in capsys.readouterr().out
        # A superuser rewrites history (after disabling the trigger): detected.
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute("ALTER TABLE prod_discovery_audit DISABLE TRIGGER USER")
            conn.execute("DELETE FROM prod_discovery_audit WHERE seq = 5")
        assert main(args) == 1
        assert "truncated" in capsys.readouterr().out
        log = str(tmp_path / "log" / "audit.jsonl")
        assert (
            main(["audit", "verify", "--log", log, "--checkpoint-dsn", dsn, "--key-file", key_file])
            == 0
        )
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_query_cli_dsn(tmp_path: Path, postgres_database: str, capsys: Any) -> None:
    with writer_role(postgres_database) as dsn:
        trail = fill(
            tmp_path,
            AuditTrail={"sink_classes": [PostgresSink]},
            PostgresSink={"dsn": dsn, "create_tables": False},
        )
        trail.sinks[0].close()
        assert main(["audit", "query", "--dsn", dsn, "--user", "bob", "--format", "json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert [r["data"]["path"] for r in got] == ["b.csv"]


def test_verify_cli_vault_checkpoint(
    tmp_path: Path, key_file: str, openbao: Any, capsys: Any, monkeypatch: Any
) -> None:
    import hvac

    client = hvac.Client(url=openbao.address, token=openbao.root_token)
    trail = AuditTrail(
        config=Config(
            {
                "AuditTrail": {
                    "mac_key": KEY,
                    "spool_dir": str(tmp_path / "spool"),
                    "checkpoint_vault_path": "secret/prod-discovery/audit-checkpoint",
                },
                "JSONLSink": {"path": str(tmp_path / "log" / "audit.jsonl")},
            }
        ),
        vault_client=lambda: client,
    )
    trail.start()
    for i in range(4):
        trail.record("kernel", {"action": "start", "kernel_id": f"k{i}"}, user="ann")
    assert trail.flush()
    trail.stop()
    assert trail.checkpoints()[0]["seq"] == 4
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    log = tmp_path / "log" / "audit.jsonl"
    args = ["audit", "verify", "--log", str(log), "--key-file", key_file]
    args += ["--checkpoint-vault", "secret/prod-discovery/audit-checkpoint"]
    assert main(args) == 0
    assert "1 checkpoints matched" in capsys.readouterr().out
    log.write_text("\n".join(log.read_text().splitlines()[:2]) + "\n")
    assert main(args) == 1
    assert "truncated" in capsys.readouterr().out
    monkeypatch.setenv("VAULT_TOKEN", "not-a-token")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot read the checkpoint from Vault" in err
    assert openbao.root_token not in err


OTHER_KEY = "another-servers-key-9876543210"


def _other_key_file(tmp_path: Path) -> str:
    path = tmp_path / "other.key"
    path.write_text(OTHER_KEY + "\n")
    return str(path)


def test_verify_cli_two_chains_with_different_keys_is_not_tampering(
    tmp_path: Path, key_file: str, capsys: Any
) -> None:
    # A file of two chains, each sealed with its own key (two servers' logs put together).
    first, second = tmp_path / "a", tmp_path / "b"
    fill(first)
    fill(second, AuditTrail={"mac_key": OTHER_KEY})
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        (first / "log" / "audit.jsonl").read_text() + (second / "log" / "audit.jsonl").read_text()
    )
    assert main(["audit", "verify", "--log", str(mixed), "--key-file", key_file]) == 3
    out = capsys.readouterr().out
    assert "DIFFERENT CHAIN OR KEY" in out
    assert "record #6 (seq 1): other chain" in out
    assert "5 records before it verified" in out
    assert "BROKEN" not in out and "modified" not in out


def test_verify_cli_key_changed_at_server_restart_is_not_tampering(
    tmp_path: Path, key_file: str, capsys: Any
) -> None:
    # What servers did before they set another key's chain aside: a restarted server with
    # another key went on with the chain (seq and prev) under its own key.
    from jupyter_prod_discovery.audit.chain import Chain

    fill(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    last = json.loads(log.read_text().splitlines()[-1])
    chain = Chain(OTHER_KEY.encode(), last["seq"], last["hash"])
    more = [
        chain.seal({"kind": "kernel", "data": {"server_id": "restarted:2", "n": n}})
        for n in range(3)
    ]
    with log.open("a") as f:
        f.write("\n".join(more) + "\n")
    assert main(["audit", "verify", "--log", str(log), "--key-file", key_file]) == 3
    out = capsys.readouterr().out
    assert "record #6 (seq 6): other key" in out
    assert "BROKEN" not in out
    # The same rewrite inside one server process's records is tampering.
    lines = log.read_text().splitlines()[:5]
    forged = Chain(OTHER_KEY.encode(), 3, json.loads(lines[2])["hash"])
    tail = [json.loads(x) for x in lines[3:]]
    lines[3:] = [
        forged.seal({k: v for k, v in rec.items() if k not in ("seq", "prev")}) for rec in tail
    ]
    log.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify", "--log", str(log), "--key-file", key_file]) == 1
    assert "record #4 (seq 4): modified" in capsys.readouterr().out


def test_verify_cli_with_the_wrong_key_says_other_key(tmp_path: Path, capsys: Any) -> None:
    fill(tmp_path)
    log = str(tmp_path / "log" / "audit.jsonl")
    assert main(["audit", "verify", "--log", log, "--key-file", _other_key_file(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "record #1 (seq 1): other key: every record form a consistent chain" in out


def test_verify_cli_on_a_file_that_is_not_an_audit_log(
    tmp_path: Path, key_file: str, capsys: Any
) -> None:
    for name, text in (("notes.txt", "hello\nworld\n"), ("one.json", '{"a": 1}\n')):
        path = tmp_path / name
        path.write_text(text)
        assert main(["audit", "verify", "--log", str(path), "--key-file", key_file]) == 2
        err = capsys.readouterr().err
        assert f"{path} is not an audit log" in err
        assert "truncated" not in err


def test_verify_cli_missing_log_said_before_the_key(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("PROD_DISCOVERY_AUDIT_KEY", raising=False)
    assert main(["audit", "verify", "--log", str(tmp_path / "nowhere.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no audit log at" in err
    assert "MAC key" not in err


def test_verify_cli_unreadable_key_file_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    fill(tmp_path)
    log = str(tmp_path / "log" / "audit.jsonl")
    assert main(["audit", "verify", "--log", log, "--key-file", str(tmp_path / "no.key")]) == 2
    assert "cannot read the key file" in capsys.readouterr().err
