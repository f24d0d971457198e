"""Answer extraction and normalisation: the one rule set evaluation uses."""

from __future__ import annotations

import pytest

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.answers import (
    answers_match,
    extract_answer,
    normalize_answer,
    strip_thousands_separators,
)


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        ("<<4-2=2>>\n<<100*3=300>>\n### 300", "300"),
        ("### 1,000\n", "1,000"),
        ("#### 72", "72"),  # several '#' in a row
        ("a # b ### 5", "5"),  # '#' earlier in the text: the last one wins
        ("no marker at all", "no marker at all"),  # no '#': the whole text
        ("step\n###", ""),
        ("Tom is a tumpus.\nEvery tumpus is a lempus.\n### Tom is a lempus.", "Tom is a lempus."),
    ],
)
def test_extract_answer_takes_text_after_last_hash(generated: str, expected: str) -> None:
    assert extract_answer("gsm8k", generated) == expected


def test_comma_stripping_lives_in_one_function() -> None:
    assert strip_thousands_separators("1,234,567") == "1234567"
    assert normalize_answer("gsm8k", "5,000") == "5000"


@pytest.mark.parametrize(
    ("predicted", "gold", "match"),
    [
        ("### 1,000", "1000", True),
        ("### 1000", "1,000", True),
        ("<<2*3=6>>\n### 6 ", "6", True),  # trailing whitespace
        ("### 72.", "72", False),  # the official rule keeps the period
        ("### $72", "72", False),
        ("### 72.0", "72", False),
        ("72", "72", True),  # no '#': the whole (stripped) text
        ("<<2*3=6>>\n6", "6", False),  # steps but no answer marker
        ("### -3", "-3", True),
        ("### 7 # 8", "8", True),
    ],
)
def test_gsm8k_official_rule(predicted: str, gold: str, match: bool) -> None:
    assert answers_match("gsm8k", predicted, gold) is match


@pytest.mark.parametrize(
    ("predicted", "gold", "match"),
    [
        ("Tom is a lempus.\n### Tom is a lempus.", "Tom is a lempus.", True),
        ("###  Tom  is a\tlempus. \n", "Tom is a lempus.", True),
        ("### Tom is a scrompus.", "Tom is a lempus.", False),
        ("### Tom is a lempus", "Tom is a lempus.", False),  # a sentence: the period counts
        ("### tom is a lempus.", "Tom is a lempus.", False),
    ],
)
def test_prosqa_compares_the_sentence(predicted: str, gold: str, match: bool) -> None:
    assert answers_match("prosqa", predicted, gold) is match


@pytest.mark.parametrize(
    ("predicted", "gold", "match"),
    [
        ("Alex is happy.\n### True", "True", True),
        ("### true.", "True", True),
        ("### False \n", "False", True),
        ("### False", "True", False),
        ("### Truee", "True", False),
        ("", "False", False),
    ],
)
def test_prontoqa_compares_truth_values(predicted: str, gold: str, match: bool) -> None:
    assert answers_match("prontoqa", predicted, gold) is match


def test_prontoqa_normal_form() -> None:
    assert normalize_answer("prontoqa", " TRUE. ") == "True"
    assert normalize_answer("prontoqa", "maybe") == "maybe"


def test_unknown_task_is_a_one_line_error() -> None:
    with pytest.raises(CoconutError, match="unknown task 'gsm'"):
        normalize_answer("gsm", "1")
    with pytest.raises(CoconutError, match="unknown task"):
        answers_match("arith", "1", "1")


def test_chain_lines_are_the_nonempty_lines_before_the_answer() -> None:
    from coconut_lm.tasks.answers import chain_lines

    text = "Tom is a wumpus.\n\n Every wumpus is a lempus. \n### Tom is a lempus.\nextra"
    assert chain_lines(text) == ["Tom is a wumpus.", "Every wumpus is a lempus."]
    assert chain_lines("### True") == []
    assert chain_lines("no answer marker\nsecond") == ["no answer marker", "second"]
