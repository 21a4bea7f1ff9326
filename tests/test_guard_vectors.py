"""One test per way a value could reach the browser past the live guard, in both protocols.

Each test makes a real kernel send the value through one vector (a channel, a message type, a
MIME type, an encoding trick) and fails if the value is visible in anything the client
receives, judged by :func:`visible`: what the frontend would show (JupyterLab's overstrike
rules, ANSI codes and invisible characters removed, NFKC, HTML entities decoded and tags
removed), reduced to digits for the SSN and to its words for the email.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from guard_support import KernelClient, Recorder, open_kernel, recorder

__all__ = ["recorder"]  # the fixtures, imported

SSN, EMAIL = "536-22-1234", "ann.smith@example.com"
SECRET = "tok-3f9a8b7c6d5e4f30aa"
CARD = "4111111111111111"


@pytest.fixture
def prod_discovery_extension_config(guard_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "ZMQChannelsWebsocketConnection": {"limit_rate": False},
        "ServerApp": {"log_level": "WARN"},
        **guard_config,
    }


# --- the oracle: what a person would see -------------------------------------------------------
def _overstrike(text: str) -> str:
    """JupyterLab's removeOverwrittenChars (fixBackspace, then fixCarriageReturn)."""
    while True:
        new = re.sub(r"[^\n]\x08", "", text)
        if new == text:
            break
        text = new
    text = re.sub(r"\r+\n", "\n", text)
    lines = []
    for line in text.split("\n"):
        shown = ""
        for seg in line.split("\r"):
            shown = seg + shown[len(seg) :]
        lines.append(shown)
    return "\n".join(lines)


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield str(obj)


def visible(messages: list[dict[str, Any]]) -> str:
    """Everything a client could show from these messages, as a person would read it."""
    texts: list[str] = []
    stream = ""
    for m in messages:
        if m["header"]["msg_type"] == "execute_input":
            continue  # the user's own code, echoed
        if m["header"]["msg_type"] == "stream":
            stream += m["content"]["text"]  # the frontend joins a stream's chunks
            continue
        texts.extend(_strings(m["content"]))
        texts.extend(b.decode("latin-1") for b in m.get("buffers", []))
    texts.append(stream)
    out = []
    for t in texts:
        t = _overstrike(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", t))
        t = re.sub(r"<[^>]*>", "", html.unescape(re.sub(r"<!--.*?-->", "", t, flags=re.S)))
        t = re.sub(r"\\,|\\[A-Za-z]+|[{}$*_]", "", t)  # LaTeX and Markdown markup
        t = "".join(c for c in t if unicodedata.category(c) not in ("Cf", "Cc") or c == "\n")
        out.append(unicodedata.normalize("NFKC", t).replace("\u2212", "-"))
    return "\n".join(out)


def leaked(messages: list[dict[str, Any]], *values: str) -> list[str]:
    shown = visible(messages)
    digits = "".join(c for c in shown if c.isdigit())
    found = []
    for v in values or (SSN, EMAIL):
        if (v == SSN and "536221234" in digits) or (
            v != SSN and (v in shown or v.split("@")[0] in shown)
        ):
            found.append(v)
    return found


# --- a client that keeps every message of a request --------------------------------------------
async def run(
    kc: KernelClient,
    msg_type: str = "execute_request",
    channel: str = "shell",
    timeout: float = 60,
    **content: Any,
) -> list[dict[str, Any]]:
    """Send one request; return every message answering it, on every channel, until its
    reply (and, for executions, the idle status); input requests are answered 'y'."""
    if msg_type == "execute_request":
        content = {"silent": False, "store_history": True, "allow_stdin": True, **content}
    msg_id = await kc.request(msg_type, content, channel=channel)
    got: list[dict[str, Any]] = []
    reply_type = msg_type.replace("_request", "_reply")

    async def loop() -> None:
        replied = idle = False
        while not (replied and (idle or msg_type != "execute_request")):
            msg = await kc.recv()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            got.append(msg)
            mt = msg["header"]["msg_type"]
            if mt == reply_type:
                replied = True
            elif mt == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            elif mt == "input_request":
                await kc.request("input_reply", {"value": "y"}, channel="stdin")

    await asyncio.wait_for(loop(), timeout)
    return got


async def execute(kc: KernelClient, code: str, **content: Any) -> list[dict[str, Any]]:
    return await run(kc, code=code, **content)


def of(messages: list[dict[str, Any]], msg_type: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["header"]["msg_type"] == msg_type]


DISPLAY = "from IPython.display import display, HTML, SVG, Latex, Markdown, Javascript\n"

# (vector, code): each prints or displays the SSN and the email through one trick.
OUTPUT_VECTORS = [
    ("zero_width", "print('ssn 5\\u200b36-2\\u00ad2-12\\u200c34 ann.smi\\u200dth@example.com')"),
    ("fullwidth", "print('ssn \\uff15\\uff13\\uff16-\\uff12\\uff12-\\uff11\\uff12\\uff13\\uff14')"),
    ("ansi", "print('ssn 536\\x1b[1m-22-\\x1b[0m1234 ann.smith\\x1b[31m@\\x1b[0mexample.com')"),
    ("backspace", "print('ssn 536-22-12X\\b34 ann.smithX\\b@example.com')"),
    ("carriage_return", "print('XXX-22-1234\\r536')"),
    (
        "stream_carriage_return_across_flushes",
        "import sys\nsys.stdout.write('XXX-22-1234 pad'); sys.stdout.flush()\n"
        "import time; time.sleep(0.6)\nsys.stdout.write('\\r536'); sys.stdout.flush()",
    ),
    ("html_entities", DISPLAY + "display(HTML('ssn &#53;36-22-1234 ann.smith&#64;example.com'))"),
    (
        "html_tags_comments",
        DISPLAY + "display(HTML('536-<b></b>22-<!-- x -->1234 ann<i>.</i>smith@example.com'))",
    ),
    (
        "css_content",
        DISPLAY
        + "display(HTML('<style>.q::after{content:\"\\\\35 36-22-1234\"}</style><span class=q>x</span>'))",
    ),
    ("latex", DISPLAY + "display(Latex(r'$5\\,3\\,6-22-1234$ \\text{ann.smith@example.com}'))"),
    (
        "svg",
        DISPLAY
        + "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"><text>536-22</text><text>-1234</text></svg>'))",
    ),
    (
        "javascript",
        DISPLAY
        + "display(Javascript('element.text(String.fromCharCode(53,51,54,45,50,50,45,49,50,51,52))'))",
    ),
    (
        "markdown",
        DISPLAY + "display(Markdown('ssn 536\\\\-**22**-1234 ann.smith&#64;example.com'))",
    ),
    (
        "vegalite",
        "display({'application/vnd.vegalite.v5+json': {'data': {'values': [{'ssn': '536-22-1234', 'e': 'ann.smith@example.com'}]}, 'mark': 'text'}}, raw=True)",
    ),
    (
        "json_keys_numbers",
        "display({'application/json': {'ann.smith@example.com': 4111111111111111, 'ssn 536-22-1234': 1}}, raw=True)",
    ),
    (
        "update_display_data",
        DISPLAY
        + "h = display('x', display_id=True)\nh.update('ssn 536-22-1234 ann.smith@example.com')",
    ),
    ("error", "raise ValueError('ssn 536-22-1234 ann.smith@example.com')"),
    (
        "comm_open_and_buffers",
        "from comm import create_comm\n"
        "c = create_comm(target_name='pd.test', data={'v': 'ann.smith@example.com'}, buffers=[b'ssn 536-22-1234'])\n"
        "c.send(data={'w': 'ssn 536-22-1234'}, buffers=[b'ann.smith@example.com'])",
    ),
]


@pytest.mark.parametrize(("vector", "code"), OUTPUT_VECTORS, ids=[v for v, _ in OUTPUT_VECTORS])
async def test_output_vector_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, recorder: Recorder, protocol: str, vector: str, code: str
) -> None:
    kid, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    messages = await execute(kc, code)
    assert of(messages, "execute_reply"), vector
    assert leaked(messages, SSN, EMAIL, CARD) == [], (vector, visible(messages))
    pii = recorder.of("pii")
    assert pii and all(d["kernel_id"] == kid for d in pii), vector  # and audited


async def test_active_content_is_dropped_with_server_marker(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    messages = await execute(kc, DISPLAY + "display(Javascript('alert(1)'))")
    (disp,) = of(messages, "display_data")
    assert "application/javascript" not in disp["content"]["data"]
    marker = disp["content"]["metadata"]["prod_discovery"]
    assert marker["entities"] == {"ACTIVE_CONTENT": 1}


@pytest.mark.parametrize("pause", [0.6, 3.0])
async def test_value_split_by_pause_between_flushes_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str, pause: float
) -> None:
    """Longer than stream_hold_timeout (0.25 s by default): the end of the first chunk is held
    back until the rest comes, so neither half of the SSN is shown."""
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    code = (
        "import sys, time\nsys.stdout.write('row 1 ssn 536-2'); sys.stdout.flush()\n"
        f"time.sleep({pause})\nprint('2-1234 ok')"
    )
    messages = await execute(kc, code)
    text = "".join(m["content"]["text"] for m in of(messages, "stream"))
    assert text == "row 1 ssn <US_SSN> ok\n"


async def test_stream_end_is_shown_when_cell_finishes(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    messages = await execute(
        kc, "import sys, time\nsys.stdout.write('no newline'); time.sleep(0.6)"
    )
    text = "".join(m["content"]["text"] for m in of(messages, "stream"))
    assert text == "no newline"
    assert messages[-1]["header"]["msg_type"] in ("status", "execute_reply")


async def test_prompt_before_input_is_shown_while_kernel_waits(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    """A prompt printed without a line break is not held back until the cell ends: the kernel
    waits for input, and the user must see what it asks."""
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    code = "print('Your name? ', end='')\nx = input()\nprint('got', x)"
    msg_id = await kc.request(
        "execute_request", {"code": code, "silent": False, "allow_stdin": True}
    )
    asked = shown = False
    while not (asked and shown):  # no answer until the prompt is on screen
        msg = await asyncio.wait_for(kc.recv(), 10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        asked = asked or msg["header"]["msg_type"] == "input_request"
        if msg["header"]["msg_type"] == "stream":
            shown = shown or "Your name?" in msg["content"]["text"]
    await kc.request("input_reply", {"value": "y"}, channel="stdin")


# --- replies, prompts, comm and control messages -----------------------------------------------
async def test_pager_payload_is_redacted(jp_fetch: Any, jp_ws_fetch: Any, protocol: str) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    await execute(kc, f"def f():\n    '''Owner {EMAIL}, ssn {SSN}.'''")
    messages = await execute(kc, "f?")
    (reply,) = of(messages, "execute_reply")
    assert reply["content"]["payload"], "no pager payload"
    assert leaked(messages) == []


async def test_execute_reply_error_and_user_expressions_are_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    await execute(kc, f"x = '{EMAIL} {SSN}'")
    messages = await execute(kc, "raise KeyError(x)", user_expressions={"e": "x"})
    (reply,) = of(messages, "execute_reply")
    assert reply["content"]["status"] == "error" and reply["content"]["traceback"]
    assert leaked([reply]) == [], reply["content"]
    messages = await execute(kc, "1", user_expressions={"e": "x"})
    (reply,) = of(messages, "execute_reply")
    assert reply["content"]["user_expressions"]["e"]["status"] == "ok"
    assert leaked([reply]) == [], reply["content"]


@pytest.mark.parametrize(
    ("msg_type", "content"),
    [
        ("inspect_request", {"code": "x", "cursor_pos": 1, "detail_level": 0}),
        ("complete_request", {"code": "d['", "cursor_pos": 3}),
        ("history_request", {"output": True, "raw": True, "hist_access_type": "tail", "n": 10}),
    ],
    ids=["inspect_reply", "complete_reply", "history_reply"],
)
async def test_shell_reply_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str, msg_type: str, content: dict[str, Any]
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    await execute(kc, f"x = '{EMAIL} {SSN}'\nd = {{'{EMAIL}': 1}}\nx")
    messages = await run(kc, msg_type, **content)
    (reply,) = of(messages, msg_type.replace("_request", "_reply"))
    assert reply["content"]["status"] == "ok"
    probe = json.dumps(reply["content"])
    assert "EMAIL_ADDRESS" in probe, probe  # the value was there, and was redacted
    assert leaked([reply]) == [], probe


async def test_input_request_prompt_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    messages = await execute(kc, f"input('Confirm {EMAIL} ({SSN})? ')")
    (req,) = of(messages, "input_request")
    assert "<EMAIL_ADDRESS>" in req["content"]["prompt"] and leaked([req]) == []


async def test_control_debug_reply_is_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    await execute(kc, f"x = '{EMAIL} {SSN}'")
    request = {"type": "request", "seq": 1, "command": "richInspectVariables"}
    messages = await run(
        kc, "debug_request", channel="control", **request, arguments={"variableName": "x"}
    )
    (reply,) = of(messages, "debug_reply")
    assert reply["content"].get("body"), reply["content"]
    assert "EMAIL_ADDRESS" in json.dumps(reply["content"]) and leaked([reply]) == []


# --- markers and secrets -------------------------------------------------------------------------
FORGED = {"action": "block", "entities": {"US_SSN": 99}}


async def test_kernel_cannot_forge_guard_markers(
    jp_fetch: Any, jp_ws_fetch: Any, protocol: str
) -> None:
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    code = (
        f"forged = {FORGED!r}\n"
        "display({'text/plain': 'fine'}, raw=True, metadata={'prod_discovery': forged})\n"
        "k = get_ipython().kernel\n"
        "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'plain\\n'},"
        " parent=k.get_parent(), metadata={'prod_discovery': forged})\n"
    )
    messages = await execute(kc, code)
    for m in messages:
        assert "prod_discovery" not in m.get("metadata", {}), m
        assert "prod_discovery" not in (m["content"].get("metadata") or {}), m


async def test_secret_of_another_kernel_and_server_token_are_redacted(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, protocol: str
) -> None:
    app = jp_serverapp.web_app.settings["prod_discovery"]
    kid_a, _ = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    app.secrets.set(kid_a, [SECRET])
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    token = jp_serverapp.identity_provider.token
    assert token
    messages = await execute(kc, f"print({SECRET!r})\nprint({token!r})")
    text = "".join(m["content"]["text"] for m in of(messages, "stream"))
    assert SECRET not in text and token not in text
    assert text == "<SECRET>\n<SECRET>\n"
