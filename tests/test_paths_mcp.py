"""jupyter-mcp-server as a server extension (installed for real): code its execute tool runs is
audited as run through that tool with the authenticated user; outputs returned are redacted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from guard_support import Recorder
from paths_support import EMAIL, SSN, executions, need, recorder, server_config
from paths_support import start_kernel as new_kernel

__all__ = ["recorder"]  # the fixture, imported
# Its handlers authenticate in prepare(), not with the decorators jupyter_server looks for.
pytestmark = pytest.mark.filterwarnings("ignore::jupyter_server.utils.JupyterServerAuthWarning")


@pytest.fixture(autouse=True)
def _installed() -> None:
    need("jupyter_mcp_server")


@pytest.fixture
def prod_discovery_extension_config() -> dict[str, Any]:
    return server_config("jupyter_mcp_server")


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
