"""`coconut-lm report`: the paper's Table 1 from run folders, with our numbers beside the paper's.

    coconut-lm report runs/prosqa_* runs/prontoqa_* --out results.md     # also writes results.json

Each run folder gives a method, a task and a seed (its `config.yaml`; for a shipped chain, the seed of
its first stage in `stages.json`). Its accuracy and tokens come
from an eval summary (`<run>/eval/summary.json`, written by `coconut-lm eval --out <run>/eval`) when
there is one. Otherwise they come from the best "val" row of `metrics.jsonl`. The table says which
source each number came from. Several seeds of one method and task are shown as mean ± sample std.
Beside the table goes the chance level of each scored file (`chance` in the eval summary: an answer-blind
guess's accuracy, `Task.chance`; for an older summary, from its predictions' gold answers).
Each run's validation curve (accuracy against training examples seen, from its "val" rows) goes
into the JSON and into `<out stem>_curves.png`, one line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError
from coconut_lm.recipe.methods import METHODS, get_method
from coconut_lm.tasks.registry import TASKS


def method_labels() -> dict[str, str]:
    """Every registered method's table label, in the paper's row order."""
    return {m.name: m.label or m.name for m in METHODS.values()}


def paper_numbers() -> dict[str, dict[str, tuple[float, float | None]]]:
    """Hao et al. 2024, Table 1 (GPT-2 124M, pretrained), from the task registry: method -> task -> (accuracy %, tokens)."""
    out: dict[str, dict[str, tuple[float, float | None]]] = {}
    for task in TASKS.values():
        for method, numbers in task.paper.items():
            out.setdefault(method, {})[task.name] = numbers
    return out


#: The paper's numbers for the built-in tasks (`paper_numbers()` also sees tasks registered later).
PAPER = paper_numbers()


@dataclass
class RunResult:
    """One run folder's numbers and where they came from."""

    run_dir: str
    method: str
    task: str
    seed: int
    accuracy: float  # fraction in [0, 1]
    tokens: float | None  # language tokens + thoughts per answer
    n: int | None  # evaluated examples, when known
    source: str  # e.g. "eval/summary.json (prosqa_valid.json, n=500)" or "metrics.jsonl best val (epoch 42)"
    curve: list[tuple[int, float]] = field(default_factory=list)  # (examples seen, val accuracy) per val row
    variant: str = ""  # how the model departs from its method's default (`variant_of`); "" for the default
    chance: float | None = None  # an answer-blind guess's accuracy on the scored file (`Task.chance`), when known
    data: str | None = None  # the scored file's name, when the number comes from an eval summary


@dataclass
class Cell:
    """One (method, task) cell of the table: our mean ± std over seeds, and the paper's number."""

    method: str
    task: str
    seeds: list[int]
    accuracy_mean: float | None  # percent
    accuracy_std: float | None  # percent; None with fewer than two runs
    tokens_mean: float | None
    tokens_std: float | None
    paper_accuracy: float | None
    paper_tokens: float | None
    sources: list[str]
    variant: str = ""


@dataclass
class Report:
    """What `write_report` produced."""

    markdown: Path
    json: Path
    cells: list[Cell]
    runs: list[RunResult]
    warnings: list[str]
    curves: Path | None = None  # the figure of the validation curves; None when no run has val rows


def variant_of(cfg: dict[str, Any]) -> str:
    """What sets a run apart from its method's default model, for its own table row: a rotary backbone
    (`arch`), no token shift (`token_shift: 0`), the shift kept off the thoughts (`shift_thoughts: false`) or
    on one of its two paths through them (`receive`, `send`)."""
    parts = []
    if cfg.get("arch") not in (None, "gpt2"):
        parts.append(str(cfg["arch"]))
    if cfg.get("token_shift") == 0:
        parts.append("no token shift")
    elif cfg.get("shift_thoughts") is False:
        parts.append("shift off the thoughts")
    elif cfg.get("shift_thoughts") in ("receive", "send"):
        parts.append(f"thoughts only {cfg['shift_thoughts']} the shift")
    return ", ".join(parts)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CoconutError(f"{path}: cannot read JSON ({e})") from None


def _on_steps(summary: dict[str, Any], steps: Sequence[int], path: Path) -> tuple[float, int]:
    """Accuracy and item count of an eval summary on the items whose chain has one of these step counts
    (ProsQA: hops), from its `accuracy_by_steps`."""
    by = summary.get("accuracy_by_steps")
    if not isinstance(by, dict):
        raise CoconutError(f"{path}: field 'accuracy_by_steps' is missing (rerun `coconut-lm eval` to score by steps)")
    parts = []
    for k in steps:  # distinct: read_run drops a step count named twice
        part = by.get(str(k))
        if part is None:
            continue
        if not (isinstance(part, dict) and isinstance(part.get("n"), int) and part["n"] >= 0
                and isinstance(part.get("accuracy"), (int, float))):
            raise CoconutError(f"{path}: field 'accuracy_by_steps.{k}': expected {{\"n\": count, \"accuracy\": "
                               f"fraction}}, got {part!r}")
        parts.append(part)
    n = sum(p["n"] for p in parts)
    if not n:
        raise CoconutError(f"{path}: field 'accuracy_by_steps' has no item with {', '.join(map(str, steps))} steps "
                           f"(it has {', '.join(by) or 'none'})")
    return sum(float(p["accuracy"]) * p["n"] for p in parts) / n, n


def read_run(run_dir: str | os.PathLike, eval_subdir: str = "eval", steps: Sequence[int] | None = None) -> RunResult:
    """Method, task, seed (config.yaml) and accuracy/tokens (eval summary, else best val row) of a run.

    `steps`: score only the eval's items whose chain has one of these step counts (ProsQA: hops; e.g. 3, 4
    for the part Zhu et al. 2025 report), from the summary's `accuracy_by_steps`; tokens are then not known
    (None). A run without an eval summary is refused then.
    """
    import yaml

    from coconut_lm.training.runlog import read_metrics

    run = Path(run_dir)
    if not run.is_dir():
        raise CoconutError(f"run {run}: no such folder")
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise CoconutError(f"run {run}: no config.yaml (not a coconut-lm run folder)")
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise CoconutError(f"{cfg_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    for key in ("method", "task"):
        if not isinstance(cfg.get(key), str):
            raise CoconutError(f"{cfg_path}: field '{key}' is missing")
    method, task, seed = cfg["method"], cfg["task"], cfg.get("seed", 0)
    if method not in method_labels():
        raise CoconutError(f"{cfg_path}: field 'method': unknown method '{method}'")
    if not isinstance(seed, int):
        raise CoconutError(f"{cfg_path}: field 'seed': expected an integer, got {seed!r}")
    # A shipped chain (scripts/ship_model.py) is one seed from scratch, though its later stages draw from
    # seed + 1, + 2: its first stage's seed is the one a table means.
    stages_path = run / "stages.json"
    if stages_path.is_file():
        stages = _read_json(stages_path)
        if isinstance(stages, list) and stages and isinstance(stages[0], dict) and isinstance(stages[0].get("seed"), int):
            seed = stages[0]["seed"]

    vals = [r for r in read_metrics(run) if r.get("type") == "val" and isinstance(r.get("val_accuracy"), (int, float))]
    batch = cfg.get("batch_size")
    curve = [(int(r["step"]) * batch, float(r["val_accuracy"])) for r in vals
             if isinstance(batch, int) and isinstance(r.get("step"), int)]
    summary_path = run / eval_subdir / "summary.json"
    if summary_path.is_file():
        s = _read_json(summary_path)
        if not isinstance(s, dict) or not isinstance(s.get("accuracy"), (int, float)):
            raise CoconutError(f"{summary_path}: field 'accuracy' is missing")
        for key, want in (("method", method), ("task", task)):
            if key in s and s[key] != want:
                raise CoconutError(f"{summary_path}: field '{key}' is '{s[key]}' but {cfg_path} says '{want}'")
        name = Path(str(s["data"])).name if s.get("data") else None
        # The row says what was evaluated: `eval --shift-thoughts` (a probe) records the value it ran with, and a
        # run that inherited its value through init_from has none in its config.
        evaluated = {**cfg, "shift_thoughts": s["shift_thoughts"]} if "shift_thoughts" in s else cfg
        data = f"{name}, " if name else ""
        accuracy, tokens, n, part = float(s["accuracy"]), s.get("mean_tokens"), s.get("n"), ""
        if steps:
            steps = list(dict.fromkeys(steps))
            (accuracy, n), tokens = _on_steps(s, steps, summary_path), None
            part = f"{', '.join(map(str, steps))} steps, "
        return RunResult(str(run), method, task, seed, accuracy, tokens, n,
                         f"{summary_path.relative_to(run).as_posix()} ({data}{part}n={n if n is not None else '?'})", curve,
                         variant_of(evaluated), s["chance"] if isinstance(s.get("chance"), (int, float))
                         else chance_of(run / eval_subdir / "predictions.jsonl", task), name)

    if steps:
        raise CoconutError(f"run {run}: no {eval_subdir}/summary.json, so it cannot be scored by steps")
    if not vals:
        raise CoconutError(f"run {run}: no {eval_subdir}/summary.json and no val row with val_accuracy in metrics.jsonl")
    # As the trainer picks best/: the furthest curriculum progress first (a Coconut run's stage-0 rows are CoT; an
    # iCoT run's rows before its chain is fully removed still write part of it), then accuracy; the first of equal
    # rows, as the trainer keeps the first. Rows written before progress was logged go by their stage.
    staged = get_method(method).schedule.staged

    def progress(r: dict[str, Any]) -> int:
        for key in ("progress", "rank"):  # "rank": the same number, under its older name
            if isinstance(r.get(key), int):
                return int(r[key])
        return int(r.get("stage", 0)) if staged else 0

    best = max(vals, key=lambda r: (progress(r), r["val_accuracy"]))
    thoughts = f", {best['val_thoughts']} thoughts" if best.get("val_thoughts") is not None else ""
    return RunResult(str(run), method, task, seed, float(best["val_accuracy"]), best.get("val_tokens"), None,
                     f"metrics.jsonl best val (epoch {int(best.get('epoch', -1)) + 1}{thoughts})", curve,
                     variant_of(cfg))


def chance_of(predictions: Path, task: str) -> float | None:
    """The chance level of the file an eval scored, for a summary written before eval recorded it: `Task.chance`
    of the gold answers in its predictions.jsonl (None without that file, for a task the registry does not
    know, or for rows without a gold answer)."""
    if task not in TASKS or not predictions.is_file():
        return None
    golds = []
    with predictions.open() as f:
        for line in f:
            row = json.loads(line) if line.strip() else {}
            if not isinstance(row.get("gold"), str):
                return None
            golds.append(row["gold"])
    return TASKS[task].chance_level(golds) if golds else None


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def aggregate(runs: Sequence[RunResult]) -> tuple[list[Cell], list[str]]:
    """One `Cell` per method (paper order), variant (the default first) and task: our mean ± std over seeds
    beside the paper's number (which is for the default)."""
    groups: dict[tuple[str, str, str], list[RunResult]] = defaultdict(list)
    for r in runs:
        groups[(r.method, r.variant, r.task)].append(r)
    cells, warnings = [], []
    for method in method_labels():
        variants = [""] + sorted({r.variant for r in runs if r.method == method and r.variant})
        for variant, task in ((v, t) for v in variants for t in TASKS):
            rs = sorted(groups.get((method, variant, task), []), key=lambda r: r.seed)
            seeds = [r.seed for r in rs]
            name = f"{method}{f' ({variant})' if variant else ''}/{task}"
            if len(set(seeds)) < len(seeds):
                warnings.append(f"{name}: a seed appears more than once ({seeds}); they are averaged as separate runs")
            acc_m, acc_s = _mean_std([100 * r.accuracy for r in rs])
            tok = [r.tokens for r in rs if r.tokens is not None]
            tok_m, tok_s = _mean_std(tok) if len(tok) == len(rs) else (None, None)
            paper = TASKS[task].paper.get(method) if not variant else None
            cells.append(Cell(method, task, seeds, acc_m, acc_s, tok_m, tok_s, paper[0] if paper else None,
                              paper[1] if paper else None, [r.source for r in rs], variant))
    extra = sorted({r.task for r in runs} - set(TASKS))
    if extra:
        warnings.append(f"tasks not in the paper's table are listed only under 'Runs': {', '.join(extra)}")
    return cells, warnings


def _ours(c: Cell) -> str:
    if c.accuracy_mean is None:
        return "–"
    text = f"{c.accuracy_mean:.1f}" + (f" ± {c.accuracy_std:.1f}" if c.accuracy_std is not None else "")
    if c.tokens_mean is not None:
        text += f" ({c.tokens_mean:.1f})"
    # † marks a cell with a number read from training-time validation instead of an eval summary.
    mark = "†" if any(src.startswith("metrics.jsonl") for src in c.sources) else ""
    return text + f" [seed{'s' if len(c.seeds) > 1 else ''} {', '.join(map(str, c.seeds))}]{mark}"


def _paper(c: Cell) -> str:
    if c.paper_accuracy is None:
        return "–"
    return f"{c.paper_accuracy:.1f}" + (f" ({c.paper_tokens:.1f})" if c.paper_tokens is not None else "")


def format_markdown(cells: Sequence[Cell], runs: Sequence[RunResult], warnings: Sequence[str] = (),
                    steps: Sequence[int] | None = None) -> str:
    """Table 1 (ours beside the paper's) and a per-run table naming each number's source (`steps`: ours are
    scored on the items with these step counts only, `read_run`)."""
    by = {(c.method, c.variant, c.task): c for c in cells}
    head = ["method"] + [f"{TASKS[t].label} {who}" for t in TASKS for who in ("ours", "paper")]
    lines = ["# Results: Table 1 of Hao et al. 2024 (Coconut), ours beside the paper's", "",
             "Accuracy in %, (tokens generated per answer, continuous thoughts included). Ours: mean ± sample "
             "std over the seeds listed; paper: pretrained GPT-2 124M. A row with a note in parentheses is a variant "
             "of the method (backbone or token shift); the paper has no number for it."
             + (f" Ours are scored only on the items whose chain has {', '.join(map(str, steps))} steps (hops, in "
                "ProsQA); the paper's are on its whole test file." if steps else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    labels = method_labels()
    for method, variant in dict.fromkeys((c.method, c.variant) for c in cells):
        cols = [x for t in TASKS for x in (_ours(by[(method, variant, t)]), _paper(by[(method, variant, t)]))]
        lines.append("| " + " | ".join([labels[method] + (f" ({variant})" if variant else ""), *cols]) + " |")
    chance = {(r.task, r.data): r.chance for r in runs if r.chance is not None}
    if chance:
        files = ", ".join(f"{TASKS[t].label} `{d}` {100 * c:.1f}%" for (t, d), c in sorted(chance.items()))
        lines += ["", f"Chance (an answer-blind guess, from the gold answers of each scored file): {files}."]
    lines += ["", "## Runs", "", "| run | method | variant | task | seed | accuracy % | chance % | tokens | source |",
              "|---|---|---|---|---|---|---|---|---|"]
    row_of = {name: i for i, name in enumerate(labels)}
    for r in sorted(runs, key=lambda r: (r.task, row_of[r.method], r.variant, r.seed, r.run_dir)):
        tok = "–" if r.tokens is None else f"{r.tokens:.1f}"
        ch = "–" if r.chance is None else f"{100 * r.chance:.1f}"
        lines.append(f"| `{r.run_dir}` | {r.method} | {r.variant or '–'} | {r.task} | {r.seed} | {100 * r.accuracy:.1f} "
                     f"| {ch} | {tok} | {r.source} |")
    lines += ["", "Source of each number: see the last column. † in the table: at least one run of that cell has no eval "
              "summary, so its number is the best validation accuracy during training (`metrics.jsonl`, with that "
              "stage's thought count); `eval/summary.json` numbers come from `coconut-lm eval`."]
    if warnings:
        lines += ["", *(f"Warning: {w}" for w in warnings)]
    return "\n".join(lines) + "\n"


def write_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, eval_subdir: str = "eval",
                 overwrite: bool = False, steps: Sequence[int] | None = None) -> Report:
    """Read every run, write the markdown table to `out`, the same numbers to `out` with suffix .json,
    and the validation curves to `<out stem>_curves.png` (when any run has val rows). `steps`: score each
    run on the items with these step counts only (`read_run`).

    Any of those three files that already exists (a demo's `results.md`, an earlier report) is
    refused before anything is read or written, unless `overwrite`.
    """
    from coconut_lm.eval.outputs import check_out_files
    from coconut_lm.tasks.examples import atomic_write_text

    if not run_dirs:
        raise CoconutError("report: give at least one run folder")
    md_path = Path(out)
    if md_path.suffix == ".json":
        raise CoconutError(f"--out {md_path}: give the markdown file (e.g. results.md); the JSON goes beside it")
    json_path, curves_path = md_path.with_suffix(".json"), md_path.with_name(f"{md_path.stem}_curves.png")
    check_out_files([md_path, json_path, curves_path], overwrite, "report")
    seen, runs = set(), []
    for d in run_dirs:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            runs.append(read_run(d, eval_subdir, steps))
    cells, warnings = aggregate(runs)
    atomic_write_text(md_path, format_markdown(cells, runs, warnings, steps))
    atomic_write_text(json_path, json.dumps(
        {"steps": list(steps) if steps else None, "cells": [asdict(c) for c in cells], "runs": [asdict(r) for r in runs], "warnings": warnings,
         "paper": {m: {t: {"accuracy": a, "tokens": tk} for t, (a, tk) in v.items()} for m, v in paper_numbers().items()}},
        indent=2) + "\n")
    curves = None
    if any(r.curve for r in runs):
        from coconut_lm.analysis.plots import plot_curves

        labels = method_labels()
        curves = plot_curves([{"label": f"{Path(r.run_dir).name} ({labels[r.method]}, seed {r.seed})",
                               "curve": r.curve} for r in runs if r.curve],
                             curves_path)
    elif overwrite and curves_path.is_file():  # an earlier report's curves would no longer match its table
        curves_path.unlink()
    return Report(md_path, json_path, cells, runs, warnings, curves)


# ----------------------------------------------------------------------------------------- CLI


def cmd_report(args: argparse.Namespace) -> int:
    """`coconut-lm report`: write results.md and results.json, print the table."""
    report = write_report(args.runs, args.out, eval_subdir=args.eval_subdir, overwrite=args.overwrite,
                          steps=args.steps)
    print(report.markdown.read_text(), end="")
    curves = f" and {report.curves}" if report.curves else ""
    print(f"wrote {report.markdown}, {report.json}{curves} ({len(report.runs)} runs)")
    return 0


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    """Add the `report` subcommand to the `coconut-lm` parser (sets `func`)."""
    from coconut_lm.argtypes import int_list, path

    p = sub.add_parser("report", help="the paper's Table 1 from run folders, ours beside the paper's numbers",
                       description="Collect method, task and seed (config.yaml) and accuracy and tokens "
                                   "(<run>/eval/summary.json, else the best val row of metrics.jsonl) from run "
                                   "folders; write Table 1 with the paper's numbers beside ours (mean ± std over "
                                   "seeds) as markdown, and the same numbers as JSON.")
    p.add_argument("runs", type=path, nargs="+", metavar="RUN_DIR", help="run folders (each holds config.yaml)")
    p.add_argument("--out", type=path, default="results.md",
                   help="markdown output (default results.md); the JSON goes beside it with suffix .json")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out, its .json and its _curves.png (refused otherwise)")
    p.add_argument("--eval-subdir", default="eval",
                   help="folder inside each run that holds the eval summary.json (default eval)")
    p.add_argument("--steps", type=int_list, default=None, metavar="K[,K...]",
                   help="score only the items whose chain has these step counts (ProsQA: hops; e.g. 3,4, the part "
                        "Zhu et al. 2025 report), from each eval summary's accuracy_by_steps; tokens are then left out")
    p.set_defaults(func=cmd_report)
