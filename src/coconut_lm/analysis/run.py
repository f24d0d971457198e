"""`coconut-lm analyze`: the paper's ProsQA analysis (§5) of one Coconut checkpoint, end to end.

A ProntoQA checkpoint (word or symbolic form) gets what applies without a graph: steps 1 and 4, the
accuracy figure and `analysis.md` (settings.json holds the forced-k and reference rows).

    coconut-lm analyze runs/prosqa_coconut/best --data ../shared/data/prosqa/prosqa_valid.json \\
        --out runs/prosqa_coconut/analysis --cot runs/prosqa_cot --no-cot runs/prosqa_no_cot

It runs these steps in order:
1. Forced-k evaluation: exactly k thoughts, then language.
2. The path category of every prediction.
3. Latent-search values after 1 and 2 hops' worth of thoughts (h*c thoughts for h hops).
4. The decoded thoughts of a few examples.
5. The superposition probes (`analysis.probes`): thought · node embedding by node category,
   last-layer attention by edge category, the logit lens.
6. With `--html`: every node's value after each thought (`latent_search.node_values`).
7. Every figure, `analysis.md` with the numbers behind each figure, and with `--html` the
   self-contained page `report.html` (`analysis.html`).

Only steps 1-6 run models. The figures and the markdown are made from the JSON records alone
(`plots.make_figures`, `write_markdown`). The output folder holds:

    forced_k/k<k>/predictions.jsonl, summary.json    forced_k/forced_k.json
    reference/cot/..., reference/no_cot/...          (with --cot / --no-cot)
    path_categories.json, path_categories.jsonl      latent_search.jsonl, latent_search_summary.json
    thoughts.json    probes.jsonl, probes_summary.json    figures/*.png    analysis.md
    walkthrough.jsonl, report.html                   (with --html)
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.symbolic import is_symbolic

DEFAULT_LATENTS = (0, 1, 2, 3, 4, 5, 6)
SEARCH_HOPS = (1, 2)
#: What `analyze` writes into its --out (module docstring); `--overwrite` removes these first.
ANALYSIS_OUTPUTS = re.compile(r"forced_k|reference|path_categories\.jsonl?|latent_search\.jsonl|"
                              r"latent_search_summary\.json|thoughts\.json|figures|analysis\.md|settings\.json|"
                              r"probes\.jsonl|probes_summary\.json|walkthrough\.jsonl|report\.html")


@dataclass
class AnalysisResult:
    """What `run_analysis` wrote: the output folder, its files and figures, and accuracy per setting."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    html: Path | None = None


def _load_prosqa(data: str | os.PathLike, max_examples: int | None):
    """The examples and their graphs; any item without the ProsQA graph keys is a one-line error."""
    from coconut_lm.tasks.examples import load_examples
    from coconut_lm.tasks.prosqa_graph import graph_from_example

    examples = load_examples(data)[:max_examples]
    if not examples:
        raise CoconutError(f"{data}: no examples to analyse")
    graphs = [graph_from_example(ex, i, str(data)) for i, ex in enumerate(examples)]
    return examples, graphs


def _categorise(setting: dict[str, Any], records, graphs, hops: int) -> list[dict]:
    """Add the counts and fractions of the six path categories to `setting`; return one row per example."""
    from coconut_lm.analysis.paths import PathCategory, classify_chain

    cats = [classify_chain(graphs[r.index], r.text, k_thoughts=hops) for r in records]
    setting["counts"] = {c.value: sum(x is c for x in cats) for c in PathCategory}
    setting["fractions"] = {c.value: setting["counts"][c.value] / len(cats) for c in PathCategory}
    return [{"setting": setting["name"], "index": r.index, "category": c.value, "correct": r.correct}
            for r, c in zip(records, cats)]


def _evaluate_setting(model, tok, examples, data, method, layout, k: int, out: Path, args: dict[str, Any],
                      extra: dict[str, Any], task: str = "prosqa"):
    from coconut_lm.checkpoint_eval import write_eval
    from coconut_lm.eval.evaluate import evaluate

    result = evaluate(model, tok, examples, method, layout, task, k, args["batch_size"],
                      args["max_new_tokens"], progress=args["progress"], desc=f"{extra['label']}", data=data)
    write_eval(result, out, extra={**extra, "method": method.name, "task": task, "n_thoughts": k})
    return result


def _checkpoint_task(ckpt: Path) -> str | None:
    """The task a checkpoint's `coconut.json` records (None if unreadable: load_model then says why)."""
    from coconut_lm.model.coconut import read_meta

    try:
        return read_meta(ckpt).get("task")
    except (CoconutError, OSError, ValueError):
        return None


def _load_references(refs, examples, data, any_task: bool) -> list[tuple]:
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


def _run_prontoqa(model, tok, meta, ckpt: Path, refs, data, out: Path, latents: Sequence[int],
                  max_examples: int | None, args: dict[str, Any], decode_examples: int, dev,
                  any_task: bool = False, overwrite: bool = False) -> AnalysisResult:
    """What applies to ProntoQA (no graph search): forced k with chain match, references, decoded thoughts.

    Writes forced_k/..., reference/..., settings.json, thoughts.json, figures/accuracy_vs_k.png, analysis.md.
    """
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
    references = _load_references(refs, examples, data, any_task)
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
        ev = _evaluate_setting(model, tok, examples, data_ids, method, layout, k, out / "forced_k" / f"k{k}", args,
                               {"checkpoint": str(ckpt), "data": str(data), "label": f"k={k}"}, task="prontoqa")
        forced[f"k{k}"] = asdict(ev.summary)
        settings.append(setting(f"k{k}", f"k={k}", "forced_k", k, method, ckpt, ev))
    atomic_write_text(out / "forced_k" / "forced_k.json", json.dumps(forced, indent=2) + "\n")
    for name, label, path, rmodel, rtok, rmeta, rdata in references:
        rmethod = get_method(rmeta.method)
        ev = _evaluate_setting(rmodel.to(dev).eval(), rtok, examples, rdata, rmethod, rmeta.layout, rmeta.eval_thoughts,
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
        decoded = _decode_examples(model, tok, data_ids[:decode_examples], [list(ex.steps) for ex in examples],
                                   method, layout, k, args["max_new_tokens"])
    atomic_write_text(out / "thoughts.json", json.dumps({"checkpoint": str(ckpt), "examples": decoded}, indent=2) + "\n")
    result.figures = make_figures(out)
    write_markdown(out)
    result.files = sorted(p for p in out.rglob("*") if p.is_file())
    return result


def _pick_tree_example(records) -> int:
    """The first example whose tree fits a figure (2-5 children, 2-8 grandchildren), else the first."""
    for r in records:
        f1, f2 = r.frontier(1), r.frontier(2)
        if f1 and f2 and 2 <= len(f1.nodes) <= 5 and 2 <= len(f2.nodes) <= 8:
            return r.index
    return records[0].index


def _decode_examples(model, tok, data, gold_paths, method, layout, k: int, max_new_tokens: int) -> list[dict]:
    """Generate with k thoughts for the tokenised examples `data` and decode each thought's top tokens
    (`gold_paths[i]`: example i's chain)."""
    from coconut_lm.analysis.latent_search import decode_thoughts
    from coconut_lm.eval.evaluate import generate_prompts

    prompts = [method.eval_prompt(t, k, layout, model.tokens) for t in data]
    out = []
    for i, g in enumerate(generate_prompts(model, tok, prompts, max_new_tokens, return_thoughts=True)):
        top = decode_thoughts(model, tok, g.thought_states, k=5) if g.thought_states is not None else []
        out.append({"index": i, "n_thoughts": k, "gold_path": gold_paths[i], "text": g.text,
                    "thoughts": [[{"token": t, "prob": p} for t, p in row] for row in top]})
    return out


def run_analysis(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    latents: Sequence[int] = DEFAULT_LATENTS,
    cot: str | os.PathLike | None = None,
    no_cot: str | os.PathLike | None = None,
    max_examples: int | None = None,
    batch_size: int = 64,
    max_new_tokens: int = 64,
    search_hops: Sequence[int] = SEARCH_HOPS,
    decode_examples: int = 3,
    tree_example: int | None = None,
    device: str = "auto",
    progress: bool = True,
    probe_examples: int = 100,
    html: bool = False,
    html_examples: int = 100,
    compare: Sequence[str] = (),
    any_task: bool = False,
    overwrite: bool = False,
) -> AnalysisResult:
    """Run the whole analysis of a ProsQA Coconut checkpoint and write its records, figures and analysis.md.

    The data is checked and tokenised for each model as `eval` does (`data_check.check_eval_data`:
    another task's data, or ProsQA in the other form, is refused unless `any_task`; control-token
    text always is). A non-empty `out` is refused unless `overwrite`; then an earlier analysis's
    files there are removed just before the new ones are written.

    Args:
        checkpoint: the Coconut checkpoint (or its run folder).
        data: ProsQA test data with graph keys (e.g. prosqa_valid.json).
        out: output folder.
        latents: thought counts k for the forced-k evaluation.
        cot, no_cot: optional reference checkpoints (or run folders), evaluated with their own setting.
        max_examples: analyse only the first N examples.
        batch_size: generation and scoring batch size.
        max_new_tokens: generation budget per example.
        search_hops: hops h after which frontier values are read (the paper: 1 and 2); the prompt
            holds h*c thoughts.
        decode_examples: examples whose thoughts are decoded through the LM head.
        tree_example: index of the example drawn as a search tree (default: the first that fits).
        probe_examples: examples the superposition probes read (0: none; continuous thoughts only).
        html: also write report.html, the self-contained walkthrough page.
        html_examples: examples in the page (their node values are computed after every thought).
        compare: more predictions shown in the page beside the model's, each `[LABEL=]PATH` of a
            predictions.jsonl (or an eval or run folder holding one) on the same data.
        any_task: analyse data that looks like another task's, or another form's, than the checkpoint's.
        overwrite: replace an earlier analysis in a non-empty `out`.
    """
    from coconut_lm.analysis.html import read_predictions
    from coconut_lm.analysis.latent_search import frontier_values
    from coconut_lm.analysis.paths import PathCategory
    from coconut_lm.analysis.plots import make_figures
    from coconut_lm.analysis.search_records import summarize_search, write_search
    from coconut_lm.eval.data_check import check_eval_data
    from coconut_lm.eval.outputs import check_out_dir, clear_outputs
    from coconut_lm.recipe.methods import get_method
    from coconut_lm.tasks.examples import atomic_write_text
    from coconut_lm.training.checkpoint import load_model, resolve_checkpoint
    from coconut_lm.training.dist import resolve_device

    out = check_out_dir(out, overwrite, "analyze")
    if not latents:
        raise CoconutError("analyze: --latents is empty")
    ckpt = resolve_checkpoint(checkpoint)
    refs = [(name, label, resolve_checkpoint(p, f"--{name.replace('_', '-')}"))
            for name, label, p in (("cot", "CoT", cot), ("no_cot", "No-CoT", no_cot)) if p is not None]
    prontoqa = _checkpoint_task(ckpt) == "prontoqa"  # no graphs: forced k and decoded thoughts only
    examples, graphs = ([], []) if prontoqa else _load_prosqa(data, max_examples)
    if not prontoqa and tree_example is not None and not 0 <= tree_example < len(examples):
        raise CoconutError(f"--tree-example {tree_example}: out of range for {len(examples)} examples")
    if compare and not html:
        raise CoconutError("--compare adds predictions to the HTML page; give --html too")
    if prontoqa and html:
        raise CoconutError("--html draws ProsQA graphs; a ProntoQA checkpoint has none (leave --html out)")
    for spec in compare:  # fail before any model runs
        read_predictions(spec)
    args = {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "progress": progress}
    dev = resolve_device(device)

    model, tok, meta = load_model(ckpt)
    task = meta.task
    if task == "prontoqa":
        return _run_prontoqa(model, tok, meta, ckpt, refs, data, out, latents, max_examples, args, decode_examples, dev,
                             any_task, overwrite)
    if task != "prosqa":
        raise CoconutError(f"checkpoint {ckpt}: trained on '{task}'; path categories and latent search need ProsQA "
                           f"(ProntoQA gets forced k and decoded thoughts)")
    method, layout = get_method(meta.method), meta.layout
    if not method.has_thought_slots(layout, model.tokens):
        raise CoconutError(f"checkpoint {ckpt}: method '{method.name}' has no thought slots, so forced k and latent "
                           f"search do not apply; analyse a coconut (or no_curriculum / pause_as_thought) checkpoint")
    data_ids = check_eval_data(examples, tok, task, data, ckpt, any_task, "analyze", meta=meta).data
    references = _load_references(refs, examples, data, any_task)
    if overwrite:
        clear_outputs(out, ANALYSIS_OUTPUTS)
    model.to(dev).eval()
    thoughts_per_hop = max(layout.c_thought, 1)
    result = AnalysisResult(out)

    # 1-2. forced k, then the references, each prediction with its path category
    settings, cat_rows, forced = [], [], {}
    for k in latents:
        name = f"k{k}"
        ev = _evaluate_setting(model, tok, examples, data_ids, method, layout, k, out / "forced_k" / name, args,
                               {"checkpoint": str(ckpt), "data": str(data), "label": f"k={k}"})
        forced[name] = asdict(ev.summary)
        setting = {"name": name, "label": f"k={k}", "kind": "forced_k", "k": k, "method": method.name,
                   "checkpoint": str(ckpt), "n": ev.summary.n, "accuracy": ev.summary.accuracy,
                   "mean_tokens": ev.summary.mean_tokens}
        cat_rows += _categorise(setting, ev.records, graphs, k // thoughts_per_hop)
        settings.append(setting)
    atomic_write_text(out / "forced_k" / "forced_k.json", json.dumps(forced, indent=2) + "\n")
    for name, label, path, rmodel, rtok, rmeta, rdata in references:
        rmethod = get_method(rmeta.method)
        if rmethod.name != name:
            print(f"note: --{name.replace('_', '-')} {path} is a '{rmethod.name}' checkpoint; shown as {label}")
        k = rmeta.eval_thoughts
        ev = _evaluate_setting(rmodel.to(dev).eval(), rtok, examples, rdata, rmethod, rmeta.layout, k,
                               out / "reference" / name, args, {"checkpoint": str(path), "data": str(data), "label": label})
        setting = {"name": name, "label": label, "kind": "reference", "k": k, "method": rmethod.name,
                   "checkpoint": str(path), "n": ev.summary.n, "accuracy": ev.summary.accuracy,
                   "mean_tokens": ev.summary.mean_tokens}
        # A reference writes its whole chain (or none), so its categories are read with k = 0.
        cat_rows += _categorise(setting, ev.records, graphs, 0)
        settings.append(setting)
        del rmodel
    references.clear()
    atomic_write_text(out / "path_categories.json", json.dumps({
        "checkpoint": str(ckpt), "data": str(data), "n_examples": len(examples),
        "categories": [{"key": c.value, "label": c.label} for c in PathCategory],
        "settings": settings}, indent=2) + "\n")
    atomic_write_text(out / "path_categories.jsonl", "".join(json.dumps(r) + "\n" for r in cat_rows))
    result.accuracy = {s["name"]: s["accuracy"] for s in settings}

    # 3. latent search
    records = frontier_values(model, tok, examples, hops=search_hops, method=method, layout=layout,
                              batch_size=batch_size, progress=progress, data=data_ids)
    tree = tree_example if tree_example is not None else _pick_tree_example(records)
    write_search(records, summarize_search(records), out,
                 extra={"checkpoint": str(ckpt), "data": str(data), "tree_example": tree,
                        "value_definition": VALUE_DEFINITION["symbolic" if is_symbolic(examples[0]) else "words"]})

    # 4. decoded thoughts (continuous thoughts only)
    decoded = []
    k = meta.eval_thoughts or max(latents)
    if method.continuous and decode_examples > 0:
        decoded = _decode_examples(model, tok, data_ids[:decode_examples], [r.gold_path for r in records],
                                   method, layout, k, max_new_tokens)
    atomic_write_text(out / "thoughts.json", json.dumps({"checkpoint": str(ckpt), "examples": decoded}, indent=2) + "\n")

    # Outputs of an earlier run into this folder that this run does not remake would be stale.
    stale = [] if html else [out / "walkthrough.jsonl", out / "report.html"]
    probing = method.continuous and probe_examples > 0 and k > 0
    if not probing:
        stale += [out / "probes.jsonl", out / "probes_summary.json", *(out / "figures").glob("probe_*.png")]
    for p in stale:
        p.unlink(missing_ok=True)

    # 5. superposition probes (continuous thoughts only)
    if probing:
        from coconut_lm.analysis.probes import probe_examples as run_probes
        from coconut_lm.analysis.probes import summarize_probes, write_probes

        probes = run_probes(model, tok, examples[:probe_examples], k, method, layout, progress=progress)
        write_probes(probes, summarize_probes(probes), out, extra={"checkpoint": str(ckpt), "data": str(data)})

    # 6. every node's value after each thought, for the page
    if html:
        from coconut_lm.analysis.html import WALKTHROUGH, walkthrough_record
        from coconut_lm.analysis.latent_search import node_values

        shown = examples[:html_examples]
        values = node_values(model, tok, shown, range(k + 1), method, layout, batch_size=batch_size, progress=progress)
        atomic_write_text(out / WALKTHROUGH, "".join(json.dumps(walkthrough_record(ex, i, v)) + "\n"
                                                    for i, (ex, v) in enumerate(zip(shown, values))))

    # 7. figures, markdown and the page, from the records alone
    result.figures = make_figures(out)
    if html:
        from coconut_lm.analysis.html import write_html

        result.html = write_html(out, compare)
    write_markdown(out)
    result.files = sorted(p for p in out.rglob("*") if p.is_file())
    return result


# ------------------------------------------------------------------------------------ markdown


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


#: How a frontier node's value is read, per form of the data (see analysis.latent_search).
VALUE_DEFINITION = {
    "words": "P(name | question <bot> <latent>*(h*c) <eot> 'Every') after h hops of thoughts",
    "symbolic": "P(name | question <bot> <latent>*((h-1)*c) <eot>): a symbolic step is the node it reaches",
}


def write_markdown(out_dir: str | os.PathLike) -> Path:
    """Write `analysis.md` from the records in `out_dir`: one table per figure, with links to the figures."""
    from coconut_lm.tasks.examples import atomic_write_text

    out = Path(out_dir)
    if not (out / "path_categories.json").is_file() and (out / "settings.json").is_file():
        return _write_prontoqa_markdown(out)
    paths = json.loads((out / "path_categories.json").read_text())
    search = json.loads((out / "latent_search_summary.json").read_text())
    thoughts = json.loads((out / "thoughts.json").read_text()) if (out / "thoughts.json").is_file() else {}
    cats = paths["categories"]
    md = [f"# Latent reasoning analysis of `{paths['checkpoint']}`", "",
          f"Data: `{paths['data']}`, {paths['n_examples']} examples. Paper: Hao et al. 2024, §5 (ProsQA).", ""]

    md += ["## Forced k: accuracy and path categories", "",
           "k = thoughts used before the model is made to write the rest of the chain in language. "
           "Categories (%) follow the paper; a chain after k thoughts is judged as a continuation of k hidden hops.",
           "", "![accuracy](figures/accuracy_vs_k.png) ![categories](figures/path_categories.png)", ""]
    rows = [[s["label"], s["method"], s["n"], _pct(s["accuracy"]), f"{s['mean_tokens']:.1f}",
             *(_pct(s["fractions"][c["key"]]) for c in cats)] for s in paths["settings"]]
    md += [_table(["setting", "method", "n", "accuracy %", "tokens", *(c["label"] + " %" for c in cats)], rows), ""]

    md += ["## Latent search: frontier values", "",
           "Value of a frontier node = the model's probability of its name where the next step names it, "
           f"{search.get('value_definition', VALUE_DEFINITION['words'])}, product over the name's tokens. "
           "Frontier h = nodes h hops from the root; *correct* = the target is reachable from it.", "",
           "![parallelism](figures/parallelism.png)", ""]
    rows = []
    curves = {(c["hops"], c["k"]): c for c in search["parallelism"]}
    for f in search["frontiers"]:
        h = f["hops"]
        rows.append([h, f["n_examples"], _num(f["mean_size"], 2), _num(f["mean_total_value"]),
                     *(_num(curves[(h, k)]["mean"]) if (h, k) in curves else "-" for k in (1, 2, 3)),
                     _num(f["mean_correct_value"]), _num(f["mean_incorrect_value"]), _pct(f["top_node_correct"]),
                     _num(f["mean_prefix_prob"])])
    md += [_table(["thought", "examples", "nodes", "total value", "top-1", "top-2", "top-3", "correct node",
                   "incorrect node", "top node correct %", "P(template prefix)"], rows), ""]

    md += ["## Value against height", "",
           "Height = distance to a leaf (shortest and longest). Mean value ± standard error, n nodes.", "",
           "![height](figures/value_vs_height.png)", ""]
    cell: dict[tuple[int, str, int], dict[bool, str]] = {}
    for b in search["value_by_height"]:
        key = (b["hops"], b["height_kind"], b["height"])
        cell.setdefault(key, {})[b["correct"]] = f"{b['mean_value']:.3f} ± {b['sem']:.3f} ({b['n']})"
    order = sorted(cell, key=lambda key: (key[0], key[1] != "shortest", key[2]))
    rows = [[h, kind, height, cell[(h, kind, height)].get(True, "-"), cell[(h, kind, height)].get(False, "-")]
            for h, kind, height in order]
    md += [_table(["thought", "height kind", "height", "correct nodes: value ± s.e. (n)",
                   "incorrect nodes: value ± s.e. (n)"], rows), ""]

    tree = search.get("tree_example")
    if tree is not None and (out / "latent_search.jsonl").is_file():
        lines = (out / "latent_search.jsonl").read_text().splitlines()
        rec = next((json.loads(x) for x in lines if json.loads(x)["index"] == tree), None)
        if rec is not None:
            md += [f"## Search tree of example {tree}", "",
                   f"Root {rec['root_name']}, target {rec['target_name']} ({rec['target_hops']} hops); "
                   f"gold chain: {' → '.join(rec['gold_path']) or '-'}.", "", "![tree](figures/search_tree.png)", ""]
            rows = [[f["hops"], n["name"], f"{n['value']:.3f}", "yes" if n["correct"] else "no",
                     n["height_shortest"], n["height_longest"]]
                    for f in rec["frontiers"] for n in sorted(f["nodes"], key=lambda n: -n["value"])]
            md += [_table(["thought", "node", "value", "leads to target", "height (shortest)", "height (longest)"],
                          rows), ""]

    md += _decoded_section(thoughts)
    md += _probes_markdown(out)
    if (out / "report.html").is_file():
        md += ["## Interactive report", "", "[report.html](report.html): every example's graph, its node values "
               "thought by thought, the probes and what each model wrote (one file; open it in a browser).", ""]
    path = out / "analysis.md"
    atomic_write_text(path, "\n".join(md))
    return path


def _decoded_section(thoughts: dict[str, Any]) -> list[str]:
    md: list[str] = []
    if thoughts.get("examples"):
        md += ["## Decoded thoughts", "", "Top tokens of the LM head applied to each continuous thought.", ""]
        for ex in thoughts["examples"]:
            md += [f"Example {ex['index']} ({ex['n_thoughts']} thoughts); gold chain: "
                   f"{' → '.join(ex['gold_path']) or '-'}; generated: `{ex['text'].strip()!r}`", ""]
            rows = [[i + 1, ", ".join(f"`{t['token']!r}` {t['prob']:.2f}" for t in row[:5])]
                    for i, row in enumerate(ex["thoughts"])]
            md += [_table(["thought", "top tokens"], rows), ""]
    return md


def _write_prontoqa_markdown(out: Path) -> Path:
    """`analysis.md` of a ProntoQA analysis: forced k (accuracy, chain match) and the decoded thoughts."""
    from coconut_lm.tasks.examples import atomic_write_text

    info = json.loads((out / "settings.json").read_text())
    thoughts = json.loads((out / "thoughts.json").read_text()) if (out / "thoughts.json").is_file() else {}
    md = [f"# Latent reasoning analysis of `{info['checkpoint']}`", "",
          f"Data: `{info['data']}`, {info['n_examples']} examples ({info.get('task_label', 'ProntoQA')}). "
          "ProntoQA has no graph search to measure: forced k and the decoded thoughts apply.", "",
          "## Forced k", "",
          "k = thoughts used before the model is made to write the rest of the chain in language. "
          "Chain match = the written steps are exactly the gold steps after the first k.", "",
          "![accuracy](figures/accuracy_vs_k.png)", ""]
    rows = [[s["label"], s["method"], s["n"], _pct(s["accuracy"]), f"{s['mean_tokens']:.1f}", _pct(s["chain_match"])]
            for s in info["settings"]]
    md += [_table(["setting", "method", "n", "accuracy %", "tokens", "chain match %"], rows), ""]
    md += _decoded_section(thoughts)
    path = out / "analysis.md"
    atomic_write_text(path, "\n".join(md))
    return path


def _probes_markdown(out: Path) -> list[str]:
    """The probe tables (from probes_summary.json), or nothing when the probes did not run."""
    if not (out / "probes_summary.json").is_file():
        return []
    s = json.loads((out / "probes_summary.json").read_text())
    thoughts = range(1, s["n_thoughts"] + 1)

    def cell(rows: list[dict], t: int, cat: str, fmt) -> str:
        r = next((r for r in rows if r["thought"] == t and r["category"] == cat), None)
        return fmt(r) if r and r["n"] else "-"

    md = ["## Superposition probes", "",
          f"{s['n_examples']} examples (`probes.jsonl`). Categories after hop h = ceil(t / c) of thought t: "
          "*optimal* = on the frontier and on a shortest path to the target, *frontier* = the other nodes at the end "
          "of an h-edge path from the root, *reachable* = within h hops off the frontier, *unreachable* = the rest. "
          "Each example's mean over a category counts once (n = examples that have the category).", "",
          "![similarity](figures/probe_similarity.png)", "",
          "Thought · node embedding: mean cosine (inner product).", ""]
    md += [_table(["thought", *s["node_categories"]],
                  [[t, *(cell(s["similarity"], t, c, lambda r: f"{r['mean_cos']:.3f} ({r['mean_dot']:.2f})")
                         for c in s["node_categories"])] for t in thoughts]), ""]
    if any(r["n"] for r in s["attention"]):
        md += ["Last-layer attention (mean over heads) from the position that writes thought t, per edge of "
               "the question, by edge category (*optimal*: a shortest-path edge leaving hop h-1; *frontier*: the "
               "other edges leaving hop h-1; *reachable*: edges leaving nodes reached earlier).", "",
               "![attention](figures/probe_attention.png)", ""]
        md += [_table(["thought", *s["edge_categories"]],
                      [[t, *(cell(s["attention"], t, c, lambda r: f"{r['mean_per_edge']:.4f}")
                             for c in s["edge_categories"])] for t in thoughts]), ""]
    if s["lens"]:
        md += ["Logit lens: % of examples whose top-1 token at each layer (through the final norm and the LM head) "
               "names a frontier node (optimal or not); any node in brackets. The last layer is the decoded thought.",
               "", "![lens](figures/probe_lens.png)", ""]
        layers = sorted({r["layer"] for r in s["lens"]})
        rows = []
        for layer in layers:
            cells = []
            for t in thoughts:
                r = next((r for r in s["lens"] if r["thought"] == t and r["layer"] == layer), None)
                cells.append("-" if r is None else f"{_pct((r['optimal'] or 0) + (r['frontier'] or 0))} ({_pct(r['any_node'])})")
            rows.append(["inputs" if layer == 0 else f"layer {layer}", *cells])
        md += [_table(["layer", *(f"thought {t}" for t in thoughts)], rows), ""]
    return md


# ----------------------------------------------------------------------------------------- CLI


def cmd_analyze(args: argparse.Namespace) -> int:
    """`coconut-lm analyze`: run the analysis and list what it wrote."""
    result = run_analysis(args.checkpoint, args.data, args.out, latents=args.latents, cot=args.cot,
                          no_cot=args.no_cot, max_examples=args.max_examples, batch_size=args.batch_size,
                          max_new_tokens=args.max_new_tokens, search_hops=args.search_hops,
                          decode_examples=args.decode_examples, tree_example=args.tree_example,
                          device=args.device, progress=not args.no_progress, probe_examples=args.probe_examples,
                          html=args.html, html_examples=args.html_examples, compare=args.compare,
                          any_task=args.any_task, overwrite=args.overwrite)
    for name, acc in result.accuracy.items():
        print(f"{name:>8}: accuracy {acc:.3f}")
    print(f"wrote {len(result.files)} files ({len(result.figures)} figures) under {result.out_dir}; "
          f"summary in {result.out_dir / 'analysis.md'}")
    if result.html is not None:
        print(f"interactive report: {result.html} (open it in a browser; it needs no server and no network)")
    return 0


def add_analyze_parser(sub: argparse._SubParsersAction) -> None:
    """Add the `analyze` subcommand to the `coconut-lm` parser (sets `func`)."""
    from coconut_lm.argtypes import int_list, non_negative_int, path, positive_int

    p = sub.add_parser("analyze", help="ProsQA analysis of a Coconut checkpoint: forced k, path categories, latent search, figures",
                       description="The paper's section 5 on ProsQA: forced-k evaluation, path categories per k, "
                                   "frontier-node values after 1 and 2 hops of thoughts (parallelism, value against height), "
                                   "decoded thoughts, superposition probes (thought-node similarity, attention by edge type, "
                                   "logit lens), every figure (PNG) and analysis.md with the numbers behind them; "
                                   "with --html, a self-contained page to walk through each example's latent search. "
                                   "A ProntoQA checkpoint gets forced k (accuracy, chain match), the references and "
                                   "decoded thoughts.")
    p.add_argument("checkpoint", type=path, metavar="CKPT", help="Coconut checkpoint folder, or a run folder (its best/ is used)")
    p.add_argument("--data", type=path, required=True, metavar="FILE", help="ProsQA data with graph keys (e.g. prosqa_valid.json), or ProntoQA data in the checkpoint's form")
    p.add_argument("--out", type=path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--latents", type=int_list, default=list(DEFAULT_LATENTS), metavar="K,K,...",
                   help="thought counts k for forced-k evaluation (default 0,1,2,3,4,5,6)")
    p.add_argument("--cot", type=path, default=None, metavar="RUN_OR_CKPT",
                   help="CoT reference, evaluated with its own setting and drawn beside the k bars")
    p.add_argument("--no-cot", type=path, default=None, metavar="RUN_OR_CKPT", help="No-CoT reference, likewise")
    p.add_argument("--max-examples", type=positive_int, default=None, metavar="N",
                   help="analyse only the first N examples")
    p.add_argument("--batch-size", type=positive_int, default=64, metavar="B",
                   help="generation and scoring batch size (default 64)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, metavar="T",
                   help="generation budget per example (default 64)")
    p.add_argument("--search-hops", type=int_list, default=list(SEARCH_HOPS), metavar="H,H,...",
                   help="hops h after which frontier values are read; the prompt holds h*c thoughts "
                        "(default 1,2, as in the paper)")
    p.add_argument("--decode-examples", type=non_negative_int, default=3, metavar="N",
                   help="examples whose thoughts are decoded through the LM head (default 3; 0: none)")
    p.add_argument("--tree-example", type=non_negative_int, default=None, metavar="I",
                   help="index of the example drawn as a search tree (default: the first whose tree fits a figure)")
    p.add_argument("--probe-examples", type=non_negative_int, default=100, metavar="N",
                   help="examples the superposition probes read: thought-node similarity, attention by edge type, "
                        "logit lens (default 100; 0: none)")
    p.add_argument("--html", action="store_true",
                   help="also write report.html: one self-contained page to walk through each example's latent "
                        "search thought by thought, with the probes and the figures")
    p.add_argument("--html-examples", type=positive_int, default=100, metavar="N",
                   help="examples in the page; every node's value is computed after every thought (default 100)")
    p.add_argument("--compare", action="append", default=[], metavar="[LABEL=]PREDICTIONS",
                   help="with --html: show what another run wrote for each question: its predictions.jsonl, or the "
                        "eval or run folder holding one, on the same data (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier analysis in a non-empty --out (its files there are removed first)")
    p.add_argument("--any-task", action="store_true",
                   help="analyse data that looks like another task's, or another form's, than the checkpoint's "
                        "(refused otherwise, as in eval)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_analyze)
