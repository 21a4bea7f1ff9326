"""POST /prod-discovery/api/exports: authenticated, root-confined, gate results in the answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from export_helpers import HMAC_KEY, ListRecorder, make_notebook, statement_fields, stream
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.export.signing import HMACSigner
from jupyter_prod_discovery.export.verify import verify_bundle_dev

PLANTED = "planted-kernel-secret-4242"


@pytest.fixture
def prod_discovery_extension_config() -> dict[str, Any]:
    return {"HMACSigner": {"keys": [HMAC_KEY]}, "ProdDiscoveryApp": {"require_vault": False}}


def _app(jp_serverapp: Any) -> Any:
    return jp_serverapp.web_app.settings["prod_discovery"]


async def _post(jp_fetch: Any, body: dict[str, Any], **kwargs: Any) -> Any:
    # An export runs the notebook in a clean kernel: give it more than the 20 s default.
    kwargs.setdefault("request_timeout", 300)
    return await jp_fetch(
        "prod-discovery", "api", "exports", method="POST", body=json.dumps(body), **kwargs
    )


async def test_post_export_writes_signed_bundle(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = ListRecorder()
    monkeypatch.setattr(_app(jp_serverapp), "audit", recorder)  # restored before server stop
    (jp_root_dir / "work").mkdir()
    make_notebook(jp_root_dir / "work" / "job.ipynb", [("result = x + 1\nresult", [])], "x = 1")
    body = {"path": "work/job.ipynb", "target": "papermill", "parameters": {"x": 2}}
    response = await _post(jp_fetch, body)
    assert response.code == 201
    payload = json.loads(response.body)
    assert payload["exported"] is True
    assert payload["bundle"].startswith(".prod-discovery/exports/job-")
    bundle = jp_root_dir / payload["bundle"]
    assert verify_bundle_dev(bundle, HMACSigner(keys=[HMAC_KEY])) == []
    assert payload["signature"] == {
        "algorithm": "hmac-sha256",
        "key_id": HMACSigner.key_id(HMAC_KEY),
        "signer": "HMAC development key (not verifiable with a public key)",
        "verified": False,
        "verification": "signed with a development key: no public key verifies it",
        "file": f"{payload['bundle']}/signature.json",
    }
    manifest = statement_fields(bundle)
    assert manifest["notebook"]["path"] == "work/job.ipynb"
    assert manifest["author"]  # the authenticated user's name
    assert [g["name"] for g in payload["gates"]][-1] == "clean_run"
    assert recorder.events[-1][1]["bundle"] == str(bundle)


async def test_post_export_refuses_issued_secret_naming_gate(
    jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any
) -> None:
    _app(jp_serverapp).secrets.set("kernel-1", [PLANTED], owner="someone")
    make_notebook(jp_root_dir / "leak.ipynb", [("print(pw)", [stream(f"{PLANTED}\n")])])
    with pytest.raises(HTTPClientError) as err:
        await _post(jp_fetch, {"path": "leak.ipynb"})
    assert err.value.code == 422
    text = err.value.response.body.decode()
    payload = json.loads(text)
    failed = [g["name"] for g in payload["gates"] if not g["passed"] and not g["skipped"]]
    assert failed == ["no_secrets"]
    assert PLANTED not in text
    assert not (jp_root_dir / ".prod-discovery").exists()


@pytest.mark.parametrize("field", ["path", "output"])
async def test_post_export_refuses_path_outside_root(
    jp_fetch: Any, jp_root_dir: Path, field: str
) -> None:
    make_notebook(jp_root_dir / "ok.ipynb", [("result = 1", [])])
    body = {"path": "ok.ipynb", field: "../outside.ipynb"}
    with pytest.raises(HTTPClientError) as err:
        await _post(jp_fetch, body)
    assert err.value.code == 403


async def test_post_export_answers_404_for_missing_notebook(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:
        await _post(jp_fetch, {"path": "nope.ipynb"})
    assert err.value.code == 404


async def test_post_export_refuses_anonymous(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as err:
        await _post(jp_fetch, {"path": "x.ipynb"}, headers={"Authorization": ""})
    assert err.value.code == 403


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"x = 1\nimport subprocess; subprocess.run(['id'])\ny": 0}, "not a Python identifier"),
        ({"class": 1}, "'class' is a Python keyword"),
        ({"x": float("inf")}, "parameter 'x': inf is not a JSON number"),
    ],
)
async def test_post_export_refuses_bad_parameter_with_400(
    jp_fetch: Any, jp_root_dir: Path, parameters: dict[str, Any], message: str
) -> None:
    make_notebook(jp_root_dir / "ok.ipynb", [("result = 1", [])])
    body = json.dumps({"path": "ok.ipynb", "parameters": parameters}, allow_nan=True)
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch(
            "prod-discovery", "api", "exports", method="POST", body=body, request_timeout=60
        )
    assert err.value.code == 400
    assert message in err.value.response.body.decode()
    assert not (jp_root_dir / ".prod-discovery").exists()
