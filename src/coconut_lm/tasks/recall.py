"""Associative recall: the smallest in-context lookup, used as a learnability check.

    examples = generate_recall(2000, pairs=8, seed=0)
    examples[0].question   # "k3 v17 k9 v2 ... [Q] k9"      answer: "v2"

Every ProsQA or ProntoQA step needs the model to find, in its context, the item that matches
something and read what follows it. A from-scratch model that cannot learn this lookup within a
few hundred steps cannot learn the tasks either (docs/experiments.md), so the test suite trains a
2-layer model on it. The examples are in the symbolic form (one token per symbol, no chain).
"""

from __future__ import annotations

import random

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example
from coconut_lm.tasks.symbolic_form import QUERY, SYMBOLIC


def generate_recall(n: int, pairs: int = 8, n_keys: int = 32, n_values: int = 32, seed: int = 0) -> list[Example]:
    """`n` examples of `pairs` distinct keys with random values, then one key to look up."""
    if n < 1 or pairs < 1 or n_values < 1:
        raise CoconutError("recall: n, pairs and n_values must be >= 1")
    if pairs > n_keys:
        raise CoconutError(f"recall: {pairs} distinct keys need n_keys >= {pairs}, got {n_keys}")
    rng = random.Random(f"coconut-lm/recall/{seed}")
    out = []
    for _ in range(n):
        keys = rng.sample(range(n_keys), pairs)
        values = [rng.randrange(n_values) for _ in keys]
        q = rng.randrange(pairs)
        context = " ".join(f"k{k} v{v}" for k, v in zip(keys, values))
        out.append(Example(question=f"{context} {QUERY} k{keys[q]}", steps=[], answer=f"v{values[q]}",
                           extra={"format": SYMBOLIC}))
    return out
