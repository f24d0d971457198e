"""The demo end to end, shortened: data, three methods, eval, the results table and files."""

from __future__ import annotations

import json

import pytest

from coconut_lm.demo import DEMO_METHODS, format_table, run_demo


@pytest.mark.slow
def test_demo_runs_and_writes_results(tmp_path, capsys):
    rows = run_demo("prosqa", tmp_path, extra_overrides=["model=micro", "num_epochs=2", "max_steps_per_epoch=2",
                                                         "val_max_examples=8", "max_new_tokens=24"], progress=False)
    assert [r.method for r in rows] == list(DEMO_METHODS)
    out = capsys.readouterr().out
    assert "| method | accuracy | tokens per answer |" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["rows"]) == 3 and results["task"] == "prosqa"
    for method in DEMO_METHODS:
        assert (tmp_path / method / "eval" / "summary.json").is_file()


def test_table_says_plainly_when_everything_is_at_chance():
    from coconut_lm.demo import DemoRow

    text = format_table("prontoqa", [DemoRow("cot", 0.52, 70.0, 100, 1), DemoRow("coconut", 0.49, 9.0, 90, 1)], 200)
    assert "near chance (50%)" in text and "GPU presets" in text
    text = format_table("prontoqa", [DemoRow("cot", 0.9, 70.0, 100, 1)], 200)
    assert "near chance" not in text and "Chance is 50%" in text
