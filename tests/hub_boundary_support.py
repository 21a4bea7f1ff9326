"""The attacker harness of ``boundary_support`` pointed at a hub-spawned single-user server.

``UserServer``'s kernel, terminal and probe methods only need a server URL and a token; what
they cannot do against a JupyterHub deployment is start the server themselves, because the hub
does (as the user's own OS account, with the environment the hub gives it). ``HubServer`` is
that server as the hub user reaches it: through the proxy, with a token of hers, no process of
its own to start or stop. The probe's ancestors check then uses the hub-spawned server's pid.

Also here, as code strings run in her kernel (standard library plus the ``psycopg`` of the
users' venv): what her kernel can do with Vault and the database with everything it holds.
"""

from __future__ import annotations

from pathlib import Path

from boundary_support import ReachedServer

__all__ = ["KERNEL_HOLDINGS", "HubServer", "hub_token_needle"]


class HubServer(ReachedServer):
    """``user``'s server as the hub spawned it, reached at ``url`` (``<hub>/user/<name>``).

    ``start`` only checks that it answers; ``stop`` only shuts down the kernel this object
    started: the server belongs to the hub, which stops it with the world.
    """

    def __init__(self, user: str, url: str, token: str, pid: int, log_path: Path) -> None:
        super().__init__(user, log_path)
        self.url = url.rstrip("/")
        self.token = token
        self.port = 0  # no port of its own: everything goes through the hub's proxy
        self._pid = pid

    @property
    def pid(self) -> int:
        """The single-user server process the hub spawned (the probe's expected ancestor)."""
        return self._pid


def hub_token_needle(token: str) -> str:
    """16 characters of a JupyterHub token (``uuid4().hex``) past its version nibble
    (index 12, always ``4``): a needle of 15 random hex digits and the variant digit."""
    assert len(token) == 32 and token[12] == "4", "not a JupyterHub uuid4 token"
    return token[-16:]


#: What her kernel holds and what it gets with it, printed after ``PDJSON``: the names of its
#: Vault variables; every value of its environment (and ``EXTRA``, her server's hub token) tried
#: as a Vault token on another group's role and on ``lookup-self``; the database login it was
#: issued tried on her group's table and on fraud's. ``VAULT_ADDR``, ``DB`` and ``EXTRA`` are
#: set before this code (the addresses are no secret; an attacker scans for them).
KERNEL_HOLDINGS = r"""
import json, os, urllib.error, urllib.request
import psycopg


def _vault(path, token):
    req = urllib.request.Request(VAULT_ADDR + "/v1/" + path, headers={"X-Vault-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (UnicodeError, ValueError):  # a value no HTTP header can carry
        return 0


def _read(table):
    try:
        with psycopg.connect(
            **DB, user=os.environ["PGUSER"], password=os.environ["PGPASSWORD"], connect_timeout=5
        ) as conn:
            return ["rows", len(conn.execute("select * from " + table).fetchall())]
    except psycopg.Error as exc:
        return [type(exc).__name__, str(exc).splitlines()[0]]


_values = {v for v in [*os.environ.values(), *EXTRA] if len(v) >= 8 and v.isascii()}
_answers = {}
for _path in ("database/creds/fraud-pii", "database/creds/analysts-ro", "auth/token/lookup-self"):
    for _v in sorted(_values):
        _code = _vault(_path, _v)
        _answers.setdefault(_path, {}).setdefault(str(_code), 0)
        _answers[_path][str(_code)] += 1
print("PDJSON" + json.dumps({
    "vault_names": sorted(k for k in os.environ if "VAULT" in k.upper()),
    "tried": len(_values),
    "vault": _answers,
    "issued_for": os.environ.get("PGUSER", "").split("_")[:2],  # the login itself is redacted
    "sales": _read("sales"),
    "customers": _read("customers"),
}))
"""
