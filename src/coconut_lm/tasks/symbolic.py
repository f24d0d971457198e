"""ProsQA in symbolic form: one token per node, as in the from-scratch Coconut literature.

    sym = to_symbolic(example)                       # an official-format ProsQA example -> symbolic
    sym = to_symbolic(example, relabel=rng)          # node names drawn at random from 0..n_symbols-1
    examples = symbolize(load_examples("data/prosqa_valid.json"), seed=0)

A graph becomes its edges, one `s t` pair each, separated by `|` and shuffled, then the two options
and the root (Zhu et al. 2025, "Reasoning by Superposition"):

    question  "3 5 | 0 3 | 5 7 | 1 4 | 4 8 [Q] 8 7 [R] 0"
    steps     ["3", "5", "7"]            # the nodes of the shortest path after the root
    answer    "7"

Node names are the graph's node indices (the official `idx_to_symbol` order), or, with `relabel`,
a random injective relabelling into 0..n_symbols-1 drawn per example: an augmentation that stops
a model from tying meaning to particular names. The graph keys (`idx_to_symbol` now holding the
symbols, `edges`, `root`, `target`, `neg_target`) are kept, so every graph tool reads the result,
and `"format": "symbolic"` marks it for the trainer, which then builds `build_symbol_tokenizer`.

`symbolize`, `relabel` and `alphabet_for` also serve symbolic ProntoQA (`tasks.symbolic_prontoqa`),
which they tell by its items.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example
from coconut_lm.tasks.symbolic_form import EDGE_SEP, QUERY, ROOT, SYMBOLIC

#: Node names available to relabelling: the official graphs have at most 28 nodes.
DEFAULT_SYMBOLS = 32


def alphabet(n_symbols: int = DEFAULT_SYMBOLS) -> str:
    """Every node name and marker of the symbolic form, as one text (a tokenizer built on data adds it)."""
    return " ".join([*map(str, range(n_symbols)), EDGE_SEP, QUERY, ROOT])


def alphabet_for(examples: Sequence[Example]) -> str:
    """The alphabet of the symbolic task `examples` hold: symbolic ProntoQA's, else symbolic ProsQA's (`alphabet`)."""
    from coconut_lm.tasks.symbolic_prontoqa import alphabet as prontoqa_alphabet
    from coconut_lm.tasks.symbolic_prontoqa import is_symbolic_prontoqa

    return prontoqa_alphabet() if any(is_symbolic_prontoqa(e) for e in examples) else alphabet()


def is_symbolic(example: Example) -> bool:
    """Whether `example` is in the symbolic form (it carries `"format": "symbolic"`)."""
    return example.extra.get("format") == SYMBOLIC


def _question(names: Sequence[str], edges: Sequence[Sequence[int]], options: Sequence[int], root: int) -> str:
    """The symbolic question: edges `s t` joined by `|`, then `[Q] a b [R] root` (module docstring)."""
    text = f" {EDGE_SEP} ".join(f"{names[a]} {names[b]}" for a, b in edges)
    return text + f" {QUERY} {names[options[0]]} {names[options[1]]} {ROOT} {names[root]}"


def _path_nodes(example: Example, names: Sequence[str], index: int | None) -> list[int]:
    """The chain's nodes after the root, read from the word-form steps ("X is a Y." -> Y)."""
    from coconut_lm.tasks.prosqa_graph import parse_fact

    node_of = {n: i for i, n in enumerate(names)}
    out = []
    for j, step in enumerate(example.steps):
        fact = parse_fact(step)
        if fact is None or fact[1] not in node_of:
            where = f"item {index}: " if index is not None else ""
            raise CoconutError(f"{where}field 'steps': step {j} is not a ProsQA fact about a graph node: {step!r}")
        out.append(node_of[fact[1]])
    return out


def to_symbolic(example: Example, relabel: random.Random | None = None, n_symbols: int = DEFAULT_SYMBOLS,
                shuffle: random.Random | None = None, index: int | None = None) -> Example:
    """The symbolic rendering of a word-form ProsQA example (module docstring).

    `relabel` draws new node names from 0..n_symbols-1; `shuffle` orders the edges (default: a
    generator seeded by the question text, so the rendering of an example never changes).
    """
    from coconut_lm.tasks.prosqa_graph import graph_from_example

    if is_symbolic(example):
        raise CoconutError(f"item {index}: already in the symbolic form" if index is not None else
                           "the example is already in the symbolic form")
    graph = graph_from_example(example, index)
    n = len(graph)
    if n > n_symbols:
        raise CoconutError(f"item {index}: {n} nodes do not fit in {n_symbols} symbols (raise n_symbols)")
    labels = relabel.sample(range(n_symbols), n) if relabel is not None else list(range(n))
    sym = [str(s) for s in labels]
    edges = list(graph.edges)
    (shuffle or random.Random(example.question)).shuffle(edges)
    question = _question(sym, edges, graph.options or (graph.target, graph.neg_target), graph.root)
    path = _path_nodes(example, graph.names, index)
    return Example(question=question, steps=[sym[v] for v in path], answer=sym[graph.target],
                   extra={"idx_to_symbol": sym, "edges": [list(e) for e in graph.edges], "root": graph.root,
                          "target": graph.target, "neg_target": graph.neg_target, "format": SYMBOLIC})


def symbolize(examples: Sequence[Example], seed: int | None = None, n_symbols: int = DEFAULT_SYMBOLS,
              relabel: bool = False) -> list[Example]:
    """Render every example symbolically; `relabel` draws names per example from a generator seeded by `seed`.

    Word-form ProntoQA (True/False answers, "True or false:" queries) goes to `tasks.symbolic_prontoqa`.
    """
    from coconut_lm.tasks.symbolic_prontoqa import looks_like_word_prontoqa, symbolize_prontoqa

    if looks_like_word_prontoqa(examples):
        return symbolize_prontoqa(examples, seed=seed, relabel=relabel)
    rng = random.Random(f"coconut-lm/symbolic/{seed}")
    return [to_symbolic(ex, relabel=rng if relabel else None, n_symbols=n_symbols, shuffle=rng, index=i)
            for i, ex in enumerate(examples)]


def relabel(example: Example, rng: random.Random, n_symbols: int = DEFAULT_SYMBOLS) -> Example:
    """The same symbolic problem under new node names drawn from 0..n_symbols-1, its edges reshuffled.

    The trainer calls this on every training example at every epoch (`relabel_every_epoch`), so a
    model sees each graph under fresh names, as the from-scratch literature's augmentation.
    Symbolic ProntoQA is relabelled by `tasks.symbolic_prontoqa.relabel_prontoqa`.
    """
    from coconut_lm.tasks.symbolic_prontoqa import is_symbolic_prontoqa, relabel_prontoqa

    if is_symbolic_prontoqa(example):
        return relabel_prontoqa(example, rng)
    if not is_symbolic(example):
        raise CoconutError("relabel: the example is not in the symbolic form (coconut-lm data symbolic)")
    old = example.extra["idx_to_symbol"]
    if len(old) > n_symbols:
        raise CoconutError(f"relabel: {len(old)} nodes do not fit in {n_symbols} symbols")
    new = [str(s) for s in rng.sample(range(n_symbols), len(old))]
    rename = dict(zip(old, new))
    edges = [tuple(e) for e in example.extra["edges"]]
    rng.shuffle(edges)
    a, b, _, root = example.question.split(f" {QUERY} ", 1)[1].split()  # "a b [R] root": the options' order
    question = _question(new, edges, [old.index(a), old.index(b)], old.index(root))
    return Example(question=question, steps=[rename[s] for s in example.steps], answer=rename[example.answer],
                   extra={**example.extra, "idx_to_symbol": new})
