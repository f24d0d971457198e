"""Timing tools of `coconut-lm bench`: interleaved rounds, FLOPs, the matmul yardstick, host syncs.

Variants of one measure run in interleaved rounds (A, B, then B, A, ...) after warm-up, so load
from other processes hits them alike; each ratio is the median of the same-round ratios.

    t = time_interleaved({"coconut": step_a, "plain": step_b}, "plain", device)   # {name: Timing}
    utilisation = step_flops(step_a) / t["coconut"].median_s / matmul_flops_per_s(device)
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so that `coconut-lm --help` stays quick
    import torch


@dataclass
class Timing:
    """Seconds per call: median and min over rounds, the median same-round ratio to the baseline, and each
    round's seconds per call (for same-round ratios between any two variants)."""

    median_s: float
    min_s: float
    ratio: float
    rounds: list[float] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only), so a wall-clock reading covers it."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[Hashable, Callable[[], object]], baseline: Hashable, device: torch.device,
                     warmup: int = 2, repeats: int = 5, clock: Callable[[], float] = time.perf_counter,
                     calls: int = 1) -> dict[Hashable, Timing]:
    """Time variants in `repeats` rounds of `calls` calls each, after `warmup` rounds; see `Timing`.

    Rounds alternate the order (A, B, C, then C, B, A), so no variant always runs first. `clock` is wall
    time by default; `time.thread_time` (CPU time of this thread) is steadier on cores shared with other
    processes, which inflate it less; it counts this thread alone and no GPU time, so use it on CPU with one
    intra-op thread (`OMP_NUM_THREADS=1`).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[Hashable, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            fn = fns[name]
            _sync(device)
            t0 = clock()
            for _ in range(calls):
                fn()
            _sync(device)
            times[name].append((clock() - t0) / calls)
    return {name: Timing(statistics.median(t), min(t), statistics.median(x / y for x, y in zip(t, times[baseline])), t)
            for name, t in times.items()}


def step_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of `step` (a train step or a whole epoch), as torch's FlopCounterMode counts them:
    the matmuls and attention of the actual shapes, padding included."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def matmul_flops_per_s(device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of a large square fp32 matmul on this device and these threads: the yardstick of utilisation."""
    import torch

    n = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        if i:  # the first call warms up
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def count_host_syncs(fn: Callable[[], object], device: torch.device) -> int | None:
    """CUDA host synchronisations during fn() (None on CPU), as counted by torch's sync debug mode."""
    if device.type != "cuda":
        return None
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)
