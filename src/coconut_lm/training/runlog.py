"""Run logging: `metrics.jsonl` always, TensorBoard or W&B when asked (optional extras).

    log = RunLog(run_dir, report_to="none", enabled=env.is_main)
    log.write({"type": "train", "step": 10, "loss": 1.23})
    log.close()

Each line of metrics.jsonl is one JSON object with a `type` ("train", "val", "stage", "end").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError


class RunLog:
    """Appends metric rows to `<run_dir>/metrics.jsonl` and mirrors numbers to an optional backend."""

    def __init__(self, run_dir: str | os.PathLike, report_to: str = "none", enabled: bool = True, config: dict | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if report_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise CoconutError("report_to=tensorboard needs the extra: pip install 'coconut-lm[tensorboard]'") from None
            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        elif report_to == "wandb":
            try:
                import wandb
            except ImportError:
                raise CoconutError("report_to=wandb needs the extra: pip install 'coconut-lm[wandb]'") from None
            self._wandb = wandb.init(project="coconut-lm", name=Path(run_dir).name, config=config or {})

    def truncate_after(self, global_step: int) -> None:
        """Drop rows logged after `global_step` (a resumed run redoes those steps)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if row.get("step", 0) <= global_step:
                kept.append(line)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(k + "\n" for k in kept))
        os.replace(tmp, self.path)

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (and send its numbers to the backend)."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        step = int(row.get("step", 0))
        kind = row.get("type", "train")
        numbers = {f"{kind}/{k}": v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        if self._tb is not None:
            for k, v in numbers.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a run's metrics.jsonl (skipping a last line cut short by a kill)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
