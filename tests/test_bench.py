"""`coconut-lm bench` on a micro setting: it runs every section, prints the table, writes the JSON.

No timing is asserted: the numbers of a run this small mean nothing. The command runs in a fresh
process because the memory section changes how malloc works for the rest of the process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import torch

from coconut_lm.bench.run import FIRST_WORD, bench_batch, bench_tokens
from coconut_lm.errors import CoconutError

RUN = """
import argparse, sys
from coconut_lm.bench.run import add_bench_parser
parser = argparse.ArgumentParser()
add_bench_parser(parser.add_subparsers())
args = parser.parse_args(["bench", *sys.argv[1:]])
sys.exit(args.func(args))
"""
MICRO = ["--preset", "micro", "--batch-size", "2", "--latents", "2", "--question", "12", "--answer", "4",
         "--vocab", "64", "--warmup", "0", "--repeats", "1", "--gen-tokens", "3", "--eval-batch-size", "2",
         "--loop-preset", "micro", "--loop-batch-size", "2", "--loop-steps", "1"]


def _parse(*argv: str) -> argparse.Namespace:
    from coconut_lm.bench.run import add_bench_parser

    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    return parser.parse_args(["bench", *argv])


@pytest.mark.slow
def test_bench_command_prints_the_table_and_writes_the_record(tmp_path):
    out = tmp_path / "sub" / "bench.json"
    proc = subprocess.run([sys.executable, "-c", RUN, *MICRO, "--reference-step", "--loop-length-buckets", "2",
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in ("(a) train step", "(b) peak memory", "(c) eval examples/s", "(d) loop examples/s"):
        assert label in proc.stdout
    record = json.loads(out.read_text())
    assert {"machine", "versions", "config", "step", "memory", "eval", "loop", "goals"} <= set(record)
    assert {"torch", "transformers", "python"} <= set(record["versions"])
    assert {"cpu", "cpu_count", "torch_threads"} <= set(record["machine"])
    assert set(record["goals"]) == {"step", "memory", "eval", "loop"}
    for goal in record["goals"].values():
        assert goal["value"] > 0 and isinstance(goal["met"], bool)
    assert {"coconut", "plain", "reference"} <= set(record["step"]) and record["step"]["coconut"]["median_s"] > 0
    assert "slow reference (recompute per thought)" in proc.stdout
    util = record["step"]["utilisation"]  # counted FLOPs per second over a large matmul's, same run and threads
    assert util["matmul_flops_per_s"] > 0 and util["flops"]["coconut"] > 0 and util["flops"]["plain"] > 0
    loop_util = record["loop"]["utilisation"]
    assert loop_util["matmul_flops_per_s"] > 0 and loop_util["trainer"] > 0 and loop_util["trainer_bucketed"] > 0
    assert "utilisation of the loop, %" in proc.stdout and "utilisation with length_buckets, %" in proc.stdout
    assert util["plain"] > 0 and util["coconut"] > 0 and "utilisation: FLOP/s" in proc.stdout
    assert record["memory"]["kind"] == "rss" and record["memory"]["coconut"]["saved_MB"] > 0
    assert record["eval"]["batch"] == 2 and record["eval"]["reference_examples_per_s"] > 0
    assert record["loop"]["examples"] == 2 and record["loop"]["data_only_examples_per_s"] > 0
    assert record["loop"]["length_buckets"] == 2 and record["loop"]["bucketed_examples_per_s"] > 0
    assert "length_buckets=2, examples/s" in proc.stdout


def test_bench_batch_plain_twin_differs_only_in_the_aligned_thought_slots():
    b = bench_batch(batch=5, question=20, latents=3, answer=4, vocab=50)
    tk = bench_tokens(50)
    slots = b.ids == tk.latent
    assert slots.sum(1).tolist() == [3] * 5
    cols = slots.nonzero()[:, 1].view(5, 3)
    assert (cols == cols[0]).all()  # left padding aligns every row's thoughts
    assert torch.equal(b.plain_ids[~slots], b.ids[~slots]) and (b.plain_ids[slots] == FIRST_WORD).all()
    assert (b.labels[:, -4:] == b.ids[:, -4:]).all() and (b.labels[:, :-4] == -100).all()
    assert b.mask[:, b.n_prompt:].all() and not b.mask.all()  # question lengths differ: some padding


@pytest.mark.parametrize("argv, message", [
    (["--num-workers", "-1"], "--num-workers must be >= 0"),
    (["--question", "1000"], "exceed the backbone's 1024 positions"),
    (["--loop-preset", "huge"], "--loop-preset 'huge' is not a preset"),
])
def test_bad_settings_are_one_line_errors(argv, message):
    args = _parse(*argv)
    with pytest.raises(CoconutError, match=message):
        args.func(args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error():
    args = _parse("--device", "cuda")
    with pytest.raises(CoconutError, match="CUDA is not available"):
        args.func(args)


@pytest.mark.slow
def test_gpu_bench_script_dry_runs_on_cpu(tmp_path):
    """scripts/gpu_bench.sh, as a GPU window would run it, with a micro model on the CPU: one table, four rows.

    COMPILE="" leaves out the compiled runs (inductor would build C++ for minutes here)."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "DEVICE": "cpu", "PRESET": "micro",
           "BATCHES": "2 3", "OMP_NUM_THREADS": "1", "COMPILE": "",
           "EXTRA": " ".join(MICRO[4:18] + ["--eval-batch-size", "2", "--threads", "1"])}
    proc = subprocess.run(["bash", str(root / "scripts" / "gpu_bench.sh")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "gpu_bench.md").read_text().splitlines()
    assert len(table) == 2 + 4 and table[0].startswith("| batch | precision | compile | Coconut step ms")
    assert all(line.split("|")[3] == " eager " for line in table[2:])
    assert sorted(line.split("|")[1:3] for line in table[2:]) == [[" 2 ", " bf16 "], [" 2 ", " fp32 "],
                                                                   [" 3 ", " bf16 "], [" 3 ", " fp32 "]]
    assert len(list(tmp_path.glob("bench_b*_*.json"))) == 4


def test_bench_compile_flag_compiles_the_blocks_before_timing(monkeypatch):
    """`--compile MODE` hands the bench model to compile_blocks (mocked here: inductor would build C++)."""
    from coconut_lm.bench import run as bench
    from coconut_lm.bench.run import BenchConfig, run_bench
    from coconut_lm.model import compiled

    seen = []
    monkeypatch.setattr(compiled, "compile_blocks", lambda model, mode: seen.append((type(model).__name__, mode)))
    timed = bench.time_interleaved
    monkeypatch.setattr(bench, "time_interleaved", lambda *a, **k: seen.append("timed") or timed(*a, **k))
    args = _parse(*MICRO, "--compile", "reduce-overhead", "--skip", "memory", "--skip", "eval", "--skip", "loop")
    assert args.compile == "reduce-overhead"
    cfg = BenchConfig(**{f: getattr(args, f) for f in BenchConfig.__dataclass_fields__ if f != "skip"},
                      skip=tuple(args.skip))
    record = run_bench(cfg)
    assert seen == [("CoconutLM", "reduce-overhead"), "timed"]  # compiled first, so warm-up absorbs the compile
    assert record["config"]["compile"] == "reduce-overhead" and record["step"]["coconut"]["median_s"] > 0
    with pytest.raises(SystemExit):
        _parse("--compile", "fastest")


def test_time_interleaved_rounds_calls_and_clock():
    """Each round times `calls` calls on the given clock and alternates the order; ratios are same-round."""
    from coconut_lm.bench.timing import time_interleaved

    now, order = [0.0], []

    def work(name: str, cost: float):
        def fn():
            order.append(name)
            now[0] += cost
        return fn

    t = time_interleaved({"a": work("a", 2.0), "b": work("b", 1.0)}, "b", torch.device("cpu"), warmup=1, repeats=3,
                         clock=lambda: now[0], calls=2)
    assert order == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert t["a"].rounds == [2.0, 2.0, 2.0] and t["b"].rounds == [1.0, 1.0, 1.0]
    assert (t["a"].median_s, t["a"].ratio, t["b"].ratio) == (2.0, 2.0, 1.0)
