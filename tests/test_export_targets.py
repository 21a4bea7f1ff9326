"""Each target's files are checked by the engine itself: Airflow's DagBag, Dagster in process,
the kubernetes client's models and hera."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml
from export_helpers import HMAC_KEY, make_notebook, result_value
from traitlets.config import Config

from jupyter_prod_discovery.export.exporter import ExportRequest, NotebookExporter
from jupyter_prod_discovery.export.gates import (
    DependenciesLockedGate,
    NoInteractiveGate,
    NoPIIGate,
    NoSecretsGate,
    OutputsStrippedGate,
)
from jupyter_prod_discovery.pytest_plugin import require

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
bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d: [t.task_id for t in bag.dags[d].tasks] for d in bag.dag_ids},
}))
"""


def _provider(author: str, path: str) -> dict[str, Any]:
    return {"data_sources": [], "credential_profiles": [{"name": "warehouse", "path": "kv/wh"}]}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    config = Config(
        {"HMACSigner": {"keys": [HMAC_KEY]}, "NotebookExporter": {"gate_classes": gates}}
    )
    exporter = NotebookExporter(config=config, session_provider=_provider)
    request = ExportRequest(
        nb,
        tmp / "bundle",
        author="ada",
        targets=["airflow", "dagster", "kubernetes"],
        parameters={"x": 41},
    )
    return exporter.process(request).bundle


def test_import_airflow_dag_in_dagbag(bundle: Path, tmp_path: Path) -> None:
    require(
        Path(AIRFLOW_PYTHON).is_file(),
        f"the isolated Airflow venv is missing at {AIRFLOW_PYTHON}: run .ci/airflow-venv.sh",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VAULT_"))},
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    proc = subprocess.run(
        [AIRFLOW_PYTHON, "-c", DAGBAG_PROBE, str(bundle / "airflow")],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert report["dags"] == {"prod_discovery_daily_sales": ["run_notebook"]}


def test_execute_dagster_job_in_process(
    bundle: Path, tmp_path: Path, openbao: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = hvac.Client(url=openbao.address, token=openbao.root_token)
    client.sys.enable_secrets_engine("kv", path="kv", options={"version": "1"})
    client.write("kv/wh", password=PASSWORD)
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
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


def test_load_kubernetes_job_into_client_model(bundle: Path) -> None:
    from kubernetes.client import ApiClient, V1Job

    data = yaml.safe_load((bundle / "k8s" / "job.yaml").read_text())
    job = ApiClient()._ApiClient__deserialize(data, "V1Job")  # type: ignore[attr-defined]
    assert isinstance(job, V1Job)
    container = job.spec.template.spec.containers[0]
    assert {e.name for e in container.env} == {"VAULT_ADDR", "VAULT_ROLE"}
    assert job.spec.template.spec.service_account_name == "prod-discovery-daily-sales"
    refs = json.loads(job.metadata.annotations["prod-discovery/vault-references"])
    assert refs == [{"profile": "warehouse", "path": "kv/wh"}]


def test_load_argo_workflow_into_hera(bundle: Path) -> None:
    from hera.workflows import Workflow

    workflow = Workflow.from_yaml((bundle / "k8s" / "argo-workflow.yaml").read_text())
    assert workflow.entrypoint == "run-notebook"
    model = workflow.build()
    container = model.spec.templates[0].container
    assert container.command == ["python", "/bundle/run.py", "/tmp/output.ipynb"]
    assert {e.name for e in container.env} == {"VAULT_ADDR", "VAULT_ROLE"}
