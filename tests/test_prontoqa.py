"""ProntoQA: the generator matches prontoqa_valid.json; the raw converter reproduces it exactly."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example, dumps_examples, load_examples
from coconut_lm.tasks.prontoqa import generate_prontoqa, load_prontoqa_raw, prontoqa_from_raw
from coconut_lm.tasks.prontoqa_sentences import (
    Fact,
    Membership,
    Rule,
    derive_prontoqa_answer,
    parse_sentence,
    split_question,
    split_sentences,
)

N_GENERATED = 400


@pytest.fixture(scope="module")
def generated() -> list[Example]:
    return generate_prontoqa(N_GENERATED, seed=0)


def _stats(examples: list[Example]) -> dict:
    """Shape statistics of a ProntoQA set, computed from the text alone."""
    n_context, forms, negated = Counter(), Counter(), Counter()
    entities, concepts, props = set(), set(), set()
    for e in examples:
        context, _ = split_question(e.question)
        n_context[len(context)] += 1
        for p in map(parse_sentence, context):
            if isinstance(p, Membership):
                entities.add(p.entity)
                concepts.add(p.concept)
            elif isinstance(p, Rule):
                forms[p.form] += 1
                concepts.add(p.subject)
                if p.to_concept:
                    concepts.add(p.obj)
                else:
                    props.add(p.obj)
                    negated[p.negated] += 1
    n = len(examples)
    return {
        "context_sentences": dict(n_context),
        "steps": dict(Counter(len(e.steps) for e in examples)),
        "true_fraction": sum(e.answer == "True" for e in examples) / n,
        "plural_fraction": forms["plural"] / sum(forms.values()),
        "each_fraction": forms["each"] / sum(forms.values()),
        "negated_property_fraction": negated[True] / sum(negated.values()),
        "entities": entities,
        "concepts": concepts,
        "properties": props,
        "symbols": Counter(len(e.extra["idx_to_symbol"]) for e in examples),
        "graph_ends": {
            (e.extra["root"], e.extra["target"], e.extra["neg_target"]) for e in examples
        },
    }


def test_generated_statistics_match_the_valid_file(
    prontoqa_valid: Path, generated: list[Example]
) -> None:
    ref, gen = _stats(load_examples(prontoqa_valid)), _stats(generated)
    assert ref["context_sentences"] == {25: 200}
    assert gen["context_sentences"] == {25: N_GENERATED}
    assert gen["steps"] == {6: N_GENERATED}
    for key in ("entities", "concepts", "properties", "graph_ends"):
        assert gen[key] == ref[key], key
    assert (len(gen["entities"]), len(gen["concepts"]), len(gen["properties"])) == (9, 17, 45)
    assert 0.42 < gen["true_fraction"] < 0.58
    for key in ("plural_fraction", "each_fraction", "negated_property_fraction"):
        assert abs(gen[key] - ref[key]) < 0.05, (key, gen[key], ref[key])
    # symbols: 13 + (0, 1 or 2 bare leaves named in singular form): 25% / 50% / 25%
    assert set(gen["symbols"]) == set(ref["symbols"]) == {13, 14, 15}
    assert abs(gen["symbols"][14] / N_GENERATED - 0.5) < 0.1


def _stated_in(rule: Rule, context: list[str]) -> bool:
    """Whether the rule is stated in the context, worded the same way."""
    return any(parse_sentence(s) == rule for s in context)


@pytest.mark.parametrize("source", ["valid", "generated", "hops 1-6"])
def test_answers_and_steps_follow_from_the_context(
    source: str, generated: list[Example], request: pytest.FixtureRequest
) -> None:
    if source == "valid":
        examples = load_examples(request.getfixturevalue("prontoqa_valid"))
    else:
        examples = generated if source == "generated" else generate_prontoqa(120, seed=5, min_hops=1, max_hops=6)
    hop_counts = Counter()
    for e in examples:
        assert derive_prontoqa_answer(e.question) == e.answer
        context, query = split_question(e.question)
        entity = parse_sentence(query.removeprefix("True or false: ")).entity
        hops = len(e.extra["chain_concepts"])
        hop_counts[hops] += 1
        assert len(e.steps) == hops + 1 and len(context) == 4 * hops + 5
        concept = e.extra["chain_concepts"][0]
        assert f"{entity} is {'an' if concept[0] in 'aeiou' else 'a'} {concept}." in context
        for i, step in enumerate(e.steps[:-1]):
            membership, rule = map(parse_sentence, split_sentences(step))
            assert membership == Membership(entity, concept)
            assert _stated_in(rule, context)
            assert rule.subject == concept and rule.to_concept == (i < hops - 1)
            concept = rule.obj
        last = split_sentences(e.steps[-1])
        assert len(last) == 1 and parse_sentence(last[0]) == Fact(entity, rule.obj, rule.negated)
        # the "relevant" distractor: the same property with the other polarity, stated elsewhere
        distractor = (rule.obj, not rule.negated, False)
        parsed = map(parse_sentence, context)
        assert any(
            isinstance(p, Rule) and (p.obj, p.negated, p.to_concept) == distractor for p in parsed
        )
        assert e.extra["idx_to_symbol"][:hops + 1] == [entity, *e.extra["chain_concepts"]]
    assert set(hop_counts) == ({5} if source != "hops 1-6" else {1, 2, 3, 4, 5, 6})


def test_hop_range_and_its_defaults(tmp_path: Path) -> None:
    """`data prontoqa --min-hops/--max-hops` draw shorter chains; the default stays the official 5 hops,
    and a range outside 1..6 is refused."""
    from coconut_lm.cli import main

    for args, lengths in [([], {6}), (["--max-hops", "2"], {3}), (["--min-hops", "4"], {5, 6}),
                          (["--min-hops", "6"], {7}), (["--min-hops", "2", "--max-hops", "3"], {3, 4})]:
        out = tmp_path / "h.json"
        assert main(["data", "prontoqa", "--n", "60", "--seed", "2", "--format", "symbolic", *args,
                     "--out", str(out)]) == 0
        assert {len(e.steps) for e in load_examples(out)} == lengths, args
    with pytest.raises(CoconutError, match="max_hops <= 6"):
        generate_prontoqa(3, min_hops=2, max_hops=7)
    with pytest.raises(CoconutError, match="min_hops <= max_hops"):
        generate_prontoqa(3, min_hops=4, max_hops=3)


def test_generation_is_deterministic(generated: list[Example]) -> None:
    again = generate_prontoqa(N_GENERATED, seed=0)
    assert dumps_examples(again) == dumps_examples(generated)
    assert dumps_examples(generate_prontoqa(10, seed=0)) == dumps_examples(generated[:10])
    assert dumps_examples(generate_prontoqa(10, seed=1)) != dumps_examples(generated[:10])
    assert len({e.question for e in generated}) == N_GENERATED


def test_raw_converter_reproduces_the_valid_file_bytes(prontoqa_valid: Path) -> None:
    """Undo the valid file into the generator's raw layout; converting back gives the same bytes."""
    raws = []
    for e in load_examples(prontoqa_valid):
        context, query = e.question.split(" True or false: ")
        cot = [s for step in e.steps for s in split_sentences(step)]
        assert len(cot) == 11
        raws.append(
            {
                "question": context,
                "query": "True or false: " + query,
                "chain_of_thought": cot,
                "answer": e.answer,
            }
        )
    converted = [prontoqa_from_raw({"test_example": r}) for r in raws]
    assert dumps_examples(converted) == prontoqa_valid.read_text(encoding="utf-8")


def test_raw_generator_sample(prontoqa_valid: Path) -> None:
    path = prontoqa_valid.parent / "raw_generator_sample.json"
    if not path.is_file():
        pytest.skip(f"public data file {path} is not present")
    raw = json.loads(path.read_text(encoding="utf-8"))
    examples = load_prontoqa_raw(path)
    assert len(examples) == 5
    for e, item in zip(examples, raw.values()):
        cot = item["test_example"]["chain_of_thought"]
        assert len(cot) == 11 and len(e.steps) == 6
        assert e.steps == [f"{cot[i]} {cot[i + 1]}" for i in range(0, 10, 2)] + [cot[10]]
        assert e.question.endswith(" " + item["test_example"]["query"])
        assert derive_prontoqa_answer(e.question) == e.answer
        assert re.fullmatch(r"[A-Z][a-z]+ is (not )?[a-z]+\.", e.steps[-1])
    first = examples[0]
    assert first.steps[0] == "Max is a vumpus. Each vumpus is a brimpus."
    assert first.extra["chain_concepts"] == ["vumpus", "brimpus", "grimpus", "shumpus", "numpus"]
    assert (first.answer, first.extra["root"], first.extra["target"]) == ("True", 0, 5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": "Maybe"}, "field 'answer'"),
        ({"query": "Is Max wooden?"}, "field 'query'"),
        (
            {"chain_of_thought": ["Max is a vumpus.", "Each vumpus is a brimpus."]},
            "field 'chain_of_thought'",
        ),
        (
            {"question": "Max is a vumpus. Vumpuses fly."},
            "field 'question': cannot parse sentence 'Vumpuses fly.'",
        ),
    ],
)
def test_raw_converter_errors_name_the_field(change: dict, message: str) -> None:
    item = {
        "question": "Each vumpus is wooden. Max is a vumpus.",
        "query": "True or false: Max is wooden.",
        "chain_of_thought": ["Max is a vumpus.", "Each vumpus is wooden.", "Max is wooden."],
        "answer": "True",
    }
    assert prontoqa_from_raw(item).steps == [
        "Max is a vumpus. Each vumpus is wooden.",
        "Max is wooden.",
    ]
    with pytest.raises(CoconutError, match=re.escape(message)):
        prontoqa_from_raw({**item, **change}, where="x.json: item 'e1'")
    missing = {k: v for k, v in item.items() if k != "answer"}
    with pytest.raises(CoconutError, match="field 'answer': missing"):
        prontoqa_from_raw(missing)


def test_checker_refuses_undecided_or_contradictory_questions() -> None:
    assert (
        derive_prontoqa_answer(
            "Wumpuses are not dull. Rex is a wumpus. True or false: Rex is dull."
        )
        == "False"
    )
    with pytest.raises(CoconutError, match="neither proved nor refuted"):
        derive_prontoqa_answer("Lorpuses are dull. Rex is a wumpus. True or false: Rex is dull.")
    with pytest.raises(CoconutError, match="both proved and refuted"):
        derive_prontoqa_answer(
            "Each wumpus is dull. Every wumpus is not dull. Rex is a wumpus. "
            "True or false: Rex is dull."
        )
