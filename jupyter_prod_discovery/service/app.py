"""``jupyter prod-discovery service``: the trusted service as a process of its own.

Run it under an OS user of its own (standalone) or as a JupyterHub service (its own process and
user, or its own pod). It holds the only Vault token (``VAULT_ADDR``/``VAULT_TOKEN`` of *its*
environment, or AppRole), the audit store's DSN and the signing key; single-user servers are
clients that hold nothing stronger than their user's identity.

Listening: ``socket_path`` (standalone: callers identified by the socket's peer uid) and/or
``port`` (JupyterHub: callers present their server's hub API token). The state directory
(signing key, crash journal of leases) is created 0700 and must belong to the service's user.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import stat
from pathlib import Path

from tornado import httpserver, netutil, web
from traitlets import Int, List, Type, Unicode, default
from traitlets.config import Application

from .. import __version__
from ..credentials.broker import CredentialBroker
from ..credentials.vault import VaultClient, VaultError
from ..export import setup as export_setup
from .credentials import CredentialDesk
from .exports import ExportDesk
from .handlers import make_handlers
from .identity import ClientAuthenticator, HubServerToken, PeerCredentials
from .ledger import AuditLedger
from .sandbox import ExportSandbox
from .signing import AuditSigner, KeyFileSigner

__all__ = ["ProdDiscoveryService", "main"]


class ProdDiscoveryService(Application):
    """The trusted side of Prod Discovery: credential issuance, the sealed audit ledger and
    promotion (export gates run and signed here)."""

    name = "jupyter-prod-discovery-service"
    version = __version__
    description = __doc__
    classes = [
        VaultClient,
        CredentialBroker,
        AuditLedger,
        KeyFileSigner,
        CredentialDesk,
        HubServerToken,
        PeerCredentials,
        ExportDesk,
        ExportSandbox,
        *export_setup.CONFIG_CLASSES,
    ]

    config_file = Unicode(
        "",
        config=True,
        help="""A traitlets config file (.py or .json) to load, e.g. with the credential
        profiles (c.CredentialBroker.profiles). Default '' (command line only).""",
    )
    aliases = {"config": "ProdDiscoveryService.config_file"}

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.config_file:
            path = Path(self.config_file)
            if not path.is_file():
                raise SystemExit(f"prod-discovery service: no config file at {path}")
            self.load_config_file(path.name, path=[str(path.parent)])
            self.update_config(self.cli_config)  # the command line wins over the file

    socket_path = Unicode(
        "",
        config=True,
        help="""Unix socket to listen on (standalone topology): created 0666 in a directory the
        service owns; every caller is identified by its peer uid. Default '' (none).""",
    )
    ip = Unicode("127.0.0.1", config=True, help="Address for the TCP listener. Default 127.0.0.1.")
    port = Int(
        0,
        config=True,
        help="""TCP port (JupyterHub topology, callers authenticate with their server's hub
        API token). Default 0: no TCP listener unless running as a hub service, where
        JUPYTERHUB_SERVICE_URL gives it.""",
    )
    base_url = Unicode(
        "/",
        config=True,
        help="URL prefix of the API. Default '/', or $JUPYTERHUB_SERVICE_PREFIX as a hub service.",
    )
    state_dir = Unicode(
        config=True,
        help="""Directory of the signing key and the lease journal (created 0700; must belong
        to the service's OS user). Default: $PROD_DISCOVERY_SERVICE_STATE_DIR or
        ~/.local/share/prod-discovery-service.""",
    )
    authenticator_classes = List(
        Type(klass=ClientAuthenticator),
        config=True,
        help="""How callers are identified, one per listener kind: the unix socket always uses
        PeerCredentials; the TCP listener uses the first class here. Default [HubServerToken].""",
    )
    signer_class = Type(
        KeyFileSigner,
        klass=AuditSigner,
        config=True,
        help="The audit signing key's implementation. Default KeyFileSigner (ed25519 file).",
    )

    @default("authenticator_classes")
    def _auth_default(self) -> list[type[ClientAuthenticator]]:
        return [HubServerToken]

    @default("state_dir")
    def _state_default(self) -> str:
        return os.environ.get("PROD_DISCOVERY_SERVICE_STATE_DIR") or str(
            Path.home() / ".local" / "share" / "prod-discovery-service"
        )

    @default("base_url")
    def _base_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")

    @default("port")
    def _port_default(self) -> int:
        from urllib.parse import urlparse

        url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
        return (urlparse(url).port or 80) if url else 0

    def _prepare_state_dir(self) -> Path:
        path = Path(self.state_dir)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.stat()
        if info.st_uid != os.getuid():
            raise SystemExit(f"{path} belongs to uid {info.st_uid}, not to the service's user")
        if stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(0o700)
        return path

    def build(self) -> None:
        """Create the parts (nothing started yet)."""
        state = self._prepare_state_dir()
        if not self.config.KeyFileSigner.get("key_file"):
            self.config.KeyFileSigner.key_file = str(state / "audit-signing-key.pem")
        self.signer: AuditSigner = self.signer_class(parent=self)  # type: ignore[abstract]
        # Bundles are signed with the service's own ed25519 key unless the config names another
        # signer (transit, say): the key `audit public-key` and /api/audit/public-key publish,
        # so Integration pins one key. DSSE's pre-authentication encoding ("DSSEv1 ...") keeps a
        # bundle signature from ever being a valid checkpoint signature and vice versa.
        if not self.config.NotebookExporter.get("signer_class"):
            self.config.NotebookExporter.signer_class = (
                "jupyter_prod_discovery.export.signing.Ed25519Signer"
            )
        if not self.config.Ed25519Signer.get("key_file"):
            self.config.Ed25519Signer.key_file = self.config.KeyFileSigner.key_file
        self.ledger = AuditLedger(self.signer, parent=self)
        self.vault = VaultClient(parent=self)
        if not self.config.CredentialBroker.get("state_dir"):
            self.config.CredentialBroker.state_dir = str(state)
        self.desk = CredentialDesk(self.vault, self.ledger, parent=self)
        self.sandbox = ExportSandbox(parent=self)
        self.exports = ExportDesk(self.desk, self.ledger, self.sandbox, parent=self)
        self.tcp_auth = self.authenticator_classes[0](parent=self)
        self.peer_auth = PeerCredentials(parent=self)

    def web_app(self, auth: ClientAuthenticator) -> web.Application:
        """The routes, with the parts and the listener's own authenticator."""
        return web.Application(
            make_handlers(self.base_url),
            ledger=self.ledger,
            desk=self.desk,
            exports=self.exports,
            authenticator=auth,
            refused_users=frozenset(u for u in (self.sandbox.user,) if u),
        )

    async def serve(self) -> None:
        """Start everything, serve until SIGTERM/SIGINT, then revoke, flush and close."""
        self.build()
        if self.vault.configured:
            try:
                self.vault.connect()
            except VaultError as exc:
                raise SystemExit(f"prod-discovery service: {exc}") from None
            self.vault.start_renewal()
        else:
            self.desk.host.vault_error = "Vault is not configured (VAULT_ADDR)"
        await self.ledger.start()
        await self.desk.start()
        # What exists now (modules, classes, config: ~190,000 objects) lives as long as the
        # process. Frozen, it is no longer walked by each full collection, which the events
        # waiting for their round trigger every ~20,000 events: measured with gc.callbacks
        # over benchmarks.service_throughput (160,000 events), 8-10 full collections took
        # 0.35-0.48 s of the service's ~4.6 s of CPU; frozen, 0.11 s.
        gc.freeze()
        servers: list[httpserver.HTTPServer] = []
        if self.socket_path:
            sock = netutil.bind_unix_socket(self.socket_path, mode=0o666)
            server = httpserver.HTTPServer(self.web_app(self.peer_auth))
            server.add_socket(sock)
            servers.append(server)
        if self.port:
            server = httpserver.HTTPServer(self.web_app(self.tcp_auth))
            server.listen(self.port, self.ip)
            servers.append(server)
        if not servers:
            raise SystemExit("prod-discovery service: set socket_path or port")
        self.log.info(
            "Prod Discovery service %s: socket %s, port %s, key %s",
            __version__,
            self.socket_path or "-",
            self.port or "-",
            self.signer.key_id,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.log.info("Stopping: revoking credentials, flushing the ledger")
        for server in servers:
            server.stop()
        await self.exports.stop()  # running clean runs revoke their credentials
        await self.desk.stop()
        await self.ledger.stop()
        await self.vault.stop_renewal()
        self.vault.close()

    def start(self) -> None:
        try:
            asyncio.run(self.serve())
        finally:
            if self.socket_path:
                with contextlib.suppress(OSError):
                    Path(self.socket_path).unlink()


def main(argv: list[str] | None = None) -> int:
    service = ProdDiscoveryService()
    service.initialize(argv)
    service.start()
    return 0
