"""The common example format: the official Coconut JSON, read, validated and written.

A file is a JSON list of objects `{"question": str, "steps": [str, ...], "answer": str}`. Extra
keys (ProsQA's graph, ProntoQA's `chain_concepts`, ...) are kept in `Example.extra` and written
back unchanged, in their original order after the three core fields.

    examples = load_examples("data/prosqa_valid.json")
    save_examples(examples, "out.json")        # atomic: a temporary file, then a rename

Every problem in a file is reported as one `ExampleFormatError` that names the file, the item
index and the field, so bad data never reaches torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError

CORE_FIELDS = ("question", "steps", "answer")


class ExampleFormatError(CoconutError):
    """A data file does not follow the common format."""


@dataclass
class Example:
    """One reasoning problem: a question, its language reasoning steps and the answer."""

    question: str
    steps: list[str]
    answer: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for this example, core fields first (the official key order)."""
        return {"question": self.question, "steps": list(self.steps), "answer": self.answer, **self.extra}


def _fail(path: str | os.PathLike | None, index: int | None, fieldname: str | None, msg: str) -> None:
    where = [str(path) if path is not None else "<data>"]
    if index is not None:
        where.append(f"item {index}")
    if fieldname is not None:
        where.append(f"field '{fieldname}'")
    raise ExampleFormatError(": ".join(where) + ": " + msg)


def example_from_dict(obj: Any, index: int | None = None, path: str | os.PathLike | None = None) -> Example:
    """Validate one JSON object and build an `Example`; raise `ExampleFormatError` naming the problem."""
    if not isinstance(obj, dict):
        _fail(path, index, None, f"expected an object, got {type(obj).__name__}")
    for name in CORE_FIELDS:
        if name not in obj:
            _fail(path, index, name, "missing")
    question, steps, answer = obj["question"], obj["steps"], obj["answer"]
    if not isinstance(question, str):
        _fail(path, index, "question", f"expected a string, got {type(question).__name__}")
    if not question.strip():
        _fail(path, index, "question", "empty")
    if not isinstance(answer, str):
        _fail(path, index, "answer", f"expected a string, got {type(answer).__name__}")
    if not answer.strip():
        _fail(path, index, "answer", "empty")
    if not isinstance(steps, list):
        _fail(path, index, "steps", f"expected a list of strings, got {type(steps).__name__}")
    for j, step in enumerate(steps):
        if not isinstance(step, str):
            _fail(path, index, f"steps[{j}]", f"expected a string, got {type(step).__name__}")
    extra = {k: v for k, v in obj.items() if k not in CORE_FIELDS}
    return Example(question=question, steps=list(steps), answer=answer, extra=extra)


def require_file(path: str | os.PathLike) -> Path:
    """`path` as a Path if it is a readable file; otherwise one ExampleFormatError saying what it is instead."""
    if not str(path).strip():
        raise ExampleFormatError("an empty path was given where a file is expected")
    p = Path(path)
    if p.is_dir():
        raise ExampleFormatError(f"{p}: is a directory, not a file")
    if not p.is_file():
        raise ExampleFormatError(f"{p}: no such file")
    if not os.access(p, os.R_OK):
        raise ExampleFormatError(f"{p}: not readable (permission denied)")
    return p


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing file, bad encoding or bad JSON is one ExampleFormatError naming it."""
    p = require_file(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ExampleFormatError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ExampleFormatError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def load_examples(path: str | os.PathLike) -> list[Example]:
    """Read and validate a common-format JSON file."""
    p = Path(path)
    data = read_json(p)
    if not isinstance(data, list):
        raise ExampleFormatError(f"{p}: expected a JSON list of examples, got {type(data).__name__}")
    if not data:
        raise ExampleFormatError(f"{p}: the file holds no examples")
    return [example_from_dict(obj, i, p) for i, obj in enumerate(data)]


def dumps_examples(examples: Iterable[Example]) -> str:
    """Serialise examples exactly as the official files are written: `json.dumps` with its defaults."""
    return json.dumps([e.to_dict() for e in examples])


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so a crash never leaves half a file."""
    p = Path(path)
    if p.is_dir():
        raise CoconutError(f"{p}: is a directory; give a file name to write")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise CoconutError(f"{p}: cannot write here ({e.strerror or type(e).__name__})") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a data file should get the usual permissions
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):  # a full disk, a file-size limit (EFBIG), a quota: name the file, not the temp
            raise CoconutError(f"{p}: cannot write it ({e.strerror or type(e).__name__}); nothing was "
                               f"replaced") from None
        raise


def save_examples(examples: Sequence[Example], path: str | os.PathLike) -> None:
    """Write examples as a common-format JSON file, atomically."""
    atomic_write_text(path, dumps_examples(examples))
