"""`coconut-lm report` on hand-made run folders: sources, seeds, mean ± std, the paper's numbers, errors."""

from __future__ import annotations

import argparse
import json
import statistics

import pytest
import yaml

from coconut_lm.analysis.report import PAPER, add_report_parser, read_run, variant_of, write_report
from coconut_lm.errors import CoconutError


def make_run(root, name: str, method: str, task: str, seed: int, summary: dict | None = None,
             vals: list[tuple[float, float]] | None = None, stages: list[int] | None = None,
             batch_size: int | None = None):
    run = root / name
    run.mkdir()
    cfg = {"task": task, "method": method, "seed": seed, "lr": 1e-4}
    if batch_size is not None:
        cfg["batch_size"] = batch_size
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    if summary is not None:
        (run / "eval").mkdir()
        (run / "eval" / "summary.json").write_text(json.dumps(
            {"n": 500, "data": "/x/prosqa_valid.json", "method": method, "task": task, **summary}))
    rows = [{"type": "train", "step": 1, "loss": 2.0}]
    for epoch, (acc, tok) in enumerate(vals or []):
        rows.append({"type": "val", "step": epoch + 1, "epoch": epoch, "val_accuracy": acc, "val_tokens": tok,
                     "val_thoughts": epoch, "stage": (stages or [epoch] * len(vals))[epoch]})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_eval_summary_wins_over_metrics(tmp_path):
    run = make_run(tmp_path, "a", "coconut", "prosqa", 3, summary={"accuracy": 0.97, "mean_tokens": 14.0},
                   vals=[(0.5, 10.0)])
    r = read_run(run)
    assert (r.method, r.task, r.seed, r.accuracy, r.tokens, r.n) == ("coconut", "prosqa", 3, 0.97, 14.0, 500)
    assert r.source == "eval/summary.json (prosqa_valid.json, n=500)"


def test_best_val_row_when_there_is_no_eval(tmp_path):
    run = make_run(tmp_path, "a", "cot", "prosqa", 0, vals=[(0.5, 40.0), (0.8, 45.0), (0.8, 50.0), (0.7, 44.0)])
    r = read_run(run)
    assert (r.accuracy, r.tokens) == (0.8, 45.0)  # the first of two equal bests: the one saved as best/
    assert r.source == "metrics.jsonl best val (epoch 2, 1 thoughts)"


def test_best_val_row_of_a_curriculum_run_comes_from_its_latest_stage(tmp_path):
    # Stage 0 of Coconut is plain CoT; its high accuracy must not stand in for Coconut's.
    run = make_run(tmp_path, "c", "coconut", "prosqa", 0, vals=[(0.9, 40.0), (0.4, 12.0), (0.6, 14.0), (0.5, 14.0)],
                   stages=[0, 1, 2, 2])
    r = read_run(run)
    assert (r.accuracy, r.tokens) == (0.6, 14.0)


def test_best_val_row_follows_the_logged_rank(tmp_path):
    # An iCoT run's early rows still write part of the chain (rank = epoch); only rows whose chain is
    # fully removed (the top rank) may give its number, as for best/.
    run = make_run(tmp_path, "i", "icot", "prosqa", 0, vals=[(0.9, 40.0), (0.7, 20.0), (0.5, 9.0), (0.6, 9.0)])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row, rank in zip(rows[1:], (0, 1, 1 << 30, 1 << 30)):
        row["rank"] = rank
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (read_run(run).accuracy, read_run(run).tokens) == (0.6, 9.0)


def test_table_has_mean_std_over_seeds_beside_the_paper(tmp_path):
    runs = [make_run(tmp_path, f"coconut_s{s}", "coconut", "prosqa", s, summary={"accuracy": a, "mean_tokens": t})
            for s, a, t in ((0, 0.90, 14.0), (1, 0.95, 15.0), (2, 0.97, 13.0))]
    runs.append(make_run(tmp_path, "cot", "cot", "prontoqa", 7, vals=[(0.9, 90.0)]))
    report = write_report(runs, tmp_path / "out" / "results.md")
    cell = next(c for c in report.cells if (c.method, c.task) == ("coconut", "prosqa"))
    assert cell.seeds == [0, 1, 2]
    assert cell.accuracy_mean == pytest.approx(94.0)
    assert cell.accuracy_std == pytest.approx(statistics.stdev([90.0, 95.0, 97.0]))
    assert cell.tokens_mean == pytest.approx(14.0) and cell.tokens_std == pytest.approx(1.0)
    assert (cell.paper_accuracy, cell.paper_tokens) == PAPER["coconut"]["prosqa"] == (97.0, 14.2)

    md = report.markdown.read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert header.split(" | ")[1:4] == ["GSM8k ours", "GSM8k paper", "ProntoQA ours"]
    coconut_row = next(line for line in md.splitlines() if line.startswith("| Coconut |")).split(" | ")
    assert coconut_row[5] == "94.0 ± 3.6 (14.0) [seeds 0, 1, 2]" and coconut_row[6].startswith("97.0 (14.2)")
    cot_row = next(line for line in md.splitlines() if line.startswith("| CoT |")).split(" | ")
    assert cot_row[3] == "90.0 (90.0) [seed 7]†" and cot_row[4] == "98.8 (92.5)"
    assert cot_row[1] == "–" and cot_row[2] == "42.9 (25.0)"  # no GSM8k run: ours empty, paper shown
    assert "| w/o curriculum | – | 14.4 |" in md
    assert "metrics.jsonl best val (epoch 1, 0 thoughts)" in md and "eval/summary.json" in md

    data = json.loads(report.json.read_text())
    assert report.json.name == "results.json"
    assert {r["seed"] for r in data["runs"] if r["method"] == "coconut"} == {0, 1, 2}
    assert data["paper"]["cot"]["prosqa"] == {"accuracy": 77.5, "tokens": 49.4}
    assert len(data["cells"]) == 8 * 3


def test_repeated_seed_is_reported(tmp_path):
    a = make_run(tmp_path, "a", "coconut", "prosqa", 0, vals=[(0.5, 9.0)])
    b = make_run(tmp_path, "b", "coconut", "prosqa", 0, vals=[(0.6, 9.0)])
    report = write_report([a, b, a], tmp_path / "results.md")  # the repeated folder counts once
    assert len(report.runs) == 2
    assert any("seed appears more than once" in w for w in report.warnings)


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such folder"),
    (lambda d: d.mkdir(), "no config.yaml"),
    (lambda d: (d.mkdir(), (d / "config.yaml").write_text("task: prosqa\n")), "field 'method' is missing"),
    (lambda d: (d.mkdir(), (d / "config.yaml").write_text("task: prosqa\nmethod: magic\n")), "unknown method 'magic'"),
    (lambda d: (d.mkdir(), (d / "config.yaml").write_text("task: prosqa\nmethod: cot\n")), "no val row"),
])
def test_bad_run_folders_are_one_line_errors(tmp_path, setup, message):
    run = tmp_path / "run"
    setup(run)
    with pytest.raises(CoconutError, match=message) as e:
        read_run(run)
    assert "\n" not in str(e.value)


def test_eval_summary_of_another_method_is_refused(tmp_path):
    run = make_run(tmp_path, "a", "coconut", "prosqa", 0, summary={"accuracy": 0.9, "method": "cot"})
    with pytest.raises(CoconutError, match="field 'method' is 'cot' but .*config.yaml says 'coconut'"):
        read_run(run)


def test_cli_parser(tmp_path):
    run = make_run(tmp_path, "a", "no_cot", "gsm8k", 1, vals=[(0.16, 2.2)])
    parser = argparse.ArgumentParser(prog="coconut-lm")
    add_report_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "r" / "table.md"
    args = parser.parse_args(["report", str(run), "--out", str(out)])
    assert args.func(args) == 0
    assert out.is_file() and (tmp_path / "r" / "table.json").is_file()
    args = parser.parse_args(["report", str(run), "--out", str(tmp_path / "x.json")])
    with pytest.raises(CoconutError, match="markdown"):
        args.func(args)


def test_validation_curves_go_into_the_json_and_one_figure(tmp_path):
    a = make_run(tmp_path, "a", "coconut", "prosqa", 0, vals=[(0.5, 9.0), (0.7, 9.0), (0.9, 9.0)], batch_size=32)
    b = make_run(tmp_path, "b", "cot", "prosqa", 1, summary={"accuracy": 0.8}, vals=[(0.6, 20.0)], batch_size=8)
    old = make_run(tmp_path, "old", "no_cot", "prosqa", 0, vals=[(0.4, 1.0)])  # no batch_size: no curve
    report = write_report([a, b, old], tmp_path / "out" / "results.md")
    assert [r.curve for r in report.runs] == [[(32, 0.5), (64, 0.7), (96, 0.9)], [(8, 0.6)], []]
    assert json.loads(report.json.read_text())["runs"][0]["curve"] == [[32, 0.5], [64, 0.7], [96, 0.9]]
    assert report.curves == tmp_path / "out" / "results_curves.png"
    assert report.curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_report([old], tmp_path / "none.md").curves is None
    assert not (tmp_path / "none_curves.png").exists()


def test_variants_get_their_own_rows_without_the_papers_number(tmp_path):
    """A faithful-shift or rotary run is not averaged into the default method's cell."""
    runs = [make_run(tmp_path, "d0", "coconut", "prosqa", 0, summary={"accuracy": 0.94, "mean_tokens": 6.0}),
            make_run(tmp_path, "d1", "coconut", "prosqa", 1, summary={"accuracy": 0.92, "mean_tokens": 6.0}),
            make_run(tmp_path, "f0", "coconut", "prosqa", 0, summary={"accuracy": 0.85, "mean_tokens": 6.0}),
            make_run(tmp_path, "l0", "coconut", "prosqa", 0, summary={"accuracy": 0.50, "mean_tokens": 6.0})]
    for run, extra in ((runs[2], {"shift_thoughts": False}), (runs[3], {"arch": "llama", "token_shift": 0})):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**cfg, **extra}))
    report = write_report(runs, tmp_path / "t.md")
    cells = {(c.method, c.variant): c for c in report.cells if c.task == "prosqa" and c.method == "coconut"}
    assert set(cells) == {("coconut", ""), ("coconut", "shift off the thoughts"), ("coconut", "llama, no token shift")}
    assert cells[("coconut", "")].accuracy_mean == pytest.approx(93.0) and cells[("coconut", "")].seeds == [0, 1]
    assert cells[("coconut", "shift off the thoughts")].accuracy_mean == pytest.approx(85.0)
    assert cells[("coconut", "shift off the thoughts")].paper_accuracy is None
    assert cells[("coconut", "")].paper_accuracy == PAPER["coconut"]["prosqa"][0]
    md = report.markdown.read_text()
    assert "| Coconut (shift off the thoughts) | – | – | – | – | 85.0 (6.0) [seed 0] | – |" in md
    # A probe (`eval --shift-thoughts send`) of a default model is filed under what was evaluated.
    probe = make_run(tmp_path, "p0", "coconut", "prosqa", 0,
                     summary={"accuracy": 0.91, "mean_tokens": 6.0, "shift_thoughts": "send"})
    assert read_run(probe).variant == "thoughts only send the shift"
    assert read_run(runs[0]).variant == ""
    assert [variant_of({"shift_thoughts": v}) for v in (True, False, "receive", "send")] == [
        "", "shift off the thoughts", "thoughts only receive the shift", "thoughts only send the shift"]


def test_chance_level_comes_from_the_summary_or_the_gold_answers(tmp_path):
    """Each scored file's chance level (an answer-blind guess) goes beside the table and into the runs table:
    eval records it in summary.json; an older summary gets it from its predictions' gold answers."""
    pq = make_run(tmp_path, "pq", "coconut", "prontoqa", 0, summary={"accuracy": 1.0, "mean_tokens": 15.0})
    (pq / "eval" / "predictions.jsonl").write_text("".join(
        json.dumps({"index": i, "gold": g, "predicted": g, "correct": True}) + "\n"
        for i, g in enumerate(["True", "False", "false.", "False"])))  # normalized: 3 of 4 are False
    ps = make_run(tmp_path, "ps", "coconut", "prosqa", 0, summary={"accuracy": 0.9, "mean_tokens": 9.0, "chance": 0.5})
    bare = make_run(tmp_path, "bare", "cot", "prosqa", 0, summary={"accuracy": 0.7, "mean_tokens": 20.0})
    assert read_run(pq).chance == 0.75 and read_run(ps).chance == 0.5 and read_run(bare).chance is None
    text = write_report([pq, ps, bare], tmp_path / "r.md").markdown.read_text()
    assert "Chance (an answer-blind guess, from the gold answers of each scored file): " in text
    assert "ProntoQA `prosqa_valid.json` 75.0%" in text and "ProsQA `prosqa_valid.json` 50.0%" in text
    assert "| 100.0 | 75.0 | 15.0 |" in text and "| 70.0 | – | 20.0 |" in text


def test_a_shipped_chain_is_reported_under_its_first_stages_seed(tmp_path):
    """scripts/official_cpu.sh's stage 4 trains with seed + 1; the shipped folder's stages.json names the chain's seed."""
    run = make_run(tmp_path, "prosqa-coconut-s1", "coconut", "prosqa", 2, summary={"accuracy": 0.94, "mean_tokens": 9.0})
    assert read_run(run).seed == 2
    (run / "stages.json").write_text(json.dumps([{"run": "n10", "seed": 1}, {"run": "main-c2", "seed": 2}]))
    assert read_run(run).seed == 1


def test_scored_on_a_part_by_step_count(tmp_path):
    by = {"3": {"n": 100, "accuracy": 0.9, "mean_thoughts": 6.0}, "4": {"n": 300, "accuracy": 0.5, "mean_thoughts": 6.0},
          "5": {"n": 50, "accuracy": 0.0, "mean_thoughts": 6.0}}
    a = make_run(tmp_path, "a", "coconut", "prosqa", 0, summary={"accuracy": 0.5, "mean_tokens": 9.0,
                                                                 "accuracy_by_steps": by})
    r = read_run(a, steps=[3, 4])
    assert (r.accuracy, r.n, r.tokens) == ((90 + 150) / 400, 400, None)
    assert r.source == "eval/summary.json (prosqa_valid.json, 3, 4 steps, n=400)"
    assert read_run(a, steps=[5, 6]).accuracy == 0.0
    assert read_run(a).accuracy == 0.5  # the whole file without --steps
    report = write_report([a], tmp_path / "t.md", steps=[3, 4])
    assert "whose chain has 3, 4 steps" in report.markdown.read_text()
    assert json.loads(report.json.read_text())["steps"] == [3, 4]
    with pytest.raises(CoconutError, match="no item with 7 steps .*it has 3, 4, 5"):
        read_run(a, steps=[7])
    old = make_run(tmp_path, "b", "cot", "prosqa", 0, summary={"accuracy": 0.5})
    with pytest.raises(CoconutError, match="field 'accuracy_by_steps' is missing"):
        read_run(old, steps=[3])
    no_eval = make_run(tmp_path, "c", "cot", "prosqa", 0, vals=[(0.5, 9.0)])
    with pytest.raises(CoconutError, match="cannot be scored by steps"):
        read_run(no_eval, steps=[3])
    parser = argparse.ArgumentParser(prog="coconut-lm")
    add_report_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["report", str(a), "--steps", "3,4"]).steps == [3, 4]


def test_scored_on_a_part_refuses_a_bad_entry_and_counts_a_step_once(tmp_path):
    by = {"3": {"n": 124, "accuracy": 0.9}, "4": {"n": 133, "accuracy": 0.5}}
    a = make_run(tmp_path, "a", "coconut", "prosqa", 0, summary={"accuracy": 0.5, "accuracy_by_steps": by})
    assert read_run(a, steps=[3, 3]).n == 124
    for i, bad in enumerate([{"n": 10}, {"n": "x", "accuracy": 0.5}, {"n": 10, "accuracy": None}, [1]]):
        b = make_run(tmp_path, f"b{i}", "coconut", "prosqa", 0, summary={"accuracy": 0.5, "accuracy_by_steps": {"3": bad}})
        with pytest.raises(CoconutError, match=r"summary.json: field 'accuracy_by_steps.3': expected"):
            read_run(b, steps=[3, 4])
