"""Measuring memory of one step: peak RSS on CPU (sampled), CUDA max allocated, bytes saved for backward.

    sampler = RssSampler() ; peak, rise = step_memory(step_fn, device, sampler)
    saved = saved_activation_bytes(loss_fn, {id(p) for p in model.parameters()})

On CPU the resident set size only falls when freed memory goes back to the OS, so
`map_large_blocks()` asks glibc to map every block over 64 KiB on its own; otherwise a step's
peak could hide below an earlier one's.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class RssSampler:
    """The process RSS, read from /proc/self/statm; `peak_during` polls it from a thread."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.fd = os.open("/proc/self/statm", os.O_RDONLY)

    def rss(self) -> int:
        return int(os.pread(self.fd, 128, 0).split()[1]) * self.page

    def peak_during(self, fn: Callable[[], object]) -> tuple[int, int]:
        """(RSS just before fn, peak RSS while it ran), polling about every 0.2 ms."""
        base = self.rss()
        peak, stop = [base], threading.Event()

        def poll() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], self.rss())
                time.sleep(0.0002)

        thread = threading.Thread(target=poll, daemon=True)
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)  # let the poller in between Python-level ops, not every 5 ms
        thread.start()
        try:
            fn()
        finally:
            stop.set()
            thread.join()
            sys.setswitchinterval(switch)
        return base, max(peak[0], self.rss())


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def map_large_blocks() -> bool:
    """Make glibc give every block over 64 KiB its own mapping, returned to the OS when freed.

    Otherwise freed activations stay in malloc's heap and the RSS never falls between steps, so
    a later step's peak would hide below an earlier one's. Irreversible; False if not glibc.
    """
    libc = _libc()
    return libc is not None and bool(libc.mallopt(-3, 64 * 1024))  # -3: M_MMAP_THRESHOLD


def release_free_memory() -> None:
    """Collect garbage cycles and hand malloc's free pages back, so the RSS is what is live."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def saved_activation_bytes(loss_fn: Callable[[], torch.Tensor], params: set[int]) -> int:
    """Bytes of the distinct storages autograd saves for backward while loss_fn() builds its graph.

    Storages of parameters (data pointers in `params`) are left out: every variant keeps them.
    """
    import torch

    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    return sum(seen.values())


def step_memory(step: Callable[[], None], device: torch.device, sampler: RssSampler | None) -> tuple[float, float]:
    """(peak, rise over the memory held at the start) of one step, in MiB."""
    import torch

    release_free_memory()
    if sampler is not None:
        base, peak = sampler.peak_during(step)
    else:
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    return peak / 2**20, (peak - base) / 2**20
