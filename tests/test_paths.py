"""Path categories on a hand-built graph, incl. partial chains written after k continuous thoughts."""

from __future__ import annotations

import pytest

from coconut_lm.analysis.paths import (
    PathCategory,
    answered_node,
    category_fractions,
    classify_chain,
    split_generation,
)
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import load_examples
from coconut_lm.tasks.prosqa_graph import ProsQAGraph, graph_from_example, parse_question

#   Tom -> wumpus -> lempus -> zumpus (target)        shortest: 3 hops
#   Tom -> yumpus -> lempus,  Tom -> yumpus -> rompus -> gorpus -> zumpus (4 hops: longer)
#   lempus -> impus (another leaf);  Bob -> scrompus (the distractor)
NAMES = ("Tom", "Bob", "wumpus", "yumpus", "lempus", "rompus", "gorpus", "zumpus", "impus", "scrompus")
EDGES = ((0, 2), (0, 3), (2, 4), (3, 4), (3, 5), (5, 6), (6, 7), (4, 7), (4, 8), (1, 9))
G = ProsQAGraph(NAMES, EDGES, root=0, target=7, neg_target=9, options=(7, 9))

CP, LP, HA, WT, CL, IL = (PathCategory.CORRECT_PATH, PathCategory.LONGER_PATH, PathCategory.HALLUCINATION,
                          PathCategory.WRONG_TARGET, PathCategory.CORRECT_LABEL, PathCategory.INCORRECT_LABEL)
OK = "Tom is a zumpus."


@pytest.mark.parametrize("steps, k, expected", [
    # full chains (k = 0)
    (["Tom is a wumpus.", "Every wumpus is a lempus.", "Every lempus is a zumpus."], 0, CP),
    (["Tom is a yumpus.", "Every yumpus is a lempus.", "Every lempus is a zumpus."], 0, CP),
    (["Tom is a yumpus.", "Every yumpus is a rompus.", "Every rompus is a gorpus.",
      "Every gorpus is a zumpus."], 0, LP),
    (["Tom is a wumpus.", "Every wumpus is a zumpus."], 0, HA),                 # no such edge
    (["Tom is a wumpus.", "Every rompus is a gorpus.", "Every gorpus is a zumpus."], 0, HA),  # jumps
    (["Tom is a wumpus.", "Every wumpus is a blicket."], 0, HA),                # unknown name
    (["Tom is a wumpus.", "Wumpuses are lempuses."], 0, HA),                    # not the templates
    (["Bob is a scrompus."], 0, HA),                                            # not from the root
    (["Tom is a wumpus.", "Every wumpus is a lempus.", "Every lempus is a impus."], 0, WT),
    (["Tom is a wumpus.", "Every wumpus is a lempus."], 0, WT),                 # stops short
    # partial chains after k thoughts: the first written node lies exactly k hops from the root
    (["Every lempus is a zumpus."], 2, CP),                                     # 2 + 1 = 3 hops
    (["Every wumpus is a lempus.", "Every lempus is a zumpus."], 1, CP),
    (["Every yumpus is a lempus.", "Every lempus is a zumpus."], 1, CP),
    (["Every rompus is a gorpus.", "Every gorpus is a zumpus."], 2, LP),        # 2 + 2 = 4 hops
    (["Every gorpus is a zumpus."], 3, LP),
    (["Every lempus is a zumpus."], 1, HA),                                     # lempus is 2 hops away
    (["Tom is a wumpus.", "Every wumpus is a lempus.", "Every lempus is a zumpus."], 1, HA),  # restarts
    (["Every lempus is a impus."], 2, WT),
    (["Every rompus is a gorpus."], 2, WT),
    ([], 3, CL),                                                                # all steps were thoughts
])
def test_categories(steps: list[str], k: int, expected: PathCategory) -> None:
    assert classify_chain(G, steps, OK, k_thoughts=k) is expected


def test_labels_only_read_the_answer() -> None:
    assert classify_chain(G, [], "Tom is a zumpus.") is CL
    assert classify_chain(G, [], "Tom is a scrompus.") is IL
    assert classify_chain(G, [], "Bob is a zumpus.") is IL
    assert classify_chain(G, [], "") is IL
    # With a path, a wrong answer does not change the category.
    assert classify_chain(G, ["Tom is a wumpus.", "Every wumpus is a lempus.", "Every lempus is a zumpus."],
                          "Tom is a scrompus.") is CP


def test_raw_generated_text() -> None:
    text = "Every wumpus is a lempus.\nEvery lempus is a zumpus.\n### Tom is a zumpus."
    assert classify_chain(G, text, k_thoughts=1) is CP
    assert classify_chain(G, "### Tom is a zumpus.", k_thoughts=3) is CL
    assert classify_chain(G, "### Tom is a scrompus.") is IL
    # An explicit answer overrides the one in the text.
    assert classify_chain(G, "### Tom is a zumpus.", "Tom is a impus.") is IL


def test_split_generation() -> None:
    s = split_generation("Tom is a wumpus.\n\nEvery wumpus is a lempus. Every lempus is a zumpus.\n"
                         "### Tom is a zumpus.\nextra")
    assert s.steps == ["Tom is a wumpus.", "Every wumpus is a lempus.", "Every lempus is a zumpus."]
    assert s.answer == "Tom is a zumpus."
    assert split_generation("Tom is a wumpus.") == split_generation("Tom is a wumpus.\n###")
    assert split_generation("Tom is a wumpus.").answer == ""


def test_reference_chains_of_the_valid_file_are_correct_paths(prosqa_valid) -> None:
    """The gold chains, with any number of their first steps hidden, are Correct Paths."""
    for ex in load_examples(prosqa_valid)[:100]:
        g = graph_from_example(ex)
        for k in range(len(ex.steps) + 1):
            expected = CL if k == len(ex.steps) else CP
            assert classify_chain(g, ex.steps[k:], ex.answer, k_thoughts=k) is expected


def test_category_names_and_fractions() -> None:
    assert [c.label for c in PathCategory] == ["Correct Path", "Longer Path", "Hallucination",
                                               "Wrong Target", "Correct Label", "Incorrect Label"]
    fr = category_fractions([CP, CP, HA, IL])
    assert list(fr) == list(PathCategory) and fr[CP] == 0.5 and fr[LP] == 0.0 and sum(fr.values()) == 1


def test_errors() -> None:
    with pytest.raises(CoconutError, match="no target"):
        classify_chain(parse_question("Tom is a a. Is Tom a a or b?"), [], "Tom is a a.")
    with pytest.raises(CoconutError, match="answer_text is required"):
        classify_chain(G, ["Tom is a wumpus."])
    with pytest.raises(CoconutError, match="k_thoughts"):
        classify_chain(G, [], OK, k_thoughts=-1)
    with pytest.raises(CoconutError, match="no chains"):
        category_fractions([])


# The same graph in the symbolic form: a step names the node it reaches.
GS = ProsQAGraph(tuple(str(i) for i in range(len(NAMES))), EDGES, root=0, target=7, neg_target=9, options=(7, 9),
                 symbolic=True)


@pytest.mark.parametrize("text, k, expected", [
    ("2 4 7 ### 7", 0, CP),
    ("3 5 6 7 ### 7", 0, LP),
    ("2 7 ### 7", 0, HA),          # no edge 2 -> 7
    ("4 7 ### 7", 0, HA),          # 4 is not a child of the root
    ("4 7 ### 7", 1, CP),          # ... but it is reachable after one hidden hop
    ("5 6 7 ### 7", 1, LP),
    ("2 4 8 ### 8", 0, WT),
    ("### 7", 0, CL),
    ("### 9", 0, IL),
    ("2 x ### 7", 0, HA),          # unknown symbol
])
def test_symbolic_categories(text: str, k: int, expected: PathCategory) -> None:
    assert classify_chain(GS, text, k_thoughts=k) is expected
    assert split_generation("2 4\n7 ### 7", symbolic=True).steps == ["2", "4", "7"]


@pytest.mark.parametrize("graph, answer, node", [
    (G, "Tom is a zumpus.", 7), (G, "### Tom is a scrompus.", 9), (G, "Tom is a blicket.", None),
    (G, "Bob is a zumpus.", None),    # about another entity than the root
    (G, "zumpus", None), (G, "", None),
    (GS, "7", 7), (GS, "### 9 8", 9), (GS, "x", None), (GS, "", None),
])
def test_answered_node(graph: ProsQAGraph, answer: str, node: int | None) -> None:
    assert answered_node(graph, answer) == node
    assert classify_chain(graph, [] if not graph.symbolic else "", answer) is (CL if node == 7 else IL)
