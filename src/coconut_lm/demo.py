"""The main job: Coconut, CoT and No-CoT trained from scratch on symbolic ProsQA, scored on fresh data.

    coconut-lm demo                          # about 7 minutes on 2 CPU cores; writes runs/demo-<time>/
    coconut-lm demo --out runs/demo --steps 600

1. Data, with `coconut-lm data` itself: small ProsQA graphs in the symbolic form (one token per
   node, names relabelled per example), a training set, a validation set and a held-out test set
   drawn with other seeds. `results.json` records the argument lists, so anyone can draw another
   held-out set from the same distribution and score the run folders with `coconut-lm eval`.
2. Training: the same 2-layer GPT-2 (with the token shift, docs/methods.md) for the same number
   of optimizer steps for each method; Coconut runs its curriculum inside that budget. The three
   methods train at once, one thread each (each run's log is `<method>.train.log`).
3. Evaluation: greedy generation on the test set; the table gives accuracy, tokens per answer
   (language tokens plus continuous thoughts, as in the paper) and time.

The recipe and its measured curves are in docs/experiments.md.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import atomic_write_text

DEMO_METHODS = ("coconut", "cot", "no_cot")
CHANCE = 0.5  # two options per question
PROGRESS_SECONDS = 30  # a status line this often while methods train

#: `coconut-lm data` arguments of the demo's distribution (the seed, size and file are added per split):
#: graphs of up to 10 nodes whose question needs exactly 3 hops, in the symbolic form with new names
#: per example: a 2-layer CoT model must pick the first step of a 3-hop path in one pass, while
#: Coconut's thoughts keep the search open (docs/experiments.md, "the demo recipe").
NODES, HOPS = 10, 3
DATA_ARGS = ("prosqa", "--format", "symbolic", "--relabel", "--nodes", str(NODES), "--min-hops", str(HOPS),
             "--max-hops", str(HOPS))
SPLITS = {"train": (20_000, 0), "val": (200, 1), "test": (500, 2)}  # examples, seed

#: Optimizer steps per method, in "epochs" of STEPS_PER_EPOCH (docs/experiments.md, "the demo recipe").
STEPS = 2800
STEPS_PER_EPOCH = 200
#: Methods trained at once, one thread each (three on two cores finish sooner than two then one).
PARALLEL = 3
#: A safety cap per method for the default STEPS, so a slow machine still finishes: training stops,
#: validates and saves. It grows in proportion when --steps asks for more.
TRAIN_SECONDS = 480
#: What the demo's runs share. The first line is what `configs/prosqa_<method>_tiny.yaml` sets beyond the
#: defaults (a test checks they agree), so the demo needs no file of the checkout and runs from a wheel.
COMMON = [
    "task=prosqa", "max_latent_stage=3", "epochs_per_stage=1", "pad_latent_to_max=true", "pause_tokens=3",
    "eval_batch_size=100",
    "model=mini", "n_layer=2", "n_embd=128", "n_head=4", "token_shift=1", "latent_markers=false",
    "lr=1e-3", "lr_schedule=cosine", "warmup_steps=50", "batch_size=32", "micro_batch_size=32", "relabel_every_epoch=true",
    "val_max_examples=200", "max_new_tokens=10", "eval_every=2", "overwrite=true",
    "log_every=20",
]
#: Coconut's curriculum, shared by the variants that follow it: stage 0 (CoT) for 2 epochs (400 steps),
#: then 1, 2 and 3 thoughts for 2 epochs each, then all three steps latent for the rest; 10% stage mixing.
CURRICULUM = ["epochs_per_stage=2", f"max_latent_stage={HOPS}", "uniform_prob=0.1"]
METHOD_OVERRIDES = {
    "coconut": [*CURRICULUM, "pad_latent_to_max=true"],
    "cot": [],
    "no_cot": [],
    # The other five methods of Table 1 on the same budget (`--methods`):
    "icot": ["icot_delta=0.5"],  # one chain token every 2 epochs, so the 3-token chain is gone when Coconut's is
    "pause": [f"pause_tokens={HOPS}"],  # as many pauses as Coconut has thoughts
    "no_curriculum": [f"max_latent_stage={HOPS}", "pad_latent_to_max=true"],
    "no_thought": CURRICULUM,
    "pause_as_thought": [*CURRICULUM, "pad_latent_to_max=true"],
}


@dataclass
class DemoRow:
    """One method's result on the held-out set."""

    method: str
    accuracy: float
    tokens: float
    thoughts: float
    train_s: float
    eval_s: float
    run_dir: str
    steps: int


def data_command(split: str, out: Path) -> list[str]:
    """The `coconut-lm data` argument list that makes `split` of the demo's data into `out`."""
    n, seed = SPLITS[split]
    return [*DATA_ARGS, "--n", str(n), "--seed", str(seed), "--workers", "1", "--out", str(out)]


def method_overrides(method: str, data: Path, run_dir: Path, steps: int, extra: list[str]) -> list[str]:
    """The config keys that train `method` in the demo (over the defaults; the same as over its tiny preset)."""
    epochs = max(1, steps // STEPS_PER_EPOCH)
    cap = TRAIN_SECONDS * max(1.0, steps / STEPS)
    return [f"method={method}", f"train_path={data / 'train.json'}", f"val_path={data / 'val.json'}", f"out_dir={run_dir}",
            f"num_epochs={epochs}", f"max_steps_per_epoch={min(steps, STEPS_PER_EPOCH)}", *COMMON,
            f"max_train_seconds={cap:g}", *METHOD_OVERRIDES[method], *extra]


def _train_and_eval(method: str, overrides: list[str], test_path: str, threads: int) -> dict[str, Any]:
    """Worker: train one method (its output into its run folder's train.log), then score it on the test set."""
    import torch

    from coconut_lm.checkpoint_eval import evaluate_checkpoint
    from coconut_lm.training.config import load_config
    from coconut_lm.training.train import train

    torch.set_num_threads(threads)
    cfg = load_config(None, overrides)
    run_dir = Path(cfg.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / f"{method}.train.log"
    with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        result = train(cfg, progress=False, device="cpu")
        t0 = time.perf_counter()
        summary = next(iter(evaluate_checkpoint(run_dir / "best", test_path, run_dir / "eval", batch_size=100,
                                                device="cpu", progress=False).values()))
    return {"method": method, "accuracy": summary.accuracy, "tokens": summary.mean_tokens,
            "thoughts": summary.mean_thoughts, "train_s": result.seconds, "eval_s": time.perf_counter() - t0,
            "run_dir": str(run_dir), "steps": result.global_step}


def _status(run_dir: Path, steps: int) -> str:
    """One method's progress from its metrics.jsonl: step, stage and last validation accuracy."""
    from coconut_lm.training.runlog import read_metrics

    rows = read_metrics(run_dir)  # [] until the run writes its first row
    train = [r for r in rows if r.get("type") == "train"]
    val = [r for r in rows if r.get("type") == "val"]
    if not train:
        return f"{run_dir.name} starting"
    text = f"{run_dir.name} step {train[-1]['step']}/{steps}"
    if val:
        text += f" (val {100 * val[-1]['val_accuracy']:.0f}%)"
    return text


def default_out() -> Path:
    """A fresh folder name under runs/: demo-<date>-<time>."""
    return Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")


def run_demo(out: str | Path | None = None, methods: tuple[str, ...] = DEMO_METHODS, steps: int = STEPS,
             extra_overrides: list[str] | None = None, parallel: int = PARALLEL, seed: int = 0) -> list[DemoRow]:
    """Make the data, train and score each method, print the table, write results.json/.md; return the rows.

    `seed` seeds each model's initialisation and data order; the data (and so the test set) stays the same.
    """
    from coconut_lm.tasks.generate import parse_prosqa_args, write_prosqa

    unknown = [m for m in methods if m not in METHOD_OVERRIDES]
    if unknown:
        raise CoconutError(f"demo: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_OVERRIDES)}")
    if steps < 1 or parallel < 1:
        raise CoconutError("demo: steps and parallel must be >= 1")
    out = Path(out) if out is not None else default_out()
    if out.exists() and any(out.iterdir()):
        raise CoconutError(f"demo: {out} is not empty; choose a new --out folder")
    data = out / "data"
    t0 = time.perf_counter()
    commands = {split: data_command(split, data / f"{split}.json") for split in SPLITS}
    for split, words in commands.items():  # what `coconut-lm data WORDS` would do
        write_prosqa(parse_prosqa_args(words[1:], f"demo {split} data"))
    print(f"[demo] training {', '.join(methods)}: {steps} steps of 32 examples each, {parallel} at a time, "
          f"one thread each (logs: {out}/<method>.train.log)", flush=True)
    ctx = multiprocessing.get_context("spawn")
    rows: list[DemoRow] = []
    with ProcessPoolExecutor(max_workers=min(parallel, len(methods)), mp_context=ctx) as pool:
        extra = [f"seed={seed}", *(extra_overrides or [])]
        pending = {m: pool.submit(_train_and_eval, m, method_overrides(m, data, out / m, steps, extra),
                                  str(data / "test.json"), 1) for m in methods}
        while pending:
            done, _ = wait(list(pending.values()), timeout=PROGRESS_SECONDS, return_when=FIRST_COMPLETED)
            for m in [m for m, job in pending.items() if job in done]:
                r = DemoRow(**pending.pop(m).result())
                rows.append(r)
                print(f"[demo] {m}: test accuracy {100 * r.accuracy:.1f}% after {r.steps} steps "
                      f"({r.train_s:.0f} s training)", flush=True)
            if pending and not done:
                print(f"[demo] {time.perf_counter() - t0:.0f} s: " + "; ".join(_status(out / m, steps) for m in pending),
                      flush=True)
    rows.sort(key=lambda r: methods.index(r.method))
    total = time.perf_counter() - t0
    table = format_table(rows, total, SPLITS["test"][0])
    print(table)
    results = {"methods": {r.method: {k: v for k, v in r.__dict__.items() if k != "method"} for r in rows},
               "data": {"generate": commands["train"], "val": commands["val"], "test": commands["test"]},
               "seed": seed, "overrides": list(extra_overrides or []), "seconds": total}
    atomic_write_text(out / "results.md", table + "\n")
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(f"[demo] wrote {out / 'results.json'}; score a run on new data with: coconut-lm data "
          f"{' '.join(DATA_ARGS)} --n 500 --seed 7 --out new.json && coconut-lm eval {out / methods[0]} "
          f"--data new.json --out {out / 'eval_new'}")
    return rows


def format_table(rows: list[DemoRow], total_seconds: float, n_test: int) -> str:
    """The demo's results table and a plain reading of it."""
    lines = [f"\nHeld-out symbolic ProsQA ({n_test} fresh graphs of up to {NODES} nodes, {HOPS} hops); "
             f"2-layer GPT-2 from scratch, CPU", "",
             "| method | accuracy | tokens per answer | thoughts | train (s) | eval (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {100 * r.accuracy:.1f}% | {r.tokens:.1f} | {r.thoughts:.1f} | "
                     f"{r.train_s:.0f} | {r.eval_s:.1f} |")
    lines.append("")
    lines.append(f"Total wall time {total_seconds:.0f} s. Tokens count generated language tokens plus continuous "
                 f"thoughts, as in the paper. Chance is {100 * CHANCE:.0f}%.")
    if max((r.accuracy for r in rows), default=0.0) < CHANCE + 0.1:
        lines.append("Every method is near chance: this run did not learn (see docs/experiments.md for the curves "
                     "the demo's recipe gives).")
    return "\n".join(lines)
