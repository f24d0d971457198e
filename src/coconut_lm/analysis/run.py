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

Only steps 1-6 run models: step 1 in `analysis.forced_k`, step 2 in `analysis.paths`, steps 3, 4
and 6 in `analysis.latent_search`, step 5 in `analysis.probes`; a ProntoQA checkpoint goes to
`analysis.prontoqa_analysis`. The figures and the markdown are made from the JSON records alone
(`plots.make_figures`, `markdown.write_markdown`). The output folder (`analysis.folder`) holds:

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
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from coconut_lm.analysis.folder import ANALYSIS_OUTPUTS, AnalysisResult
from coconut_lm.analysis.forced_k import categorise, evaluate_setting, load_references
from coconut_lm.analysis.markdown import write_markdown
from coconut_lm.analysis.search_records import VALUE_DEFINITION, pick_tree_example
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.prosqa_graph import load_graph_examples
from coconut_lm.tasks.symbolic import is_symbolic

DEFAULT_LATENTS = (0, 1, 2, 3, 4, 5, 6)
SEARCH_HOPS = (1, 2)


def _checkpoint_task(ckpt: Path) -> str | None:
    """The task a checkpoint's `coconut.json` records (None if unreadable: load_model then says why)."""
    from coconut_lm.model.coconut import read_meta

    try:
        return read_meta(ckpt).get("task")
    except (CoconutError, OSError, ValueError):
        return None


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
    eot_threshold: float = 0.5,
    stop_examples: int = 100,
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
        eot_threshold, stop_examples: with an `<eot>` classifier, the model's own stop (`analysis.own_stop`):
            the classifier's threshold, and the examples whose node values are read after each thought (0: none).
    """
    from coconut_lm.analysis.html import read_predictions
    from coconut_lm.analysis.latent_search import decoded_thoughts, frontier_values
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
    examples, graphs = ([], []) if prontoqa else load_graph_examples(data, max_examples)
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
        from coconut_lm.analysis.prontoqa_analysis import run_prontoqa

        return run_prontoqa(model, tok, meta, ckpt, refs, data, out, latents, max_examples, args, decode_examples, dev,
                            any_task, overwrite)
    if task != "prosqa":
        raise CoconutError(f"checkpoint {ckpt}: trained on '{task}'; path categories and latent search need ProsQA "
                           f"(ProntoQA gets forced k and decoded thoughts)")
    method, layout = get_method(meta.method), meta.layout
    if not method.has_thought_slots(layout, model.tokens):
        raise CoconutError(f"checkpoint {ckpt}: method '{method.name}' has no thought slots, so forced k and latent "
                           f"search do not apply; analyse a coconut (or no_curriculum / pause_as_thought) checkpoint")
    data_ids = check_eval_data(examples, tok, task, data, ckpt, any_task, "analyze", meta=meta).data
    references = load_references(refs, examples, data, any_task)
    if overwrite:
        clear_outputs(out, ANALYSIS_OUTPUTS)
    model.to(dev).eval()
    thoughts_per_hop = max(layout.c_thought, 1)
    result = AnalysisResult(out)

    # 1-2. forced k, then the references, each prediction with its path category
    settings, cat_rows, forced = [], [], {}
    for k in latents:
        name = f"k{k}"
        ev = evaluate_setting(model, tok, examples, data_ids, method, layout, k, out / "forced_k" / name, args,
                              {"checkpoint": str(ckpt), "data": str(data), "label": f"k={k}"})
        forced[name] = asdict(ev.summary)
        setting = {"name": name, "label": f"k={k}", "kind": "forced_k", "k": k, "method": method.name,
                   "checkpoint": str(ckpt), "n": ev.summary.n, "accuracy": ev.summary.accuracy,
                   "mean_tokens": ev.summary.mean_tokens}
        cat_rows += categorise(setting, ev.records, graphs, k // thoughts_per_hop)
        settings.append(setting)
    atomic_write_text(out / "forced_k" / "forced_k.json", json.dumps(forced, indent=2) + "\n")
    for name, label, path, rmodel, rtok, rmeta, rdata in references:
        rmethod = get_method(rmeta.method)
        if rmethod.name != name:
            print(f"note: --{name.replace('_', '-')} {path} is a '{rmethod.name}' checkpoint; shown as {label}")
        k = rmeta.eval_thoughts
        ev = evaluate_setting(rmodel.to(dev).eval(), rtok, examples, rdata, rmethod, rmeta.layout, k,
                              out / "reference" / name, args, {"checkpoint": str(path), "data": str(data), "label": label})
        setting = {"name": name, "label": label, "kind": "reference", "k": k, "method": rmethod.name,
                   "checkpoint": str(path), "n": ev.summary.n, "accuracy": ev.summary.accuracy,
                   "mean_tokens": ev.summary.mean_tokens}
        # A reference writes its whole chain (or none), so its categories are read with k = 0.
        cat_rows += categorise(setting, ev.records, graphs, 0)
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
    tree = tree_example if tree_example is not None else pick_tree_example(records)
    write_search(records, summarize_search(records), out,
                 extra={"checkpoint": str(ckpt), "data": str(data), "tree_example": tree,
                        "value_definition": VALUE_DEFINITION["symbolic" if is_symbolic(examples[0]) else "words"]})

    # 4. decoded thoughts (continuous thoughts only)
    decoded = []
    k = meta.eval_thoughts or max(latents)
    if method.continuous and decode_examples > 0:
        decoded = decoded_thoughts(model, tok, data_ids[:decode_examples], [r.gold_path for r in records],
                                   method, layout, k, max_new_tokens)
    atomic_write_text(out / "thoughts.json", json.dumps({"checkpoint": str(ckpt), "examples": decoded}, indent=2) + "\n")

    # Outputs of an earlier run into this folder that this run does not remake would be stale.
    stale = [] if html else [out / "walkthrough.jsonl", out / "report.html"]
    probing = method.continuous and probe_examples > 0 and k > 0
    if not probing:
        stale += [out / "probes.jsonl", out / "probes_summary.json", *(out / "figures").glob("probe_*.png")]
    stopping = method.continuous and model.eot_head is not None and stop_examples > 0
    if not stopping:
        stale += [out / "own_stop.jsonl", out / "own_stop_summary.json", out / "figures" / "own_stop.png"]
    for p in stale:
        p.unlink(missing_ok=True)

    # 5. superposition probes (continuous thoughts only)
    if probing:
        from coconut_lm.analysis.probes import probe_examples as run_probes
        from coconut_lm.analysis.probes import summarize_probes, write_probes

        probes = run_probes(model, tok, examples[:probe_examples], k, method, layout, progress=progress)
        write_probes(probes, summarize_probes(probes), out, extra={"checkpoint": str(ckpt), "data": str(data)})

    # 5b. the model's own stop (an <eot> classifier only)
    if stopping:
        from coconut_lm.analysis.own_stop import run_own_stop

        run_own_stop(model, tok, examples, data_ids, graphs, method, layout, out, args, eot_threshold, stop_examples,
                     meta.max_thoughts, str(ckpt))

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


# ----------------------------------------------------------------------------------------- CLI


def cmd_analyze(args: argparse.Namespace) -> int:
    """`coconut-lm analyze`: run the analysis and list what it wrote."""
    result = run_analysis(args.checkpoint, args.data, args.out, latents=args.latents, cot=args.cot,
                          no_cot=args.no_cot, max_examples=args.max_examples, batch_size=args.batch_size,
                          max_new_tokens=args.max_new_tokens, search_hops=args.search_hops,
                          decode_examples=args.decode_examples, tree_example=args.tree_example,
                          device=args.device, progress=not args.no_progress, probe_examples=args.probe_examples,
                          html=args.html, html_examples=args.html_examples, compare=args.compare,
                          any_task=args.any_task, overwrite=args.overwrite, eot_threshold=args.eot_threshold,
                          stop_examples=args.stop_examples)
    for name, acc in result.accuracy.items():
        print(f"{name:>8}: accuracy {acc:.3f}")
    print(f"wrote {len(result.files)} files ({len(result.figures)} figures) under {result.out_dir}; "
          f"summary in {result.out_dir / 'analysis.md'}")
    if result.html is not None:
        print(f"interactive report: {result.html} (open it in a browser; it needs no server and no network)")
    return 0


def add_analyze_parser(sub: argparse._SubParsersAction) -> None:
    """Add the `analyze` subcommand to the `coconut-lm` parser (sets `func`)."""
    from coconut_lm.argtypes import int_list, non_negative_int, path, positive_int, probability

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
    p.add_argument("--eot-threshold", type=probability, default=0.5, metavar="P",
                   help="with an <eot> classifier: the threshold at which it ends latent mode for the model's own "
                        "stop (default 0.5)")
    p.add_argument("--stop-examples", type=non_negative_int, default=100, metavar="N",
                   help="with an <eot> classifier: examples whose node values are read after each thought to see "
                        "whether the model stops once the target is found (default 100; 0: skip the step)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier analysis in a non-empty --out (its files there are removed first)")
    p.add_argument("--any-task", action="store_true",
                   help="analyse data that looks like another task's, or another form's, than the checkpoint's "
                        "(refused otherwise, as in eval)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_analyze)
