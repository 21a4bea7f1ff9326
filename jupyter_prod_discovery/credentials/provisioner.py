"""The kernel provisioner that gives each kernel its own credentials and takes them back.

Why a provisioner: it is the one place jupyter_client calls on every start *and* restart
(``pre_launch``) and on every stop (``cleanup``: delete, cull, restart, crash and auto-restart,
server shutdown). A ``start_kernel`` override would see only the first start. The one stop it
misses, a kernel dropped after exhausting its restarts, is covered by a "dead" restart callback
registered in ``post_launch`` (and by the broker's reaper as a safety net).
"""

from __future__ import annotations

import asyncio
from string import Template
from typing import TYPE_CHECKING, Any

from jupyter_client.provisioning import LocalProvisioner
from tornado import web

from .broker import SERVER_SECRET_ENV
from .vault import VaultError

if TYPE_CHECKING:
    from ..extension import ProdDiscoveryApp

__all__ = ["PROVISIONER_NAME", "CredentialProvisioner", "current_request_user"]

PROVISIONER_NAME = "prod-discovery-provisioner"


def current_request_user() -> Any:
    """The user of the HTTP request that is starting the kernel, or None (auto-restart).

    The contextvar set by jupyter_server for each request propagates into the awaited
    ``start_kernel``; only trust it there, never from a background task.
    """
    try:
        from jupyter_server import CallContext

        handler = CallContext.get(CallContext.JUPYTER_HANDLER)
    except Exception:
        return None
    return getattr(handler, "current_user", None) if handler is not None else None


def find_app(obj: Any) -> ProdDiscoveryApp | None:
    """The ProdDiscoveryApp, found through the parents (kernel manager -> server app)."""
    seen = 0
    while obj is not None and seen < 8:
        web_app = getattr(obj, "web_app", None)
        if web_app is not None:
            app = web_app.settings.get("prod_discovery")
            return app if getattr(app, "broker", None) is not None else None
        obj = getattr(obj, "parent", None)
        seen += 1
    return None


class CredentialProvisioner(LocalProvisioner):
    """LocalProvisioner plus per-kernel Vault credentials in the kernel's environment.

    The rest of that environment comes from ``KernelEnvironment``'s allow-list, not from a copy of
    the server's (``credentials/environment.py``).
    """

    _dead_callback_registered = False

    @property
    def _app(self) -> ProdDiscoveryApp | None:
        return find_app(self.parent)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Issue this kernel's credentials (every start and restart) and put them in its env.

        Fails the start with HTTP 503 naming the cause when Vault refuses or is unreachable,
        unless ``CredentialBroker.start_without_credentials`` is set.
        """
        app = self._app
        if app is None:
            return await super().pre_launch(**kwargs)
        broker = app.broker
        issued: dict[str, str] = {}
        if broker.active:
            # Issued before the base class picks the kernel's ports: those ports are only free
            # until the kernel binds them, and issuing (Vault creating a database user) takes
            # milliseconds in which another process may take one (ZMQError: address in use).
            kernel_name = getattr(self.parent, "kernel_name", "") or ""
            try:
                issued = await broker.issue(self.kernel_id, kernel_name, current_request_user())
            except VaultError as exc:
                message = f"Kernel not started: no credentials. {exc}"
                reason = "Kernel credentials unavailable"
                raise web.HTTPError(503, message.replace("%", "%%"), reason=reason) from None
        try:
            kwargs = await super().pre_launch(**kwargs)
        except BaseException:
            await broker.revoke(self.kernel_id, reason="shutdown")
            raise
        env = self._filtered_env(app, kwargs.get("env", {}))
        kwargs["env"] = env
        if broker.active:
            for name in SERVER_SECRET_ENV:
                # The server's Vault login never reaches a kernel, not even through a kernelspec
                # or a loosened KernelEnvironment.deny.
                env.pop(name, None)
            env.update(issued)
            owner = broker.owner_of(self.kernel_id)
            if owner is not None and self.parent is not None:
                # Recorded on the kernel manager so other capabilities can find who owns it.
                self.parent.prod_discovery_owner = owner
        for hook in list(app.kernel_env_hooks):
            hook(self.kernel_id, env)
        return kwargs

    def _filtered_env(self, app: ProdDiscoveryApp, env: dict[str, str]) -> dict[str, str]:
        """The kernel's environment from the allow-list, plus its kernelspec's ``env``.

        jupyter_client hands over a copy of the server's environment (plus what the session
        manager set, such as ``JPY_SESSION_NAME``) updated with the kernelspec's ``env``, whose
        ``${VAR}`` templates it filled from the server's whole environment. The kernelspec's
        entries are kept, but their templates are filled again from the filtered environment:
        otherwise a kernelspec written by kernel code (``"X": "${JUPYTERHUB_API_TOKEN}"``) would
        copy out any secret the allow-list withholds. ``JPY_PARENT_PID`` is added later, by
        jupyter_client's launcher.
        """
        filtered = app.kernel_environment.build(env)
        spec_env: dict[str, str] = getattr(self.kernel_spec, "env", None) or {}
        explicit = {
            name: Template(value).safe_substitute(filtered) for name, value in spec_env.items()
        }
        filtered.update(explicit)
        return filtered

    async def post_launch(self, **kwargs: Any) -> None:
        """Register the "dead" callback once the restarter exists (it does after launch)."""
        await super().post_launch(**kwargs)
        if self._dead_callback_registered or self._app is None:
            return
        km = self.parent
        if km is not None and hasattr(km, "add_restart_callback"):
            km.add_restart_callback(self._on_dead, "dead")
            self._dead_callback_registered = True

    def _on_dead(self) -> None:
        """The restart limit is exhausted: the kernel is dropped without cleanup(); revoke."""
        app = self._app
        if app is not None:
            asyncio.get_event_loop().create_task(app.broker.revoke(self.kernel_id, reason="dead"))

    async def cleanup(self, restart: bool = False) -> None:
        """Revoke on every stop; on restart the next pre_launch issues fresh credentials."""
        try:
            await super().cleanup(restart=restart)
        finally:
            app = self._app
            if app is not None:
                await app.broker.revoke(self.kernel_id, reason="restart" if restart else "shutdown")
