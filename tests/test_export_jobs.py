"""Export jobs through the server's REST API (what the labextension polls): as a client of the
trusted service (the service decides and signs; the server writes what it got back) and in
same-user mode. Real service process, OpenBao, PostgreSQL, sandbox OS user and kernels."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from credentials_support import Warehouse
from export_helpers import HMAC_KEY as LOCAL_KEY
from service_export_support import export_service, notebook
from service_support import ServiceProcess
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.export.signing import HMACSigner
from jupyter_prod_discovery.export.verify import verify_bundle, verify_bundle_dev

READ = (
    "import psycopg\n"
    "with psycopg.connect('') as conn:\n"
    "    n = conn.execute('select count(*) from customers').fetchone()[0]\n"
    "assert n == 3, n"
)


async def poll(jp_fetch: Any, job_id: str, timeout: float = 300) -> list[dict[str, Any]]:
    """Every state seen while polling, the last one done."""
    seen: list[dict[str, Any]] = []
    for _ in range(int(timeout / 0.2)):
        response = await jp_fetch("prod-discovery", "api", "export-jobs", job_id)
        seen.append(json.loads(response.body))
        if seen[-1]["done"]:
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} still running: {seen[-1]}")


async def create(jp_fetch: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await jp_fetch(
        "prod-discovery", "api", "export-jobs", method="POST", body=json.dumps(body)
    )
    assert response.code == 202
    job: dict[str, Any] = json.loads(response.body)
    return job


class TestThroughTheService:
    @pytest.fixture
    def service(
        self, tmp_path: Path, openbao: Any, warehouse: Warehouse, postgres_database: str
    ) -> Iterator[ServiceProcess]:
        with export_service(tmp_path, postgres_database, openbao, warehouse) as svc:
            yield svc

    @pytest.fixture
    def prod_discovery_extension_config(
        self, service: ServiceProcess, tmp_path: Path
    ) -> dict[str, Any]:
        return {
            "ProdDiscoveryApp": {"service_url": service.url},
            "AuditTrail": {"spool_dir": str(tmp_path / "spool"), "retry_interval": 0.2},
        }

    async def test_job_reports_gates_and_writes_the_signed_bundle(
        self, jp_fetch: Any, jp_root_dir: Path, warehouse: Warehouse, service: ServiceProcess
    ) -> None:
        (jp_root_dir / "work").mkdir()
        nbformat.write(nbformat.from_dict(notebook(READ)), jp_root_dir / "work" / "c.ipynb")
        job = await create(jp_fetch, {"path": "work/c.ipynb", "profiles": ["warehouse"]})
        assert job["state"] == "running" and job["bundle"] is None
        seen = await poll(jp_fetch, job["id"])
        final = seen[-1]
        assert final["state"] == "exported", final
        assert [g["name"] for g in final["gates"]][-1] == "clean_run"
        assert all(g["passed"] for g in final["gates"])
        # Progress was reported gate by gate: the gate list only ever grew.
        counts = [len(s["gates"]) for s in seen]
        assert counts == sorted(counts)
        assert final["signer"] == "prod-discovery-service"
        bundle = jp_root_dir / final["bundle"]
        assert final["signature"]["file"] == f"{final['bundle']}/signature.json"
        public = service.client("verifier").public_key()["public_key_pem"]
        assert verify_bundle(bundle, [public]) == []  # the service's published key, nothing else
        assert final["verification"] == {"files_match_manifest": True, "problems": []}
        assert set(final["timings"]) >= {"prepare", "clean_run", "bundle"}
        assert "files" not in final
        # Polling again does not write twice.
        again = await poll(jp_fetch, job["id"])
        assert again[-1]["bundle"] == final["bundle"]

    async def test_git_of_the_notebook_is_sent_and_signed_as_the_servers_claim(
        self, jp_fetch: Any, jp_root_dir: Path, tmp_path: Path
    ) -> None:
        """The server root is a git repository (with a core.fsmonitor probe): the server reads
        the commit with dulwich, running nothing, and the service signs it as the server's."""
        import subprocess

        from export_helpers import statement_fields

        marker = tmp_path / "fsmonitor-ran"
        probe = tmp_path / "probe.sh"
        probe.write_text(f"#!/bin/sh\ntouch {marker}\n")
        probe.chmod(0o755)
        (jp_root_dir / "work").mkdir()
        nbformat.write(nbformat.from_dict(notebook("x = 1")), jp_root_dir / "work" / "g.ipynb")
        git = ["git", "-c", "core.hooksPath=/dev/null", "-C", str(jp_root_dir)]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        subprocess.run([*git, "add", "work/g.ipynb"], check=True)
        subprocess.run(
            [*git, "-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "-qm", "g"],
            check=True,
        )
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        with (jp_root_dir / ".git" / "config").open("a") as f:
            f.write(f"[core]\n\tfsmonitor = {probe}\n")
        job = await create(jp_fetch, {"path": "work/g.ipynb", "profiles": []})
        final = (await poll(jp_fetch, job["id"]))[-1]
        assert final["state"] == "exported", final
        fields = statement_fields(jp_root_dir / final["bundle"])
        reported = fields["reported_by_server"]
        assert reported["git"] == {
            "commit": commit,
            "path": "work/g.ipynb",
            "dirty": False,
            "branch": "main",
            "remote": None,
        }
        assert reported["server"]  # this server's id, as the service authenticated its stream
        assert fields["git"] is None
        assert not marker.exists()

    async def test_sync_export_goes_through_the_service(
        self, jp_fetch: Any, jp_root_dir: Path
    ) -> None:
        """The older synchronous endpoint answers as before, the service deciding."""
        leak = {"output_type": "stream", "name": "stdout", "text": "mail ada@example.org\n"}
        nbformat.write(
            nbformat.from_dict(notebook("x = 1", outputs=[leak])), jp_root_dir / "p.ipynb"
        )
        with pytest.raises(HTTPClientError) as refused:
            await jp_fetch(
                "prod-discovery",
                "api",
                "exports",
                method="POST",
                body=json.dumps({"path": "p.ipynb", "profiles": []}),
                request_timeout=300,
            )
        assert refused.value.code == 422
        payload = json.loads(refused.value.response.body)
        gates = {g["name"]: g for g in payload["gates"]}
        assert gates["no_pii"]["passed"] is False and payload["exported"] is False
        assert not (jp_root_dir / ".prod-discovery").exists()

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"path": "p.ipynb", "parameters": {"x = 1\nimport os\ny": 0}}, 400),
            ({"path": "p.ipynb", "overrides": {"no_secrets": "mine"}}, 403),
            ({"path": "missing.ipynb"}, 404),
            ({"path": "../../etc/passwd"}, 403),
        ],
    )
    async def test_refusals_pass_through(
        self, jp_fetch: Any, jp_root_dir: Path, body: dict[str, Any], status: int
    ) -> None:
        nbformat.write(nbformat.from_dict(notebook("x = 1")), jp_root_dir / "p.ipynb")
        with pytest.raises(HTTPClientError) as refused:
            await create(jp_fetch, {"profiles": [], **body})
        assert refused.value.code == status

    async def test_declared_roles_default_to_those_of_the_authors_kernels(
        self, jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path
    ) -> None:
        """No ``profiles`` in the request: the job declares what the author's kernels on this
        server were issued (the service checks them against the author again)."""
        app = jp_serverapp.web_app.settings["prod_discovery"]
        await app._start_jupyter_server_extension(jp_serverapp)  # heartbeat, audit writer
        response = await jp_fetch(
            "api", "kernels", method="POST", body=json.dumps({"name": "python3"})
        )
        kernel = json.loads(response.body)["id"]
        try:
            nbformat.write(nbformat.from_dict(notebook(READ)), jp_root_dir / "d.ipynb")
            job = await create(jp_fetch, {"path": "d.ipynb"})
            assert job["profiles"] == ["vault", "warehouse"]
            final = (await poll(jp_fetch, job["id"]))[-1]
            assert final["state"] == "exported", final
        finally:
            await jp_fetch("api", "kernels", kernel, method="DELETE")

    async def test_unknown_job_is_404(self, jp_fetch: Any) -> None:
        with pytest.raises(HTTPClientError) as missing:
            await jp_fetch("prod-discovery", "api", "export-jobs", "0" * 32)
        assert missing.value.code == 404


class TestSameUserMode:
    @pytest.fixture
    def prod_discovery_extension_config(self) -> dict[str, Any]:
        return {"HMACSigner": {"keys": [LOCAL_KEY]}, "ProdDiscoveryApp": {"require_vault": False}}

    async def test_local_job_reports_each_gate(self, jp_fetch: Any, jp_root_dir: Path) -> None:
        nbformat.write(nbformat.from_dict(notebook("x = 1")), jp_root_dir / "l.ipynb")
        job = await create(jp_fetch, {"path": "l.ipynb"})
        final = (await poll(jp_fetch, job["id"]))[-1]
        assert final["state"] == "exported", final
        assert final["signer"] == "this server"
        assert final["verification"]["files_match_manifest"] is True
        # Same-user mode signs with the development HMAC key: no public key verifies it.
        bundle = jp_root_dir / final["bundle"]
        assert verify_bundle_dev(bundle, HMACSigner(keys=[LOCAL_KEY])) == []


def test_check_files_names_changed_missing_and_extra_files(tmp_path: Path) -> None:
    import hashlib

    from jupyter_prod_discovery.export.jobs import check_files

    digest = hashlib.sha256(b"print(1)\n").hexdigest()
    subjects = [{"name": n, "digest": {"sha256": digest}} for n in ("run.py", "job.py", "gone.py")]
    (tmp_path / "manifest.json").write_text(json.dumps({"subject": subjects}))
    (tmp_path / "run.py").write_text("print(1)\n")
    (tmp_path / "job.py").write_text("print(2)\n")
    (tmp_path / "extra.py").write_text("")
    assert check_files(tmp_path) == {
        "files_match_manifest": False,
        "problems": ["extra file: extra.py", "missing file: gone.py", "changed file: job.py"],
    }
    (tmp_path / "manifest.json").write_text("{")
    assert check_files(tmp_path)["files_match_manifest"] is False
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"run.py": digest}}))
    assert check_files(tmp_path)["problems"] == ["unreadable manifest.json"]  # not a statement


@pytest.mark.parametrize("rel", ["../escape.py", "/etc/x", "a/../../b"])
def test_write_files_refuses_paths_outside_the_bundle(tmp_path: Path, rel: str) -> None:
    import base64

    from jupyter_prod_discovery.export.jobs import write_files

    files = {"ok.py": base64.b64encode(b"1").decode(), rel: base64.b64encode(b"x").decode()}
    with pytest.raises(ValueError, match="bad bundle path"):
        write_files(tmp_path / "out" / "bundle", files)
    assert not (tmp_path / "out" / "bundle").exists()
    assert list((tmp_path / "out").iterdir()) == []  # the partial bundle was removed
    assert not (tmp_path / "escape.py").exists() and not (tmp_path / "out" / "escape.py").exists()
