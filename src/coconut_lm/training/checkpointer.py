"""A run's checkpoints, in one place: step checkpoints (resumable, the newest `keep_last` kept), `best/`
(chosen by curriculum progress, then validation accuracy), and resuming from the newest complete one.

    saver = Checkpointer(cfg, env, model, wrapped, tokenizer, method, "symbolic", fingerprints)
    saver.save_step(optimizer, state, epoch)                 # checkpoints/step-NNNNNNNN, then prune
    saver.keep_if_best(optimizer, state, progress, accuracy) # best/, when it beats the one there
    saver.resume(optimizer, state)                           # the newest complete step checkpoint, or None

The folder format (manifest, atomic writes, `RunMeta`) is `checkpoint.py`'s; the resumable counters
are `TrainerState`'s. A trainer state is `TrainerState.state_dict()` plus the optimizer, the config
and the data fingerprints, flat, as every earlier coconut-lm wrote it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from coconut_lm.errors import CoconutError
from coconut_lm.recipe.methods import Method
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training import dist
from coconut_lm.training.config import TrainConfig
from coconut_lm.training.manifest import sha256_file
from coconut_lm.training.run_config import RESUME_KEYS, checkpoint_meta
from coconut_lm.training.state import COUNTERS, TrainerState


def run_fingerprints(cfg: TrainConfig, tokenizer) -> dict[str, str]:
    """sha256 of the data files as read now and of the tokenizer's vocabulary: what a resume must find unchanged."""
    prints = {key: sha256_file(getattr(cfg, key)) for key in ("train_path", "val_path") if getattr(cfg, key)}
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    prints["tokenizer"] = hashlib.sha256(vocab.encode("utf-8")).hexdigest()
    return prints


class Checkpointer:
    """Writes and reads one run's checkpoints on every rank (rank 0 writes; the others wait).

    `before_save` runs first at every save (the trainer's check that no loss went non-finite), so a
    diverged model is never saved over the last good checkpoint.
    """

    def __init__(self, cfg: TrainConfig, env: dist.DistEnv, model: torch.nn.Module, wrapped: torch.nn.Module,
                 tokenizer, method: Method, data_format: str, fingerprints: dict[str, str],
                 before_save: Callable[[], None] = lambda: None) -> None:
        self.cfg, self.env, self.model, self.wrapped = cfg, env, model, wrapped
        self.tokenizer, self.method, self.data_format = tokenizer, method, data_format
        self.fingerprints, self.before_save = fingerprints, before_save
        self.run_dir = Path(cfg.out_dir)

    def save(self, folder: Path, optimizer: torch.optim.Optimizer, state: TrainerState | None, epoch: int) -> None:
        """A checkpoint of the model after `epoch` (recorded in coconut.json); resumable when `state` is given."""
        self.before_save()
        model_state, optim_state = dist.full_state(self.wrapped, optimizer, self.env, self.cfg.distributed)
        if self.env.is_main:
            trainer_state = None
            if state is not None:
                trainer_state = {**state.state_dict(), "optimizer": optim_state, "config": self.cfg.to_dict(),
                                 "fingerprints": self.fingerprints}
            meta = checkpoint_meta(self.cfg, self.method, epoch, self.data_format)
            ckpt.save_checkpoint(folder, lambda tmp: self.model.save_pretrained(tmp, meta=meta, state_dict=model_state),
                                 self.tokenizer, trainer_state)
            if state is not None:
                ckpt.prune_checkpoints(self.run_dir, self.cfg.keep_last)
        dist.barrier(self.env)

    def save_step(self, optimizer: torch.optim.Optimizer, state: TrainerState, epoch: int) -> None:
        """The resumable checkpoint after `state.global_step` steps; only the newest `keep_last` stay."""
        self.save(self.run_dir / "checkpoints" / ckpt.checkpoint_name(state.global_step), optimizer, state, epoch)

    def keep_if_best(self, optimizer: torch.optim.Optimizer, state: TrainerState, progress: int,
                     accuracy: float) -> bool:
        """Save this epoch's model as `best/` if it beats the one there (curriculum progress first, then accuracy)."""
        if not state.improves_best(progress, accuracy):
            return False
        state.best_accuracy, state.best_epoch, state.best_progress = accuracy, state.epoch, progress
        self.save(self.run_dir / "best", optimizer, None, epoch=state.epoch)
        return True

    def last_good(self) -> Path | None:
        """The newest complete step checkpoint, or None."""
        return ckpt.latest_checkpoint(self.run_dir, warn=lambda _: None)

    def claim_run_dir(self) -> None:
        """Refuse to train over an earlier run's files, or delete them when `overwrite` says so."""
        produced = [self.run_dir / n for n in ("checkpoints", "best", "metrics.jsonl")]
        if not any(p.exists() for p in produced):
            return
        if not self.cfg.overwrite:
            raise CoconutError(f"{self.run_dir} already holds a run; continue it with --resume, replace it with "
                               f"overwrite=true, or choose another out_dir")
        if self.env.is_main:
            for p in produced:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        dist.barrier(self.env)

    def resume(self, optimizer: torch.optim.Optimizer, state: TrainerState) -> Path | None:
        """Load the newest complete step checkpoint into the model, `optimizer` and `state`; None when there is none.

        Refused, with nothing changed, when the data, the tokenizer or a config key that shapes the run
        (`RESUME_KEYS`) differs from what the checkpoint was trained with, or its trainer state is incomplete.
        """
        from coconut_lm.model.coconut import CoconutLM

        problems: list[str] = []
        found = ckpt.latest_checkpoint(self.run_dir, warn=problems.append)
        if found is None:
            earlier = ckpt.list_checkpoints(self.run_dir)
            if earlier or (self.run_dir / "metrics.jsonl").exists():
                # Starting over here would delete checkpoints this run did not write and mix two runs' rows.
                why = problems[0].removeprefix("warning: skipping ") if problems else "no step checkpoint"
                raise CoconutError(f"cannot resume {self.run_dir}: no complete checkpoint to continue from ({why}); "
                                   f"nothing was changed. Restore the missing file, or start over with overwrite=true "
                                   f"and without --resume")
            return None
        for message in problems:
            if self.env.is_main:
                print(message)
        saved = ckpt.load_trainer_state(found)
        self._check_same_run(found, saved)
        loaded = CoconutLM.from_pretrained(found)
        ckpt.check_finite_weights(loaded, found)
        dist.load_full_state(self.wrapped, optimizer, loaded.state_dict(), saved["optimizer"], self.env,
                             self.cfg.distributed)
        state.load_state_dict(saved)  # after the weights: building `loaded` drew from the RNG this restores
        return found

    def _check_same_run(self, found: Path, saved: dict[str, Any]) -> None:
        """Refuse a checkpoint whose data, tokenizer or run-shaping config differs from now, or whose state is incomplete."""
        config = saved.get("config", {})
        for key, digest in self.fingerprints.items():  # runs saved before fingerprints were recorded skip this
            if key in saved.get("fingerprints", {}) and saved["fingerprints"][key] != digest:
                what = "the tokenizer built from the data" if key == "tokenizer" else f"{key} {getattr(self.cfg, key)}"
                raise CoconutError(f"cannot resume {found}: {what} changed since the run started (its sha256 "
                                   f"differs), so the restored weights would not match it; restore it, or start "
                                   f"a new run")
        defaults = TrainConfig().to_dict()
        was = config.get("precision", defaults["precision"])
        if config and (was == "bf16-weights") != (self.cfg.precision == "bf16-weights"):
            raise CoconutError(f"cannot resume {found}: config 'precision' was {was!r} there and is "
                               f"{self.cfg.precision!r} now; bf16-weights keeps fp32 master weights in the optimizer "
                               f"state and the others do not, so set it back or start a new run")
        for key in RESUME_KEYS:  # a key the saved config lacks was added since: the run used its default
            if config and config.get(key, defaults[key]) != getattr(self.cfg, key):
                raise CoconutError(f"cannot resume {found}: config '{key}' was {config.get(key, defaults[key])!r} there "
                                   f"and is {getattr(self.cfg, key)!r} now; a resume continues the same run (its model, "
                                   f"method and data order), so set it back or start a new run")
        missing = TrainerState.missing(saved, (*COUNTERS, "optimizer", "torch_rng", "best_progress"))
        if missing:
            raise CoconutError(f"cannot resume {found / ckpt.TRAINER_STATE}: the trainer state lacks "
                               f"{', '.join(repr(k) for k in missing)} (not written by coconut-lm train?); nothing "
                               f"was changed")
