"""Forced k (paper §5): exactly k continuous thoughts, then language; and the reference settings.

    references = load_references(refs, examples, data, any_task)   # --cot / --no-cot, checked first
    ev = evaluate_setting(model, tok, examples, data_ids, method, layout, k, out / "forced_k" / "k2", args, extra)
    rows = categorise(setting, ev.records, graphs, hops=k // c)     # ProsQA: each prediction's path category

Each setting is evaluated and written as `eval` writes it (`checkpoint_eval.write_eval`); a
reference is evaluated with its own thought count. Its predictions are then read as path
categories (`analysis.paths`), a chain after k thoughts as a continuation of k hidden hops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def categorise(setting: dict[str, Any], records, graphs, hops: int) -> list[dict]:
    """Add the counts and fractions of the six path categories to `setting`; return one row per example."""
    from coconut_lm.analysis.paths import PathCategory, classify_chain

    cats = [classify_chain(graphs[r.index], r.text, k_thoughts=hops) for r in records]
    setting["counts"] = {c.value: sum(x is c for x in cats) for c in PathCategory}
    setting["fractions"] = {c.value: setting["counts"][c.value] / len(cats) for c in PathCategory}
    return [{"setting": setting["name"], "index": r.index, "category": c.value, "correct": r.correct}
            for r, c in zip(records, cats)]


def evaluate_setting(model, tok, examples, data, method, layout, k: int, out: Path, args: dict[str, Any],
                     extra: dict[str, Any], task: str = "prosqa"):
    """Evaluate `model` with exactly `k` thoughts on `examples` and write the evaluation to `out`, as `eval` does."""
    from coconut_lm.checkpoint_eval import write_eval
    from coconut_lm.eval.evaluate import evaluate

    result = evaluate(model, tok, examples, method, layout, task, k, args["batch_size"],
                      args["max_new_tokens"], progress=args["progress"], desc=f"{extra['label']}", data=data)
    write_eval(result, out, extra={**extra, "method": method.name, "task": task, "n_thoughts": k})
    return result


def load_references(refs, examples, data, any_task: bool) -> list[tuple]:
    """Load every --cot/--no-cot model and check the data for it, before anything is written:
    (name, label, path, model, tokenizer, meta, tokenised data) each."""
    from coconut_lm.eval.data_check import check_eval_data
    from coconut_lm.training.checkpoint import load_model

    out = []
    for name, label, path in refs:
        rmodel, rtok, rmeta = load_model(path, f"--{name.replace('_', '-')}")
        rdata = check_eval_data(examples, rtok, rmeta.task, data, path, any_task, "analyze", meta=rmeta).data
        out.append((name, label, path, rmodel, rtok, rmeta, rdata))
    return out
