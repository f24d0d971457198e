"""The categories the superposition probes group by (`analysis.probes`): nodes and edges of a ProsQA
graph after hop h of the thoughts, and where each edge's fact stands in the question.

    node_categories(graph, hops=2)   # per node: target, optimal, frontier, reachable or unreachable
    edge_categories(graph, hops=2)   # per edge: optimal, frontier, reachable or other
    edge_token_spans(tokenizer, question_text, question_ids, graph)   # token positions of each fact

Thought t belongs to hop h = ceil(t / c) (`hop_of_thought`). A node is the *target*; *optimal* (on
the frontier and on a shortest root-to-target path); *frontier* (the other nodes at the end of an
h-edge path from the root); *reachable* (within h hops of the root, off the frontier); or
*unreachable* (the rest: deeper, or not below the root at all). An edge is *optimal* (an edge of a
shortest root-to-target path, leaving hop h-1); *frontier* (the other edges leaving frontier h-1:
the ones hop h expands); *reachable* (edges leaving a node reached earlier); or *other*.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

NODE_CATEGORIES = ("target", "optimal", "frontier", "reachable", "unreachable")
EDGE_CATEGORIES = ("optimal", "frontier", "reachable", "other")
_WORD_FACT = re.compile(r"(?:Every (\w+)|(\w+)) is an? (\w+)\.")
_SYMBOL_EDGE = re.compile(r"([^\s|]+) ([^\s|]+)(?= (?:\||\[Q\]))")


def hop_of_thought(t: int, c: int) -> int:
    """The hop a thought belongs to: thoughts 1..c are hop 1, c+1..2c hop 2, ..."""
    return math.ceil(t / max(c, 1))


def _distances(graph) -> tuple[dict[int, int], dict[int, int]]:
    """Hops from the root to each node it reaches, and from each node to the target (when it reaches it)."""
    from coconut_lm.tasks.prosqa_graph import shortest_distances

    to_target = {n: d[graph.target] for n in range(len(graph.names))
                 if graph.target in (d := shortest_distances(graph, n))}
    return shortest_distances(graph, graph.root), to_target


def node_categories(graph, hops: int) -> list[str]:
    """Each node's category after `hops` hops (module docstring), in `NODE_CATEGORIES`."""
    from coconut_lm.tasks.prosqa_graph import frontier

    dist, to_target = _distances(graph)
    total = dist.get(graph.target)
    front = frontier(graph, graph.root, hops)
    out = []
    for n in range(len(graph.names)):
        if n == graph.target:
            out.append("target")
        elif n in front and total is not None and dist.get(n) == hops and to_target.get(n) == total - hops:
            out.append("optimal")
        elif n in front:
            out.append("frontier")
        elif dist.get(n, hops + 1) <= hops:
            out.append("reachable")
        else:
            out.append("unreachable")
    return out


def edge_categories(graph, hops: int) -> list[str]:
    """Each edge's category for the thoughts of hop `hops` (module docstring), in `EDGE_CATEGORIES`."""
    from coconut_lm.tasks.prosqa_graph import frontier

    dist, to_target = _distances(graph)
    total = dist.get(graph.target)
    previous = frontier(graph, graph.root, hops - 1) if hops > 0 else frozenset()
    out = []
    for a, b in graph.edges:
        if a in previous and total is not None and dist.get(a) == hops - 1 and to_target.get(b) == total - hops:
            out.append("optimal")
        elif a in previous:
            out.append("frontier")
        elif a in dist and dist[a] < hops:
            out.append("reachable")
        else:
            out.append("other")
    return out


def edge_char_spans(question: str, graph) -> list[tuple[int, int] | None]:
    """Where each edge's fact stands in the question text: (start, end) per edge, None if not found."""
    index = {(graph.names[a], graph.names[b]): i for i, (a, b) in enumerate(graph.edges)}
    spans: list[tuple[int, int] | None] = [None] * len(graph.edges)
    if graph.symbolic:
        matches = [(m.group(1), m.group(2), m.span()) for m in _SYMBOL_EDGE.finditer(question)]
    else:
        matches = [(m.group(1) or m.group(2), m.group(3), m.span()) for m in _WORD_FACT.finditer(question)]
    for a, b, span in matches:
        i = index.get((a, b))
        if i is not None and spans[i] is None:
            spans[i] = span
    return spans


def edge_token_spans(tokenizer, question_text: str, question_ids: Sequence[int], graph) -> list[list[int]] | None:
    """Token positions of each edge's fact within the prompt's question tokens; None when offsets are unknown.

    A token belongs to the fact whose characters hold its last character, so a BPE token's leading
    space does not push the first word out.
    """
    try:
        enc = tokenizer(question_text, add_special_tokens=True, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):
        return None
    if list(enc["input_ids"]) != list(question_ids):
        return None
    spans = edge_char_spans(question_text, graph)
    out: list[list[int]] = [[] for _ in spans]
    for pos, (s, e) in enumerate(enc["offset_mapping"]):
        if e <= s:
            continue
        for i, span in enumerate(spans):
            if span is not None and span[0] <= e - 1 < span[1]:
                out[i].append(pos)
                break
    return out
