"""Where this project relies on other packages' undeclared behaviour, in one place.

Why one module: when a jupyter_server_terminals or terminado upgrade changes one of these details,
one small file breaks, and its tests (``tests/test_hardening.py``) say what broke.

Terminal environments. jupyter_server_terminals declares the terminal manager as a configurable
class (``TerminalsExtensionApp.terminal_manager_class``) but has no setting for which of the
server's variables a shell inherits: terminado's ``TermManagerBase.make_term_env`` (a public method,
not a documented extension point) starts from ``os.environ.copy()``, sets ``TERM``, ``COLUMNS``,
``LINES`` and ``PYXTERM_DIMENSIONS`` (``PYXTERM_URL`` with a server URL), then applies the
manager's and the request's ``extra_env``. ``FilteredTerminalManager`` overrides that method and
relies on exactly that: whatever terminado set itself stays, the inherited rest goes through
``KernelEnvironment``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jupyter_server_terminals.terminalmanager import TerminalManager
from terminado import management as _terminado

from .credentials.environment import KernelEnvironment
from .credentials.provisioner import find_app

__all__ = ["TERMINADO_OWN_ENV", "FilteredTerminalManager", "tap_hashed_bytes"]

_PREFIX = getattr(_terminado, "ENV_PREFIX", "PYXTERM_")
#: The variables terminado sets for every terminal itself (not inherited from the server).
TERMINADO_OWN_ENV = ("TERM", "COLUMNS", "LINES", f"{_PREFIX}DIMENSIONS", f"{_PREFIX}URL")


class FilteredTerminalManager(TerminalManager):
    """jupyter_server_terminals' manager whose shells inherit only what KernelEnvironment passes.

    Installed by ``credentials.environment.link`` unless a terminal manager class is configured.
    """

    _own_environment: KernelEnvironment | None = None

    @property
    def kernel_environment(self) -> KernelEnvironment:
        """The extension's KernelEnvironment (one policy for kernels and terminals).

        Without the extension (this class configured on its own) a KernelEnvironment of its own,
        from the same ``c.KernelEnvironment`` config: terminals are never left unfiltered.
        """
        app = find_app(self)
        shared = getattr(app, "kernel_environment", None)
        if isinstance(shared, KernelEnvironment):
            return shared
        if self._own_environment is None:
            self._own_environment = KernelEnvironment(parent=self)
        return self._own_environment

    def make_term_env(
        self,
        height: int = 25,
        width: int = 80,
        winheight: int = 0,
        winwidth: int = 0,
        **kwargs: Any,
    ) -> dict[str, str]:
        """terminado's environment, with the server's inherited variables filtered."""
        env = super().make_term_env(height, width, winheight, winwidth, **kwargs)
        own = {*TERMINADO_OWN_ENV, *(self.extra_env or {}), *(kwargs.get("extra_env") or {})}
        explicit = {k: v for k, v in env.items() if k in own}
        return self.kernel_environment.build(env, explicit)


# --- Routes of other extensions -------------------------------------------------------------
# Extensions that run code or shells (jupyter-server-nbmodel, jupyter-server-documents,
# jupyter_server_terminals) declare no hook before their handlers act. Their routes are tornado
# ``Rule`` objects (``tornado.routing``: ``RuleRouter.rules``, ``Rule.target``, public), so a
# handler class is swapped for a subclass that adds the guard's ``prepare``/socket methods; the
# subclass relies only on tornado's handler life cycle. Added by extensions in name order after
# us, so this runs once all are loaded (``guard.paths.install_gates``).


def wrap_route_targets(web_app: Any, wrap: Any) -> int:
    """Replace every route target ``cls`` for which ``wrap(cls)`` returns a class; count them."""
    from tornado.routing import RuleRouter
    from tornado.web import RequestHandler

    seen: set[int] = set()
    count = 0

    def walk(router: Any) -> None:
        nonlocal count
        if id(router) in seen:
            return
        seen.add(id(router))
        for rule in getattr(router, "rules", []):
            target = rule.target
            if isinstance(target, RuleRouter):
                walk(target)
            elif isinstance(target, type) and issubclass(target, RequestHandler):
                new = wrap(target)
                if new is not None and new is not target:
                    rule.target = new
                    count += 1

    walk(web_app.default_router)
    walk(web_app.wildcard_router)
    return count


# --- jupyter-server-documents' kernel websocket ------------------------------------------------
# Its ``KernelWebsocketConnection`` (0.3) gives each browser connection an AsyncKernelClient from
# ``kernel_manager.client()`` and forwards raw frames: ``_listen(channel)`` reads
# ``channel.socket.recv_multipart()`` and writes v1 frames, ``handle_incoming_message`` sends with
# ``session.send_raw``. Both are private; the guarded subclass replaces ``_listen`` with the same
# loop through ``guard.documents.forward`` and audits ``handle_incoming_message``.


def guarded_documents_connection(base: type) -> type:
    """A subclass of jupyter-server-documents' connection class through the PII guard."""
    from .guard import documents

    class GuardedDocumentsConnection(base):
        pd_guarded = True

        async def _listen(self, channel_name: str) -> None:
            await documents.forward(self, self._client, channel_name)

        def handle_incoming_message(self, incoming_msg: bytes) -> None:
            documents.audit_incoming(self, self._client, incoming_msg)
            super().handle_incoming_message(incoming_msg)

    GuardedDocumentsConnection.__name__ = f"Guarded{base.__name__}"
    GuardedDocumentsConnection.__qualname__ = GuardedDocumentsConnection.__name__
    return GuardedDocumentsConnection


# --- jupyter_server's contents hashing ----------------------------------------------------------
# The file managers (2.11+) hash what a read read with the private ``_get_hash(byte_content)``
# when ``require_hash`` is asked: ``_notebook_model`` and ``_file_model`` call it once with the
# very bytes they parsed or returned. The audit takes the size of those bytes from that call,
# instead of a stat of the file after the read (which could disagree with the hash).


def tap_hashed_bytes(cm: Any, note: Callable[[int], None]) -> bool:
    """Wrap ``cm._get_hash`` (on the instance) to pass the length of what it hashes to
    ``note``; False when the manager has no such method."""
    original = getattr(cm, "_get_hash", None)
    if not callable(original):
        return False

    def _get_hash(byte_content: bytes, *args: Any, **kwargs: Any) -> Any:
        note(len(byte_content))
        return original(byte_content, *args, **kwargs)

    cm._get_hash = _get_hash
    return True
