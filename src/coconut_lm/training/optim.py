"""The optimizer of a run: rebuilt whenever the curriculum says so, stepped at the learning rate of `lr_at`.

    optim = CurriculumOptimizer(new_adamw, cfg, method, longest_chain, total_steps, log)
    optim.maybe_reset(state, step_frac)      # before a step: a new optimizer when `Schedule.optimizer_key` changes
    lr = optim.step(state, parameters)       # after the backward passes: set lr, clip, step, zero the gradients
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from coconut_lm.recipe.methods import Method
from coconut_lm.training.config import TrainConfig
from coconut_lm.training.master import MasterAdamW
from coconut_lm.training.run_config import lr_at, schedule_config
from coconut_lm.training.runlog import RunLog
from coconut_lm.training.state import TrainerState


class CurriculumOptimizer:
    """The current optimizer (`optimizer`), replaced by `build()` at each change of the schedule's optimizer key."""

    def __init__(self, build: Callable[[], torch.optim.Optimizer | MasterAdamW], cfg: TrainConfig, method: Method,
                 longest_chain: int, total_steps: int, log: RunLog) -> None:
        self.build, self.cfg, self.method, self.log = build, cfg, method, log
        self.schedule, self.longest_chain, self.total_steps = schedule_config(cfg), longest_chain, total_steps
        self.optimizer = build()

    def maybe_reset(self, state: TrainerState, step_frac: float) -> None:
        """Start a fresh optimizer when the key changed since the last step (the first key only records itself)."""
        key = self.method.schedule.optimizer_key(self.schedule, state.epoch, step_frac, self.longest_chain)
        if key != state.reset_key:
            if state.reset_key is not None:
                self.optimizer = self.build()
                # Warm-up restarts with each curriculum stage, not with iCoT's resets at every removed token.
                if self.method.schedule.rewarm:
                    state.reset_step = state.global_step
                self.log.write({"type": "reset", "step": state.global_step, "epoch": state.epoch, "key": key})
            state.reset_key = key

    def step(self, state: TrainerState, parameters: Iterable[torch.nn.Parameter]) -> float:
        """Set the learning rate of this step, clip the gradient of `parameters` (with bf16-weights: summed in
        fp32 by `MasterAdamW.clip_grad_norm`), step and zero it; the lr used."""
        lr = lr_at(self.cfg, state.global_step, state.reset_step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.cfg.grad_clip > 0:
            if isinstance(self.optimizer, MasterAdamW):  # bf16-weights: the norm summed in fp32, applied in step
                self.optimizer.clip_grad_norm(self.cfg.grad_clip)
            else:
                torch.nn.utils.clip_grad_norm_(parameters, self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr
