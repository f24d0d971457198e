"""ProsQA: graph reasoning over a random DAG, generated as in the paper's Algorithm 1.

    examples = generate_prosqa(17_886, seed=0)           # list[Example], official format + graph keys

The graph type, its algorithms and its sentences live in `tasks.prosqa_graph`.

Generation follows the paper's Algorithm 1 (Hao et al. 2024, appendix). The free parameters are fixed in `ProsQAConfig`, chosen so that the
statistics match the official data (tests/test_prosqa.py checks this against prosqa_valid.json):
- 28 nodes are drawn and the isolated ones dropped; that alone reproduces the official node-count
  histogram (14-28, mean 22.8);
- the question's entity is the start node whose farthest exclusive leaf is farther (ties at random),
  and that leaf is the target: the official data always asks for the farthest one;
- 3-6 hops are kept, each count with a fitted probability (`hop_keep`).
One reading differs from the paper's text: see `ProsQAConfig.restricted_draw_unlabelled`.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from multiprocessing import Pool

from tqdm import tqdm

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example
from coconut_lm.tasks.prosqa_graph import ProsQAGraph, sentence, shortest_distances

# The names used by the official data (all 17 entities and 38 concepts of prosqa_valid.json).
ENTITY_NAMES: tuple[str, ...] = (
    "Alex", "Bob", "Carol", "Davis", "Eva", "Fae", "Gabriel", "Jack", "Max", "Oliver", "Polly", "Rex",
    "Sally", "Sam", "Stella", "Tom", "Wren",
)
CONCEPT_NAMES: tuple[str, ...] = (
    "bompus", "boompus", "brimpus", "chorpus", "dumpus", "felpus", "fompus", "gerpus", "gorpus",
    "grimpus", "gwompus", "hilpus", "impus", "jelpus", "jompus", "kerpus", "lempus", "lorpus", "numpus",
    "quimpus", "rempus", "rompus", "rorpus", "scrompus", "shumpus", "sterpus", "storpus", "terpus",
    "timpus", "tumpus", "vumpus", "worpus", "wumpus", "yerpus", "yimpus", "yumpus", "zhorpus", "zumpus",
)

_CHUNK = 500  # examples per deterministic sub-seed: the output never depends on the worker count
_MAX_FAILURES = 10_000  # consecutive rejected graphs before a config is declared impossible


@dataclass(frozen=True)
class ProsQAConfig:
    """The generator's parameters. Defaults reproduce the official data's statistics."""

    n_nodes: int = 28
    """Nodes drawn per graph (incl. the two start nodes) before isolated nodes are dropped."""
    parents_mean: float = 1.5
    """Mean of the Poisson draw for the number of parents of each new node (paper)."""
    p_only_first: float = 0.35
    """Probability that a new node may only descend from node 0 (paper)."""
    p_only_second: float = 0.35
    """Probability that a new node may only descend from node 1 (paper); otherwise any node."""
    depth_weight: float = 1.5
    """Parent sampling weight is depth * depth_weight + 1, depth = hops from the nearest source (paper)."""
    restricted_draw_unlabelled: bool = False
    """Whether the two restricted draws may also pick nodes that descend from neither start node.
    The paper's text says yes, the official data says no. Measured on 2000 items against the 300 of
    prosqa_valid.json (official / False / True): nodes 22.8 / 23.1 / 25.2, entities per graph
    2.5 / 2.8 / 4.8, shortest paths 1.61 / 1.57 / 1.40."""
    min_hops: int = 3
    """Shortest root->target distance allowed (the official data has 3..6)."""
    max_hops: int = 6
    """Longest shortest root->target distance allowed."""
    hop_keep: tuple[float, ...] = (0.89, 1.0, 0.97, 0.67)
    """Probability of keeping a graph whose question needs min_hops, min_hops+1, ... max_hops steps.
    Fitted so the step mix matches the official 41/43/14/2 % (3/4/5/6 steps); with all ones the
    generator gives 43/40/14/3 %."""


# ---------------------------------------------------------------------------------- generation


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's multiplication method: exact and fast for small means."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _weighted_sample(rng: random.Random, items: list[int], weights: list[float], k: int) -> list[int]:
    """k distinct items, each draw proportional to the weights of the items not yet drawn.

    Drawing with replacement and skipping repeats gives exactly that distribution, and is fast here.
    """
    cum = list(accumulate(weights))
    out: list[int] = []
    while len(out) < k:
        item = items[bisect_right(cum, rng.random() * cum[-1])]
        if item not in out:
            out.append(item)
    return out


def _draw_dag(rng: random.Random, cfg: ProsQAConfig) -> tuple[list[list[int]], list[int]]:
    """Algorithm 1: parents of each node and its label (bit 1: descends from node 0, bit 2: from node 1)."""
    labels, depth, weight, parents = [1, 2], [0, 0], [1.0, 1.0], [[], []]
    by_label: dict[int, list[int]] = {0: [], 1: [0], 2: [1], 3: []}
    for idx in range(2, cfg.n_nodes):
        k, r = _poisson(rng, cfg.parents_mean), rng.random()
        chosen: list[int] = []
        if k:
            if r < cfg.p_only_first + cfg.p_only_second:
                own = by_label[1] if r < cfg.p_only_first else by_label[2]
                cands = own + by_label[0] if cfg.restricted_draw_unlabelled else own
                chosen = _weighted_sample(rng, cands, [weight[c] for c in cands], min(k, len(cands)))
            else:
                chosen = _weighted_sample(rng, list(range(idx)), weight, min(k, idx))
        label = 0
        for p in chosen:
            label |= labels[p]
        labels.append(label)
        depth.append(1 + min(depth[p] for p in chosen) if chosen else 0)
        weight.append(depth[-1] * cfg.depth_weight + 1)
        parents.append(chosen)
        by_label[label].append(idx)
    return parents, labels


def _try_example(rng: random.Random, cfg: ProsQAConfig) -> Example | None:
    """One attempt: draw a graph, pick the question; None when the graph cannot make a valid one."""
    parents, labels = _draw_dag(rng, cfg)
    has_child = {p for ps in parents for p in ps}
    # Isolated nodes say nothing in the question, so they are not part of the graph.
    keep = [v for v in range(cfg.n_nodes) if v < 2 or parents[v] or v in has_child]
    new_id = {v: i for i, v in enumerate(keep)}
    edges = tuple((new_id[p], new_id[v]) for v in keep for p in parents[v])
    is_entity = [not parents[v] for v in keep]
    if sum(is_entity) > len(ENTITY_NAMES):
        return None
    graph = ProsQAGraph(tuple(str(i) for i in range(len(keep))), edges, 0)
    # Leaves that descend from exactly one start node, and the farthest of them for each start.
    leaves = [[v for v in range(2, len(keep)) if not graph.children[v] and labels[keep[v]] == s + 1]
              for s in (0, 1)]
    if not leaves[0] or not leaves[1]:
        return None
    dists = [shortest_distances(graph, s) for s in (0, 1)]
    far = [max(dists[s][v] for v in leaves[s]) for s in (0, 1)]
    root = 0 if far[0] > far[1] else 1 if far[1] > far[0] else rng.randrange(2)
    hops = far[root]
    if not cfg.min_hops <= hops <= cfg.max_hops or rng.random() >= cfg.hop_keep[hops - cfg.min_hops]:
        return None
    target = rng.choice([v for v in leaves[root] if dists[root][v] == hops])
    neg = rng.choice(leaves[1 - root])

    n_entities = sum(is_entity)
    people = iter(rng.sample(ENTITY_NAMES, n_entities))
    concepts = iter(rng.sample(CONCEPT_NAMES, len(keep) - n_entities))
    names = [next(people) if e else next(concepts) for e in is_entity]
    facts = [sentence(names, a, b, is_entity[a]) for a, b in edges]
    rng.shuffle(facts)
    options = [names[target], names[neg]]
    rng.shuffle(options)
    path = _random_shortest_path(rng, graph, root, target, dists[root])
    return Example(
        question=" ".join(facts) + f" Is {names[root]} a {options[0]} or {options[1]}?",
        steps=[sentence(names, a, b, is_entity[a]) for a, b in zip(path, path[1:])],
        answer=f"{names[root]} is a {names[target]}.",
        extra={"idx_to_symbol": names, "edges": [list(e) for e in edges], "root": root,
               "target": target, "neg_target": neg},
    )


def _random_shortest_path(rng: random.Random, graph: ProsQAGraph, src: int, dst: int,
                          dist: dict[int, int]) -> list[int]:
    """A uniformly random shortest path: walk back from dst, choosing parents by their path counts."""
    count = {src: 1}
    for v in sorted(dist, key=dist.__getitem__)[1:]:
        count[v] = sum(count[u] for u in graph.parents[v] if dist.get(u) == dist[v] - 1)
    path = [dst]
    while path[-1] != src:
        preds = [u for u in graph.parents[path[-1]] if dist.get(u) == dist[path[-1]] - 1]
        path.append(rng.choices(preds, weights=[count[u] for u in preds])[0])
    return path[::-1]


def _check_config(cfg: ProsQAConfig) -> None:
    problems = [
        msg for bad, msg in (
            (cfg.n_nodes < 4, "n_nodes must be >= 4"),
            (cfg.parents_mean <= 0, "parents_mean must be > 0"),
            (min(cfg.p_only_first, cfg.p_only_second) < 0 or cfg.p_only_first + cfg.p_only_second > 1,
             "p_only_first and p_only_second must be >= 0 with a sum <= 1"),
            (cfg.depth_weight < 0, "depth_weight must be >= 0"),
            (not 1 <= cfg.min_hops <= cfg.max_hops, "need 1 <= min_hops <= max_hops"),
            (len(cfg.hop_keep) != cfg.max_hops - cfg.min_hops + 1,
             "hop_keep needs one probability per hop count from min_hops to max_hops"),
            (not all(0 <= p <= 1 for p in cfg.hop_keep) or not any(cfg.hop_keep),
             "hop_keep must hold probabilities, not all 0"),
        ) if bad
    ]
    if problems:
        raise CoconutError(f"ProsQA config: {'; '.join(problems)}")


def _generate_chunk(job: tuple[int, int, int, ProsQAConfig]) -> list[Example]:
    """`count` examples from the chunk's own seed, so chunks can run in any process."""
    seed, chunk, count, cfg = job
    rng = random.Random(f"coconut-lm/prosqa/{seed}/{chunk}")  # str seeds hash with SHA-512: stable
    out: list[Example] = []
    failures = 0
    while len(out) < count:
        example = _try_example(rng, cfg)
        if example is not None:
            out.append(example)
            failures = 0
        elif (failures := failures + 1) >= _MAX_FAILURES:
            raise CoconutError(f"ProsQA config: {_MAX_FAILURES} graphs in a row gave no valid question; "
                               f"the hop range or n_nodes cannot be met ({cfg})")
    return out


def generate_prosqa(n: int, seed: int = 0, workers: int | None = None,
                    config: ProsQAConfig | None = None) -> list[Example]:
    """Generate `n` ProsQA examples in the official format (question, steps, answer + graph keys).

    The output is a function of (seed, config) alone: never of `workers`, and the first m examples are
    the same for every n >= m. `workers=None` uses one process per CPU core, `workers=1` runs in this
    process. A progress bar goes to stderr from 20,000 examples on, when stderr is a terminal.
    """
    if n < 1:
        raise CoconutError(f"ProsQA: the number of examples must be >= 1, got {n}")
    if workers is not None and workers < 1:
        raise CoconutError(f"ProsQA: workers must be >= 1, got {workers}")
    cfg = config or ProsQAConfig()
    _check_config(cfg)
    jobs = [(seed, c, min(_CHUNK, n - c * _CHUNK), cfg) for c in range(math.ceil(n / _CHUNK))]
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    out: list[Example] = []
    with tqdm(total=n, desc="ProsQA", unit="ex", file=sys.stderr, disable=n < 20_000 or not sys.stderr.isatty()) as bar, \
            (Pool(workers) if workers > 1 else contextlib.nullcontext()) as pool:
        chunks = pool.imap(_generate_chunk, jobs) if pool else map(_generate_chunk, jobs)
        for chunk in chunks:
            out.extend(chunk)
            bar.update(len(chunk))
    return out
