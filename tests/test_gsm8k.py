"""GSM8k converters: byte-exact against the official valid file, held-out exclusion, bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import dumps_examples, load_examples
from coconut_lm.tasks.gsm8k import (
    convert_gsm8k,
    detect_format,
    load_gsm8k,
    read_icot_text,
    read_openai_jsonl,
)


def test_icot_text_reproduces_gsm_valid_bytes(icot_valid: Path, gsm_valid: Path) -> None:
    assert dumps_examples(convert_gsm8k(icot_valid)) == gsm_valid.read_text(encoding="utf-8")


def test_openai_jsonl_reproduces_gsm_valid_bytes(openai_train: Path, gsm_valid: Path) -> None:
    by_question = {e.question: e for e in convert_gsm8k(openai_train)}
    order = [e.question for e in load_examples(gsm_valid)]
    assert all(q in by_question for q in order)  # all 500 valid problems are in OpenAI's train file
    picked = [by_question[q] for q in order]
    assert dumps_examples(picked) == gsm_valid.read_text(encoding="utf-8")


@pytest.mark.parametrize("held_out", ["gsm_valid", "icot_valid"])
def test_excluding_valid_leaves_6973(
    openai_train: Path,
    held_out: str,
    request: pytest.FixtureRequest,
) -> None:
    exclude = request.getfixturevalue(held_out)
    result = load_gsm8k(openai_train, exclude=exclude)
    assert (result.source_format, result.n_read, result.n_dropped) == ("openai", 7473, 500)
    assert len(result.examples) == 6973
    assert len(convert_gsm8k(openai_train, exclude=exclude)) == 6973


def test_cli_reports_the_dropped_count(openai_train: Path, gsm_valid: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from coconut_lm.cli import main

    out = tmp_path / "train.json"
    assert main(["data", "gsm8k", "--from", str(openai_train), "--exclude", str(gsm_valid), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "read 7473 problems (openai), dropped 500" in printed and "wrote 6973" in printed
    assert len(load_examples(out)) == 6973


def test_exclusion_ignores_whitespace_and_case(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text(
        "How many  apples?||<<1+1=2>> #### 2\nHow many pears?|| #### 3\n", encoding="utf-8"
    )
    held = tmp_path / "b.jsonl"
    held.write_text(
        json.dumps({"question": "how many apples? ", "answer": "x\n#### 2"}) + "\n",
        encoding="utf-8",
    )
    result = load_gsm8k(src, exclude=held)
    assert [e.question for e in result.examples] == ["How many pears?"]
    assert result.n_dropped == 1


def test_openai_conversion_details(tmp_path: Path) -> None:
    rows = [
        {"question": "Q1", "answer": "He has 2 x 3 = <<2*3=6>>6.\nThen <<6+1=7>>7.\n#### 7"},
        {"question": "Q2", "answer": "No calculator here.\n#### 1,200"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text(
        "\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8"
    )  # blank lines are skipped
    examples = read_openai_jsonl(path)
    assert [(e.question, e.steps, e.answer) for e in examples] == [
        ("Q1", ["<<2*3=6>>", "<<6+1=7>>"], "7"),
        ("Q2", [""], "1,200"),  # no notes: one empty step; the thousands separator is kept
    ]


def test_format_detection(tmp_path: Path, gsm_valid: Path) -> None:
    assert detect_format(gsm_valid) == "common"
    no_ext = tmp_path / "data"
    no_ext.write_text('{"question": "Q", "answer": "#### 1"}\n', encoding="utf-8")
    assert detect_format(no_ext) == "openai"
    no_ext.write_text("Q||<<1+1=2>> #### 2\n", encoding="utf-8")
    assert detect_format(no_ext) == "icot"
    assert convert_gsm8k(no_ext)[0].steps == ["<<1+1=2>>"]
    no_ext.write_text("just some words\n", encoding="utf-8")
    with pytest.raises(CoconutError, match="cannot tell the GSM8k format"):
        detect_format(no_ext)
    with pytest.raises(CoconutError, match="no such file"):
        convert_gsm8k(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "a.jsonl",
            '{"question": "Q", "answer": "#### 1"}\n{"question": "Q"',
            r"a\.jsonl: line 2: not valid JSON",
        ),
        ("a.jsonl", '{"question": "Q"}\n', r"line 1: field 'answer': missing"),
        ("a.jsonl", '{"question": "", "answer": "#### 1"}\n', r"line 1: field 'question'"),
        (
            "a.jsonl",
            '\n{"question": "Q", "answer": "no final line"}\n',
            r"line 2: field 'answer': no final '#### <answer>'",
        ),
        (
            "a.jsonl",
            '{"question": "Q", "answer": "x\\n#### "}\n',
            r"line 1: field 'answer': empty answer",
        ),
        ("a.jsonl", "[1, 2]\n", r"line 1: expected a JSON object"),
        (
            "b.txt",
            "Q||<<1+1=2>> #### 2\nQ <<1+1=2>> #### 2\n",
            r"b\.txt: line 2: field 'question': no '\|\|'",
        ),
        ("b.txt", "Q||<<1+1=2>> 2\n", r"line 1: field 'answer': no final '####"),
        ("b.txt", "Q||<<1+1=2>> then 2 #### 2\n", r"line 1: field 'steps'"),
        ("b.txt", "||<<1+1=2>> #### 2\n", r"line 1: field 'question': empty"),
        ("b.txt", "\n\n", r"b\.txt: the file holds no problems"),
    ],
)
def test_malformed_lines_name_file_line_and_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CoconutError, match=message) as info:
        convert_gsm8k(path)
    assert "\n" not in str(info.value)


def test_icot_reader_keeps_notes_whole(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("Q||<<2 * 3=6>> <<6>4=1>> #### 6\r\n", encoding="utf-8")
    assert read_icot_text(path)[0].steps == ["<<2 * 3=6>>", "<<6>4=1>>"]
