"""The training schedules: Coconut's stages with stage mixing, iCoT's token removal, and the fixed one.

Each method holds one schedule object (`Method.schedule`); the trainer, the data pipeline and the
report ask it everything schedule-shaped and never branch on its kind:

    sched = METHODS["coconut"].schedule                                  # a Stages
    ks = sched.positions(cfg, epoch, step_frac, n_steps, n_chain_tokens, rng)   # one k per example
    sched.stage(cfg, epoch)                    # the stage logs and checkpoints record
    sched.optimizer_key(cfg, epoch, step_frac) # changes value => the optimizer is reset (`reset_key`, by policy)
    sched.eval_position(cfg, epoch)            # the position validation loss uses
    sched.val_thoughts(cfg, epoch, c, final)   # thought slots validation generates with (`Method.eval_thoughts`)
    sched.progress(cfg, epoch)                 # how far through its curriculum: what best/ compares first
    sched.finished(cfg, epoch)                 # past the last position the layouts change at

A position `k` is a stage for the stage-based methods and a number of removed chain tokens for
iCoT. A new schedule kind overrides what differs; `optimizer_key` applies the `reset_optimizer`
policy to any kind's `reset_key`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

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


def capped_stage(cfg: ScheduleConfig, epoch: int) -> int:
    """The stage of `epoch`, capped at max_latent_stage+1 (every step latent): past it nothing changes."""
    return min(coconut_stage(epoch, cfg.epochs_per_stage), cfg.max_latent_stage + 1)


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


#: An iCoT position that removes every chain token.
ALL_TOKENS = 1 << 30
#: iCoT's progress once the whole chain is removed: above the progress of every epoch before.
CHAIN_REMOVED_RANK = 1 << 30


class Schedule:
    """The fixed schedule: every example at position 0 for the whole run (cot, no_cot, pause, ...).

    Subclasses override what differs. Every answer is a pure function of the settings and the
    point in training, so a resumed run asks the same questions and gets the same answers.
    """

    kind: str = "fixed"
    #: True when logs and reports should name a curriculum stage.
    staged: bool = False
    #: True when the learning-rate warm-up restarts at each optimizer reset.
    rewarm: bool = True

    def positions(self, cfg: ScheduleConfig, epoch: int, step_frac: float, n_steps: np.ndarray,
                  n_chain_tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One schedule position k per example of a batch.

        Args:
            cfg: schedule settings.
            epoch: the current epoch (0-based).
            step_frac: how far through the epoch this batch is, in [0, 1).
            n_steps: (B,) language steps of each example.
            n_chain_tokens: (B,) chain tokens of each example (iCoT).
            rng: the batch's generator (seeded from run seed, epoch and batch index).
        """
        return np.zeros(len(n_steps), dtype=np.int64)

    def stage(self, cfg: ScheduleConfig, epoch: int) -> int:
        """The curriculum stage logs and checkpoints record for `epoch` (Coconut's, capped; 0.. for every method)."""
        return capped_stage(cfg, epoch)

    def reset_key(self, cfg: ScheduleConfig, epoch: int, step_frac: float, longest_chain: int | None = None) -> int | None:
        """A value that changes exactly when the layouts change (None: they never do)."""
        return None

    def optimizer_key(self, cfg: ScheduleConfig, epoch: int, step_frac: float,
                      longest_chain: int | None = None) -> int | None:
        """A value that changes exactly when the optimizer should be reset (None: never reset).

        `reset_optimizer` picks the policy: at each change of the layouts (`stage`: `reset_key`),
        every epoch (`epoch`, as the official code does), or `never`.
        """
        if cfg.reset_optimizer == "never":
            return None
        if cfg.reset_optimizer == "epoch":
            return epoch
        return self.reset_key(cfg, epoch, step_frac, longest_chain)

    def eval_position(self, cfg: ScheduleConfig, epoch: int) -> int:
        """The schedule position whose layout validation loss uses at the end of `epoch`."""
        return 0

    def val_thoughts(self, cfg: ScheduleConfig, epoch: int, slots_per_stage: int, final: int) -> int:
        """Thought slots validation generates with after `epoch`; `final` is the run's final setting.

        `slots_per_stage` is the method's slots per stage (c), or 0 for a method without slots.
        """
        return final

    def progress(self, cfg: ScheduleConfig, epoch: int, longest_chain: int | None = None) -> int:
        """How far through its curriculum the run is after `epoch`: a higher value's checkpoint beats a lower one's.

        `best/` compares it before accuracy. Without it, the best validation accuracy of a Coconut
        run could come from stage 0, which is plain CoT, and `best/` would not be a Coconut model at
        all. For iCoT only epochs whose schedule has removed every chain token (`longest_chain`, or
        past `icot_max_removed`) compete on accuracy; before that each epoch outranks the previous one.
        """
        return 0

    def finished(self, cfg: ScheduleConfig, epoch: int, longest_chain: int | None = None) -> bool:
        """True once the layouts no longer change: the method is trained in its final form."""
        return True


class Stages(Schedule):
    """Coconut's curriculum: stage k = epoch // epochs_per_stage, with optional stage mixing.

    Stage mixing (`uniform_prob` p): each example, with probability p, gets a stage drawn from
    0..its step count. Past max_latent_stage every step is latent and nothing changes any more.
    """

    kind = "stages"
    staged = True

    def positions(self, cfg, epoch, step_frac, n_steps, n_chain_tokens, rng):
        ks = np.full(len(n_steps), coconut_stage(epoch, cfg.epochs_per_stage), dtype=np.int64)
        if cfg.uniform_prob > 0:
            mix = rng.random(len(n_steps)) < cfg.uniform_prob
            drawn = rng.integers(0, np.asarray(n_steps) + 1)
            ks = np.where(mix, drawn, ks)
        return ks

    def reset_key(self, cfg, epoch, step_frac, longest_chain=None):
        return capped_stage(cfg, epoch)

    def eval_position(self, cfg, epoch):
        return coconut_stage(epoch, cfg.epochs_per_stage)

    def val_thoughts(self, cfg, epoch, slots_per_stage, final):
        # A method with slots validates at the current stage's k*c until the last latent stage.
        stage = coconut_stage(epoch, cfg.epochs_per_stage)
        return stage * slots_per_stage if slots_per_stage > 0 and stage < cfg.max_latent_stage else final

    def progress(self, cfg, epoch, longest_chain=None):
        # Without it a Coconut run's best accuracy could come from stage 0, which is plain CoT.
        return capped_stage(cfg, epoch)

    def finished(self, cfg, epoch, longest_chain=None):
        return coconut_stage(epoch, cfg.epochs_per_stage) > cfg.max_latent_stage


class TokenRemoval(Schedule):
    """iCoT: ⌊Δ·(epoch + t/T)⌋ chain tokens removed, plus a smoothing offset per example.

    The optimizer is reset at every new removal count, without restarting the warm-up. Until the
    whole chain is removed each epoch outranks the previous one, so `best/` is the latest model.
    """

    kind = "icot"
    rewarm = False

    def positions(self, cfg, epoch, step_frac, n_steps, n_chain_tokens, rng):
        scheduled = icot_scheduled_removal(epoch, step_frac, cfg.icot_delta)
        extra = sample_removal_offsets(rng, len(n_steps), cfg.icot_lambda)
        return np.array(
            [icot_removal(scheduled, int(t), int(o), cfg.icot_max_removed) for t, o in zip(n_chain_tokens, extra)],
            dtype=np.int64,
        )

    def reset_key(self, cfg, epoch, step_frac, longest_chain=None):
        # `longest_chain` stops the resets once every chain is fully removed.
        cap = cfg.icot_max_removed if longest_chain is None else min(cfg.icot_max_removed, longest_chain)
        return min(icot_scheduled_removal(epoch, step_frac, cfg.icot_delta), cap)

    def eval_position(self, cfg, epoch):
        scheduled = icot_scheduled_removal(epoch, 1.0 - 1e-9, cfg.icot_delta)
        return scheduled if scheduled < cfg.icot_max_removed else ALL_TOKENS

    def progress(self, cfg, epoch, longest_chain=None):
        return CHAIN_REMOVED_RANK if self.finished(cfg, epoch, longest_chain) else epoch

    def finished(self, cfg, epoch, longest_chain=None):
        removed = icot_scheduled_removal(epoch, 1.0 - 1e-9, cfg.icot_delta)
        return removed >= cfg.icot_max_removed or (longest_chain is not None and removed >= longest_chain)


FIXED, STAGES, TOKEN_REMOVAL = Schedule(), Stages(), TokenRemoval()
