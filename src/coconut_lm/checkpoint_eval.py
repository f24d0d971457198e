"""The `eval` command: score a checkpoint on a data file and write the records.

    summaries = evaluate_checkpoint("runs/x", "data/prosqa_valid.json", "runs/x/eval", latents=[0, 3, 6])
    write_eval(result, "runs/x/eval")      # predictions.jsonl + summary.json

The pure scoring is `eval.evaluate`; this side loads the checkpoint (`training.checkpoint`), checks
the data against it (`eval.data_check`), and owns the files an evaluation writes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from coconut_lm.errors import CoconutError
from coconut_lm.eval.data_check import check_eval_data
from coconut_lm.eval.evaluate import EvalResult, EvalSummary, accuracy_by_steps, evaluate, spearman
from coconut_lm.eval.outputs import check_out_dir, clear_outputs
from coconut_lm.model.shift_modes import ShiftThoughts
from coconut_lm.recipe.methods import get_method
from coconut_lm.tasks.examples import atomic_write_text, load_examples
from coconut_lm.tasks.registry import TASKS
from coconut_lm.training.checkpoint import load_model, resolve_checkpoint
from coconut_lm.training.dist import resolve_device

#: What `eval` writes into its --out (and `--overwrite` removes first): one setting's files, or forced k's.
EVAL_OUTPUTS = re.compile(r"predictions\.jsonl|summary\.json|forced_k\.json|k\d+|classifier(@[0-9.e-]+)?|tradeoff\.png")


def write_eval(result: EvalResult, out_dir: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write `predictions.jsonl` and `summary.json` (plus `extra` keys) into out_dir, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(asdict(r)) + "\n" for r in result.records))
    atomic_write_text(out / "summary.json", json.dumps({**asdict(result.summary), **(extra or {})}, indent=2) + "\n")
    return out


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    latents: Sequence[int] | None = None,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    use_classifier: bool | None = None,
    max_examples: int | None = None,
    device: str = "auto",
    progress: bool = True,
    any_task: bool = False,
    compile: str | None = None,
    eot_thresholds: Sequence[float] | None = None,
    overwrite: bool = False,
    shift_thoughts: ShiftThoughts | None = None,
) -> dict[str, EvalSummary]:
    """Evaluate a checkpoint (or a run folder's best/) on a data file, once per thought count in `latents` (forced k).

    With the classifier, once per threshold in `eot_thresholds` (default 0.5: "classifier", else
    "classifier@<t>"), and once per count in `latents` given beside it, so the model's own stop and a
    fixed count of the same checkpoint sit in one table; each classifier summary also records the
    Spearman correlation between the thoughts each example used and its gold chain length.
    A data file that looks like another task's than the checkpoint's, or in the other form, is refused
    unless `any_task` (`check_eval_data`). A non-empty `out_dir` is refused unless `overwrite`; then the
    earlier eval's files in it are removed just before the new ones are written, so the two never mix.
    `compile` names a `torch.compile` mode for every transformer block (coconut_lm.model.compiled).
    `shift_thoughts` overrides the checkpoint's setting for this evaluation (`load_model`); each
    summary records the value used.

    Writes `<out>/predictions.jsonl` and `<out>/summary.json` for one setting, or `<out>/k<k>/...`
    plus `<out>/forced_k.json` for several. Returns the summaries keyed "k<k>" (or "classifier").
    """
    out = check_out_dir(out_dir, overwrite, "eval")
    dev = resolve_device(device)
    checkpoint = resolve_checkpoint(checkpoint)
    model, tokenizer, meta = load_model(checkpoint, shift_thoughts=shift_thoughts)
    model.to(dev)
    if compile is not None:
        from coconut_lm.model.compiled import compile_blocks  # looked up per call: tests swap it

        compile_blocks(model, compile)
    method = get_method(meta.method)
    layout = meta.layout
    # The training run's generation budget unless asked otherwise (128 when the checkpoint does not record it).
    budget = max_new_tokens if max_new_tokens is not None else meta.max_new_tokens
    task = meta.task
    examples = load_examples(data_path)[:max_examples]
    if use_classifier is None:
        use_classifier = meta.eval_use_classifier
    if use_classifier and model.eot_head is None:
        raise CoconutError(f"checkpoint {checkpoint}: has no <eot> classifier (train with eot_classifier=true)")
    if eot_thresholds and not use_classifier:
        raise CoconutError("eval: an <eot> threshold needs the classifier (--use-classifier)")
    thresholds = list(eot_thresholds or [0.5])
    # A setting is (fixed thought count, None) or (None, classifier threshold).
    settings: list[tuple[int | None, float | None]] = (
        [(None, t) for t in thresholds] + [(k, None) for k in (latents or [])] if use_classifier
        else [(k, None) for k in (latents if latents else [meta.eval_thoughts])])
    if latents and set(latents) != {meta.eval_thoughts} and not method.has_thought_slots(layout, model.tokens):
        raise CoconutError(f"eval: --latents {','.join(map(str, latents))}: checkpoint {checkpoint} is a "
                           f"'{method.name}' model, whose prompt has no thought slots, so every k would be the same "
                           f"run; leave --latents out")
    checked = check_eval_data(examples, tokenizer, task, data_path, checkpoint, any_task, meta=meta)
    data, unknown, looks_like = checked.data, checked.unknown, checked.looks_like
    limit = getattr(model, "_max_positions", None)
    most = max((meta.max_thoughts if k is None else k) for k, _ in settings)
    for i, ex in enumerate(data):  # a prompt that leaves no room for one new token cannot be answered at all
        need = len(method.eval_prompt(ex, most, layout, model.tokens)) + (2 if use_classifier else 1)
        if limit is not None and need > limit:
            raise CoconutError(f"{data_path}: item {i}: its prompt ({len(ex.question)} question tokens, {most} thoughts) "
                               f"and one new token need {need} positions, more than the model's {limit} "
                               f"(shorten the question)")
    spec = TASKS.get(looks_like or task)  # the file's chance level: an answer-blind guess on its gold answers
    chance = spec.chance_level([ex.answer for ex in examples]) if spec else None
    summaries: dict[str, EvalSummary] = {}
    if overwrite:  # only now that everything checked out: a refused eval leaves the earlier results as they were
        clear_outputs(out, EVAL_OUTPUTS)
    for k, t in settings:
        name = f"k{k}" if k is not None else ("classifier" if t == 0.5 else f"classifier@{t:g}")
        result = evaluate(model, tokenizer, examples, method, layout, task, k or 0, batch_size, budget,
                          use_classifier=k is None, max_thoughts=meta.max_thoughts,
                          progress=progress, desc=f"eval {name}", data=data, eot_threshold=t or 0.5)
        where = out if len(settings) == 1 else out / name
        extra = {"checkpoint": str(checkpoint), "data": str(data_path), "method": method.name, "task": task,
                 "data_task": looks_like, "unknown_tokens": unknown.count if unknown else 0,
                 "accuracy_by_steps": accuracy_by_steps(examples, result.records), "chance": chance,
                 "shift_thoughts": model.shift_thoughts}
        if k is None:
            extra["thoughts_steps_spearman"] = spearman([r.thoughts for r in result.records],
                                                        [len(ex.steps) for ex in examples])
        write_eval(result, where, extra=extra)
        summaries[name] = result.summary
    if len(settings) > 1:
        atomic_write_text(out / "forced_k.json", json.dumps({k: asdict(s) for k, s in summaries.items()}, indent=2) + "\n")
    return summaries
