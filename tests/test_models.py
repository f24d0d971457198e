"""The learned models shipped in models/ load as they are and score what their cards say.

Each `models/prosqa-n10-*` folder was trained on the demo's distribution and scored on its 500
held-out graphs (`coconut-lm data prosqa --format symbolic --relabel --nodes 10 --min-hops 3
--max-hops 3 --n 500 --seed 2`); regenerating that file and scoring `best/` again must give the
recorded accuracy exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N10 = sorted((ROOT / "models").glob("prosqa-n10-*"))


@pytest.fixture(scope="module")
def n10_test(tmp_path_factory):
    from coconut_lm.cli import main

    out = tmp_path_factory.mktemp("n10") / "test.json"
    assert main(["data", "prosqa", "--format", "symbolic", "--relabel", "--nodes", "10", "--min-hops", "3",
                 "--max-hops", "3", "--n", "500", "--seed", "2", "--workers", "1", "--out", str(out)]) == 0
    return out


def test_models_are_shipped():
    assert N10, "models/prosqa-n10-* missing"


@pytest.mark.parametrize("model", N10, ids=[m.name for m in N10])
def test_a_shipped_model_scores_what_its_card_says(model, n10_test, tmp_path):
    from coconut_lm.eval.evaluate import evaluate_checkpoint

    for name in ("MODEL.md", "config.yaml", "metrics.jsonl", "stages.json", "best/coconut.json", "best/MANIFEST.json"):
        assert (model / name).is_file(), name
    recorded = json.loads((model / "eval" / "summary.json").read_text())
    assert f"{100 * recorded['accuracy']:.1f}%" in (model / "MODEL.md").read_text()
    summaries = evaluate_checkpoint(model, n10_test, tmp_path / "eval", device="cpu", progress=False)
    (got,) = summaries.values()
    assert got.n == recorded["n"] == 500 and got.accuracy == recorded["accuracy"]
