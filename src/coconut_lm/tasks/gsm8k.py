"""GSM8k: OpenAI's jsonl and iCoT's text converted to the common format, minus a held-out set.

    examples = convert_gsm8k("openai_train.jsonl", exclude="gsm_valid.json")   # 6,973 problems
    save_examples(examples, "data/gsm_train.json")
    result = load_gsm8k("icot_valid.txt")            # examples, the format read, how many dropped

Three forms of the same problems are read:
- "openai": one JSON object a line, `{"question", "answer"}`; the answer is a worked solution with
  `<<expr=value>>` calculator notes and a last line `#### 72`;
- "icot": one problem a line, `question||<<a>> <<b>> #### 72`;
- "common": the common JSON format itself (e.g. gsm_valid.json), read as it is.
In the common format each step is one `<<...>>` note, in order; a problem with no notes has
`steps == [""]` (as in the official gsm_valid.json); the answer is kept as written ("5,000"):
evaluation strips the separators (`coconut_lm.tasks.answers`). Converting either source form of
the 500 validation problems reproduces gsm_valid.json byte for byte.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from coconut_lm.tasks.examples import Example, ExampleFormatError, load_examples, require_file

FORMATS = ("openai", "icot", "common")
_NOTE = re.compile(r"<<[^\n]*?>>")  # a calculator note never spans lines
_SUFFIX_FORMAT = {".jsonl": "openai", ".txt": "icot", ".json": "common"}


@dataclass
class Gsm8kLoad:
    """What `load_gsm8k` read: the examples kept, the format detected, and how many were dropped."""

    examples: list[Example]
    source_format: str
    n_read: int
    n_dropped: int = 0


def _fail(path: Path, line: int, fieldname: str | None, msg: str) -> NoReturn:
    field_part = f"field '{fieldname}': " if fieldname else ""
    raise ExampleFormatError(f"{path}: line {line}: {field_part}{msg}")


def _split_final_answer(text: str, path: Path, line: int, fieldname: str) -> tuple[str, str]:
    """Split "work #### answer" at the last '####' into (work, stripped answer)."""
    work, sep, answer = text.rpartition("####")
    if not sep:
        _fail(path, line, fieldname, "no final '#### <answer>'")
    answer = answer.strip()
    if not answer:
        _fail(path, line, fieldname, "empty answer after '####'")
    return work, answer


def _steps(notes: Iterable[str]) -> list[str]:
    return list(notes) or [""]  # the official files keep one empty step for a problem without notes


def _nonempty(examples: list[Example], path: Path) -> list[Example]:
    if not examples:
        raise ExampleFormatError(f"{path}: the file holds no problems")
    return examples


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """(1-based line number, text) for each non-blank line of a UTF-8 file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ExampleFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line.removesuffix("\r")


def read_openai_jsonl(path: str | os.PathLike) -> list[Example]:
    """Read OpenAI's grade-school-math jsonl (`{"question", "answer"}` a line)."""
    p = Path(path)
    examples = []
    for number, line in _lines(p):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            _fail(p, number, None, f"not valid JSON ({e.msg} at column {e.colno})")
        if not isinstance(obj, dict):
            _fail(p, number, None, f"expected a JSON object, got {type(obj).__name__}")
        for name in ("question", "answer"):
            if not isinstance(obj.get(name), str) or not obj[name].strip():
                _fail(p, number, name, "missing or not a non-empty string")
        solution, answer = _split_final_answer(obj["answer"], p, number, "answer")
        examples.append(Example(obj["question"], _steps(_NOTE.findall(solution)), answer))
    return _nonempty(examples, p)


def read_icot_text(path: str | os.PathLike) -> list[Example]:
    """Read iCoT's text form (`question||<<a>> <<b>> #### answer` a line)."""
    p = Path(path)
    examples = []
    for number, line in _lines(p):
        question, sep, rest = line.partition("||")
        if not sep:
            _fail(p, number, "question", "no '||' between the question and the steps")
        if not question.strip():
            _fail(p, number, "question", "empty")
        work, answer = _split_final_answer(rest, p, number, "answer")
        notes = _NOTE.findall(work)
        if _NOTE.sub("", work).strip():
            _fail(
                p,
                number,
                "steps",
                f"expected only '<<...>>' notes before '####', got {work.strip()!r}",
            )
        examples.append(Example(question, _steps(notes), answer))
    return _nonempty(examples, p)


def detect_format(path: str | os.PathLike) -> str:
    """The format name ("openai", "icot" or "common"): by extension, else by the first line."""
    p = require_file(path)
    if p.suffix.lower() in _SUFFIX_FORMAT:
        return _SUFFIX_FORMAT[p.suffix.lower()]
    first = next((line.strip() for _, line in _lines(p)), "")
    if first.startswith("["):
        return "common"
    if first.startswith("{"):
        return "openai"
    if "||" in first:
        return "icot"
    raise ExampleFormatError(
        f"{p}: cannot tell the GSM8k format: expected OpenAI .jsonl (a JSON object a line), "
        "iCoT .txt ('question||<<a>> #### answer' a line) or a common-format .json list"
    )


_READERS = {"openai": read_openai_jsonl, "icot": read_icot_text, "common": load_examples}


def read_gsm8k(path: str | os.PathLike) -> list[Example]:
    """Read any supported GSM8k file (the format is detected) into common-format examples."""
    return _READERS[detect_format(path)](path)


def normalize_question(text: str) -> str:
    """The key that says whether two questions are the same: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def load_gsm8k(
    source_path: str | os.PathLike, exclude: str | os.PathLike | None = None
) -> Gsm8kLoad:
    """Convert `source_path` to the common format, dropping questions that appear in `exclude`."""
    fmt = detect_format(source_path)
    examples = _READERS[fmt](source_path)
    if fmt == "common":
        from coconut_lm.tasks.answers import data_task

        task = data_task(examples)
        if task is not None and task != "gsm8k":
            raise ExampleFormatError(f"{source_path}: looks like {task} data, not GSM8k (its answers are not all "
                                     f"numbers, or its items carry a graph); convert a GSM8k file")
    n_read = len(examples)
    if exclude is None:
        return Gsm8kLoad(examples, fmt, n_read)
    held_out = {normalize_question(e.question) for e in read_gsm8k(exclude)}
    kept = [e for e in examples if normalize_question(e.question) not in held_out]
    return Gsm8kLoad(kept, fmt, n_read, n_read - len(kept))


def convert_gsm8k(
    source_path: str | os.PathLike, exclude: str | os.PathLike | None = None
) -> list[Example]:
    """Convert a GSM8k file (any supported format) to common-format examples, minus `exclude`'s questions."""
    return load_gsm8k(source_path, exclude).examples
