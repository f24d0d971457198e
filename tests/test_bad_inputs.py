"""Bad inputs and faults a new user hits: each gets a clear one-line error (or the right behaviour).

One test per case of the bad-input issue, so the cases covered can be counted (`pytest
tests/test_bad_inputs.py --collect-only -q`).
"""

from __future__ import annotations

import pytest

from coconut_lm.config import load_config
from coconut_lm.errors import CoconutError


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
