"""scripts/call_path.py: the stays and climbs of the path from `train` to the first optimizer step."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("call_path", ROOT / "scripts" / "call_path.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["call_path"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


RANK = {"tasks": 3, "recipe": 4, "data": 5, "model": 6, "training": 8}


def test_stays_collapse_one_module_and_climbs_count_each_return_to_a_higher_layer():
    cp = _module()
    path = cp.stays(["coconut_lm.training.train", "coconut_lm.training.train", "coconut_lm.training.build",
                     "coconut_lm.data.tokenizer", "coconut_lm.model.backbone", "coconut_lm.data.tokenizer",
                     "coconut_lm.tasks.examples", "coconut_lm.training.train"], RANK)
    assert [(s.module.removeprefix("coconut_lm."), s.layer, s.calls) for s in path] == [
        ("training.train", 8, 2), ("training.build", 8, 1), ("data.tokenizer", 5, 1), ("model.backbone", 6, 1),
        ("data.tokenizer", 5, 1), ("tasks.examples", 3, 1), ("training.train", 8, 1)]
    # Moving within a layer is no climb; data -> model and tasks -> training are.
    assert [(a.module, b.module) for a, b in cp.climbs(path)] == [
        ("coconut_lm.data.tokenizer", "coconut_lm.model.backbone"),
        ("coconut_lm.tasks.examples", "coconut_lm.training.train")]


def test_upward_calls_are_callees_above_their_caller():
    cp = _module()
    entries = [("coconut_lm.training.train", None), ("coconut_lm.data.pipeline", "coconut_lm.training.train"),
               ("coconut_lm.training.metrics", "coconut_lm.data.pipeline"),
               ("coconut_lm.training.metrics", "coconut_lm.data.pipeline")]
    assert cp.upward_calls(entries, RANK) == [("coconut_lm.data.pipeline", "coconut_lm.training.metrics")]


def test_a_tiny_run_is_traced_from_train_to_the_first_optimizer_step(tmp_path):
    cp = _module()
    entries = cp.trace_train("prosqa", "coconut", workdir=tmp_path)
    modules = [m for m, _ in entries]
    assert entries[0] == ("coconut_lm.training.train", None)
    assert modules[-1] == "coconut_lm.training.optim"
    assert {"coconut_lm.data.pipeline", "coconut_lm.model.coconut", "coconut_lm.recipe.methods"} <= set(modules)
    # 'first' counts each function once; 'config' only those handed the config, which never leaves training/.
    config = cp.trace_train("prosqa", "coconut", workdir=tmp_path / "c", path="config")
    assert 0 < len(config) < len(entries) and all(m.startswith("coconut_lm.training.") for m, _ in config)
