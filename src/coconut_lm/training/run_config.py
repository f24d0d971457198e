"""What a run's config means for its method: the layout and schedule sections, the validation
setting, the checkpoint's `RunMeta`, the learning rate, the resume keys.

    layout_config(cfg)                       # LayoutConfig of a flat TrainConfig
    val_thoughts(cfg, method, epoch)         # thought slots validation uses after `epoch`
    lr_at(cfg, global_step, reset_step, total_steps)

Pure functions of the config (and the point in training), so the trainer, the tests and the
report all get the same answers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from coconut_lm.recipe.curriculum import ScheduleConfig
from coconut_lm.recipe.methods import LayoutConfig, Method
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training.config import TrainConfig, section

#: Config keys a resumed run must keep (they shape the data order or the layouts): the fields marked `resume`.
RESUME_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("resume"))


def layout_config(cfg: TrainConfig) -> LayoutConfig:
    """The layout fields of a config."""
    return section(cfg, LayoutConfig)


def schedule_config(cfg: TrainConfig) -> ScheduleConfig:
    """The schedule fields of a config."""
    return section(cfg, ScheduleConfig)


def val_thoughts(cfg: TrainConfig, method: Method, epoch: int) -> int:
    """Thoughts (or slots) for validation after `epoch`, and the eval setting its checkpoint records
    (`Method.eval_thoughts` decides; this reads its arguments off the config)."""
    return method.eval_thoughts(layout_config(cfg), schedule_config(cfg), epoch, cfg.eval_thoughts)


def checkpoint_meta(cfg: TrainConfig, method: Method, epoch: int, data_format: str = "") -> dict[str, Any]:
    """What `coconut.json` records besides token ids (`checkpoint.RunMeta`): method, task, stage, layout, eval
    setting, and the form of the training data (`data_format`: "symbolic" or "words")."""
    return ckpt.RunMeta(
        method=method.name, task=cfg.task, layout=layout_config(cfg), max_new_tokens=cfg.max_new_tokens, epoch=epoch,
        stage=method.schedule.stage(schedule_config(cfg), epoch), eval_thoughts=val_thoughts(cfg, method, epoch),
        eval_use_classifier=cfg.eval_use_classifier, max_thoughts=cfg.max_thoughts, data_format=data_format,
    ).to_json()


def lr_at(cfg: TrainConfig, global_step: int, reset_step: int, total_steps: int) -> float:
    """Learning rate: linear warm-up after each optimizer reset, then constant or cosine to 10%."""
    lr = cfg.lr
    if cfg.lr_schedule == "cosine" and total_steps > 0:
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(global_step / total_steps, 1.0)))
    if cfg.warmup_steps > 0:
        lr *= min(1.0, (global_step - reset_step + 1) / cfg.warmup_steps)
    return lr
