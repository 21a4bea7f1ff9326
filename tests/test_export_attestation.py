"""The bundle's DSSE envelope and in-toto statement, checked by standard tools and by forgeries.

securesystemslib's own DSSE implementation must accept our envelopes (so the format is the
standard one) and refuse tampered ones; ``export verify`` with the pinned public key must refuse
every forgery an author can make without the service's key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from export_helpers import (
    HMAC_KEY,
    ed25519_config,
    export_keys,
    forge,
    make_notebook,
    signing_key,
    statement_fields,
)
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from jupyter_prod_discovery.cli import main
from jupyter_prod_discovery.export.attestation import (
    BundleRefused,
    pinned_public_keys,
    require_verified,
)
from jupyter_prod_discovery.export.exporter import ExportRequest, NotebookExporter
from jupyter_prod_discovery.export.gates import (
    DependenciesLockedGate,
    NoInteractiveGate,
    NoPIIGate,
    NoSecretsGate,
    OutputsStrippedGate,
)
from jupyter_prod_discovery.export.manifest import validate_manifest
from jupyter_prod_discovery.export.signing import Ed25519Signer, HMACSigner
from jupyter_prod_discovery.export.verify import verify_bundle

__all__ = ["export_keys"]

FAST_GATES = [
    OutputsStrippedGate,
    NoPIIGate,
    NoSecretsGate,
    NoInteractiveGate,
    DependenciesLockedGate,
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, export_keys: tuple[Path, Path]) -> Path:
    tmp = tmp_path_factory.mktemp("attest")
    nb = make_notebook(tmp / "job.ipynb", [("result = x + 1\nresult", [])], params="x = 1")
    config = ed25519_config(export_keys, NotebookExporter={"gate_classes": FAST_GATES})
    request = ExportRequest(nb, tmp / "bundle", author="ada", parameters={"x": 2})
    return NotebookExporter(config=config).process(request).bundle


def _sslib_key(public_pem: Path) -> SSlibKey:
    from cryptography.hazmat.primitives import serialization

    from jupyter_prod_discovery.export.attestation import key_id_of_pem

    pem = public_pem.read_text()
    key = serialization.load_pem_public_key(pem.encode())
    return SSlibKey.from_crypto(key, keyid=key_id_of_pem(pem))  # type: ignore[arg-type]


def test_securesystemslib_accepts_envelope(bundle: Path, export_keys: tuple[Path, Path]) -> None:
    envelope = Envelope.from_dict(json.loads((bundle / "signature.json").read_text()))
    key = _sslib_key(export_keys[1])
    assert list(envelope.verify([key], 1)) == [key.keyid]
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert envelope.payload == (bundle / "manifest.json").read_bytes()
    validate_manifest(statement)


def test_securesystemslib_refuses_tampered_envelope(
    bundle: Path, export_keys: tuple[Path, Path]
) -> None:
    data = json.loads((bundle / "signature.json").read_text())
    statement = json.loads(base64.b64decode(data["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    data["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(data).verify([_sslib_key(export_keys[1])], 1)


def test_statement_records_provenance(bundle: Path) -> None:
    fields = statement_fields(bundle)
    assert fields["author"] == "ada"
    assert fields["parameters"] == {"x": 2}
    assert fields["targets"] == ["papermill"]
    assert [g["name"] for g in fields["gates"]] == [g.name for g in FAST_GATES]
    assert set(fields["files"]) == {"job.ipynb", "job.py", "requirements.txt", "run.py"}
    statement = json.loads((bundle / "manifest.json").read_text())
    builder = statement["predicate"]["runDetails"]["builder"]["id"]
    assert builder == "https://jupyter-prod-discovery.readthedocs.io/exporter"


def test_verify_accepts_untouched_bundle(bundle: Path, export_keys: tuple[Path, Path]) -> None:
    assert verify_bundle(bundle, [export_keys[1].read_text()]) == []
    statement = require_verified(bundle, [export_keys[1].read_text()])
    assert statement["subject"]


def _edited_notebook(bundle: Path) -> dict[str, str]:
    text = (
        (bundle / "job.ipynb").read_text().replace("result = x + 1", "import os; os.system('id')")
    )
    return {"job.ipynb": text}


def test_verify_refuses_file_edited_after_signing(
    bundle: Path, export_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(bundle, copy)
    (copy / "job.ipynb").write_text(_edited_notebook(bundle)["job.ipynb"])
    assert verify_bundle(copy, [export_keys[1].read_text()]) == ["changed file: job.ipynb"]


@pytest.mark.parametrize("forger", ["own-ed25519-key", "hmac-key"])
def test_verify_refuses_bundle_resigned_with_reachable_key(
    forger: str, bundle: Path, export_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The author edits the notebook and re-signs with a key they hold: refused."""
    signer: Any
    if forger == "hmac-key":
        signer = HMACSigner(keys=[HMAC_KEY])
    else:
        signer = Ed25519Signer(key_file=str(signing_key(tmp_path, "mallory")[0]))
    forged = forge(bundle, tmp_path / "forged", signer, _edited_notebook(bundle))
    problems = verify_bundle(forged, [export_keys[1].read_text()])
    assert len(problems) == 1
    assert problems[0].startswith("bad signature: the envelope is not signed by a pinned key")


def _gate_failed(statement: dict[str, Any]) -> None:
    gates = statement["predicate"]["buildDefinition"]["internalParameters"]["gates"]
    gates[1].update(passed=False, reason="PII found: US_SSN in cell 1 output 1")


def test_verify_refuses_statement_with_failed_gate(
    bundle: Path, export_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Even signed by the real key, a statement whose gate failed does not verify."""
    real = Ed25519Signer(key_file=str(export_keys[0]))
    forged = forge(bundle, tmp_path / "failed", real, statement_edit=_gate_failed)
    assert verify_bundle(forged, [export_keys[1].read_text()]) == [
        "gate no_pii did not pass and was not overridden with a reason"
    ]

    def overridden(statement: dict[str, Any]) -> None:
        _gate_failed(statement)
        gate = statement["predicate"]["buildDefinition"]["internalParameters"]["gates"][1]
        gate.update(overridden=True, override_reason="synthetic test data, reviewed by dpo")

    ok = forge(bundle, tmp_path / "overridden", real, statement_edit=overridden)
    assert verify_bundle(ok, [export_keys[1].read_text()]) == []

    def no_reason(statement: dict[str, Any]) -> None:
        overridden(statement)
        gates = statement["predicate"]["buildDefinition"]["internalParameters"]["gates"]
        gates[1]["override_reason"] = " "

    bad = forge(bundle, tmp_path / "no-reason", real, statement_edit=no_reason)
    assert verify_bundle(bad, [export_keys[1].read_text()]) == [
        "gate no_pii did not pass and was not overridden with a reason"
    ]


def test_verify_refuses_required_gate_missing(bundle: Path, export_keys: tuple[Path, Path]) -> None:
    problems = verify_bundle(bundle, [export_keys[1].read_text()], ["clean_run"])
    assert problems == ["required gate clean_run is not recorded"]


def test_pinned_keys_come_from_environment_only(
    bundle: Path, export_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(BundleRefused, match="no pinned public key"):
        pinned_public_keys({})
    with pytest.raises(BundleRefused, match="cannot read the pinned public key"):
        pinned_public_keys({"PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE": str(tmp_path / "none")})
    pem = export_keys[1].read_text()
    other = signing_key(tmp_path, "rotated")[1].read_text()
    assert pinned_public_keys({"PROD_DISCOVERY_EXPORT_PUBLIC_KEY": other + pem}) == [other, pem]
    env = {"PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE": str(export_keys[1])}
    assert pinned_public_keys(env) == [pem]


def test_cli_verify_with_service_published_key(
    bundle: Path,
    export_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--service URL: the key the service publishes (as `audit public-key` reads it)."""
    from jupyter_prod_discovery.service import client

    published = {"public_key_pem": export_keys[1].read_text(), "key_id": "x", "algorithm": "x"}
    monkeypatch.setattr(client.ServiceClient, "public_key", lambda self: published)
    assert main(["export", "verify", str(bundle), "--service", "http://127.0.0.1:1/"]) == 0
    out = capsys.readouterr().out
    assert "exported by ada" in out and "gates: outputs_stripped, no_pii" in out
    assert "git: none recorded" in out and "data sources (0, from none):" in out


def test_describe_origin_says_whose_reading_each_part_is() -> None:
    """`export verify` output: the exporter's own git reading, the server's claim, the sources."""
    from jupyter_prod_discovery.export.cli import describe_origin

    own = {
        "git": {"commit": "c" * 40, "path": "nb.ipynb", "ref": "refs/heads/main"},
        "session": {"source": "audit", "data_sources": [{"kind": "file", "target": "/d.csv"}]},
    }
    assert describe_origin(own) == [
        f"git: nb.ipynb @ {'c' * 40} (refs/heads/main, not as committed; read by the exporter)",
        "data sources (1, from audit):",
        "  file: /d.csv",
    ]
    claimed = {
        "git": None,
        "reported_by_server": {
            "server": "srv",
            "git": {"commit": "d" * 40, "path": "a/nb.ipynb", "dirty": True, "branch": None},
        },
        "session": {
            "source": "service_ledger",
            "data_sources": [
                {
                    "kind": "dbapi",
                    "target": "psycopg postgresql://h:1/db",
                    "count": 2,
                    "seen_in": ["author_session", "clean_run"],
                }
            ],
        },
    }
    assert describe_origin(claimed) == [
        f"git: a/nb.ipynb @ {'d' * 40} (detached, modified since the commit; reported by server "
        "srv, not checked by the signer)",
        "data sources (1, from service_ledger):",
        "  dbapi: psycopg postgresql://h:1/db x2 [author_session, clean_run]",
    ]
    assert describe_origin({"reported_by_server": {"server": "srv", "git": None}})[0] == (
        "git: none (server srv reported no repository)"
    )


def test_cli_verify_refuses_unusable_key(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.pem").write_text("not a key")
    assert main(["export", "verify", str(bundle), "--public-key", str(tmp_path / "junk.pem")]) == 2
    assert "not a PEM public key" in capsys.readouterr().err
    assert main(["export", "verify", str(bundle), "--public-key", str(tmp_path / "no.pem")]) == 2
    assert "cannot read the public key" in capsys.readouterr().err


def test_airflow_gatekeeper_imports_only_verified_dag_files(
    bundle: Path, export_keys: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """might_contain_dag (Integration's copy) before Airflow imports a file; Airflow itself is
    exercised in test_export_targets."""
    from jupyter_prod_discovery.export.attestation import might_contain_dag

    monkeypatch.setenv("PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE", str(export_keys[1]))
    import shutil

    copy = tmp_path / "dags" / "b"
    shutil.copytree(bundle, copy)
    (copy / "airflow").mkdir()
    assert might_contain_dag(str(copy / "run.py")) is False  # not a DAG file of the bundle
    dag = copy / "airflow" / "job_dag.py"
    dag.write_text("# airflow dag\n")  # an extra file: the bundle no longer verifies
    assert might_contain_dag(str(dag)) is False
    monkeypatch.setenv("PROD_DISCOVERY_REQUIRE_SIGNED_DAGS", "1")
    loose = tmp_path / "loose_dag.py"
    loose.write_text("from airflow import DAG\n")
    assert might_contain_dag(str(loose)) is False


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-p256"])
def test_transit_signed_bundle_verifies_offline(
    key_type: str, openbao: Any, tmp_path: Path
) -> None:
    """A bundle signed by Vault transit verifies with transit's public key alone, by our
    verifier and by securesystemslib; Vault is not asked again."""
    from traitlets.config import Config

    from jupyter_prod_discovery.credentials.vault import VaultClient
    from jupyter_prod_discovery.export.signing import TransitSigner

    vault = VaultClient(url=openbao.address, token=openbao.root_token)
    vault.connect()
    vault.client.sys.enable_secrets_engine("transit", path="transit")
    vault.client.secrets.transit.create_key(name="prod-discovery-export", key_type=key_type)
    nb = make_notebook(tmp_path / "job.ipynb", [("result = 1", [])])
    config = Config(
        {"NotebookExporter": {"gate_classes": [OutputsStrippedGate], "signer_class": TransitSigner}}
    )
    result = NotebookExporter(config=config, vault=vault).process(
        ExportRequest(nb, tmp_path / "bundle", author="ada")
    )
    public = tmp_path / "transit.pem"
    public.write_text(TransitSigner(vault=vault).public_key_pem())
    vault.client.sys.disable_secrets_engine("transit")  # offline from here on
    assert verify_bundle(result.bundle, [public.read_text()]) == []
    envelope = Envelope.from_dict(json.loads((result.bundle / "signature.json").read_text()))
    assert len(envelope.verify([_sslib_key(public)], 1)) == 1
    assert result.signature["signer"] == "transit/prod-discovery-export"
    assert result.signature["verified"] is True
