"""Figures of the superposition probes (`analysis.probes`), drawn from probes_summary.json alone.

    plot_probes(json.load(open("analysis/probes_summary.json")), "analysis/figures")   # -> [paths]

probe_similarity.png: thought · node embedding (cosine and inner product) per node category after
each thought; probe_attention.png: last-layer attention per edge of each edge category;
probe_lens.png: the logit lens, the share of examples whose top-1 token at each layer names a node
on the current frontier (optimal or not) or any node.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coconut_lm.analysis.figstyle import FONT, _figure, _save

NODE_COLORS = {"target": "#ffb300", "optimal": "#2e7d32", "frontier": "#1e88e5", "reachable": "#8e24aa",
               "unreachable": "#9e9e9e"}
EDGE_COLORS = {"optimal": "#2e7d32", "frontier": "#1e88e5", "reachable": "#8e24aa", "other": "#9e9e9e"}


def similarity_figure(summary: dict[str, Any]):
    """Mean cosine and inner product of thought t with the node embeddings of each category."""
    fig, axes = _figure(11.0, 4.4, 1, 2)
    for ax, key, label in ((axes[0, 0], "mean_cos", "cosine similarity"), (axes[0, 1], "mean_dot", "inner product")):
        for cat in summary["node_categories"]:
            pts = [(r["thought"], r[key]) for r in summary["similarity"] if r["category"] == cat and r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", linewidth=2, color=NODE_COLORS.get(cat), label=cat)
        ax.set_xlabel("thought t", fontsize=FONT["label"])
        ax.set_ylabel(f"thought · node embedding ({label})", fontsize=FONT["label"])
        ax.set_xticks(range(1, summary["n_thoughts"] + 1))
        ax.grid(alpha=0.3)
    axes[0, 1].legend(title="node category", fontsize=FONT["legend"], title_fontsize=FONT["legend"],
                      loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(f"Superposition probe: what each thought is close to (n = {summary['n_examples']})",
                 fontsize=FONT["title"])
    return fig


def attention_figure(summary: dict[str, Any]):
    """Grouped bars: last-layer attention mass per edge of each edge category, per thought."""
    fig, axes = _figure(8.5, 4.4)
    ax = axes[0, 0]
    cats = summary["edge_categories"]
    width = 0.8 / max(len(cats), 1)
    for j, cat in enumerate(cats):
        pts = [(r["thought"], r["mean_per_edge"]) for r in summary["attention"]
               if r["category"] == cat and r["mean_per_edge"] is not None]
        if pts:
            ax.bar([t - 0.4 + (j + 0.5) * width for t, _ in pts], [v for _, v in pts], width=width,
                   color=EDGE_COLORS.get(cat), label=cat)
    ax.set_xticks(range(1, summary["n_thoughts"] + 1))
    ax.set_xlabel("thought t (attention from the position that writes it)", fontsize=FONT["label"])
    ax.set_ylabel("attention per edge (mean over heads)", fontsize=FONT["label"])
    ax.set_title("Last-layer attention to the question's facts, by edge category", fontsize=FONT["title"])
    ax.legend(title="edge", fontsize=FONT["legend"], title_fontsize=FONT["legend"])
    ax.grid(alpha=0.3, axis="y")
    return fig


def lens_figure(summary: dict[str, Any]):
    """Share of examples whose logit-lens top-1 token names a frontier node (solid) or any node (dashed), per layer."""
    fig, axes = _figure(8.5, 4.4)
    ax = axes[0, 0]
    thoughts = sorted({r["thought"] for r in summary["lens"]})
    cmap = ["#1b5e20", "#1976d2", "#f57c00", "#6a1b9a", "#c62828", "#00838f", "#5d4037", "#455a64"]
    for i, t in enumerate(thoughts):
        rows = sorted((r for r in summary["lens"] if r["thought"] == t), key=lambda r: r["layer"])
        layers = [r["layer"] for r in rows]
        front = [100 * ((r["optimal"] or 0) + (r["frontier"] or 0)) for r in rows]
        ax.plot(layers, front, marker="o", linewidth=2, color=cmap[i % len(cmap)], label=f"thought {t}")
        ax.plot(layers, [100 * (r["any_node"] or 0) for r in rows], linestyle="--", color=cmap[i % len(cmap)], alpha=0.6)
    ax.set_xlabel("layer (0: inputs)", fontsize=FONT["label"])
    ax.set_ylabel("top-1 token names a node (%)", fontsize=FONT["label"])
    ax.set_ylim(-2, 102)
    ax.set_title("Logit lens at the thought positions: solid frontier node, dashed any node", fontsize=FONT["title"] - 1)
    ax.legend(fontsize=FONT["legend"])
    ax.grid(alpha=0.3)
    return fig


def plot_probes(summary: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Save the probe figures that the summary has data for into `out_dir`."""
    out = Path(out_dir)
    made = [_save(similarity_figure(summary), out / "probe_similarity.png")]
    if any(r["n"] for r in summary["attention"]):
        made.append(_save(attention_figure(summary), out / "probe_attention.png"))
    if summary["lens"]:
        made.append(_save(lens_figure(summary), out / "probe_lens.png"))
    return made
