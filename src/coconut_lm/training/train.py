"""The training loop: one process on CPU or a GPU, or many under torchrun (DDP, or FSDP2).

    coconut-lm train configs/prosqa_coconut_tiny.yaml out_dir=runs/demo
    torchrun --nproc_per_node 4 -m coconut_lm.cli train configs/prosqa_coconut.yaml
    coconut-lm train configs/prosqa_coconut.yaml --resume       # continue from the latest checkpoint

Per optimizer step: the global batch is laid out at each example's schedule position, split over
ranks and micro-batches, and each micro-batch's token losses are summed and divided by the global
batch's token count, so any split gives the same gradient. AdamW is rebuilt whenever the
curriculum says so. Every epoch ends with validation (teacher-forced loss and generation
accuracy) and a checkpoint; the best one by validation accuracy is kept in `best/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from coconut_lm.data.pipeline import (
    BatchPlan,
    EpochBatches,
    MicroBatch,
    check_lengths,
    epoch_order,
    tokenize_checked,
    tokenize_examples,
    vocabulary_texts,
)
from coconut_lm.errors import CoconutError
from coconut_lm.eval.evaluate import evaluate, validation_loss
from coconut_lm.eval.outputs import live_bars
from coconut_lm.model.compiled import compile_blocks
from coconut_lm.recipe.methods import get_method
from coconut_lm.tasks.examples import atomic_write_text, load_examples
from coconut_lm.tasks.symbolic_prontoqa import is_symbolic_prontoqa
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training import dist
from coconut_lm.training.build import build_model
from coconut_lm.training.config import TrainConfig
from coconut_lm.training.run_config import (
    FRESH_SEED,
    RESUME_KEYS,
    checkpoint_meta,
    layout_config,
    lr_at,
    schedule_config,
    val_thoughts,
)
from coconut_lm.training.runlock import RunLock, acquire_run_lock
from coconut_lm.training.runlog import RunLog

#: The counters a trainer state restores (`Trainer.trainer_state` writes them).
STATE_KEYS = ("epoch", "micro_index", "global_step", "reset_key", "reset_step", "best_accuracy", "best_epoch")


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


class Trainer:
    """Owns the model, optimizer, data and counters of one run on one rank."""

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
        from coconut_lm.tasks.symbolic import alphabet_for, is_symbolic

        self.symbolic = bool(self.train_examples) and all(is_symbolic(e) for e in self.train_examples)
        if cfg.relabel_every_epoch and not self.symbolic:
            raise CoconutError(f"{cfg.train_path}: relabel_every_epoch needs symbolic data (coconut-lm data symbolic)")
        if cfg.relabel_every_epoch and not any(is_symbolic_prontoqa(e) for e in self.train_examples):
            # relabelling reads each ProsQA graph: a bad one fails now, not epochs later
            from coconut_lm.tasks.prosqa import graph_from_example

            for i, ex in enumerate(self.train_examples):
                graph_from_example(ex, i, str(cfg.train_path))
        texts = vocabulary_texts(self.train_examples) + ([alphabet_for(self.train_examples)] if self.symbolic else [])
        model, self.tokenizer = build_model(cfg, texts, symbolic=self.symbolic)
        self.model = model.to(env.device)
        self.tokens = model.tokens
        self.train_data, _ = tokenize_checked(self.train_examples, self.tokenizer, str(cfg.train_path), env.is_main)
        self.val_data, _ = tokenize_checked(self.val_examples, self.tokenizer, str(cfg.val_path), env.is_main)
        check_lengths(self.train_data, self.layout, cfg.max_length, cfg.train_path)
        check_lengths(self.val_data, self.layout, cfg.max_length, cfg.val_path)
        self.plan = BatchPlan(cfg.batch_size, cfg.micro_batch_size, env.world_size, env.rank)
        self.steps_per_epoch = len(self.train_data) // cfg.batch_size
        if cfg.max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        self.total_steps = self.steps_per_epoch * (cfg.num_epochs - cfg.start_epoch)
        self.wrapped = dist.wrap_model(self.model, env, cfg.distributed)
        if cfg.compile:  # after wrapping: FSDP2 shards the same block objects in place
            compile_blocks(self.model, cfg.compile_mode, backend=cfg.compile_backend)
        self.optimizer = self._new_optimizer()
        # FSDP ranks must call every block the same number of times (see dist.lockstep_plan).
        self.lockstep = env.distributed and cfg.distributed == "fsdp"
        self.use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and env.device.type == "cuda")
        # Counters, saved in the trainer state for exact resume.
        self.epoch, self.micro_index, self.global_step = cfg.start_epoch, 0, 0
        self.first_bad_step = torch.tensor(-1, device=env.device)
        self.reset_key: Any = None
        self.reset_step = 0  # warm-up counts from here
        self.best_accuracy, self.best_epoch, self.best_progress = -1.0, -1, -1
        self.earlier_seconds = 0.0  # training time of the sessions before a --resume
        self.started = time.perf_counter()
        self.longest_chain = max((sum(len(s) for s in ex.steps) for ex in self.train_data), default=0)
        # sha256 of the data files as read here and of the tokenizer's vocabulary: what a resume must find unchanged.
        self.fingerprints = {key: ckpt.sha256_file(getattr(cfg, key)) for key in ("train_path", "val_path")
                             if getattr(cfg, key)}
        vocab = json.dumps(sorted(self.tokenizer.get_vocab().items()), ensure_ascii=False)
        self.fingerprints["tokenizer"] = hashlib.sha256(vocab.encode("utf-8")).hexdigest()
        self.log = RunLog(self.run_dir, cfg.report_to, enabled=env.is_main, config=cfg.to_dict())

    # ------------------------------------------------------------------ pieces

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.wrapped.parameters(), lr=self.cfg.lr, betas=self.cfg.betas,
                                 weight_decay=self.cfg.weight_decay)

    def autocast(self):
        if self.use_bf16:
            return torch.autocast(self.env.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def trainer_state(self, optimizer_state: dict) -> dict[str, Any]:
        state = {
            "epoch": self.epoch, "micro_index": self.micro_index, "global_step": self.global_step,
            "reset_key": self.reset_key, "reset_step": self.reset_step, "best_accuracy": self.best_accuracy,
            "best_epoch": self.best_epoch, "best_progress": self.best_progress, "optimizer": optimizer_state,
            "torch_rng": torch.get_rng_state(), "config": self.cfg.to_dict(), "fingerprints": self.fingerprints,
            "train_seconds": self.earlier_seconds + time.perf_counter() - self.started,
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def save(self, folder: Path, with_state: bool, epoch: int) -> None:
        """Checkpoint on rank 0 (all ranks wait); the optimizer state only for resumable checkpoints.

        `epoch` is the epoch whose training the weights reflect (recorded in coconut.json).
        """
        self.check_finite()
        model_state, optim_state = dist.full_state(self.wrapped, self.optimizer, self.env, self.cfg.distributed)
        if self.env.is_main:
            state = self.trainer_state(optim_state) if with_state else None
            meta = checkpoint_meta(self.cfg, self.method, epoch, "symbolic" if self.symbolic else "words")
            ckpt.save_checkpoint(folder, lambda tmp: self.model.save_pretrained(tmp, meta=meta, state_dict=model_state),
                                 self.tokenizer, state)
            if with_state:
                ckpt.prune_checkpoints(self.run_dir, self.cfg.keep_last)
        dist.barrier(self.env)

    def resume(self) -> bool:
        """Load the latest complete checkpoint of this run; False when there is none."""
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
            return False
        for message in problems:
            if self.env.is_main:
                print(message)
        state = ckpt.load_trainer_state(found)
        saved = state.get("config", {})
        for key, digest in self.fingerprints.items():  # runs saved before fingerprints were recorded skip this
            if key in state.get("fingerprints", {}) and state["fingerprints"][key] != digest:
                what = "the tokenizer built from the data" if key == "tokenizer" else f"{key} {getattr(self.cfg, key)}"
                raise CoconutError(f"cannot resume {found}: {what} changed since the run started (its sha256 "
                                   f"differs), so the restored weights would not match it; restore it, or start "
                                   f"a new run")
        defaults = TrainConfig().to_dict()
        for key in RESUME_KEYS:  # a key the saved config lacks was added since: the run used its default
            if saved and saved.get(key, defaults[key]) != getattr(self.cfg, key):
                raise CoconutError(f"cannot resume {found}: config '{key}' was {saved.get(key, defaults[key])!r} there and is "
                                   f"{getattr(self.cfg, key)!r} now; a resume continues the same run (its model, method and "
                                   f"data order), so set it back or start a new run")
        missing = [k for k in (*STATE_KEYS, "optimizer", "torch_rng") if k not in state]
        if missing or ("best_progress" not in state and "best_rank" not in state):
            missing = missing or ["best_progress"]
            raise CoconutError(f"cannot resume {found / ckpt.TRAINER_STATE}: the trainer state lacks "
                               f"{', '.join(repr(k) for k in missing)} (not written by coconut-lm train?); nothing "
                               f"was changed")
        loaded = CoconutLM.from_pretrained(found)
        ckpt.check_finite_weights(loaded, found)
        dist.load_full_state(self.wrapped, self.optimizer, loaded.state_dict(), state["optimizer"], self.env,
                             self.cfg.distributed)
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        for key in STATE_KEYS:
            setattr(self, key, state[key])
        self.best_progress = state["best_progress"] if "best_progress" in state else state["best_rank"]  # older name
        self.earlier_seconds = float(state.get("train_seconds", 0.0))
        self.log.truncate_after(self.global_step)
        if self.env.is_main:
            print(f"resumed from {found} (epoch {self.epoch}, step {self.global_step})")
        return True

    def maybe_reset_optimizer(self, step_frac: float) -> None:
        key = self.method.schedule.optimizer_key(self.schedule, self.epoch, step_frac, self.longest_chain)
        if key != self.reset_key:
            if self.reset_key is not None:
                self.optimizer = self._new_optimizer()
                # Warm-up restarts with each curriculum stage, not with iCoT's resets at every removed token.
                if self.method.schedule.rewarm:
                    self.reset_step = self.global_step
                self.log.write({"type": "reset", "step": self.global_step, "epoch": self.epoch, "key": key})
            self.reset_key = key

    # ------------------------------------------------------------------ loop

    def epoch_data(self) -> list:
        """This epoch's tokenised training data: the file's, freshly drawn (`fresh_data`), or relabelled.

        Only the examples the epoch will visit are drawn or relabelled (an epoch capped by
        `max_steps_per_epoch` visits a prefix of its seeded order); the others keep the file's.
        """
        cfg = self.cfg
        if not cfg.fresh_data and not cfg.relabel_every_epoch:
            return self.train_data
        import random

        used = epoch_order(cfg.seed, self.epoch, len(self.train_data))[: self.steps_per_epoch * cfg.batch_size]
        examples = [self.train_examples[i] for i in used]
        if cfg.fresh_data:
            from coconut_lm.tasks.generate import fresh_examples

            examples = fresh_examples(cfg.fresh_data, len(used), FRESH_SEED + cfg.seed * 10**6 + self.epoch)
        if cfg.relabel_every_epoch:
            from coconut_lm.tasks.symbolic import relabel

            rng = random.Random(f"coconut-lm/relabel/{cfg.seed}/{self.epoch}")
            examples = [relabel(e, rng) for e in examples]
        fresh = tokenize_examples(examples, self.tokenizer)
        unknown = sum(t == self.tokenizer.unk_token_id for ex in fresh for t in ex.question)
        if unknown:
            raise CoconutError(f"fresh_data '{cfg.fresh_data}': epoch {self.epoch} has {unknown} question tokens "
                               f"the tokenizer built from {cfg.train_path} does not know")
        check_lengths(fresh, self.layout, cfg.max_length, f"fresh data of epoch {self.epoch}")
        data = list(self.train_data)
        for i, ex in zip(used, fresh):
            data[i] = ex
        return data

    def train_step(self, micro_batches: Sequence[MicroBatch]) -> StepStats:
        """One optimizer step on this rank's micro-batches of one global batch; `bench` times this same step.

        The optimizer is reset first if the schedule says so; each micro-batch's token losses are
        summed and divided by the global batch's token count (any split gives the same gradient);
        then the learning rate is set, the gradient clipped, and AdamW steps.
        """
        cfg, env = self.cfg, self.env
        self.maybe_reset_optimizer(micro_batches[0].step_frac)
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
            self.micro_index += 1
        lr = lr_at(cfg, self.global_step, self.reset_step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        # The first step whose loss was not finite, kept on the device: read only at log rows and saves.
        self.first_bad_step = torch.where((self.first_bad_step < 0) & ~torch.isfinite(loss_share),
                                          self.global_step, self.first_bad_step)
        return StepStats(loss_share, tokens, lr)

    def check_finite(self) -> None:
        """Stop with a CoconutError once any step's loss was NaN or infinite (on any rank), before it is logged or
        saved: the weights after such a step are not finite either, and the last checkpoint stays the last good one."""
        bad = int(self.first_bad_step)
        if dist.all_reduce_sum(float(bad >= 0), self.env) == 0:
            return
        found = ckpt.latest_checkpoint(self.run_dir, warn=lambda _: None)
        last = f"the last good checkpoint is {found} (--resume continues from it)" if found else "no checkpoint was saved"
        at = f"at step {bad}" if bad >= 0 else "on another rank"
        raise CoconutError(f"training stopped: the loss became non-finite (NaN or inf) {at} (lr={self.cfg.lr}); "
                           f"nothing was saved after it and {last}; lower lr or check the data")

    def train_epoch(self) -> None:
        cfg, env = self.cfg, self.env
        ds = EpochBatches(self.epoch_data(), self.method, self.layout, self.schedule, self.tokens, self.plan,
                          seed=cfg.seed, epoch=self.epoch, max_steps=cfg.max_steps_per_epoch,
                          length_buckets=cfg.length_buckets)
        # Its own generator: an iterator would otherwise draw from the global RNG, which resume restores.
        loader = DataLoader(ds, batch_size=None, sampler=range(self.micro_index, len(ds)),
                            generator=torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch),
                            num_workers=cfg.num_workers, pin_memory=env.device.type == "cuda",
                            persistent_workers=False)
        accum = self.plan.accumulation
        stage = self.stage()
        # A live bar on a terminal; in a log file (stderr not a TTY) one plain line per epoch instead.
        bar = tqdm(total=len(ds) // accum, initial=self.micro_index // accum, disable=not (self.progress and self.tty),
                   desc=f"epoch {self.epoch + 1}/{cfg.num_epochs}", unit="step", leave=False)
        last_row: dict[str, Any] = {}
        self.wrapped.train()
        loss_sum = torch.zeros((), device=env.device)
        seen_tokens, steps_since_log, t0 = 0, 0, time.perf_counter()
        pending: list[MicroBatch] = []
        for mb in loader:
            pending.append(mb)
            if mb.micro < accum - 1:
                continue
            step_in_epoch = mb.step
            stats = self.train_step(pending)
            pending = []
            loss_sum += stats.loss
            seen_tokens += stats.tokens
            lr = stats.lr
            bar.update(1)
            steps_since_log += 1
            if self.global_step % cfg.log_every == 0 or step_in_epoch == ds.steps - 1:
                self.check_finite()
                # loss_sum holds this rank's share of each step's token-mean loss; the sum over ranks is the whole.
                loss_val = dist.all_reduce_sum(float(loss_sum), env) / steps_since_log
                elapsed = max(time.perf_counter() - t0, 1e-9)
                # `steps`: how many steps the loss averages (fewer in the first row after a resume).
                row = {"type": "train", "step": self.global_step, "epoch": self.epoch, "stage": stage,
                       "loss": loss_val, "steps": steps_since_log, "lr": lr, "tokens_per_s": seen_tokens * env.world_size / elapsed,
                       "examples_per_s": steps_since_log * cfg.batch_size / elapsed}
                self.log.write(row)
                last_row = row
                bar.set_postfix(loss=f"{loss_val:.3f}", stage=stage)
                loss_sum.zero_()
                seen_tokens, steps_since_log, t0 = 0, 0, time.perf_counter()
            if self.time_is_up():
                break
            if cfg.save_every_steps and self.global_step % cfg.save_every_steps == 0 and step_in_epoch < ds.steps - 1:
                self.save(self.run_dir / "checkpoints" / ckpt.checkpoint_name(self.global_step), with_state=True,
                          epoch=self.epoch)
        bar.close()
        if self.progress and not self.tty and last_row:
            stage_text = f"stage {stage}, " if self.method.schedule.staged else ""
            print(f"epoch {self.epoch + 1}/{cfg.num_epochs}: {stage_text}step {self.global_step}, train loss "
                  f"{last_row['loss']:.4f}, {last_row['examples_per_s']:.0f} examples/s", file=sys.stderr, flush=True)

    def stage(self) -> int:
        """The curriculum stage of this epoch for logs (`Schedule.stage`: capped at max_latent_stage+1, all steps latent)."""
        return self.method.schedule.stage(self.schedule, self.epoch)

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

    def time_is_up(self) -> bool:
        """True once `max_train_seconds` of this process's training have passed (rank 0 decides for all)."""
        if self.cfg.max_train_seconds is None:
            return False
        if not self.out_of_time:
            self.out_of_time = dist.broadcast_object(time.perf_counter() - self.started > self.cfg.max_train_seconds,
                                                     self.env)
        return self.out_of_time

    def validate(self) -> dict[str, Any]:
        """Teacher-forced loss and generation accuracy on the validation set (rank 0; all ranks under FSDP)."""
        cfg, env = self.cfg, self.env
        self.check_finite()
        row: dict[str, Any] = {"type": "val", "step": self.global_step, "epoch": self.epoch, "stage": self.stage(),
                               "progress": self.method.schedule.progress(self.schedule, self.epoch, self.longest_chain)}
        if self.val_data and (env.is_main or self.lockstep):
            model = dist.unwrap(self.wrapped)
            position = self.method.schedule.eval_position(self.schedule, self.epoch)
            row["val_loss"] = validation_loss(model, self.val_data, self.method, self.layout, position,
                                              cfg.eval_batch_size, env.device, self.autocast)
            n_thoughts = val_thoughts(cfg, self.method, self.epoch)
            with self.autocast():
                result = evaluate(model, self.tokenizer, self.val_examples, self.method, self.layout, cfg.task,
                                  n_thoughts, cfg.eval_batch_size, cfg.max_new_tokens,
                                  use_classifier=cfg.eval_use_classifier and model.eot_head is not None,
                                  max_thoughts=cfg.max_thoughts, progress=self.progress, desc="validate")
            s = result.summary
            row.update(val_accuracy=s.accuracy, val_tokens=s.mean_tokens, val_thoughts=n_thoughts,
                       val_examples_per_s=s.examples_per_s, val_cot_match=s.cot_match)
        return dist.broadcast_object(row, env)

    def run(self, resume: bool = False) -> TrainResult:
        """Train to the end (or `max_train_seconds`): validate, checkpoint and log. `train` holds the run folder."""
        cfg, env = self.cfg, self.env
        start = self.started = time.perf_counter()
        self.out_of_time = False
        if not resume:
            self.claim_run_dir()
        elif not self.resume() and env.is_main:
            print(f"no checkpoint in {self.run_dir}; starting from scratch")
        if env.is_main:  # only once the run may go on: a refused resume leaves the folder as it was
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        final_acc = None
        while self.epoch < cfg.num_epochs:
            self.train_epoch()
            if self.out_of_time and env.is_main:
                print(f"max_train_seconds={cfg.max_train_seconds} reached in epoch {self.epoch + 1} "
                      f"(step {self.global_step}); validating and stopping")
            if (self.epoch + 1) % cfg.eval_every == 0 or self.epoch + 1 == cfg.num_epochs or self.out_of_time:
                row = self.validate()
                self.log.write(row)
                acc = row.get("val_accuracy")
                if acc is not None:
                    final_acc = acc
                    if env.is_main:
                        stage = f"stage {row['stage']}, " if self.method.schedule.staged else ""
                        print(f"epoch {self.epoch + 1}: {stage}val loss {row.get('val_loss', float('nan')):.4f}, "
                              f"val accuracy {acc:.3f}")
                    progress = self.method.schedule.progress(self.schedule, self.epoch, self.longest_chain)
                    if (progress, acc) > (self.best_progress, self.best_accuracy):
                        self.best_accuracy, self.best_epoch, self.best_progress = acc, self.epoch, progress
                        self.save(self.run_dir / "best", with_state=False, epoch=self.epoch)
            if self.out_of_time:  # keep the position inside the epoch so --resume continues from here
                self.save(self.run_dir / "checkpoints" / ckpt.checkpoint_name(self.global_step), with_state=True,
                          epoch=self.epoch)
                break
            self.epoch += 1
            self.micro_index = 0
            self.save(self.run_dir / "checkpoints" / ckpt.checkpoint_name(self.global_step), with_state=True,
                      epoch=self.epoch - 1)
        seconds = time.perf_counter() - start
        total = self.earlier_seconds + seconds
        self.log.write({"type": "end", "step": self.global_step, "best_accuracy": self.best_accuracy,
                        "best_epoch": self.best_epoch, "seconds": seconds, "total_seconds": total,
                        "stopped_early": self.out_of_time})
        self.log.close()
        return TrainResult(self.run_dir, self.best_accuracy, self.best_epoch, final_acc, self.global_step, seconds,
                           total)


def hold_run_dir(run_dir: Path, env: dist.DistEnv) -> RunLock | None:
    """Become the run folder's one writer before anything is read or written: rank 0 takes `train.lock`
    (`runlock`), or every rank raises the one-line refusal; then clear what a kill left behind there."""
    lock, refusal = None, None
    if env.is_main:
        try:
            if run_dir.exists() and not run_dir.is_dir():
                raise CoconutError(f"config 'out_dir': {run_dir} is a file, not a folder; choose another out_dir")
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CoconutError(f"{run_dir}: cannot create the run folder ({e.strerror or type(e).__name__})") \
                    from None
            lock = acquire_run_lock(run_dir)
        except CoconutError as e:
            refusal = str(e)
    refusal = dist.broadcast_object(refusal, env)
    if refusal is not None:
        raise CoconutError(refusal)
    if env.is_main:
        if lock is not None and lock.previous:
            print(f"note: took over {lock.path} from pid {lock.previous.get('pid')} on host "
                  f"{lock.previous.get('host')}, which no longer holds it (it ended without cleaning up)")
        for line in ckpt.clean_stray_checkpoints(run_dir):
            print(f"note: {line}")
    dist.barrier(env)
    return lock


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
