"""The PII guard: policy + scanner + per-kernel secret matchers, applied to message payloads.

``PIIGuard`` is the configurable object the server owns (``app.pii_guard``). It knows how to scan
and rewrite each kind of Jupyter output payload; the websocket connection (``connection.py``)
decides *when* (ordering, stream hold-back, off-loop scans) and the save hook (``save.py``) does
the same for files. Nothing here logs or returns a matched value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from traitlets import Bool, Enum, Float, Instance, Int, List, Unicode, default, observe
from traitlets.config import LoggingConfigurable

from ..pii import Finding, PIIPolicy, Scanner, SecretMatcher, Verdict, redact
from ..pii.secrets import KEYWORD_MARKERS, TOKEN_MARKERS
from .bytescan import ByteSet
from .normalize import active_reason, kind_of, render
from .scancache import Memo, ScanCache

__all__ = [
    "MARKED_TYPES",
    "SCANNED_MIME",
    "SCANNED_TYPES",
    "UNSCANNED_TYPES",
    "PIIGuard",
    "Scan",
]

#: iopub messages that carry output (kept for callers; every other type is scanned too).
SCANNED_TYPES = frozenset(
    (
        "stream",
        "execute_result",
        "display_data",
        "update_display_data",
        "error",
        "comm_open",
        "comm_msg",
        "comm_close",
    )
)
#: Messages that cannot carry kernel-made text (states, the user's own code, acks).
UNSCANNED_TYPES = frozenset(
    ("status", "execute_input", "clear_output", "shutdown_reply", "interrupt_reply")
)
#: Outputs with a ``metadata`` dict where the guard leaves its marker for the frontend.
MARKED_TYPES = frozenset(("execute_result", "display_data", "update_display_data"))
#: Outputs a block replaces whole by the notice; in other messages each string is replaced.
BLOCK_WHOLE = frozenset(
    ("stream", "error", "execute_result", "display_data", "update_display_data", "comm_msg")
)
SCANNED_MIME = ("text/plain", "text/html", "text/markdown", "application/json")
#: Protocol fields holding identifiers or enumerations, never kernel-made text.
IDENTIFIER_KEYS = frozenset(
    (
        "comm_id",
        "msg_id",
        "msg_type",
        "target_name",
        "target_module",
        "output_type",
        "status",
        "execution_state",
        "display_id",
        "model_id",
        "session",
        "version",
        "protocol_version",
        "_model_module",
        "_model_module_version",
        "_model_name",
        "_view_module",
        "_view_module_version",
        "_view_name",
    )
)
MARKER_KEY = "prod_discovery"
#: The ``SecretRegistry`` entry holding the server's own tokens (see ``setup.server_secrets``).
SERVER_SECRETS = "__server__"
NOTICE = "[Prod Discovery: output blocked by the PII policy ({})]"
ACTIVE_NOTICE = (
    "[Prod Discovery: removed {} (content that can show text the PII guard cannot scan)]"
)
# Raw JSON bytes without which no pattern entity can be displayed: every one holds an ASCII
# digit or an '@' (the scanner's own gate), or a character NFKC maps to one (non-ASCII: every
# byte from 0x80 is a gate byte) or an HTML entity naming one (``&commat;``).
_RAW_GATE = frozenset(b"0123456789@&") | frozenset(range(0x80, 0x100))
_RANK = {"allow": 0, "warn": 1, "redact": 2, "block": 3}


#: Bytes from least to most common in packed text output (markup and path characters first,
#: then letters by English frequency; ':' and ' ' are in every packed message).
_RARITY = b"<\\/_-zqjxkvbpygfwmucldrhsnioate: "


#: Markers of the policy's gate that the live raw gate leaves out (see ``_split_gate``).
_UNGATED = frozenset([b"\\u", b"  ", *(m.encode() for m in (*KEYWORD_MARKERS, *TOKEN_MARKERS))])


def _rarest(marker: bytes) -> bytes:
    ranked = sorted(marker, key=lambda c: _RARITY.find(bytes([c])) % (len(_RARITY) + 1))
    return bytes([ranked[0]])


def _split_gate(
    policy_gate: tuple[bytes, ...] | None,
) -> tuple[frozenset[int] | None, tuple[tuple[bytes, tuple[bytes, ...]], ...]]:
    """The raw gate as (byte values, markers grouped by their least common byte): the guard's
    own bytes (digits, '@', '&', every non-ASCII byte) plus what the policy names
    (``PIIPolicy.raw_gate``: capitals where names or credentials are on, keywords, ``<t`` of
    an HTML table); (None, ()) when no gate exists (NER finds names anywhere).

    Left out, because a needle of common bytes would cost the hot path ~60-100 us per 100 KB
    each (measured; the budget is ~50 us): ``\\u`` (an escape standing for a digit or '@' holds
    a digit itself, and a non-ASCII payload is never clean); the two spaces of a text table's
    alignment (every packed message holds ``": "``); credential keywords and token prefixes (a
    token's random part holds a digit or a capital: 20 base62 characters without either, about
    3e-8). A keyword's value without digit or capital passes the gate through the policy's '='
    (``password = hunterhunter``); after ':' (``secret: hunterhunter``) it is found on save,
    by ``scan`` and the export gate, not live. The scanner looks for names only in text
    holding a capital or a non-ASCII character (``scanner.may_hold_words``), so an
    all-lowercase text table is found nowhere, live or on save.
    """
    if policy_gate is None:
        return None, ()
    single = _RAW_GATE | {b[0] for b in policy_gate if len(b) == 1}
    groups: dict[bytes, list[bytes]] = {}
    for marker in dict.fromkeys(b for b in policy_gate if len(b) > 1):
        if marker in _UNGATED:
            continue
        groups.setdefault(_rarest(marker), []).append(marker)
    return frozenset(single), tuple((b, tuple(ms)) for b, ms in groups.items())


# Text of spaces, tabs, line breaks and at most eight ASCII digits: a counter, a length, a small
# result, most of what loops print. No finding of the policy can be in it (without NER): every
# pattern entity holds a letter, an '@', a separator (``. : / - +``) or nine digits (the scanner
# reads a number only from nine digits on), names and credentials a letter, a table's column a
# header word; and it displays as itself in every kind. Only a live secret can be there.
# ``tests/test_guard_live.py`` checks this against the scanner.
_FEW_DIGITS = re.compile(r"[ \t\n]*(?:[0-9][ \t\n]*){0,8}")


BUDGET_NOTICE = (
    "[Prod Discovery: output withheld, it could not be scanned within the latency budget]"
)
_PASSTHROUGH = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "application/pdf",
)
# Content fields holding JSON made by the kernel (comm data, debugger bodies, metadata).
_DATA_KEYS = frozenset(("data", "body", "metadata", "state", "buffer_paths"))
_VEGA_ACTIVE_KEYS = frozenset(
    ("expr", "calculate", "signal", "signals", "url", "filter", "update", "on", "loader")
)


class Scan:
    """Result of scanning one payload: the verdict and the rewritten content (or None)."""

    __slots__ = ("content", "verdict")

    def __init__(self, verdict: Verdict, content: dict[str, Any] | None) -> None:
        self.verdict = verdict
        self.content = content


def summary(entities: dict[str, int]) -> str:
    """'US_SSN x1, EMAIL_ADDRESS x2': types and counts only, never values."""
    return ", ".join(f"{k} x{v}" for k, v in sorted(entities.items()))


def map_strings(obj: Any, fn: Callable[[str], str]) -> Any:
    """Apply ``fn`` to every string inside a JSON value (widget state, application/json)."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, list):
        return [map_strings(v, fn) for v in obj]
    if isinstance(obj, dict):
        return {k: map_strings(v, fn) for k, v in obj.items()}
    return obj


class PIIGuard(LoggingConfigurable):
    """Scan outputs (live and on save) and apply the :class:`~..pii.PIIPolicy`."""

    enabled = Bool(
        True,
        config=True,
        help="""Guard kernel outputs over the websocket and files on save. Default True. When
        False the websocket class still audits execute requests but passes outputs unscanned.""",
    )
    inline_limit = Int(
        65536,
        config=True,
        help="""Payloads up to this many characters are scanned on the event loop (microseconds
        to a few ms); larger ones go to a worker thread. Default 65536.""",
    )
    latency_budget = Float(
        2.0,
        config=True,
        help="""Seconds an off-loop scan may take before ``over_budget`` applies. Default 2.0.
        0 applies the rule at once to every payload over ``inline_limit``.""",
    )
    over_budget = Enum(
        ["hold", "block"],
        default_value="hold",
        config=True,
        help="""What happens to an output whose scan exceeds ``latency_budget``: 'hold' (default)
        keeps it, and every later output of the kernel, until the scan ends; 'block' replaces
        it with a notice at once. Either way nothing is ever passed unscanned.""",
    )
    stream_window = Int(
        64,
        config=True,
        help="""Characters at the end of a stream message rescanned with the start of the next
        one, so a value split across two flushes is caught. Default 64 (raised automatically
        to the longest secret).""",
    )
    stream_hold_timeout = Float(
        0.25,
        config=True,
        help="""Seconds the last stream message is held back waiting for its continuation, when
        neither a new message nor the idle status arrives. Default 0.25.""",
    )
    secret_hold_timeout = Float(
        10.0,
        config=True,
        help="""Seconds a held stream chunk whose end could begin a live secret of its kernel is
        kept back (instead of stream_hold_timeout) waiting for its continuation, so a secret
        written in two flushes far apart is still redacted whole. Default 10.""",
    )

    def may_continue_secret(self, text: str, kernel_id: str) -> bool:
        """True when ``text`` ends with the beginning (2+ characters) of a secret of the kernel."""
        if self.secrets is None or not text:
            return False
        for secret in self.matcher(kernel_id).values:
            for k in range(min(len(secret) - 1, len(text)), 1, -1):
                if text.endswith(secret[:k]):
                    return True
        return False

    iopub_rcvhwm = Int(
        0,
        config=True,
        help="""ZMQ receive high-water mark of the server's iopub socket for guarded connections.
        Default 0 (unlimited): a burst of output is buffered in the server rather than dropped
        silently by ZMQ (its default, 1000, loses messages under 20,000 quick prints).""",
    )
    active_content = Enum(
        ["drop", "scan", "allow"],
        default_value="drop",
        config=True,
        help="""Outputs that can show text they do not contain: JavaScript, HTML or SVG with
        scripts, event handlers or CSS-generated text, LaTeX building characters from codes,
        Vega specs with expressions or remote data. 'drop' (default): removed from the output
        (the frontend shows the text/plain alternative or a notice); 'scan': scanned as text
        like the rest (what they compute at display time is not seen); 'allow': passed
        unscanned.""",
    )
    passthrough_mime = List(
        Unicode(),
        default_value=list(_PASSTHROUGH),
        config=True,
        help=f"""MIME types passed unscanned because they hold pixels or binary documents, not
        text (the guard does no OCR). Default {list(_PASSTHROUGH)}. Every other type is scanned
        as text or JSON, or handled by ``active_content``.""",
    )
    secrets_scope = Enum(
        ["server", "kernel"],
        default_value="server",
        config=True,
        help="""Which live secrets are redacted in a kernel's output. 'server' (default, a
        single-user server): every secret issued to any kernel of this server and the server's
        own tokens, in every kernel's output. 'kernel': only those issued to that kernel (and
        the server's tokens).""",
    )
    save_cache_chars = Int(
        20_000_000,
        config=True,
        help="""Characters of output text whose scan results the save guard keeps, so that a
        save of outputs already scanned (JupyterLab saves the whole notebook on every save and
        autosave) does not scan them again. Keyed by the exact text and everything its result
        depends on (the policy, the guard's settings, the live secrets); the least recently
        used are evicted first. Default 20,000,000 (about 20 MB of ASCII text, up to 4 bytes
        a character otherwise). 0 turns the cache off.""",
    )
    scan_reads = Bool(
        True,
        config=True,
        help="""Scan what the contents API returns, as a save is scanned, before it reaches the
        browser: a notebook or text file written outside this server (by kernel code, a
        terminal, papermill, git) is shown redacted, or refused with a 403 when the policy
        blocks what it holds; the file on disk is not changed. Needs the Prod Discovery
        contents manager (with another one only saves are scanned). Default True.""",
    )
    policy = Instance(PIIPolicy)

    #: (secrets version, matcher, raw gate) per kernel key (see ``_live``).
    _matchers: dict[str, tuple[int, SecretMatcher, ByteSet | None]]

    # ``on`` mirrors ``enabled`` as a plain attribute: it is read for every outgoing message.
    on = True

    @observe("enabled")
    def _mirror_enabled(self, change: Any = None) -> None:
        self.on = bool(self.enabled)

    # ``reads_on`` mirrors ``enabled and scan_reads``: it is read for every contents read.
    reads_on = True

    @observe("enabled", "scan_reads")
    def _mirror_reads(self, change: Any = None) -> None:
        self.reads_on = bool(self.enabled and self.scan_reads)

    @observe("passthrough_mime")
    def _mirror_passthrough(self, change: Any = None) -> None:
        self._passthrough = frozenset(m.lower() for m in self.passthrough_mime)

    @observe("secrets_scope")
    def _mirror_scope(self, change: Any = None) -> None:
        self._scope_server = self.secrets_scope == "server"
        self._matchers = {}

    @observe("save_cache_chars")
    def _resize_cache(self, change: Any) -> None:
        cache = self.__dict__.get("_save_cache")  # None while configured: built with the value
        if cache is not None:
            cache.resize(int(change["new"]))

    def _bump_config(self, change: Any) -> None:
        """Any trait of the guard or its policy changed: cached save scans are stale."""
        self.config_version += 1
        if change["name"] == "policy" and change["owner"] is self:
            change["new"].observe(self._bump_config)

    @default("policy")
    def _default_policy(self) -> PIIPolicy:
        return PIIPolicy(parent=self)

    def __init__(self, secrets: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._mirror_enabled()
        self._mirror_reads()
        self._mirror_passthrough()
        self.secrets = secrets
        self.scanner: Scanner = self.policy.scanner()
        self._raw_single, self._raw_multi = _split_gate(self.policy.raw_gate())
        self._matchers = {}
        self._no_secrets: tuple[int, SecretMatcher, ByteSet | None] | None = None
        self._mirror_scope()
        self._executor: ThreadPoolExecutor | None = None
        #: Bumped on every trait change of the guard or its policy (``scancache.generation``).
        self.config_version = 0
        self._save_cache = ScanCache(self.save_cache_chars)
        self.observe(self._bump_config)
        self.policy.observe(self._bump_config)

    # --- secrets --------------------------------------------------------------------------
    def matcher(self, kernel_id: str | None) -> SecretMatcher:
        """The compiled matcher for a kernel's output: every live secret of the server (or,
        with ``secrets_scope = 'kernel'``, the kernel's own and the server's tokens)."""
        return self._live(kernel_id)[1]

    def _live(self, kernel_id: str | None) -> tuple[int, SecretMatcher, ByteSet | None]:
        """(secrets version, matcher, raw gate) for a kernel's output, rebuilt when a secret
        changes. The raw gate is the policy's bytes plus one byte of each live secret
        (``SecretMatcher.gate``); None when no raw gate exists."""
        if self.secrets is None:
            if self._no_secrets is None:
                self._no_secrets = self._entry(-1, SecretMatcher(()))
            return self._no_secrets
        if self._scope_server:
            kernel_id = None
        key = kernel_id or "*"
        version = self.secrets.version
        hit = self._matchers.get(key)
        if hit is None or hit[0] != version:
            values = (
                self.secrets.get(kernel_id) | self.secrets.get(SERVER_SECRETS)
                if kernel_id
                else self.secrets.all()
            )
            hit = self._entry(version, SecretMatcher(values))
            self._matchers[key] = hit
        return hit

    def _entry(
        self, version: int, matcher: SecretMatcher
    ) -> tuple[int, SecretMatcher, ByteSet | None]:
        gate = matcher.gate
        if self._raw_single is None or gate is None:
            return version, matcher, None
        # A secret's gate byte that is not ASCII is covered by the non-ASCII bytes already.
        return version, matcher, ByteSet(self._raw_single | {g[0] for g in gate if len(g) == 1})

    def raw_clean(self, raw: bytes, kernel_id: str | None) -> bool:
        """True when a packed JSON payload provably holds no finding: no decode, no scan needed.

        Sound because jupyter_client packs JSON with ``ensure_ascii=False``: every non-ASCII
        character is in ``raw`` as UTF-8 (non-ASCII bytes are gate bytes: fullwidth digits,
        zero-width and other characters the display rewrites are never clean), and an ASCII
        one as itself or as an escape (``\\n``, ``\\r``, ``\\b``, ``\\u001b``...). No ASCII
        digit, '@' or '&' means no pattern entity as sent nor as displayed (overstrike and
        ANSI codes only remove characters; a ``\\u`` escape of another packer that could stand
        for a digit or '@' holds a digit itself), and no gate byte of any live secret means no
        secret and no fragment of one (so none can straddle into a neighbouring message
        either). NER finds names without such markers, so with ``ner`` on nothing is clean.
        The bytes are tested in one SIMD pass (``bytescan.ByteSet``: ~6 us per 100 KB).
        """
        gate = self._live(kernel_id)[2]
        if gate is None or not gate.absent_from(raw):
            return False
        # The policy's multi-byte markers (``<t`` of an HTML table) last, each behind a memchr
        # test of its least common byte: a needle of two or more bytes costs ~60-100 us per
        # 100 KB against ~1 us for one byte (measured), and a payload without that byte cannot
        # hold the needle.
        return not any(b in raw and any(m in raw for m in group) for b, group in self._raw_multi)

    def seam_closed(self, before: str, after: str, kernel_id: str | None) -> bool:
        """True when no finding can straddle the seam of ``before`` + ``after``.

        A line break closes the seam: no pattern entity contains one (digit runs, IBANs and
        IPs are matched without it, emails from an '@' with a line-free domain), except an email
        whose local part the scanner takes from before a line break directly ahead of the '@',
        hence the '@' test; secrets only when one spans lines. NER spans are not bounded so.
        Prints end with a line break, so their seams need no rescan.
        """
        if not before.endswith("\n") or after.startswith("@") or self.scanner.ner:
            return False
        return not self.matcher(kernel_id).multiline

    def save_memo(self) -> Memo | None:
        """A memo of text scans for one save (``scancache``), or None with the cache off."""
        return self._save_cache.begin(self)

    # --- text -----------------------------------------------------------------------------
    def find(self, text: str, kernel_id: str | None, kind: str = "plain") -> list[Finding]:
        """Policy-relevant findings plus exact secrets in one text, as sent and as displayed.

        ``kind`` says how the text is displayed (``normalize.KINDS``). A finding in the
        displayed text is returned as the range of sent characters that produce it, so that
        redacting it removes the value from what is sent; one already found as sent is not
        counted twice.
        """
        matcher = self.matcher(kernel_id)
        if _FEW_DIGITS.fullmatch(text) is not None and not self.scanner.ner:
            return matcher.find(text)
        found = self.scanner.scan(text) + matcher.find(text)
        rendered = render(text, kind)
        if rendered is None:
            return found
        shown = self.scanner.scan(rendered.text) + matcher.find(rendered.text)
        for f in shown:
            start, end = rendered.source(f.start, f.end)
            if any(g.start < end and start < g.end for g in found):
                continue
            found.append(Finding(f.entity_type, start, end, f.score))
        found.sort(key=lambda f: (f.start, f.end))
        return found

    def text(self, text: str, kernel_id: str | None, kind: str = "plain") -> tuple[Verdict, str]:
        """Verdict for one text and the text with redact/block spans replaced."""
        verdict = self.policy.decide(self.find(text, kernel_id, kind))
        if verdict.action in ("allow", "warn"):
            return verdict, text
        return verdict, redact(text, self.policy.to_redact(verdict))

    # --- payloads -------------------------------------------------------------------------
    def content(
        self,
        msg_type: str,
        content: dict[str, Any],
        kernel_id: str | None,
        memo: Memo | None = None,
    ) -> Scan:
        """Scan one message content; ``Scan.content`` is the new content, None if unchanged.

        Every string of the content is scanned (and every long number, and every key of JSON
        data), whatever the message type: outputs, replies (``execute_reply`` tracebacks,
        ``user_expressions`` and pager payloads, ``inspect_reply``, ``complete_reply``,
        ``history_reply``), ``input_request`` prompts, comm data, debugger replies. MIME bundles
        follow :meth:`_bundle`. Identifiers (``IDENTIFIER_KEYS``) are left as they are, and
        ``prod_discovery`` keys a kernel put in metadata are removed: only the server sets them.
        ``memo`` (a save's, for no kernel) gives the text scans of earlier saves.
        """
        walk = _Walk(self, kernel_id, memo=memo)
        new = walk.value(content, None)
        action = walk.action
        entities = walk.entities
        verdict = Verdict(action, [])
        verdict.entities = entities
        if action == "allow" and not entities and not walk.changed:
            return Scan(verdict, None)
        if action == "block" and msg_type in BLOCK_WHOLE:
            new = self.blocked(msg_type, content, entities)
        elif action in ("warn", "allow") and not walk.changed:
            new = dict(content)
        if msg_type in MARKED_TYPES and (entities or action != "allow"):
            meta = dict(new.get("metadata") or {})
            meta["prod_discovery"] = {"action": action, "entities": entities}
            new["metadata"] = meta
        changed = walk.changed or action != "allow" or (msg_type in MARKED_TYPES and entities)
        return Scan(verdict, new if changed else None)

    def data(self, value: Any, kernel_id: str | None = None, memo: Memo | None = None) -> Scan:
        """Scan a JSON value kept in a file (notebook or cell metadata, a JSON file): every
        string, key and long number; MIME bundles (dicts keyed by MIME types) by ``_bundle``.
        Unlike :meth:`content` it keeps ``prod_discovery`` keys (they are data here)."""
        walk = _Walk(self, kernel_id, strip_markers=False, memo=memo)
        new = walk.value(value, None, json_data=True)
        verdict = Verdict(walk.action, [])
        verdict.entities = walk.entities
        changed = walk.changed or walk.action in ("redact", "block")
        return Scan(verdict, new if changed else None)

    def blocked(
        self, msg_type: str, content: dict[str, Any], entities: dict[str, int] | None
    ) -> dict[str, Any]:
        """The notice that replaces a blocked (or unscannable, ``entities`` None) output."""
        notice = NOTICE.format(summary(entities)) if entities is not None else BUDGET_NOTICE
        if msg_type == "stream":
            return {**content, "text": notice + "\n"}
        if msg_type == "error":
            return {**content, "evalue": notice, "traceback": [notice]}
        if msg_type in ("comm_msg", "comm_open", "comm_close"):
            data = content.get("data", {}) if isinstance(content.get("data"), dict) else {}
            kept = {"method": data["method"]} if "method" in data else {}
            return {**content, "data": {**kept, "state": {}} if msg_type == "comm_msg" else kept}
        if msg_type in ("execute_result", "display_data", "update_display_data"):
            return {**content, "data": {"text/plain": notice}}
        return _notice_strings(content, notice)

    def _bundle(self, data: dict[str, Any], walk: _Walk) -> dict[str, Any]:
        """One MIME bundle by the content policy (README "What the live guard scans").

        Text kinds are scanned as sent and as rendered (HTML and SVG, Markdown, LaTeX); JSON
        kinds (``application/json``, Vega, Vega-Lite, widget views) string by string with
        their keys and long numbers; ``passthrough_mime`` types (pixels) pass unscanned. Content
        that can show text it does not contain (JavaScript; HTML or SVG with scripts, handlers
        or CSS-generated text; LaTeX building characters from codes; Vega expressions or remote
        data) is removed under ``active_content = 'drop'`` (default), scanned as text under
        'scan', passed under 'allow'.
        """
        out: dict[str, Any] = {}
        dropped: list[str] = []
        # The representations of a bundle show one value: count each entity once per value
        # (the most any representation holds), not once per representation.
        base = walk.entities
        counted: dict[str, int] = {}
        for mime, value in data.items():
            if not isinstance(mime, str):
                continue
            walk.entities = {}
            self._representation(mime, value, walk, out, dropped)
            for k, v in walk.entities.items():
                counted[k] = max(counted.get(k, 0), v)
        walk.entities = base
        for k, v in counted.items():
            base[k] = base.get(k, 0) + v
        if dropped:
            walk.changed = True
            walk.add("ACTIVE_CONTENT", len(dropped), "redact")
            if "text/plain" not in out:
                out["text/plain"] = ACTIVE_NOTICE.format(", ".join(dropped))
        return out

    def _representation(
        self, mime: str, value: Any, walk: _Walk, out: dict[str, Any], dropped: list[str]
    ) -> None:
        """One representation of a bundle into ``out`` (or ``dropped``), by the policy above."""
        base = mime.split(";", 1)[0].strip().lower()
        if base in self._passthrough and (isinstance(value, str | bytes) or value is None):
            out[mime] = value
            return
        reason = None
        kind = kind_of(base)
        text = _joined(value)
        if "javascript" in base or "ecmascript" in base:
            reason = "script"
            kind = "plain"
        elif kind is not None and text is not None:
            reason = active_reason(text, kind)
        elif "vega" in base and isinstance(value, dict | list) and _vega_active(value):
            reason = "Vega expression or remote data"
        if reason is not None and self.active_content == "drop":
            dropped.append(mime)
            return
        if reason is not None and self.active_content == "allow":
            out[mime] = value
            return
        if text is not None:
            out[mime] = walk.text(text, kind or "plain")
        else:
            out[mime] = walk.value(value, None, json_data=True)

    # --- off-loop ----------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run a heavy scan on the guard's worker thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="pii-guard")
        return self._executor.submit(fn, *args)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # --- audit ------------------------------------------------------------------------------
    def audit(self, audit: Any, where: dict[str, Any], verdict: Verdict, user: Any = None) -> None:
        """One ``pii`` audit event: location, entity types and counts, action. Never values."""
        if not verdict.entities:
            return
        entities = dict(verdict.entities)
        data = {**where, "entities": entities, "action": verdict.action}
        try:
            audit.record("pii", data, user=user)
        except Exception:  # the audit seam must never break the output path
            self.log.exception("could not audit a PII finding")


def _joined(value: Any) -> str | None:
    """A text MIME value (a string, or nbformat's list of lines) as one string, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "".join(value)
    return None


def _is_bundle(obj: dict[Any, Any]) -> bool:
    """A MIME bundle: a non-empty dict whose keys are all MIME types."""
    return bool(obj) and all(isinstance(k, str) and "/" in k and " " not in k for k in obj)


def _vega_active(spec: Any) -> bool:
    """True when a Vega or Vega-Lite spec computes text (expressions) or loads remote data."""
    stack = [spec]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if any(k in _VEGA_ACTIVE_KEYS for k in v):
                return True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _notice_strings(obj: Any, notice: str) -> Any:
    """Every non-identifier string of a message content replaced by the block notice."""
    if isinstance(obj, dict):
        return {
            k: v if k in IDENTIFIER_KEYS else _notice_strings(v, notice) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_notice_strings(v, notice) for v in obj]
    if isinstance(obj, str) and obj:
        return notice
    return obj


class _Walk:
    """One pass over a message content: scans, rewrites, and adds up verdicts."""

    __slots__ = ("action", "changed", "entities", "guard", "kernel_id", "memo", "strip_markers")

    def __init__(
        self,
        guard: PIIGuard,
        kernel_id: str | None,
        strip_markers: bool = True,
        memo: Memo | None = None,
    ) -> None:
        if memo is not None and kernel_id is not None:
            raise ValueError("a save memo holds scans for no kernel (every live secret)")
        self.guard = guard
        self.kernel_id = kernel_id
        self.memo = memo
        self.strip_markers = strip_markers
        self.action = "allow"
        self.entities: dict[str, int] = {}
        self.changed = False

    def add(self, entity: str, count: int, action: str) -> None:
        self.entities[entity] = self.entities.get(entity, 0) + count
        if _RANK[action] > _RANK[self.action]:
            self.action = action

    def text(self, text: str, kind: str = "plain") -> str:
        if self.memo is not None:
            verdict, out = self.memo.text(text, kind)
        else:
            verdict, out = self.guard.text(text, self.kernel_id, kind=kind)
        for k, v in verdict.entities.items():
            self.entities[k] = self.entities.get(k, 0) + v
        if _RANK[verdict.action] > _RANK[self.action]:
            self.action = verdict.action
        if verdict.action == "block":
            out = NOTICE.format(summary(verdict.entities))
        if out is not text and out != text:
            self.changed = True
        return out

    def value(self, obj: Any, key: str | None, json_data: bool = False) -> Any:
        if isinstance(obj, str):
            if not obj or key in IDENTIFIER_KEYS:
                return obj
            # Strings of widget state or debugger values may be shown as HTML.
            kind = "html" if json_data and ("<" in obj or "&" in obj) else "plain"
            return self.text(obj, kind)
        if isinstance(obj, dict):
            if (key == "data" or (json_data and key != "metadata")) and _is_bundle(obj):
                return self.guard._bundle(obj, self)
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                if k == MARKER_KEY and self.strip_markers and (key == "metadata" or not json_data):
                    self.changed = True  # only the server sets the guard's marker
                    continue
                nk = k
                if json_data and isinstance(k, str) and k:
                    nk = self.text(k)
                sub = json_data or k in _DATA_KEYS
                out[nk] = self.value(v, k if isinstance(k, str) else None, sub)
            return out
        if isinstance(obj, list):
            return [self.value(v, key, json_data) for v in obj]
        if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) >= 10**8:
            s = str(obj)
            r = self.text(s)
            return obj if r == s else r
        return obj
