"""Dataset statistics: exact numbers on tiny inputs, and no made-up graph numbers on other tasks."""

from __future__ import annotations

import pytest

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example, load_examples
from coconut_lm.tasks.stats import Summary, dataset_stats, format_stats


def _graph_item(edges: list[list[int]], names: list[str], root: int, target: int, steps: int) -> Example:
    extra = {"idx_to_symbol": names, "edges": edges, "root": root, "target": target}
    return Example("Is Tom a c or d?", ["Tom is a a."] * steps, "Tom is a c.", extra)


def test_plain_items() -> None:
    items = [Example("one two three", ["a b", "c"], "7"), Example("one", [], "8 9")]
    stats = dataset_stats(items)
    assert stats.n_items == 2 and stats.graph is None
    assert stats.steps_mix == {0: 0.5, 2: 0.5}
    assert stats.question_words == Summary(1, 2.0, 3)
    assert stats.steps_words == Summary(0, 1.5, 3)
    assert stats.answer_words == Summary(1, 1.5, 2)


def test_graph_items_count_paths_and_names() -> None:
    # Tom(0) -> a(1) -> c(3), Tom -> b(2) -> c: two shortest paths of 2 hops.
    diamond = _graph_item([[0, 1], [0, 2], [1, 3], [2, 3]], ["Tom", "a", "b", "c"], 0, 3, 2)
    # Bob(0) -> x(1) -> y(2), Eva(3) -> y: one path of 2 hops.
    chain = _graph_item([[0, 1], [1, 2], [3, 2]], ["Bob", "x", "y", "Eva"], 0, 2, 2)
    # The target is unreachable: counted as a graph, not as a path.
    cut = _graph_item([[1, 2]], ["Sam", "p", "q"], 0, 2, 3)
    g = dataset_stats([diamond, chain, cut]).graph
    assert g is not None and g.n_items == 3
    assert g.nodes == Summary(3, 11 / 3, 4) and g.edges == Summary(1, 8 / 3, 4)
    assert g.entity_names == {"Tom", "Bob", "Eva", "Sam"}
    assert g.concept_names == {"a", "b", "c", "x", "y", "p", "q"}
    assert g.entities_per_item == pytest.approx(4 / 3)
    assert g.path_items == 2 and g.hops == Summary(2, 2.0, 2) and g.shortest_paths == 1.5


def test_prosqa_valid_numbers(prosqa_valid) -> None:
    """The official file's statistics as SOURCES.md states them."""
    stats = dataset_stats(load_examples(prosqa_valid))
    g = stats.graph
    assert stats.n_items == 300 and g is not None and g.hops is not None
    assert {k: round(v, 3) for k, v in stats.steps_mix.items()} == {3: 0.413, 4: 0.443, 5: 0.12, 6: 0.023}
    assert (g.nodes.min, round(g.nodes.mean, 2), g.nodes.max) == (17, 22.82, 28)
    assert round(g.edges.mean, 2) == 36.26
    assert round(g.hops.mean, 2) == 3.75 and round(g.shortest_paths, 2) == 1.61
    assert (len(g.entity_names), len(g.concept_names)) == (17, 38)


def test_prontoqa_graph_keys_give_no_path_numbers(prontoqa_valid) -> None:
    """ProntoQA's edges leave out the entity's own facts, so no root->target path exists to measure."""
    stats = dataset_stats(load_examples(prontoqa_valid))
    assert stats.steps_mix == {6: 1.0}
    assert stats.graph is not None and stats.graph.n_items == 200
    assert stats.graph.path_items == 0 and stats.graph.hops is None and stats.graph.shortest_paths is None
    assert "shortest path" not in format_stats(stats)


def test_malformed_graph_keys_are_ignored() -> None:
    item = Example("q", ["s"], "a", {"idx_to_symbol": ["A"], "edges": [[0, 5]]})
    assert dataset_stats([item]).graph is None


def test_format_stats_is_an_aligned_table(prosqa_valid) -> None:
    text = format_stats(dataset_stats(load_examples(prosqa_valid)), title="prosqa_valid")
    lines = text.splitlines()
    assert lines[0] == "prosqa_valid" and set(lines[1]) == {"-"}
    rows = lines[2:]
    starts = {len(r) - len(r.split("  ", 1)[1].lstrip()) for r in rows}  # column where values begin
    assert len(starts) == 1
    assert any(r.startswith("steps mix") and "3: 41.3%" in r for r in rows)
    assert any(r.startswith("shortest paths per item") and r.endswith("1.61") for r in rows)


def test_no_examples_is_an_error() -> None:
    with pytest.raises(CoconutError, match="no examples"):
        dataset_stats([])
