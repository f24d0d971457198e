"""The main job: generate a small dataset, train Coconut, CoT and No-CoT from scratch, compare.

    coconut-lm demo                     # ProntoQA, about 10 minutes on 2 CPU cores
    coconut-lm demo --task prosqa --out runs/demo_prosqa

Each method trains the same tiny GPT-2-architecture model from scratch with its preset
(configs/<task>_<method>_tiny.yaml, shortened by the demo's own settings below), then is
evaluated with batched generation on a held-out generated set. The table at the end gives
accuracy, tokens per answer (thoughts counted, as in the paper) and time, and says plainly what
a model this small can and cannot show.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from coconut_lm.config import load_config
from coconut_lm.evaluate import evaluate_checkpoint
from coconut_lm.tasks.examples import atomic_write_text, save_examples

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEMO_METHODS = ("no_cot", "cot", "coconut")
CHANCE = {"prosqa": 0.5, "prontoqa": 0.5}

# The demo's budget: each method trains for 16 "epochs" of 31 steps of 32 examples (so Coconut's
# curriculum reaches its last stage, 3 thoughts, by epoch 4) but for at most TRAIN_SECONDS, so the
# whole demo fits in about 10 minutes on 2 cores whatever the machine. The model is the 3-layer,
# 128-wide "mini" GPT-2 preset, trained from scratch.
TRAIN_SECONDS = 150
COMMON_OVERRIDES = [
    "model=mini", "num_epochs=16", "max_steps_per_epoch=31", "epochs_per_stage=1", "max_latent_stage=3",
    "batch_size=32", "micro_batch_size=32", "lr=3e-3", "lr_schedule=cosine", "warmup_steps=20",
    "eval_every=100", "val_max_examples=100", f"max_train_seconds={TRAIN_SECONDS}", "overwrite=true",
]
DEMO_SETTINGS = {
    "prontoqa": dict(n_train=2000, n_val=200, overrides=[*COMMON_OVERRIDES, "max_new_tokens=96"]),
    "prosqa": dict(n_train=2000, n_val=200, overrides=[*COMMON_OVERRIDES, "max_new_tokens=64"]),
}


@dataclass
class DemoRow:
    method: str
    accuracy: float
    tokens: float
    train_seconds: float
    eval_seconds: float


def _generate(task: str, n: int, seed: int, path: Path) -> None:
    if task == "prosqa":
        from coconut_lm.tasks.prosqa import generate_prosqa

        examples = generate_prosqa(n, seed=seed, workers=1)
    else:
        from coconut_lm.tasks.prontoqa import generate_prontoqa

        examples = generate_prontoqa(n, seed=seed)
    save_examples(examples, path)


def run_demo(task: str = "prontoqa", out: str | Path = "runs/demo", methods: tuple[str, ...] = DEMO_METHODS,
             extra_overrides: list[str] | None = None, progress: bool = True) -> list[DemoRow]:
    """Generate data, train and evaluate each method; print and return the results table."""
    from coconut_lm.train import train

    if task not in DEMO_SETTINGS:
        from coconut_lm.errors import CoconutError

        raise CoconutError(f"demo task must be one of {', '.join(DEMO_SETTINGS)}, got '{task}'")
    settings = DEMO_SETTINGS[task]
    out = Path(out)
    train_path, val_path, test_path = out / "data" / "train.json", out / "data" / "val.json", out / "data" / "test.json"
    t0 = time.perf_counter()
    print(f"[demo] generating {task}: {settings['n_train']} train, {settings['n_val']} val, {settings['n_val']} test examples")
    _generate(task, settings["n_train"], 0, train_path)
    _generate(task, settings["n_val"], 1, val_path)
    _generate(task, settings["n_val"], 2, test_path)
    rows = []
    for method in methods:
        run_dir = out / method
        overrides = [f"train_path={train_path}", f"val_path={val_path}", f"out_dir={run_dir}",
                     *settings["overrides"], *(extra_overrides or [])]
        cfg = load_config(CONFIGS / f"{task}_{method}_tiny.yaml", overrides)
        print(f"[demo] training {method} (up to {cfg.num_epochs} epochs or {TRAIN_SECONDS}s, {cfg.model} GPT-2 from scratch) ...")
        result = train(cfg, progress=progress, device="cpu")
        t_eval = time.perf_counter()
        summaries = evaluate_checkpoint(run_dir / "best", test_path, run_dir / "eval", batch_size=100,
                                        max_new_tokens=cfg.max_new_tokens, device="cpu", progress=progress)
        s = next(iter(summaries.values()))
        rows.append(DemoRow(method, s.accuracy, s.mean_tokens, result.seconds, time.perf_counter() - t_eval))
        print(f"[demo] {method}: test accuracy {s.accuracy:.3f}")
    total = time.perf_counter() - t0
    table = format_table(task, rows, total)
    print(table)
    atomic_write_text(out / "results.md", table + "\n")
    atomic_write_text(out / "results.json", json.dumps({"task": task, "seconds": total, "rows": [asdict(r) for r in rows]}, indent=2))
    return rows


def format_table(task: str, rows: list[DemoRow], total_seconds: float) -> str:
    """The demo's results table and what the numbers mean."""
    lines = [f"\nResults on a held-out generated {task} test set (a 3-layer model trained from scratch on CPU)", "",
             "| method | accuracy | tokens per answer | train time (s) | eval time (s) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {100 * r.accuracy:.1f}% | {r.tokens:.1f} | {r.train_seconds:.0f} | {r.eval_seconds:.1f} |")
    lines.append("")
    lines.append(f"Total wall time {total_seconds:.0f}s. Tokens count generated language tokens plus continuous thoughts, as in the paper.")
    chance = CHANCE.get(task, 0.0)
    best = max((r.accuracy for r in rows), default=0.0)
    if best < chance + 0.1:
        lines.append(f"All methods are near chance ({100 * chance:.0f}%): a model this small, trained for minutes, has not learned "
                     f"the task. That is expected on CPU; the GPU presets (configs/{task}_*.yaml) train long enough to learn it.")
    else:
        lines.append(f"Chance is {100 * chance:.0f}%. These are minutes of CPU training on a tiny model, far from the paper's "
                     f"pretrained GPT-2 runs: compare methods here by tokens and by learning, not by the paper's accuracy. "
                     f"The full presets (configs/{task}_*.yaml) are for a GPU.")
    return "\n".join(lines)
