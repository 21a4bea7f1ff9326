"""jupyter-mcp-server as a server extension (installed for real): code its execute tool runs is
audited as run through that tool with the authenticated user; outputs returned are redacted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from guard_support import Recorder
from paths_support import EMAIL, SSN, executions, need, recorder, server_config
from paths_support import start_kernel as new_kernel
from tornado.httpclient import HTTPClientError

__all__ = ["recorder"]  # the fixture, imported
# Its handlers authenticate in prepare(), not with the decorators jupyter_server looks for.
pytestmark = pytest.mark.filterwarnings("ignore::jupyter_server.utils.JupyterServerAuthWarning")


@pytest.fixture(autouse=True)
def _installed() -> None:
    need("jupyter_mcp_server")


@pytest.fixture
def mcp_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def prod_discovery_extension_config(mcp_config: dict[str, Any]) -> dict[str, Any]:
    return server_config("jupyter_mcp_server", **mcp_config)


REMOTE = {"JupyterMCPServerExtensionApp": {"code_sandbox_url": "http://127.0.0.1:9"}}


async def call_tool(jp_fetch: Any, tool: str, **arguments: Any) -> dict[str, Any]:
    body = json.dumps({"tool_name": tool, "arguments": arguments})
    resp = await jp_fetch("mcp", "tools", "call", method="POST", body=body)
    return dict(json.loads(resp.body))


async def test_mcp_execute_code_audited_and_redacted(jp_fetch: Any, recorder: Recorder) -> None:
    kid = await new_kernel(jp_fetch)
    # jupyter-mcp-server gives a fresh client's iopub subscription 0.1 s; on a busy machine its
    # first call can miss the output (upstream race): wait until its calls see output at all.
    for _ in range(20):
        warm = await call_tool(jp_fetch, "execute_code", code="print('ready')", kernel_id=kid)
        if "ready" in json.dumps(warm):
            break
    recorder.events.clear()
    code = f"print('ssn {SSN}')\n'{EMAIL}'"
    # Its 100 ms grace after the execute_reply can still lose a slow output (upstream): an
    # attempt may return no output, but none may return a raw value, and each is audited.
    texts = []
    for _ in range(10):
        result = await call_tool(jp_fetch, "execute_code", code=code, kernel_id=kid)
        assert result["success"] is True, result
        texts.append(json.dumps(result))
        if "<US_SSN>" in texts[-1]:
            break
    assert all(SSN not in t and EMAIL not in t for t in texts)
    assert "<US_SSN>" in texts[-1] and "<EMAIL_ADDRESS>" in texts[-1]
    requests = executions(recorder)
    assert [d["code"] for d, _ in requests] == [code] * len(texts)
    assert all(d["via"] == "mcp:execute_code" and d["kernel_id"] == kid for d, _ in requests)
    assert all(u is not None and u.username for _, u in requests)


async def refused_tool(jp_fetch: Any, tool: str, **arguments: Any) -> str:
    """The error a refused tool call returns (jupyter-mcp-server's tools/call route answers a
    tool's exception with a 500 and the message; the MCP protocol with an error result)."""
    with pytest.raises(HTTPClientError) as err:
        await call_tool(jp_fetch, tool, **arguments)
    body = json.loads(err.value.response.body)  # type: ignore[union-attr]
    assert body["success"] is False
    return str(body["error"])


async def status_paths(jp_fetch: Any) -> dict[str, Any]:
    return dict(json.loads((await jp_fetch("prod-discovery", "api", "status")).body)["paths"])


@pytest.mark.parametrize("mcp_config", [REMOTE])
async def test_mcp_remote_sandbox_refused_at_start(jp_fetch: Any) -> None:
    paths = await status_paths(jp_fetch)
    assert paths["paths"]["mcp-remote"] == "refused" and "mcp" not in paths["paths"]
    assert "code_sandbox_url = 'http://127.0.0.1:9'" in paths["reasons"]["mcp-remote"]
    for method, route, body in (
        ("POST", ("mcp", "tools", "call"), json.dumps({"tool_name": "list_kernels"})),
        ("GET", ("mcp", "tools", "list"), None),
        ("POST", ("mcp",), "{}"),
    ):
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch(*route, method=method, body=body)
        assert err.value.code == 403
        reason = str(err.value.response.reason)  # type: ignore[union-attr]
        assert "code_sandbox_url" in reason and "allow_unguarded = ['mcp-remote']" in reason
    assert (await jp_fetch("mcp", "healthz")).code == 200  # runs nothing


@pytest.mark.parametrize(
    "mcp_config", [{**REMOTE, "ExecutionPaths": {"allow_unguarded": ["mcp-remote"]}}]
)
async def test_mcp_remote_sandbox_allowed_is_shown_unguarded(jp_fetch: Any) -> None:
    paths = await status_paths(jp_fetch)
    assert paths["paths"]["mcp-remote"] == "unguarded" and paths["ok"] is False
    status = json.loads((await jp_fetch("prod-discovery", "api", "status")).body)
    assert status["guards"]["paths"] is False  # what the indicator shows as UNGUARDED
    assert (await jp_fetch("mcp", "tools", "list")).code == 200


async def test_mcp_connect_to_remote_server_refused(jp_fetch: Any, recorder: Recorder) -> None:
    from jupyter_mcp_server.config import get_config

    error = await refused_tool(jp_fetch, "connect_to_jupyter", jupyter_url="http://127.0.0.1:9")
    assert "would point jupyter-mcp-server at 'http://127.0.0.1:9'" in error
    assert get_config().code_sandbox_url == "local"  # nothing switched
    (denied,) = recorder.of("denied")
    assert denied["resource"] == "mcp:connect_to_jupyter" and denied["status"] == 403


async def test_mcp_switched_to_sandbox_variant_refused(jp_fetch: Any, recorder: Recorder) -> None:
    from jupyter_mcp_server.config import get_config

    kid = await new_kernel(jp_fetch)
    config = get_config()
    config.sandbox_variant = "docker"  # as its CLI or another extension would set it
    try:
        with pytest.raises(HTTPClientError) as err:
            await call_tool(jp_fetch, "execute_code", code="print(1)", kernel_id=kid)
        assert err.value.code == 403
        assert "sandbox_variant = 'docker'" in str(err.value.response.reason)  # type: ignore[union-attr]
        assert executions(recorder) == []  # nothing ran
        paths = await status_paths(jp_fetch)
        assert paths["paths"]["mcp-remote"] == "refused" and "mcp" not in paths["paths"]
    finally:
        config.sandbox_variant = "jupyter-server"
    # Set back to this server's kernels: guarded again.
    assert (await jp_fetch("mcp", "tools", "list")).code == 200
    assert (await status_paths(jp_fetch))["paths"]["mcp"] == "guarded"


async def test_mcp_hook_refuses_execution_once_switched_mid_request() -> None:
    """A switch while a request runs (a tool changing the configuration): its executions are
    refused by the hook itself, before anything is sent."""
    from jupyter_mcp_server.config import get_config

    from jupyter_prod_discovery.guard.mcp import McpHook
    from jupyter_prod_discovery.guard.paths import ExecutionPaths

    paths = ExecutionPaths()
    hook = McpHook(paths)
    config = get_config()
    config.sandbox_variant = "e2b"
    try:
        with pytest.raises(PermissionError, match="sandbox_variant = 'e2b'"):
            await hook.on_event("before_execute", context={}, kernel_id="k", code="print(1)")
    finally:
        config.sandbox_variant = "jupyter-server"
    assert paths.states["mcp-remote"] == "refused"
    assert paths.attributions.claim("k", "print(1)").user is None  # nothing was stated
    await hook.on_event("before_execute", context={}, kernel_id="k", code="print(2)")
    assert "mcp-remote" not in paths.states
