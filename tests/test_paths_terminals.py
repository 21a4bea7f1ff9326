"""Terminals (jupyter_server_terminals): audited and PII-guarded, or refused with a reason."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from guard_support import Recorder
from paths_support import SSN, recorder, server_config, wait_for
from tornado.httpclient import HTTPClientError

from jupyter_prod_discovery.guard.terminals import DENY_REASON

__all__ = ["recorder"]  # the fixture, imported
# jupyter_server_terminals' TermSocket authenticates in get(), not with the decorators
# jupyter_server looks for (its handler still requires a user: see the 403 tests).
pytestmark = pytest.mark.filterwarnings("ignore::jupyter_server.utils.JupyterServerAuthWarning")

SECRET_ENV = "PD_PATHS_TEST_SECRET"


@pytest.fixture
def terminals_mode() -> str:
    return "audit"


async def read_until(ws: Any, marker: str, timeout: float = 60) -> str:
    """Terminal stdout until ``marker`` appears (a bounded wait)."""
    out = ""

    async def loop() -> None:
        nonlocal out
        while marker not in out:
            raw = await ws.read_message()
            assert raw is not None, "terminal websocket closed"
            kind, *rest = json.loads(raw)
            if kind == "stdout":
                out += rest[0]

    await asyncio.wait_for(loop(), timeout)
    return out


def terminal_events(recorder: Recorder) -> list[tuple[dict[str, Any], Any]]:
    return [(d, u) for k, d, u in recorder.events if k == "terminal"]


async def test_terminal_output_redacted_and_session_audited(
    jp_fetch: Any, jp_ws_fetch: Any, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "server-only-value-7f3a")
    name = json.loads((await jp_fetch("api", "terminals", method="POST", body="{}")).body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name)
    # Split so that the typed line (echoed by the shell) holds no SSN; the output does.
    line = f'A=536-22; echo "ssn $A-1234 env:${{{SECRET_ENV}:-unset}}"; echo DO' + "''NE\r"
    ws.write_message(json.dumps(["stdin", line]))
    out = await read_until(ws, "DONE")
    assert SSN not in out
    assert "ssn <US_SSN>" in out
    assert "env:unset" in out, "the shell inherited a server variable outside the allow-list"
    ws.close()
    await wait_for(lambda: any(d["action"] == "close" for d, _ in terminal_events(recorder)))
    events = terminal_events(recorder)
    actions = [d["action"] for d, _ in events]
    assert actions[0] == "open" and actions[-1] == "close" and "input" in actions
    assert all(u is not None and u.username for _, u in events)
    (line,) = [d for d, _ in events if d["action"] == "input"]
    assert line["line"].startswith("A=536-22;") and line["terminal"] == name
    close = events[-1][0]
    assert close["output_bytes"] > 0 and len(close["output_sha256"]) == 64
    assert close["input_lines"] == 1
    pii = [d for k, d, _ in recorder.events if k == "pii"]
    assert pii and pii[0]["output"] == "terminal" and pii[0]["entities"] == {"US_SSN": 1}


async def test_typed_pii_echo_redacted_in_output_and_record(
    jp_fetch: Any, jp_ws_fetch: Any, recorder: Recorder
) -> None:
    name = json.loads((await jp_fetch("api", "terminals", method="POST", body="{}")).body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name)
    ws.write_message(json.dumps(["stdin", f"echo {SSN} >/dev/null; echo DO''NE\r"]))
    out = await read_until(ws, "DONE")
    assert SSN not in out
    ws.close()
    await wait_for(lambda: any(d["action"] == "close" for d, _ in terminal_events(recorder)))
    (line,) = [d for d, _ in terminal_events(recorder) if d["action"] == "input"]
    assert SSN not in line["line"] and "<US_SSN>" in line["line"]


# The halves come from shell variables: the echo of the typed line holds neither.
SPLIT = "A=536; B=22; printf \"$A-$B-\"; sleep {pause}; printf '1234\\n'; echo DO''NE\r"


async def test_value_split_between_reads_held_whole(
    jp_fetch: Any, jp_ws_fetch: Any, recorder: Recorder
) -> None:
    name = json.loads((await jp_fetch("api", "terminals", method="POST", body="{}")).body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name)
    ws.write_message(json.dumps(["stdin", SPLIT.format(pause=1)]))
    out = await read_until(ws, "DONE")
    assert "536-22-" not in out, "the first half of the value was shown"
    assert SSN not in out
    assert "<US_SSN>\r\n" in out
    pii = [d for k, d, _ in recorder.events if k == "pii"]
    assert [d["entities"] for d in pii] == [{"US_SSN": 1}]  # counted once, when it left


@pytest.fixture
def hold_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def prod_discovery_extension_config(terminals_mode: str, hold_config: dict[str, Any]) -> Any:
    return server_config(
        "jupyter_server_terminals", ProdDiscoveryApp={"terminals": terminals_mode}, **hold_config
    )


@pytest.mark.parametrize("hold_config", [{"PIIGuard": {"secret_hold_timeout": 0.3}}])
async def test_held_end_leaves_after_the_hold_and_its_seam_is_still_scanned(
    jp_fetch: Any, jp_ws_fetch: Any
) -> None:
    name = json.loads((await jp_fetch("api", "terminals", method="POST", body="{}")).body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name)
    ws.write_message(json.dumps(["stdin", SPLIT.format(pause=3)]))
    # The hold is bounded: the first half is shown once it passed, before the second half...
    first = await read_until(ws, "536-22-", timeout=2.5)
    assert "1234" not in first.split("536-22-", 1)[1]
    # ...which is still scanned with it, across the seam, and redacted.
    rest = await read_until(ws, "DONE")
    assert "<US_SSN>\r\n" in rest and SSN not in first + rest


@pytest.mark.parametrize("hold_config", [{"PIIGuard": {"secret_hold_timeout": 60}}])
async def test_typed_digits_echoed_at_once(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    name = json.loads((await jp_fetch("api", "terminals", method="POST", body="{}")).body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name)
    ws.write_message(json.dumps(["stdin", "echo READY\r"]))
    await read_until(ws, "READY\r\n")
    for key in "4711":
        ws.write_message(json.dumps(["stdin", key]))
        # The user's own keystrokes, echoed by the shell, are not held like output digits.
        await read_until(ws, key, timeout=5)


@pytest.mark.parametrize("terminals_mode", ["deny"])
async def test_terminals_denied_with_reason(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, recorder: Recorder
) -> None:
    for method, body in (("POST", "{}"), ("GET", None)):
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("api", "terminals", method=method, body=body)
        assert err.value.code == 403
        assert err.value.response.reason == DENY_REASON
    with pytest.raises(HTTPClientError) as err:
        await jp_ws_fetch("terminals", "websocket", "1")
    assert err.value.code == 403
    assert jp_serverapp.web_app.settings["terminals_available"] is False
    status = json.loads((await jp_fetch("prod-discovery", "api", "status")).body)
    assert status["paths"]["terminals"] == "deny"
    assert status["paths"]["reasons"]["terminals"] == DENY_REASON
    assert [d["action"] for k, d, _ in recorder.events if k == "denied"] == ["terminal"] * 3
