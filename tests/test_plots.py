"""Figures drawn from hand-made records (paper-like numbers): what is drawn, and that the PNGs are real."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest

from coconut_lm.analysis.plots import (
    CATEGORY_COLORS,
    make_figures,
    parallelism_figure,
    path_categories_figure,
    search_tree_figure,
    value_vs_height_figure,
)
from coconut_lm.analysis.search_records import Frontier, NodeValue, SearchRecord, summarize_search

CATS = ["correct_path", "longer_path", "hallucination", "wrong_target", "correct_label", "incorrect_label"]


def _setting(name: str, label: str, kind: str, k: int, fractions: list[float], acc: float) -> dict:
    return {"name": name, "label": label, "kind": kind, "k": k, "method": "coconut", "n": 100, "accuracy": acc,
            "mean_tokens": 10.0, "counts": {c: round(100 * f) for c, f in zip(CATS, fractions)},
            "fractions": dict(zip(CATS, fractions))}


def paths_record() -> dict:
    settings = [_setting(f"k{k}", f"k={k}", "forced_k", k, [0.6 - 0.05 * k, 0.1, 0.2 - 0.03 * k, 0.05, 0.05 + 0.08 * k, 0.0],
                         0.8 + 0.02 * k) for k in range(4)]
    settings += [_setting("cot", "CoT", "reference", 0, [0.5, 0.1, 0.3, 0.1, 0.0, 0.0], 0.77),
                 _setting("no_cot", "No-CoT", "reference", 0, [0.0, 0.0, 0.0, 0.0, 0.77, 0.23], 0.77)]
    return {"checkpoint": "ckpt", "data": "data.json", "n_examples": 100,
            "categories": [{"key": c, "label": c.replace("_", " ").title()} for c in CATS], "settings": settings}


def _node(node: int, name: str, value: float, correct: bool, hs: int, hl: int, parents: list[int],
          target: bool = False) -> NodeValue:
    return NodeValue(node, name, value, math.log(value), correct, target, hs, hl, parents, 1)


def tree_record(index: int = 0) -> SearchRecord:
    """The paper's example: lempus 0.33, grimpus 0.32, zhorpus 0.16, sterpus 0.01; then rorpus 0.87."""
    children = [_node(2, "lempus", 0.33, True, 2, 3, [0]), _node(3, "grimpus", 0.32, True, 2, 2, [0]),
                _node(4, "zhorpus", 0.16, False, 1, 2, [0]), _node(5, "sterpus", 0.01, False, 0, 0, [0])]
    grand = [_node(6, "rorpus", 0.87, True, 1, 1, [2, 3]), _node(7, "scrompus", 0.05, False, 0, 0, [2]),
             _node(8, "gwompus", 0.02, False, 1, 1, [4]), _node(9, "boompus", 0.03, False, 0, 0, [4])]
    return SearchRecord(index, str(index), 0, "Alex", 10, "yumpus", 3, ["Alex", "lempus", "rorpus", "yumpus"],
                        [Frontier(1, 1, "Every", 0.99, children), Frontier(2, 2, "Every", 0.98, grand)])


def write_records(folder) -> None:
    records = [tree_record(i) for i in range(5)]
    summary = {**asdict(summarize_search(records)), "tree_example": 2}
    (folder / "path_categories.json").write_text(json.dumps(paths_record()))
    (folder / "latent_search_summary.json").write_text(json.dumps(summary))
    (folder / "latent_search.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))


def test_path_category_bars_stack_to_100_with_references_first():
    fig = path_categories_figure(paths_record())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CoT", "No-CoT", "k=0", "k=1", "k=2", "k=3"]
    tops: dict[float, float] = {}
    for bar in ax.patches:
        x = round(bar.get_x() + bar.get_width() / 2, 6)
        tops[x] = max(tops.get(x, 0.0), bar.get_y() + bar.get_height())
    assert sorted(tops) == [0, 1, 3, 4, 5, 6]  # a one-bar gap after the references
    assert all(t == pytest.approx(100) for t in tops.values())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(labels) == {c.replace("_", " ").title() for c in CATS}
    assert ax.get_ylabel() and ax.get_xlabel() and ax.get_title()
    assert len(CATEGORY_COLORS) == 6


def test_parallelism_curves_plot_the_sorted_top_k_values():
    records = [tree_record()]
    fig = parallelism_figure(asdict(summarize_search(records)))
    ax1, ax2 = fig.axes
    assert [line.get_ydata()[0] for line in ax1.get_lines()] == pytest.approx([0.33, 0.65, 0.81])
    assert [line.get_ydata()[0] for line in ax2.get_lines()] == pytest.approx([0.87, 0.92, 0.95])
    assert "thought 1" in ax1.get_title() and "thought 2" in ax2.get_title()


def test_value_vs_height_has_a_panel_per_thought_and_height_kind():
    fig = value_vs_height_figure(asdict(summarize_search([tree_record()])))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["thought 1: shortest distance to a leaf", "thought 1: longest distance to a leaf",
                      "thought 2: shortest distance to a leaf", "thought 2: longest distance to a leaf"]
    assert all(ax.get_xlabel() for ax in fig.axes)


def test_search_tree_shows_every_node_with_its_value():
    fig = search_tree_figure(asdict(tree_record()))
    texts = {t.get_text() for t in fig.axes[0].texts}
    for name, value in (("lempus", 0.33), ("grimpus", 0.32), ("zhorpus", 0.16), ("rorpus", 0.87)):
        assert f"{name}\n{value:.2f}" in texts
    assert "Alex" in texts and "after thought 2" in texts


def test_make_figures_writes_readable_pngs(tmp_path):
    from matplotlib.image import imread

    write_records(tmp_path)
    made = make_figures(tmp_path)
    names = sorted(p.name for p in made)
    assert names == ["accuracy_vs_k.png", "parallelism.png", "path_categories.png", "search_tree.png",
                     "value_vs_height.png"]
    for p in made:
        img = imread(p)
        assert img.shape[0] >= 400 and img.shape[1] >= 700  # readable at DPI 130
        assert img[..., :3].std() > 0.05  # not blank


def test_make_figures_skips_missing_records(tmp_path):
    (tmp_path / "path_categories.json").write_text(json.dumps(paths_record()))
    assert sorted(p.name for p in make_figures(tmp_path)) == ["accuracy_vs_k.png", "path_categories.png"]
    assert make_figures(tmp_path / "nothing") == []


def test_tradeoff_figure_draws_the_sweep_in_threshold_order_and_the_fixed_counts(tmp_path):
    from coconut_lm.analysis.plots import plot_tradeoff, tradeoff_figure

    s = {"classifier@0.7": {"use_classifier": True, "eot_threshold": 0.7, "mean_thoughts": 4.0, "accuracy": 0.9},
         "classifier@0.3": {"use_classifier": True, "eot_threshold": 0.3, "mean_thoughts": 2.0, "accuracy": 0.8},
         "k4": {"use_classifier": False, "eot_threshold": None, "mean_thoughts": 4.0, "accuracy": 0.92}}
    ax = tradeoff_figure(s).axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [2.0, 4.0] and list(line.get_ydata()) == [80.0, 90.0]
    assert [list(p) for p in ax.collections[0].get_offsets()] == [[4.0, 92.0]]
    assert plot_tradeoff(s, tmp_path / "t.png").stat().st_size > 1000
