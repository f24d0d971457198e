"""The package's folders by concept: each imports only from the folders below it (scripts/import_graph.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "import_graph.py"


def _module():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_its_layer_order():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "\n0 problem(s)" in out.stdout and "model/" in out.stdout


def test_every_folder_and_top_level_module_has_a_layer():
    ig = _module()
    units = {ig.unit(m) for m in ig.graph()}
    assert units == set(ig.LAYERS)
    assert {"recipe", "tasks", "data", "model", "eval", "training", "analysis"} <= units


def test_lazy_imports_count():
    g = _module().graph()
    assert "coconut_lm.training.train" in g["coconut_lm.cli"]  # imported inside the train command
    assert "coconut_lm.analysis.probe_plots" in g["coconut_lm.analysis.plots"]  # inside make_figures


def test_upward_imports_folder_cycles_and_stale_exceptions_are_found():
    ig = _module()
    layers = ["errors", "tasks", "model"]
    ok = {"coconut_lm.errors": set(), "coconut_lm.tasks.a": {"coconut_lm.errors"}, "coconut_lm.tasks.b": set(),
          "coconut_lm.model.m": {"coconut_lm.tasks.b"}}
    assert ig.problems(ok, layers, {}) == []
    upward = {**ok, "coconut_lm.tasks.a": {"coconut_lm.model.m"}}
    found = ig.problems(upward, layers, {})
    assert any(p.startswith("upward import: coconut_lm.tasks.a (tasks)") for p in found)
    assert "folder import cycle: model <-> tasks" in found and not any("module import cycle" in p for p in found)
    assert ig.problems({**ok, "coconut_lm.tasks.b": {"coconut_lm.tasks.a"}, "coconut_lm.tasks.a": {"coconut_lm.tasks.b"}},
                       layers, {}) == ["module import cycle: coconut_lm.tasks.a <-> coconut_lm.tasks.b"]
    excused = {("coconut_lm.tasks.a", "coconut_lm.model.m"): "why"}
    assert ig.problems(upward, layers, excused) == []
    assert ig.problems(ok, layers, excused) == ["stale exception: coconut_lm.tasks.a no longer imports coconut_lm.model.m"]
    assert ig.problems({**ok, "coconut_lm.extra": set()}, layers, {}) == ["extra: not in LAYERS (add it where it belongs)"]
