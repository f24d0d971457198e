"""The demo end to end, shortened: data, three methods, eval, the results table and results.json."""

from __future__ import annotations

import json

import pytest

from coconut_lm.demo import DEMO_METHODS, DemoRow, format_table, run_demo
from coconut_lm.errors import CoconutError


@pytest.mark.slow
def test_demo_runs_and_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    rows = run_demo(out, steps=3, extra_overrides=["model=micro", "val_max_examples=8", "eval_every=1"], parallel=2)
    assert [r.method for r in rows] == list(DEMO_METHODS)
    assert "| method | accuracy | tokens per answer |" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == set(DEMO_METHODS)
    for method, r in results["methods"].items():
        assert set(r) >= {"accuracy", "tokens", "thoughts", "train_s", "eval_s", "run_dir"}
        assert (out / method / "eval" / "summary.json").is_file() and r["run_dir"] == str(out / method)
        assert r["steps"] == 3
    assert results["methods"]["coconut"]["thoughts"] >= 0 and results["methods"]["cot"]["thoughts"] == 0
    gen = results["data"]["generate"]
    assert gen[:3] == ["prosqa", "--format", "symbolic"] and gen[gen.index("--out") + 1] == str(out / "data" / "train.json")
    with pytest.raises(CoconutError, match="not empty"):
        run_demo(out, steps=1)


def test_table_says_plainly_when_nothing_was_learned():
    rows = [DemoRow("cot", 0.52, 5.0, 0.0, 100, 1, "r/cot", 10), DemoRow("coconut", 0.49, 6.0, 3.0, 90, 1, "r/c", 10)]
    assert "near chance" in format_table(rows, 200, 500)
    rows[0].accuracy = 0.95
    assert "near chance" not in format_table(rows, 200, 500)


def test_demo_methods_option_takes_a_list_or_all():
    from coconut_lm.cli import build_parser
    from coconut_lm.demo import METHOD_OVERRIDES
    from coconut_lm.recipe.methods import METHODS

    assert set(METHOD_OVERRIDES) == set(METHODS)  # every method of Table 1 has the demo's recipe
    parse = build_parser().parse_args
    assert parse(["demo"]).methods == DEMO_METHODS
    assert parse(["demo", "--methods", "icot,pause"]).methods == ("icot", "pause")
    assert set(parse(["demo", "--methods", "all", "--seed", "1"]).methods) == set(METHODS)
    with pytest.raises(SystemExit):
        parse(["demo", "--methods", "coconut,bogus"])


def test_the_time_cap_grows_with_the_steps_asked_for(tmp_path):
    from coconut_lm.demo import STEPS, TRAIN_SECONDS, method_overrides

    def cap(steps):
        (value,) = [o.split("=")[1] for o in method_overrides("coconut", tmp_path, tmp_path / "r", steps, [])
                    if o.startswith("max_train_seconds=")]
        return float(value)

    assert cap(STEPS) == cap(10) == TRAIN_SECONDS
    assert cap(2 * STEPS) == 2 * TRAIN_SECONDS


def test_demo_configs_need_no_file_and_match_the_tiny_presets(tmp_path):
    """The demo builds its configs in code (it runs from an installed wheel); they equal configs/*_tiny.yaml + its keys."""
    from pathlib import Path

    from coconut_lm.demo import METHOD_OVERRIDES, method_overrides
    from coconut_lm.training.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    for method in METHOD_OVERRIDES:
        keys = method_overrides(method, tmp_path / "data", tmp_path / method, 2800, ["seed=1"])
        in_code = load_config(None, keys).to_dict()
        assert in_code == load_config(configs / f"prosqa_{method}_tiny.yaml", keys).to_dict(), method
        assert (in_code["method"], in_code["seed"]) == (method, 1)
