"""Terminals (jupyter_server_terminals) audited and guarded, or refused.

``ProdDiscoveryApp.terminals``:

``audit``
    Every terminal websocket is recorded: ``open`` and ``close`` with the authenticated user,
    each input line (live secrets and PII redacted, like code in execution records), and at
    close the size and sha256 of what the shell printed. What it prints reaches the browser
    through the PII guard (``PIIGuard.find`` with every live secret of the server). Shells get
    the kernels' environment allow-list (``_compat.FilteredTerminalManager``).

    A value split between two reads (``printf '536-22-'; sleep 1; printf '1234'``) is held
    back whole, as the kernel websocket holds a stream's end (``connection._split``): the end
    of a read that could begin a value is not sent but joined to the next read and scanned with
    it. Held up to ``PIIGuard.secret_hold_timeout`` (10 s) when it could begin a pattern value
    or a live secret (a run of digits and number separators, a word with an '@', a secret's
    first characters), up to ``PIIGuard.stream_hold_timeout`` (0.25 s) when it is only a word
    (the local part of an email before its '@'). What the user is typing, echoed back by the
    shell, is not held (it is the user's own input, already in the browser). When the hold
    ends without a continuation, the held end is scanned with the line already sent (the
    seam) and sent; a continuation after that is still scanned with that line, so the second
    half of a value split more than the hold apart is redacted.
``deny``
    The terminal API and websocket answer 403 with the reason, JupyterLab is told terminals
    are unavailable (no launcher entry), and ``/status`` says why.

Handlers are gated by ``paths.ExecutionPaths.install_gates`` (subclasses of
jupyter_server_terminals' handlers; terminado's ``TermSocket`` methods ``open``,
``stdin_to_ptyproc``, ``on_pty_read`` and ``on_close`` are its public life cycle).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from typing import TYPE_CHECKING, Any

from tornado import web
from tornado.websocket import WebSocketClosedError

from ..pii import Finding, redact
from .connection import LINE_CONTEXT, _crossing

__all__ = ["DENY_REASON", "gate_for", "mode_of"]

DENY_REASON = (
    "Prod Discovery: terminals are disabled on this server (c.ProdDiscoveryApp.terminals = "
    "'deny'): a shell here would reach production data outside the audited, PII-guarded "
    "kernels. Use a notebook or console instead."
)
#: Input line characters recorded at most (a paste of a whole file is cut, and marked so).
MAX_LINE = 4096
# The end of a read that could begin a pattern value: a number (digits and the separators of
# SSNs, cards, phones, IPs and dates) or a word with an '@' (an email up to its domain).
_VALUE_END = re.compile(r"(?:[(+]?\d[\d ().\-/:]*|[\w.+\-]+@[\w.\-]*)\Z")
# The end of a read that is only a word (an email's local part before its '@').
_WORD_END = re.compile(r"[\w.+\-]+\Z")
# Escape sequences (colours, cursor moves) at the end of a read: looked through, and held with
# the text before them.
_TRAILING_CSI = re.compile(r"(?:\x1b\[[0-?]*[ -/]*[@-~])+\Z")


if TYPE_CHECKING:
    from jupyter_server.base.handlers import JupyterHandler as _Handler
    from jupyter_server_terminals.handlers import TermSocket as _Socket
else:
    _Handler = _Socket = object


def mode_of(settings: dict[str, Any]) -> str:
    """The terminal policy, 'deny' when the extension is not there to audit (fail closed)."""
    app = settings.get("prod_discovery")
    return str(getattr(app, "terminals", "deny"))


class TerminalDeny(_Handler):
    """Mixin for the terminal REST handlers: 403 with the reason when terminals are denied."""

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        await super().prepare(*args, **kwargs)
        if mode_of(self.settings) == "deny":
            _record_denied(self)
            raise web.HTTPError(403, reason=DENY_REASON)


def _record_denied(handler: Any) -> None:
    app = handler.settings.get("prod_discovery")
    audit = getattr(app, "audit", None)
    if audit is not None and handler.current_user:
        audit.record(
            "denied",
            {
                "resource": handler.request.path,
                "action": "terminal",
                "reason": "terminals = 'deny'",
                "status": 403,
                "method": handler.request.method,
            },
            user=handler.current_user,
        )


class TerminalAudit(TerminalDeny, _Socket):
    """Mixin for ``TermSocket``: session records, input lines, output through the guard."""

    _pd_line = ""
    _pd_held = ""
    _pd_sent = ""
    _pd_long = False
    _pd_timer: Any = None
    _pd_lines = 0
    _pd_bytes = 0
    _pd_digest: Any = None
    _pd_open = False

    @property
    def _pd_app(self) -> Any:
        return self.settings.get("prod_discovery")

    def _pd_record(self, action: str, **data: Any) -> None:
        app = self._pd_app
        if app is None:
            return
        app.audit.record(
            "terminal",
            {"action": action, "terminal": str(getattr(self, "term_name", "") or ""), **data},
            user=self.current_user,
        )

    def open(self, *args: Any, **kwargs: Any) -> Any:
        self._pd_digest = hashlib.sha256()
        # Recorded first: a terminal that cannot be recorded is not opened (fail closed).
        self._pd_record("open")
        self._pd_open = True
        return super().open(*args, **kwargs)

    def stdin_to_ptyproc(self, text: str) -> Any:
        buf = self._pd_line + text
        while True:
            cut = min((i for i in (buf.find("\r"), buf.find("\n")) if i >= 0), default=-1)
            if cut < 0:
                break
            self._pd_input(buf[:cut])
            buf = buf[cut + 1 :]
        self._pd_line = buf[-MAX_LINE * 4 :]
        return super().stdin_to_ptyproc(text)

    def _pd_input(self, line: str) -> None:
        self._pd_lines += 1
        cut = len(line) > MAX_LINE
        line = line[:MAX_LINE]
        guard = getattr(self._pd_app, "pii_guard", None)
        if guard is not None:
            _verdict, line = guard.text(line, None)
            secrets = guard.matcher(None).find(line)
            line = redact(line, secrets) if secrets else line
        self._pd_record("input", line=line, truncated=cut, seq=self._pd_lines)

    def on_pty_read(self, text: str) -> None:
        raw = text.encode("utf-8", "replace")
        self._pd_bytes += len(raw)
        if self._pd_digest is not None:
            self._pd_digest.update(raw)
        self._pd_send(text, final=False)

    def _pd_send(self, text: str, final: bool) -> None:
        """Send what of the held end plus ``text`` may leave now; hold back the rest."""
        guard = getattr(self._pd_app, "pii_guard", None)
        if guard is None or not guard.on:
            out, self._pd_held = self._pd_held + text, ""
        else:
            try:
                out = self._pd_guard(guard, text, final)
            except Exception:
                guard.log.exception("PII guard could not scan terminal output; withheld")
                self._pd_held = self._pd_sent = ""
                out = "\r\n[Prod Discovery: terminal output withheld, it could not be scanned]\r\n"
        self._pd_disarm()
        if self._pd_held:
            self._pd_arm(guard)
        if out:
            super().on_pty_read(out)

    def _pd_guard(self, guard: Any, text: str, final: bool) -> str:
        """Scan the held end plus ``text`` with the line already sent; return what may leave.

        Findings are counted (audited) when the text holding them leaves, never twice: one
        inside the end held back is scanned again with what continues it.
        """
        whole = self._pd_held + text
        if not whole:
            return ""
        ctx = self._pd_sent
        base = len(ctx)
        found = [
            Finding(f.entity_type, max(f.start - base, 0), f.end - base, f.score)
            for f in guard.find(ctx + whole, None)
            if f.end > base
        ]
        cut, self._pd_long = (len(whole), False) if final else self._pd_cut(guard, whole)
        cut = _crossing(found, cut)
        out, self._pd_held = whole[:cut], whole[cut:]
        verdict = guard.policy.decide([f for f in found if f.end <= cut])
        if verdict.entities:
            guard.audit(
                self._pd_app.audit,
                {
                    "source": "live",
                    "kernel_id": None,
                    "output": "terminal",
                    "path": f"terminals/{getattr(self, 'term_name', '')}",
                },
                verdict,
                self.current_user,
            )
        if verdict.action == "block":
            self._pd_sent = ""
            return "[Prod Discovery: terminal output blocked by the PII policy]\r\n"
        if verdict.action == "redact":
            out = redact(out, guard.policy.to_redact(verdict))
        # The seam context: the line as sent (redacted), as long as the longest finding.
        line = (ctx + out)[-LINE_CONTEXT:]
        nl = line.rfind("\n")
        window = max(guard.stream_window, guard.matcher(None).max_length)
        self._pd_sent = line[nl + 1 :][-window:]
        return out

    def _pd_cut(self, guard: Any, whole: str) -> tuple[int, bool]:
        """Where the end held back starts (``len(whole)``: nothing held), and whether it could
        begin a value (held long) rather than only a word (held briefly)."""
        n = len(whole)
        if guard.seam_closed(whole, "", None):
            return n, False  # a line break ends every finding
        window = max(guard.stream_window, guard.matcher(None).max_length)
        start = max(whole.rfind("\n") + 1, n - window)
        shown = whole
        csi = _TRAILING_CSI.search(shown, start)
        if csi is not None:
            shown = shown[: csi.start()]
        cut, long = n, False
        value = _VALUE_END.search(shown, start)
        if value is not None:
            cut, long = value.start(), True
        for secret in guard.matcher(None).values:
            for k in range(min(len(secret) - 1, len(shown) - start), 1, -1):
                if shown.endswith(secret[:k]):
                    cut, long = min(cut, len(shown) - k), True
                    break
        if not long:
            word = _WORD_END.search(shown, start)
            if word is not None:
                cut = word.start()
        if cut < n and self._pd_line.endswith(shown[cut:]):
            return n, False  # the echo of what the user is typing
        return cut, long

    # --- the hold timer ----------------------------------------------------------------------
    def _pd_arm(self, guard: Any) -> None:
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on: nothing may stay held
            self._pd_flush()
            return
        delay = guard.secret_hold_timeout if self._pd_long else guard.stream_hold_timeout
        self._pd_timer = loop.call_later(delay, self._pd_flush)

    def _pd_disarm(self) -> None:
        if self._pd_timer is not None:
            self._pd_timer.cancel()
            self._pd_timer = None

    def _pd_flush(self) -> None:
        """The hold ended without a continuation: the held end leaves, scanned with its seam."""
        self._pd_timer = None
        if not self._pd_held or not self._pd_open:
            return
        with contextlib.suppress(WebSocketClosedError):  # closed meanwhile: nothing to show
            self._pd_send("", final=True)

    def on_close(self) -> None:
        self._pd_disarm()
        try:
            if self._pd_open:
                self._pd_open = False
                if self._pd_line:
                    self._pd_input(self._pd_line)
                    self._pd_line = ""
                self._pd_record(
                    "close",
                    input_lines=self._pd_lines,
                    output_bytes=self._pd_bytes,
                    output_sha256=self._pd_digest.hexdigest() if self._pd_digest else None,
                )
        finally:
            super().on_close()


def gate_for(cls: type) -> type | None:
    """The mixin for one of jupyter_server_terminals' handlers, or None."""
    if not cls.__module__.startswith("jupyter_server_terminals"):
        return None
    if cls.__name__ == "TermSocket":
        return TerminalAudit
    if cls.__name__ in ("TerminalRootHandler", "TerminalHandler"):
        return TerminalDeny
    return None
