"""Training end to end: every method on the tiny presets, exact resume after SIGKILL, and DDP equality."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from coconut_lm.errors import CoconutError
from coconut_lm.recipe.methods import METHODS
from coconut_lm.tasks.examples import save_examples
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training import dist, manifest
from coconut_lm.training.config import load_config
from coconut_lm.training.runlog import read_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# Small enough for seconds on CPU: a 2-layer, 64-wide model, 2 steps an epoch, 8 validation examples.
FAST = ["model=micro", "batch_size=8", "micro_batch_size=4", "eval_batch_size=8", "val_max_examples=8",
        "max_new_tokens=24", "warmup_steps=0", "log_every=1"]


def _data(tmp_path: Path, task: str, n: int = 24) -> tuple[Path, Path]:
    if task == "prosqa":
        from coconut_lm.tasks.prosqa import generate_prosqa

        train, val = generate_prosqa(n, seed=0, workers=1), generate_prosqa(8, seed=1, workers=1)
    elif task == "prontoqa":
        from coconut_lm.tasks.prontoqa import generate_prontoqa

        train, val = generate_prontoqa(n, seed=0), generate_prontoqa(8, seed=1)
    else:
        from coconut_lm.tasks.examples import Example

        train = [Example(f"Tom has {i} apples and buys {i + 2} more. How many now?", [f"<<{i}+{i + 2}={2 * i + 2}>>"], str(2 * i + 2)) for i in range(n)]
        val = train[:8]
    tp, vp = tmp_path / f"{task}_train.json", tmp_path / f"{task}_val.json"
    save_examples(train, tp)
    save_examples(val, vp)
    return tp, vp


def _cfg(tmp_path: Path, task: str, method: str, *extra: str):
    tp, vp = _data(tmp_path, task)
    return load_config(CONFIGS / f"{task}_{method}_tiny.yaml",
                       [f"train_path={tp}", f"val_path={vp}", f"out_dir={tmp_path / 'run'}", *FAST, *extra])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["prosqa", "prontoqa", "gsm8k"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_end_to_end_on_tiny_presets(tmp_path, task, method):
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, task, method, "num_epochs=3", "epochs_per_stage=1", "max_latent_stage=2", "max_steps_per_epoch=2")
    result = train(cfg, progress=False, device="cpu")
    rows = read_metrics(result.run_dir)
    train_rows = [r for r in rows if r["type"] == "train"]
    val_rows = [r for r in rows if r["type"] == "val"]
    assert len(train_rows) == 6 and all(torch.isfinite(torch.tensor(r["loss"])) for r in train_rows)
    assert {"step", "epoch", "stage", "loss", "lr", "tokens_per_s", "peak_memory_MiB"} <= set(train_rows[0])
    assert train_rows[0]["peak_memory_MiB"] > 0
    assert len(val_rows) == 3 and all(0.0 <= r["val_accuracy"] <= 1.0 for r in val_rows)
    assert [r["stage"] for r in val_rows] == [0, 1, 2]
    manifest.verify_checkpoint(result.run_dir / "best")
    assert (result.run_dir / "config.yaml").is_file()
    assert result.global_step == 6


def _run(cmd: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout kill the whole group (torchrun's workers too)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    latest = ckpt.list_checkpoints(run_dir)[0]
    return load_file(latest / "model.safetensors")


def _train_cmd(cfg_overrides: list[str], *flags: str) -> list[str]:
    return [sys.executable, "-m", "coconut_lm.cli", "train", str(CONFIGS / "prosqa_coconut_tiny.yaml"),
            *cfg_overrides, "--no-progress", "--device", "cpu", *flags]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    tp, vp = _data(tmp_path, "prosqa", n=32)
    common = [f"train_path={tp}", f"val_path={vp}", *FAST, "num_epochs=3", "epochs_per_stage=1",
              "max_latent_stage=2", "uniform_prob=0.3", "save_every_steps=1", "keep_last=2", "model=micro",
              "dropout=0.1"]  # dropout: the resumed run must also restore the RNG exactly
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    first = _run(_train_cmd([*common, f"out_dir={straight}"]), env)
    assert first.returncode == 0, first.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd([*common, f"out_dir={killed}"]), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it once it has checkpointed step 6 of 12, i.e. in the middle of epoch 2.
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / ckpt.checkpoint_name(6) / manifest.MANIFEST).exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = ckpt.list_checkpoints(killed)
    assert done and int(done[0].name.split("-")[1]) < 12, "the run finished before it could be killed"
    resumed = _run(_train_cmd([*common, f"out_dir={killed}"], "--resume"), env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout

    a, b = _final_weights(straight), _final_weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps = [r["step"] for r in read_metrics(killed) if r["type"] == "train"]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 12


def test_resume_ignores_a_corrupt_latest_checkpoint(tmp_path):
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "cot", "num_epochs=1", "max_steps_per_epoch=2", "save_every_steps=1", "keep_last=3")
    train(cfg, progress=False, device="cpu")
    newest = ckpt.list_checkpoints(cfg.out_dir)[0]
    (newest / "model.safetensors").write_bytes(b"garbage")
    cfg.num_epochs = 2
    result = train(cfg, resume=True, progress=False, device="cpu")
    assert result.global_step == 4
    rows = [r for r in read_metrics(cfg.out_dir) if r["type"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


DDP_SCRIPT = """
import sys, torch
from coconut_lm.training.config import load_config
from coconut_lm.errors import CoconutError
from coconut_lm.training.train import train
cfg = load_config(sys.argv[1], sys.argv[2:])
train(cfg, progress=False, device="cpu")
"""


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "ddp-compiled", "fsdp-compiled", "ddp-checkpointed",
                                      "fsdp-checkpointed"])
def test_two_gloo_ranks_equal_one_process(tmp_path, strategy):
    """Two ranks train as one process does; "-compiled": the two ranks with compiled blocks
    (compile=true, the aot_eager backend: dynamo's capture without the C++ build) against one
    eager process; "-checkpointed": the two ranks with gradient_checkpointing=true."""
    tp, vp = _data(tmp_path, "prosqa", n=32)
    strategy, _, variant = strategy.partition("-")
    compiled, checkpointed = variant == "compiled", variant == "checkpointed"
    common = [f"train_path={tp}", f"val_path={vp}", *FAST, "num_epochs=2", "epochs_per_stage=1",
              "max_latent_stage=2", "uniform_prob=0.5", "batch_size=8", "micro_batch_size=4", "eval_every=100",
              "eot_classifier=true", f"distributed={strategy}"]
    script = tmp_path / "run.py"
    script.write_text(DDP_SCRIPT)
    cfg_path = str(CONFIGS / "prosqa_coconut_tiny.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Compiled or checkpointed blocks are not pruned (prune_last_block), so neither is the one process they
    # face: Adam would turn the pruned block's other rounding into stray weight differences of ~1e-5.
    unpruned = ["prune_last_block=false"] if compiled or checkpointed else []
    one = _run([sys.executable, str(script), cfg_path, *common, *unpruned, f"out_dir={tmp_path / 'one'}"], env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                str(script), cfg_path, *common, f"out_dir={tmp_path / 'two'}",
                *(["compile=true", "compile_backend=aot_eager"] if compiled else []),
                *(["gradient_checkpointing=true"] if checkpointed else [])], env)
    assert two.returncode == 0, two.stderr[-3000:]
    if compiled:  # no block fell back to eager: neither a failed compile nor the recompile limit
        assert "WON'T CONVERT" not in two.stderr and "recompile_limit" not in two.stderr, two.stderr[-3000:]
    loss_one = [r["loss"] for r in read_metrics(tmp_path / "one") if r["type"] == "train"]
    loss_two = [r["loss"] for r in read_metrics(tmp_path / "two") if r["type"] == "train"]
    assert len(loss_one) == len(loss_two) == 8
    assert loss_one == pytest.approx(loss_two, rel=1e-5, abs=1e-6)
    a, b = _final_weights(tmp_path / "one"), _final_weights(tmp_path / "two")
    # Adam divides by sqrt(v): a gradient near zero turns reduction-order noise into an update of
    # up to lr (1e-3). FSDP's reduce-scatter sums in another order than one process, so after 8
    # steps a stray weight may differ by a few 1e-5; 1e-4 is a tenth of one step's update.
    atol = {"ddp": 1e-5, "fsdp": 1e-4}[strategy]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=atol)


@pytest.mark.parametrize("task", ["prosqa", "prontoqa", "gsm8k"])
def test_word_tokenizer_covers_every_training_piece(tmp_path, task):
    from coconut_lm.data.pipeline import segment_texts, tokenize_examples, vocabulary_texts
    from coconut_lm.tasks.examples import load_examples
    from coconut_lm.training.train import build_model

    cfg = _cfg(tmp_path, task, "cot")
    examples = load_examples(cfg.train_path)
    _, tok = build_model(cfg, vocabulary_texts(examples))
    for ex, data in zip(examples, tokenize_examples(examples, tok)):
        ids = data.question + [t for s in data.steps for t in s] + data.answer
        assert tok.unk_token_id not in ids
        q, steps, a = segment_texts(ex)
        assert tok.decode(ids, skip_special_tokens=True) == q + "".join(steps) + a


def test_time_limit_stops_validates_and_resumes(tmp_path):
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "coconut", "num_epochs=2", "epochs_per_stage=1", "max_latent_stage=2",
               "max_train_seconds=0.000001")
    first = train(cfg, progress=False, device="cpu")
    assert first.global_step == 1
    rows = read_metrics(cfg.out_dir)
    assert rows[-1]["type"] == "end" and rows[-1]["stopped_early"] is True
    assert [r["type"] for r in rows].count("val") == 1
    cfg.max_train_seconds = None
    second = train(cfg, resume=True, progress=False, device="cpu")
    assert second.global_step == 2 * (24 // 8)
    steps = [r["step"] for r in read_metrics(cfg.out_dir) if r["type"] == "train"]
    assert steps == list(range(1, second.global_step + 1))


def test_eot_classifier_trains_and_ends_latent_mode_at_eval(tmp_path):
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "coconut", "num_epochs=3", "epochs_per_stage=1", "max_latent_stage=2",
               "eot_classifier=true", "eval_use_classifier=true", "max_thoughts=4", "lr=3e-3")
    result = train(cfg, progress=False, device="cpu")
    assert (result.run_dir / "best" / "eot_head.safetensors").is_file()
    vals = [r for r in read_metrics(result.run_dir) if r["type"] == "val"]
    assert len(vals) == 3 and all(0 <= r["val_accuracy"] <= 1 for r in vals)
    from coconut_lm.checkpoint_eval import evaluate_checkpoint

    summaries = evaluate_checkpoint(result.run_dir / "best", cfg.val_path, tmp_path / "eval", max_new_tokens=8,
                                    device="cpu", progress=False)
    s = summaries["classifier"]
    assert s.use_classifier and s.n_thoughts is None and 0 <= s.mean_thoughts <= 4 and s.eot_threshold == 0.5

    # A threshold sweep with fixed counts beside it: one summary each, thoughts by hop count, the rank correlation.
    import json

    from coconut_lm.eval.evaluate import spearman

    sweep = evaluate_checkpoint(result.run_dir / "best", cfg.val_path, tmp_path / "sweep", latents=[0, 2],
                                use_classifier=True, eot_thresholds=[0.05, 0.95], max_new_tokens=8, device="cpu",
                                progress=False)
    assert list(sweep) == ["classifier@0.05", "classifier@0.95", "k0", "k2"]
    assert sweep["classifier@0.05"].mean_thoughts <= sweep["classifier@0.95"].mean_thoughts
    assert sweep["k2"].mean_thoughts == 2 and sweep["k2"].eot_threshold is None
    saved = json.loads((tmp_path / "sweep" / "classifier@0.95" / "summary.json").read_text())
    preds = [json.loads(line) for line in (tmp_path / "sweep" / "classifier@0.95" / "predictions.jsonl").open()]
    by_hops = saved["accuracy_by_steps"]
    assert sum(g["n"] * g["mean_thoughts"] for g in by_hops.values()) == pytest.approx(sum(p["thoughts"] for p in preds))
    assert "thoughts_steps_spearman" in saved and "thoughts_steps_spearman" not in json.loads(
        (tmp_path / "sweep" / "k2" / "summary.json").read_text())
    assert (tmp_path / "sweep" / "forced_k.json").is_file()
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [3, 2, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    with pytest.raises(CoconutError, match="needs the classifier"):
        evaluate_checkpoint(result.run_dir / "best", cfg.val_path, tmp_path / "x", use_classifier=False,
                            eot_thresholds=[0.3], device="cpu", progress=False)


def test_existing_run_folder_is_not_overwritten_by_accident(tmp_path):
    from coconut_lm.errors import CoconutError
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "cot", "num_epochs=1", "max_steps_per_epoch=1")
    train(cfg, progress=False, device="cpu")
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(CoconutError, match="already holds a run; continue it with --resume"):
        train(cfg, progress=False, device="cpu")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
    cfg.overwrite = True
    train(cfg, progress=False, device="cpu")
    rows = read_metrics(tmp_path / "run")
    assert [r["type"] for r in rows].count("end") == 1


def test_resume_refuses_a_changed_data_order(tmp_path):
    from coconut_lm.errors import CoconutError
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "cot", "num_epochs=1", "max_steps_per_epoch=1")
    train(cfg, progress=False, device="cpu")
    cfg.seed, cfg.num_epochs = 7, 2
    with pytest.raises(CoconutError, match="config 'seed' was 0 there and is 7 now"):
        train(cfg, resume=True, progress=False, device="cpu")


def test_best_checkpoint_comes_from_the_latest_stage_and_records_its_setting(tmp_path, monkeypatch):
    from coconut_lm.model.coconut import read_meta
    from coconut_lm.training import train as train_module

    # Validation accuracy falls stage by stage: the best number is stage 0's (plain CoT), but best/
    # must hold the last stage's model, evaluated with that stage's thoughts.
    accuracies = iter([0.9, 0.5, 0.2])

    def fake_validate(self):
        return {"type": "val", "step": self.global_step, "epoch": self.epoch, "stage": self.stage(),
                "val_accuracy": next(accuracies)}

    monkeypatch.setattr(train_module.Trainer, "validate", fake_validate)
    cfg = _cfg(tmp_path, "prosqa", "coconut", "num_epochs=3", "epochs_per_stage=1", "max_latent_stage=2",
               "max_steps_per_epoch=1", "c_thought=2")
    result = train_module.train(cfg, progress=False, device="cpu")
    assert (result.best_epoch, result.best_accuracy) == (2, 0.2)
    meta = read_meta(result.run_dir / "best")
    assert (meta["stage"], meta["eval_thoughts"]) == (2, 4)


def test_icot_best_checkpoint_comes_only_from_epochs_with_the_chain_removed(tmp_path, monkeypatch):
    from coconut_lm.model.coconut import read_meta
    from coconut_lm.training import train as train_module

    # One chain token removed per epoch, the whole chain once 3 are scheduled: epochs 0 and 1 still
    # write part of it. Their high accuracy must not win; among epochs 2 and 3 the better one does.
    accuracies = iter([0.9, 0.5, 0.2, 0.3, 0.25])
    seen: list[int] = []

    def fake_validate(self):
        seen.append(self.best_epoch)
        return {"type": "val", "step": self.global_step, "epoch": self.epoch, "stage": self.stage(),
                "val_accuracy": next(accuracies)}

    monkeypatch.setattr(train_module.Trainer, "validate", fake_validate)
    cfg = _cfg(tmp_path, "prosqa", "icot", "num_epochs=5", "icot_delta=1", "icot_max_removed=3",
               "max_steps_per_epoch=1")
    result = train_module.train(cfg, progress=False, device="cpu")
    assert seen[1:3] == [0, 1]  # before the chain is removed best/ follows the latest epoch
    assert (result.best_epoch, result.best_accuracy) == (3, 0.3)
    assert read_meta(result.run_dir / "best")["epoch"] == 3


def test_fresh_data_and_relabelling_draw_new_seeded_epochs(tmp_path):
    """fresh_data draws a new training set per epoch; relabelling renames it; both are pure functions of (seed, epoch)."""
    from coconut_lm.cli import main
    from coconut_lm.training.train import Trainer

    args = ["prosqa", "--format", "symbolic", "--nodes", "8", "--min-hops", "1", "--max-hops", "2"]
    for name, seed in (("train", 0), ("val", 1)):
        assert main(["data", *args, "--n", "16", "--seed", str(seed), "--workers", "1",
                     "--out", str(tmp_path / f"{name}.json")]) == 0
    over = [f"train_path={tmp_path / 'train.json'}", f"val_path={tmp_path / 'val.json'}", *FAST]

    def epochs(*extra):
        t = Trainer(load_config(CONFIGS / "prosqa_cot_tiny.yaml", [*over, f"out_dir={tmp_path / 'r'}", *extra]),
                    dist.init_distributed("cpu"), progress=False)
        out = []
        for e in (0, 1):
            t.epoch = e
            out.append([ex.question for ex in t.epoch_data()])
        return t.train_data, out

    plain, (p0, p1) = epochs()
    assert p0 == p1 == [ex.question for ex in plain]
    _, (f0, f1) = epochs("fresh_data=" + " ".join(args))
    assert f0 != f1 and f0 != p0 and len(f0) == len(p0)
    assert epochs("fresh_data=" + " ".join(args))[1] == [f0, f1]
    _, (r0, r1) = epochs("relabel_every_epoch=true")
    assert r0 != r1 and r0 != p0
    with pytest.raises(CoconutError, match="leave out"):
        epochs("fresh_data=prosqa --n 5")


@pytest.mark.parametrize("tokenizer", [None, "word"])
def test_gsm8k_from_scratch_gets_bpe_and_unknown_validation_words_are_reported(tmp_path, capsys, tokenizer):
    import json
    import shutil

    from coconut_lm.checkpoint_eval import evaluate_checkpoint
    from coconut_lm.tasks.examples import Example
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "gsm8k", "cot", "num_epochs=1", "max_steps_per_epoch=1", "max_new_tokens=4",
               *([f"tokenizer={tokenizer}"] if tokenizer else []))
    val = tmp_path / "unseen.json"  # words the training questions never use
    save_examples([Example("Ann bakes 3 pies and sells 2 cakes. How many remain?", ["<<3-2=1>>"], "1")], val)
    cfg.val_path = str(val)
    result = train(cfg, progress=False, device="cpu")
    err = capsys.readouterr().err
    out = tmp_path / "eval"
    evaluate_checkpoint(result.run_dir, val, out, device="cpu", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    unknown = summary["unknown_tokens"]
    assert summary["accuracy_by_steps"] == {"1": {"n": 1, "accuracy": summary["accuracy"], "mean_thoughts": summary["mean_thoughts"]}}  # one 1-step item
    backend = json.loads((result.run_dir / "best" / "tokenizer.json").read_text())["model"]["type"]
    if tokenizer is None:  # the default for GSM8k: byte-level BPE, nothing unknown
        assert backend == "BPE" and unknown == 0 and "unknown tokens" not in err
    else:
        assert backend == "WordLevel" and unknown > 0
        assert f"warning: {val}: {unknown} unknown tokens (<unk>) in 1 items; the first is 'Ann'" in err
    shutil.rmtree(out)


def test_resume_compares_a_key_the_old_run_never_recorded_with_its_default(tmp_path):
    """A run saved before `length_buckets` existed used no bucketing: resuming it with bucketing is refused."""
    from coconut_lm.errors import CoconutError
    from coconut_lm.training import checkpoint as ckpt
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "cot", "num_epochs=1", "max_steps_per_epoch=1")
    train(cfg, progress=False, device="cpu")
    latest = ckpt.latest_checkpoint(cfg.out_dir)
    state = ckpt.load_trainer_state(latest)
    del state["config"]["length_buckets"]  # as the trainer state of an older coconut-lm
    torch.save(state, latest / ckpt.TRAINER_STATE)
    (latest / manifest.MANIFEST).unlink()
    manifest.write_manifest(latest)
    cfg.num_epochs, cfg.length_buckets = 2, 4
    with pytest.raises(CoconutError, match="config 'length_buckets' was 0 there and is 4 now"):
        train(cfg, resume=True, progress=False, device="cpu")
    cfg.length_buckets = 0
    assert train(cfg, resume=True, progress=False, device="cpu").global_step == 2


def test_activation_is_kept_by_resume_and_init_from_and_refused_for_hf_models(tmp_path):
    """The weights keep the activation they were trained with: a change is an error, not a new model."""
    from coconut_lm.errors import CoconutError
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "cot", "num_epochs=1", "max_steps_per_epoch=1", "activation=gelu")
    first = train(cfg, progress=False, device="cpu")
    cfg.num_epochs, cfg.activation = 2, "relu"
    with pytest.raises(CoconutError, match="config 'activation' was 'gelu' there and is 'relu' now; a resume continues the same run"):
        train(cfg, resume=True, progress=False, device="cpu")
    for sub in ("from", "same", "hf"):
        (tmp_path / sub).mkdir()
    other = _cfg(tmp_path / "from", "prosqa", "cot", "num_epochs=1", "max_steps_per_epoch=1",
                 f"init_from={first.run_dir / 'best'}", "activation=relu")
    with pytest.raises(CoconutError, match="'relu', but init_from=.* was trained with 'gelu'"):
        train(other, progress=False, device="cpu")
    same = _cfg(tmp_path / "same", "prosqa", "cot", "num_epochs=1", "max_steps_per_epoch=1",
                f"init_from={first.run_dir / 'best'}", "activation=gelu")
    assert train(same, progress=False, device="cpu").global_step == 1
    hf = _cfg(tmp_path / "hf", "prosqa", "cot", "num_epochs=1", f"model={first.run_dir / 'best'}", "activation=gelu")
    with pytest.raises(CoconutError, match="config 'activation': sets a from-scratch preset's activation"):
        train(hf, progress=False, device="cpu")


def test_shift_thoughts_is_saved_and_init_from_keeps_or_overrides_it(tmp_path):
    """`shift_thoughts=false` trains the faithful variant; its checkpoint says so, init_from keeps it unless told
    (to true, or to one of the shift's two paths through the thoughts)."""
    from coconut_lm.model.files import read_checkpoint_info
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "coconut", "num_epochs=1", "max_steps_per_epoch=1", "token_shift=1",
               "shift_thoughts=false")
    first = train(cfg, progress=False, device="cpu")
    assert read_checkpoint_info(first.run_dir / "best").shift_thoughts is False
    for sub, extra, want in (("keep", [], False), ("back", ["shift_thoughts=true"], True),
                             ("send", ["shift_thoughts=send"], "send")):
        (tmp_path / sub).mkdir()
        nxt = _cfg(tmp_path / sub, "prosqa", "coconut", "num_epochs=1", "max_steps_per_epoch=1",
                   f"init_from={first.run_dir / 'best'}", *extra)
        assert read_checkpoint_info(train(nxt, progress=False, device="cpu").run_dir / "best").shift_thoughts == want


def test_eot_classifier_without_markers_trains_and_stops_at_eval(tmp_path):
    """The from-scratch layout (no <bot>/<eot>) with the classifier: it trains, and eval lets it stop."""
    from coconut_lm.checkpoint_eval import evaluate_checkpoint
    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "coconut", "num_epochs=3", "epochs_per_stage=1", "max_latent_stage=2",
               "latent_markers=false", "eot_classifier=true", "eval_use_classifier=true", "max_thoughts=4",
               "pad_latent_to_max=false")
    result = train(cfg, progress=False, device="cpu")
    s = evaluate_checkpoint(result.run_dir / "best", cfg.val_path, tmp_path / "eval", max_new_tokens=8,
                            device="cpu", progress=False)["classifier"]
    assert s.use_classifier and 0 <= s.mean_thoughts <= 4
    preds = (tmp_path / "eval" / "predictions.jsonl").read_text()
    assert "<bot>" not in preds and "<eot>" not in preds


def test_trainer_state_round_trips_and_reads_the_older_key_layout():
    """`TrainerState` writes the flat keys every coconut-lm wrote; `best_rank`, the older name of `best_progress`, still loads."""
    from coconut_lm.training.state import COUNTERS, TrainerState

    state = TrainerState(epoch=3, micro_index=2, global_step=40, reset_key=1, reset_step=30, best_accuracy=0.5,
                         best_epoch=2, best_progress=1, earlier_seconds=5.0)
    saved = state.state_dict()
    assert set(COUNTERS) | {"best_progress", "torch_rng", "train_seconds"} <= set(saved)
    assert saved["train_seconds"] >= 5.0
    older = {k: v for k, v in saved.items() if k not in ("best_progress", "train_seconds")} | {"best_rank": 1}
    assert TrainerState.missing(older) == []
    restored = TrainerState()
    restored.load_state_dict(older)
    assert [getattr(restored, k) for k in (*COUNTERS, "best_progress")] == \
        [getattr(state, k) for k in (*COUNTERS, "best_progress")]
    assert restored.earlier_seconds == 0.0  # written before the training time was recorded
    assert TrainerState.missing({k: v for k, v in saved.items() if k not in ("reset_step", "best_progress")}) == \
        ["reset_step", "best_progress"]


def test_a_run_saved_in_the_older_trainer_state_layout_resumes_with_the_same_metrics(tmp_path):
    """A trainer state written before `best_progress`, `train_seconds` and the fingerprints existed resumes as today's does."""
    import shutil

    from coconut_lm.training.train import train

    cfg = _cfg(tmp_path, "prosqa", "coconut", "num_epochs=1", "epochs_per_stage=1", "max_latent_stage=2",
               "max_steps_per_epoch=2", "uniform_prob=0.5", "dropout=0.1")
    train(cfg, progress=False, device="cpu")
    new, old = Path(cfg.out_dir), tmp_path / "old"
    shutil.copytree(new, old)
    latest = ckpt.latest_checkpoint(old)
    state = ckpt.load_trainer_state(latest)
    state["best_rank"] = state.pop("best_progress")
    del state["train_seconds"], state["fingerprints"]
    torch.save(state, latest / ckpt.TRAINER_STATE)
    (latest / manifest.MANIFEST).unlink()
    manifest.write_manifest(latest)
    rows = {}
    for run in (new, old):
        cfg.out_dir, cfg.num_epochs = str(run), 3
        assert train(cfg, resume=True, progress=False, device="cpu").global_step == 6
        rows[run] = [{k: v for k, v in r.items() if not k.endswith(("_per_s", "seconds", "_MiB"))}
                     for r in read_metrics(run) if r["type"] in ("train", "val")]
    assert rows[old] == rows[new] and len(rows[old]) > 6
