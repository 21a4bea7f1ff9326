"""The sink of a server that is a client of the trusted service: records are shipped, not kept.

Why: whatever a single-user server writes, its user can rewrite (same uid). Here the server's
local chain only numbers its stream; the service authenticates the server, stamps the principal,
seals the events into its own chain, signs and stores them where the user cannot write. While
the service is unreachable the trail spools to the server's disk and replays in order when it
returns (the service acknowledges replays once, and records a gap when numbers are missing);
with ``AuditTrail.fail_closed`` data access is refused meanwhile, so what a user could alter in
the spool is never a record of data they were given.

Reading the trail is the service's and the compliance CLI's business, not the user's server:
``read_lines`` yields nothing here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from traitlets import Bool, Unicode, default

from ..chain import GENESIS
from .base import AuditSink, RecordStream, SinkUnavailable

__all__ = ["ServiceSink"]


class ServiceSink(AuditSink):
    """Ships records to the trusted service (``jupyter prod-discovery service``)."""

    # The service seals and signs what it receives: the local chain only numbers the stream.
    ships_records = True

    url = Unicode(
        config=True,
        help="""Address of the trusted service: 'unix:/path/to/service.sock' (standalone) or
        'http(s)://host:port/prefix/' (JupyterHub service). Default: the
        PROD_DISCOVERY_SERVICE_URL environment variable.""",
    )

    channel = Bool(
        True,
        config=True,
        help="""Send the records of the event loop over the service's audit channel (one kept-open
        connection, acknowledgments coming back asynchronously) instead of one HTTP request per
        record from the writer thread; the HTTP way remains for backlogs, spools and a service
        without the channel. Default True.""",
    )

    @default("url")
    def _url_default(self) -> str:
        return os.environ.get("PROD_DISCOVERY_SERVICE_URL", "")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: Any = None
        self._position = 0
        self._key: bytes | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ...service.client import ServiceClient

            if not self.url:
                raise SinkUnavailable("ServiceSink.url is not set (PROD_DISCOVERY_SERVICE_URL)")
            server_id = str(getattr(self.parent, "server_id", "") or f"pid-{os.getpid()}")
            self._client = ServiceClient(self.url, server_id)
        return self._client

    def open(self) -> None:
        from ...service.client import ServiceError

        try:
            self._position = self.client.stream_position()
            self._key = self.client.session_key()
        except (ServiceError, ValueError) as exc:
            raise SinkUnavailable(str(exc)) from None

    def stream(self, retry_interval: float) -> RecordStream | None:
        if not self.channel:
            return None
        from ...service.channel_client import AuditChannel

        client = self.client
        return AuditChannel(
            client, timeout=client.timeout, retry_interval=retry_interval, log=self.log
        )

    def session_key(self) -> bytes | None:
        """The key the service issued for this server's stream: with it the service tells a
        record the user altered in the spool from one this server sealed."""
        return self._key

    def write(self, lines: list[str]) -> None:
        from ...service.client import ServiceError

        try:
            self.client.ship(lines)
        except ServiceError as exc:
            # Refusals too: a batch the service will not take stays in the spool, loudly,
            # rather than being dropped.
            raise SinkUnavailable(str(exc)) from None

    def read_lines(self) -> Iterator[str]:
        return iter(())

    def tail(self) -> dict[str, Any] | None:
        """Where the service's copy of this server's stream ends: the local chain resumes."""
        return {"seq": self._position, "hash": GENESIS} if self._position else None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
