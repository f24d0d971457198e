"""The learned models shipped in models/ load as they are and score what their cards say.

Each `models/prosqa-n10-*` folder was trained on the demo's distribution and scored on its 500
held-out graphs (`coconut-lm data prosqa --format symbolic --relabel --nodes 10 --min-hops 3
--max-hops 3 --n 500 --seed 2`), each `models/prosqa-n16-*` on 500 fresh 16-node, 3-4-hop graphs
(`... --nodes 16 --min-hops 3 --max-hops 4 --n 500 --seed 777`), and each official-size one
(`models/prosqa-<method>-s<seed>`, from scripts/official_cpu.sh) on 500 fresh official-size graphs
(`... --n 500 --seed 777`, its `eval_fresh/`), and each `models/prontoqa-*` on 500 fresh 5-hop items
(`coconut-lm data prontoqa --format symbolic --relabel --n 500 --seed 777`); regenerating that file and scoring `best/` again must
give the recorded accuracy exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the `coconut-lm data prosqa --format symbolic --relabel` arguments of each family's scored set
SCORED_ON = {"prosqa-n10-": ["prosqa", "--nodes", "10", "--min-hops", "3", "--max-hops", "3", "--n", "500", "--seed", "2",
                             "--workers", "1"],
             "prosqa-n16-": ["prosqa", "--nodes", "16", "--min-hops", "3", "--max-hops", "4", "--n", "500", "--seed", "777",
                             "--workers", "1"],
             "prosqa-": ["prosqa", "--n", "500", "--seed", "777", "--workers", "1"],  # official size
             "prontoqa-": ["prontoqa", "--n", "500", "--seed", "777"]}  # the official 5-hop shape


def family(model: Path) -> str | None:
    """The SCORED_ON key of a shipped model (the most specific prefix), or None for one tested elsewhere."""
    if model.name.startswith("prosqa-adaptive-"):
        return None  # scored with the <eot> classifier on its own graphs (its card), not rescored here
    return max((p for p in SCORED_ON if model.name.startswith(p)), key=len, default=None)


MODELS = sorted(m for m in (ROOT / "models").glob("pro*qa-*") if family(m) is not None)


@pytest.fixture(scope="module")
def scored_sets(tmp_path_factory):
    from coconut_lm.cli import main

    out = {}
    for prefix, args in SCORED_ON.items():
        out[prefix] = tmp_path_factory.mktemp(prefix) / "test.json"
        assert main(["data", args[0], "--format", "symbolic", "--relabel", *args[1:], "--out", str(out[prefix])]) == 0
    return out


def test_models_are_shipped():
    assert {p.name for p in MODELS} >= {"prosqa-n10-coconut-s1", "prosqa-n10-cot-s0"}


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_a_shipped_model_scores_what_its_card_says(model, scored_sets, tmp_path):
    from coconut_lm.checkpoint_eval import evaluate_checkpoint

    for name in ("MODEL.md", "config.yaml", "metrics.jsonl", "stages.json", "best/coconut.json", "best/MANIFEST.json"):
        assert (model / name).is_file(), name
    fresh = model / "eval_fresh" / "summary.json"
    (summary,) = [fresh] if fresh.is_file() else model.glob("eval*/summary.json")
    recorded = json.loads(summary.read_text())
    assert f"{100 * recorded['accuracy']:.1f}%" in (model / "MODEL.md").read_text()
    data = scored_sets[family(model)]
    summaries = evaluate_checkpoint(model, data, tmp_path / "eval", device="cpu", progress=False)
    (got,) = summaries.values()
    assert got.n == recorded["n"] == 500 and got.accuracy == recorded["accuracy"]
