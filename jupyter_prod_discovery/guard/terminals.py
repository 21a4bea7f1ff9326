"""Terminals (jupyter_server_terminals) audited and guarded, or refused.

``ProdDiscoveryApp.terminals``:

``audit``
    Every terminal websocket is recorded: ``open`` and ``close`` with the authenticated user,
    each input line (live secrets and PII redacted, like code in execution records), and at
    close the size and sha256 of what the shell printed. What it prints reaches the browser
    through the PII guard (``PIIGuard.text`` with every live secret of the server), with the
    end of each chunk rescanned with the start of the next, so a value split between two reads
    is redacted in the second half at least. Shells get the kernels' environment allow-list
    (``_compat.FilteredTerminalManager``).
``deny``
    The terminal API and websocket answer 403 with the reason, JupyterLab is told terminals
    are unavailable (no launcher entry), and ``/status`` says why.

Handlers are gated by ``paths.ExecutionPaths.install_gates`` (subclasses of
jupyter_server_terminals' handlers; terminado's ``TermSocket`` methods ``open``,
``stdin_to_ptyproc``, ``on_pty_read`` and ``on_close`` are its public life cycle).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from tornado import web

from ..pii import Finding, redact

__all__ = ["DENY_REASON", "gate_for", "mode_of"]

DENY_REASON = (
    "Prod Discovery: terminals are disabled on this server (c.ProdDiscoveryApp.terminals = "
    "'deny'): a shell here would reach production data outside the audited, PII-guarded "
    "kernels. Use a notebook or console instead."
)
#: Input line characters recorded at most (a paste of a whole file is cut, and marked so).
MAX_LINE = 4096


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
    _pd_tail = ""
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
        guard = getattr(self._pd_app, "pii_guard", None)
        if guard is not None and guard.on:
            try:
                text = self._pd_guard(guard, text)
            except Exception:
                guard.log.exception("PII guard could not scan terminal output; withheld")
                text = "\r\n[Prod Discovery: terminal output withheld, it could not be scanned]\r\n"
        super().on_pty_read(text)

    def _pd_guard(self, guard: Any, text: str) -> str:
        tail = self._pd_tail
        window = max(guard.stream_window, guard.matcher(None).max_length)
        whole = tail + text
        cut = len(tail)
        # Findings wholly inside the tail were this method's business for the previous chunk.
        verdict = guard.policy.decide([f for f in guard.find(whole, None) if f.end > cut])
        self._pd_tail = whole[-window:]
        if not verdict.entities:
            return text
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
            return "[Prod Discovery: terminal output blocked by the PII policy]\r\n"
        if verdict.action not in ("redact",):
            return text
        # Findings are in tail+text coordinates; what of them lies in ``text`` is redacted
        # (the tail has left already).
        spans = [
            Finding(f.entity_type, max(f.start, cut) - cut, f.end - cut, f.score)
            for f in guard.policy.to_redact(verdict)
            if f.end > cut
        ]
        return redact(text, spans)

    def on_close(self) -> None:
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
