"""The analysis of a ProntoQA checkpoint: what applies without a graph to search.

Forced k with the chain match (the written steps are exactly the gold steps after the first k),
the references, and a few examples' decoded thoughts; then the accuracy figure and `analysis.md`.
`analysis.run.run_analysis` sends a ProntoQA checkpoint here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from coconut_lm.analysis.folder import ANALYSIS_OUTPUTS, AnalysisResult
from coconut_lm.analysis.forced_k import evaluate_setting, load_references
from coconut_lm.errors import CoconutError


def run_prontoqa(model, tok, meta, ckpt: Path, refs, data, out: Path, latents: Sequence[int],
                 max_examples: int | None, args: dict[str, Any], decode_examples: int, dev,
                 any_task: bool = False, overwrite: bool = False) -> AnalysisResult:
    """What applies to ProntoQA (no graph search): forced k with chain match, references, decoded thoughts.

    Writes forced_k/..., reference/..., settings.json, thoughts.json, figures/accuracy_vs_k.png, analysis.md.
    """
    from coconut_lm.analysis.latent_search import decoded_thoughts
    from coconut_lm.analysis.markdown import write_markdown
    from coconut_lm.analysis.plots import make_figures
    from coconut_lm.eval.data_check import check_eval_data
    from coconut_lm.eval.outputs import clear_outputs
    from coconut_lm.recipe.methods import get_method
    from coconut_lm.tasks.answers import data_task
    from coconut_lm.tasks.examples import atomic_write_text, load_examples

    examples = load_examples(data)[:max_examples]
    if not examples:
        raise CoconutError(f"{data}: no examples to analyse")
    if data_task(examples) != "prontoqa":
        raise CoconutError(f"{data}: does not look like ProntoQA data (True/False answers), but checkpoint {ckpt} "
                           f"was trained on it")
    data_ids = check_eval_data(examples, tok, "prontoqa", data, ckpt, any_task, "analyze", meta=meta).data
    method, layout = get_method(meta.method), meta.layout
    if not method.has_thought_slots(layout, model.tokens):
        raise CoconutError(f"checkpoint {ckpt}: method '{method.name}' has no thought slots, so forced k does not "
                           f"apply; analyse a coconut (or no_curriculum / pause_as_thought) checkpoint")
    references = load_references(refs, examples, data, any_task)
    if overwrite:
        clear_outputs(out, ANALYSIS_OUTPUTS)
    model.to(dev).eval()
    result = AnalysisResult(out)
    settings, forced = [], {}

    def setting(name, label, kind, k, m, path, ev) -> dict[str, Any]:
        return {"name": name, "label": label, "kind": kind, "k": k, "method": m.name, "checkpoint": str(path),
                "n": ev.summary.n, "accuracy": ev.summary.accuracy, "mean_tokens": ev.summary.mean_tokens,
                "chain_match": ev.summary.cot_match}

    for k in latents:
        ev = evaluate_setting(model, tok, examples, data_ids, method, layout, k, out / "forced_k" / f"k{k}", args,
                              {"checkpoint": str(ckpt), "data": str(data), "label": f"k={k}"}, task="prontoqa")
        forced[f"k{k}"] = asdict(ev.summary)
        settings.append(setting(f"k{k}", f"k={k}", "forced_k", k, method, ckpt, ev))
    atomic_write_text(out / "forced_k" / "forced_k.json", json.dumps(forced, indent=2) + "\n")
    for name, label, path, rmodel, rtok, rmeta, rdata in references:
        rmethod = get_method(rmeta.method)
        ev = evaluate_setting(rmodel.to(dev).eval(), rtok, examples, rdata, rmethod, rmeta.layout, rmeta.eval_thoughts,
                              out / "reference" / name, args, {"checkpoint": str(path), "data": str(data),
                                                                "label": label}, task="prontoqa")
        settings.append(setting(name, label, "reference", rmeta.eval_thoughts, rmethod, path, ev))
        del rmodel
    references.clear()
    atomic_write_text(out / "settings.json", json.dumps({
        "checkpoint": str(ckpt), "data": str(data), "task": "prontoqa", "task_label": "ProntoQA",
        "n_examples": len(examples), "settings": settings}, indent=2) + "\n")
    result.accuracy = {s["name"]: s["accuracy"] for s in settings}
    decoded = []
    if method.continuous and decode_examples > 0:
        k = meta.eval_thoughts or max(latents)
        decoded = decoded_thoughts(model, tok, data_ids[:decode_examples], [list(ex.steps) for ex in examples],
                                   method, layout, k, args["max_new_tokens"])
    atomic_write_text(out / "thoughts.json", json.dumps({"checkpoint": str(ckpt), "examples": decoded}, indent=2) + "\n")
    result.figures = make_figures(out)
    write_markdown(out)
    result.files = sorted(p for p in out.rglob("*") if p.is_file())
    return result
