"""ProsQA: the generator's format and statistics against the official valid file, and the graph helpers."""

from __future__ import annotations

import pytest

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example, ExampleFormatError, example_from_dict, load_examples
from coconut_lm.tasks.prosqa import CONCEPT_NAMES, ENTITY_NAMES, ProsQAConfig, generate_prosqa
from coconut_lm.tasks.prosqa_graph import (
    NodeHeight,
    ProsQAFormatError,
    ProsQAGraph,
    all_shortest_paths,
    ancestors,
    descendants,
    frontier,
    graph_from_example,
    node_heights,
    parse_question,
    reachable,
    sentence,
    shortest_distances,
)
from coconut_lm.tasks.stats import dataset_stats


@pytest.fixture(scope="module")
def generated() -> list[Example]:
    return generate_prosqa(2000, seed=0, workers=1)


def _name_edges(graph: ProsQAGraph) -> list[tuple[str, str]]:
    return sorted((graph.names[a], graph.names[b]) for a, b in graph.edges)


def check_prosqa_item(ex: Example) -> None:
    """Every property the official data has (SOURCES.md), checked on one item."""
    g = graph_from_example(ex)
    assert g.is_entity(0) and g.is_entity(1) and g.root in (0, 1)
    # One sentence per edge, with the entity template exactly for parentless nodes.
    parsed = parse_question(ex.question)
    assert _name_edges(parsed) == _name_edges(g) and len(set(g.edges)) == len(g.edges)
    expected = sorted(sentence(g, a, b, g.is_entity(a)) for a, b in g.edges)
    assert sorted(ex.question.rsplit(" Is ", 1)[0].replace(". ", ".\n").splitlines()) == expected
    assert parsed.names[parsed.root] == g.names[g.root]
    assert {parsed.names[o] for o in parsed.options} == {g.names[g.target], g.names[g.neg_target]}
    assert ex.answer == f"{g.names[g.root]} is a {g.names[g.target]}."
    # Target and distractor are leaves, each reachable from exactly one of the start nodes.
    other = 1 - g.root
    assert not g.children[g.target] and not g.children[g.neg_target]
    assert reachable(g, g.root, g.target) and not reachable(g, other, g.target)
    assert reachable(g, other, g.neg_target) and not reachable(g, g.root, g.neg_target)
    # The steps are one shortest path, written with the same templates.
    paths = all_shortest_paths(g, g.root, g.target)
    walked = tuple([g.root] + [g.node_of[s.split()[-1][:-1]] for s in ex.steps])
    assert walked in paths
    assert ex.steps == [sentence(g, a, b, g.is_entity(a)) for a, b in zip(walked, walked[1:])]
    assert all(g.is_entity(v) == (g.names[v] in ENTITY_NAMES) for v in range(len(g)))
    assert all(g.is_entity(v) or g.names[v] in CONCEPT_NAMES for v in range(len(g)))


def test_official_items_have_the_format_we_generate(prosqa_valid) -> None:
    for ex in load_examples(prosqa_valid):
        check_prosqa_item(ex)


def test_generated_items_have_the_official_format(generated) -> None:
    for ex in generated:
        check_prosqa_item(ex)


def test_parse_question_rebuilds_every_official_graph(prosqa_valid) -> None:
    for i, ex in enumerate(load_examples(prosqa_valid)):
        g, parsed = graph_from_example(ex, i), parse_question(ex.question)
        assert _name_edges(parsed) == _name_edges(g), f"item {i}"
        assert parsed.target is None and parsed.options is not None
        assert [parsed.names[o] for o in parsed.options] == [g.names[o] for o in g.options]


def test_embedded_names_are_the_official_vocabulary(prosqa_valid) -> None:
    graphs = [graph_from_example(ex) for ex in load_examples(prosqa_valid)]
    assert set(ENTITY_NAMES) == {g.names[v] for g in graphs for v in range(len(g)) if g.is_entity(v)}
    assert set(CONCEPT_NAMES) == {g.names[v] for g in graphs for v in range(len(g)) if not g.is_entity(v)}
    assert (len(ENTITY_NAMES), len(CONCEPT_NAMES)) == (17, 38)


def test_generated_statistics_match_the_official_valid_file(prosqa_valid, generated) -> None:
    """Tolerances for 2000 generated items against the 300 official ones.

    A step-count fraction near 0.4 has a standard error of 0.028 over 300 items and 0.011 over 2000,
    so their difference has 0.031: we allow 0.06, about two standard errors. Node counts have a
    standard deviation of ~2 (error of the official mean 0.12): 1.0 leaves room for a real but harmless
    drift. Edges (sd ~7, error 0.4): 3. The number of shortest paths (sd ~0.9, error 0.05): 0.3.
    Hops are the step counts' mean: 0.2. The name vocabularies must be identical.
    """
    ref, gen = dataset_stats(load_examples(prosqa_valid)), dataset_stats(generated)
    assert ref.graph is not None and gen.graph is not None
    assert set(gen.steps_mix) == set(ref.steps_mix) == {3, 4, 5, 6}
    for k in ref.steps_mix:
        assert gen.steps_mix[k] == pytest.approx(ref.steps_mix[k], abs=0.06), k
    assert gen.graph.nodes.mean == pytest.approx(ref.graph.nodes.mean, abs=1.0)
    # Official: 14-28 nodes over 800 items. Ours has the same cap and a thin tail below 14.
    assert gen.graph.nodes.max == 28
    assert sum(len(e.extra["idx_to_symbol"]) < 14 for e in generated) / len(generated) < 0.005
    assert gen.graph.edges.mean == pytest.approx(ref.graph.edges.mean, abs=3.0)
    assert gen.graph.hops is not None and ref.graph.hops is not None
    assert gen.graph.hops.mean == pytest.approx(ref.graph.hops.mean, abs=0.2)
    assert gen.graph.shortest_paths == pytest.approx(ref.graph.shortest_paths, abs=0.3)
    assert gen.graph.entity_names == ref.graph.entity_names
    assert gen.graph.concept_names == ref.graph.concept_names


# The official statistics as shared/data/SOURCES.md records them (800 valid+test items), so the
# comparison runs even where the data file is not present.
RECORDED = {"steps_mix": {3: 0.41, 4: 0.43, 5: 0.14, 6: 0.02}, "nodes_mean": 22.8, "edges_mean": 36.0,
            "hops_mean": 3.8, "shortest_paths": 1.6, "entities": 17, "concepts": 38}


def test_generated_statistics_match_the_recorded_official_ones(generated) -> None:
    """Same tolerances as against the file (see the test above); the recorded numbers are rounded."""
    gen = dataset_stats(generated)
    assert gen.graph is not None and gen.graph.hops is not None
    for k, frac in RECORDED["steps_mix"].items():
        assert gen.steps_mix[k] == pytest.approx(frac, abs=0.06), k
    assert gen.graph.nodes.mean == pytest.approx(RECORDED["nodes_mean"], abs=1.0)
    assert gen.graph.edges.mean == pytest.approx(RECORDED["edges_mean"], abs=3.0)
    assert gen.graph.hops.mean == pytest.approx(RECORDED["hops_mean"], abs=0.2)
    assert gen.graph.shortest_paths == pytest.approx(RECORDED["shortest_paths"], abs=0.3)
    assert (len(gen.graph.entity_names), len(gen.graph.concept_names)) == (RECORDED["entities"], RECORDED["concepts"])


def test_output_depends_on_the_seed_only(generated) -> None:
    one = [e.to_dict() for e in generate_prosqa(1100, seed=0, workers=1)]  # 3 chunks
    assert one == [e.to_dict() for e in generate_prosqa(1100, seed=0, workers=2)]
    assert one == [e.to_dict() for e in generated[:1100]]  # a prefix of a longer run
    assert one[:50] != [e.to_dict() for e in generate_prosqa(50, seed=1, workers=1)]


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(CoconutError, match="number of examples"):
        generate_prosqa(0)
    with pytest.raises(CoconutError, match="workers"):
        generate_prosqa(5, workers=0)
    with pytest.raises(CoconutError, match="hop_keep"):
        generate_prosqa(5, config=ProsQAConfig(max_hops=7))
    with pytest.raises(CoconutError, match="parents_mean"):
        generate_prosqa(5, config=ProsQAConfig(parents_mean=0))
    with pytest.raises(CoconutError, match="no valid question"):  # 8 nodes never make a 6-hop question
        generate_prosqa(5, workers=1, config=ProsQAConfig(n_nodes=8, min_hops=6, hop_keep=(1.0,)))


def test_config_changes_the_data() -> None:
    long = generate_prosqa(30, seed=0, workers=1, config=ProsQAConfig(min_hops=5, hop_keep=(1.0, 1.0)))
    assert {len(e.steps) for e in long} <= {5, 6}


# ----------------------------------------------------------------------------- graph helpers

# Tom(0) -> a(2) -> b(3) -> d(5);  Tom -> c(4) -> d;  a -> d is absent;  Bob(1) -> e(6);  c -> b
TINY = ProsQAGraph(("Tom", "Bob", "a", "b", "c", "d", "e"),
                   ((0, 2), (2, 3), (3, 5), (0, 4), (4, 5), (1, 6), (4, 3)), root=0, target=5, neg_target=6)


def test_reachability_and_distances() -> None:
    assert descendants(TINY, 0) == {2, 3, 4, 5}
    assert descendants(TINY, 5) == frozenset()
    assert reachable(TINY, 0, 5) and reachable(TINY, 5, 5) and not reachable(TINY, 0, 6)
    assert shortest_distances(TINY, 0) == {0: 0, 2: 1, 4: 1, 3: 2, 5: 2}
    assert shortest_distances(TINY, 5, upstream=True) == {5: 0, 3: 1, 4: 1, 2: 2, 0: 2}
    assert ancestors(TINY, 5) == {0, 2, 3, 4}
    assert ancestors(TINY, 3) == {0, 2, 4}
    assert ancestors(TINY, 0) == frozenset() and ancestors(TINY, 6) == {1}
    assert frontier(TINY, 0, 0) == {0}
    assert frontier(TINY, 0, 2) == {3, 5}
    assert frontier(TINY, 0, 3) == {5}


def test_all_shortest_paths() -> None:
    assert all_shortest_paths(TINY, 0, 5) == [(0, 4, 5)]
    assert all_shortest_paths(TINY, 0, 3) == [(0, 2, 3), (0, 4, 3)]
    assert all_shortest_paths(TINY, 0, 6) == []
    assert all_shortest_paths(TINY, 3, 3) == [(3,)]


def test_node_heights_shortest_and_longest() -> None:
    h = node_heights(TINY)
    assert h[5] == h[6] == NodeHeight(0, 0)
    assert h[4] == NodeHeight(1, 2)  # c -> d, and c -> b -> d
    assert h[0] == NodeHeight(2, 3)
    assert h[1] == NodeHeight(1, 1)


def test_parse_question_numbers_nodes_in_order_of_mention() -> None:
    g = parse_question("Tom is a wumpus. Every wumpus is a lempus. Is Tom a lempus or scrompus?")
    assert g.names == ("Tom", "wumpus", "lempus", "scrompus")
    assert g.edges == ((0, 1), (1, 2)) and g.root == 0 and g.options == (2, 3)


@pytest.mark.parametrize("question, match", [
    ("Tom is a wumpus. Is Tom a lempus?", "Is X a Y or Z"),
    ("Tom likes wumpuses. Is Tom a lempus or scrompus?", "sentence 1"),
])
def test_parse_question_rejects_other_text(question: str, match: str) -> None:
    with pytest.raises(ProsQAFormatError, match=match):
        parse_question(question)


def test_graph_from_example_names_the_bad_field() -> None:
    good = {"question": "Tom is a a. Is Tom a a or b?", "steps": [], "answer": "Tom is a a.",
            "idx_to_symbol": ["Tom", "Bob", "a", "b"], "edges": [[0, 2], [1, 3]],
            "root": 0, "target": 2, "neg_target": 3}
    assert graph_from_example(example_from_dict(good)).edges == ((0, 2), (1, 3))
    for field, value in (("edges", [[0, 9]]), ("edges", [[0]]), ("root", 7), ("idx_to_symbol", "Tom")):
        bad = example_from_dict({**good, field: value})
        with pytest.raises(ExampleFormatError, match=f"item 4: field '{field}'"):
            graph_from_example(bad, index=4, path="x.json")
    with pytest.raises(ExampleFormatError, match="'neg_target': missing"):
        graph_from_example(example_from_dict({k: v for k, v in good.items() if k != "neg_target"}))
