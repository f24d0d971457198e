"""ProntoQA: 5-hop true/false questions over a fictional ontology, with relevant distractors.

    examples = generate_prontoqa(9000, seed=0)     # a pure function of (n, seed)
    save_examples(examples, "data/prontoqa_train.json")
    example = prontoqa_from_raw(raw["example1"])   # the original generator's own output

The sentences (names, parsing, rendering) and the proof of an answer live in `tasks.prontoqa_sentences`.

Every question has the shape measured on the 200 items of prontoqa_valid.json (the paper's split,
made by the "5hop_0shot_random" run of the ProntoQA generator):
- 14 of the 17 concept names, one of 9 entity names, one property from each of 11 of the 13
  property families;
- a chain of 5 concepts c1..c5; the entity is a c1; each ci (i < 5) has two children, c(i+1) and a
  side concept; c5 has two leaf children; every concept but one leaf carries one property;
- "relevant" distractors: the entity is also a member of a second concept d (one property, one
  leaf child), and an unconnected concept carries the query's property with the other polarity;
- 23 rule sentences in random order, then "Alex is a c1." and "Alex is a d." in random order
  (25 sentences), then "True or false: Alex is [not] P." where P is c5's property;
- 6 steps: "Alex is a c1. Rule c1 -> c2." ... "Alex is a c5. Rule c5 -> P." and "Alex is [not] P.".

The graph keys follow the fork that made prontoqa_valid.json, so converted and generated files
look exactly like the valid file: `idx_to_symbol` is the entity, the chain, then the other concepts
(sorted) that are named in singular form somewhere ("Each X is ...", "... is a X", or the subject
of "Xes are ..."); a leaf only ever named as "... are Xes." is left out, as in the fork. `edges`
are the concept-to-concept rules between listed symbols, the "Every/Each" ones first, then the
"Xes are Yes" ones, each in context order. `root` is 0, `target` is c5 and `neg_target` the first
symbol off the chain.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, NoReturn

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example, read_json
from coconut_lm.tasks.prontoqa_sentences import (
    CONCEPT_NAMES,
    ENTITY_NAMES,
    PROPERTY_FAMILIES,
    QUERY_PREFIX,
    Fact,
    Membership,
    ProntoQAFormatError,
    Rule,
    parse_sentence,
    render,
    split_sentences,
)

HOPS = 5
# Probability that a concept's property is negated, by role, as measured on prontoqa_valid.json:
# chain concepts c1..c4 26%, c5 48% (it decides the answer), every other concept 31-35%.
P_NEGATED_CHAIN = 0.25
P_NEGATED_C5 = 0.5
P_NEGATED_OTHER = 1 / 3
# Rule sentence forms, measured: "Xes are Ys." 49%, "Each X is a Y." 25%, "Every X is a Y." 24%.
RULE_FORMS = ("plural", "plural", "each", "every")


# ----------------------------------------------------------------------------- raw format


def _fail(where: str | None, fieldname: str, msg: str) -> NoReturn:
    prefix = f"{where}: " if where else ""
    raise ProntoQAFormatError(f"{prefix}field '{fieldname}': {msg}")


def graph_keys(entity: str, chain: list[str], context: list[str]) -> dict[str, Any]:
    """The fork's graph keys (see the module docstring) from a question's context sentences."""
    parsed = [parse_sentence(s) for s in context]
    named = set()
    for p in parsed:
        if isinstance(p, Membership):
            named.add(p.concept)
        elif isinstance(p, Rule):
            named.add(p.subject)
            if p.to_concept and p.form != "plural":
                named.add(p.obj)
    symbols = [entity, *chain]
    symbols += sorted(named - set(symbols))
    index = {s: i for i, s in enumerate(symbols)}
    concept_rules = [p for p in parsed if isinstance(p, Rule) and p.to_concept and not p.negated]
    ordered = [r for r in concept_rules if r.form != "plural"] + [
        r for r in concept_rules if r.form == "plural"
    ]
    edges = [
        [index[r.subject], index[r.obj]] for r in ordered if r.subject in index and r.obj in index
    ]
    off_chain = next((i for i, s in enumerate(symbols) if i > 0 and s not in chain), -1)
    return {
        "idx_to_symbol": symbols,
        "edges": edges,
        "root": 0,
        "target": index[chain[-1]] if chain else -1,
        "neg_target": off_chain,
        "chain_concepts": list(chain),
    }


def prontoqa_from_raw(obj: Any, where: str | None = None) -> Example:
    """Convert one item of the ProntoQA generator's output into the common format.

    `obj` is `{"question", "query", "chain_of_thought", "answer"}`, optionally wrapped as
    `{"test_example": {...}}` (the generator's file layout). The chain-of-thought sentences are
    paired into steps ("Alex is a tumpus. Tumpuses are gorpuses."), the last one alone. `where`
    (e.g. "file.json: item 'example3'") prefixes error messages.
    """
    if isinstance(obj, dict) and "test_example" in obj:
        obj = obj["test_example"]
    if not isinstance(obj, dict):
        raise ProntoQAFormatError(
            f"{where + ': ' if where else ''}expected an object, got {type(obj).__name__}"
        )
    for name in ("question", "query", "chain_of_thought", "answer"):
        if name not in obj:
            _fail(where, name, "missing")
    question, query, answer = obj["question"], obj["query"], obj["answer"]
    cot = obj["chain_of_thought"]
    if not isinstance(question, str) or not question.strip():
        _fail(where, "question", "expected a non-empty string")
    if not isinstance(query, str) or not query.startswith(QUERY_PREFIX):
        _fail(where, "query", f"expected a string starting '{QUERY_PREFIX}'")
    if answer not in ("True", "False"):
        _fail(where, "answer", f"expected 'True' or 'False', got {answer!r}")
    if not isinstance(cot, list) or not cot or not all(isinstance(s, str) and s for s in cot):
        _fail(where, "chain_of_thought", "expected a non-empty list of sentences")
    if len(cot) % 2 != 1:
        _fail(where, "chain_of_thought", f"expected an odd number of sentences, got {len(cot)}")
    try:
        goal = parse_sentence(query.removeprefix(QUERY_PREFIX))
    except ProntoQAFormatError as e:
        _fail(where, "query", str(e))
    if not isinstance(goal, Fact):
        _fail(where, "query", f"'{query}' does not ask about a property")
    chain = []
    for s in cot[0::2]:
        try:
            p = parse_sentence(s)
        except ProntoQAFormatError as e:
            _fail(where, "chain_of_thought", str(e))
        if isinstance(p, Membership):
            chain.append(p.concept)
    try:
        extra = graph_keys(goal.entity, chain, split_sentences(question))
    except ProntoQAFormatError as e:
        _fail(where, "question", str(e))
    steps = [" ".join(cot[i : i + 2]) for i in range(0, len(cot), 2)]
    return Example(question=f"{question} {query}", steps=steps, answer=answer, extra=extra)


def load_prontoqa_raw(path: str | os.PathLike) -> list[Example]:
    """Convert a whole generator output file (`{"example1": {"test_example": ...}, ...}`)."""
    p = Path(path)
    data = read_json(p)
    if not isinstance(data, dict) or not data:
        raise ProntoQAFormatError(f"{p}: expected a non-empty JSON object of named examples")
    return [prontoqa_from_raw(v, where=f"{p}: item '{k}'") for k, v in data.items()]


# ----------------------------------------------------------------------------- generation


def _sample_raw(rng: random.Random, hops: int = HOPS) -> dict[str, Any]:
    """One question in the generator's raw layout: question, query, chain_of_thought, answer.

    `hops` is the chain's length (the module docstring's shape has 5: c1..c5); the chain's side concepts,
    the leaves under its last concept and the three distractor concepts keep their shape for any length,
    and the rng draws for 5 hops are exactly those the generator has always made.
    """
    h = hops
    entity = rng.choice(ENTITY_NAMES)
    names = rng.sample(CONCEPT_NAMES, 2 * h + 4)
    chain, sides = names[0:h], names[h:2 * h - 1]
    leaf_with_prop, bare_leaf, member, member_child, unconnected = names[2 * h - 1:2 * h + 4]
    families = rng.sample(PROPERTY_FAMILIES, 2 * h + 1)

    def form() -> str:
        return rng.choice(RULE_FORMS)

    def prop_rule(concept: str, family: tuple[str, ...], p_negated: float) -> Rule:
        return Rule(concept, rng.choice(family), rng.random() < p_negated, False, form())

    chain_links = [Rule(a, b, False, True, form()) for a, b in zip(chain, chain[1:])]
    chain_props = [prop_rule(c, families[i], P_NEGATED_CHAIN) for i, c in enumerate(chain[:-1])]
    last_prop = prop_rule(chain[-1], families[h - 1], P_NEGATED_C5)
    rules = [*chain_links, *chain_props, last_prop]
    rules += [Rule(c, s, False, True, form()) for c, s in zip(chain, sides)]
    rules += [prop_rule(s, families[h + i], P_NEGATED_OTHER) for i, s in enumerate(sides)]
    rules += [Rule(chain[-1], leaf, False, True, form()) for leaf in (leaf_with_prop, bare_leaf)]
    rules.append(prop_rule(leaf_with_prop, families[2 * h - 1], P_NEGATED_OTHER))
    rules.append(Rule(member, member_child, False, True, form()))
    rules.append(prop_rule(member, families[2 * h], P_NEGATED_OTHER))
    # The "relevant" distractor: the query's property with the other polarity, out of reach.
    rules.append(Rule(unconnected, last_prop.obj, not last_prop.negated, False, form()))
    context = [render(r) for r in rules]
    rng.shuffle(context)
    memberships = [render(Membership(entity, chain[0])), render(Membership(entity, member))]
    rng.shuffle(memberships)

    query_negated = rng.random() < 0.5
    cot = []
    for i, c in enumerate(chain):
        cot += [render(Membership(entity, c)), render(chain_links[i] if i < h - 1 else last_prop)]
    cot.append(render(Fact(entity, last_prop.obj, last_prop.negated)))
    return {
        "question": " ".join(context + memberships),
        "query": QUERY_PREFIX + render(Fact(entity, last_prop.obj, query_negated)),
        "chain_of_thought": cot,
        "answer": "True" if query_negated == last_prop.negated else "False",
    }


#: Chain lengths the generator can draw: 17 concept names hold 2h + 4 concepts, 13 families 2h + 1 properties.
MAX_HOPS = 6


def generate_prontoqa(n: int, seed: int = 0, min_hops: int = HOPS, max_hops: int = HOPS) -> list[Example]:
    """Generate `n` ProntoQA examples in the common format; a pure function of (n, seed, min_hops, max_hops).

    Each chain has `min_hops`..`max_hops` concepts (drawn uniformly per example when they differ; the official
    shape has 5, the default), so shorter chains can serve as a curriculum. The first k examples of a run do not
    depend on n, so a larger set extends a smaller one.
    """
    if n < 0:
        raise CoconutError(f"the number of examples must be >= 0, got {n}")
    if not 1 <= min_hops <= max_hops <= MAX_HOPS:
        raise CoconutError(f"ProntoQA hops must satisfy 1 <= min_hops <= max_hops <= {MAX_HOPS}, "
                           f"got min_hops={min_hops}, max_hops={max_hops}")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        hops = min_hops if min_hops == max_hops else rng.randint(min_hops, max_hops)
        out.append(prontoqa_from_raw(_sample_raw(rng, hops), where=f"generated item {i}"))
    return out
