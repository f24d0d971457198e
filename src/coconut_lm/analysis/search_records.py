"""The latent search's records and their summary, without a model: what `analysis.latent_search` measured.

    records = load_search_records("analysis/latent_search.jsonl")   # list[SearchRecord]
    summary = summarize_search(records)          # frontier stats, parallelism, value against height
    write_search(records, summary, "analysis/")  # latent_search.jsonl + latent_search_summary.json

A `SearchRecord` holds one example's `Frontier` per hop count, each with every frontier node's
`NodeValue`. The summary is the paper's §5 reading of them: the mean frontier (`frontier_stats`),
the parallelism curves (the summed value of the k best nodes, `parallelism`) and value against a
node's height (`value_by_height`).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import atomic_write_text

TOP_KS = (1, 2, 3)
#: How a frontier node's value is read, per form of the data (see analysis.latent_search).
VALUE_DEFINITION = {
    "words": "P(name | question <bot> <latent>*(h*c) <eot> 'Every') after h hops of thoughts",
    "symbolic": "P(name | question <bot> <latent>*((h-1)*c) <eot>): a symbolic step is the node it reaches",
}


# ------------------------------------------------------------------------------------- records


@dataclass
class NodeValue:
    """One frontier node and the value the model gives it."""

    node: int
    name: str
    value: float  # P(name tokens | prompt, template prefix)
    log_value: float
    correct: bool  # the target is reachable from this node
    is_target: bool
    height_shortest: int
    height_longest: int
    parents: list[int]  # its parents in the previous frontier (the root for h = 1)
    n_tokens: int  # tokens of the name


@dataclass
class Frontier:
    """The frontier after `hops` hops' worth of thoughts, with every node's value."""

    hops: int
    n_thoughts: int
    prefix: str  # the template text before the name: "Every", or "" when h = 0
    prefix_prob: float  # P(prefix | prompt); 1.0 when the prefix is empty
    nodes: list[NodeValue]

    def ranked(self) -> list[float]:
        """Node values, largest first."""
        return sorted((n.value for n in self.nodes), reverse=True)

    def top_k(self, k: int) -> float:
        """Cumulative value of the k best nodes (all of them when there are fewer than k)."""
        return sum(self.ranked()[:k])


@dataclass
class SearchRecord:
    """One example's latent-search values: a `Frontier` per hop count."""

    index: int
    question_id: str
    root: int
    root_name: str
    target: int
    target_name: str
    target_hops: int  # shortest root -> target distance
    gold_path: list[str]  # node names along the example's steps (empty if they do not parse)
    frontiers: list[Frontier] = field(default_factory=list)

    def frontier(self, hops: int) -> Frontier | None:
        """The frontier after `hops` hops, or None if it was not computed."""
        return next((f for f in self.frontiers if f.hops == hops), None)


def search_record_from_dict(d: dict[str, Any]) -> SearchRecord:
    """Rebuild a `SearchRecord` from its JSON form (one line of latent_search.jsonl)."""
    frontiers = [Frontier(**{**f, "nodes": [NodeValue(**n) for n in f["nodes"]]}) for f in d["frontiers"]]
    return SearchRecord(**{**d, "frontiers": frontiers})


def load_search_records(path: str | os.PathLike) -> list[SearchRecord]:
    """Read latent_search.jsonl."""
    p = Path(path)
    if not p.is_file():
        raise CoconutError(f"{p}: no such file")
    out = []
    for i, line in enumerate(p.read_text().splitlines()):
        if line.strip():
            try:
                out.append(search_record_from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError, KeyError) as e:
                raise CoconutError(f"{p}: line {i + 1}: not a latent-search record ({e})") from None
    return out


# ------------------------------------------------------------------------------------ summary


@dataclass
class FrontierStats:
    """Averages over examples of one frontier (thought h)."""

    hops: int
    n_examples: int  # examples with a non-empty frontier
    mean_size: float  # frontier nodes per example
    mean_total_value: float  # probability mass the model puts on frontier nodes
    mean_correct_value: float | None  # mean value of a node that leads to the target
    mean_incorrect_value: float | None  # mean value of a node that does not
    top_node_correct: float | None  # fraction of examples whose best-valued node leads to the target
    mean_prefix_prob: float  # P("Every" | prompt), averaged


@dataclass
class ParallelismCurve:
    """Cumulative value of the top-k frontier nodes at thought `hops`, one per example."""

    hops: int
    k: int
    n: int
    mean: float
    sorted_values: list[float]  # ascending: the value at each percentile of the test set


@dataclass
class HeightBin:
    """Mean value of the frontier nodes of one height (of one kind), correct or not."""

    hops: int
    height_kind: str  # "shortest" or "longest" distance to a leaf
    correct: bool
    height: int
    n: int
    mean_value: float
    sem: float  # standard error of the mean (0 when n = 1)


@dataclass
class SearchSummary:
    """Everything the latent-search figures and tables show."""

    n_examples: int
    frontiers: list[FrontierStats]
    parallelism: list[ParallelismCurve]
    value_by_height: list[HeightBin]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def frontier_stats(records: Sequence[SearchRecord], hops: int) -> FrontierStats:
    """Averages of the frontier after `hops` hops over the examples that have one."""
    frs = [f for r in records if (f := r.frontier(hops)) is not None]
    full = [f for f in frs if f.nodes]
    nodes = [n for f in full for n in f.nodes]
    return FrontierStats(
        hops=hops, n_examples=len(full),
        mean_size=_mean([len(f.nodes) for f in full]) or 0.0,
        mean_total_value=_mean([sum(n.value for n in f.nodes) for f in full]) or 0.0,
        mean_correct_value=_mean([n.value for n in nodes if n.correct]),
        mean_incorrect_value=_mean([n.value for n in nodes if not n.correct]),
        top_node_correct=_mean([float(max(f.nodes, key=lambda n: n.value).correct) for f in full]),
        mean_prefix_prob=_mean([f.prefix_prob for f in frs]) or 0.0,
    )


def parallelism(records: Sequence[SearchRecord], hops: int, ks: Sequence[int] = TOP_KS) -> list[ParallelismCurve]:
    """The paper's parallelism curves: per example, the summed value of its k best frontier nodes."""
    frs = [f for r in records if (f := r.frontier(hops)) is not None and f.nodes]
    out = []
    for k in ks:
        values = sorted(f.top_k(k) for f in frs)
        out.append(ParallelismCurve(hops=hops, k=k, n=len(values), mean=_mean(values) or 0.0, sorted_values=values))
    return out


def value_by_height(records: Sequence[SearchRecord], hops: int) -> list[HeightBin]:
    """Mean node value per (height kind, correct or not, height) at thought `hops`."""
    groups: dict[tuple[str, bool, int], list[float]] = defaultdict(list)
    for r in records:
        f = r.frontier(hops)
        for n in f.nodes if f else []:
            groups[("shortest", n.correct, n.height_shortest)].append(n.value)
            groups[("longest", n.correct, n.height_longest)].append(n.value)
    bins = []
    for (kind, correct, height), vals in sorted(groups.items()):
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        bins.append(HeightBin(hops=hops, height_kind=kind, correct=correct, height=height, n=len(vals),
                              mean_value=m, sem=sd / math.sqrt(len(vals))))
    return bins


def summarize_search(records: Sequence[SearchRecord]) -> SearchSummary:
    """Frontier statistics, parallelism curves and value-by-height bins for every computed hop count."""
    hops = sorted({f.hops for r in records for f in r.frontiers})
    return SearchSummary(
        n_examples=len(records),
        frontiers=[frontier_stats(records, h) for h in hops],
        parallelism=[c for h in hops for c in parallelism(records, h)],
        value_by_height=[b for h in hops for b in value_by_height(records, h)],
    )


def write_search(records: Sequence[SearchRecord], summary: SearchSummary, out_dir: str | os.PathLike,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write latent_search.jsonl (one record per example) and latent_search_summary.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "latent_search.jsonl", "".join(json.dumps(asdict(r)) + "\n" for r in records))
    atomic_write_text(out / "latent_search_summary.json",
                      json.dumps({**asdict(summary), **(extra or {})}, indent=2) + "\n")
    return out


def pick_tree_example(records: Sequence[SearchRecord]) -> int:
    """The first example whose search tree fits a figure (2-5 children, 2-8 grandchildren), else the first."""
    for r in records:
        f1, f2 = r.frontier(1), r.frontier(2)
        if f1 and f2 and 2 <= len(f1.nodes) <= 5 and 2 <= len(f2.nodes) <= 8:
            return r.index
    return records[0].index
