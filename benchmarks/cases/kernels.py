"""Kernels: start latency and the output hot path (the PII guard and the credential broker)."""

from __future__ import annotations

from benchmarks.core import BenchServer, Measure, case

PRINTS = 20_000
OUTPUT_BYTES = 10_000_000


@case("kernel_start", description="POST /api/kernels to kernel_info_reply over the websocket")
async def kernel_start(server: BenchServer, measure: Measure) -> None:
    kernel = None
    try:
        async with measure():
            kernel = await server.start_kernel()
            await kernel.kernel_info()
    finally:
        if kernel is not None:
            await kernel.shutdown()


@case("prints_20k", unit="print", description=f"{PRINTS:,} flushed prints, one message each")
async def prints_20k(server: BenchServer, measure: Measure) -> None:
    kernel = await server.start_kernel()
    try:
        await kernel.kernel_info()
        code = f"for i in range({PRINTS}):\n    print(i, flush=True)\n"
        async with measure(ops=PRINTS):
            stats = await kernel.execute(code)
        if stats["stream_bytes"] < PRINTS:  # dropped output would make the numbers meaningless
            raise RuntimeError(f"output was dropped: {stats}")
    finally:
        await kernel.shutdown()


@case("output_10mb", unit="MB", description="10 MB of stream output in 100 KB flushes")
async def output_10mb(server: BenchServer, measure: Measure) -> None:
    kernel = await server.start_kernel()
    try:
        await kernel.kernel_info()
        code = (
            "import sys\n"
            "chunk = ('x' * 99 + '\\n') * 1000\n"
            f"for _ in range({OUTPUT_BYTES // 100_000}):\n"
            "    sys.stdout.write(chunk); sys.stdout.flush()\n"
        )
        async with measure(ops=OUTPUT_BYTES // 1_000_000):
            stats = await kernel.execute(code)
        if stats["stream_bytes"] < OUTPUT_BYTES:
            raise RuntimeError(f"output was dropped: {stats}")
    finally:
        await kernel.shutdown()
