"""`coconut-lm analyze` end to end: every record, figure and table, plus one-line errors for bad input.

Most tests use checkpoints of a tiny random model written directly (fast). One slow test trains a
checkpoint with configs/prosqa_coconut_tiny.yaml, as a user would, and analyses it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from coconut_lm.analysis.paths import classify_chain
from coconut_lm.analysis.run import add_analyze_parser, run_analysis
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import load_examples, save_examples
from coconut_lm.tasks.prosqa import generate_prosqa
from coconut_lm.tasks.prosqa_graph import frontier, graph_from_example

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FIGURES = ["accuracy_vs_k.png", "parallelism.png", "path_categories.png", "probe_attention.png", "probe_lens.png",
           "probe_similarity.png", "search_tree.png", "value_vs_height.png"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "prosqa.json"
    save_examples(generate_prosqa(64, seed=0, workers=1), path)
    return path


def make_checkpoint(path: Path, data: Path, **meta) -> Path:
    """A checkpoint of a tiny random model with a word tokenizer over `data` (no training)."""
    from coconut_lm.data.pipeline import segment_texts
    from coconut_lm.data.tokenizer import build_word_tokenizer, special_token_ids
    from coconut_lm.model.backbone import build_backbone
    from coconut_lm.model.coconut import CoconutLM

    texts = [t for ex in load_examples(data) for q, steps, a in [segment_texts(ex)] for t in (q, *steps, a)]
    tok = build_word_tokenizer(texts)
    tokens = special_token_ids(tok)
    base = build_backbone({"n_layer": 1, "n_embd": 32, "n_head": 2}, vocab_size=len(tok), n_positions=512,
                          special=tokens)
    classifier = meta.pop("eot_classifier", False)
    meta = {"method": "coconut", "task": "prosqa", "c_thought": 1, "max_latent_stage": 3, "eval_thoughts": 3, **meta}
    CoconutLM(base, tokens, eot_classifier=classifier).save_pretrained(path, meta=meta)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, data_file) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {"coconut": make_checkpoint(root / "coconut", data_file),
            "cot": make_checkpoint(root / "cot", data_file, method="cot", eval_thoughts=0),
            "no_cot": make_checkpoint(root / "no_cot", data_file, method="no_cot", eval_thoughts=0)}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coconut-lm")
    add_analyze_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["analyze", *argv])


def check_outputs(out: Path, data: Path, n: int, latents: list[int], refs: list[str], n_thoughts: int) -> None:
    """Every record is there and agrees with the others and with the graphs."""
    examples = load_examples(data)[:n]
    graphs = [graph_from_example(ex) for ex in examples]
    assert sorted(p.name for p in (out / "figures").iterdir()) == FIGURES
    assert all((out / "figures" / f).stat().st_size > 10_000 for f in FIGURES)

    paths = json.loads((out / "path_categories.json").read_text())
    assert [s["name"] for s in paths["settings"]] == [f"k{k}" for k in latents] + refs
    rows = [json.loads(line) for line in (out / "path_categories.jsonl").read_text().splitlines()]
    for s in paths["settings"]:
        assert sum(s["counts"].values()) == s["n"] == n
        assert sum(s["fractions"].values()) == pytest.approx(1.0)
        sub = "forced_k" if s["kind"] == "forced_k" else "reference"
        summary = json.loads((out / sub / s["name"] / "summary.json").read_text())
        assert summary["accuracy"] == s["accuracy"]
        preds = [json.loads(line) for line in (out / sub / s["name"] / "predictions.jsonl").read_text().splitlines()]
        mine = [r for r in rows if r["setting"] == s["name"]]
        for p, r in zip(preds, mine):  # the stored category is the classifier's verdict on the stored text
            hops = s["k"] if s["kind"] == "forced_k" else 0
            assert classify_chain(graphs[p["index"]], p["text"], k_thoughts=hops).value == r["category"]
    assert json.loads((out / "forced_k" / "forced_k.json").read_text()).keys() == {f"k{k}" for k in latents}

    records = [json.loads(line) for line in (out / "latent_search.jsonl").read_text().splitlines()]
    assert len(records) == n
    for rec, g in zip(records, graphs):
        for f in rec["frontiers"]:
            assert {x["node"] for x in f["nodes"]} == set(frontier(g, g.root, f["hops"]))
            assert all(0.0 < x["value"] <= 1.0 for x in f["nodes"])
            # one token per name (word tokenizer), so the values of distinct names share one distribution
            assert sum(x["value"] for x in f["nodes"]) <= 1.0 + 1e-6
    summary = json.loads((out / "latent_search_summary.json").read_text())
    assert [f["hops"] for f in summary["frontiers"]] == [1, 2]
    assert {(c["hops"], c["k"]) for c in summary["parallelism"]} == {(h, k) for h in (1, 2) for k in (1, 2, 3)}

    probes = [json.loads(line) for line in (out / "probes.jsonl").read_text().splitlines()]
    assert [p["index"] for p in probes] == list(range(n)) and all(p["n_thoughts"] == n_thoughts for p in probes)
    assert "## Superposition probes" in (out / "analysis.md").read_text()

    thoughts = json.loads((out / "thoughts.json").read_text())["examples"]
    assert thoughts and all(len(t["thoughts"]) == n_thoughts and len(t["thoughts"][0]) == 5 for t in thoughts)

    md = (out / "analysis.md").read_text()
    for f in FIGURES:
        assert f"figures/{f}" in md
    for k in latents:
        assert f"| k={k} | coconut | {n} |" in md
    assert "## Value against height" in md and "## Decoded thoughts" in md


def test_analyze_end_to_end_with_references(tmp_path, data_file, checkpoints, capsys):
    out = tmp_path / "analysis"
    args = parse([str(checkpoints["coconut"]), "--data", str(data_file), "--out", str(out), "--latents", "0,1,2",
                  "--cot", str(checkpoints["cot"]), "--no-cot", str(checkpoints["no_cot"]), "--max-examples", "6",
                  "--batch-size", "4", "--max-new-tokens", "12", "--decode-examples", "2", "--device", "cpu",
                  "--no-progress"])
    assert args.func(args) == 0
    assert "analysis.md" in capsys.readouterr().out
    check_outputs(out, data_file, n=6, latents=[0, 1, 2], refs=["cot", "no_cot"], n_thoughts=3)
    # The No-CoT reference writes no chain, so its predictions are only ever label categories.
    paths = json.loads((out / "path_categories.json").read_text())
    no_cot = next(s for s in paths["settings"] if s["name"] == "no_cot")
    assert no_cot["kind"] == "reference" and no_cot["method"] == "no_cot"


def test_tree_example_is_the_one_asked_for(tmp_path, data_file, checkpoints):
    run_analysis(checkpoints["coconut"], data_file, tmp_path, latents=[1], max_examples=3, max_new_tokens=4,
                 decode_examples=0, tree_example=2, device="cpu", progress=False)
    assert json.loads((tmp_path / "latent_search_summary.json").read_text())["tree_example"] == 2
    assert "## Search tree of example 2" in (tmp_path / "analysis.md").read_text()
    assert json.loads((tmp_path / "thoughts.json").read_text())["examples"] == []


def test_own_stop_records_and_summary_by_hand():
    from coconut_lm.analysis.own_stop import stop_record, summarize_own_stop

    # node 2 is the target: on top from thought 1 in the first example, never in the second
    a = stop_record(0, 2, 2, True, [[0.5, 0.2, 0.1], [0.1, 0.2, 0.6], [0.0, 0.0, 0.01], [0.3, 0.0, 0.0]], target=2)
    b = stop_record(1, 3, 1, False, [[0.5, 0.2, 0.1], [0.4, 0.2, 0.3], [0.6, 0.0, 0.2]], target=2)
    assert (a["found"], a["target_value"][1], a["best_other_value"][1]) == (1, 0.6, 0.2) and b["found"] is None
    s = summarize_own_stop([a, b], 0.5)
    assert s["n"] == 2 and s["n_found"] == 1 and s["offsets"] == {"1": 1} and s["accuracy_by_offset"] == {"1": 1.0}
    assert s["mean_thoughts"] == 1.5 and s["by_hops"]["3"] == {"n": 1, "mean_thoughts": 1.0, "accuracy": 0.0,
                                                                "thoughts": {"1": 1}}
    assert s["spearman_thoughts_hops"] == pytest.approx(-1.0)
    aligned = {x["offset"]: x for x in s["aligned_values"]}
    assert aligned[-1] == {"offset": -1, "n": 2, "target": pytest.approx(0.35), "best_other": pytest.approx(0.35)}
    assert aligned[1]["n"] == 2 and -3 not in aligned  # thought stop - 3 exists for neither example


def test_analyze_reads_the_models_own_stop_with_a_classifier(tmp_path, data_file):
    ckpt = make_checkpoint(tmp_path / "adaptive", data_file, eot_classifier=True)
    out = tmp_path / "analysis"
    run_analysis(ckpt, data_file, out, latents=[1], max_examples=6, max_new_tokens=8, decode_examples=0,
                 probe_examples=0, device="cpu", progress=False, eot_threshold=0.4, stop_examples=4)
    summary = json.loads((out / "own_stop_summary.json").read_text())
    records = [json.loads(line) for line in (out / "own_stop.jsonl").read_text().splitlines()]
    preds = [json.loads(line) for line in (out / "own_stop" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6 and summary["n"] == len(records) == 4 and summary["threshold"] == 0.4
    assert [r["stop"] for r in records] == [p["thoughts"] for p in preds[:4]]
    for r in records:
        assert len(r["target_value"]) == len(r["best_other_value"]) > max(x["stop"] for x in records)
        first = next((t for t, (v, o) in enumerate(zip(r["target_value"], r["best_other_value"])) if v > o), None)
        assert r["found"] == first
    assert sum(summary["offsets"].values()) == summary["n_found"]
    assert (out / "figures" / "own_stop.png").stat().st_size > 10_000
    assert "## The model's own stop" in (out / "analysis.md").read_text()
    # A checkpoint without the classifier leaves no own-stop files behind in the same folder.
    run_analysis(make_checkpoint(tmp_path / "plain", data_file), data_file, out, latents=[1], max_examples=3,
                 max_new_tokens=4, decode_examples=0, probe_examples=0, device="cpu", progress=False, overwrite=True)
    assert not any(p.name.startswith("own_stop") for p in [*out.iterdir(), *(out / "figures").iterdir()])


@pytest.mark.slow
def test_analyze_a_trained_tiny_checkpoint(tmp_path, data_file):
    from coconut_lm.training.config import load_config
    from coconut_lm.training.train import train

    run = tmp_path / "run"
    cfg = load_config(CONFIGS / "prosqa_coconut_tiny.yaml", [
        f"train_path={data_file}", f"val_path={data_file}", f"out_dir={run}", "num_epochs=2", "batch_size=16",
        "micro_batch_size=16", "val_max_examples=8", "max_steps_per_epoch=2", "max_new_tokens=16"])
    train(cfg, progress=False, device="cpu")
    out = tmp_path / "analysis"
    args = parse([str(run), "--data", str(data_file), "--out", str(out), "--latents", "0,1,2,3",
                  "--max-examples", "8", "--max-new-tokens", "16", "--device", "cpu", "--no-progress"])
    assert args.func(args) == 0
    # Thoughts are decoded with the eval setting best/ records: its stage's count, k*c.
    from coconut_lm.model.coconut import read_meta

    meta = read_meta(run / "best")
    assert meta["eval_thoughts"] == meta["stage"] * meta["c_thought"] > 0
    check_outputs(out, data_file, n=8, latents=[0, 1, 2, 3], refs=[], n_thoughts=meta["eval_thoughts"])


# ------------------------------------------------------------------------------------ bad input


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "checkpoint .*: no such folder"),
    ("not_a_checkpoint", "not a checkpoint \\(no coconut.json\\) nor a run folder with best/"),
    ("wrong_task", "does not look like ProntoQA data .*but checkpoint .* was trained on it"),
    ("no_slots", "method 'cot' has no thought slots"),
    ("not_prosqa", "item 0: field 'idx_to_symbol': missing"),
    ("empty_data", "holds no examples"),
    ("bad_reference", "--no-cot .*: no such folder"),
    ("tree_out_of_range", "--tree-example 99: out of range for 64 examples"),
])
def test_bad_input_is_a_one_line_error(tmp_path, data_file, checkpoints, case, message):
    ckpt, data, kw = checkpoints["coconut"], data_file, {}
    if case == "missing":
        ckpt = tmp_path / "nope"
    elif case == "not_a_checkpoint":
        ckpt = tmp_path
    elif case == "wrong_task":
        ckpt = make_checkpoint(tmp_path / "c", data_file, task="prontoqa")
    elif case == "no_slots":
        ckpt = checkpoints["cot"]
    elif case == "not_prosqa":
        data = _write(tmp_path / "d.json", [{"question": "Is Tom happy?", "steps": ["Tom is happy."], "answer": "True"}])
    elif case == "empty_data":
        data = _write(tmp_path / "d.json", [])
    elif case == "bad_reference":
        kw = {"no_cot": tmp_path / "nope"}
    elif case == "tree_out_of_range":
        kw = {"tree_example": 99}
    with pytest.raises(CoconutError, match=message) as e:
        run_analysis(ckpt, data, tmp_path / "out", latents=[1], device="cpu", progress=False, **kw)
    assert "\n" not in str(e.value)


def test_search_hops_option():
    assert parse(["ckpt", "--data", "d.json", "--out", "o"]).search_hops == [1, 2]
    assert parse(["ckpt", "--data", "d.json", "--out", "o", "--search-hops", "1,3"]).search_hops == [1, 3]


@pytest.mark.parametrize("argv", [["--latents", "a,b"], ["--latents", "-1"], ["--batch-size", "0"],
                                  ["--max-examples", "x"], ["--decode-examples", "-1"], ["--probe-examples", "-1"],
                                  ["--html-examples", "0"]])
def test_bad_options_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(["ckpt", "--data", "d.json", "--out", "o", *argv])
    assert e.value.code == 2
