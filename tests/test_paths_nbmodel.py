"""REST execution (jupyter-server-nbmodel, installed for real): outputs redacted, each execution
recorded with the authenticated user and the path it came through."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from guard_support import Recorder
from paths_support import EMAIL, PII_CODE, SSN, executions, need, recorder, server_config
from paths_support import start_kernel as new_kernel
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.guard.kernel_client import GuardedKernelClient

__all__ = ["recorder"]  # the fixture, imported


@pytest.fixture(autouse=True)
def _installed() -> None:
    need("jupyter_server_nbmodel")


@pytest.fixture
def prod_discovery_extension_config() -> dict[str, Any]:
    return server_config("jupyter_server_nbmodel")


async def run_rest(jp_fetch: Any, kid: str, code: str) -> dict[str, Any]:
    """POST the code, then poll its request until the result is complete."""
    resp = await jp_fetch(
        "api", "kernels", kid, "execute", method="POST", body=json.dumps({"code": code})
    )
    assert resp.code == 202
    location = resp.headers["Location"].lstrip("/").split("/")
    for _ in range(600):
        r = await jp_fetch(*location, raise_error=False)
        if r.code == 200:
            return dict(json.loads(r.body))
        assert r.code == 202, r.body
        await asyncio.sleep(0.1)
    raise AssertionError("the execution did not complete")


async def test_client_class_is_guarded(jp_serverapp: Any) -> None:
    km = jp_serverapp.kernel_manager
    kid = await km.start_kernel()
    try:
        assert isinstance(km.get_kernel(kid).client(), GuardedKernelClient)
    finally:
        await km.shutdown_kernel(kid, now=True)


async def test_rest_execution_outputs_redacted_and_audited(
    jp_fetch: Any, recorder: Recorder
) -> None:
    kid = await new_kernel(jp_fetch)
    result = await run_rest(jp_fetch, kid, PII_CODE)
    assert result["status"] == "ok"
    outputs = result["outputs"]
    assert SSN not in outputs and EMAIL not in outputs
    assert "536-22-" not in outputs, "the half of the split value left before the seam scan"
    assert "<US_SSN>" in outputs and "<EMAIL_ADDRESS>" in outputs
    ((request, user),) = executions(recorder)
    assert request["via"] == "rest:jupyter-server-nbmodel"
    assert request["kernel_id"] == kid and request["code"] == PII_CODE
    assert user is not None and user.username
    ((reply, reply_user),) = executions(recorder, "reply")
    assert reply["status"] == "ok" and reply["msg_id"] == request["msg_id"]
    assert reply_user is user
    pii = [d for k, d, _ in recorder.events if k == "pii"]
    assert pii and all(d["kernel_id"] == kid for d in pii)


async def test_each_rest_execution_attributed(jp_fetch: Any, recorder: Recorder) -> None:
    kid = await new_kernel(jp_fetch)
    for i in range(3):
        await run_rest(jp_fetch, kid, f"x = {i}")
    requests = executions(recorder)
    assert [d["code"] for d, _ in requests] == ["x = 0", "x = 1", "x = 2"]
    assert all(d["via"] == "rest:jupyter-server-nbmodel" and u is not None for d, u in requests)


async def test_remote_execution_refused(jp_fetch: Any, recorder: Recorder) -> None:
    kid = await new_kernel(jp_fetch)
    body = {"code": "1", "server": {"url": "http://127.0.0.1:9/"}}
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("api", "kernels", kid, "execute", method="POST", body=json.dumps(body))
    assert err.value.code == 403
    assert "remote Jupyter server" in str(err.value.response.reason)
    assert [d["reason"] for k, d, _ in recorder.events if k == "denied"]
    assert not executions(recorder)


async def test_status_reports_paths(jp_fetch: Any) -> None:
    status = json.loads((await jp_fetch("prod-discovery", "api", "status")).body)
    assert status["paths"]["paths"]["kernel-client"] == "guarded"
    assert status["paths"]["paths"]["kernel-websocket"] == "guarded"
    assert status["guards"]["paths"] is True


class TestUnguardableClient:
    """A configured kernel client class we cannot guard: the execute endpoint is refused."""

    @pytest.fixture
    def prod_discovery_extension_config(self) -> dict[str, Any]:
        return server_config(
            "jupyter_server_nbmodel",
            ServerKernelManager={"client_class": "jupyter_client.asynchronous.AsyncKernelClient"},
        )

    async def test_execute_refused_with_reason(self, jp_fetch: Any, recorder: Recorder) -> None:
        kid = await new_kernel(jp_fetch)
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch(
                "api", "kernels", kid, "execute", method="POST", body=json.dumps({"code": "1"})
            )
        assert err.value.code == 403
        assert "GuardedKernelClient" in str(err.value.response.reason)
        status = json.loads((await jp_fetch("prod-discovery", "api", "status")).body)
        assert status["paths"]["paths"]["kernel-client"] == "refused"
        assert "kernel-client" in status["paths"]["reasons"]


async def test_rest_input_prompt_redacted(jp_fetch: Any, recorder: Recorder) -> None:
    """The stdin channel too: an input() prompt reaches the REST caller redacted."""
    kid = await new_kernel(jp_fetch)
    body = json.dumps({"code": f"answer = input('confirm {SSN[:7]}' + '{SSN[7:]}: ')"})
    resp = await jp_fetch("api", "kernels", kid, "execute", method="POST", body=body)
    location = resp.headers["Location"].lstrip("/").split("/")
    for _ in range(600):
        r = await jp_fetch(*location, raise_error=False)
        if r.code == 300:
            break
        assert r.code == 202, r.body
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no input request")
    prompt = json.loads(r.body)
    assert SSN not in json.dumps(prompt)
    assert "<US_SSN>" in prompt["input_request"]["prompt"]
    await jp_fetch("api", "kernels", kid, "input", method="POST", body=json.dumps({"input": "yes"}))
