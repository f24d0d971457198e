"""Bad inputs and faults a new user hits: each gets a clear one-line error (or the right behaviour).

One test per case of the bad-input issue, so the cases covered can be counted (`pytest
tests/test_bad_inputs.py --collect-only -q`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from coconut_lm.errors import CoconutError
from coconut_lm.training.config import load_config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=coconut", "c_thought=0"], "'c_thought': 0 leaves method=coconut with no thoughts"),
        (["method=no_curriculum", "max_latent_stage=0"], "'max_latent_stage': 0 leaves method=no_curriculum"),
        (["method=pause_as_thought", "c_thought=0"], "'c_thought': 0 leaves method=pause_as_thought with no pause"),
        (["method=pause", "pause_tokens=0"], "'pause_tokens': 0 leaves method=pause with no pause tokens"),
    ],
)
def test_settings_that_empty_a_method_are_refused(overrides, message):
    with pytest.raises(CoconutError, match=message):
        load_config(None, overrides)


def test_start_epoch_at_or_past_num_epochs_is_refused_before_training():
    with pytest.raises(CoconutError, match="'start_epoch': 6 is not below num_epochs=6"):
        load_config(None, ["start_epoch=6", "num_epochs=6"])
    assert load_config(None, ["start_epoch=5", "num_epochs=6"]).start_epoch == 5


def test_methods_that_do_not_use_the_key_accept_zero():
    # CoT's official config sets c_thought: 0 and max_latent_stage: 0; w/o thought has no slots by design.
    for method in ("cot", "no_cot", "no_thought", "icot"):
        load_config(None, [f"method={method}", "c_thought=0", "max_latent_stage=0", "pause_tokens=0"])


def _eval_args(ckpt, out, *extra):
    return ["eval", str(ckpt / "run" / "best"), "--data", str(ckpt / "val.json"), "--out", str(out),
            "--max-new-tokens", "4", "--no-progress", *extra]


def test_eval_refuses_to_replace_earlier_results_unless_told(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main

    out = tmp_path / "eval"
    assert main(_eval_args(coconut_checkpoint, out)) == 0
    before = (out / "summary.json").read_text()
    assert main(_eval_args(coconut_checkpoint, out)) == 2
    assert f"eval: --out {out} is not empty (earlier results?)" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == before  # nothing already written is touched
    assert main(_eval_args(coconut_checkpoint, out, "--overwrite")) == 0


def test_eval_out_that_is_a_file_is_refused(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main

    (tmp_path / "f").write_text("x")
    assert main(_eval_args(coconut_checkpoint, tmp_path / "f")) == 2
    assert f"--out {tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err


def test_forced_k_eval_says_where_its_files_are(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main

    out = tmp_path / "fk"
    assert main(_eval_args(coconut_checkpoint, out, "--latents", "0,1")) == 0
    assert f"wrote {out}/forced_k.json and predictions.jsonl, summary.json in each of {out}/k0, {out}/k1" \
        in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--question", ""], "expected a question, got an empty string"),
    (["--question", "   "], "expected a question, got an empty string"),
    (["--question", "Is Tom a wumpus?", "--latents", "-5"], "expected a number >= 0, got -5"),
])
def test_generate_refuses_an_empty_question_and_negative_latents(coconut_checkpoint, capsys, args, message):
    from coconut_lm.cli import main

    with pytest.raises(SystemExit) as e:
        main(["generate", str(coconut_checkpoint / "run" / "best"), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_control_token_text_in_data_is_refused_in_train_eval_and_generate(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main
    from coconut_lm.tasks.examples import load_examples, save_examples
    from coconut_lm.training.train import train

    examples = load_examples(coconut_checkpoint / "val.json")
    bad = tmp_path / "bad.json"
    save_examples([examples[0], dataclasses.replace(examples[1], question=examples[1].question + " <latent>")], bad)
    cfg = load_config(None, [f"train_path={coconut_checkpoint / 'train.json'}", f"val_path={bad}", "model=micro",
                             f"out_dir={tmp_path / 'run'}", "num_epochs=1", "batch_size=8", "micro_batch_size=8"])
    with pytest.raises(CoconutError, match=rf"{bad}: item 1: field 'question' contains the control token '<latent>'"):
        train(cfg, progress=False, device="cpu")
    assert main(["eval", str(coconut_checkpoint / "run" / "best"), "--data", str(bad), "--out", str(tmp_path / "e")]) == 2
    assert "item 1: field 'question' contains the control token '<latent>'" in capsys.readouterr().err
    assert main(["generate", str(coconut_checkpoint / "run" / "best"), "--question", "Is Tom a <eos> wumpus?"]) == 2
    assert "--question: item 0: field 'question' contains the control token '<eos>'" in capsys.readouterr().err


def test_eval_refuses_another_tasks_data_and_records_what_it_scored(coconut_checkpoint, tmp_path, capsys):
    import json

    from coconut_lm.cli import main
    from coconut_lm.tasks.examples import Example, save_examples

    gsm = tmp_path / "gsm.json"  # a ProsQA model asked to score GSM8k-like data
    save_examples([Example("Tom has 3 apples and buys 4 more. How many now?", ["<<3+4=7>>"], "7")], gsm)
    assert main(["eval", str(coconut_checkpoint / "run" / "best"), "--data", str(gsm), "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"eval: {gsm} looks like gsm8k data but checkpoint" in err and "trained on prosqa" in err
    assert main(["eval", str(coconut_checkpoint / "run" / "best"), "--data", str(gsm), "--out", str(tmp_path / "e"),
                 "--no-progress", "--any-task", "--max-new-tokens", "4"]) == 0
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert (summary["task"], summary["data_task"]) == ("prosqa", "gsm8k") and summary["unknown_tokens"] > 0
    assert summary["chance"] == 1.0  # the data's chance level (its commonest answer: one item), not ProsQA's one half
    assert "unknown tokens (<unk>)" in capsys.readouterr().err


def test_every_checkpoint_file_gets_the_same_mode(coconut_checkpoint):
    import os

    umask = os.umask(0)
    os.umask(umask)
    for folder in (coconut_checkpoint / "run" / "best", *sorted((coconut_checkpoint / "run" / "checkpoints").iterdir())):
        modes = {f.name: f.stat().st_mode & 0o777 for f in folder.iterdir() if f.is_file()}
        assert set(modes.values()) == {0o666 & ~umask}, modes


@pytest.mark.parametrize("argv", [["data", "stats", "{d}"], ["data", "gsm8k", "--from", "{d}", "--out", "{d}/x.json"],
                                  ["train", "method=cot", "train_path={d}"]])
def test_a_directory_where_a_file_is_expected_is_named_as_such(tmp_path, capsys, argv):
    from coconut_lm.cli import main

    assert main([a.format(d=tmp_path) for a in argv]) == 2
    assert f"error: {tmp_path}: is a directory, not a file" in capsys.readouterr().err


def test_data_out_that_is_a_directory_is_a_one_line_error(tmp_path, capsys):
    from coconut_lm.cli import main

    assert main(["data", "prosqa", "--n", "2", "--workers", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path}: is a directory; give a file name to write" in err and len(err.strip().splitlines()) == 1


def test_a_mistyped_preset_is_named_with_the_presets_and_a_suggestion(coconut_checkpoint, tmp_path):
    from coconut_lm.training.train import train

    over = [f"train_path={coconut_checkpoint / 'train.json'}", f"val_path={coconut_checkpoint / 'val.json'}",
            f"out_dir={tmp_path / 'r'}"]
    with pytest.raises(CoconutError, match=r"'mikro' is neither a preset \(micro, .*\) nor a local folder; did you mean "
                                           r"'micro'\?"):
        train(load_config(None, [*over, "model=mikro"]), progress=False, device="cpu")
    with pytest.raises(CoconutError, match=r"'no-org/no-model' is neither a preset .* loading it as a hub id failed"):
        train(load_config(None, [*over, "model=no-org/no-model"]), progress=False, device="cpu")


def test_train_out_dir_that_is_a_file_is_a_one_line_error(coconut_checkpoint, tmp_path):
    from coconut_lm.training.train import train

    (tmp_path / "f").write_text("x")
    cfg = load_config(None, [f"train_path={coconut_checkpoint / 'train.json'}", f"val_path={coconut_checkpoint / 'val.json'}",
                             "model=micro", f"out_dir={tmp_path / 'f'}"])
    with pytest.raises(CoconutError, match=rf"config 'out_dir': {tmp_path / 'f'} is a file, not a folder"):
        train(cfg, progress=False, device="cpu")
    assert (tmp_path / "f").read_text() == "x"


def test_eval_names_the_file_and_item_of_an_over_long_question(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main
    from coconut_lm.tasks.examples import load_examples, save_examples

    examples = load_examples(coconut_checkpoint / "val.json")[:3]
    long = tmp_path / "long.json"
    save_examples([examples[0], dataclasses.replace(examples[1], question=" ".join(["Tom is a wumpus."] * 150))], long)
    assert main(["eval", str(coconut_checkpoint / "run" / "best"), "--data", str(long), "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: {long}: item 1: its prompt (" in err and "more than the model's 512" in err


def test_progress_in_a_log_file_is_one_plain_line_per_epoch(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.training.train import train

    cfg = load_config(None, [f"train_path={coconut_checkpoint / 'train.json'}", f"val_path={coconut_checkpoint / 'val.json'}",
                             "model=micro", f"out_dir={tmp_path / 'r'}", "num_epochs=2", "batch_size=4",
                             "micro_batch_size=4", "max_new_tokens=4"])
    train(cfg, progress=True, device="cpu")  # pytest's captured stderr is not a terminal, as a log file is not
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("epoch ") and "train loss" in line]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]


def test_damaged_weights_without_a_manifest_are_a_one_line_error(coconut_checkpoint, tmp_path, capsys):
    import shutil

    from coconut_lm.cli import main

    ckpt = tmp_path / "ckpt"
    shutil.copytree(coconut_checkpoint / "run" / "best", ckpt)
    (ckpt / "MANIFEST.json").unlink()
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["eval", str(ckpt), "--data", str(coconut_checkpoint / "val.json"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"error: checkpoint {ckpt}: its weights cannot be read (SafetensorError" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="needs /proc, where nothing can be created")
def test_paths_that_cannot_be_written_are_one_line_errors(coconut_checkpoint, capsys):
    from coconut_lm.cli import main

    assert main(["data", "prosqa", "--n", "2", "--workers", "1", "--out", "/proc/coconut_x.json"]) == 2
    assert "error: /proc/coconut_x.json: cannot write here (" in capsys.readouterr().err
    assert main(["train", "method=cot", "model=micro", f"train_path={coconut_checkpoint / 'train.json'}",
                 f"val_path={coconut_checkpoint / 'val.json'}", "out_dir=/proc/coconut_run", "num_epochs=1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: /proc/coconut_run: " in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_resume_without_a_complete_checkpoint_refuses_and_changes_nothing(coconut_checkpoint, tmp_path, damage):
    import hashlib

    from coconut_lm.training.train import train

    cfg = load_config(None, [f"train_path={coconut_checkpoint / 'train.json'}", f"val_path={coconut_checkpoint / 'val.json'}",
                             "model=micro", f"out_dir={tmp_path / 'r'}", "num_epochs=1", "batch_size=4",
                             "micro_batch_size=4", "max_new_tokens=4"])
    train(cfg, progress=False, device="cpu")
    (step,) = (tmp_path / "r" / "checkpoints").iterdir()
    state = step / "trainer_state.pt"
    if damage == "missing":
        state.unlink()
    else:
        state.write_bytes(state.read_bytes()[:100])

    def snapshot():
        return {str(f.relative_to(tmp_path)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted((tmp_path / "r").rglob("*")) if f.is_file()}

    before = snapshot()
    cfg.num_epochs = 2
    with pytest.raises(CoconutError, match=r"cannot resume .*: no complete checkpoint to continue from \(checkpoint "
                                           r".*step-\d+: file trainer_state.pt .*\); nothing was changed"):
        train(cfg, resume=True, progress=False, device="cpu")
    assert snapshot() == before  # the intact weights and metrics.jsonl are untouched


def test_resume_refuses_a_training_file_that_changed(coconut_checkpoint, tmp_path):
    import shutil

    from coconut_lm.tasks.examples import load_examples, save_examples
    from coconut_lm.training.train import train

    data = tmp_path / "train.json"
    shutil.copy(coconut_checkpoint / "train.json", data)
    cfg = load_config(None, [f"train_path={data}", f"val_path={coconut_checkpoint / 'val.json'}", "model=micro",
                             f"out_dir={tmp_path / 'r'}", "num_epochs=1", "batch_size=4", "micro_batch_size=4",
                             "max_new_tokens=4"])
    train(cfg, progress=False, device="cpu")
    examples = load_examples(data)  # a new word: the tokenizer rebuilt from the file would differ too
    save_examples([dataclasses.replace(examples[0], question=examples[0].question + " Zorblax."), *examples[1:]], data)
    cfg.num_epochs = 2
    with pytest.raises(CoconutError, match=rf"cannot resume .*: train_path {data} changed since the run started"):
        train(cfg, resume=True, progress=False, device="cpu")


def test_a_bare_key_after_an_override_is_blamed_itself(capsys):
    from coconut_lm.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "prosqa_cot_tiny.yaml"
    assert main(["train", str(config), "out_dir=x", "lr"]) == 2
    err = capsys.readouterr().err
    assert "override 'lr' is not key=value" in err and "out_dir" not in err


def test_an_unreadable_file_is_named_as_such(tmp_path, monkeypatch, capsys):
    import os

    from coconut_lm.cli import main

    data = tmp_path / "d.json"
    data.write_text("[]")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(data) else real(p, mode))
    assert main(["data", "stats", str(data)]) == 2  # root reads anything, so the permission is simulated
    assert f"error: {data}: not readable (permission denied)" in capsys.readouterr().err


def test_a_resumed_run_logs_its_total_time_and_how_many_steps_each_loss_averages(coconut_checkpoint, tmp_path):
    from coconut_lm.training.runlog import read_metrics
    from coconut_lm.training.train import train

    cfg = load_config(None, [f"train_path={coconut_checkpoint / 'train.json'}", f"val_path={coconut_checkpoint / 'val.json'}",
                             "model=micro", f"out_dir={tmp_path / 'r'}", "num_epochs=1", "batch_size=4",
                             "micro_batch_size=4", "max_new_tokens=4", "log_every=3"])
    first = train(cfg, progress=False, device="cpu")
    cfg.num_epochs = 2
    second = train(cfg, resume=True, progress=False, device="cpu")
    assert second.total_seconds > second.seconds and second.total_seconds >= first.seconds
    rows = read_metrics(tmp_path / "r")
    ends = [r for r in rows if r["type"] == "end"]
    assert ends[-1]["total_seconds"] == pytest.approx(second.total_seconds)
    train_rows = [r for r in rows if r["type"] == "train"]
    assert all(1 <= r["steps"] <= 3 for r in train_rows)
    resumed = next(r for r in train_rows if r["step"] > first.global_step)
    assert resumed["steps"] == min(3, resumed["step"] - first.global_step)  # only the steps since the resume


# --------------------------------------------------------------- issue 23: every command goes through the same checks

def _analyze_args(ckpt, data, out, *extra):
    return ["analyze", str(ckpt), "--data", str(data), "--out", str(out), "--latents", "0,1", "--max-examples", "3",
            "--max-new-tokens", "4", "--decode-examples", "1", "--search-hops", "1", "--device", "cpu",
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def symbolic_checkpoint(coconut_checkpoint, tmp_path_factory):
    """An untrained micro Coconut checkpoint that reads symbolic ProsQA (a symbol tokenizer), and its data."""
    from coconut_lm.data.pipeline import vocabulary_texts
    from coconut_lm.data.tokenizer import build_symbol_tokenizer, special_token_ids
    from coconut_lm.model.backbone import build_backbone
    from coconut_lm.model.coconut import CoconutLM
    from coconut_lm.tasks.examples import load_examples, save_examples
    from coconut_lm.tasks.symbolic import alphabet, symbolize

    root = tmp_path_factory.mktemp("symbolic")
    examples = symbolize(load_examples(coconut_checkpoint / "val.json"), seed=0)
    save_examples(examples, root / "val.json")
    tok = build_symbol_tokenizer(vocabulary_texts(examples) + [alphabet()])
    tokens = special_token_ids(tok)
    base = build_backbone("micro", vocab_size=len(tok), n_positions=256, special=tokens)
    CoconutLM(base, tokens).save_pretrained(root / "ckpt", meta={"method": "coconut", "task": "prosqa", "c_thought": 1,
                                                                 "max_latent_stage": 2, "eval_thoughts": 2})
    tok.save_pretrained(root / "ckpt")
    return root


def test_analyze_refuses_control_token_text_as_eval_does(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main
    from coconut_lm.tasks.examples import load_examples, save_examples

    examples = load_examples(coconut_checkpoint / "val.json")
    bad = tmp_path / "bad.json"
    save_examples([examples[0], dataclasses.replace(examples[1], question=examples[1].question + " <latent>")], bad)
    assert main(_analyze_args(coconut_checkpoint / "run", bad, tmp_path / "a")) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}: item 1: field 'question' contains the control token '<latent>'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "a").exists()  # nothing written


def test_analyze_refuses_another_tasks_data_as_eval_does(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prontoqa import generate_prontoqa

    pronto = tmp_path / "pronto.json"  # ProntoQA items carry graph keys too, so only the task check stops them
    save_examples(generate_prontoqa(3, seed=0), pronto)
    for command, args in (("eval", _eval_args(coconut_checkpoint, tmp_path / "e")[:2] + ["--data", str(pronto),
                                                                                        "--out", str(tmp_path / "e")]),
                          ("analyze", _analyze_args(coconut_checkpoint / "run", pronto, tmp_path / "a"))):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"error: {command}: {pronto} looks like prontoqa data but checkpoint" in err, err
        assert "trained on prosqa; pass --any-task" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "e").exists()


def test_word_form_data_on_a_symbolic_model_is_refused_by_eval_and_analyze(coconut_checkpoint, symbolic_checkpoint,
                                                                           tmp_path, capsys):
    from coconut_lm.cli import main

    words, ckpt = coconut_checkpoint / "val.json", symbolic_checkpoint / "ckpt"
    for command, args in (("eval", ["eval", str(ckpt), "--data", str(words), "--out", str(tmp_path / "e"),
                                    "--no-progress"]),
                          ("analyze", _analyze_args(ckpt, words, tmp_path / "a"))):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"error: {command}: {words} is ProsQA in the word form but checkpoint {ckpt} reads the symbolic form" \
            in err and "coconut-lm data symbolic" in err and len(err.strip().splitlines()) == 1
    # and the reverse: symbolic data on a model that reads words
    symbols = symbolic_checkpoint / "val.json"
    assert main(["eval", str(coconut_checkpoint / "run"), "--data", str(symbols), "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 2
    assert f"{symbols} is ProsQA in the symbolic form (one token per node) but checkpoint" in capsys.readouterr().err
    # the symbolic model on its own form runs
    assert main(["eval", str(ckpt), "--data", str(symbols), "--out", str(tmp_path / "e"), "--no-progress",
                 "--max-new-tokens", "2"]) == 0


def test_analyze_follows_evals_out_rules_and_overwrite_clears_what_it_replaces(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main

    run, data, out = coconut_checkpoint / "run", coconut_checkpoint / "val.json", tmp_path / "a"
    assert main(_analyze_args(run, data, out, "--latents", "0,1,2")) == 0
    assert (out / "forced_k" / "k2").is_dir()
    before = (out / "analysis.md").read_text()
    assert main(_analyze_args(run, data, out)) == 2
    err = capsys.readouterr().err
    assert f"error: analyze: --out {out} is not empty (earlier results?); choose a new folder or pass --overwrite" in err
    assert (out / "analysis.md").read_text() == before  # nothing already written is touched
    (out / "notes.txt").write_text("mine")
    assert main(_analyze_args(run, data, out, "--overwrite")) == 0
    assert sorted(p.name for p in (out / "forced_k").iterdir()) == ["forced_k.json", "k0", "k1"]  # no stale k2
    assert (out / "notes.txt").read_text() == "mine"  # only the analysis's own files are replaced
    (tmp_path / "f").write_text("x")
    assert main(_analyze_args(run, data, tmp_path / "f")) == 2
    assert f"analyze: --out {tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err


def test_eval_overwrite_clears_an_earlier_forced_k(coconut_checkpoint, tmp_path):
    from coconut_lm.cli import main

    out = tmp_path / "e"
    assert main(_eval_args(coconut_checkpoint, out, "--latents", "0,1,2")) == 0
    assert main(_eval_args(coconut_checkpoint, out, "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl", "summary.json"]  # no forced_k.json, k0..k2
    assert main(_eval_args(coconut_checkpoint, out, "--latents", "1,2", "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["forced_k.json", "k1", "k2"]


def test_report_does_not_replace_files_it_did_not_create(coconut_checkpoint, tmp_path, monkeypatch, capsys):
    from coconut_lm.cli import main

    monkeypatch.chdir(tmp_path)  # a demo folder: its results.md and results.json hold the demo's numbers
    run = str(coconut_checkpoint / "run")
    for name in ("results.md", "results.json"):
        (tmp_path / name).write_text("the demo's")
        assert main(["report", run]) == 2  # the default --out results.md
        err = capsys.readouterr().err
        assert f"error: report: {name} already exists" in err and "pass --overwrite" in err
        assert len(err.strip().splitlines()) == 1 and (tmp_path / name).read_text() == "the demo's"
        (tmp_path / name).unlink()
    assert main(["report", run, "--out", "table.md"]) == 0
    assert main(["report", run, "--out", "table.md"]) == 2  # an earlier report too
    assert main(["report", run, "--out", "table.md", "--overwrite"]) == 0


# ------------------------------------------------------------------------ issue 23: a run folder has one owner

def _train_args(ckpt, out, *extra):
    return ["train", "method=cot", "model=micro", f"train_path={ckpt / 'train.json'}", f"val_path={ckpt / 'val.json'}",
            f"out_dir={out}", "num_epochs=1", "batch_size=4", "micro_batch_size=4", "max_new_tokens=4",
            "--no-progress", *extra]


def test_a_second_train_into_a_held_run_folder_is_refused_and_a_dead_owners_lock_is_taken_over(
        coconut_checkpoint, tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys

    from coconut_lm.cli import main
    from coconut_lm.training.runlock import LOCK_NAME

    run = tmp_path / "r"
    run.mkdir()
    holder = subprocess.Popen(  # another `train` holding the folder
        [sys.executable, "-c", "import sys, time; from coconut_lm.training.runlock import acquire_run_lock; "
                               "acquire_run_lock(sys.argv[1]); print('held', flush=True); time.sleep(120)", str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(_train_args(coconut_checkpoint, run)) == 2
        err = capsys.readouterr().err
        assert f"error: {run}: another train is writing this run folder (pid {holder.pid} on host " in err
        assert f"lock file {run / LOCK_NAME}); wait for it to end, or choose another out_dir" in err
        assert len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: its lock file stays behind
        holder.wait()
    assert str(holder.pid) in (run / LOCK_NAME).read_text()
    assert main(_train_args(coconut_checkpoint, run)) == 0
    out = capsys.readouterr().out
    assert f"note: took over {run / LOCK_NAME} from pid {holder.pid}" in out
    assert not (run / LOCK_NAME).exists() and (run / "best").is_dir()  # released at the end


def test_the_lock_is_released_when_training_fails(coconut_checkpoint, tmp_path):
    from coconut_lm.training.runlock import LOCK_NAME
    from coconut_lm.training.train import train

    cfg = load_config(None, _train_args(coconut_checkpoint, tmp_path / "r")[1:-1])
    train(cfg, progress=False, device="cpu")
    with pytest.raises(CoconutError, match="already holds a run"):
        train(cfg, progress=False, device="cpu")
    assert not (tmp_path / "r" / LOCK_NAME).exists()


def test_stray_temporary_checkpoints_of_a_killed_write_are_cleaned_at_the_next_start(coconut_checkpoint, tmp_path,
                                                                                     capsys):
    import shutil

    from coconut_lm.training.manifest import verify_checkpoint
    from coconut_lm.training.train import train

    cfg = load_config(None, _train_args(coconut_checkpoint, tmp_path / "r")[1:-1])
    train(cfg, progress=False, device="cpu")
    run = tmp_path / "r"
    (step,) = (run / "checkpoints").iterdir()
    stray = run / "checkpoints" / f".tmp-step-00000009-{12345}"  # a kill while a checkpoint was being built
    shutil.copytree(step, stray)
    (stray / "MANIFEST.json").unlink()
    (run / ".config.yaml.abc123.tmp").write_text("half")  # and while config.yaml was being written
    os_replace_killed = run / ".old-best-777"  # a kill between the two renames of replacing best/
    (run / "best").rename(os_replace_killed)
    capsys.readouterr()
    cfg.num_epochs = 2
    train(cfg, resume=True, progress=False, device="cpu")
    out = capsys.readouterr().out
    assert f"note: removed {stray} (" in out and "MB), left by an interrupted checkpoint write" in out
    assert f"note: restored {run / 'best'} from .old-best-777" in out
    assert not stray.exists() and not os_replace_killed.exists() and not (run / ".config.yaml.abc123.tmp").exists()
    verify_checkpoint(run / "best")
    assert not [p for p in run.rglob(".*") if p.name.startswith((".tmp-", ".old-"))]


# ---------------------------------------------------------------- issue 23: numbers that cannot be right are refused

@pytest.mark.parametrize(("override", "message"), [
    ("lr=inf", "config 'lr': must be a finite number, got inf"),
    ("lr=.nan", "config 'lr': must be a finite number, got nan"),
    ("lr=nan", "config 'lr': must be a finite number, got nan"),
    ("lr=1e30", r"config 'lr': must be > 0 and at most 1.0 .*, got 1e\+30"),
    ("lr=0", "config 'lr': must be > 0 and at most 1.0"),
    ("lr=-1e-4", "config 'lr': must be > 0 and at most 1.0"),
    ("weight_decay=nan", "config 'weight_decay': must be a finite number, got nan"),
    ("grad_clip=inf", "config 'grad_clip': must be a finite number, got inf"),
    ("dropout=nan", "config 'dropout': must be a finite number, got nan"),
    ("betas=[.nan, 0.9]", r"config 'betas': must be a finite number, got \(nan, 0.9\)"),
    ("max_train_seconds=inf", "config 'max_train_seconds': must be a finite number, got inf"),
    ("uniform_prob=nan", "config 'uniform_prob': must be a finite number, got nan"),
    ("eot_loss_weight=-inf", "config 'eot_loss_weight': must be a finite number, got -inf"),
    ("icot_delta=inf", "config 'icot_delta': must be a finite number, got inf"),
])
def test_non_finite_and_absurd_config_numbers_are_refused(override, message, capsys):
    from coconut_lm.cli import main

    with pytest.raises(CoconutError, match=message):
        load_config(None, [override])
    assert main(["train", override]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(coconut_checkpoint, tmp_path,
                                                                             monkeypatch, capsys):
    import math

    import torch

    from coconut_lm.cli import main
    from coconut_lm.training.checkpoint import latest_checkpoint, load_model
    from coconut_lm.training.manifest import verify_checkpoint
    from coconut_lm.training.runlog import read_metrics
    from coconut_lm.training.train import Trainer

    original = Trainer.train_step

    def diverging(self, micro_batches):  # the second epoch's first step leaves NaN weights, as lr=inf did
        stats = original(self, micro_batches)
        if self.epoch == 1:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(Trainer, "train_step", diverging)
    run = tmp_path / "r"
    assert main(_train_args(coconut_checkpoint, run, "num_epochs=3", "log_every=1")) == 2
    err = capsys.readouterr().err
    (good,) = (run / "checkpoints").iterdir()
    assert f"error: training stopped: the loss became non-finite (NaN or inf) at step 6 (lr=0.0001); nothing was " \
           f"saved after it and the last good checkpoint is {good} (--resume continues from it)" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1 and "Traceback" not in err
    assert latest_checkpoint(run) == good and good.name == "step-00000004"  # the end of epoch 1
    for folder in (good, run / "best"):
        verify_checkpoint(folder)
        load_model(folder)  # finite weights
    rows = read_metrics(run)
    assert rows and all(math.isfinite(r["loss"]) for r in rows if r["type"] == "train")
    assert max(r["step"] for r in rows) == 5  # nothing logged from the bad step on


def test_non_finite_weights_are_refused_on_load_naming_the_file(coconut_checkpoint, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    from coconut_lm.cli import main

    ckpt = tmp_path / "ckpt"
    shutil.copytree(coconut_checkpoint / "run" / "best", ckpt)
    (ckpt / "MANIFEST.json").unlink()  # no manifest, so no checksum catches the damage
    weights = load_file(ckpt / "model.safetensors")
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name][0] = float("nan")
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    for argv in (["eval", str(ckpt), "--data", str(coconut_checkpoint / "val.json"), "--out", str(tmp_path / "e")],
                 ["generate", str(ckpt), "--question", "Is Tom a wumpus?"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"error: checkpoint {ckpt / 'model.safetensors'}: weight '" in err
        assert "holds non-finite values (NaN or inf)" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ issue 23: offline is fast

def test_a_hub_id_without_a_network_fails_in_seconds_saying_to_pass_a_local_folder(coconut_checkpoint, tmp_path,
                                                                                   monkeypatch, capsys):
    import time

    from coconut_lm.cli import main
    from coconut_lm.model import backbone

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # nothing says offline: the probe finds out
    monkeypatch.setattr(backbone, "hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    assert main(_train_args(coconut_checkpoint, tmp_path / "r", "model=openai-community/gpt2")) == 2
    assert time.perf_counter() - start < 20
    err = capsys.readouterr().err
    assert "error: config 'model': 'openai-community/gpt2' is neither a preset" in err
    assert "there is no network" in err and "pass its local folder (model=/path/to/gpt2)" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1 and "Traceback" not in err


def test_the_hub_probe_answers_quickly_when_nothing_listens(monkeypatch):
    import socket
    import time

    from coconut_lm.model.backbone import hub_offline, hub_reachable

    with socket.socket() as s:  # a port that was just free: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    assert not hub_reachable(timeout=2.0)
    assert time.perf_counter() - start < 5
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()


# ------------------------------------------------------- issue 23: the poor cases, one line each instead of a traceback

def _one_error_line(err: str) -> bool:
    return len([line for line in err.splitlines() if line.startswith("error:")]) == 1 and "Traceback" not in err


def test_resume_with_a_trainer_state_that_lacks_keys_is_one_line(coconut_checkpoint, tmp_path, capsys):
    import torch

    from coconut_lm.cli import main
    from coconut_lm.training.manifest import write_manifest

    run = tmp_path / "r"
    assert main(_train_args(coconut_checkpoint, run)) == 0
    (step,) = (run / "checkpoints").iterdir()
    state = torch.load(step / "trainer_state.pt", weights_only=True)
    del state["reset_step"], state["optimizer"]
    torch.save(state, step / "trainer_state.pt")
    write_manifest(step)  # a consistent folder: only the state's contents are wrong
    capsys.readouterr()
    assert main([*_train_args(coconut_checkpoint, run, "num_epochs=2"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot resume {step / 'trainer_state.pt'}: the trainer state lacks 'reset_step', 'optimizer'" in err
    assert _one_error_line(err)


def test_relabelling_symbolic_data_with_an_out_of_range_edge_is_refused_before_training(coconut_checkpoint,
                                                                                          symbolic_checkpoint,
                                                                                          tmp_path):
    from coconut_lm.tasks.examples import load_examples, save_examples
    from coconut_lm.training.train import train

    examples = load_examples(symbolic_checkpoint / "val.json")
    bad = examples[1].extra["edges"] + [[0, 99]]
    data = tmp_path / "sym.json"
    save_examples([examples[0], dataclasses.replace(examples[1], extra={**examples[1].extra, "edges": bad}),
                   *examples[2:]], data)
    cfg = load_config(None, [f"train_path={data}", f"val_path={data}", "model=micro", "method=cot",
                             "relabel_every_epoch=true", f"out_dir={tmp_path / 'r'}", "num_epochs=1", "batch_size=2",
                             "micro_batch_size=2"])
    with pytest.raises(CoconutError, match=rf"{data}: item 1: .*edge \(0, 99\) is out of range") as e:
        train(cfg, progress=False, device="cpu")
    assert "\n" not in str(e.value) and not (tmp_path / "r").exists()


def test_a_tokenizer_larger_than_the_embedding_is_one_line(coconut_checkpoint, symbolic_checkpoint, tmp_path, capsys):
    import shutil

    from coconut_lm.cli import main

    ckpt = tmp_path / "ckpt"  # the word model's weights with a bigger tokenizer beside them
    shutil.copytree(symbolic_checkpoint / "ckpt", ckpt)
    big = coconut_checkpoint / "run" / "best"
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(big / f, ckpt / f)
    assert main(["eval", str(ckpt), "--data", str(symbolic_checkpoint / "val.json"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"error: checkpoint {ckpt}: its tokenizer has " in err and "tokens but the model's embedding only" in err
    assert _one_error_line(err)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_head_count_that_does_not_divide_the_width_is_one_line(coconut_checkpoint, tmp_path, arch, capsys):
    from coconut_lm.cli import main

    assert main(_train_args(coconut_checkpoint, tmp_path / "r", f"arch={arch}", "n_embd=64", "n_head=3")) == 2
    err = capsys.readouterr().err
    assert "error: config 'n_head': n_embd=64 is not divisible by n_head=3" in err and _one_error_line(err)


def test_a_file_size_limit_on_write_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "big.json"
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from coconut_lm.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "data", "prosqa", "--n", "40", "--workers", "1", "--out",
                           str(out)], capture_output=True, text=True, env={**os.environ,
                                                                           "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 2, done.stderr
    assert f"error: {out}: cannot write it (File too large); nothing was replaced" in done.stderr
    assert _one_error_line(done.stderr) and not list(tmp_path.iterdir())  # no temporary file left either


def test_a_file_size_limit_while_checkpointing_is_one_line(coconut_checkpoint, tmp_path):
    import os
    import subprocess
    import sys

    run = tmp_path / "r"
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (60000, 60000)); "
            "from coconut_lm.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, *_train_args(coconut_checkpoint, run)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    assert f"error: checkpoint {run / 'best'}: cannot be written (SafetensorError: " in done.stderr
    assert "File too large" in done.stderr and _one_error_line(done.stderr)
    assert not list(run.rglob(".*")) and not (run / "train.lock").exists()  # no temporary folder, no lock left


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "stats", ""], "argument file: expected a path, got an empty string"),
    (["eval", "{ckpt}", "--data", "", "--out", "x"], "argument --data: expected a path, got an empty string"),
    (["train", "method=cot", "model=micro", "train_path="], "config 'train_path': empty; give the training data file"),
    (["train", "method=cot", "model=micro", "train_path={ckpt}/train.json", "out_dir="], "config 'out_dir': empty"),
])
def test_an_empty_path_is_named_as_such(coconut_checkpoint, argv, message, capsys):
    from coconut_lm.cli import main

    try:
        code = main([a.format(ckpt=coconut_checkpoint) for a in argv])
    except SystemExit as e:  # argparse's own one-line error
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_an_empty_model_folder_is_named_as_such(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main

    (tmp_path / "empty").mkdir()
    assert main(_train_args(coconut_checkpoint, tmp_path / "r", f"model={tmp_path / 'empty'}")) == 2
    err = capsys.readouterr().err
    assert f"error: config 'model': {tmp_path / 'empty'} is not a Hugging Face model folder (no config.json)" in err
    assert _one_error_line(err)


def test_init_from_a_checkpoint_of_another_task_is_refused(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prontoqa import generate_prontoqa

    data = tmp_path / "pronto.json"
    save_examples(generate_prontoqa(8, seed=0), data)
    assert main(["train", "task=prontoqa", "method=cot", f"train_path={data}", f"val_path={data}",
                 f"init_from={coconut_checkpoint / 'run'}", f"out_dir={tmp_path / 'r'}", "batch_size=4",
                 "micro_batch_size=4", "num_epochs=1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: config 'init_from': {coconut_checkpoint / 'run'} was trained on prosqa, this run is task=prontoqa" \
        in err and _one_error_line(err)


def test_forced_latents_on_a_method_without_thought_slots_are_refused(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main

    run = tmp_path / "cot"
    assert main(_train_args(coconut_checkpoint, run)) == 0
    capsys.readouterr()
    argv = ["eval", str(run), "--data", str(coconut_checkpoint / "val.json"), "--out", str(tmp_path / "e"),
            "--max-new-tokens", "2", "--no-progress"]
    assert main([*argv, "--latents", "4"]) == 2
    err = capsys.readouterr().err
    assert f"error: eval: --latents 4: checkpoint {run / 'best'} is a 'cot' model, whose prompt has no thought " \
           f"slots" in err and _one_error_line(err)
    assert main([*argv, "--latents", "0"]) == 0  # its own setting is fine


def test_max_thoughts_zero_with_the_classifier_is_refused():
    with pytest.raises(CoconutError, match="config 'max_thoughts': must be >= 1 with eval_use_classifier=true"):
        load_config(None, ["eot_classifier=true", "eval_use_classifier=true", "max_thoughts=0"])
    load_config(None, ["eot_classifier=true", "max_thoughts=0"])  # the classifier trained, not deciding at eval


def test_a_hand_edited_negative_eval_thoughts_is_refused_on_load(coconut_checkpoint, tmp_path, capsys):
    import json
    import shutil

    from coconut_lm.cli import main

    ckpt = tmp_path / "ckpt"
    shutil.copytree(coconut_checkpoint / "run" / "best", ckpt)
    (ckpt / "MANIFEST.json").unlink()
    meta = json.loads((ckpt / "coconut.json").read_text())
    meta.get("meta", meta)["eval_thoughts"] = -3
    (ckpt / "coconut.json").write_text(json.dumps(meta))
    assert main(["eval", str(ckpt), "--data", str(coconut_checkpoint / "val.json"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"error: {ckpt / 'coconut.json'}: meta field 'eval_thoughts' must be >= 0, got -3" in err
    assert _one_error_line(err)


def test_data_gsm8k_refuses_a_prosqa_file(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main

    src = coconut_checkpoint / "val.json"
    assert main(["data", "gsm8k", "--from", str(src), "--out", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err
    assert f"error: {src}: looks like prosqa data, not GSM8k" in err and _one_error_line(err)
    assert not (tmp_path / "g.json").exists()


def test_data_stats_names_the_graphs_it_leaves_out(coconut_checkpoint, tmp_path, capsys):
    from coconut_lm.cli import main
    from coconut_lm.tasks.examples import load_examples, save_examples

    examples = load_examples(coconut_checkpoint / "val.json")
    broken = [dataclasses.replace(ex, extra={**ex.extra, "edges": [[0, 999]]}) if i in (1, 3) else ex
              for i, ex in enumerate(examples)]
    save_examples(broken, tmp_path / "d.json")
    assert main(["data", "stats", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\nitems with a graph +4\n", out) and re.search(r"\nmalformed graphs, left out \(items\) +2 \(1, 3\)$", out)


def test_an_allocator_error_for_absurd_bench_sizes_is_one_line(monkeypatch, capsys):
    from coconut_lm.bench import run as bench
    from coconut_lm.cli import main

    def out_of_memory(cfg):  # what torch raises for sizes the machine cannot hold (not run for real: it might fit)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 824633720832 bytes.")

    monkeypatch.setattr(bench, "run_bench", out_of_memory)
    assert main(["bench", "--batch-size", "100000", "--vocab", "1000000"]) == 2
    err = capsys.readouterr().err
    assert "error: bench: --batch-size 100000, --vocab 1000000, --question" in err
    assert "need more cpu memory than there is (RuntimeError: [enforce fail" in err and _one_error_line(err)
