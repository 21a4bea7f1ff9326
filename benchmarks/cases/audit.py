"""Audit trail: configured as in production on the extension side, plus a /files/ download case.

The foundation's ``contents_get_small`` / ``contents_put_1mb`` and the kernel ``execute`` cases
already run with the audit trail on (it is always on); this module gives it a real key, a JSONL
sink with fsync per batch and checkpoints in a second file (with ``--service``: the service's
sink, as a client of the service is configured), and adds the download path, which the trail
records through its own files handler.
"""

from __future__ import annotations

import asyncio
import secrets

from benchmarks.core import BenchEnv, BenchServer, Measure, case, server_config


@server_config
def audit_trail(env: BenchEnv) -> dict:
    env.extension_env["PROD_DISCOVERY_AUDIT_KEY"] = secrets.token_hex(32)
    if env.service_url:
        # --service: records are shipped to the service (ServiceSink, the default of a client),
        # which seals and signs them; the spool holds them only while it is unreachable.
        return {"AuditTrail": {"spool_dir": str(env.workdir / "audit-spool")}}
    return {
        "AuditTrail": {
            "checkpoint_path": str(env.workdir / "audit-checkpoints" / "cp.jsonl"),
            "spool_dir": str(env.workdir / "audit-spool"),
        },
        "JSONLSink": {"path": str(env.workdir / "audit" / "audit.jsonl"), "fsync": True},
    }


CSV = "id,amount,region\n" + "".join(f"{i},{i * 7 % 1000},eu\n" for i in range(4500))


async def _downloads(server: BenchServer, measure: Measure, name: str, settle: float) -> None:
    """40 downloads of the CSV, written ``settle`` seconds before the first one."""
    await server.json(
        "PUT", f"/api/contents/{name}", {"type": "file", "format": "text", "content": CSV}
    )
    if settle:
        await asyncio.sleep(settle)
        await server.request("GET", f"/files/{name}")  # hashes it once; the digest is kept
    n = 40
    async with measure(ops=n):
        for _ in range(n):
            await server.request("GET", f"/files/{name}")


@case(
    "files_download_64kb",
    description="GET /files/ of a 64 KB CSV written just before (hashed at each download)",
)
async def files_download_64kb(server: BenchServer, measure: Measure) -> None:
    await _downloads(server, measure, "sales.csv", settle=0)


@case(
    "files_download_settled",
    description="GET /files/ of a 64 KB CSV unchanged for over 2 s (its digest is cached)",
)
async def files_download_settled(server: BenchServer, measure: Measure) -> None:
    # The usual download: a file not written in the last seconds. The audit trail hashes a
    # file once and keeps the digest while device, inode, size, mtime and ctime are unchanged
    # and the ctime is 2 s old (recording.py, _DIGESTS).
    await _downloads(server, measure, "settled.csv", settle=2.1)


EXECUTES = 20


@case(
    "execute_small_x20",
    description=f"{EXECUTES} small execute_requests (each audited: request with code, reply)",
)
async def execute_small_x20(server: BenchServer, measure: Measure) -> None:
    kernel = await server.start_kernel()
    try:
        await kernel.kernel_info()
        await kernel.execute("x = 0")
        async with measure(ops=EXECUTES):
            for i in range(EXECUTES):
                await kernel.execute(f"x += {i}")
    finally:
        await kernel.shutdown()
