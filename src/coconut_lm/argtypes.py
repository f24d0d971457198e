"""argparse helpers every command line of coconut-lm shares: a one-line-error parser and value types.

A leaf module (it imports nothing of coconut-lm), so `cli`, `bench` and `analyze` all use it
without importing each other.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum`, with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def non_blank(text: str) -> str:
    """An argparse type: text with something other than whitespace in it."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a question, got an empty string")
    return text


def probability(text: str) -> float:
    """An argparse type: one number strictly between 0 and 1."""
    values = probability_list(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one number strictly between 0 and 1, got '{text}'")
    return values[0]


def probability_list(text: str) -> list[float]:
    """Comma-separated numbers strictly between 0 and 1, e.g. '0.3,0.5,0.7'."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers strictly between 0 and 1, got '{text}'")
    return values


def path(text: str) -> str:
    """An argparse type: a file or folder name, which may not be empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got '{text}'") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected numbers >= 0, got '{text}'")
    return values
