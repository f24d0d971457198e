"""ProntoQA's sentences and their logic: the ontology's names, one sentence parsed and rendered, and
the proof of a question's answer.

    parse_sentence("Every wumpus is not sour.")    # Rule('wumpus', 'sour', negated=True, ...)
    render(Membership("Alex", "impus"))           # "Alex is an impus."
    split_question(question)                      # (context sentences, "True or false: Alex is happy.")
    derive_prontoqa_answer(question)              # "True" or "False", by forward chaining

The generator and the converter of the original generator's files live in `tasks.prontoqa`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from coconut_lm.tasks.examples import ExampleFormatError

ENTITY_NAMES = ("Alex", "Fae", "Max", "Polly", "Rex", "Sally", "Sam", "Stella", "Wren")
CONCEPT_NAMES = (
    "brimpus",
    "dumpus",
    "gorpus",
    "grimpus",
    "impus",
    "jompus",
    "lempus",
    "lorpus",
    "numpus",
    "rompus",
    "shumpus",
    "sterpus",
    "tumpus",
    "vumpus",
    "wumpus",
    "yumpus",
    "zumpus",
)
PROPERTY_FAMILIES = (
    ("blue", "red", "brown", "orange"),
    ("small", "large"),
    ("metallic", "wooden", "luminous", "liquid"),
    ("transparent", "opaque"),
    ("nervous", "happy", "feisty", "shy"),
    ("bright", "dull"),
    ("sweet", "sour", "spicy", "bitter"),
    ("floral", "fruity", "earthy"),
    ("hot", "cold", "temperate"),
    ("kind", "mean", "angry", "amenable", "aggressive"),
    ("melodic", "muffled", "discordant", "loud"),
    ("slow", "moderate", "fast"),
    ("windy", "sunny", "overcast", "rainy", "snowy"),
)
PROPERTIES = frozenset(p for family in PROPERTY_FAMILIES for p in family)

QUERY_PREFIX = "True or false: "


class ProntoQAFormatError(ExampleFormatError):
    """A ProntoQA item (raw generator output or question text) cannot be read."""


# ----------------------------------------------------------------------------- sentences


@dataclass(frozen=True)
class Rule:
    """`subject` (a concept) is / is not `obj` (a concept when `to_concept`, else a property)."""

    subject: str
    obj: str
    negated: bool
    to_concept: bool
    form: str  # "plural", "each" or "every": how the sentence is worded


@dataclass(frozen=True)
class Membership:
    """`entity` is a `concept`."""

    entity: str
    concept: str


@dataclass(frozen=True)
class Fact:
    """`entity` is / is not `prop` (a property)."""

    entity: str
    prop: str
    negated: bool


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _plural(noun: str) -> str:
    return noun + "es"  # every fictional concept name ends in "-us"


def render(sentence: Rule | Membership | Fact) -> str:
    """The English sentence for a parsed sentence (the inverse of `parse_sentence`)."""
    if isinstance(sentence, Membership):
        return f"{sentence.entity} is {_article(sentence.concept)} {sentence.concept}."
    not_ = "not " if sentence.negated else ""
    if isinstance(sentence, Fact):
        return f"{sentence.entity} is {not_}{sentence.prop}."
    r = sentence
    if r.form == "plural":
        obj = _plural(r.obj) if r.to_concept else r.obj
        return f"{_plural(r.subject).capitalize()} are {not_}{obj}."
    obj = f"{_article(r.obj)} {r.obj}" if r.to_concept else r.obj
    return f"{r.form.capitalize()} {r.subject} is {not_}{obj}."


_QUANTIFIED = re.compile(r"(Each|Every) ([a-z]+) is (not )?(?:(an?) )?([a-z]+)")
_PLURAL = re.compile(r"([A-Z][a-z]*es) are (not )?([a-z]+)")
_ABOUT_ENTITY = re.compile(r"([A-Z][a-z]*) is (not )?(?:(an?) )?([a-z]+)")


def parse_sentence(text: str) -> Rule | Membership | Fact:
    """Parse one ProntoQA sentence (with or without its final period); raise on anything else."""
    s = text.strip().removesuffix(".")
    if m := _QUANTIFIED.fullmatch(s):
        form, subject, neg, article, obj = m.groups()
        return Rule(subject, obj, bool(neg), article is not None, form.lower())
    if m := _PLURAL.fullmatch(s):
        subjects, neg, obj = m.groups()
        to_concept = obj not in PROPERTIES
        if to_concept and not obj.endswith("es"):
            raise ProntoQAFormatError(f"unknown property '{obj}' in sentence '{text}'")
        return Rule(
            subjects.lower()[:-2], obj[:-2] if to_concept else obj, bool(neg), to_concept, "plural"
        )
    if m := _ABOUT_ENTITY.fullmatch(s):
        entity, neg, article, obj = m.groups()
        if article is not None and not neg:
            return Membership(entity, obj)
        if article is None:
            return Fact(entity, obj, bool(neg))
    raise ProntoQAFormatError(f"cannot parse sentence '{text}'")


def split_sentences(text: str) -> list[str]:
    """Split a run of sentences ("A is b. C are d.") into sentences that keep their periods."""
    return [s if s.endswith(".") else s + "." for s in re.split(r"(?<=\.)\s+", text.strip()) if s]


def split_question(question: str) -> tuple[list[str], str]:
    """The context sentences and the query ("True or false: Alex is happy.") of a question."""
    context, sep, query = question.rpartition(QUERY_PREFIX)
    if not sep:
        raise ProntoQAFormatError(f"the question has no '{QUERY_PREFIX.strip()}' query")
    return split_sentences(context), QUERY_PREFIX + query


# ----------------------------------------------------------------------------- checking


def derive_prontoqa_answer(question: str) -> str:
    """Re-derive "True"/"False" from a question's context by forward chaining (modus ponens).

    The entity's concepts are closed under the concept rules, then every property rule of those
    concepts fires. Raises `ProntoQAFormatError` if the query is not decided, or decided both ways.
    """
    context, query = split_question(question)
    goal = parse_sentence(query.removeprefix(QUERY_PREFIX))
    if not isinstance(goal, Fact):
        raise ProntoQAFormatError(f"the query '{query}' does not ask about a property")
    parsed = [parse_sentence(s) for s in context]
    concepts = {p.concept for p in parsed if isinstance(p, Membership) and p.entity == goal.entity}
    rules = [p for p in parsed if isinstance(p, Rule)]
    frontier = list(concepts)
    while frontier:
        c = frontier.pop()
        for r in rules:
            if r.subject == c and r.to_concept and not r.negated and r.obj not in concepts:
                concepts.add(r.obj)
                frontier.append(r.obj)
    known = {(r.obj, r.negated) for r in rules if r.subject in concepts and not r.to_concept}
    proved, refuted = (goal.prop, goal.negated) in known, (goal.prop, not goal.negated) in known
    if proved == refuted:
        state = "both proved and refuted" if proved else "neither proved nor refuted"
        raise ProntoQAFormatError(f"the query '{query}' is {state} by the context")
    return "True" if proved else "False"
