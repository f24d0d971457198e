"""Validation during training: the teacher-forced loss and the generation accuracy on the validation
set, tokenised once at set-up, at the position and thought count the method's schedule gives the epoch.

    validator = Validator(cfg, env, method, tokenizer, examples, data, lockstep=False, progress=True)
    row = validator.row(model, epoch, step, stage, progress, autocast)    # one `val` row of metrics.jsonl
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch

from coconut_lm.eval.evaluate import evaluate, validation_loss
from coconut_lm.recipe.methods import Method, TokenizedExample
from coconut_lm.tasks.examples import Example
from coconut_lm.training import dist
from coconut_lm.training.config import TrainConfig
from coconut_lm.training.run_config import layout_config, schedule_config, val_thoughts


class Validator:
    """Scores the model on the validation set after an epoch (rank 0 only; every rank in lockstep under FSDP)."""

    def __init__(self, cfg: TrainConfig, env: dist.DistEnv, method: Method, tokenizer, examples: Sequence[Example],
                 data: Sequence[TokenizedExample], lockstep: bool = False, progress: bool = True) -> None:
        self.cfg, self.env, self.method, self.tokenizer = cfg, env, method, tokenizer
        self.examples, self.data, self.lockstep, self.progress = examples, data, lockstep, progress
        self.layout, self.schedule = layout_config(cfg), schedule_config(cfg)

    def row(self, model: torch.nn.Module, epoch: int, step: int, stage: int, progress: int,
            autocast: Callable[[], AbstractContextManager]) -> dict[str, Any]:
        """The `val` row after `epoch`: loss, accuracy, tokens, the thought count used; the same row on every rank."""
        cfg, env = self.cfg, self.env
        row: dict[str, Any] = {"type": "val", "step": step, "epoch": epoch, "stage": stage, "progress": progress}
        if self.data and (env.is_main or self.lockstep):
            position = self.method.schedule.eval_position(self.schedule, epoch)
            row["val_loss"] = validation_loss(model, self.data, self.method, self.layout, position,
                                              cfg.eval_batch_size, env.device, autocast)
            n_thoughts = val_thoughts(cfg, self.method, epoch)
            with autocast():
                result = evaluate(model, self.tokenizer, self.examples, self.method, self.layout, cfg.task,
                                  n_thoughts, cfg.eval_batch_size, cfg.max_new_tokens,
                                  use_classifier=cfg.eval_use_classifier and model.eot_head is not None,
                                  max_thoughts=cfg.max_thoughts, progress=self.progress, desc="validate",
                                  data=self.data)
            s = result.summary
            row.update(val_accuracy=s.accuracy, val_tokens=s.mean_tokens, val_thoughts=n_thoughts,
                       val_examples_per_s=s.examples_per_s, val_cot_match=s.cot_match)
        return dist.broadcast_object(row, env)
