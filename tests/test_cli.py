"""The command line: help for every command, one-line errors with exit 2, and the data/eval commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coconut_lm.cli import COMMANDS, main, parse_args
from coconut_lm.model.coconut import read_checkpoint_info, read_meta
from coconut_lm.tasks.examples import load_examples


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS), ["data", "prosqa"], ["data", "prontoqa"],
                                     ["data", "gsm8k"], ["data", "stats"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    assert "usage: coconut-lm" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["data", "prosqa", "--n", "x", "--out", "o.json"], "expected a whole number, got 'x'"),
        (["data", "prosqa", "--n", "0", "--out", "o.json"], "expected a number >= 1"),
        (["data", "prontoqa", "--out", "o.json"], "the following arguments are required: --n"),
        (["eval", "ckpt", "--data", "d.json", "--out", "o", "--latents", "1,x"], "comma-separated whole numbers"),
        (["train", "--device", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "stats", "missing.json"], "missing.json: no such file"),
        (["train", "configs_missing.yaml"], "no such config file"),
        (["train", "method=cot", "lrr=1"], "unknown config key 'lrr'; did you mean 'lr'"),
        (["eval", "no_such_ckpt", "--data", "d.json", "--out", "o"], "no such folder"),
        (["data", "prosqa", "--n", "3", "--nodes", "4", "--min-hops", "5", "--out", "o.json"], "cannot be met"),
    ],
)
def test_bad_input_is_a_one_line_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_malformed_data_file_names_file_item_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "q", "steps": [], "answer": "a"}, {"question": "q", "steps": [1], "answer": "a"}]))
    assert main(["data", "stats", str(bad)]) == 2
    assert f"{bad}: item 1: field 'steps[0]': expected a string" in capsys.readouterr().err


def test_data_generators_and_stats(tmp_path, capsys):
    small = tmp_path / "small.json"
    assert main(["data", "prosqa", "--n", "40", "--seed", "3", "--workers", "1", "--nodes", "12", "--min-hops", "1",
                 "--max-hops", "2", "--out", str(small)]) == 0
    examples = load_examples(small)
    assert len(examples) == 40 and all(1 <= len(e.steps) <= 2 for e in examples)
    assert all(len(e.extra["idx_to_symbol"]) <= 12 for e in examples)
    pronto = tmp_path / "p.json"
    assert main(["data", "prontoqa", "--n", "10", "--out", str(pronto)]) == 0
    assert len(load_examples(pronto)) == 10
    capsys.readouterr()
    assert main(["data", "stats", str(small)]) == 0
    table = capsys.readouterr().out
    assert "steps mix" in table and "nodes (min / mean / max)" in table


def test_train_overrides_may_follow_flags(capsys):
    args = parse_args(["train", "c.yaml", "a=1", "--no-progress", "b=2", "--resume", "c=3"])
    assert (args.config, args.overrides, args.no_progress, args.resume) == ("c.yaml", ["a=1", "b=2", "c=3"], True, True)
    assert parse_args(["train", "a=1", "--no-progress", "b=2"]).overrides == ["b=2"]  # config holds a=1
    # The override after the flag reaches the config loader, which names the bad key.
    assert main(["train", "method=cot", "--no-progress", "lrr=1"]) == 2
    assert "unknown config key 'lrr'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "c.yaml", "--no-progress", "other.yaml"],
                                  ["eval", "ckpt", "--data", "d", "--out", "o", "lr=1"]])
def test_leftovers_that_are_not_train_overrides_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: " + argv[-1] in err and len(err.strip().splitlines()) == 1


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "coconut_lm.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("coconut-lm ")


def test_eval_forced_k_writes_records_per_k(coconut_checkpoint, capsys):
    out = coconut_checkpoint / "eval"
    assert main(["eval", str(coconut_checkpoint / "run" / "best"), "--data", str(coconut_checkpoint / "val.json"),
                 "--out", str(out), "--latents", "0,2", "--max-new-tokens", "8", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "k0" in table and "k2" in table
    forced = json.loads((out / "forced_k.json").read_text())
    assert set(forced) == {"k0", "k2"} and forced["k2"]["mean_thoughts"] == 2.0
    records = [json.loads(line) for line in (out / "k2" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 6
    assert {"question_id", "text", "predicted", "correct", "tokens", "thoughts"} <= set(records[0])
    assert all(r["thoughts"] == 2 and r["tokens"] == r["language_tokens"] + 2 for r in records)


def test_eval_default_thoughts_come_from_the_checkpoint(coconut_checkpoint):
    out = coconut_checkpoint / "eval_default"
    assert main(["eval", str(coconut_checkpoint / "run" / "best"), "--data", str(coconut_checkpoint / "val.json"),
                 "--out", str(out), "--max-new-tokens", "4", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # best/ records the eval setting of its stage (stage 0 here: 0 thoughts), not the method's final 3*1.
    meta = read_meta(coconut_checkpoint / "run" / "best")
    assert summary["n_thoughts"] == meta["eval_thoughts"] == meta["stage"] * meta["c_thought"] != 3
    assert summary["method"] == "coconut"


def test_eval_compile_gives_the_same_predictions(coconut_checkpoint, monkeypatch):
    """`eval --compile MODE` compiles the blocks (here through dynamo's capture only, aot_eager) and changes no output."""
    import torch

    from coconut_lm.model import compiled

    real, modes = compiled.compile_blocks, []

    def capture_only(model, mode):
        modes.append(mode)
        return real(model, mode, backend="aot_eager")

    monkeypatch.setattr(compiled, "compile_blocks", capture_only)
    config = torch._dynamo.config
    saved = config.suppress_errors, config.recompile_limit
    outs = {}
    torch._dynamo.utils.counters.clear()
    try:
        for flag in ([], ["--compile", "reduce-overhead"]):
            out = coconut_checkpoint / f"eval_compile{len(flag)}"
            assert main(["eval", str(coconut_checkpoint / "run" / "best"), "--data", str(coconut_checkpoint / "val.json"),
                         "--out", str(out), "--max-new-tokens", "6", "--no-progress", *flag]) == 0
            outs[len(flag)] = (out / "predictions.jsonl").read_text()
        frames = dict(torch._dynamo.utils.counters["frames"])
    finally:
        torch._dynamo.reset()
        config.suppress_errors, config.recompile_limit = saved
    assert modes == ["reduce-overhead"] and outs[0] == outs[2]
    assert frames.get("ok", 0) > 0 and frames["ok"] == frames["total"]  # it ran compiled, nothing fell back


def test_eval_shift_thoughts_probe_overrides_the_setting_for_this_eval_only(coconut_checkpoint, capsys):
    """`eval --shift-thoughts` runs the model with that setting, records it in summary.json, leaves the checkpoint as
    it was, and is refused for a model without a token shift, where it would change nothing."""
    import shutil

    best = coconut_checkpoint / "run" / "best"
    assert read_checkpoint_info(best).shift_thoughts is True and read_checkpoint_info(best).token_shift == 1
    texts = {}
    for value, want in (("send", "send"), ("false", False), (None, True)):
        out = coconut_checkpoint / f"eval_shift_{value}"
        flag = [] if value is None else ["--shift-thoughts", value]
        assert main(["eval", str(best), "--data", str(coconut_checkpoint / "val.json"), "--out", str(out),
                     "--latents", "2", "--max-new-tokens", "4", "--no-progress", *flag]) == 0
        assert json.loads((out / "summary.json").read_text())["shift_thoughts"] == want
        texts[value] = [json.loads(line)["text"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert texts["false"] != texts[None]  # the probe acts (on this near-random model, two thoughts change the text)
    assert read_checkpoint_info(best).shift_thoughts is True
    question = load_examples(coconut_checkpoint / "val.json")[0].question
    assert main(["generate", str(best), "--question", question, "--latents", "2", "--max-new-tokens", "4",
                 "--shift-thoughts", "receive"]) == 0
    # The same weights as a model without a token shift (no manifest, so the edited coconut.json loads).
    plain = coconut_checkpoint / "no_shift"
    shutil.copytree(best, plain)
    (plain / "MANIFEST.json").unlink()
    info = json.loads((plain / "coconut.json").read_text())
    (plain / "coconut.json").write_text(json.dumps({**info, "token_shift": 0}))
    capsys.readouterr()
    assert main(["eval", str(plain), "--data", str(coconut_checkpoint / "val.json"), "--out",
                 str(coconut_checkpoint / "eval_no_shift"), "--shift-thoughts", "receive", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "has no token shift (token_shift 0), so shift_thoughts=receive would change nothing" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["eval", str(best), "--data", "x", "--out", "y", "--shift-thoughts", "maybe"])
    assert e.value.code == 2 and "got 'maybe'" in capsys.readouterr().err


def test_generate_shows_decoded_thoughts(coconut_checkpoint, capsys):
    question = load_examples(coconut_checkpoint / "val.json")[0].question
    assert main(["generate", str(coconut_checkpoint / "run" / "best"), "--question", question, "--latents", "2",
                 "--max-new-tokens", "6", "--show-thoughts"]) == 0
    out = capsys.readouterr().out
    assert "thought 1:" in out and "thought 2:" in out


def test_eval_classifier_needs_a_classifier(coconut_checkpoint, capsys):
    assert main(["eval", str(coconut_checkpoint / "run" / "best"), "--data", str(coconut_checkpoint / "val.json"),
                 "--out", str(coconut_checkpoint / "x"), "--use-classifier"]) == 2
    assert "has no <eot> classifier" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "message"), [("1.5", "strictly between 0 and 1"), ("0", "strictly between 0 and 1"),
                                              ("a", "comma-separated numbers")])
def test_eval_threshold_must_be_a_probability(coconut_checkpoint, capsys, value, message):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(coconut_checkpoint / "run"), "--data", str(coconut_checkpoint / "val.json"),
              "--out", str(coconut_checkpoint / "t"), "--use-classifier", "--eot-threshold", value])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_eval_accepts_a_run_folder(coconut_checkpoint):
    out = coconut_checkpoint / "eval_run"
    assert main(["eval", str(coconut_checkpoint / "run"), "--data", str(coconut_checkpoint / "val.json"),
                 "--out", str(out), "--max-new-tokens", "4", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint"] == str(coconut_checkpoint / "run" / "best") and summary["n"] == 6


def test_eval_of_a_folder_that_is_no_checkpoint_says_so(coconut_checkpoint, tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--data", str(coconut_checkpoint / "val.json"), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: checkpoint {tmp_path}: not a checkpoint (no coconut.json) nor a run folder with best/" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_eval_on_cuda_without_cuda_is_a_one_line_error(coconut_checkpoint, capsys):
    assert main(["eval", str(coconut_checkpoint / "run"), "--data", str(coconut_checkpoint / "val.json"),
                 "--out", str(coconut_checkpoint / "cuda"), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda': no CUDA device") and len(err.strip().splitlines()) == 1
