"""Whether a data file suits a checkpoint, as every scoring command (`eval`, `analyze`) checks it.

    checked = check_eval_data(examples, tokenizer, meta.task, data_path, checkpoint, meta=meta)
    checked.data, checked.unknown, checked.looks_like

Data that looks like another task's, or in the other form (word form for a model that reads
symbols, or the reverse), is refused unless `any_task`; then it is tokenised through the checked path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from coconut_lm.data.pipeline import UnknownTokens, is_symbol_tokenizer, tokenize_checked
from coconut_lm.errors import CoconutError
from coconut_lm.recipe.methods import TokenizedExample
from coconut_lm.tasks.answers import data_task
from coconut_lm.tasks.examples import Example
from coconut_lm.tasks.registry import TASKS
from coconut_lm.tasks.symbolic import is_symbolic


def data_form(examples: Sequence[Example]) -> str | None:
    """"symbolic" when every item is in a symbolic form, "words" when none is, None for a mix or no items."""
    marks = {is_symbolic(ex) for ex in examples}
    return None if len(marks) != 1 else "symbolic" if marks == {True} else "words"


def checkpoint_form(meta, tokenizer) -> str | None:
    """The form a checkpoint was trained on: its `data_format` (meta may be None), else "symbolic" for a
    symbol tokenizer, else unknown (None)."""
    if meta is not None and meta.data_format:
        return meta.data_format
    return "symbolic" if is_symbol_tokenizer(tokenizer) else None


@dataclass
class CheckedData:
    """A data file's examples tokenised for one checkpoint through the checked path, and what they looked like."""

    data: list[TokenizedExample]
    unknown: UnknownTokens | None  # None when every token is known
    looks_like: str | None  # the task the data looks like (`data_task`), or None


def check_eval_data(examples: Sequence[Example], tokenizer, task: str, data_path: str | os.PathLike,
                    checkpoint: str | os.PathLike, any_task: bool = False, command: str = "eval",
                    meta=None) -> CheckedData:
    """Check data against a checkpoint as every scoring command (`eval`, `analyze`) does, then tokenise it.

    Data that looks like another task's than the checkpoint's, or in the other form (word form for a
    model that reads symbols, or the reverse; `meta.data_format`, else the tokenizer, says which the
    model reads), is refused unless `any_task`; control-token text is always refused; unknown tokens
    are counted and reported in one line.
    """
    looks_like = data_task(examples)
    if looks_like is not None and looks_like != task and not any_task:
        raise CoconutError(f"{command}: {data_path} looks like {looks_like} data but checkpoint {checkpoint} was "
                           f"trained on {task}; pass --any-task to score it anyway")
    form, trained = data_form(examples), checkpoint_form(meta, tokenizer)
    if form is not None and trained is not None and form != trained and not any_task:
        unit = {"prosqa": "node", "prontoqa": "concept"}.get(looks_like or task, "symbol")
        label = {"symbolic": f"the symbolic form (one token per {unit})", "words": "the word form"}
        name = TASKS[looks_like or task].label if (looks_like or task) in TASKS else looks_like or task
        hint = f" (convert it: coconut-lm data symbolic {data_path} --out FILE)" if trained == "symbolic" else ""
        raise CoconutError(f"{command}: {data_path} is {name} in {label[form]} but checkpoint {checkpoint} reads "
                           f"{label[trained]}{hint}; pass --any-task to score it anyway")
    data, unknown = tokenize_checked(examples, tokenizer, str(data_path))
    return CheckedData(data, unknown, looks_like)
