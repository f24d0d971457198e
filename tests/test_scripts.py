"""The shell scripts of scripts/ run end to end with tiny settings (their flags and paths do not rot)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


STUB_CHAIN = """#!/usr/bin/env bash
# Stands in for official_cpu.sh: logs the call; METHOD=fail exits 3, METHOD=cut stops once before its end (after
# 2 s), METHOD=slow takes 4 s.
set -eu
cell=$1
mkdir -p "$cell"
echo "$(basename "$cell") $METHOD $SEED [$SET]" >> "$cell/../calls.log"
[ "$METHOD" = fail ] && exit 3
if [ "$METHOD" = cut ] && [ ! -e "$cell/cut_once" ]; then touch "$cell/cut_once"; sleep 2; exit 0; fi
if [ "$METHOD" = slow ]; then sleep 4; else sleep 0.5; fi
mkdir -p "$cell/main-c2/eval_fresh"
"""


def test_table1_queue_runs_each_cell_once_in_lanes_and_resumes_a_cut_one(tmp_path):
    """scripts/table1_official.sh with a stub chain: lanes share the cells, a failed chain is marked and skipped,
    a cell held by a live lane is left alone, a chain cut at STOP_AT stops the queue and the rerun resumes it."""
    stub = tmp_path / "stub.sh"
    stub.write_text(STUB_CHAIN)
    root = tmp_path / "t1"
    (root / "held").mkdir(parents=True)
    (root / "held.lane").write_text(f"{os.getpid()}\n")  # a live process holds it
    cells = "a:m1:0 c:m2:1:shift_thoughts=false,token_shift=0 d:fail:0 held:m4:0 e:m3:2"
    env = {**os.environ, "OFFICIAL": str(stub), "LANES": "2"}
    script = str(ROOT / "scripts" / "table1_official.sh")

    def run(cells: str) -> tuple[subprocess.CompletedProcess, list[str], set[str]]:
        log = root / "calls.log"
        before = len(log.read_text().splitlines()) if log.exists() else 0
        proc = subprocess.run(["bash", script, str(root)], env={**env, "CELLS": cells}, capture_output=True,
                              text=True, timeout=120)
        states = {ln for ln in proc.stdout.splitlines() if not ln.startswith("lane ")}
        return proc, sorted(log.read_text().splitlines()[before:]), states

    proc, calls, states = run(cells)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # d failed
    assert calls == ["a m1 0 []", "c m2 1 [shift_thoughts=false token_shift=0]", "d fail 0 []", "e m3 2 []"]
    assert len({ln.split(":")[0] for ln in proc.stdout.splitlines() if ln.startswith("lane ")}) == 2
    assert "d failed (exit 3" in proc.stdout and (root / "d.failed").exists()
    assert states == {"a: done", "c: done", "d: failed", "held: started", "e: done"}
    assert [p.name for p in root.glob("*.lane")] == ["held.lane"]  # only the live holder's claim stays

    (root / "held.lane").unlink()
    # b is cut while the other lane runs f (if it started in time): after the cut no lane takes another cell.
    proc, calls, states = run("b:cut:0 f:slow:0 " + cells)
    assert proc.returncode == 1 and calls in (["b cut 0 []"], ["b cut 0 []", "f slow 0 []"]), proc.stdout
    assert "b stopped before its end" in proc.stdout and {"b: started", "held: started"} <= states
    proc, calls, states = run("b:cut:0 f:slow:0 " + cells)  # b resumes; d stays marked; nothing done runs again
    assert proc.returncode == 1 and calls[0] == "b cut 0 []" and calls[-1] == "held m4 0 []", proc.stdout
    assert {"b: done", "f: done", "held: done", "d: failed"} <= states

    bad = subprocess.run(["bash", script, str(root)], env={**env, "CELLS": "x:coconut:zero"}, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "CELLS entry 'x:coconut:zero'" in bad.stderr


@pytest.mark.slow
def test_official_cpu_recipe_script_runs_its_four_stages(tmp_path, prosqa_valid):
    """scripts/official_cpu.sh with a few steps per stage: n10 demo -> n16 -> official size -> the continuation,
    each official-size stage chosen on fresh graphs and scored on the official file and the fresh test graphs."""
    valid = tmp_path / "valid.json"
    valid.write_text(json.dumps(json.loads(prosqa_valid.read_text())[:12]))
    env = {**os.environ, "CLI": str(Path(sys.executable).parent / "coconut-lm"), "PROSQA_VALID": str(valid),
           "N10_STEPS": "4", "N16_EPOCHS": "1", "TRAIN_N": "64", "VALID_N": "8", "C2_EPOCHS": "1",
           "OMP_NUM_THREADS": "1", "SEED": "3", "SET": "shift_thoughts=receive"}  # SET: every stage, the demo too
    root = tmp_path / "runs"
    # STOP_AT already past: stages 1-2 run (they are short), the official-size stage is not started.
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "official_cpu.sh"), str(root), "try", "num_epochs=1",
                           "max_steps_per_epoch=2", "val_max_examples=6", "eval_every=1"],
                          cwd=ROOT, env={**env, "STOP_AT": "-1 minute"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no time left" in proc.stdout and (root / "n16" / "best").is_dir() and not (root / "try").exists()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "official_cpu.sh"), str(root), "try", "num_epochs=1",
                           "max_steps_per_epoch=2", "val_max_examples=6", "eval_every=1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for stage in ("n10/coconut", "n16", "try", "try-c2"):
        assert (root / stage / "best").is_dir(), stage
    n16 = (root / "n16" / "config.yaml").read_text()
    assert "nodes 16" in n16 and str(root / "n10" / "coconut" / "best") in n16 and "seed: 3" in n16
    n10 = (root / "n10" / "coconut" / "config.yaml").read_text()
    assert all("shift_thoughts: receive" in cfg for cfg in (n10, n16)), (n10, n16)
    try_cfg, c2_cfg = ((root / run / "config.yaml").read_text() for run in ("try", "try-c2"))
    assert str(root / "n16" / "best") in try_cfg and "select555.json" in try_cfg
    assert str(root / "try" / "best") in c2_cfg and "start_epoch: 56" in c2_cfg and "seed: 4" in c2_cfg
    assert "shift_thoughts: receive" in try_cfg and "shift_thoughts: receive" in c2_cfg
    for run in ("try", "try-c2"):
        official = json.loads((root / run / "eval_official" / "summary.json").read_text())
        fresh = json.loads((root / run / "eval_fresh" / "summary.json").read_text())
        assert official["n"] == 12 and fresh["n"] == 500, run

    # A stage that stopped before its scores resumes when the script runs again; finished stages are skipped.
    # One cut on its time budget (max_train_seconds here, as STOP_AT gives it) is left unscored for the rerun.
    shutil.rmtree(root / "try-c2")
    (root / "try-c2.log").unlink()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "official_cpu.sh"), str(root), "try", "num_epochs=1",
                           "max_steps_per_epoch=2", "val_max_examples=6", "eval_every=1", "max_train_seconds=1e-6"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "not scored" in proc.stdout and not (root / "try-c2" / "eval_fresh").exists()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "official_cpu.sh"), str(root), "try", "num_epochs=1",
                           "max_steps_per_epoch=2", "val_max_examples=6", "eval_every=1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "resumed from" in (root / "try-c2.log").read_text() and "resumed" not in (root / "try.log").read_text()
    assert (root / "try-c2" / "eval_fresh" / "summary.json").is_file()

    # The finished chain ships as a models/ folder that eval and report take as it is.
    shipped = tmp_path / "models" / "prosqa-coconut-try"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_model.py"), str(root / "try-c2"), str(shipped),
                           "--command", "bash scripts/official_cpu.sh ROOT try"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    card = (shipped / "MODEL.md").read_text()
    assert "| 4 | try-c2 | coconut | 4 | 2 | 64 |" in card and "| 1 | coconut | coconut | 3 | 4 | 128 |" in card
    assert "`select555.json`" in card and "token_shift=1, shift_thoughts=receive" in card
    assert {p.name for p in shipped.iterdir()} == {"best", "config.yaml", "metrics.jsonl", "eval_official", "eval_fresh",
                                                   "MODEL.md", "stages.json"}
    cli = [str(Path(sys.executable).parent / "coconut-lm")]
    proc = subprocess.run([*cli, "eval", str(shipped), "--data", str(root / "data" / "official_valid.json"), "--out",
                           str(tmp_path / "rescore"), "--no-progress"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "rescore" / "summary.json").read_text())["accuracy"] == official["accuracy"]
    proc = subprocess.run([*cli, "report", str(shipped), "--eval-subdir", "eval_fresh", "--out", str(tmp_path / "t.md")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "eval_fresh/summary.json" in (tmp_path / "t.md").read_text(), proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_model.py"), str(root / "try-c2"), str(shipped)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not empty" in proc.stderr  # nothing shipped is replaced unless asked

    # ADAPTIVE=1 adds stage 5: the <eot> classifier from stage 4's best/, one thought per hop, then the sweeps.
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "official_cpu.sh"), str(root), "try", "num_epochs=1",
                           "max_steps_per_epoch=2", "val_max_examples=6", "eval_every=1"],
                          cwd=ROOT, env={**env, "ADAPTIVE": "1", "STOP_EPOCHS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    stop_cfg = (root / "try-stop" / "config.yaml").read_text()
    assert str(root / "try-c2" / "best") in stop_cfg and "eot_classifier: true" in stop_cfg
    assert "pad_latent_to_max: false" in stop_cfg and "seed: 5" in stop_cfg
    sweep = json.loads((root / "try-stop" / "sweep_official" / "forced_k.json").read_text())
    assert {"classifier@0.2", "classifier", "classifier@0.8", "k3", "k6"} <= sweep.keys()
    assert all(row["n"] == 12 for row in sweep.values())
    assert (root / "try-stop" / "sweep_select").is_dir() and (root / "try-stop" / "sweep_fresh").is_dir()


@pytest.mark.slow
def test_prontoqa_cpu_recipe_script_runs_its_stages_and_shares_the_cot_start(tmp_path, prontoqa_valid):
    """scripts/prontoqa_cpu.sh with a few steps per stage: CoT on 1 hop -> CoT on 1-5 hops -> METHOD on 5 hops,
    chosen on fresh items and scored on the official file and the fresh test items; a second method reuses
    stages 1-2, a finished chain is skipped, and STOP_AT in the past starts nothing."""
    valid = tmp_path / "valid.json"
    valid.write_text(json.dumps(json.loads(prontoqa_valid.read_text())[:10]))
    env = {**os.environ, "CLI": str(Path(sys.executable).parent / "coconut-lm"), "PRONTOQA_VALID": str(valid),
           "H1_N": "64", "TRAIN_N": "64", "VALID_N": "8", "H1_EPOCHS": "1", "H15_EPOCHS": "1", "STEPS_PER_EPOCH": "2",
           "OMP_NUM_THREADS": "1", "SEED": "3"}
    root = tmp_path / "runs"
    script = ["bash", str(ROOT / "scripts" / "prontoqa_cpu.sh"), str(root)]
    small = ["num_epochs=1", "val_max_examples=6", "eval_every=1"]

    def run(name: str, **extra: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*script, name, *small], cwd=ROOT, env={**env, **extra}, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc

    assert "no time left" in run("try", STOP_AT="-1 minute").stdout and not (root / "h1").exists()
    run("try")
    h1, h15, try_cfg = ((root / r / "config.yaml").read_text() for r in ("h1", "h15", "try"))
    assert "method: cot" in h1 and "h1_train.json" in h1 and "seed: 3" in h1 and "n_layer: 3" in h1
    assert "method: cot" in h15 and str(root / "h1" / "best") in h15 and "--max-hops 5" in h15
    assert "method: coconut" in try_cfg and str(root / "h15" / "best") in try_cfg and "max_latent_stage: 6" in try_cfg and "c_thought: 2" in try_cfg
    assert "h5_select555.json" in try_cfg and "token_shift: 2" in try_cfg
    official = json.loads((root / "try" / "eval_official" / "summary.json").read_text())
    fresh = json.loads((root / "try" / "eval_fresh" / "summary.json").read_text())
    assert official["n"] == 10 and fresh["n"] == 500
    logs = {r: (root / f"{r}.log").read_text() for r in ("h1", "h15", "try")}
    run("try")  # finished: nothing trains again
    run("icot", METHOD="icot")  # stages 1-2 are shared
    run("pause", METHOD="pause")
    assert {r: (root / f"{r}.log").read_text() for r in ("h1", "h15", "try")} == logs
    icot, pause = ((root / r / "config.yaml").read_text() for r in ("icot", "pause"))
    # iCoT at Coconut's pace (one step every 2 epochs), Pause with as many pauses as Coconut's 6 x 2 thoughts
    assert "method: icot" in icot and "icot_delta: 0.5" in icot and str(root / "h15" / "best") in icot
    assert "method: pause" in pause and "pause_tokens: 12" in pause
    assert (root / "icot" / "eval_fresh" / "summary.json").is_file()


def test_cpu_levers_script_times_every_variant():
    """scripts/cpu_levers.py with tiny shapes prints one row per lever, with a speed-up and a utilisation."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "cpu_levers.py"), "--n-embd", "32", "--n-head", "2",
                           "--batch-size", "2", "--question", "8", "--latents", "2", "--answer", "2", "--rounds", "1",
                           "--steps", "1", "--skip-compile"],
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {line[:28].strip(): line[28:].split() for line in proc.stdout.splitlines()[2:] if line.strip()}
    assert set(rows) >= {"eager fp32", "bf16 autocast", "exact GELU fp32", "eager attention", "fused AdamW"}
    assert rows["eager fp32"][1] == "1.00x"
    assert all(cells[1].endswith("x") and cells[2].endswith("%") for cells in rows.values())


def test_thought_pass_breakdown_script_times_each_piece_by_pass_width():
    """scripts/thought_pass_breakdown.py with tiny shapes: a row per piece and pass width, the one-position
    passes' backward included (the gradient hooks fired)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "thought_pass_breakdown.py"), "--batch-size", "2",
                           "--question", "8", "--latents", "2", "--answer", "2", "--steps", "1"],
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("q=")]
    for piece in ("forward: whole pass", "backward: whole pass", "forward: HF mask", "forward: sdpa call"):
        assert any(row.startswith("q=1 ") and piece in row for row in rows), (piece, proc.stdout)
    assert any(row.startswith("q=8 ") and "backward: whole pass" in row for row in rows)


@pytest.mark.slow
def test_adaptive_cpu_script_trains_the_classifier_and_sweeps_thresholds(tmp_path):
    """scripts/adaptive_cpu.sh with a few steps: the classifier run, then the sweep on both splits."""
    env = {**os.environ, "CLI": str(Path(sys.executable).parent / "coconut-lm"), "TRAIN_N": "64", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "adaptive_cpu.sh"), str(tmp_path / "a"), "num_epochs=1",
                           "max_steps_per_epoch=2", "val_max_examples=8"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cfg = (tmp_path / "a" / "run" / "config.yaml").read_text()
    assert "eot_classifier: true" in cfg and "latent_markers: false" in cfg and "pad_latent_to_max: false" in cfg
    for split in ("val", "test"):
        sweep = json.loads((tmp_path / "a" / f"sweep_{split}" / "forced_k.json").read_text())
        assert list(sweep) == ["classifier@0.2", "classifier@0.35", "classifier", "classifier@0.65", "classifier@0.8",
                               "k2", "k3", "k4"]
        assert (tmp_path / "a" / f"sweep_{split}" / "tradeoff.png").is_file()


# ------------------------------------------------------------------ gpu_window.sh's pretrained-model recipes

#: Every training stage of a recipe's dry run: one step an epoch, a few validation rows, short answers.
DRY = ["batch_size=8", "micro_batch_size=8", "max_steps_per_epoch=1", "epochs_per_stage=1", "val_max_examples=4",
       "max_new_tokens=8", "eval_every=1", "log_every=1"]


def _recipe(tmp_path: Path, recipe: str, model: Path, *overrides: str) -> subprocess.CompletedProcess:
    """Run `scripts/gpu_window.sh RECIPE MODEL overrides...` with data/, runs/ and $OUT under tmp_path."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "DATA": str(tmp_path / "data"),
           "RUNS": str(tmp_path / "runs"), "EVAL_BATCH": "8", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_window.sh"), recipe, str(model), *DRY, *overrides],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _steps_table(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a steps_<recipe>.md table, by run name."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(head, cells)) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


@pytest.mark.slow
def test_gsm8k_gpt2_recipe_dry_run_with_a_tiny_random_gpt2(tmp_path):
    """gsm8k_gpt2 on CPU: a tiny random GPT-2 and byte-level BPE tokenizer saved as a model folder, a few GSM8k-style
    problems as openai_train.jsonl; the CoT stage, Coconut from its best/ (c_thought 2, 3 latent stages), both
    evaluated, the report and the per-step time and peak memory table in $OUT."""
    import transformers

    from coconut_lm.data.tokenizer import build_bpe_tokenizer
    from coconut_lm.tasks.examples import Example, save_examples

    data = tmp_path / "data"
    data.mkdir()
    problems = [(f"Tom has {i} apples and buys {i + 2} more, then doubles them. How many now?",
                 [f"<<{i}+{i + 2}={2 * i + 2}>>", f"<<{2 * i + 2}*2={4 * i + 4}>>"], str(4 * i + 4)) for i in range(24)]
    with open(data / "openai_train.jsonl", "w") as f:
        for q, steps, a in problems[:16]:
            f.write(json.dumps({"question": q, "answer": " ".join(f"So {s}." for s in steps) + f"\n#### {a}"}) + "\n")
    save_examples([Example(q, steps, a) for q, steps, a in problems[16:]], data / "gsm_valid.json")
    tok = build_bpe_tokenizer([" ".join([q, *steps, a]) for q, steps, a in problems], 320)
    model = tmp_path / "gpt2"
    transformers.set_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=1024,
                                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    transformers.GPT2LMHeadModel(config).save_pretrained(model)
    tok.save_pretrained(model)

    proc = _recipe(tmp_path, "gsm8k_gpt2", model, "num_epochs=5")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs, out = tmp_path / "runs" / "gsm8k_gpt2", tmp_path / "out"
    coconut = (runs / "coconut" / "config.yaml").read_text()
    assert f"init_from: {runs / 'cot' / 'best'}" in coconut and "c_thought: 2" in coconut
    assert "max_latent_stage: 3" in coconut and "start_epoch: 3" in coconut and "method: coconut" in coconut
    for run in ("cot", "coconut"):
        assert json.loads((runs / run / "eval" / "summary.json").read_text())["n"] == 8, run
    assert (out / "gsm8k_gpt2.md").is_file() and (out / "metrics_gsm8k_gpt2.tgz").is_file()
    table = _steps_table(out / "steps_gsm8k_gpt2.md")
    assert set(table) == {"cot", "coconut"} and table["coconut"]["method"] == "coconut"
    for row in table.values():
        assert float(row["s / step"]) > 0 and float(row["peak memory, GiB"]) > 0 and row["eval acc"] != "-"


@pytest.mark.slow
def test_lora_1b_recipe_dry_run_with_a_tiny_random_llama(tmp_path):
    """lora_1b on CPU: a tiny random Llama (word-level tokenizer without Coconut's tokens) saved as a model folder;
    one LoRA Coconut run on ProsQA in precision=bf16-weights, evaluated, with its step table."""
    pytest.importorskip("peft")
    from test_lora import _save_base

    from coconut_lm.data.pipeline import vocabulary_texts
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa

    data = tmp_path / "data"
    data.mkdir()
    train, val = generate_prosqa(16, seed=0, workers=1), generate_prosqa(8, seed=1, workers=1)
    save_examples(train, data / "prosqa_train.json")
    save_examples(val, data / "prosqa_valid.json")
    model = _save_base(tmp_path / "llama", vocabulary_texts(train + val), 32)

    proc = _recipe(tmp_path, "lora_1b", model, "num_epochs=2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run, out = tmp_path / "runs" / "lora_1b" / "coconut", tmp_path / "out"
    cfg = (run / "config.yaml").read_text()
    assert "lora_r: 16" in cfg and "precision: bf16-weights" in cfg and f"model: {model}" in cfg
    assert (run / "best" / "adapter.safetensors").is_file()
    assert json.loads((run / "eval" / "summary.json").read_text())["n"] == 8
    row = _steps_table(out / "steps_lora_1b.md")["coconut"]
    assert row["precision"] == "bf16-weights" and row["LoRA r"] == "16"
    assert float(row["s / step"]) > 0 and float(row["peak memory, GiB"]) > 0
    assert (out / "lora_1b.md").is_file() and (out / "device.txt").read_text().strip()


def test_chain_train_sees_a_time_stop_in_a_new_run_despite_an_older_log(tmp_path):
    """chain_lib.sh: a new run overwrites RUN.log, so a stop on its time budget must be found from its first
    line, not after as many lines as an earlier attempt's log had (that run would be scored as finished)."""
    cli = tmp_path / "cli.sh"
    cli.write_text("#!/usr/bin/env bash\necho start\necho 'max_train_seconds=5 reached in epoch 1 (step 3); "
                   "validating and stopping'\n")
    cli.chmod(0o755)
    run = tmp_path / "run"
    (tmp_path / "run.log").write_text("".join(f"an earlier attempt, line {i}\n" for i in range(5)))
    script = (f"set -euo pipefail; CLI={cli}; common=(--no-progress); source {ROOT / 'scripts' / 'chain_lib.sh'}; "
              f"chain_train {run} a=1; echo SCORED")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "not scored" in proc.stdout and "SCORED" not in proc.stdout


def test_official_cpu_reruns_a_16_node_stage_that_did_not_finish(tmp_path):
    """official_cpu.sh skips stage 2 only once ROOT/n16 trained to its last epoch (a best/ alone is there from
    the first validation of a run that was then cut short, and stage 3 must not start from it), or once stage 3
    is scored."""
    calls = tmp_path / "calls.txt"
    cli = tmp_path / "cli.sh"
    cli.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n')
    cli.chmod(0o755)
    root = tmp_path / "root"
    for d in ("n10/coconut/best", "n16/best"):
        (root / d).mkdir(parents=True)
    valid = tmp_path / "valid.json"
    valid.write_text("[]")
    env = {**os.environ, "CLI": str(cli), "PROSQA_VALID": str(valid), "STAGE4": "0"}

    def n16_trainings(metrics: str) -> int:
        (root / "n16" / "metrics.jsonl").write_text(metrics)
        calls.write_text("")
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "official_cpu.sh"), str(root), "try"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return sum(line.startswith("train ") and f"out_dir={root}/n16 " in line + " "
                   for line in calls.read_text().splitlines())

    assert n16_trainings('{"type": "val", "step": 400}\n') == 1  # cut short after its first validation
    assert n16_trainings('{"type": "end", "step": 2800, "stopped_early": false}\n') == 0
    # A scored stage 3 (a shipped model copied into ROOT/NAME to go on to stage 4) needs neither stage 1 nor 2.
    (root / "try" / "eval_fresh").mkdir(parents=True)
    assert n16_trainings('{"type": "val", "step": 400}\n') == 0
    assert not any(line.startswith("demo ") for line in calls.read_text().splitlines())


def test_chain_train_fails_on_a_stop_at_that_date_cannot_read(tmp_path):
    """chain_lib.sh: a mistyped STOP_AT is an error (exit status 1), not 'no time left' with exit status 0."""
    cli = tmp_path / "cli.sh"
    cli.write_text("#!/usr/bin/env bash\necho trained\n")
    cli.chmod(0o755)
    script = (f"set -euo pipefail; CLI={cli}; common=(); source {ROOT / 'scripts' / 'chain_lib.sh'}; "
              f"chain_train {tmp_path / 'run'} a=1")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STOP_AT": "tomorow 04:20"})
    assert proc.returncode != 0 and "no time left" not in proc.stdout and "trained" not in proc.stdout


def test_chain_train_sees_a_time_stop_followed_by_a_long_log(tmp_path):
    """chain_lib.sh runs under pipefail: `tail LOG | grep -q` fails when grep stops at the match and tail, still
    writing a long rest of the log, dies of SIGPIPE, so the stop went unseen and the run was scored."""
    cli = tmp_path / "cli.sh"
    cli.write_text("#!/usr/bin/env bash\necho 'max_train_seconds=5 reached in epoch 1 (step 3); validating and "
                   "stopping'\nfor i in $(seq 1 20000); do echo \"a warning after the stop, line $i\"; done\n")
    cli.chmod(0o755)
    script = (f"set -euo pipefail; CLI={cli}; common=(); source {ROOT / 'scripts' / 'chain_lib.sh'}; "
              f"chain_train {tmp_path / 'run'} a=1; echo SCORED")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "not scored" in proc.stdout and "SCORED" not in proc.stdout


def test_park_runs_keeps_what_a_cut_chain_needs_to_resume(tmp_path):
    """park_runs.sh copies unfinished cells without data/ and with only the newest checkpoint of a cut run (none of
    a finished one); a cell that has finished since is taken out of DEST again."""
    root, dest = tmp_path / "root", tmp_path / "my repo" / "runs" / "t1"  # a space: no path may be split
    (tmp_path / "my").mkdir()  # what a split "my repo/..." would name
    end = '{"type": "end", "stopped_early": false}\n'
    files = {"done/main-c2/eval_fresh/summary.json": "{}",
             "cut/data/official_train.json": "[]", "cut/n10/data/train.json": "[]",
             "cut/n16/metrics.jsonl": end, "cut/n16/best/model.safetensors": "w",
             "cut/n16/checkpoints/step-00002800/model.safetensors": "w", "cut/n16/config.yaml": "{}",
             "cut/main/metrics.jsonl": '{"type": "val"}\n', "cut/main/config.yaml": "{}", "cut/main.log": "log",
             "cut/main/train.lock": "", "cut/main/best/model.safetensors": "w",
             "cut/main/checkpoints/step-00000400/model.safetensors": "old",
             "cut/main/checkpoints/step-00001200/model.safetensors": "new", "cut.out": "queue log",
             "early/main/config.yaml": "{}", "early/main/checkpoints/.keep": ""}  # cut before its first save
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (dest / "done").mkdir(parents=True)  # parked in an earlier session, finished since
    (dest / "cut" / "stale").mkdir(parents=True)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "park_runs.sh"), str(root), str(dest)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    kept = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert kept == ["cut.out", "cut/main.log", "cut/main/best/model.safetensors",
                    "cut/main/checkpoints/step-00001200/model.safetensors", "cut/main/config.yaml",
                    "cut/main/metrics.jsonl", "cut/n16/best/model.safetensors", "cut/n16/config.yaml",
                    "cut/n16/metrics.jsonl", "early/main/checkpoints/.keep", "early/main/config.yaml"], kept
    assert (tmp_path / "my").is_dir()
    assert "done: finished; removed" in proc.stdout and not any(p.name.startswith(".park") for p in dest.iterdir())
    assert not (dest / "cut" / "stale").exists()  # what DEST held for the cell is replaced
    assert (root / "cut" / "main" / "checkpoints" / "step-00000400").is_dir()  # ROOT itself is left as it was
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "park_runs.sh"), str(root), str(root / "parked")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "inside" in proc.stderr and not (root / "parked").exists()


def test_chain_train_leaves_a_run_that_trained_to_its_end(tmp_path):
    """chain_lib.sh: a run with its closing row (cut while it was being scored, or parked without checkpoints)
    is not resumed, so the caller goes straight on to scoring it."""
    cli = tmp_path / "cli.sh"
    cli.write_text("#!/usr/bin/env bash\necho trained\n")
    cli.chmod(0o755)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}")
    script = f"set -euo pipefail; CLI={cli}; common=(); source {ROOT / 'scripts' / 'chain_lib.sh'}; chain_train {run}"
    for last, trains in (('{"type": "val"}', True), ('{"type": "end", "stopped_early": false}', False)):
        (run / "metrics.jsonl").write_text(last + "\n")
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        log = run.parent / "run.log"
        assert (log.is_file() and "trained" in log.read_text()) == trains
        log.unlink(missing_ok=True)


def test_stop_at_is_read_once_as_an_absolute_time(tmp_path):
    """chain_lib.sh turns STOP_AT into @SECONDS when it is sourced, so a stage started after midnight does not read
    "tomorrow 01:35" as a day later; table1_official.sh passes that one moment to every cell."""
    script = f"set -euo pipefail; source {ROOT / 'scripts' / 'chain_lib.sh'}; echo $STOP_AT; bash -c 'echo $STOP_AT'"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STOP_AT": "+2 hours"})
    assert proc.returncode == 0, proc.stderr
    mine, child = proc.stdout.split()
    assert mine == child and mine.startswith("@") and abs(int(mine[1:]) - time.time() - 7200) < 60
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STOP_AT": "@1234"})
    assert proc.stdout.split() == ["@1234", "@1234"]  # already absolute: kept
