"""The ProsQA graph: its type, the algorithms on it, and its sentences (read and written).

    graph = graph_from_example(example)                   # ProsQAGraph: names, edges, root, target, ...
    all_shortest_paths(graph, graph.root, graph.target)   # [(1, 3, 14, 16), ...]
    frontier(graph, graph.root, 2)                        # the nodes at the end of a 2-edge path
    parse_question(example.question)                      # the same graph, rebuilt from the text alone

The generator (`tasks.prosqa`) draws these graphs; the analysis (`analysis/`) reads them: path
categories, frontier values, node heights, probe categories.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example, ExampleFormatError


class ProsQAFormatError(CoconutError):
    """Text or graph data that does not follow the ProsQA format."""



# ----------------------------------------------------------------------------------------- graph


@dataclass(frozen=True)
class ProsQAGraph:
    """A ProsQA graph: node names, (parent, child) edges, the question's entity and its two options.

    `target`/`neg_target` are None when unknown (a graph parsed from question text alone); `options` are
    the two answer options in the order the question lists them; `symbolic` says that the example's
    text is in the symbolic form (`tasks.symbolic`: a step is one node's name, not a sentence).
    """

    names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    root: int
    target: int | None = None
    neg_target: int | None = None
    options: tuple[int, int] | None = None
    symbolic: bool = False
    children: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    parents: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    node_of: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        for node in (self.root, self.target, self.neg_target, *(self.options or ())):
            if node is not None and not 0 <= node < n:
                raise ProsQAFormatError(f"node {node} is out of range for {n} names")
        kids: list[list[int]] = [[] for _ in range(n)]
        pars: list[list[int]] = [[] for _ in range(n)]
        for a, b in self.edges:
            if not (0 <= a < n and 0 <= b < n):
                raise ProsQAFormatError(f"edge ({a}, {b}) is out of range for {n} names")
            kids[a].append(b)
            pars[b].append(a)
        object.__setattr__(self, "children", tuple(tuple(k) for k in kids))
        object.__setattr__(self, "parents", tuple(tuple(p) for p in pars))
        object.__setattr__(self, "node_of", {name: i for i, name in enumerate(self.names)})

    def __len__(self) -> int:
        return len(self.names)

    def is_entity(self, node: int) -> bool:
        """True for nodes without parents: they carry person names."""
        return not self.parents[node]

    def has_edge(self, parent: int, child: int) -> bool:
        """Whether the graph states 'parent is a child'."""
        return child in self.children[parent]


def shortest_distances(graph: ProsQAGraph, src: int, upstream: bool = False) -> dict[int, int]:
    """Hops from `src` to every node reachable from it (BFS; `src` itself at 0). `upstream`: along the
    edges backwards, the hops to `src` from every node that reaches it."""
    dist = {src: 0}
    queue = deque([src])
    edges = graph.parents if upstream else graph.children
    while queue:
        u = queue.popleft()
        for v in edges[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def descendants(graph: ProsQAGraph, node: int) -> frozenset[int]:
    """Nodes reachable from `node` by one edge or more (`node` itself left out, even on a cycle)."""
    return frozenset(shortest_distances(graph, node)) - {node}


def ancestors(graph: ProsQAGraph, node: int) -> frozenset[int]:
    """Nodes with a path of one edge or more to `node` (`node` itself left out, as by `descendants`)."""
    return frozenset(shortest_distances(graph, node, upstream=True)) - {node}


def reachable(graph: ProsQAGraph, src: int, dst: int) -> bool:
    """Whether a path (possibly empty) leads from `src` to `dst`."""
    return dst in shortest_distances(graph, src)


def frontier(graph: ProsQAGraph, src: int, hops: int) -> frozenset[int]:
    """Nodes at the end of some path of exactly `hops` edges from `src` (after k thoughts: k hops)."""
    nodes = {src}
    for _ in range(hops):
        nodes = {v for u in nodes for v in graph.children[u]}
    return frozenset(nodes)


def all_shortest_paths(graph: ProsQAGraph, src: int, dst: int) -> list[tuple[int, ...]]:
    """Every shortest path from `src` to `dst` as a node tuple (sorted); [] when `dst` is unreachable."""
    dist = shortest_distances(graph, src)
    if dst not in dist:
        return []

    def back(v: int) -> list[tuple[int, ...]]:  # shortest paths src -> v, built from the end
        if v == src:
            return [(src,)]
        return [p + (v,) for u in graph.parents[v] if dist.get(u) == dist[v] - 1 for p in back(u)]

    return sorted(back(dst))


def _topological_order(graph: ProsQAGraph) -> list[int]:
    indeg = [len(p) for p in graph.parents]
    queue = deque(v for v in range(len(graph)) if indeg[v] == 0)
    order: list[int] = []
    while queue:
        u = queue.popleft()
        order.append(u)
        for v in graph.children[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    if len(order) != len(graph):
        raise ProsQAFormatError("the graph has a cycle")
    return order


@dataclass(frozen=True)
class NodeHeight:
    """A node's distance to a leaf: along the shortest and along the longest downward path."""

    shortest: int
    longest: int


def node_heights(graph: ProsQAGraph) -> list[NodeHeight]:
    """Height of every node (leaves are 0); the paper reports value against both kinds of height."""
    heights: list[NodeHeight] = [NodeHeight(0, 0)] * len(graph)
    for u in reversed(_topological_order(graph)):
        kids = graph.children[u]
        if kids:
            heights[u] = NodeHeight(1 + min(heights[v].shortest for v in kids),
                                    1 + max(heights[v].longest for v in kids))
    return heights


def graph_from_example(example: Example, index: int | None = None, path: str | None = None) -> ProsQAGraph:
    """The graph stored in a ProsQA example's extra keys; `ExampleFormatError` names a bad field."""
    where = ": ".join([path or "<data>"] + ([f"item {index}"] if index is not None else []))
    extra = example.extra
    for key in ("idx_to_symbol", "edges", "root", "target", "neg_target"):
        if key not in extra:
            raise ExampleFormatError(f"{where}: field '{key}': missing (not a ProsQA example?)")
    names, edges = extra["idx_to_symbol"], extra["edges"]
    if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
        raise ExampleFormatError(f"{where}: field 'idx_to_symbol': expected a list of strings")
    if not isinstance(edges, list) or not all(
        isinstance(e, list) and len(e) == 2 and all(isinstance(i, int) for i in e) for e in edges
    ):
        raise ExampleFormatError(f"{where}: field 'edges': expected a list of [parent, child] index pairs")
    for key in ("root", "target", "neg_target"):
        if not isinstance(extra[key], int) or not 0 <= extra[key] < len(names):
            raise ExampleFormatError(f"{where}: field '{key}': expected a node index below {len(names)}")
    target, neg = extra["target"], extra["neg_target"]
    options = (target, neg)
    m = _QUERY.search(example.question) or _SYMBOLIC_QUERY.search(example.question)
    if m and {m.group(2), m.group(3)} == {names[target], names[neg]}:
        options = (names.index(m.group(2)), names.index(m.group(3)))
    try:
        return ProsQAGraph(tuple(names), tuple((a, b) for a, b in edges), extra["root"], target, neg, options,
                           symbolic=extra.get("format") == "symbolic")
    except ProsQAFormatError as e:
        raise ExampleFormatError(f"{where}: field 'edges': {e}") from None


# --------------------------------------------------------------------------------------- text

_FACT = re.compile(r"^(?:Every (\w+)|(\w+)) is an? (\w+)\.$")
_QUERY = re.compile(r"Is (\w+) an? (\w+) or (\w+)\?\s*$")
_SYMBOLIC_QUERY = re.compile(r"\[Q\] (\S+) (\S+) \[R\] (\S+)\s*$")
# Where one sentence ends and the next begins; also splits generated steps written on one line.
SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def sentence(graph_or_names: ProsQAGraph | Sequence[str], parent: int, child: int, entity: bool) -> str:
    """The fact 'parent is a child' in the official templates ("Tom is a X." / "Every X is a Y.")."""
    names = graph_or_names.names if isinstance(graph_or_names, ProsQAGraph) else graph_or_names
    return f"{names[parent]} is a {names[child]}." if entity else f"Every {names[parent]} is a {names[child]}."


def parse_fact(text: str) -> tuple[str, str] | None:
    """('Tom', 'terpus') for "Tom is a terpus.", ('terpus', 'brimpus') for "Every terpus is a brimpus."."""
    m = _FACT.match(text.strip())
    return None if m is None else (m.group(1) or m.group(2), m.group(3))


def parse_question(question: str) -> ProsQAGraph:
    """Rebuild the graph from the question text alone.

    Nodes are numbered in order of first mention; `options` holds the two asked concepts in question
    order (which one is the target cannot be known from the text, so `target` is None).
    """
    m = _QUERY.search(question)
    if m is None:
        raise ProsQAFormatError(f"the question does not end with 'Is X a Y or Z?': ...{question[-60:]!r}")
    names: dict[str, int] = {}
    edges: list[tuple[int, int]] = []
    facts = [s for s in SENTENCE_END.split(question[: m.start()].strip()) if s]
    for i, text in enumerate(facts):
        pair = parse_fact(text)
        if pair is None:
            raise ProsQAFormatError(f"question sentence {i + 1}: cannot parse {text!r}")
        edges.append(tuple(names.setdefault(name, len(names)) for name in pair))  # type: ignore[arg-type]
    root, opt_a, opt_b = (names.setdefault(name, len(names)) for name in m.groups())
    return ProsQAGraph(tuple(names), tuple(edges), root, None, None, (opt_a, opt_b))


def load_graph_examples(data: str | os.PathLike, max_examples: int | None = None) -> tuple[list[Example], list[ProsQAGraph]]:
    """The first `max_examples` examples of a ProsQA file and their graphs; an item without the graph keys
    is a one-line error naming the file and the item."""
    from coconut_lm.tasks.examples import load_examples

    examples = load_examples(data)[:max_examples]
    if not examples:
        raise CoconutError(f"{data}: no examples to analyse")
    return examples, [graph_from_example(ex, i, str(data)) for i, ex in enumerate(examples)]
