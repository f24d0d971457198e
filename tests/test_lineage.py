"""Run lineage (coconut_lm.training.lineage) and the time-to-accuracy tool on hand-written run folders."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from coconut_lm.errors import CoconutError
from coconut_lm.training.lineage import chain_curve, run_chain

ROOT = Path(__file__).resolve().parents[1]


def _run(folder: Path, init_from: Path | None, val_path: str, rows: list[dict]) -> Path:
    """A run folder with a config and metrics: train rows of 10 steps at 32 examples/s, val rows as given."""
    folder.mkdir(parents=True)
    (folder / "best").mkdir()
    cfg = {"method": "coconut", "task": "prosqa", "seed": 0, "batch_size": 4, "val_path": val_path,
           "init_from": str(init_from) if init_from else None}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = []
    for r in rows:
        lines.append({"type": "train", "step": r["step"], "steps": 10, "examples_per_s": 32.0})
        lines.append({"type": "val", "step": r["step"], "val_accuracy": r["acc"]})
    lines.append({"type": "end", "step": rows[-1]["step"], "total_seconds": 99.0, "best_accuracy": max(r["acc"] for r in rows)})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


@pytest.fixture
def chain_dirs(tmp_path):
    a = _run(tmp_path / "a", None, "small.json", [{"step": 10, "acc": 0.5}, {"step": 20, "acc": 0.97}])
    b = _run(tmp_path / "b", a / "best", "fresh.json", [{"step": 10, "acc": 0.6}, {"step": 20, "acc": 0.92}])
    c = _run(tmp_path / "c", b / "best", "fresh.json", [{"step": 10, "acc": 0.96}])
    return a, b, c


def test_chain_follows_init_from_and_counts_from_scratch(chain_dirs):
    a, b, c = chain_dirs
    stages = run_chain(c)
    assert [s.name for s in stages] == ["a", "b", "c"]
    assert [s.examples for s in stages] == [80, 80, 40] and stages[0].init_from is None
    points = chain_curve(stages)
    # Stage b's first validation comes after a's 80 examples and 99 s, plus its own 40 examples (10 steps of 4 at 32/s).
    assert points[2] == (120, 99.0 + 1.25, 0.6, "b")
    assert points[-1] == (80 + 80 + 40, 99.0 + 99.0 + 1.25, 0.96, "c")


def test_a_chain_continued_from_a_shipped_model_keeps_the_recorded_stages(chain_dirs, tmp_path):
    """A stage started from a copy of a shipped folder: the folder's stages.json stands for it and its past."""
    a, b, _ = chain_dirs
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for f in ("config.yaml", "metrics.jsonl"):
        (shipped / f).write_text((b / f).read_text())
    recorded = [{**asdict(s), "examples": s.examples} for s in run_chain(b)]
    (shipped / "stages.json").write_text(json.dumps(recorded))
    a.rename(tmp_path / "gone")  # the original run folders need not exist any more
    d = _run(tmp_path / "d", shipped / "best", "fresh.json", [{"step": 10, "acc": 0.98}])
    stages = run_chain(d)
    assert [s.name for s in stages] == ["a", "b", "d"]
    assert [s.examples for s in stages] == [80, 80, 40] and stages[1].val == [(40, 1.25, 0.6), (80, 2.5, 0.92)]
    assert chain_curve(stages)[-1] == (200, 99.0 + 99.0 + 1.25, 0.98, "d")
    for bad in ("{not json", '{"a": 1}', "[]", "[1]", '[{"run": "a"}]'):  # the last: required fields missing
        (shipped / "stages.json").write_text(bad)
        with pytest.raises(CoconutError, match="stages.json: not a list of stages"):
            run_chain(d)


def test_a_run_stopped_from_outside_reports_its_log_and_best(tmp_path):
    """No "end" row (the process was killed): seconds from the train rows, the best val of best/'s epoch."""
    run = _run(tmp_path / "k", None, "v.json", [{"step": 10, "acc": 0.5}, {"step": 20, "acc": 0.9},
                                                {"step": 30, "acc": 0.7}])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"end"' not in x]
    for i, r in enumerate(r for r in rows if r["type"] == "val"):
        r["epoch"] = i
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    tokens = dict.fromkeys(("bot", "eot", "latent", "pause", "pad", "eos"), 0)
    (run / "best" / "coconut.json").write_text(json.dumps({"tokens": tokens, "eot_classifier": False,
                                                           "meta": {"epoch": 2}}))
    (stage,) = run_chain(run)
    assert stage.stopped and stage.seconds == 3 * 1.25 and stage.best_val_accuracy == 0.7  # best/ is epoch 2's
    (run / "best" / "coconut.json").unlink()
    (stage,) = run_chain(run)
    assert stage.best_val_accuracy is None and not run_chain(_run(tmp_path / "e", None, "v.json",
                                                                  [{"step": 10, "acc": 0.5}]))[0].stopped


def test_time_to_accuracy_counts_targets_on_the_last_validation_set(chain_dirs, tmp_path):
    _, b, c = chain_dirs
    out = tmp_path / "tta.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "time_to_accuracy.py"), str(c), str(b),
                           "--targets", "0.9,0.95", "--json", str(out), "--plot", str(tmp_path / "tta.png")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = json.loads(out.read_text())["table"]
    # a reached 97% on its own (small) set: that does not count for chains validated on fresh.json.
    assert table[str(c)]["0.95"] == [200, 99.0 + 99.0 + 1.25, "c"]
    assert table[str(b)]["0.9"] == [160, 99.0 + 2.5, "b"] and table[str(b)]["0.95"] is None
    assert "needs" in proc.stdout and (tmp_path / "tta.png").is_file()


def test_a_folder_without_config_is_a_one_line_error(tmp_path):
    with pytest.raises(CoconutError, match="config.yaml: not found"):
        run_chain(tmp_path)
