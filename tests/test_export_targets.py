"""Each target's files are checked by the engine itself: Airflow's DagBag, Dagster in process,
the kubernetes client's models and hera; and each refuses a forged bundle before user code runs
(a marker file that the forged code would create stays absent)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml
from export_helpers import (
    HMAC_KEY,
    ed25519_config,
    export_keys,
    forge,
    make_notebook,
    result_value,
    signing_key,
    with_marker_cell,
)

from jupyter_prod_discovery.export.exporter import ExportRequest, NotebookExporter
from jupyter_prod_discovery.export.gates import (
    DependenciesLockedGate,
    NoInteractiveGate,
    NoPIIGate,
    NoSecretsGate,
    OutputsStrippedGate,
)
from jupyter_prod_discovery.export.signing import Ed25519Signer, HMACSigner
from jupyter_prod_discovery.pytest_plugin import require

__all__ = ["export_keys"]

# Where scripts/install.sh builds it: this checkout's .venv-airflow (scripts/test.sh passes the
# path on, also when PROD_DISCOVERY_AIRFLOW_VENV put it elsewhere).
AIRFLOW_PYTHON = os.environ.get(
    "PROD_DISCOVERY_AIRFLOW_PYTHON",
    str(Path(__file__).resolve().parents[1] / ".venv-airflow" / "bin" / "python"),
)
PASSWORD = "kv-password-for-targets-77"

DAGBAG_PROBE = """
import json, sys
try:
    from airflow.models.dagbag import DagBag
except ImportError:  # newer Airflow
    from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], include_examples=False, safe_mode=True)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d: [t.task_id for t in bag.dags[d].tasks] for d in bag.dag_ids},
}))
"""


def _provider(author: str, path: str) -> dict[str, Any]:
    return {"data_sources": [], "credential_profiles": [{"name": "warehouse", "path": "kv/wh"}]}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, export_keys: tuple[Path, Path]) -> Path:
    """A bundle with every target (the clean-run gate is covered in test_export_exporter)."""
    tmp = tmp_path_factory.mktemp("targets")
    code = (
        "import os\nresult = x + 1 if len(os.environ.get('PD_WAREHOUSE_PASSWORD', '')) == "
        f"{len(PASSWORD)} else -1\nresult"
    )
    nb = make_notebook(tmp / "daily_sales.ipynb", [(code, [])], params="x = 1")
    gates = [
        OutputsStrippedGate,
        NoPIIGate,
        NoSecretsGate,
        NoInteractiveGate,
        DependenciesLockedGate,
    ]
    config = ed25519_config(export_keys, NotebookExporter={"gate_classes": gates})
    exporter = NotebookExporter(config=config, session_provider=_provider)
    request = ExportRequest(
        nb,
        tmp / "bundle",
        author="ada",
        targets=["papermill", "airflow", "dagster", "kubernetes"],
        parameters={"x": 41},
    )
    return exporter.process(request).bundle


def _dagbag(folder: Path, tmp_path: Path, public_key: Path, gatekeeper: bool) -> dict[str, Any]:
    """Load ``folder`` in Airflow's DagBag, the public key pinned in Airflow's environment.

    With ``gatekeeper``, Integration's copy of the verifier (not the bundle's) is installed as
    ``[core] might_contain_dag_callable``, which runs before Airflow imports any DAG file.
    """
    require(
        Path(AIRFLOW_PYTHON).is_file(),
        f"the isolated Airflow venv is missing at {AIRFLOW_PYTHON}: run .ci/airflow-venv.sh",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VAULT_", "PROD"))},
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE": str(public_key),
    }
    env.pop("PYTHONPATH", None)
    if gatekeeper:
        from jupyter_prod_discovery.export import attestation

        plugins = tmp_path / "integration-site"
        plugins.mkdir(exist_ok=True)
        (plugins / "prod_discovery_verify.py").write_text(Path(attestation.__file__).read_text())
        env["PYTHONPATH"] = str(plugins)
        env["AIRFLOW__CORE__MIGHT_CONTAIN_DAG_CALLABLE"] = "prod_discovery_verify.might_contain_dag"
    proc = subprocess.run(
        [AIRFLOW_PYTHON, "-c", DAGBAG_PROBE, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


FORGED_DAG = """
from datetime import datetime
from pathlib import Path

Path({marker!r}).write_text("forged DAG file ran at parse time")
try:
    from airflow.sdk import dag, task
except ImportError:
    from airflow.decorators import dag, task


@dag(dag_id="forged", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def forged():
    @task
    def run():
        return 1

    run()


forged()
"""


def test_airflow_dagbag_loads_signed_bundle_and_refuses_forgeries(
    bundle: Path, tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    """One DagBag over a valid bundle, an edited-and-resigned one, and one whose DAG file a
    forger rewrote (no check, a marker at parse time); then the same forgeries without
    Integration's gatekeeper, to show the marker would be created and the embedded check alone
    refuses the edited bundle."""
    marker = tmp_path / "forged-dag-ran"
    dag_file = next((bundle / "airflow").glob("*_dag.py")).name
    mallory = Ed25519Signer(key_file=str(signing_key(tmp_path, "mallory")[0]))
    folder = tmp_path / "dags"
    folder.mkdir()
    import shutil

    shutil.copytree(bundle, folder / "valid")
    nb_edit = with_marker_cell(bundle / "daily_sales.ipynb", tmp_path / "nb-ran")
    forge(bundle, folder / "edited", mallory, {"daily_sales.ipynb": nb_edit})
    forged_dag = FORGED_DAG.format(marker=str(marker))
    forge(
        bundle,
        folder / "rewritten",
        HMACSigner(keys=[HMAC_KEY]),
        {f"airflow/{dag_file}": forged_dag},
    )

    guarded = _dagbag(folder, tmp_path, export_keys[1], gatekeeper=True)
    assert guarded["dags"] == {"prod_discovery_daily_sales": ["run_notebook"]}
    assert guarded["errors"] == {}
    assert not marker.exists()

    plain = tmp_path / "plain"  # the two forged DAG files, as a DAG folder without the gatekeeper
    plain.mkdir()
    for name in ("edited", "rewritten"):
        (plain / f"{name}_dag.py").symlink_to(folder / name / "airflow" / dag_file)
    unguarded = _dagbag(plain, tmp_path, export_keys[1], gatekeeper=False)
    assert marker.exists()  # the forged file runs when nothing verifies before import
    assert unguarded["dags"] == {"forged": ["run"]}
    [(where, error)] = unguarded["errors"].items()
    assert where.endswith("edited_dag.py")
    assert "not signed by a pinned key" in error
    assert not (tmp_path / "nb-ran").exists()


def test_airflow_dagbag_refuses_without_pinned_key(bundle: Path, tmp_path: Path) -> None:
    report = _dagbag(bundle / "airflow", tmp_path, tmp_path / "missing.pem", gatekeeper=False)
    assert report["dags"] == {}
    assert "cannot read the pinned public key" in next(iter(report["errors"].values()))


def _run_py(bundle: Path, env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(bundle / "run.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PROD")}, **env},
    )


def test_papermill_runner_refuses_forged_bundles_before_user_code(
    bundle: Path, tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    import papermill

    marker = tmp_path / "user-code-ran"
    edit = {"daily_sales.ipynb": with_marker_cell(bundle / "daily_sales.ipynb", marker)}
    pinned = {"PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE": str(export_keys[1])}
    mallory = Ed25519Signer(key_file=str(signing_key(tmp_path, "mallory")[0]))
    real = Ed25519Signer(key_file=str(export_keys[0]))

    def failed_gate(statement: dict[str, Any]) -> None:
        statement["predicate"]["buildDefinition"]["internalParameters"]["gates"][0]["passed"] = (
            False
        )

    cases = {
        "edited": (forge(bundle, tmp_path / "edited", real, {}), "changed file"),
        "own-key": (forge(bundle, tmp_path / "own", mallory, edit), "not signed by a pinned key"),
        "hmac": (forge(bundle, tmp_path / "hmac", HMACSigner(keys=[HMAC_KEY]), edit), "pinned"),
        "gate": (forge(bundle, tmp_path / "gate", real, edit, failed_gate), "did not pass"),
    }
    (cases["edited"][0] / "daily_sales.ipynb").write_text(edit["daily_sales.ipynb"])
    # A module beside run.py that shadows the standard library would run at import time.
    shadow = f"open({str(marker)!r}, 'w').write('shadowing module ran')\n"
    cases["shadow"] = (forge(bundle, tmp_path / "shadow", mallory, {"json.py": shadow}), "pinned")
    (cases["shadow"][0] / "base64.py").write_text(shadow)  # and one added after signing
    for name, (forged, why) in cases.items():
        proc = _run_py(forged, pinned, tmp_path / f"{name}.ipynb")
        assert proc.returncode == 3, (name, proc.stderr[-2000:])
        assert why in proc.stderr, (name, proc.stderr)
        assert not marker.exists(), name
    proc = _run_py(cases["own-key"][0], {}, tmp_path / "nokey.ipynb")  # nothing pinned
    assert proc.returncode == 3
    assert "no pinned public key" in proc.stderr
    assert not marker.exists()
    # Control: the forged notebook does create the marker once anything runs it.
    papermill.execute_notebook(
        str(cases["own-key"][0] / "daily_sales.ipynb"),
        str(tmp_path / "control.ipynb"),
        parameters={"x": 1},
        progress_bar=False,
    )
    assert marker.exists()


def test_execute_dagster_job_in_process(
    bundle: Path,
    tmp_path: Path,
    openbao: Any,
    monkeypatch: pytest.MonkeyPatch,
    export_keys: tuple[Path, Path],
) -> None:
    client = hvac.Client(url=openbao.address, token=openbao.root_token)
    client.sys.enable_secrets_engine("kv", path="kv", options={"version": "1"})
    client.write("kv/wh", password=PASSWORD)
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    monkeypatch.setenv("PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE", str(export_keys[1]))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster-home"))
    (tmp_path / "dagster-home").mkdir()
    spec = importlib.util.spec_from_file_location("pd_dagster_job", bundle / "dagster_job.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out.ipynb"
    config = {"parameters": {"x": 9}, "output": str(out)}
    result = module.notebook_job.execute_in_process(
        run_config={"ops": {"run_notebook": {"config": config}}}
    )
    assert result.success
    assert result.output_for_node("run_notebook") == str(out)
    assert result_value(out) == "10"
    assert "PD_WAREHOUSE_PASSWORD" not in os.environ  # credentials do not outlive the run


def _load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("pd_forged_job", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dagster_job_refuses_forged_bundle_on_load(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, export_keys: tuple[Path, Path]
) -> None:
    monkeypatch.setenv("PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE", str(export_keys[1]))
    mallory = Ed25519Signer(key_file=str(signing_key(tmp_path, "mallory")[0]))
    edit = {"daily_sales.ipynb": with_marker_cell(bundle / "daily_sales.ipynb", tmp_path / "m")}
    forged = forge(bundle, tmp_path / "forged", mallory, edit)
    with pytest.raises(Exception, match="not signed by a pinned key") as err:
        _load_module(forged / "dagster_job.py")
    assert type(err.value).__name__ == "BundleRefused"
    monkeypatch.delenv("PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE")
    with pytest.raises(Exception, match="no pinned public key"):
        _load_module(bundle / "dagster_job.py")


def test_load_kubernetes_job_into_client_model(bundle: Path) -> None:
    from kubernetes.client import ApiClient, V1Job

    data = yaml.safe_load((bundle / "k8s" / "job.yaml").read_text())
    job = ApiClient()._ApiClient__deserialize(data, "V1Job")  # type: ignore[attr-defined]
    assert isinstance(job, V1Job)
    container = job.spec.template.spec.containers[0]
    key_env = "PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE"
    assert {e.name for e in container.env} == {"VAULT_ADDR", "VAULT_ROLE", key_env}
    [init] = job.spec.template.spec.init_containers
    assert init.command == ["python", "-P", "/bundle/verify_bundle.py", "/bundle"]
    assert [e.name for e in init.env] == [key_env]
    [volume] = job.spec.template.spec.volumes
    assert volume.config_map.name == "prod-discovery-export-public-key"
    assert job.spec.template.spec.service_account_name == "prod-discovery-daily-sales"
    refs = json.loads(job.metadata.annotations["prod-discovery/vault-references"])
    assert refs == [{"profile": "warehouse", "path": "kv/wh"}]


def test_load_argo_workflow_into_hera(bundle: Path) -> None:
    from hera.workflows import Workflow

    workflow = Workflow.from_yaml((bundle / "k8s" / "argo-workflow.yaml").read_text())
    assert workflow.entrypoint == "run-notebook"
    model = workflow.build()
    container = model.spec.templates[0].container
    assert container.command == ["python", "-P", "/bundle/run.py", "/tmp/output.ipynb"]
    assert {e.name for e in container.env} == {
        "VAULT_ADDR",
        "VAULT_ROLE",
        "PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE",
    }
    [init] = model.spec.templates[0].init_containers
    assert init.command == ["python", "-P", "/bundle/verify_bundle.py", "/bundle"]


def test_kubernetes_init_step_verifies_bundle(
    bundle: Path, tmp_path: Path, export_keys: tuple[Path, Path]
) -> None:
    """The init step's command, run as the pod would (key mounted), accepts and refuses."""
    env = {"PATH": os.environ["PATH"], "PROD_DISCOVERY_EXPORT_PUBLIC_KEY_FILE": str(export_keys[1])}
    verify = [sys.executable, "-P", str(bundle / "verify_bundle.py")]
    ok = subprocess.run([*verify, str(bundle)], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    forged = forge(bundle, tmp_path / "forged", HMACSigner(keys=[HMAC_KEY]))
    bad = subprocess.run([*verify, str(forged)], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert "REFUSED: bad signature" in bad.stderr
