"""Dataset statistics for any common-format data, with graph statistics when the items carry a graph.

    stats = dataset_stats(load_examples("data/prosqa_valid.json"))
    print(format_stats(stats, title="prosqa_valid"))
    stats.steps_mix        # {3: 0.41, 4: 0.44, 5: 0.12, 6: 0.02}
    stats.graph.nodes.mean # 22.8

Graph statistics need `idx_to_symbol` and `edges` (ProsQA and the ProntoQA fork both have them).
Path statistics are computed over the items whose `target` is reachable from `root` along `edges`
(every ProsQA item; no ProntoQA item, whose edges leave out the entity's own facts), so nothing is
reported that the data cannot support.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example


@dataclass(frozen=True)
class Summary:
    """Minimum, mean and maximum of a quantity over the items."""

    min: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """Summary of a non-empty sequence."""
        return cls(min(values), fmean(values), max(values))


@dataclass(frozen=True)
class GraphStats:
    """Statistics of the items that carry a graph (`idx_to_symbol` and `edges`)."""

    n_items: int
    """Items with a graph."""
    nodes: Summary
    edges: Summary
    entities_per_item: float
    """Mean number of names that start with a capital letter (people)."""
    entity_names: frozenset[str]
    """Capitalised names over all items (people: 'Tom')."""
    concept_names: frozenset[str]
    """The other names ('terpus')."""
    path_items: int
    """Items whose target is reachable from their root; the two fields below average over them."""
    hops: Summary | None
    """Shortest root->target distance."""
    shortest_paths: float | None
    """Mean number of distinct shortest root->target paths."""


@dataclass(frozen=True)
class DatasetStats:
    """What `coconut-lm data stats` prints."""

    n_items: int
    steps_mix: dict[int, float]
    """Number of steps -> fraction of items, sorted by the number of steps."""
    steps: Summary
    """Steps per item."""
    question_words: Summary
    steps_words: Summary
    """Words in all steps of an item together."""
    answer_words: Summary
    graph: GraphStats | None
    """None when no item carries a graph."""
    malformed_graphs: tuple[int, ...] = ()
    """Items that carry graph keys which do not form a graph (an edge out of range...): left out of `graph`."""


def _words(text: str) -> int:
    return len(text.split())


def _graph_of(example: Example) -> tuple[list[str], list[list[int]]] | None:
    names, edges = example.extra.get("idx_to_symbol"), example.extra.get("edges")
    if not isinstance(names, list) or not isinstance(edges, list):
        return None
    ok = all(isinstance(e, list | tuple) and len(e) == 2
             and all(isinstance(i, int) and 0 <= i < len(names) for i in e) for e in edges)
    return (names, edges) if ok else None


def _path_stats(n: int, edges: list[list[int]], root: int, target: int) -> tuple[int, int] | None:
    """(hops, number of shortest paths) from root to target, or None when unreachable."""
    children: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        children[a].append(b)
    dist, count = {root: 0}, {root: 1}
    queue = deque([root])
    while queue:  # BFS order visits every shortest-path predecessor before its successor
        u = queue.popleft()
        for v in children[u]:
            if v not in dist:
                dist[v], count[v] = dist[u] + 1, 0
                queue.append(v)
            if dist[v] == dist[u] + 1:
                count[v] += count[u]
    return (dist[target], count[target]) if target in dist else None


def _graph_stats(examples: Sequence[Example]) -> GraphStats | None:
    nodes, edges, entities, paths = [], [], [], []
    entity_names: set[str] = set()
    concept_names: set[str] = set()
    for ex in examples:
        graph = _graph_of(ex)
        if graph is None:
            continue
        names, item_edges = graph
        nodes.append(len(names))
        edges.append(len(item_edges))
        people = {s for s in names if isinstance(s, str) and s[:1].isupper()}
        entities.append(len(people))
        entity_names |= people
        concept_names |= {s for s in names if isinstance(s, str)} - people
        root, target = ex.extra.get("root"), ex.extra.get("target")
        if isinstance(root, int) and isinstance(target, int) and 0 <= root < len(names) \
                and 0 <= target < len(names):
            found = _path_stats(len(names), item_edges, root, target)
            if found is not None:
                paths.append(found)
    if not nodes:
        return None
    return GraphStats(
        n_items=len(nodes), nodes=Summary.of(nodes), edges=Summary.of(edges),
        entities_per_item=fmean(entities), entity_names=frozenset(entity_names),
        concept_names=frozenset(concept_names), path_items=len(paths),
        hops=Summary.of([h for h, _ in paths]) if paths else None,
        shortest_paths=fmean(c for _, c in paths) if paths else None,
    )


def dataset_stats(examples: Sequence[Example]) -> DatasetStats:
    """Statistics of a list of examples (any task)."""
    if not examples:
        raise CoconutError("dataset statistics: no examples")
    n = len(examples)
    n_steps = [len(ex.steps) for ex in examples]
    mix = Counter(n_steps)
    return DatasetStats(
        n_items=n,
        steps_mix={k: mix[k] / n for k in sorted(mix)},
        steps=Summary.of(n_steps),
        question_words=Summary.of([_words(ex.question) for ex in examples]),
        steps_words=Summary.of([sum(_words(s) for s in ex.steps) for ex in examples]),
        answer_words=Summary.of([_words(ex.answer) for ex in examples]),
        graph=_graph_stats(examples),
        malformed_graphs=tuple(i for i, ex in enumerate(examples)
                               if ("idx_to_symbol" in ex.extra or "edges" in ex.extra) and _graph_of(ex) is None),
    )


def _fmt(s: Summary, digits: int = 1) -> str:
    return f"{s.min:g} / {s.mean:.{digits}f} / {s.max:g}"


def _rows(stats: DatasetStats) -> list[tuple[str, str]]:
    rows = [
        ("items", f"{stats.n_items}"),
        ("steps per item (min / mean / max)", _fmt(stats.steps, 2)),
        ("steps mix", "  ".join(f"{k}: {v:.1%}" for k, v in stats.steps_mix.items())),
        ("question words (min / mean / max)", _fmt(stats.question_words)),
        ("steps words (min / mean / max)", _fmt(stats.steps_words)),
        ("answer words (min / mean / max)", _fmt(stats.answer_words)),
    ]
    g = stats.graph
    if g is not None:
        rows += [
            ("items with a graph", f"{g.n_items}"),
            ("nodes (min / mean / max)", _fmt(g.nodes)),
            ("edges (min / mean / max)", _fmt(g.edges)),
            ("entities per item (mean)", f"{g.entities_per_item:.2f}"),
            ("entity names", f"{len(g.entity_names)}"),
            ("concept names", f"{len(g.concept_names)}"),
        ]
        if g.hops is not None and g.shortest_paths is not None:
            rows += [
                ("items with a root->target path", f"{g.path_items}"),
                ("shortest path hops (min / mean / max)", _fmt(g.hops, 2)),
                ("shortest paths per item (mean)", f"{g.shortest_paths:.2f}"),
            ]
    if stats.malformed_graphs:
        bad = stats.malformed_graphs
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        rows.append(("malformed graphs, left out (items)", f"{len(bad)} ({shown})"))
    return rows


def format_stats(stats: DatasetStats, title: str = "dataset") -> str:
    """An aligned two-column text table of `stats` under `title`."""
    rows = _rows(stats)
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * max(len(title), width + 2 + max(len(v) for _, v in rows))]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)
