"""What the steps report: the `train` rows of metrics.jsonl (the loss averaged over the steps since the
last row, throughput and peak memory), and the stop at the first non-finite loss.

    rows = TrainLog(RunLog(run_dir), env, batch_size=128)
    rows.add(loss_share, tokens)                       # every step, without a host sync
    row = rows.write(step, epoch, stage, lr)           # every `log_every` steps (all ranks: one all-reduce)
    finite = FiniteLossCheck(env); finite.update(loss, step); finite.check(lr, last_good)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from coconut_lm.errors import CoconutError
from coconut_lm.training import dist
from coconut_lm.training.runlog import RunLog


class TrainLog:
    """The `train` rows of metrics.jsonl: the loss averaged over the steps since the last row, and throughput."""

    def __init__(self, log: RunLog, env: dist.DistEnv, batch_size: int) -> None:
        self.log, self.env, self.batch_size = log, env, batch_size
        self.loss_sum = torch.zeros((), device=env.device)  # this rank's shares of each step's token-mean loss
        self.tokens, self.steps, self.t0 = 0, 0, time.perf_counter()

    def add(self, loss: torch.Tensor, tokens: int) -> None:
        """Count one step: this rank's share of its token-mean loss (0-dim, on the device: no host sync
        until `write`) and the non-padding tokens it computed."""
        self.loss_sum += loss
        self.tokens += tokens
        self.steps += 1

    def write(self, step: int, epoch: int, stage: int, lr: float) -> dict[str, Any]:
        """Write one row (every rank takes part in the loss's all-reduce) and start counting anew."""
        loss = dist.all_reduce_sum(float(self.loss_sum), self.env) / self.steps  # the sum over ranks is the whole
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        # `steps`: how many steps the loss averages (fewer in the first row after a resume).
        row = {"type": "train", "step": step, "epoch": epoch, "stage": stage, "loss": loss, "steps": self.steps,
               "lr": lr, "tokens_per_s": self.tokens * self.env.world_size / elapsed,
               "examples_per_s": self.steps * self.batch_size / elapsed, "peak_memory_MiB": peak_memory_mib(self.env.device)}
        self.log.write(row)
        self.loss_sum.zero_()
        self.tokens, self.steps, self.t0 = 0, 0, time.perf_counter()
        return row


def peak_memory_mib(device: torch.device) -> float:
    """The peak memory so far, MiB: on CUDA the most tensors held since the epoch began (`max_memory_allocated`;
    the trainer resets it at each epoch's start, so validation's generation is left out), else the process's peak
    resident set (Linux `ru_maxrss`, never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class FiniteLossCheck:
    """Remembers the first step whose loss was not finite, on the device: read only at log rows and saves.

    `check` raises once any rank saw one, before anything is logged or saved after it: the weights
    after such a step are not finite either, and the last checkpoint stays the last good one.
    """

    def __init__(self, env: dist.DistEnv) -> None:
        self.env = env
        self.first_bad_step = torch.tensor(-1, device=env.device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        """Record `step` if its `loss` is not finite and no earlier step's was (no host sync)."""
        self.first_bad_step = torch.where((self.first_bad_step < 0) & ~torch.isfinite(loss), step, self.first_bad_step)

    def check(self, lr: float, last_good: Callable[[], Path | None]) -> None:
        """Stop with a CoconutError naming the step and the last good checkpoint (`last_good()`), if any rank saw one."""
        bad = int(self.first_bad_step)
        if dist.all_reduce_sum(float(bad >= 0), self.env) == 0:
            return
        found = last_good()
        last = f"the last good checkpoint is {found} (--resume continues from it)" if found else "no checkpoint was saved"
        at = f"at step {bad}" if bad >= 0 else "on another rank"
        raise CoconutError(f"training stopped: the loss became non-finite (NaN or inf) {at} (lr={lr}); "
                           f"nothing was saved after it and {last}; lower lr or check the data")
