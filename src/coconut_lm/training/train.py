"""The training loop: one process on CPU or a GPU, or many under torchrun (DDP, or FSDP2).

    coconut-lm train configs/prosqa_coconut_tiny.yaml out_dir=runs/demo
    torchrun --nproc_per_node 4 -m coconut_lm.cli train configs/prosqa_coconut.yaml
    coconut-lm train configs/prosqa_coconut.yaml --resume       # continue from the latest checkpoint

Per optimizer step: the global batch is laid out at each example's schedule position, split over
ranks and micro-batches; the model returns each micro-batch's summed token losses, and the step
divides them once by the global batch's token count, so any split gives the same gradient. AdamW
is rebuilt whenever the curriculum says so. Every epoch ends with validation (teacher-forced loss
and generation accuracy) and a checkpoint; the best one by validation accuracy is kept in `best/`.

Beside the loop: the epoch's data (`data.epochs.EpochData`), the resumable counters
(`state.TrainerState`), and checkpoint save, prune, best/ and resume (`checkpointer.Checkpointer`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from coconut_lm.data.epochs import EpochData, check_training_form, tokenizer_texts
from coconut_lm.data.pipeline import BatchPlan, EpochBatches, MicroBatch, check_lengths, tokenize_checked
from coconut_lm.errors import CoconutError
from coconut_lm.eval.outputs import live_bars
from coconut_lm.model.backbone import to_weights_dtype
from coconut_lm.model.checkpointing import checkpoint_blocks
from coconut_lm.model.compiled import compile_blocks
from coconut_lm.model.last_block import prune_last_block
from coconut_lm.recipe.methods import get_method
from coconut_lm.tasks.examples import atomic_write_text, load_examples
from coconut_lm.training import dist
from coconut_lm.training.build import build_model
from coconut_lm.training.checkpointer import Checkpointer, run_fingerprints
from coconut_lm.training.config import TrainConfig
from coconut_lm.training.master import MasterAdamW, check_precision
from coconut_lm.training.metrics import FiniteLossCheck, TrainLog
from coconut_lm.training.optim import CurriculumOptimizer
from coconut_lm.training.run_config import layout_config, schedule_config
from coconut_lm.training.runlock import hold_run_dir
from coconut_lm.training.runlog import RunLog
from coconut_lm.training.state import TrainerState
from coconut_lm.training.validation import Validator


@dataclass
class StepStats:
    """What one optimizer step reports: this rank's share of the step's token-mean loss, its tokens, the lr."""

    loss: torch.Tensor  # 0-dim, detached, on the device (read once per log row, not per step)
    tokens: int  # non-padding tokens this rank computed
    lr: float


@dataclass
class TrainResult:
    """What a run produced."""

    run_dir: Path
    best_accuracy: float
    best_epoch: int
    final_accuracy: float | None
    global_step: int
    seconds: float  # this session
    total_seconds: float | None = None  # every session of the run, resumed ones included


def _state_field(name: str) -> property:
    """A Trainer attribute that reads and writes `self.state.<name>` (the counters callers and tests use)."""
    return property(lambda self: getattr(self.state, name), lambda self, value: setattr(self.state, name, value),
                    doc=f"`TrainerState.{name}` of this run")


class TrainerSetup:
    """What one run on one rank is made of, built from its config: the examples and their tokenised sets,
    the model and tokenizer (`build_model`), its wrapping for DDP / FSDP2, the optimizer, and the
    components beside the loop: the resumable state, checkpoints, validation and the metrics log."""

    # The counters live in `self.state` (what a resume restores); these read and set them there.
    epoch, micro_index = _state_field("epoch"), _state_field("micro_index")
    global_step, best_epoch = _state_field("global_step"), _state_field("best_epoch")

    def __init__(self, cfg: TrainConfig, env: dist.DistEnv, progress: bool = True) -> None:
        self.cfg, self.env, self.progress = cfg, env, progress and env.is_main
        self.tty = live_bars(True)
        self.run_dir = Path(cfg.out_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise CoconutError(f"config 'out_dir': {self.run_dir} is a file, not a folder; choose another out_dir")
        if not cfg.train_path.strip():
            raise CoconutError("config 'train_path': empty; give the training data file (coconut-lm data ...)")
        self.method = get_method(cfg.method)
        self.layout, self.schedule = layout_config(cfg), schedule_config(cfg)
        self.train_examples = load_examples(cfg.train_path)
        self.val_examples = load_examples(cfg.val_path)[: cfg.val_max_examples] if cfg.val_path else []
        torch.manual_seed(cfg.seed)
        self.symbolic = check_training_form(self.train_examples, cfg.relabel_every_epoch, str(cfg.train_path))
        model, self.tokenizer = build_model(cfg, tokenizer_texts(self.train_examples, self.symbolic),
                                            symbolic=self.symbolic)
        # bf16-weights: the weights themselves in bf16, the optimizer keeps fp32 masters (training.master); else
        # fp32 weights, also for a base or init_from stored in bf16 (AdamW then steps fp32 weights, as documented).
        # RoPE frequencies stay fp32 (to_weights_dtype).
        self.model = to_weights_dtype(model, torch.bfloat16 if cfg.precision == "bf16-weights" else torch.float32,
                                      env.device)
        self.tokens = model.tokens
        # Both sets are tokenised once here; validation reuses `val_data` every epoch.
        self.train_data, _ = tokenize_checked(self.train_examples, self.tokenizer, str(cfg.train_path), env.is_main)
        self.val_data, _ = tokenize_checked(self.val_examples, self.tokenizer, str(cfg.val_path), env.is_main)
        check_lengths(self.train_data, self.layout, cfg.max_length, cfg.train_path)
        check_lengths(self.val_data, self.layout, cfg.max_length, cfg.val_path)
        self.plan = BatchPlan(cfg.batch_size, cfg.micro_batch_size, env.world_size, env.rank)
        self.steps_per_epoch = len(self.train_data) // cfg.batch_size
        if cfg.max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        self.total_steps = self.steps_per_epoch * (cfg.num_epochs - cfg.start_epoch)
        self.epochs = EpochData(self.train_examples, self.train_data, self.tokenizer, seed=cfg.seed,
                                visited=self.steps_per_epoch * cfg.batch_size, layout=self.layout,
                                max_length=cfg.max_length, source=str(cfg.train_path), fresh_data=cfg.fresh_data,
                                relabel=cfg.relabel_every_epoch)
        prune = cfg.prune_last_block
        if prune is None:  # measured on CPU only (docs/performance.md, issue 30)
            prune = env.device.type == "cpu" and not (cfg.gradient_checkpointing or cfg.compile)
        if prune and not prune_last_block(self.model) and cfg.prune_last_block:
            raise CoconutError(f"config 'prune_last_block': needs a GPT-2 backbone, not {type(self.model.base).__name__}")
        if cfg.gradient_checkpointing:  # before wrapping: FSDP2's hooks stay outside the checkpoint
            checkpoint_blocks(self.model)
        self.wrapped = dist.wrap_model(self.model, env, cfg.distributed)
        if cfg.compile:  # after wrapping: FSDP2 shards the same block objects in place
            compile_blocks(self.model, cfg.compile_mode, backend=cfg.compile_backend)
        # FSDP ranks must call every block the same number of times (see dist.lockstep_plan).
        self.lockstep = env.distributed and cfg.distributed == "fsdp"
        check_precision(cfg.precision, env.device)
        self.use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and env.device.type == "cuda")
        self.state = TrainerState(epoch=cfg.start_epoch)
        self.finite = FiniteLossCheck(env)
        self.longest_chain = max((sum(len(s) for s in ex.steps) for ex in self.train_data), default=0)
        self.checkpoints = Checkpointer(cfg, env, self.model, self.wrapped, self.tokenizer, self.method,
                                        "symbolic" if self.symbolic else "words", run_fingerprints(cfg, self.tokenizer),
                                        before_save=self.check_finite)
        self.validator = Validator(cfg, env, self.method, self.tokenizer, self.val_examples, self.val_data,
                                   self.lockstep, self.progress)
        self.log = RunLog(self.run_dir, cfg.report_to, enabled=env.is_main, config=cfg.to_dict())
        self.optim = CurriculumOptimizer(self._new_optimizer, cfg, self.method, self.longest_chain, self.total_steps,
                                         self.log)

    def _new_optimizer(self) -> torch.optim.Optimizer | MasterAdamW:
        """AdamW over the weights; with bf16-weights over their fp32 masters, which a reset keeps (only the
        moments start over, as they do for fp32 weights)."""
        kw = {"lr": self.cfg.lr, "betas": self.cfg.betas, "weight_decay": self.cfg.weight_decay}
        if self.cfg.precision != "bf16-weights":
            return torch.optim.AdamW(self.wrapped.parameters(), **kw)
        current = getattr(getattr(self, "optim", None), "optimizer", None)
        return MasterAdamW(self.wrapped.parameters(), masters=current.masters if current is not None else None, **kw)

    @property
    def optimizer(self) -> torch.optim.Optimizer | MasterAdamW:
        """The current optimizer (`CurriculumOptimizer` replaces it at each reset)."""
        return self.optim.optimizer

    def autocast(self):
        if self.use_bf16:
            return torch.autocast(self.env.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def stage(self) -> int:
        """The curriculum stage of this epoch for logs (`Schedule.stage`: capped at max_latent_stage+1, all steps latent)."""
        return self.method.schedule.stage(self.schedule, self.state.epoch)

    def curriculum_progress(self) -> int:
        """How far through its curriculum the run is after this epoch (`Schedule.progress`): best/ compares it first."""
        return self.method.schedule.progress(self.schedule, self.state.epoch, self.longest_chain)

    def epoch_data(self) -> list:
        """This epoch's tokenised training data (`EpochData.draw`: the file's, fresh, or relabelled)."""
        return self.epochs.draw(self.state.epoch)

    def check_finite(self) -> None:
        """Stop with a CoconutError once any step's loss was NaN or infinite (`FiniteLossCheck`), before it is
        logged or saved."""
        self.finite.check(self.cfg.lr, self.checkpoints.last_good)


class Trainer(TrainerSetup):
    """The loop of one run on one rank: the optimizer step, the epochs, validation, checkpoints and resume."""

    def resume(self) -> bool:
        """Load the latest complete checkpoint of this run (`Checkpointer.resume`); False when there is none."""
        found = self.checkpoints.resume(self.optimizer, self.state)
        if found is None:
            return False
        self.log.truncate_after(self.state.global_step)
        if self.env.is_main:
            print(f"resumed from {found} (epoch {self.state.epoch}, step {self.state.global_step})")
        return True

    def time_is_up(self) -> bool:
        """True once `max_train_seconds` of this process's training have passed (rank 0 decides for all)."""
        if self.cfg.max_train_seconds is None:
            return False
        if not self.out_of_time:
            self.out_of_time = dist.broadcast_object(
                time.perf_counter() - self.state.started > self.cfg.max_train_seconds, self.env)
        return self.out_of_time

    # ------------------------------------------------------------------ loop

    def train_step(self, micro_batches: Sequence[MicroBatch]) -> StepStats:
        """One optimizer step on this rank's micro-batches of one global batch; `bench` times this same step.

        The optimizer is reset first if the schedule says so; the model returns each micro-batch's summed
        token losses, divided here once by the global batch's token count (any split gives the same
        gradient); then the learning rate is set, the gradient clipped, and AdamW steps.
        """
        cfg, env, state = self.cfg, self.env, self.state
        self.optim.maybe_reset(state, micro_batches[0].step_frac)
        loss_share = torch.zeros((), device=env.device)
        tokens = 0
        for i, mb in enumerate(micro_batches):
            batch, split = mb.batch, None
            if self.lockstep:
                width, split = dist.lockstep_plan(batch.input_ids, self.tokens.latent, env)
                batch = batch.pad_to(width, self.tokens.pad)
            batch = batch.to(env.device, non_blocking=True)
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.wrapped, "no_sync") else self.wrapped.no_sync()
            with sync:
                with self.autocast():
                    out = self.wrapped(batch.input_ids, batch.attention_mask, labels=batch.labels, split_columns=split)
                # The one normalisation: sums over the global batch's counts. DDP averages over ranks, hence * world_size.
                per_token = 1 / max(mb.global_label_tokens, 1)
                loss = out.loss_sum * (per_token * env.world_size)
                if out.eot_loss_sum is not None:
                    per_slot = 1 / max(mb.global_thought_slots, 1)
                    loss = loss + cfg.eot_loss_weight * out.eot_loss_sum * (per_slot * env.world_size)
                loss.backward()
            loss_share += out.loss_sum.detach() * per_token
            tokens += int(mb.batch.attention_mask.sum())
            state.micro_index += 1
        lr = self.optim.step(state, self.wrapped.parameters())
        state.global_step += 1
        self.finite.update(loss_share, state.global_step)
        return StepStats(loss_share, tokens, lr)

    def train_epoch(self) -> None:
        cfg, env, state = self.cfg, self.env, self.state
        ds = EpochBatches(self.epoch_data(), self.method, self.layout, self.schedule, self.tokens, self.plan,
                          seed=cfg.seed, epoch=state.epoch, max_steps=cfg.max_steps_per_epoch,
                          length_buckets=cfg.length_buckets)
        loader = ds.loader(state.micro_index, cfg.num_workers, pin_memory=env.device.type == "cuda")
        accum = self.plan.accumulation
        stage = self.stage()
        # A live bar on a terminal; in a log file (stderr not a TTY) one plain line per epoch instead.
        bar = tqdm(total=len(ds) // accum, initial=state.micro_index // accum, disable=not (self.progress and self.tty),
                   desc=f"epoch {state.epoch + 1}/{cfg.num_epochs}", unit="step", leave=False)
        last_row: dict[str, Any] = {}
        self.wrapped.train()
        if env.device.type == "cuda":  # the rows' peak_memory_MiB: this epoch's steps, not the last validation
            torch.cuda.reset_peak_memory_stats(env.device)
        rows = TrainLog(self.log, env, cfg.batch_size)
        pending: list[MicroBatch] = []
        for mb in loader:
            pending.append(mb)
            if mb.micro < accum - 1:
                continue
            stats = self.train_step(pending)
            pending = []
            rows.add(stats.loss, stats.tokens)
            bar.update(1)
            if state.global_step % cfg.log_every == 0 or mb.step == ds.steps - 1:
                self.check_finite()
                last_row = rows.write(state.global_step, state.epoch, stage, stats.lr)
                bar.set_postfix(loss=f"{last_row['loss']:.3f}", stage=stage)
            if self.time_is_up():
                break
            if cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0 and mb.step < ds.steps - 1:
                self.checkpoints.save_step(self.optimizer, state, epoch=state.epoch)
        bar.close()
        if self.progress and not self.tty and last_row:
            stage_text = f"stage {stage}, " if self.method.schedule.staged else ""
            print(f"epoch {state.epoch + 1}/{cfg.num_epochs}: {stage_text}step {state.global_step}, train loss "
                  f"{last_row['loss']:.4f}, {last_row['examples_per_s']:.0f} examples/s", file=sys.stderr, flush=True)

    def validate(self) -> dict[str, Any]:
        """Teacher-forced loss and generation accuracy on the validation set (`Validator`), as a `val` row."""
        self.check_finite()
        return self.validator.row(dist.unwrap(self.wrapped), self.state.epoch, self.state.global_step, self.stage(),
                                  self.curriculum_progress(), self.autocast)

    def run(self, resume: bool = False) -> TrainResult:
        """Train to the end (or `max_train_seconds`): validate, checkpoint and log. `train` holds the run folder."""
        cfg, env, state = self.cfg, self.env, self.state
        start = state.started = time.perf_counter()
        self.out_of_time = False
        if not resume:
            self.checkpoints.claim_run_dir()
        elif not self.resume() and env.is_main:
            print(f"no checkpoint in {self.run_dir}; starting from scratch")
        if env.is_main:  # only once the run may go on: a refused resume leaves the folder as it was
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        final_acc = None
        while state.epoch < cfg.num_epochs:
            self.train_epoch()
            if self.out_of_time and env.is_main:
                print(f"max_train_seconds={cfg.max_train_seconds} reached in epoch {state.epoch + 1} "
                      f"(step {state.global_step}); validating and stopping")
            if (state.epoch + 1) % cfg.eval_every == 0 or state.epoch + 1 == cfg.num_epochs or self.out_of_time:
                row = self.validate()
                self.log.write(row)
                acc = row.get("val_accuracy")
                if acc is not None:
                    final_acc = acc
                    if env.is_main:
                        stage = f"stage {row['stage']}, " if self.method.schedule.staged else ""
                        print(f"epoch {state.epoch + 1}: {stage}val loss {row.get('val_loss', float('nan')):.4f}, "
                              f"val accuracy {acc:.3f}")
                    self.checkpoints.keep_if_best(self.optimizer, state, self.curriculum_progress(), acc)
            if self.out_of_time:  # keep the position inside the epoch so --resume continues from here
                self.checkpoints.save_step(self.optimizer, state, epoch=state.epoch)
                break
            state.epoch += 1
            state.micro_index = 0
            self.checkpoints.save_step(self.optimizer, state, epoch=state.epoch - 1)
        seconds = time.perf_counter() - start
        total = state.earlier_seconds + seconds
        self.log.write({"type": "end", "step": state.global_step, "best_accuracy": state.best_accuracy,
                        "best_epoch": state.best_epoch, "seconds": seconds, "total_seconds": total,
                        "stopped_early": self.out_of_time})
        self.log.close()
        return TrainResult(self.run_dir, state.best_accuracy, state.best_epoch, final_acc, state.global_step, seconds,
                           total)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, device: str = "auto") -> TrainResult:
    """Run training for `cfg` (one process, or one rank of a torchrun job) while holding its run folder."""
    env = dist.init_distributed(device)
    run_dir = Path(cfg.out_dir)
    created, lock = not run_dir.exists(), None
    try:
        lock = hold_run_dir(run_dir, env)
        return Trainer(cfg, env, progress=progress).run(resume=resume)
    finally:
        if lock is not None:
            lock.release()
            if created and env.is_main and not any(run_dir.iterdir()):  # refused before writing: leave no trace
                run_dir.rmdir()
        dist.cleanup(env)
