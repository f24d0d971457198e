"""`coconut-lm analyze --html`: one self-contained HTML page to walk through the latent search.

    write_html("runs/x/analysis")                                  # -> runs/x/analysis/report.html
    write_html("runs/x/analysis", compare=["CoT 2=runs/cot2/eval/predictions.jsonl"])

The page is a pure function of the analysis folder's records, like the figures: walkthrough.jsonl
(each example's graph and every node's value after t = 0..K thoughts), probes.jsonl and
probes_summary.json, path_categories.jsonl, the predictions of every setting, and figures/*.png.
Data, script, style and figures are inline (JSON in a <script type="application/json">, PNGs as
base64), so the file opens from disk with no server and no network. The script and style live in
analysis/assets/ and are copied in.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example, atomic_write_text

HTML_NAME = "report.html"
WALKTHROUGH = "walkthrough.jsonl"


# ----------------------------------------------------------------------------------- records


def graph_layout(graph) -> list[list[float]]:
    """(x, layer) per node: nodes the root reaches sit at their distance from it, the others one layer
    below their lowest parent; within a layer, nodes are ordered under their parents, x in (0, 1)."""
    from coconut_lm.tasks.prosqa_graph import _topological_order, shortest_distances

    dist = shortest_distances(graph, graph.root)
    layer: dict[int, int] = {}
    for n in _topological_order(graph):
        layer[n] = dist[n] if n in dist else max((layer[p] + 1 for p in graph.parents[n]), default=0)
    x: dict[int, float] = {}
    for depth in sorted(set(layer.values())):
        nodes = [n for n in layer if layer[n] == depth]

        def anchor(n: int) -> float:
            xs = [x[p] for p in graph.parents[n] if p in x]
            return sum(xs) / len(xs) if xs else 0.5

        nodes.sort(key=lambda n: (anchor(n), n not in dist, graph.names[n]))
        for i, n in enumerate(nodes):
            x[n] = (i + 1) / (len(nodes) + 1)
    return [[round(x[n], 4), layer[n]] for n in range(len(graph.names))]


def walkthrough_record(example: Example, index: int, values: dict[str, Any]) -> dict[str, Any]:
    """One example's graph, question and node values per thought (from `latent_search.node_values`)."""
    from coconut_lm.analysis.latent_search import _gold_path
    from coconut_lm.tasks.prosqa_graph import graph_from_example, shortest_distances

    g = graph_from_example(example, index=index)
    return {"index": index, "question_id": str(example.extra.get("id", index)), "question": example.question,
            "names": list(g.names), "edges": [list(e) for e in g.edges], "root": g.root, "target": g.target,
            "neg_target": g.neg_target, "symbolic": g.symbolic, "gold_path": _gold_path(example),
            "target_hops": shortest_distances(g, g.root).get(g.target, -1), "layout": graph_layout(g),
            "n_thoughts": values["n_thoughts"], "prefix_prob": [float(f"{p:.5g}") for p in values["prefix_prob"]],
            "values": [[float(f"{v:.5g}") for v in row] for row in values["values"]]}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_predictions(spec: str, option: str = "--compare") -> tuple[str, Path, dict[int, dict[str, Any]]]:
    """`[LABEL=]PATH` of a predictions.jsonl, an eval folder holding one, or a run folder with eval/predictions.jsonl.

    Returns the label (default: the folder's name), the file and its records by example index; errors name
    `option`, the command-line option the spec came from.
    """
    label, sep, path = spec.partition("=")
    if not sep:
        label, path = "", spec
    p = Path(path)
    for candidate in (p, p / "predictions.jsonl", p / "eval" / "predictions.jsonl"):
        if candidate.is_file():
            break
    else:
        raise CoconutError(f"{option} {spec}: no predictions.jsonl there (give the file, its eval folder or a run folder)")
    if not label:
        label = (p if p.is_dir() else p.parent).name
        label = p.name if label == "eval" and p.is_dir() else label
    try:
        rows = _read_jsonl(candidate)
    except json.JSONDecodeError as e:
        raise CoconutError(f"{option} {candidate}: not JSON lines ({e})") from None
    if not all(isinstance(r, dict) and "index" in r and "text" in r for r in rows):
        raise CoconutError(f"{option} {candidate}: every line needs 'index' and 'text' (coconut-lm eval's predictions.jsonl)")
    return label, candidate, {int(r["index"]): r for r in rows}


def _figures(out: Path) -> dict[str, str]:
    figs = out / "figures"
    if not figs.is_dir():
        return {}
    return {p.stem: base64.b64encode(p.read_bytes()).decode("ascii") for p in sorted(figs.glob("*.png"))}


def _main_setting(settings: list[dict[str, Any]], n_thoughts: int) -> dict[str, Any] | None:
    """The forced-k setting with the walkthrough's thought count, else the largest k."""
    forced = [s for s in settings if s["kind"] == "forced_k"]
    return next((s for s in forced if s["k"] == n_thoughts), max(forced, key=lambda s: s["k"], default=None))


def html_data(analysis_dir: str | os.PathLike, compare: Sequence[str] = ()) -> dict[str, Any]:
    """Everything the page embeds, read from the analysis folder's records (and `compare` predictions)."""
    out = Path(analysis_dir)
    if not (out / WALKTHROUGH).is_file():
        raise CoconutError(f"{out}: no {WALKTHROUGH} (run coconut-lm analyze with --html)")
    walk = _read_jsonl(out / WALKTHROUGH)
    paths = json.loads((out / "path_categories.json").read_text())
    cat_rows = _read_jsonl(out / "path_categories.jsonl")
    probes = {r["index"]: r for r in _read_jsonl(out / "probes.jsonl")} if (out / "probes.jsonl").is_file() else {}
    n_thoughts = max((w["n_thoughts"][-1] for w in walk), default=0)
    main = _main_setting(paths["settings"], n_thoughts)
    texts: list[tuple[str, str, dict[int, dict[str, Any]]]] = []  # (key, label, predictions by index)
    for s in ([main] if main else []) + [s for s in paths["settings"] if s["kind"] == "reference"]:
        sub = "forced_k" if s["kind"] == "forced_k" else "reference"
        preds = out / sub / s["name"] / "predictions.jsonl"
        if preds.is_file():
            label = f"Coconut, k={s['k']}" if s["kind"] == "forced_k" else s["label"]
            texts.append((s["name"], label, {r["index"]: r for r in _read_jsonl(preds)}))
    for i, spec in enumerate(compare):
        label, _, rows = read_predictions(spec)
        texts.append((f"compare{i}", label, rows))
    cats = {(r["setting"], r["index"]): r["category"] for r in cat_rows}
    examples = []
    for w in walk:
        i = w["index"]
        writes = []
        for key, label, rows in texts:
            r = rows.get(i)
            if r is None:
                continue
            qid = r.get("question_id")
            if qid is not None and str(qid) != w["question_id"]:
                raise CoconutError(f"{label}: prediction {i} is for question '{qid}', not '{w['question_id']}' "
                                   f"(predictions of another data file?)")
            writes.append({"label": label, "text": r["text"], "correct": bool(r.get("correct")),
                           "category": cats.get((key, i))})
        ex = {**w, "writes": writes, "probes": probes.get(i)}
        if main is not None:
            ex["category"] = cats.get((main["name"], i))
            ex["correct"] = next((x["correct"] for x in writes if x["label"].startswith("Coconut")), None)
        examples.append(ex)
    summary = json.loads((out / "probes_summary.json").read_text()) if (out / "probes_summary.json").is_file() else None
    return {"checkpoint": paths["checkpoint"], "data": paths["data"], "n_examples": paths["n_examples"],
            "main_setting": main["label"] if main else None, "categories": paths["categories"],
            "settings": [{k: s[k] for k in ("name", "label", "kind", "k", "method", "n", "accuracy")} for s in paths["settings"]],
            "examples": examples, "probes_summary": summary, "figures": _figures(out)}


# -------------------------------------------------------------------------------------- page


def _asset(name: str) -> str:
    return resources.files("coconut_lm.analysis").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(obj: Any) -> str:
    """JSON safe inside <script>: no '</' (which would end the element) and no HTML comment openers."""
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")


def render_html(data: dict[str, Any]) -> str:
    """The page: inline style, the data as JSON, inline script."""
    title = f"Coconut latent search: {Path(str(data['checkpoint'])).name}"
    esc = title.replace("&", "&amp;").replace("<", "&lt;")
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{esc}</title>\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<style>\n{_asset('walkthrough.css')}</style>\n"
            f"</head>\n<body>\n{_asset('walkthrough_body.html')}"
            f"<script id=\"report-data\" type=\"application/json\">{_script_json(data)}</script>\n"
            f"<script>\n{_asset('walkthrough.js')}</script>\n</body>\n</html>\n")


def write_html(analysis_dir: str | os.PathLike, compare: Sequence[str] = (), path: str | os.PathLike | None = None) -> Path:
    """Write the page for the analysis folder (default `<analysis_dir>/report.html`); return its path."""
    out = Path(path) if path is not None else Path(analysis_dir) / HTML_NAME
    atomic_write_text(out, render_html(html_data(analysis_dir, compare)))
    return out
