"""The PII guard: policy + scanner + per-kernel secret matchers, applied to message payloads.

``PIIGuard`` is the configurable object the server owns (``app.pii_guard``). It knows how to scan
and rewrite each kind of Jupyter output payload; the websocket connection (``connection.py``)
decides *when* (ordering, stream hold-back, off-loop scans) and the save hook (``save.py``) does
the same for files. Nothing here logs or returns a matched value.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from traitlets import Bool, Enum, Float, Instance, Int, default, observe
from traitlets.config import LoggingConfigurable

from ..pii import Finding, PIIPolicy, Scanner, SecretMatcher, Verdict, redact

__all__ = ["SCANNED_MIME", "SCANNED_TYPES", "PIIGuard", "Scan"]

SCANNED_TYPES = frozenset(
    ("stream", "execute_result", "display_data", "update_display_data", "error", "comm_msg")
)
SCANNED_MIME = ("text/plain", "text/html", "text/markdown", "application/json")
NOTICE = "[Prod Discovery: output blocked by the PII policy ({})]"
# Raw JSON bytes that may stand for a pattern entity: every one holds an ASCII digit or an '@'
# (the scanner's own gate), and ``\\u`` escapes could hide any character.
_RAW_GATE = (*(bytes([c]) for c in b"0123456789@"), b"\\u")
BUDGET_NOTICE = (
    "[Prod Discovery: output withheld, it could not be scanned within the latency budget]"
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
        for secret in self.secrets.get(kernel_id):
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
    policy = Instance(PIIPolicy)

    # ``on`` mirrors ``enabled`` as a plain attribute: it is read for every outgoing message.
    on = True

    @observe("enabled")
    def _mirror_enabled(self, change: Any = None) -> None:
        self.on = bool(self.enabled)

    @default("policy")
    def _default_policy(self) -> PIIPolicy:
        return PIIPolicy(parent=self)

    def __init__(self, secrets: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._mirror_enabled()
        self.secrets = secrets
        self.scanner: Scanner = self.policy.scanner()
        self._matchers: dict[str, tuple[int, SecretMatcher]] = {}
        self._executor: ThreadPoolExecutor | None = None

    # --- secrets --------------------------------------------------------------------------
    def matcher(self, kernel_id: str | None) -> SecretMatcher:
        """The compiled matcher for a kernel's secrets (all live secrets when kernel is None)."""
        if self.secrets is None:
            return SecretMatcher(())
        key = kernel_id or "*"
        version = self.secrets.version
        hit = self._matchers.get(key)
        if hit is None or hit[0] != version:
            values = self.secrets.get(kernel_id) if kernel_id else self.secrets.all()
            hit = (version, SecretMatcher(values))
            self._matchers[key] = hit
        return hit[1]

    def raw_clean(self, raw: bytes, kernel_id: str | None) -> bool:
        """True when a packed JSON payload provably holds no finding: no decode, no scan needed.

        Sound because, with no ``\\u`` escape in ``raw``, every printable character of every
        string in it appears in ``raw`` as itself: no ASCII digit and no '@' means no pattern
        entity (the scanner finds none either), and no gate byte of any live secret means no
        secret and no fragment of one (so none can straddle into a neighbouring message
        either). NER finds names without such markers, so with ``ner`` on nothing is clean.
        A dozen memchr-speed ``in`` tests: ~10 us per 100 KB, far below a JSON decode.
        """
        if self.scanner.ner:
            return False
        gate = self.matcher(kernel_id).gate
        if gate is None:
            return False
        for b in _RAW_GATE:
            if b in raw:
                return False
        return all(b not in raw for b in gate)

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

    # --- text -----------------------------------------------------------------------------
    def find(self, text: str, kernel_id: str | None) -> list[Finding]:
        """Policy-relevant findings plus exact secrets in one text."""
        return self.scanner.scan(text) + self.matcher(kernel_id).find(text)

    def text(self, text: str, kernel_id: str | None) -> tuple[Verdict, str]:
        """Verdict for one text and the text with redact/block spans replaced."""
        verdict = self.policy.decide(self.find(text, kernel_id))
        if verdict.action in ("allow", "warn"):
            return verdict, text
        return verdict, redact(text, self.policy.to_redact(verdict))

    # --- payloads -------------------------------------------------------------------------
    def content(self, msg_type: str, content: dict[str, Any], kernel_id: str | None) -> Scan:
        """Scan one message content; ``Scan.content`` is the new content, None if unchanged."""
        entities: dict[str, int] = {}
        action = "allow"
        ranks = {"allow": 0, "warn": 1, "redact": 2, "block": 3}

        def fn(s: str) -> str:
            nonlocal action
            verdict, out = self.text(s, kernel_id)
            for k, v in verdict.entities.items():
                entities[k] = entities.get(k, 0) + v
            if ranks[verdict.action] > ranks[action]:
                action = verdict.action
            return out

        if msg_type == "stream":
            new: dict[str, Any] = {**content, "text": fn(content.get("text", ""))}
        elif msg_type == "error":
            new = {
                **content,
                "evalue": fn(str(content.get("evalue", ""))),
                "traceback": [fn(str(t)) for t in content.get("traceback", [])],
            }
        elif msg_type == "comm_msg":
            new = {**content, "data": map_strings(content.get("data", {}), fn)}
        else:
            data = dict(content.get("data") or {})
            for mime in SCANNED_MIME:
                if mime in data:
                    data[mime] = map_strings(data[mime], fn)
            new = {**content, "data": data}
        verdict = Verdict(action, [])
        verdict.entities = entities
        if action == "allow" and not entities:
            return Scan(verdict, None)
        if action == "block":
            new = self.blocked(msg_type, content, entities)
        elif action in ("warn", "allow"):
            new = dict(content)
        if msg_type in ("execute_result", "display_data", "update_display_data"):
            meta = dict(new.get("metadata") or {})
            meta["prod_discovery"] = {"action": action, "entities": entities}
            new["metadata"] = meta
        return Scan(verdict, new if action != "allow" else None)

    def blocked(
        self, msg_type: str, content: dict[str, Any], entities: dict[str, int] | None
    ) -> dict[str, Any]:
        """The notice that replaces a blocked (or unscannable, ``entities`` None) output."""
        notice = NOTICE.format(summary(entities)) if entities is not None else BUDGET_NOTICE
        if msg_type == "stream":
            return {**content, "text": notice + "\n"}
        if msg_type == "error":
            return {**content, "evalue": notice, "traceback": [notice]}
        if msg_type == "comm_msg":
            data = content.get("data", {})
            return {**content, "data": {"method": data.get("method", "update"), "state": {}}}
        return {**content, "data": {"text/plain": notice}}

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
