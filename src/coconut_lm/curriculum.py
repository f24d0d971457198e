"""The training schedules as pure functions: Coconut's stages, stage mixing, and iCoT's token removal.

Every function maps (epoch, step, example, seed) to a schedule position `k` for `methods.py`:
a stage for the stage-based methods, a number of removed chain tokens for iCoT.

    stage = coconut_stage(epoch, epochs_per_stage=5)                    # 0,0,0,0,0,1,...
    ks = example_positions(method, cfg, epoch, step_frac, n_steps, rng)   # one k per example
    reset = optimizer_reset_key(method, cfg, epoch, step_frac)            # changes => reset AdamW

The optimizer is reset whenever `optimizer_reset_key` changes value: at each Coconut stage change
(or every epoch, as the official code does), and at each new iCoT removal count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from coconut_lm.methods import Method

ResetPolicy = Literal["stage", "epoch", "never"]


@dataclass(frozen=True)
class ScheduleConfig:
    """Schedule settings (documented in `config.TrainConfig`)."""

    epochs_per_stage: int = 5
    max_latent_stage: int = 6
    uniform_prob: float = 0.0
    reset_optimizer: ResetPolicy = "stage"
    icot_delta: float = 8.0
    icot_lambda: float = 4.0
    icot_max_removed: int = 10_000


def coconut_stage(epoch: int, epochs_per_stage: int) -> int:
    """The curriculum stage of an epoch: epoch // epochs_per_stage (stage 0 is plain CoT)."""
    return epoch // max(epochs_per_stage, 1)


def icot_scheduled_removal(epoch: int, step_frac: float, delta: float) -> int:
    """Tokens iCoT removes at this point: ⌊Δ·(epoch + t/T)⌋, i.e. Δ per epoch spread over its steps."""
    return int(math.floor(delta * (epoch + step_frac) + 1e-9))


def icot_removal(scheduled: int, n_chain_tokens: int, extra: int, max_removed: int) -> int:
    """Tokens removed from one chain: the scheduled count plus its smoothing offset, everything past the threshold."""
    if scheduled >= max_removed:
        return n_chain_tokens
    return min(scheduled + extra, n_chain_tokens)


def sample_removal_offsets(rng: np.random.Generator, n: int, lam: float) -> np.ndarray:
    """iCoT removal smoothing: offsets o >= 0 with P(o) ∝ exp(-λo), i.e. geometric with p = 1 - e^-λ."""
    if lam <= 0 or not math.isfinite(lam):
        return np.zeros(n, dtype=np.int64)
    return rng.geometric(1.0 - math.exp(-lam), size=n).astype(np.int64) - 1


def example_positions(
    method: Method,
    cfg: ScheduleConfig,
    epoch: int,
    step_frac: float,
    n_steps: np.ndarray,
    n_chain_tokens: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """One schedule position k per example in a batch.

    Args:
        method: the method being trained (its `schedule` picks the rule).
        cfg: schedule settings.
        epoch: the current epoch (0-based).
        step_frac: how far through the epoch this batch is, in [0, 1).
        n_steps: (B,) language steps of each example.
        n_chain_tokens: (B,) chain tokens of each example (iCoT).
        rng: the batch's generator (seeded from run seed, epoch and batch index).
    """
    n = len(n_steps)
    if method.schedule == "stages":
        ks = np.full(n, coconut_stage(epoch, cfg.epochs_per_stage), dtype=np.int64)
        if cfg.uniform_prob > 0:
            # Stage mixing: each example, with probability p, gets a stage drawn from 0..n_steps.
            mix = rng.random(n) < cfg.uniform_prob
            drawn = rng.integers(0, np.asarray(n_steps) + 1)
            ks = np.where(mix, drawn, ks)
        return ks
    if method.schedule == "icot":
        scheduled = icot_scheduled_removal(epoch, step_frac, cfg.icot_delta)
        extra = sample_removal_offsets(rng, n, cfg.icot_lambda)
        return np.array(
            [icot_removal(scheduled, int(t), int(o), cfg.icot_max_removed) for t, o in zip(n_chain_tokens, extra)],
            dtype=np.int64,
        )
    return np.zeros(n, dtype=np.int64)


def optimizer_reset_key(method: Method, cfg: ScheduleConfig, epoch: int, step_frac: float,
                        longest_chain: int | None = None) -> int | None:
    """A value that changes exactly when the optimizer should be reset (None: never reset).

    For iCoT, `longest_chain` (tokens of the longest training chain) stops the resets once every
    chain is fully removed: past that point the layouts no longer change.
    """
    if cfg.reset_optimizer == "never":
        return None
    if cfg.reset_optimizer == "epoch":
        return epoch
    if method.schedule == "stages":
        # Past the last latent stage the layout no longer changes, so neither does the key.
        return min(coconut_stage(epoch, cfg.epochs_per_stage), cfg.max_latent_stage + 1)
    if method.schedule == "icot":
        cap = cfg.icot_max_removed if longest_chain is None else min(cfg.icot_max_removed, longest_chain)
        return min(icot_scheduled_removal(epoch, step_frac, cfg.icot_delta), cap)
    return None


def eval_position(method: Method, cfg: ScheduleConfig, epoch: int) -> int:
    """The schedule position whose layout validation loss uses at the end of `epoch`."""
    if method.schedule == "stages":
        return coconut_stage(epoch, cfg.epochs_per_stage)
    if method.schedule == "icot":
        scheduled = icot_scheduled_removal(epoch, 1.0 - 1e-9, cfg.icot_delta)
        return scheduled if scheduled < cfg.icot_max_removed else ALL_TOKENS
    return 0


#: An iCoT position that removes every chain token.
ALL_TOKENS = 1 << 30
