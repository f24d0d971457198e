"""Answer parsing and normalisation for every task, in one place (evaluation uses only this module).

    extract_answer("gsm8k", "<<4-2=2>>\\n<<100*3=300>>\\n### 1,300")   # "1,300"
    normalize_answer("gsm8k", "1,300")                                  # "1300"
    answers_match("gsm8k", "### 1,300", "1300")                         # True
    answers_match("prontoqa", "true.", "True")                          # True

The rules:
- A model writes "step\\nstep\\n### answer": the answer is the text after the last '#', stripped
  (the official Coconut rule; text with no '#' is taken whole).
- gsm8k: that text with its commas removed ("1,000" == "1000"), as the official evaluation does;
  nothing else is forgiven ("72." != "72", "$72" != "72").
- prosqa: the answer sentence ("Tom is a lempus.") or node symbol, whitespace collapsed; otherwise exact.
- prontoqa: a truth value: "True"/"False" in any case, with or without a final period.

Each task's rule is its `Task.normalize` in `tasks/registry.py`.
"""

from __future__ import annotations

from coconut_lm.tasks.registry import TASKS, get_task, strip_thousands_separators

__all__ = ["TASKS", "answers_match", "chain_lines", "data_task", "extract_answer", "normalize_answer",
           "same_chain", "strip_thousands_separators"]


def _after_last_hash(text: str) -> str:
    return text.rsplit("#", 1)[-1].strip()


def chain_lines(generated_text: str) -> list[str]:
    """The reasoning lines of "step\n...\n### answer": every non-empty line before the first '###'."""
    body = generated_text.partition("###")[0]
    return [line.strip() for line in body.splitlines() if line.strip()]


def same_chain(written: list[str], expected: list[str]) -> bool:
    """Whether a written chain says the expected steps, word for word (line breaks and spacing aside).

    Symbolic data is decoded on one line ("3 5 ### 5"), word-form data one step per line; both
    compare the same way.
    """
    return " ".join(written).split() == " ".join(expected).split()


def extract_answer(task: str, generated_text: str) -> str:
    """The answer part of a model's output "step\\n...\\n### answer", not yet normalised."""
    get_task(task)
    return _after_last_hash(generated_text)


def normalize_answer(task: str, text: str) -> str:
    """The canonical form of an answer (gold or extracted) under the task's rule (`Task.normalize`)."""
    return get_task(task).normalize(text)


def answers_match(task: str, predicted: str, gold: str) -> bool:
    """Whether a predicted answer (raw model output or extracted answer) equals the gold answer."""
    return normalize_answer(task, extract_answer(task, predicted)) == normalize_answer(task, gold)


def data_task(examples) -> str | None:
    """The task a data set looks like, from its items (`Task.looks_like`), or None when it is not recognisably one.

    ProsQA items carry their graph (`edges`, `root`; word or symbolic form), ProntoQA answers are
    truth values, GSM8k answers are numbers. Eval compares this with the checkpoint's task.
    """
    if not examples:
        return None
    return next((task.name for task in TASKS.values() if task.looks_like(examples)), None)
