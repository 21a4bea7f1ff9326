"""The server extension: traits and wiring only.

Each capability lives in its own subpackage; this module creates them, hands them to each other
and to the handlers, and starts and stops their background work with the server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Enum, Unicode, default

from . import hardening
from .audit import setup as audit_setup
from .audit.api import audit_handlers
from .audit.recorder import AuditRecorder, NullRecorder
from .audit.trail import AuditTrail
from .credentials import environment
from .credentials.broker import CredentialBroker
from .credentials.provisioner import PROVISIONER_NAME
from .credentials.remote import RemoteCredentialBroker
from .credentials.secrets import SecretRegistry
from .credentials.vault import VaultClient, VaultError
from .export import setup as export_setup
from .export.jobs import ExportJobs, LocalExports, ServiceExports
from .guard import paths as guard_paths
from .guard import setup as guard_setup
from .handlers import API, default_handlers, narrow_routes
from .service.client import URL_ENV as SERVICE_URL_ENV
from .service.client import ServiceClient

SETTINGS_KEY = "prod_discovery"


class ProdDiscoveryApp(ExtensionApp):
    """Prod Discovery guardrails: credentials, audit trail, PII guard and export."""

    name = "jupyter_prod_discovery"
    description = __doc__
    load_other_extensions = True
    classes = [
        VaultClient,
        CredentialBroker,
        RemoteCredentialBroker,
        environment.KernelEnvironment,
        *audit_setup.CONFIG_CLASSES,
        *guard_setup.CONFIG_CLASSES,
        guard_paths.ExecutionPaths,
        *export_setup.CONFIG_CLASSES,
    ]

    environment_name = Unicode(
        "Prod Discovery",
        config=True,
        help="""Name of this environment, shown in the always-visible indicator in JupyterLab and
        recorded in every audit event. Default 'Prod Discovery'.""",
    )
    environment_color = Unicode(
        "#b3261e",
        config=True,
        help="""CSS colour of the environment indicator (any CSS colour). Default '#b3261e'
        (red: production data).""",
    )
    require_vault = Bool(
        True,
        config=True,
        help="""Fail closed: when Vault is configured (VaultClient.url or VAULT_ADDR) but
        unreachable or the token is invalid, refuse to start the server. Default True. Set False
        to start anyway with the credential guard inactive (the status endpoint reports why).""",
    )
    non_dumpable = Bool(
        True,
        config=True,
        help="""Make the server process non-dumpable (Linux prctl PR_SET_DUMPABLE 0) so that
        kernels, terminals and other processes of the same user cannot read its environment or
        memory through /proc, nor ptrace it (root and CAP_SYS_PTRACE still can). Default True; a
        no-op elsewhere. Set False to debug the server with gdb or py-spy.""",
    )

    terminals = Enum(
        ["audit", "deny"],
        default_value="audit",
        config=True,
        help="""Terminals (jupyter_server_terminals). 'audit' (default): sessions are recorded
        (open/close with the user, each input line with secrets and PII redacted, output size
        and sha256), output reaches the browser through the PII guard, and shells get the
        kernels' environment allow-list. 'deny': the terminal API and websocket answer 403
        with the reason, and JupyterLab shows no terminal launcher.""",
    )

    service_url = Unicode(
        config=True,
        help="""Address of the trusted service (`jupyter prod-discovery service`, or the
        JupyterHub service) this server is a client of: 'unix:/path/to/service.sock' or
        'http(s)://host:port/prefix/'. When set, kernel credentials are issued by the service
        (the server holds no Vault token and does not connect to Vault) and audit records are
        shipped to it (AuditTrail.sink_classes defaults to [ServiceSink]). Default: the
        PROD_DISCOVERY_SERVICE_URL environment variable, or '' (same-user mode: everything in
        this process, evaluation only).""",
    )

    @default("service_url")
    def _service_url_default(self) -> str:
        return os.environ.get(SERVICE_URL_ENV, "")

    def initialize_settings(self) -> None:
        hardening.harden(self.serverapp, non_dumpable=self.non_dumpable, log=self.log)
        self.vault = VaultClient(parent=self)
        self.vault_error: str | None = None
        self.service_client: ServiceClient | None = None
        if self.service_url:
            # Client of the trusted service: Vault is the service's business, not ours.
            self.log.info("Prod Discovery: client of the trusted service at %s", self.service_url)
        elif self.vault.configured:
            try:
                self.vault.connect()
            except VaultError as exc:
                self.vault_error = str(exc)
                if self.require_vault:
                    # Raised here the message reaches the terminal and the server does not start.
                    raise SystemExit(
                        f"jupyter_prod_discovery: {exc}. Fix the Vault settings or set "
                        "c.ProdDiscoveryApp.require_vault = False to start without credentials."
                    ) from None
                self.log.error("Vault unavailable, credential guard inactive: %s", exc)
        # Shared seams, created before any capability so each can be handed the others.
        self.secrets = SecretRegistry()
        self.kernel_environment = environment.KernelEnvironment(parent=self)
        self.audit: AuditRecorder = NullRecorder()
        # Called by the credential provisioner in pre_launch with (kernel_id, env) so that other
        # capabilities (the audit shim) can add variables to every kernel's environment.
        self.kernel_env_hooks: list[Callable[[str, dict[str, str]], None]] = []

        # Audit first: every other capability records through it.
        self.audit = audit_setup.create(self)
        self.broker: CredentialBroker | RemoteCredentialBroker
        if self.service_url:
            self.service_client = ServiceClient(self.service_url, self.audit.server_id)
            self.broker = RemoteCredentialBroker(
                self.service_client,
                self.secrets,
                kernel_manager=lambda: getattr(self.serverapp, "kernel_manager", None),
                parent=self,
            )
        else:
            self.broker = CredentialBroker(parent=self, app=self)
        self.pii_guard = guard_setup.create(self)
        # Every other path to a kernel or a shell through the same guard and audit.
        self.execution_paths = guard_paths.ExecutionPaths(parent=self)
        self.execution_paths.install(self)
        # Export jobs: decided by the trusted service when there is one, else in this process.
        root = Path(self.serverapp.root_dir if self.serverapp is not None else ".")
        self.export_jobs: ExportJobs = (
            ServiceExports(
                self,
                root,
                self.service_client,
                flush_audit=self.audit.flush if isinstance(self.audit, AuditTrail) else None,
            )
            if self.service_client is not None
            else LocalExports(self, root)
        )
        self.settings[SETTINGS_KEY] = self

    def initialize_handlers(self) -> None:
        self.handlers.extend(default_handlers)
        self.handlers.extend(audit_handlers)

    def _prepare_handlers(self) -> None:
        assert self.serverapp is not None
        web_app = self.serverapp.web_app
        before = list(web_app.default_router.rules)
        super()._prepare_handlers()
        prefix = url_path_join(web_app.settings["base_url"], API) + "/"
        if not narrow_routes(web_app, before, prefix):
            self.log.debug("routes not narrowed to %s: every request tries ours first", prefix)

    def guards(self) -> dict[str, bool]:
        """Which guards are active now, for the status endpoint and the indicator."""
        return {
            "credentials": self.broker.active and self.vault.last_error is None,
            "audit": bool(getattr(self.audit, "writable", False)),
            "pii": guard_setup.active(self),
            "export": True,
            # every other path to a kernel or a shell is guarded or refused, none unguarded
            "paths": self.execution_paths.status()["ok"],
        }

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        super()._link_jupyter_server_extension(serverapp)
        # Server-level settings of each capability, before the server builds its configurables;
        # what the user configured explicitly is never overridden.
        audit_setup.link(serverapp)
        guard_setup.link(serverapp)
        guard_paths.link(serverapp)
        environment.link(serverapp)
        factory = serverapp.config.get("KernelProvisionerFactory", {})
        if "default_provisioner_name" not in factory:
            serverapp.config.KernelProvisionerFactory.default_provisioner_name = PROVISIONER_NAME

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        await super()._start_jupyter_server_extension(serverapp)
        hardening.secure_runtime_dir(serverapp.runtime_dir, self.log)  # files of start_app
        if self.vault.configured and self.vault_error is None and not self.service_url:
            self.vault.start_renewal()
        await audit_setup.start(self)
        self.execution_paths.install_gates(self)
        if self.broker.active:
            await self.broker.revoke_orphans()
            self.broker.start()

    async def stop_extension(self) -> None:
        # Credentials first (revoke everything, recording it), the audit trail last (flush).
        await self.broker.stop()
        await self.vault.stop_renewal()
        self.vault.close()
        guard_setup.stop(self)
        await audit_setup.stop(self)
