"""The values of `shift_thoughts`: which of the token shift's two paths pass through thought positions.

A thought's input is the hidden state h it copies. The token shift (`token_shift.py`) can touch it
in two ways: the thought can *receive* the shift of its predecessors (its input becomes
h + W [x_prev; ...]), and it can *send*, counting as a predecessor of the inputs after it (later
thoughts and the answer's first position get W h). `shift_thoughts` picks which act:

    true      both (the default)
    false     neither: the faithful variant, thoughts enter exactly as h and are nobody's predecessor
    receive   a thought's own input is shifted; thoughts count as zero among every input's predecessors
    send      a thought's own input is left as h; the inputs after it see it as a predecessor

Torch-free, so the training config checks values without importing the model code.
"""

from __future__ import annotations

from typing import Literal

#: A `shift_thoughts` setting (`SHIFT_THOUGHTS` lists them).
ShiftThoughts = bool | Literal["receive", "send"]
#: Every value `shift_thoughts` takes, as the config, `coconut.json` and `CoconutLM` hold it.
SHIFT_THOUGHTS: tuple[ShiftThoughts, ...] = (True, False, "receive", "send")
#: The same values as words, for the command line and messages.
SHIFT_THOUGHTS_WORDS = tuple(str(v).lower() for v in SHIFT_THOUGHTS)  # true, false, receive, send


def is_shift_thoughts(value: object) -> bool:
    """Whether `value` is a setting as it is held: a bool, "receive" or "send" (not 1, not the word "true")."""
    return isinstance(value, bool) or (isinstance(value, str) and value in SHIFT_THOUGHTS)


def parse_shift_thoughts(value: object) -> ShiftThoughts:
    """`value` as a setting: a bool, "receive" or "send", with the words "true"/"false" read as bools.

    Raises ValueError for anything else.
    """
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if is_shift_thoughts(value):
        return value  # type: ignore[return-value]
    raise ValueError(f"shift_thoughts must be one of {', '.join(SHIFT_THOUGHTS_WORDS)}, got {value!r}")


def shift_thoughts_word(value: ShiftThoughts) -> str:
    """The setting as its word: "true", "false", "receive" or "send"."""
    return str(value).lower()


def thoughts_receive(value: ShiftThoughts) -> bool:
    """Whether a thought's own input gets the shift of its predecessors (true and "receive")."""
    return value is True or value == "receive"


def thoughts_send(value: ShiftThoughts) -> bool:
    """Whether a thought counts as a predecessor of the inputs after it (true and "send")."""
    return value is True or value == "send"
