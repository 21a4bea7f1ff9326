"""The live guard over a real kernel websocket, in the v1 subprotocol and the legacy JSON one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from guard_support import V1, KernelClient, Recorder, open_kernel, recorder, stream_text

from jupyter_prod_discovery.guard.connection import GuardedWebsocketConnection

__all__ = ["recorder"]  # the fixtures, imported

SSN, EMAIL, CARD = "536-22-1234", "ann.smith@example.com", "4111 1111 1111 1111"
SECRET = "tok-3f9a8b7c6d5e4f30aa"


@pytest.fixture
def prod_discovery_extension_config(guard_config: dict[str, Any]) -> dict[str, Any]:
    return {
        # No rate limits (they drop output by design); no per-message debug logging (it slows
        # the server so much under pytest's log capture that ZMQ drops iopub messages).
        "ZMQChannelsWebsocketConnection": {"limit_rate": False},
        "ServerApp": {"log_level": "WARN"},
        "PIIGuard": {"stream_hold_timeout": 5.0, **guard_config.get("PIIGuard", {})},
        **{k: v for k, v in guard_config.items() if k != "PIIGuard"},
    }


async def test_link_installs_guarded_connection(jp_serverapp: Any) -> None:
    assert jp_serverapp.kernel_websocket_connection_class is GuardedWebsocketConnection
    assert jp_serverapp.web_app.settings["prod_discovery"].guards()["pii"] is True


async def test_print_pii_arrives_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, recorder: Recorder, protocol: str
) -> None:
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    code = f"print('ssn {SSN} mail {EMAIL} card {CARD}')\n'reach {EMAIL}'"
    iopub, reply = await kc.execute(code)
    assert reply["content"]["status"] == "ok"
    text = stream_text(iopub)
    assert "<US_SSN>" in text and "<EMAIL_ADDRESS>" in text and "<CREDIT_CARD>" in text
    assert SSN not in text and EMAIL not in text and CARD not in text
    (result,) = [m for m in iopub if m["header"]["msg_type"] == "execute_result"]
    assert "<EMAIL_ADDRESS>" in result["content"]["data"]["text/plain"]
    meta = result["content"]["metadata"]["prod_discovery"]
    assert meta == {"action": "redact", "entities": {"EMAIL_ADDRESS": 1}}
    pii = recorder.of("pii")
    assert {"source": "live", "kernel_id": kid, "output": "stream", "action": "redact"}.items() <= (
        pii[0].items()
    )
    assert pii[0]["entities"] == {"US_SSN": 1, "EMAIL_ADDRESS": 1, "CREDIT_CARD": 1}
    assert all(EMAIL not in str(d) for d in pii)


async def run_split_secret(
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_serverapp: Any,
    protocol: str,
    secret: str,
    cut: int,
    pause: float = 0.0,
    whole: bool = False,
    interject: bool = False,
) -> list[dict[str, Any]]:
    """Write a live secret in two flushes, ``key=<first part>`` and ``<rest> end``, ``pause``
    seconds apart (then the whole secret once more when ``whole``); check that the cell ran and
    neither part reached the browser; return the iopub messages."""
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    jp_serverapp.web_app.settings["prod_discovery"].secrets.set(kid, [secret])
    code = (
        "import sys, time\n"
        f"sys.stdout.write({'key=' + secret[:cut]!r}); sys.stdout.flush()\n"
        + (f"time.sleep({pause})\n" if pause else "")
        + f"sys.stdout.write({secret[cut:] + ' end' + chr(10)!r}); sys.stdout.flush()\n"
        + (f"print({'whole ' + secret!r})\n" if whole else "")
    )
    run = asyncio.ensure_future(kc.execute(code))
    if interject:  # another request, answered during the pause (control runs while busy)
        await asyncio.sleep(pause / 2)
        await kc.request("kernel_info_request", {}, channel="control")
    iopub, reply = await run
    assert reply["content"]["status"] == "ok"
    text = stream_text(iopub)
    assert secret[:cut] not in text and secret[cut:] not in text
    return iopub


async def test_secret_split_across_flushes_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, protocol: str
) -> None:
    iopub = await run_split_secret(
        jp_fetch, jp_ws_fetch, jp_serverapp, protocol, SECRET, len(SECRET) // 2, whole=True
    )
    streams = [m for m in iopub if m["header"]["msg_type"] == "stream"]
    assert len(streams) >= 2
    text = stream_text(iopub)
    assert "whole <SECRET>" in text and "end" in text


async def test_secret_split_across_slow_flushes_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, protocol: str
) -> None:
    """The second half comes long after stream_hold_timeout: the first half waits for it."""
    iopub = await run_split_secret(
        jp_fetch, jp_ws_fetch, jp_serverapp, protocol, SECRET, len(SECRET) // 2, pause=1.5
    )
    text = stream_text(iopub)
    assert "<SECRET>" in text and "end" in text


async def test_secret_split_with_other_requests_answered_between_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, protocol: str
) -> None:
    """Messages of another request (a control kernel_info_request, as the connection's nudge
    or a debugger sends while a cell runs) arrive between the halves: the first half still
    waits, since they say nothing about the cell's own output."""
    iopub = await run_split_secret(
        jp_fetch,
        jp_ws_fetch,
        jp_serverapp,
        protocol,
        SECRET,
        len(SECRET) // 2,
        pause=1.5,
        interject=True,
    )
    text = stream_text(iopub)
    assert "<SECRET>" in text and "end" in text


# No digit and no '@': chunks of it take the raw fast path unless they hold its gate byte ('Q').
DIGITLESS_SECRET = 'Zebra"Quote\\Slash-secret'


async def test_digitless_secret_is_redacted_whole_and_split(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, protocol: str
) -> None:
    cut = DIGITLESS_SECRET.index("Q") + 2  # the second half has no gate byte: not decoded alone
    iopub = await run_split_secret(
        jp_fetch, jp_ws_fetch, jp_serverapp, protocol, DIGITLESS_SECRET, cut, whole=True
    )
    assert stream_text(iopub).endswith(" end\nwhole <SECRET>\n")


async def test_email_split_after_clean_chunk_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    # The first chunk is clean (fast path, not decoded); the second has the '@'.
    code = (
        "import sys\nsys.stdout.write('clean words then mail ann.smith'); sys.stdout.flush()\n"
        "print('@example.com ok')"
    )
    iopub, _ = await kc.execute(code)
    text = stream_text(iopub)
    assert "ann.smith" not in text and "example.com" not in text
    assert text.startswith("clean words then mail ") and text.endswith(" ok\n")


async def test_clean_output_passes_unchanged_in_order(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    code = "for w in ('alpha', 'beta', 'gamma'):\n    print(w * 3, flush=True)\n'done'"
    iopub, _ = await kc.execute(code)
    assert stream_text(iopub) == "alphaalphaalpha\nbetabetabeta\ngammagammagamma\n"
    (result,) = [m for m in iopub if m["header"]["msg_type"] == "execute_result"]
    assert result["content"]["data"]["text/plain"] == "'done'"


async def test_pii_split_across_flushes_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    code = "import sys\nsys.stdout.write('ssn 536-2'); sys.stdout.flush()\nprint('2-1234 ok')"
    iopub, _ = await kc.execute(code)
    text = stream_text(iopub)
    assert "536-2" not in text and "2-1234" not in text and text.endswith(" ok\n")


@pytest.mark.parametrize("guard_config", [{"PIIPolicy": {"actions": {"US_SSN": "block"}}}])
async def test_blocked_output_shows_notice_and_cell_completes(
    jp_fetch: Any, jp_ws_fetch: Any, recorder: Recorder, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    iopub, reply = await kc.execute(
        f"print('x {SSN}')\nfrom IPython.display import display\n"
        f"display({{'text/plain': 'y {SSN}'}}, raw=True)"
    )
    assert reply["content"]["status"] == "ok"
    text = stream_text(iopub)
    assert "output blocked by the PII policy (US_SSN x1)" in text and SSN not in text
    (disp,) = [m for m in iopub if m["header"]["msg_type"] == "display_data"]
    assert "blocked" in disp["content"]["data"]["text/plain"]
    assert disp["content"]["metadata"]["prod_discovery"]["action"] == "block"
    assert iopub[-1]["content"] == {"execution_state": "idle"}
    assert {d["action"] for d in recorder.of("pii")} == {"block"}


async def test_warn_passes_output_with_notice_metadata(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    iopub, _ = await kc.execute("'from 10.20.30.40'")
    (result,) = [m for m in iopub if m["header"]["msg_type"] == "execute_result"]
    assert result["content"]["data"]["text/plain"] == "'from 10.20.30.40'"
    assert result["content"]["metadata"]["prod_discovery"]["action"] == "warn"


async def test_error_traceback_is_redacted(jp_fetch: Any, jp_ws_fetch: Any, protocol: str) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    iopub, reply = await kc.execute(f"raise ValueError('bad {EMAIL}')")
    assert reply["content"]["status"] == "error"
    (err,) = [m for m in iopub if m["header"]["msg_type"] == "error"]
    assert EMAIL not in str(err["content"]) and "<EMAIL_ADDRESS>" in err["content"]["evalue"]


@pytest.mark.parametrize(
    "guard_config",
    [{"PIIGuard": {"inline_limit": 100, "latency_budget": 0.0, "over_budget": "block"}}],
)
async def test_over_budget_output_is_withheld(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, V1)
    iopub, reply = await kc.execute("print('row 12345 ' * 50)\nprint('short')")
    assert reply["content"]["status"] == "ok"
    text = stream_text(iopub)
    assert "could not be scanned within the latency budget" in text and "row" not in text


@pytest.mark.parametrize(
    "guard_config",
    [{"PIIGuard": {"inline_limit": 100, "latency_budget": 0.0, "over_budget": "block"}}],
)
async def test_large_output_without_candidates_is_cleared_inline(
    jp_fetch: Any, jp_ws_fetch: Any
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, V1)
    iopub, _ = await kc.execute("print('harmless ' * 50)")
    assert stream_text(iopub) == "harmless " * 50 + "\n"


@pytest.mark.parametrize("guard_config", [{"PIIGuard": {"inline_limit": 100}}])
async def test_large_output_is_scanned_off_loop_in_order(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, V1)
    code = f"print('a' * 500 + ' {EMAIL}')\nprint('after')\n'{EMAIL}' * 10"
    iopub, _ = await kc.execute(code)
    text = stream_text(iopub)
    assert EMAIL not in text and text.endswith("<EMAIL_ADDRESS>\nafter\n")
    (result,) = [m for m in iopub if m["header"]["msg_type"] == "execute_result"]
    assert EMAIL not in result["content"]["data"]["text/plain"]


async def test_execute_request_and_reply_are_audited(
    jp_fetch: Any, jp_ws_fetch: Any, recorder: Recorder, protocol: str
) -> None:
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    await kc.execute("1 + 1")
    req, rep = recorder.of("execution")[-2:]
    assert req["phase"] == "request" and req["code"] == "1 + 1" and req["cell_id"] == "cell-1"
    assert req["kernel_id"] == kid and len(req["code_sha256"]) == 64
    assert rep == {
        "phase": "reply",
        "kernel_id": kid,
        "session": req["session"],
        "msg_id": req["msg_id"],
        "status": "ok",
    }


async def test_many_flushed_prints_lose_no_message(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    # 20,000 in the protocol JupyterLab 4 uses; fewer in legacy JSON to keep the suite short.
    n = 20_000 if protocol == V1 else 5_000
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    iopub, reply = await kc.execute(f"for i in range({n}): print(i, flush=True)", timeout=240)
    assert reply["content"]["status"] == "ok"
    assert stream_text(iopub).split() == [str(i) for i in range(n)]


@pytest.mark.parametrize("guard_config", [{"PIIGuard": {"stream_hold_timeout": 0.1}}])
async def test_late_stream_output_is_released_by_hold_timer(
    jp_fetch: Any, jp_ws_fetch: Any
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, V1)
    await kc.execute("import threading\nthreading.Timer(0.3, print, ('late 536-22-1234',)).start()")

    async def late() -> str:
        while True:
            msg = await kc.recv()
            if msg["header"]["msg_type"] == "stream":
                return str(msg["content"]["text"])

    assert await asyncio.wait_for(late(), 30) == "late <US_SSN>\n"


async def test_iopub_socket_gets_guard_hwm_when_it_connects(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zmq

    created: list[Any] = []
    real_socket = zmq.Context.socket

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        sock = real_socket(self, *args, **kwargs)
        created.append(sock)
        return sock

    monkeypatch.setattr(zmq.Context, "socket", spy)
    kernel = json.loads((await jp_fetch("api", "kernels", method="POST", body="{}")).body)
    kernel_id = kernel["id"]
    before = len(created)  # the server's own activity monitor (default HWM) is older
    ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels", subprotocols=[V1])
    _, reply = await KernelClient(ws, V1).execute("1 + 1")
    assert reply["content"]["status"] == "ok"
    guard = jp_serverapp.web_app.settings["prod_discovery"].pii_guard
    iopub = [s for s in created[before:] if not s.closed and s.type == zmq.SUB]
    assert len(iopub) == 1
    assert iopub[0].rcvhwm == guard.iopub_rcvhwm  # zmq's default would be 1000
    # Only the sockets of that connection: the context's own default is back.
    context = jp_serverapp.kernel_manager.get_kernel(kernel_id).context
    assert zmq.RCVHWM not in context.sockopts
