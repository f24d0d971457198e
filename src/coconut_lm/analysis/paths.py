"""Classify a generated ProsQA reasoning chain into the paper's six path categories.

    graph = graph_from_example(example)
    classify_chain(graph, "Every terpus is a brimpus.\\nEvery brimpus is a lempus.\\n### Tom is a lempus.",
                   k_thoughts=1)                      # PathCategory.CORRECT_PATH
    PathCategory.LONGER_PATH.label                    # 'Longer Path'
    category_fractions(categories)                    # {PathCategory.CORRECT_PATH: 0.7, ...}

The rules, in the order they are applied:
- No written step at all: *Correct Label* or *Incorrect Label*, by the answer sentence
  ("Tom is a lempus." names the target). The answer is not looked at otherwise.
- Every step must parse with the data's templates ("Tom is a terpus." / "Every terpus is a brimpus."),
  name known nodes, state an edge of the graph, and start where the previous step ended; otherwise
  *Hallucination* (a nonexistent edge, or a disconnected chain).
- After k continuous thoughts the model writes the chain from step k+1 on, so the written chain
  continues k hidden hops: its first node must lie exactly k hops from the root (`frontier`). With
  k = 0 that is the root itself. A chain that starts anywhere else is disconnected: *Hallucination*.
  This is the paper's "a valid completion exists": some k-hop path from the root of which the written
  steps are the continuation.
- A valid chain that ends at a node other than the target: *Wrong Target* (this includes a valid chain
  that stops short of the target).
- A valid chain that ends at the target: *Correct Path* when k plus the written steps equals the
  shortest distance (then every completion is a shortest path), else *Longer Path*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.answers import chain_lines
from coconut_lm.tasks.prosqa_graph import SENTENCE_END, ProsQAGraph, frontier, parse_fact, shortest_distances


class PathCategory(Enum):
    """The paper's six categories of a ProsQA reasoning chain (value: a stable key for records)."""

    CORRECT_PATH = "correct_path"
    LONGER_PATH = "longer_path"
    HALLUCINATION = "hallucination"
    WRONG_TARGET = "wrong_target"
    CORRECT_LABEL = "correct_label"
    INCORRECT_LABEL = "incorrect_label"

    @property
    def label(self) -> str:
        """The name used in the paper's figures, e.g. 'Correct Path'."""
        return self.value.replace("_", " ").title()


@dataclass(frozen=True)
class SplitGeneration:
    """Generated text split into its step sentences and its answer ('' when no '###' was written)."""

    steps: list[str]
    answer: str


def split_generation(text: str, symbolic: bool = False) -> SplitGeneration:
    """Split 'step\\nstep\\n### answer' into sentences and the answer.

    Lines are split further into sentences, so steps written on one line are read the same way; the
    answer is the rest of the line after the first '###'. `symbolic`: every word is a step (a node).
    """
    _, sep, rest = text.partition("###")
    answer = rest.strip().splitlines()[0].strip() if sep and rest.strip() else ""
    split = str.split if symbolic else SENTENCE_END.split
    steps = [s.strip() for line in chain_lines(text) for s in split(line) if s.strip()]
    return SplitGeneration(steps=steps, answer=answer)


def answered_node(graph: ProsQAGraph, answer: str) -> int | None:
    """The node an answer names (a leading '###' is dropped), or None if it names none.

    Symbolic data: the answer's first word. Word form: the concept X of "<root> is a X." about the root.
    """
    answer = answer.strip().removeprefix("###").strip()
    if graph.symbolic:
        name = (answer.split() or [""])[0]
    else:
        fact = parse_fact(answer)
        name = fact[1] if fact is not None and fact[0] == graph.names[graph.root] else ""
    return graph.node_of.get(name)


def _answer_is_correct(graph: ProsQAGraph, target: int, answer: str) -> bool:
    return answered_node(graph, answer) == target


def _written_path(graph: ProsQAGraph, steps: Sequence[str], k_thoughts: int) -> list[int] | None:
    """The node sequence the steps walk through, or None if any step is not a graph edge in sequence.

    A symbolic step names only the node it reaches, so the first one's parent is hidden in the k
    thoughts: any node k hops from the root with an edge to it (the root itself when k = 0).
    """
    if graph.symbolic:
        if any(s not in graph.node_of for s in steps):
            return None
        nodes = [graph.node_of[s] for s in steps]
        parents = [p for p in graph.parents[nodes[0]] if p in frontier(graph, graph.root, k_thoughts)]
        if not parents or any(not graph.has_edge(a, b) for a, b in zip(nodes, nodes[1:])):
            return None
        return [parents[0], *nodes]
    path: list[int] = []
    for text in steps:
        fact = parse_fact(text)
        if fact is None or fact[0] not in graph.node_of or fact[1] not in graph.node_of:
            return None
        parent, child = graph.node_of[fact[0]], graph.node_of[fact[1]]
        if not graph.has_edge(parent, child) or (path and path[-1] != parent):
            return None
        path += [child] if path else [parent, child]
    return path


def classify_chain(graph: ProsQAGraph, steps: Sequence[str] | str, answer_text: str | None = None,
                   k_thoughts: int = 0) -> PathCategory:
    """The category of a generated chain written after `k_thoughts` continuous thoughts.

    `steps` is either the step sentences or the raw generated text ('step\\nstep\\n### answer'); with raw
    text, `answer_text` defaults to the answer found in it. The graph must know its target.
    """
    target = graph.target
    if target is None:
        raise CoconutError("classify_chain: the graph has no target (build it with graph_from_example)")
    if k_thoughts < 0:
        raise CoconutError(f"classify_chain: k_thoughts must be >= 0, got {k_thoughts}")
    if isinstance(steps, str):
        split = split_generation(steps, graph.symbolic)
        steps = split.steps
        if answer_text is None:
            answer_text = split.answer
    elif answer_text is None:
        raise CoconutError("classify_chain: answer_text is required when steps is a list of sentences")

    if not steps:
        correct = _answer_is_correct(graph, target, answer_text)
        return PathCategory.CORRECT_LABEL if correct else PathCategory.INCORRECT_LABEL
    path = _written_path(graph, steps, k_thoughts)
    if path is None or path[0] not in frontier(graph, graph.root, k_thoughts):
        return PathCategory.HALLUCINATION
    if path[-1] != target:
        return PathCategory.WRONG_TARGET
    shortest = shortest_distances(graph, graph.root)[target]
    total = k_thoughts + len(path) - 1
    return PathCategory.CORRECT_PATH if total == shortest else PathCategory.LONGER_PATH


def category_fractions(categories: Iterable[PathCategory]) -> dict[PathCategory, float]:
    """Fraction of each category (all six, in enum order) over a list of classified chains."""
    counts = Counter(categories)
    total = sum(counts.values())
    if total == 0:
        raise CoconutError("category_fractions: no chains")
    return {c: counts[c] / total for c in PathCategory}
