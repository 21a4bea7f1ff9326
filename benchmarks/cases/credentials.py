"""Credentials: kernel start with per-kernel Vault credentials (extension) vs plain.

``kernel_start`` measures one start per run; this case starts five kernels in a row inside one
measured block, which evens out the timing of single starts. The credential profiles on the extension
side come from the demo seed (``demo_profiles.py``): a child token, a KV secret and, when
PostgreSQL is reachable, a database login, so each start issues and each shutdown (unmeasured)
revokes.
"""

from __future__ import annotations

from benchmarks.core import BenchServer, Kernel, Measure, case

STARTS = 5


@case(
    "kernel_start_x5",
    description=f"{STARTS} sequential kernel starts to kernel_info_reply (credentials issued)",
)
async def kernel_start_x5(server: BenchServer, measure: Measure) -> None:
    kernels: list[Kernel] = []
    try:
        async with measure(ops=STARTS):
            for _ in range(STARTS):
                kernel = await server.start_kernel()
                kernels.append(kernel)
                await kernel.kernel_info()
    finally:
        for kernel in kernels:
            await kernel.shutdown()
