"""ProsQA: graph reasoning over a random DAG (paper Algorithm 1), and the graph helpers the analysis uses.

    examples = generate_prosqa(17_886, seed=0)           # list[Example], official format + graph keys
    graph = graph_from_example(examples[0])               # ProsQAGraph: names, edges, root, target, ...
    all_shortest_paths(graph, graph.root, graph.target)   # [(1, 3, 14, 16), ...]
    parse_question(examples[0].question)                  # the same graph, rebuilt from the text alone

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
import re
import sys
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from multiprocessing import Pool

from tqdm import tqdm

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example, ExampleFormatError

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


class ProsQAFormatError(CoconutError):
    """Text or graph data that does not follow the ProsQA format."""


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


def shortest_distances(graph: ProsQAGraph, src: int) -> dict[int, int]:
    """Hops from `src` to every node reachable from it (BFS; `src` itself at 0)."""
    dist = {src: 0}
    queue = deque([src])
    while queue:
        u = queue.popleft()
        for v in graph.children[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def descendants(graph: ProsQAGraph, node: int) -> frozenset[int]:
    """Nodes reachable from `node` by one edge or more."""
    return frozenset(shortest_distances(graph, node)) - {node}


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
