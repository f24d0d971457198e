"""Answer shortcuts in ProsQA: graph statistics that pick the answer without following the chain.

    rows = shortcut_rows(graphs, records)          # per example: each statistic's pick, the model's pick
    table = shortcut_table(rows, "fewer_parents")  # by hop count: how often the statistic is right, followed
    print(format_table(table, "fewer_parents", label="no_cot"))

A ProsQA question asks which of two options the root reaches. A *statistic* scores each option
from the graph alone (its number of parents, of ancestors), and picks the option that scores
higher; where both score the same it picks nothing (a tie). How the graphs are generated can leave
such a statistic right more often than chance, and more so for longer chains. A model that answers
by it follows its pick on almost every untied question and is at chance on the ties; a model that
follows the chain is right on the ties too, and follows the statistic only as often as it is right.

A model's pick is the option its answer names (`paths.split_generation`: the text after "###";
symbolic data: the first word; word form: the entity's concept in "Tom is a X."), or None when it
names neither option.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from coconut_lm.analysis.paths import answered_node, split_generation
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.prosqa_graph import ProsQAGraph, ancestors, shortest_distances

#: Each statistic: (a description, the score of an option; the option that scores higher is picked).
STATISTICS: dict[str, tuple[str, Callable[[ProsQAGraph, int], int]]] = {
    "fewer_parents": ("the option with fewer incoming edges", lambda g, n: -len(g.parents[n])),
    "more_ancestors": ("the option with more ancestors (nodes with a path to it)", lambda g, n: len(ancestors(g, n))),
}


def _statistic(name: str) -> Callable[[ProsQAGraph, int], int]:
    """The score function of a statistic named in `STATISTICS`; a one-line error for any other name."""
    if name not in STATISTICS:
        raise CoconutError(f"unknown shortcut statistic '{name}' (known: {', '.join(STATISTICS)})")
    return STATISTICS[name][1]


def statistic_pick(graph: ProsQAGraph, statistic: str) -> int | None:
    """The option (node index) that `statistic` picks on this graph, or None on a tie."""
    score = _statistic(statistic)
    if graph.target is None or graph.neg_target is None:
        raise CoconutError("statistic_pick: the graph has no target (build it with graph_from_example)")
    a, b = score(graph, graph.target), score(graph, graph.neg_target)
    return None if a == b else (graph.target if a > b else graph.neg_target)


def answer_pick(graph: ProsQAGraph, text: str) -> int | None:
    """The option a generated text's answer names (node index), or None if it names neither."""
    node = answered_node(graph, split_generation(text, graph.symbolic).answer)
    return node if node in (graph.target, graph.neg_target) else None


def shortcut_rows(graphs: Sequence[ProsQAGraph], texts: Sequence[str]) -> list[dict[str, Any]]:
    """One row per example: its hop count (shortest root-to-target distance), the target, each statistic's
    pick, and the model's pick from its generated text (`texts[i]` for `graphs[i]`)."""
    if len(graphs) != len(texts):
        raise CoconutError(f"shortcut_rows: {len(graphs)} graphs but {len(texts)} predictions")
    rows = []
    for graph, text in zip(graphs, texts):
        row = {"hops": shortest_distances(graph, graph.root).get(graph.target, -1), "target": graph.target,
               "model": answer_pick(graph, text)}
        row.update({name: statistic_pick(graph, name) for name in STATISTICS})
        rows.append(row)
    return rows


@dataclass
class ShortcutCell:
    """One hop count's (or all examples') numbers for one statistic and one model.

    n: examples; ties: examples where the statistic picks nothing; statistic_right: fraction of the
    untied examples where it picks the target; followed: fraction of the untied examples with a model
    pick where the model picks what the statistic picks; accuracy_untied / accuracy_tied: the model's
    accuracy on the untied and on the tied examples (None where there are none).
    """

    n: int
    ties: int
    statistic_right: float | None
    followed: float | None
    accuracy_untied: float | None
    accuracy_tied: float | None


def _fraction(hits: Sequence[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def _cell(rows: Sequence[dict[str, Any]], statistic: str) -> ShortcutCell:
    untied = [r for r in rows if r[statistic] is not None]
    tied = [r for r in rows if r[statistic] is None]
    return ShortcutCell(
        n=len(rows), ties=len(tied),
        statistic_right=_fraction([r[statistic] == r["target"] for r in untied]),
        followed=_fraction([r["model"] == r[statistic] for r in untied if r["model"] is not None]),
        accuracy_untied=_fraction([r["model"] == r["target"] for r in untied]),
        accuracy_tied=_fraction([r["model"] == r["target"] for r in tied]))


def shortcut_table(rows: Sequence[dict[str, Any]], statistic: str) -> dict[str, ShortcutCell]:
    """`ShortcutCell`s by hop count ("3", "4", ...) and over all examples ("all")."""
    _statistic(statistic)
    hops = sorted({r["hops"] for r in rows})
    table = {str(h): _cell([r for r in rows if r["hops"] == h], statistic) for h in hops}
    table["all"] = _cell(rows, statistic)
    return table


def format_table(table: dict[str, ShortcutCell], statistic: str, label: str) -> str:
    """A markdown table of `shortcut_table`'s cells, one line per hop count."""

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f}"

    lines = [f"**{label}**, statistic `{statistic}` ({STATISTICS[statistic][0]})", "",
             "| hops | n | ties | statistic right (untied) | model follows it (untied) | model accuracy, untied "
             "| model accuracy, ties |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {h} | {c.n} | {c.ties} | {pct(c.statistic_right)} | {pct(c.followed)} | {pct(c.accuracy_untied)} "
              f"| {pct(c.accuracy_tied)} |" for h, c in table.items()]
    return "\n".join(lines) + "\n"
