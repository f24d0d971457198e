"""A run's lineage: the chain of training runs it started from through `init_from`, with what each cost.

    stages = run_chain("runs/official/main-c2")   # oldest first: n10 demo -> n16 -> main -> main-c2
    stages[-1].examples, stages[-1].seconds, stages[-1].curve   # (examples seen, val accuracy) points

A stage's examples count from 0 in every run; `curve` adds the examples of the stages before it, so a
chain's validation curves line up against examples seen (and core-seconds) from scratch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError
from coconut_lm.training.runlog import read_metrics


@dataclass
class Stage:
    """One training run of a chain."""

    run: str  # the run folder
    method: str | None
    seed: int | None
    steps: int
    batch_size: int
    seconds: float | None  # training wall time (the "end" row), evaluation not included
    best_val_accuracy: float | None
    val_path: str | None
    init_from: str | None
    # (examples seen in this run, training seconds so far, val accuracy) at each validation
    val: list[tuple[int, float, float]] = field(default_factory=list)
    # True when the run has no "end" row (it was stopped from outside): `seconds` is then the sum over its
    # logged train rows and `best_val_accuracy` the validation of the epoch `best/` records
    stopped: bool = False

    @property
    def examples(self) -> int:
        return self.steps * self.batch_size

    @property
    def name(self) -> str:
        return Path(self.run).name


def read_stage(run_dir: str | os.PathLike) -> Stage:
    """One run folder's stage record (config.yaml and metrics.jsonl)."""
    import yaml

    run = Path(run_dir)
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise CoconutError(f"{cfg_path}: not found; {run} is not a coconut-lm run folder")
    cfg: dict[str, Any] = yaml.safe_load(cfg_path.read_text()) or {}
    rows = read_metrics(run)
    end = next((r for r in reversed(rows) if r.get("type") == "end"), {})
    batch = int(cfg.get("batch_size") or 0)
    steps = max((int(r["step"]) for r in rows if isinstance(r.get("step"), int)), default=0)
    # Training seconds at each logged step: each train row covers `steps` steps at its examples/s.
    clock, elapsed, val = {}, 0.0, []
    for r in rows:
        if r.get("type") == "train" and r.get("examples_per_s"):
            elapsed += int(r.get("steps", 0)) * batch / float(r["examples_per_s"])
            clock[int(r["step"])] = elapsed
        elif r.get("type") == "val" and isinstance(r.get("val_accuracy"), (int, float)):
            val.append((int(r["step"]) * batch, clock.get(int(r["step"]), elapsed), float(r["val_accuracy"])))
    seconds, best = end.get("total_seconds"), end.get("best_accuracy")
    if not end and rows:  # stopped from outside: what its log and best/ still say
        seconds = elapsed if clock else None
        best = _best_val(run, rows)
    return Stage(str(run), cfg.get("method"), cfg.get("seed"), steps, batch, seconds, best, cfg.get("val_path"),
                 cfg.get("init_from"), val, stopped=not end)


def _best_val(run: Path, rows: list[dict[str, Any]]) -> float | None:
    """The validation accuracy of the epoch that `run/best/` holds (None when best/ or that row is missing)."""
    from coconut_lm.model.files import read_meta

    try:
        epoch = read_meta(run / "best").get("epoch")
    except CoconutError:  # no best/, or not a readable checkpoint
        return None
    return next((float(r["val_accuracy"]) for r in rows if r.get("type") == "val" and r.get("epoch") == epoch
                 and isinstance(r.get("val_accuracy"), (int, float))), None)


def read_shipped_stages(folder: str | os.PathLike) -> list[Stage]:
    """The chain a shipped model folder records in its `stages.json` (scripts/ship_model.py), oldest first."""
    path = Path(folder) / "stages.json"
    try:
        rows = json.loads(path.read_text())
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise ValueError("expected a non-empty list of objects")
        names = {f.name for f in fields(Stage)}
        return [Stage(**({k: v for k, v in r.items() if k in names}
                         | {"val": [tuple(p) for p in r.get("val", [])]})) for r in rows]
    except (OSError, ValueError, TypeError) as e:
        raise CoconutError(f"{path}: not a list of stages as scripts/ship_model.py writes them ({e})") from None


def run_chain(run_dir: str | os.PathLike) -> list[Stage]:
    """The run and every run it started from (`init_from` pointing into a run folder), oldest first.

    A folder with a `stages.json` (a shipped model, or a copy of one that a later stage started from) ends the
    walk: its recorded chain, which ends with that folder's own stage, stands for it and every run before it.
    """
    out: list[Stage] = []
    seen: set[Path] = set()
    run: Path | None = Path(run_dir)
    while run is not None and run.resolve() not in seen:
        seen.add(run.resolve())
        if (run / "stages.json").is_file():
            out += read_shipped_stages(run)[::-1]
            break
        stage = read_stage(run)
        out.append(stage)
        parent = Path(stage.init_from).parent if stage.init_from else None
        run = parent if parent is not None and (parent / "config.yaml").is_file() else None
    return out[::-1]


def chain_curve(stages: list[Stage]) -> list[tuple[int, float, float, str]]:
    """Validation points of a whole chain from scratch: (examples seen, training seconds, accuracy, stage name)."""
    points, ex0, s0 = [], 0, 0.0
    for st in stages:
        points += [(ex0 + ex, s0 + sec, acc, st.name) for ex, sec, acc in st.val]
        ex0 += st.examples
        s0 += st.seconds if st.seconds is not None else (st.val[-1][1] if st.val else 0.0)
    return points
