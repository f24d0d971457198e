"""What a resume restores besides the weights and the optimizer: the trainer's counters, the best
validation so far, the RNG, and the training time of earlier sessions.

    state = TrainerState(epoch=cfg.start_epoch)
    saved = state.state_dict()          # flat: it is `trainer_state.pt`'s top level (the checkpointer adds the rest)
    state.load_state_dict(saved)        # also reads trainer states written before `best_progress` had its name

The flat key layout is the one every earlier coconut-lm wrote, so old runs resume unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

#: The counters `state_dict` writes and `load_state_dict` restores, by name.
COUNTERS = ("epoch", "micro_index", "global_step", "reset_key", "reset_step", "best_accuracy", "best_epoch")
#: Keys a trainer state once wrote under another name: today's name -> the older one.
OLDER_NAMES = {"best_progress": "best_rank"}


@dataclass
class TrainerState:
    """The resumable state of one run: where it is, what best/ holds, and for how long it has trained."""

    epoch: int = 0
    micro_index: int = 0  # micro-batches of this epoch already trained (a resume continues after them)
    global_step: int = 0
    reset_key: Any = None  # the schedule's optimizer key at the last reset (`Schedule.optimizer_key`)
    reset_step: int = 0  # warm-up counts from here
    best_accuracy: float = -1.0
    best_epoch: int = -1
    best_progress: int = -1  # the curriculum progress of best/ (`Schedule.progress`), compared before accuracy
    earlier_seconds: float = 0.0  # training time of the sessions before a --resume
    started: float = field(default_factory=time.perf_counter, repr=False)  # this session's start

    def seconds(self) -> float:
        """Training time of every session so far, this one included."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def improves_best(self, progress: int, accuracy: float) -> bool:
        """Whether a model at curriculum `progress` with validation `accuracy` beats best/ (progress first)."""
        return (progress, accuracy) > (self.best_progress, self.best_accuracy)

    def state_dict(self) -> dict[str, Any]:
        """The counters, best/, the RNG states and the training time, as `trainer_state.pt` stores them."""
        state = {key: getattr(self, key) for key in COUNTERS}
        state.update(best_progress=self.best_progress, torch_rng=torch.get_rng_state(), train_seconds=self.seconds())
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` wrote (and the RNG), from today's trainer states or older ones."""
        for key in COUNTERS:
            setattr(self, key, state[key])
        self.best_progress = state[_present(state, "best_progress")]
        self.earlier_seconds = float(state.get("train_seconds", 0.0))
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    @staticmethod
    def missing(state: dict[str, Any], required: tuple[str, ...] = (*COUNTERS, "torch_rng", "best_progress")) -> list[str]:
        """The `required` keys `state` lacks (under today's name or its older one), in order."""
        return [key for key in required if _present(state, key) is None]


def _present(state: dict[str, Any], key: str) -> str | None:
    """The name `key` has in `state`: today's, the older one, or None when it is absent."""
    for name in (key, OLDER_NAMES.get(key)):
        if name is not None and name in state:
            return name
    return None
