"""The task registry: everything coconut-lm knows about a task, in one record per task.

    task = TASKS["gsm8k"]
    task.normalize("1,300")            # "1300": the canonical answer, gold or predicted
    task.looks_like(examples)          # does a data set look like this task's (eval's guard)
    task.tokenizer                     # what a from-scratch preset builds: "word" | "bpe"
    task.paper["coconut"]              # (34.1, 8.2): Hao et al. 2024, Table 1, accuracy % and tokens

Adding a task is one module (its generator or converter) plus `register_task(Task(...))`: the
config's `task` choices, answer comparison, eval's data check, the tokenizer default and the
report's columns all read this registry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from coconut_lm.errors import CoconutError

PaperNumbers = dict[str, tuple[float, float | None]]


def majority_share(golds: Sequence[str]) -> float:
    """The accuracy of always giving the most common of `golds` (0 for none): chance for a closed answer set."""
    return max(Counter(golds).values()) / len(golds) if golds else 0.0


@dataclass(frozen=True)
class Task:
    """One task: its name, how answers compare, what its data looks like, and the paper's numbers.

    Attributes:
        name: the config's `task` value.
        label: the name tables print.
        normalize: the canonical form of an answer text (gold, or a prediction's part after '#').
        looks_like: whether a list of `Example`s is recognisably this task's data.
        tokenizer: the tokenizer a from-scratch preset builds from the training data (`word`: a
            closed vocabulary; `bpe`: byte-level BPE, an open one). Symbolic data always gets `symbol`.
        data_command: the `coconut-lm data` subcommand that makes or converts its data.
        official_key: a word in an official Coconut YAML's name or data paths that names this task.
        paper: method -> (accuracy %, tokens or None), Hao et al. 2024, Table 1 (GPT-2, pretrained).
        chance: the accuracy of an answer-blind guess on a file with these normalized gold answers
            (the chance level a table states beside its numbers).
    """

    name: str
    label: str
    normalize: Callable[[str], str]
    looks_like: Callable[[Sequence[Any]], bool]
    tokenizer: str = "word"
    data_command: str = ""
    official_key: str = ""
    paper: PaperNumbers = field(default_factory=dict)
    chance: Callable[[Sequence[str]], float] = majority_share

    def chance_level(self, answers: Sequence[str]) -> float:
        """`chance` of gold answers as a data file or a predictions file holds them (normalized here)."""
        return self.chance([self.normalize(a) for a in answers])


def one_of_two(golds: Sequence[str]) -> float:
    """One half: each ProsQA question names its two candidate answers, and an answer-blind guess picks one."""
    return 0.5


#: Every registered task, in the order of the paper's Table 1.
TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add `task` to `TASKS` (a name already there is an error) and return it."""
    if task.name in TASKS:
        raise CoconutError(f"task '{task.name}' is already registered")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task called `name`; an unknown name is a CoconutError listing the registered ones."""
    if name not in TASKS:
        raise CoconutError(f"unknown task '{name}': expected one of {', '.join(TASKS)}")
    return TASKS[name]


# ---------------------------------------------------------------- the three tasks of the paper

def strip_thousands_separators(text: str) -> str:
    """Remove the commas of a number ("5,000" -> "5000"); the only place commas are stripped."""
    return text.replace(",", "")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _normalize_gsm8k(text: str) -> str:
    # Commas removed, as the official evaluation does; nothing else is forgiven ("72." != "72").
    return strip_thousands_separators(text.rsplit("#", 1)[-1]).strip()


def _normalize_prontoqa(text: str) -> str:
    # A truth value in any case, with or without a final period.
    collapsed = _collapse(text)
    word = collapsed.removesuffix(".").strip().casefold()
    return word.capitalize() if word in ("true", "false") else collapsed


def _is_number(text: str) -> bool:
    try:
        float(strip_thousands_separators(text.strip()))
    except ValueError:
        return False
    return True


def _looks_like_prosqa(examples: Sequence[Any]) -> bool:
    return all("edges" in ex.extra and "root" in ex.extra for ex in examples)  # the graph, word or symbolic form


def _looks_like_prontoqa(examples: Sequence[Any]) -> bool:
    return all(ex.answer.strip().rstrip(".").lower() in ("true", "false") for ex in examples)


def _looks_like_gsm8k(examples: Sequence[Any]) -> bool:
    # Numbers, and no graph: a symbolic ProsQA answer ("16") is a number too.
    return all(_is_number(ex.answer) and "edges" not in ex.extra for ex in examples)


register_task(Task(
    "gsm8k", "GSM8k", _normalize_gsm8k, _looks_like_gsm8k, tokenizer="bpe", data_command="gsm8k", official_key="gsm",
    paper={"cot": (42.9, 25.0), "no_cot": (16.5, 2.2), "icot": (30.0, 2.2), "pause": (16.4, 2.2),
           "coconut": (34.1, 8.2), "no_curriculum": (14.4, None), "no_thought": (21.6, None),
           "pause_as_thought": (24.1, None)},
))
register_task(Task(
    "prontoqa", "ProntoQA", _normalize_prontoqa, _looks_like_prontoqa, data_command="prontoqa",
    official_key="prontoqa",
    paper={"cot": (98.8, 92.5), "no_cot": (93.8, 3.0), "icot": (99.8, 3.0), "pause": (77.7, 3.0),
           "coconut": (99.8, 9.0), "no_curriculum": (52.4, None), "no_thought": (99.9, None),
           "pause_as_thought": (100.0, None)},
))
register_task(Task(
    "prosqa", "ProsQA", _collapse, _looks_like_prosqa, data_command="prosqa", official_key="prosqa", chance=one_of_two,
    paper={"cot": (77.5, 49.4), "no_cot": (76.7, 8.2), "icot": (98.2, 8.2), "pause": (75.9, 8.2),
           "coconut": (97.0, 14.2), "no_curriculum": (76.1, None), "no_thought": (95.5, None),
           "pause_as_thought": (96.6, None)},
))
