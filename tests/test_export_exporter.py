"""Export end to end: gates, bundle, verify, and the engines running the bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hvac
import pytest
from export_helpers import (
    HMAC_KEY,
    ListRecorder,
    ed25519_config,
    export_keys,
    make_notebook,
    result_value,
    statement_fields,
    stream,
)
from traitlets.config import Config

from jupyter_prod_discovery.export.exporter import ExportRefused, ExportRequest, NotebookExporter
from jupyter_prod_discovery.export.signing import SignatureError
from jupyter_prod_discovery.export.verify import verify_bundle

__all__ = ["export_keys"]  # the session fixture, imported for pytest

ALL_TARGETS = ["papermill", "airflow", "dagster", "kubernetes"]
# Values a credential broker would have injected into the author's kernels.
PLANTED = ["s3cr3t-db-password-9f8e7d", "hvs.CAESIplantedVaultToken0123456789"]


def exporter(
    keys: tuple[Path, Path], recorder: ListRecorder | None = None, **kwargs: Any
) -> NotebookExporter:
    config = ed25519_config(keys)
    return NotebookExporter(
        config=config,
        audit=recorder or ListRecorder(),
        secrets_for=lambda user: frozenset(PLANTED) if user == "ada" else frozenset(),
        **kwargs,
    )


def clean_notebook(path: Path) -> Path:
    # Without the credential (the clean-run gate's kernel) the result is -1, with it x * 2: the
    # job must get the credential from Vault at run time, by reference.
    code = (
        "import os\npassword = os.environ.get('PD_WAREHOUSE_PASSWORD', '')\n"
        f"result = x * 2 if len(password) == {len(PLANTED[0])} else -1\nresult"
    )
    return make_notebook(path, [(code, [stream("ok\n")])], params="x = 1")


def session_provider(author: str, path: str) -> dict[str, Any]:
    return {
        "data_sources": [{"kind": "dbapi", "target": "postgresql://warehouse/sales"}],
        "credential_profiles": [
            {"name": "warehouse", "path": "kv/warehouse", "mount": "kv", "policies": ["ro"]}
        ],
    }


def pems(keys: tuple[Path, Path]) -> list[str]:
    return [keys[1].read_text()]


@pytest.fixture(scope="module")
def bundle(
    tmp_path_factory: pytest.TempPathFactory, export_keys: tuple[Path, Path]
) -> tuple[Path, ListRecorder]:
    """One clean export with every target, shared by the read-only tests of this module."""
    import os

    tmp = tmp_path_factory.mktemp("export")
    recorder = ListRecorder()
    os.environ["PD_WAREHOUSE_PASSWORD"] = PLANTED[0]  # the author's kernel env holds a secret
    try:
        result = exporter(export_keys, recorder, session_provider=session_provider).process(
            ExportRequest(
                notebook=clean_notebook(tmp / "clean.ipynb"),
                output=tmp / "bundle",
                author="ada",
                targets=ALL_TARGETS,
                parameters={"x": 21},
            )
        )
    finally:
        del os.environ["PD_WAREHOUSE_PASSWORD"]
    return result.bundle, recorder


def test_export_passes_clean_notebook(bundle: tuple[Path, ListRecorder]) -> None:
    path, recorder = bundle
    manifest = statement_fields(path)
    assert [g["passed"] for g in manifest["gates"]] == [True] * 6
    assert manifest["parameters"] == {"x": 21}
    assert manifest["session"]["credential_profiles"] == ["warehouse"]
    assert manifest["declared_roles"][0] == {
        "profile": "warehouse",
        "path": "kv/warehouse",
        "mount": "kv",
        "policies": ["ro"],
    }
    assert manifest["environment"]["packages"]["papermill"]
    assert set(manifest["files"]) >= {"clean.ipynb", "clean.py", "run.py", "requirements.txt"}
    kinds = [(k, d["action"], d["bundle"] is not None) for k, d, _ in recorder.events]
    assert kinds == [("export", "export", True)]


def test_export_strips_outputs_in_bundle(bundle: tuple[Path, ListRecorder]) -> None:
    nb = json.loads((bundle[0] / "clean.ipynb").read_text())
    assert all(c.get("outputs", []) == [] for c in nb["cells"])
    assert "parameters" in nb["cells"][0]["metadata"]["tags"]


def test_export_bundle_holds_no_secret_value(bundle: tuple[Path, ListRecorder]) -> None:
    for file in bundle[0].rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            for value in PLANTED:
                assert value.encode() not in data, f"{value[:4]}... leaked into {file.name}"


def vault_env(openbao: Any) -> dict[str, str]:
    """The job's environment: Vault address and the job's token, and the credential in Vault."""
    import os

    client = hvac.Client(url=openbao.address, token=openbao.root_token)
    client.sys.enable_secrets_engine("kv", path="kv", options={"version": "1"})
    client.write("kv/warehouse", password=PLANTED[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
    return {**env, "VAULT_ADDR": openbao.address, "VAULT_TOKEN": openbao.root_token}


def test_run_bundle_with_papermill(
    bundle: tuple[Path, ListRecorder], tmp_path: Path, openbao: Any, export_keys: tuple[Path, Path]
) -> None:
    out = tmp_path / "out.ipynb"
    env = {**vault_env(openbao), "PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE": str(export_keys[1])}
    proc = subprocess.run(
        [sys.executable, str(bundle[0] / "run.py"), str(out)],
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert result_value(out) == "42"
    proc = subprocess.run(
        [sys.executable, str(bundle[0] / "run.py"), str(out), "-p", "x", "5"],
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0
    assert result_value(out) == "10"


def test_verify_bundle_accepts_untouched(
    bundle: tuple[Path, ListRecorder], export_keys: tuple[Path, Path]
) -> None:
    assert verify_bundle(bundle[0], pems(export_keys)) == []


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(bundle, dest)
    return dest


def test_verify_bundle_names_every_changed_file(
    bundle: tuple[Path, ListRecorder], tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    files = statement_fields(bundle[0])["files"]
    for rel in files:
        copy = _copy(bundle[0], tmp_path)
        with (copy / rel).open("ab") as f:
            f.write(b"\n# tampered\n")
        problems = verify_bundle(copy, pems(export_keys))
        assert problems == [f"changed file: {rel}"], rel
        shutil.rmtree(copy)


def test_verify_bundle_names_missing_and_extra_file(
    bundle: tuple[Path, ListRecorder], tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    copy = _copy(bundle[0], tmp_path)
    (copy / "run.py").unlink()
    (copy / "k8s" / "extra.yaml").write_text("kind: Secret\n")
    (copy / "evil.py").symlink_to(copy / "clean.py")
    problems = verify_bundle(copy, pems(export_keys))
    assert problems == [
        "symlink not allowed: evil.py",
        "extra file: k8s/extra.yaml",
        "missing file: run.py",
    ]


def test_verify_bundle_refuses_edited_manifest(
    bundle: tuple[Path, ListRecorder], tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    copy = _copy(bundle[0], tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["predicate"]["buildDefinition"]["internalParameters"]["author"] = "mallory"
    from jupyter_prod_discovery.export.manifest import canonical

    (copy / "manifest.json").write_bytes(canonical(manifest))
    problems = verify_bundle(copy, pems(export_keys))
    assert problems == ["changed file: manifest.json (differs from the signed statement)"]


def test_verify_bundle_refuses_other_key(bundle: tuple[Path, ListRecorder], tmp_path: Path) -> None:
    from export_helpers import signing_key

    other = signing_key(tmp_path, "other")
    problems = verify_bundle(bundle[0], pems(other))
    assert len(problems) == 1
    assert problems[0].startswith("bad signature: the envelope is not signed by a pinned key")


def _assert_valid_audit_events(recorder: ListRecorder) -> None:
    """Every export event fits the audit trail's export schema (which forbids extra keys)."""
    import jsonschema
    import yaml

    import jupyter_prod_discovery

    schema_file = Path(jupyter_prod_discovery.__file__).parent / "event_schemas/export/v1.yaml"
    schema = yaml.safe_load(schema_file.read_text())
    for kind, data, _ in recorder.events:
        assert kind == "export"
        jsonschema.validate({"server_id": "test", "user": None, **data}, schema)


REFUSALS = {
    "literal_token": (
        'token = "ghp_1234567890abcdefghijABCDEFGHIJ123456"\nprint(len(token))',
        [],
        "no_secrets",
    ),
    "ssn_in_output": ("print(customer)", [stream("Jane Doe 536-22-1234\n")], "no_pii"),
    "input_call": ("name = input('who? ')", [], "no_interactive"),
    "shell_escape": ("!ls /data", [], "no_interactive"),
    "issued_secret_in_output": ("print(pw)", [stream(f"pw={PLANTED[1]}\n")], "no_secrets"),
    "missing_module": ("import not_a_real_module_xyz", [], "dependencies_locked"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_export_refuses_notebook_naming_gate(
    case: str, tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    source, outputs, gate = REFUSALS[case]
    nb = make_notebook(tmp_path / "nb.ipynb", [(source, outputs)])
    recorder = ListRecorder()
    with pytest.raises(ExportRefused) as err:
        exporter(export_keys, recorder).process(ExportRequest(nb, tmp_path / "out", author="ada"))
    failed = [g.name for g in err.value.gates if not g.passed and not g.skipped]
    assert failed == [gate]
    assert gate in str(err.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["nb.ipynb"]  # no partial bundle left
    assert recorder.events[-1][1]["bundle"] is None
    assert recorder.events[-1][1]["reason"].startswith("refused: ")
    _assert_valid_audit_events(recorder)
    for value in PLANTED:
        assert value not in str(err.value)
        assert value not in json.dumps(recorder.events[-1][1])


def test_export_refuses_failing_notebook_in_clean_run(
    tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    # No parameters cell in the source: the export inserts one, which must not shift numbering.
    nb = make_notebook(tmp_path / "nb.ipynb", [("a = 1", []), ("1 / 0", [])])
    request = ExportRequest(nb, tmp_path / "out", author="ada", parameters={"n": 1})
    with pytest.raises(ExportRefused) as err:
        exporter(export_keys).process(request)
    clean = next(g for g in err.value.gates if g.name == "clean_run")
    assert not clean.passed
    assert clean.reason == "cell 2 raised ZeroDivisionError in a clean kernel"


def test_export_refuses_notebook_without_kernelspec_in_clean_run(
    tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    # papermill stops such a notebook with "No kernel name found in notebook and no override
    # provided"; the gate says what that means and what to do.
    import nbformat

    path = make_notebook(tmp_path / "nb.ipynb", [("result = 1", [])])
    nb = nbformat.read(path, as_version=4)
    del nb.metadata["kernelspec"]
    nbformat.write(nb, path)
    with pytest.raises(ExportRefused) as err:
        exporter(export_keys).process(ExportRequest(path, tmp_path / "out", author="ada"))
    clean = next(g for g in err.value.gates if g.name == "clean_run")
    assert not clean.passed
    assert "names no kernel (metadata.kernelspec.name is missing)" in clean.reason
    assert "No kernel name found" in clean.reason
    assert "select a kernel" in clean.reason


def test_export_refuses_notebook_over_time_limit(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "nb.ipynb", [("import time\ntime.sleep(120)", [])])
    config = Config({"HMACSigner": {"keys": [HMAC_KEY]}, "CleanRunGate": {"timeout": 3.0}})  # dev
    with pytest.raises(ExportRefused) as err:
        NotebookExporter(config=config).process(ExportRequest(nb, tmp_path / "out", author="ada"))
    clean = next(g for g in err.value.gates if g.name == "clean_run")
    assert clean.reason == "did not finish within 3 s"


def test_export_override_with_reason_is_audited(
    tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    nb = make_notebook(tmp_path / "nb.ipynb", [("%load_ext autoreload\nresult = 1", [])])
    recorder = ListRecorder()
    request = ExportRequest(
        nb,
        tmp_path / "out",
        author="ada",
        overrides={"no_interactive": "autoreload is harmless in batch"},
    )
    result = exporter(export_keys, recorder).process(request)
    gate = next(g for g in result.gates if g.name == "no_interactive")
    assert (gate.passed, gate.overridden) == (False, True)
    assert verify_bundle(result.bundle, pems(export_keys)) == []
    assert statement_fields(result.bundle)["overrides"] == {
        "no_interactive": "autoreload is harmless in batch"
    }
    actions = [d["action"] for _, d, _ in recorder.events]
    assert actions == ["override", "export"]
    _assert_valid_audit_events(recorder)
    assert recorder.events[0][1]["reason"] == "autoreload is harmless in batch"


def test_export_override_refused_without_reason(
    tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    nb = make_notebook(tmp_path / "nb.ipynb", [("%load_ext autoreload", [])])
    request = ExportRequest(nb, tmp_path / "out", author="ada", overrides={"no_interactive": " "})
    with pytest.raises(ValueError, match="needs a reason"):
        exporter(export_keys).process(request)


def test_export_override_cannot_pass_secret_gate(
    tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    nb = make_notebook(tmp_path / "nb.ipynb", [(f"pw = {PLANTED[0]!r}", [])])
    request = ExportRequest(
        nb, tmp_path / "out", author="ada", overrides={"no_secrets": "trust me"}
    )
    with pytest.raises(ExportRefused, match="cannot be overridden"):
        exporter(export_keys).process(request)
    assert not (tmp_path / "out").exists()


def test_export_fails_without_signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROD_DISCOVERY_EXPORT_HMAC_KEY", raising=False)
    nb = make_notebook(tmp_path / "nb.ipynb", [("result = 1", [])])
    config = Config({"NotebookExporter": {"gate_classes": []}})
    with pytest.raises(SignatureError, match="no HMAC key"):
        NotebookExporter(config=config).process(ExportRequest(nb, tmp_path / "out", author="ada"))
    assert [p.name for p in tmp_path.iterdir()] == ["nb.ipynb"]


def test_export_refuses_unknown_target_and_nonempty_output(
    tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    nb = make_notebook(tmp_path / "nb.ipynb", [("result = 1", [])])
    with pytest.raises(ValueError, match="unknown target"):
        exporter(export_keys).process(
            ExportRequest(nb, tmp_path / "o", author="ada", targets=["luigi"])
        )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        exporter(export_keys).process(ExportRequest(nb, tmp_path / "full", author="ada"))
