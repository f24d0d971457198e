"""Figures of the paper's ProsQA analysis, drawn from the JSON records `coconut-lm analyze` writes.

    make_figures("runs/x/analysis")       # reads *.json(l) there, writes figures/*.png, returns the paths
    plot_path_categories(json.load(open(".../path_categories.json")), "categories.png")
    fig = parallelism_figure(summary_dict)  # the matplotlib Figure, to inspect or restyle

Plots never run a model. Each `*_figure` function takes loaded JSON (plain dicts) and returns a
Figure; each `plot_*` function saves that Figure as a PNG. They use matplotlib's object API (no
pyplot, so no global state), and the Agg renderer writes the PNG.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coconut_lm.analysis.figstyle import FONT, _figure, _save

# One colour per path category, in the paper's spirit: greens for reaching the target, warm colours
# for errors, blues for answer-only outputs.
CATEGORY_COLORS = {
    "correct_path": "#2e7d32", "longer_path": "#9ccc65", "hallucination": "#d32f2f",
    "wrong_target": "#ffa726", "correct_label": "#1e88e5", "incorrect_label": "#90a4ae",
}
TOPK_COLORS = {1: "#1b5e20", 2: "#1976d2", 3: "#f57c00"}
CORRECT_COLOR, INCORRECT_COLOR, TARGET_COLOR = "#2e7d32", "#c62828", "#ffb300"
def _settings(paths: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    refs = [s for s in paths["settings"] if s["kind"] == "reference"]
    forced = sorted((s for s in paths["settings"] if s["kind"] == "forced_k"), key=lambda s: s["k"])
    return refs, forced


def path_categories_figure(paths: dict[str, Any]):
    """Stacked bars of the six path categories: CoT / No-CoT references, then one bar per forced k."""
    refs, forced = _settings(paths)
    bars = refs + forced
    # Leave a one-bar gap between the references and the k bars.
    xs = list(range(len(refs))) + [len(refs) + (1 if refs else 0) + i for i in range(len(forced))]
    fig, axes = _figure(9.5, 5.2)
    ax = axes[0, 0]
    bottom = [0.0] * len(bars)
    for cat in paths["categories"]:
        heights = [100 * s["fractions"][cat["key"]] for s in bars]
        ax.bar(xs, heights, bottom=bottom, width=0.75, color=CATEGORY_COLORS.get(cat["key"], "#777777"),
               edgecolor="white", linewidth=0.6, label=cat["label"])
        bottom = [b + h for b, h in zip(bottom, heights)]
    for x, s in zip(xs, bars):
        ax.text(x, 101.5, f"{100 * s['accuracy']:.0f}%", ha="center", va="bottom", fontsize=FONT["legend"])
    ax.set_xticks(xs, [s["label"] for s in bars])
    ax.set_ylim(0, 110)
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("reference model, or Coconut with k continuous thoughts", fontsize=FONT["label"])
    ax.set_ylabel("share of test examples (%)", fontsize=FONT["label"])
    ax.set_title(f"ProsQA reasoning chains by category (n = {paths['n_examples']}; answer accuracy above bars)",
                 fontsize=FONT["title"])
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], title="path category", fontsize=FONT["legend"],
              title_fontsize=FONT["legend"], loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def plot_path_categories(paths: dict[str, Any], out: str | os.PathLike) -> Path:
    """Draw `path_categories_figure` and save it as a PNG."""
    return _save(path_categories_figure(paths), out)


def accuracy_figure(paths: dict[str, Any]):
    """Answer accuracy against the number of thoughts k, with the references as horizontal lines."""
    refs, forced = _settings(paths)
    fig, axes = _figure(7.5, 4.6)
    ax = axes[0, 0]
    ks = [s["k"] for s in forced]
    ax.plot(ks, [100 * s["accuracy"] for s in forced], marker="o", linewidth=2, color="#1565c0",
            label="Coconut, k thoughts")
    for s, style in zip(refs, ("--", ":", "-.")):
        ax.axhline(100 * s["accuracy"], linestyle=style, color="#424242", linewidth=1.5,
                   label=f"{s['label']} ({s['method']})")
    ax.set_xticks(ks)
    ax.set_ylim(0, 102)
    ax.set_xlabel("continuous thoughts k (then the rest of the chain in language)", fontsize=FONT["label"])
    ax.set_ylabel("answer accuracy (%)", fontsize=FONT["label"])
    ax.set_title(f"{paths.get('task_label', 'ProsQA')} accuracy with forced k (n = {paths['n_examples']})",
                 fontsize=FONT["title"])
    ax.legend(fontsize=FONT["legend"], loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def plot_accuracy(paths: dict[str, Any], out: str | os.PathLike) -> Path:
    """Draw `accuracy_figure` and save it as a PNG."""
    return _save(accuracy_figure(paths), out)


def parallelism_figure(summary: dict[str, Any]):
    """Cumulative value of the top-1/2/3 frontier nodes over the test set, one panel per thought."""
    hops = sorted({c["hops"] for c in summary["parallelism"] if c["hops"] > 0}) or \
        sorted({c["hops"] for c in summary["parallelism"]})
    fig, axes = _figure(5.2 * max(len(hops), 1), 4.6, 1, max(len(hops), 1), sharey=True)
    for ax, h in zip(axes[0], hops):
        for c in (c for c in summary["parallelism"] if c["hops"] == h):
            vals = c["sorted_values"]
            if not vals:
                continue
            pct = [100 * (i + 0.5) / len(vals) for i in range(len(vals))]
            ax.plot(pct, vals, linewidth=2, color=TOPK_COLORS.get(c["k"]), label=f"top-{c['k']} (mean {c['mean']:.2f})")
        what = {1: "children", 2: "grandchildren"}.get(h, f"nodes {h} hops away")
        ax.set_title(f"after thought {h}: {what} of the root", fontsize=FONT["label"] + 1)
        ax.set_xlabel("test examples, percentile", fontsize=FONT["label"])
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=FONT["legend"], loc="best", title="frontier nodes", title_fontsize=FONT["legend"])
    axes[0, 0].set_ylabel("cumulative value of top-k nodes", fontsize=FONT["label"])
    fig.suptitle("Parallelism of the latent search: value mass on the best frontier nodes", fontsize=FONT["title"])
    return fig


def plot_parallelism(summary: dict[str, Any], out: str | os.PathLike) -> Path:
    """Draw `parallelism_figure` and save it as a PNG."""
    return _save(parallelism_figure(summary), out)


def value_vs_height_figure(summary: dict[str, Any]):
    """Mean node value against height (shortest and longest), correct vs incorrect nodes, per thought."""
    bins = summary["value_by_height"]
    hops = sorted({b["hops"] for b in bins}) or [1]
    fig, axes = _figure(10, 3.9 * len(hops), len(hops), 2, sharey=True)
    for row, h in zip(axes, hops):
        for ax, kind in zip(row, ("shortest", "longest")):
            for correct, color, label in ((True, CORRECT_COLOR, "correct node (target reachable)"),
                                          (False, INCORRECT_COLOR, "incorrect node")):
                pts = sorted((b for b in bins if b["hops"] == h and b["height_kind"] == kind and b["correct"] == correct),
                             key=lambda b: b["height"])
                if pts:
                    ax.errorbar([b["height"] for b in pts], [b["mean_value"] for b in pts],
                                yerr=[b["sem"] for b in pts], marker="o", capsize=3, linewidth=2, color=color,
                                label=label)
            ax.set_title(f"thought {h}: {kind} distance to a leaf", fontsize=FONT["label"] + 1)
            ax.set_xlabel(f"node height ({kind} path to a leaf)", fontsize=FONT["label"])
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("mean value (probability)", fontsize=FONT["label"])
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=2, fontsize=FONT["legend"] + 1,
               frameon=False)
    fig.suptitle("Frontier-node value against height (mean ± s.e.)", fontsize=FONT["title"])
    return fig


def plot_value_vs_height(summary: dict[str, Any], out: str | os.PathLike) -> Path:
    """Draw `value_vs_height_figure` and save it as a PNG."""
    return _save(value_vs_height_figure(summary), out)


def curves_figure(runs: Sequence[dict[str, Any]]):
    """Validation accuracy against training examples seen, one line per run.

    Each run is {"label": str, "curve": [(examples, accuracy in [0, 1]), ...]}.
    """
    fig, axes = _figure(8.0, 4.8)
    ax = axes[0, 0]
    for r in runs:
        xs = [x / 1000 for x, _ in r["curve"]]
        ax.plot(xs, [100 * y for _, y in r["curve"]], marker="o", markersize=3, linewidth=1.6, label=r["label"])
    ax.set_ylim(0, 102)
    ax.set_xlabel("training examples seen (thousands)", fontsize=FONT["label"])
    ax.set_ylabel("validation accuracy (%)", fontsize=FONT["label"])
    ax.set_title("Validation accuracy during training", fontsize=FONT["title"])
    ax.legend(fontsize=FONT["legend"] - 1, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def plot_curves(runs: Sequence[dict[str, Any]], out: str | os.PathLike) -> Path:
    """Draw `curves_figure` and save it as a PNG."""
    return _save(curves_figure(runs), out)


def _spread(n: int, width: float, step: float) -> list[float]:
    """n positions `step` apart, centred on width / 2."""
    return [width / 2 + (i - (n - 1) / 2) * step for i in range(n)]


def search_tree_figure(record: dict[str, Any]):
    """One example's search tree: root, children with their values after thought 1, grandchildren after thought 2."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    frontiers = {f["hops"]: f for f in record["frontiers"]}
    levels = [h for h in (1, 2) if h in frontiers]
    widest = max([len(frontiers[h]["nodes"]) for h in levels] + [1])
    step = 2.2
    width = max(widest - 1, 1) * step
    pos: dict[tuple[int, int], tuple[float, float]] = {(0, record["root"]): (width / 2, 2.0)}
    for h in levels:
        nodes = frontiers[h]["nodes"]
        # Order each level under its parents, so edges cross as little as possible.
        def anchor(n: dict, h: int = h) -> float:
            xs = [pos[(h - 1, p)][0] for p in n["parents"] if (h - 1, p) in pos]
            return sum(xs) / len(xs) if xs else width / 2
        for n, x in zip(sorted(nodes, key=lambda n: (anchor(n), n["name"])), _spread(len(nodes), width, step)):
            pos[(h, n["node"])] = (x, 2.0 - h)
    gold = record.get("gold_path") or []
    gold_edges = set(zip(gold, gold[1:]))
    names = {(0, record["root"]): record["root_name"]}
    names.update({(h, n["node"]): n["name"] for h in levels for n in frontiers[h]["nodes"]})

    fig, axes = _figure(max(7.0, 2.0 * widest + 2.5), 5.6)
    ax = axes[0, 0]
    for h in levels:
        for n in frontiers[h]["nodes"]:
            for p in n["parents"]:
                if (h - 1, p) in pos:
                    (x0, y0), (x1, y1) = pos[(h - 1, p)], pos[(h, n["node"])]
                    on_gold = (names[(h - 1, p)], n["name"]) in gold_edges
                    ax.plot([x0, x1], [y0 - 0.12, y1 + 0.14], color=CORRECT_COLOR if on_gold else "#9e9e9e",
                            linewidth=3 if on_gold else 1.2, zorder=1)
    ax.text(*pos[(0, record["root"])], record["root_name"], ha="center", va="center", fontsize=FONT["label"],
            fontweight="bold", zorder=3, bbox=dict(boxstyle="round,pad=0.4", fc="#eeeeee", ec="#424242", lw=1.5))
    for h in levels:
        for n in frontiers[h]["nodes"]:
            x, y = pos[(h, n["node"])]
            edge = TARGET_COLOR if n["is_target"] else CORRECT_COLOR if n["correct"] else INCORRECT_COLOR
            shade = 1.0 - 0.6 * min(max(n["value"], 0.0), 1.0)  # darker blue = higher value
            ax.text(x, y, f"{n['name']}\n{n['value']:.2f}", ha="center", va="center", fontsize=FONT["tick"],
                    zorder=3, bbox=dict(boxstyle="round,pad=0.35", fc=(shade, shade + 0.1 * (1 - shade), 1.0),
                                        ec=edge, lw=3 if n["is_target"] else 2))
            ax.text(x, y - 0.3, f"h={n['height_shortest']}/{n['height_longest']}", ha="center", va="top",
                    fontsize=FONT["legend"] - 1, color="#616161")
    for h in (0, *levels):
        label = "root" if h == 0 else f"after thought {h}"
        ax.text(-1.0, 2.0 - h, label, ha="right", va="center", fontsize=FONT["label"], color="#424242")
    ax.set_xlim(-3.2, width + 1.0)
    ax.set_ylim(2.0 - max(levels, default=0) - 0.6, 2.4)
    ax.axis("off")
    ax.set_title(f"Latent search tree, example {record['index']}: root {record['root_name']}, target "
                 f"{record['target_name']} ({record['target_hops']} hops)\nnode value = P(name | thoughts, template prefix); "
                 f"h = shortest/longest distance to a leaf", fontsize=FONT["label"])
    ax.legend(handles=[Patch(fc="white", ec=CORRECT_COLOR, lw=2, label="target reachable"),
                       Patch(fc="white", ec=INCORRECT_COLOR, lw=2, label="target not reachable"),
                       Patch(fc="white", ec=TARGET_COLOR, lw=3, label="the target"),
                       Line2D([], [], color=CORRECT_COLOR, lw=3, label="edge of the gold chain")],
              fontsize=FONT["legend"], loc="lower center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
    return fig


def plot_search_tree(record: dict[str, Any], out: str | os.PathLike) -> Path:
    """Draw `search_tree_figure` and save it as a PNG."""
    return _save(search_tree_figure(record), out)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def make_figures(analysis_dir: str | os.PathLike, names: Sequence[str] | None = None) -> list[Path]:
    """Draw every figure whose records exist in `analysis_dir` into `analysis_dir/figures/`.

    Figures: accuracy_vs_k.png, path_categories.png (from path_categories.json; for ProntoQA the accuracy
    from settings.json); parallelism.png,
    value_vs_height.png, search_tree.png (from latent_search_summary.json and latent_search.jsonl);
    probe_similarity.png, probe_attention.png, probe_lens.png (name "probes", from probes_summary.json);
    own_stop.png (from own_stop_summary.json). `names` restricts the set.
    """
    root = Path(analysis_dir)
    figs = root / "figures"
    want = set(names) if names else None
    made: list[Path] = []

    def wanted(name: str) -> bool:
        return want is None or name in want

    if (root / "path_categories.json").is_file():
        paths = json.loads((root / "path_categories.json").read_text())
        if wanted("accuracy_vs_k"):
            made.append(plot_accuracy(paths, figs / "accuracy_vs_k.png"))
        if wanted("path_categories"):
            made.append(plot_path_categories(paths, figs / "path_categories.png"))
    elif (root / "settings.json").is_file() and wanted("accuracy_vs_k"):  # ProntoQA: forced k only
        made.append(plot_accuracy(json.loads((root / "settings.json").read_text()), figs / "accuracy_vs_k.png"))
    if (root / "latent_search_summary.json").is_file():
        summary = json.loads((root / "latent_search_summary.json").read_text())
        if wanted("parallelism"):
            made.append(plot_parallelism(summary, figs / "parallelism.png"))
        if wanted("value_vs_height"):
            made.append(plot_value_vs_height(summary, figs / "value_vs_height.png"))
        tree = summary.get("tree_example")
        if wanted("search_tree") and tree is not None and (root / "latent_search.jsonl").is_file():
            record = next((r for r in _read_jsonl(root / "latent_search.jsonl") if r["index"] == tree), None)
            if record is not None:
                made.append(plot_search_tree(record, figs / "search_tree.png"))
    if wanted("probes") and (root / "probes_summary.json").is_file():
        from coconut_lm.analysis.probe_plots import plot_probes

        made += plot_probes(json.loads((root / "probes_summary.json").read_text()), figs)
    if wanted("own_stop") and (root / "own_stop_summary.json").is_file():
        from coconut_lm.analysis.own_stop import FIGURE, plot_own_stop

        made.append(plot_own_stop(json.loads((root / "own_stop_summary.json").read_text()), figs / FIGURE))
    return made


def tradeoff_figure(summaries: dict[str, Any]):
    """Accuracy against mean thoughts: the classifier's threshold sweep as a line, fixed counts as points.

    `summaries` maps a setting name ("classifier@0.3", "k4", ...) to its summary (`EvalSummary` or dict).
    """
    fig, axes = _figure(6.0, 4.2)
    ax = axes[0, 0]
    rows = {name: (s if isinstance(s, dict) else s.__dict__) for name, s in summaries.items()}
    sweep = sorted(((r["mean_thoughts"], 100 * r["accuracy"], r.get("eot_threshold"))
                    for name, r in rows.items() if r.get("use_classifier")), key=lambda t: t[2])
    if sweep:
        ax.plot([t[0] for t in sweep], [t[1] for t in sweep], marker="o", label="<eot> classifier (threshold)")
        for x, y, t in sweep:
            ax.annotate(f"{t:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=FONT["legend"])
    fixed = sorted((r["mean_thoughts"], 100 * r["accuracy"], name) for name, r in rows.items()
                   if not r.get("use_classifier"))
    if fixed:
        ax.scatter([t[0] for t in fixed], [t[1] for t in fixed], marker="s", color="C1", label="fixed count", zorder=3)
        for x, y, name in fixed:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, -12), fontsize=FONT["legend"])
    ax.set_xlabel("mean thoughts per question", fontsize=FONT["label"])
    ax.set_ylabel("accuracy (%)", fontsize=FONT["label"])
    ax.legend(fontsize=FONT["legend"])
    return fig


def plot_tradeoff(summaries: dict[str, Any], out: str | os.PathLike) -> Path:
    """Draw `tradeoff_figure` and save it as a PNG."""
    return _save(tradeoff_figure(summaries), out)
