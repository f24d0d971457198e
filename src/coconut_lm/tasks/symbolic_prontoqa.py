"""ProntoQA in symbolic form: one token per concept, property and entity, as symbolic ProsQA does for nodes.

    sym = prontoqa_to_symbolic(example)                  # a word-form ProntoQA example -> symbolic
    sym = prontoqa_to_symbolic(example, relabel=rng)     # concept and entity names drawn anew
    examples = symbolize_prontoqa(load_examples("prontoqa_valid.json"), seed=0)
    relabel_prontoqa(sym, rng)                           # the same problem under new names (every epoch)

Every sentence of the context becomes a group `subject object`, the groups separated by `|`, in the
order of the word form (the rules, then the entity's memberships); then the query:

    "Every wumpus is a tumpus."  / "Wumpuses are tumpuses."  ->  "wumpus tumpus"
    "Each wumpus is happy."                                    ->  "wumpus happy"
    "Wumpuses are not happy."                                  ->  "wumpus happy ~"
    "Alex is a wumpus."                                        ->  "Alex wumpus"
    "True or false: Alex is not happy."                        ->  "[Q] Alex happy ~"

The object always stands right after its subject, so the lookup "which rule has subject X" reads the
token after X. A negation is its own token `~` after the property (a literal is `happy` or
`happy ~`): a property has one token whatever its polarity, so the model finds the queried property
by an exact match, and the answer is a parity of two negation marks (the derived literal's and the
query's) rather than an equality over ninety literal tokens (docs/experiments.md, "ProntoQA from
scratch"). A token shift of 2 shows the `~` position its property and subject. The steps are what
each word-form step concludes about the entity: the concepts of the chain, one token each, then the
property literal it reaches:

    steps   ["tumpus", "gorpus", "wumpus", "sterpus", "brimpus", "happy"]   (or the last "happy ~")
    answer  "True"              (the derived literal equals the query's literal, else "False")

The answer stays `True`/`False`, so the ProntoQA answer rule scores it. Items carry
`"format": "symbolic"` and `"task": "prontoqa"` (which tells them from symbolic ProsQA), the
entity and the chain's concepts. Relabelling maps the concepts injectively onto names drawn from
the generator's 17 concept names and the entity onto one of its 9 entity names, and reshuffles the
rules (and, separately, the memberships); the properties keep their names.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example
from coconut_lm.tasks.symbolic_form import EDGE_SEP, QUERY, SYMBOLIC

TASK = "prontoqa"
NEG = "~"


def literal(name: str, negated: bool) -> str:
    """The text of a (possibly negated) object: "happy" or "happy ~"."""
    return f"{name} {NEG}" if negated else name


def split_literal(text: str) -> tuple[str, bool]:
    """(name, negated) of a literal's text: "happy ~" -> ("happy", True)."""
    name, _, neg = text.partition(" ")
    return name, neg == NEG


def alphabet() -> str:
    """Every token the symbolic ProntoQA form can hold (a tokenizer built on data adds it, so relabelling stays known)."""
    from coconut_lm.tasks.prontoqa_sentences import CONCEPT_NAMES, ENTITY_NAMES, PROPERTY_FAMILIES

    props = [p for family in PROPERTY_FAMILIES for p in family]
    objects = [*CONCEPT_NAMES, *props]
    return " ".join([*ENTITY_NAMES, *objects, NEG, EDGE_SEP, QUERY, "True", "False"])


def is_symbolic_prontoqa(example: Example) -> bool:
    """Whether `example` is symbolic ProntoQA (`"format": "symbolic"` and `"task": "prontoqa"`)."""
    return example.extra.get("format") == SYMBOLIC and example.extra.get("task") == TASK


def looks_like_word_prontoqa(examples: Sequence[Example]) -> bool:
    """Whether a data set is word-form ProntoQA: True/False answers and a "True or false:" query in every question."""
    from coconut_lm.tasks.prontoqa_sentences import QUERY_PREFIX

    return bool(examples) and all(
        ex.answer in ("True", "False") and QUERY_PREFIX in ex.question and ex.extra.get("format") != SYMBOLIC
        for ex in examples)


def _where(index: int | None) -> str:
    return f"item {index}: " if index is not None else ""


def _render(groups: Sequence[tuple[str, str]], entity: str, query: str) -> str:
    return f" {EDGE_SEP} ".join(f"{s} {o}" for s, o in groups) + f" {QUERY} {entity} {query}"


def parse_symbolic_question(question: str) -> tuple[list[tuple[str, str]], str, str]:
    """The groups `(subject, object literal)`, the entity and the query literal of a symbolic ProntoQA question."""
    context, sep, query = question.partition(f" {QUERY} ")
    q = query.split()
    if not sep or len(q) not in (2, 3) or (len(q) == 3 and q[2] != NEG):
        raise CoconutError(f"not a symbolic ProntoQA question (no '{QUERY} entity literal' at the end): "
                           f"...{question[-40:]!r}")
    groups = []
    for g in context.split(f" {EDGE_SEP} "):
        tokens = g.split()
        if len(tokens) == 3 and tokens[2] == NEG:
            groups.append((tokens[0], f"{tokens[1]} {NEG}"))
        elif len(tokens) == 2 and NEG not in tokens:
            groups.append((tokens[0], tokens[1]))
        else:
            raise CoconutError(f"not a symbolic ProntoQA question: group {g!r} is not 'subject object [{NEG}]'")
    return groups, q[0], " ".join(q[1:])


def prontoqa_to_symbolic(example: Example, relabel: random.Random | None = None, index: int | None = None) -> Example:
    """The symbolic rendering of a word-form ProntoQA example (module docstring); `relabel` draws new names.

    The example is checked first: its answer must follow from its context (`derive_prontoqa_answer`).
    """
    from coconut_lm.tasks.prontoqa_sentences import (
        QUERY_PREFIX,
        Fact,
        Membership,
        ProntoQAFormatError,
        Rule,
        derive_prontoqa_answer,
        parse_sentence,
        split_question,
        split_sentences,
    )

    if example.extra.get("format") == SYMBOLIC:
        raise CoconutError(f"{_where(index)}already in the symbolic form")
    try:
        context, query = split_question(example.question)
        goal = parse_sentence(query.removeprefix(QUERY_PREFIX))
        parsed = [parse_sentence(s) for s in context]
        derived = derive_prontoqa_answer(example.question)
    except ProntoQAFormatError as e:
        raise CoconutError(f"{_where(index)}field 'question': {e}") from None
    if not isinstance(goal, Fact):
        raise CoconutError(f"{_where(index)}field 'question': the query does not ask about a property")
    if derived != example.answer:
        raise CoconutError(f"{_where(index)}field 'answer': {example.answer!r}, but the context proves {derived!r}")
    groups: list[tuple[str, str]] = []
    for p in parsed:
        if isinstance(p, Rule):
            groups.append((p.subject, literal(p.obj, p.negated)))
        elif isinstance(p, Membership):
            groups.append((p.entity, p.concept))
        else:
            groups.append((p.entity, literal(p.prop, p.negated)))
    steps = []
    for j, step in enumerate(example.steps):
        try:
            first = parse_sentence(split_sentences(step)[0])
        except (ProntoQAFormatError, IndexError):
            raise CoconutError(f"{_where(index)}field 'steps': cannot read step {j}: {step!r}") from None
        if isinstance(first, Rule) or first.entity != goal.entity:
            raise CoconutError(f"{_where(index)}field 'steps': step {j} does not begin with a fact about "
                               f"{goal.entity}: {step!r}")
        steps.append(first.concept if isinstance(first, Membership) else literal(first.prop, first.negated))
    chain = [s for s in steps if split_literal(s)[0] not in _properties()]
    sym = Example(question=_render(groups, goal.entity, literal(goal.prop, goal.negated)), steps=steps,
                  answer=example.answer,
                  extra={"format": SYMBOLIC, "task": TASK, "entity": goal.entity, "chain_concepts": chain})
    return relabel_prontoqa(sym, relabel, shuffle=False) if relabel is not None else sym


def _properties() -> frozenset[str]:
    from coconut_lm.tasks.prontoqa_sentences import PROPERTIES

    return PROPERTIES


def symbolize_prontoqa(examples: Sequence[Example], seed: int | None = None, relabel: bool = False) -> list[Example]:
    """Render every example symbolically; `relabel` draws names per example from a generator seeded by `seed`."""
    rng = random.Random(f"coconut-lm/symbolic-prontoqa/{seed}")
    return [prontoqa_to_symbolic(ex, relabel=rng if relabel else None, index=i) for i, ex in enumerate(examples)]


def relabel_prontoqa(example: Example, rng: random.Random, shuffle: bool = True) -> Example:
    """The same symbolic ProntoQA problem under new concept and entity names, its rules reshuffled.

    Concepts map injectively onto the generator's concept names, the entity onto one of its entity
    names; properties keep theirs. With `shuffle` the rules are reordered, and so are the
    memberships (which stay after the rules). The trainer calls this every epoch (`relabel_every_epoch`).
    """
    from coconut_lm.tasks.prontoqa_sentences import CONCEPT_NAMES, ENTITY_NAMES

    if not is_symbolic_prontoqa(example):
        raise CoconutError("relabel: the example is not symbolic ProntoQA (coconut-lm data prontoqa --format symbolic)")
    groups, entity, query = parse_symbolic_question(example.question)
    props = _properties()
    concepts: list[str] = []
    for token in [split_literal(t)[0] for g in groups for t in g]:
        if token != entity and token not in props and token not in concepts:
            concepts.append(token)
    if len(concepts) > len(CONCEPT_NAMES):
        raise CoconutError(f"relabel: {len(concepts)} concepts do not fit in {len(CONCEPT_NAMES)} names")
    rename = dict(zip(concepts, rng.sample(CONCEPT_NAMES, len(concepts))))
    rename[entity] = new_entity = rng.choice(ENTITY_NAMES)

    def name(token: str) -> str:
        bare, negated = split_literal(token)
        return literal(rename.get(bare, bare), negated)

    renamed = [(name(s), name(o)) for s, o in groups]
    if shuffle:
        rules = [g for g in renamed if g[0] != new_entity]
        members = [g for g in renamed if g[0] == new_entity]
        rng.shuffle(rules)
        rng.shuffle(members)
        renamed = rules + members
    return Example(question=_render(renamed, new_entity, query), steps=[name(s) for s in example.steps],
                   answer=example.answer,
                   extra={**example.extra, "entity": new_entity,
                          "chain_concepts": [name(c) for c in example.extra.get("chain_concepts", [])]})
