"""`analysis.md`: the numbers behind every figure of an analysis, written from its records alone.

    write_markdown("runs/prosqa_coconut/analysis")   # reads path_categories.json, latent_search_summary.json, ...

A ProsQA analysis gets forced k with path categories, the latent search's frontier values, value
against height, the search tree of one example, the decoded thoughts and the probes; a ProntoQA
analysis (no `path_categories.json`) gets forced k with the chain match and the decoded thoughts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coconut_lm.analysis.search_records import VALUE_DEFINITION


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


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
    md += _own_stop_markdown(out)
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


def _own_stop_markdown(out: Path) -> list[str]:
    """The model's own stop (from own_stop_summary.json, `analysis.own_stop`), or nothing when it did not run."""
    from coconut_lm.analysis.own_stop import FIGURE, FOLDER, RECORDS, SUMMARY

    if not (out / SUMMARY).is_file():
        return []
    s = json.loads((out / SUMMARY).read_text())
    rows = [[h, r["n"], _num(r["mean_thoughts"], 2), _pct(r["accuracy"])] for h, r in s["by_hops"].items()]
    offs = ", ".join(f"{o}: {c}" for o, c in s["offsets"].items()) or "none"
    return ["## The model's own stop", "",
            f"The `<eot>` classifier ends latent mode (threshold {s['threshold']:g}; `{FOLDER}/`): accuracy "
            f"{_pct(s['accuracy'])}% with {s['mean_thoughts']:.2f} thoughts on average over {s['n']} examples "
            f"(`{RECORDS}`). Spearman of thoughts used against hop count: {_num(s['spearman_thoughts_hops'], 2)}.", "",
            _table(["hops", "n", "mean thoughts", "accuracy %"], rows), "",
            f"The target is *found* after t thoughts when it has the highest value of every node; {s['n_found']} of "
            f"{s['n']} examples find it within the thoughts read. Thoughts used − found thought (examples): {offs}; "
            f"Spearman of thoughts used against the found thought: {_num(s['spearman_thoughts_found'], 2)}. "
            "In the symbolic form the value after t thoughts is the next node's, so a model that stops once the "
            "target is found stops c thoughts after it (offset c).", "", f"![own stop](figures/{FIGURE})", ""]
