"""`coconut-lm bench`: the cost of Coconut's training step, memory, eval and loop against baselines.

    coconut-lm bench --device cpu --preset tiny --batch-size 16 --json bench_cpu.json
    coconut-lm bench --device cuda --preset gpt2-124m --batch-size 32 --json bench_gpu_b32.json
    coconut-lm bench --memory-plan llama-3.1-8b --device cuda --batch-size 8 --latents 6 --seq-len 512

`run_bench` runs the measures of `coconut_lm.bench.measures` ((a) step, (b) memory, (c) eval,
(d) loop) in one process, checks them against the goals, and returns the record that
`bench.table.format_table` prints and `--json` writes, with the machine and the library versions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coconut_lm.bench.measures import (  # noqa: F401  (FIRST_WORD, bench_tokens: also importable from here)
    FIRST_WORD,
    BenchConfig,
    bench_batch,
    bench_eval,
    bench_loop,
    bench_memory,
    bench_tokens,
    train_steps,
)
from coconut_lm.bench.table import format_table
from coconut_lm.bench.timing import count_host_syncs, matmul_flops_per_s, step_flops, time_interleaved
from coconut_lm.errors import CoconutError

if TYPE_CHECKING:  # torch is imported where it is used, so that `coconut-lm --help` stays quick
    import torch

SECTIONS = ("step", "memory", "eval", "loop")
# The bar per device (docs/performance.md, "What it measures"): step and memory ratios at most, eval and loop at least.
GOALS = {
    "cpu": {"step": 1.15, "memory": 1.2, "eval": 10.0, "loop": 0.9},
    "cuda": {"step": 1.25, "memory": 1.2, "eval": 50.0, "loop": 0.9},
}


def environment(device: torch.device) -> dict[str, Any]:
    """The machine and library versions, for the JSON record."""
    import numpy
    import torch
    import transformers

    from coconut_lm import __version__

    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    machine = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        machine.update(gpu=props.name, gpu_memory_GB=round(props.total_memory / 2**30, 1))
    return {"machine": machine, "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                             "transformers": transformers.__version__, "numpy": numpy.__version__,
                                             "coconut_lm": __version__},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every section not in `cfg.skip`; returns the JSON-ready record (see module docstring)."""
    import torch

    from coconut_lm.model.backbone import build_backbone, to_weights_dtype
    from coconut_lm.model.coconut import CoconutLM

    device = torch.device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.eval_batch_size is None:
        cfg = replace(cfg, eval_batch_size=256 if device.type == "cuda" else 64)
    result: dict[str, Any] = {**environment(device), "config": asdict(cfg)}
    goals = GOALS[device.type]
    torch.manual_seed(0)
    shape = {"preset": cfg.preset, **({"n_layer": cfg.n_layer} if cfg.n_layer else {})}
    base = build_backbone(shape, vocab_size=cfg.vocab, n_positions=1024)
    model = CoconutLM(base, bench_tokens(cfg.vocab)).to(device).train()
    if cfg.precision == "bf16-weights":  # the weights themselves bf16; train_steps gives it a MasterAdamW
        to_weights_dtype(model, torch.bfloat16)
    if cfg.compile is not None:  # the warm-up rounds absorb the compilation
        from coconut_lm.model.compiled import compile_blocks

        compile_blocks(model, cfg.compile)
    if cfg.gradient_checkpointing:  # the model of (a)-(c) then recomputes its blocks
        from coconut_lm.model.checkpointing import checkpoint_blocks

        checkpoint_blocks(model)
    if cfg.prune_last_block:  # the model of (a)-(c) then runs its last block only where the losses read it
        from coconut_lm.model.last_block import prune_last_block

        prune_last_block(model)
    if {"step", "memory"} - set(cfg.skip):
        b = bench_batch(cfg.batch_size, cfg.question, cfg.latents, cfg.answer, cfg.vocab).to(device)
        steps = train_steps(model, b, cfg.precision, cfg.hf_yardstick, cfg.reference_step)
        result["seq_len"] = b.ids.shape[1]
        if "step" not in cfg.skip:
            _say(f"(a) train step: {cfg.preset}, batch {cfg.batch_size}, {b.ids.shape[1]} tokens")
            t = time_interleaved(steps, "plain", device, cfg.warmup, cfg.repeats)
            result["step"] = {name: asdict(x) for name, x in t.items()}
            result["step"]["ratio"] = t["coconut"].ratio
            result["step"]["host_syncs"] = {name: count_host_syncs(fn, device) for name, fn in steps.items()}
            # Utilisation: the step's counted FLOPs per second over a large fp32 matmul's, same threads, same run.
            peak = matmul_flops_per_s(device)
            flops = {name: step_flops(steps[name]) for name in ("coconut", "plain")}
            result["step"]["utilisation"] = {
                "matmul_flops_per_s": peak, "flops": flops,
                **{name: flops[name] / t[name].median_s / peak for name in flops},
            }
    if "eval" not in cfg.skip:
        _say(f"(c) eval: batch {cfg.eval_batch_size}, {cfg.gen_tokens} new tokens")
        eb = bench_batch(cfg.eval_batch_size, cfg.question, cfg.latents, cfg.answer, cfg.vocab, seed=1).to(device)
        result["eval"] = bench_eval(model, eb, cfg, device)
        result["eval"]["ratio"] = result["eval"]["speedup"]
    if "loop" not in cfg.skip:
        _say(f"(d) training loop: {cfg.loop_preset}, batch {cfg.loop_batch_size}, {cfg.loop_steps} steps")
        result["loop"] = bench_loop(cfg, device)
    if "memory" not in cfg.skip:  # last: on CPU it changes how malloc works for the rest of the process
        _say("(b) peak memory")
        result["memory"] = bench_memory(model, steps, device, cfg.precision)
        result["memory"]["ratio"] = result["memory"]["peak_ratio"]
    result["goals"] = {s: {"value": result[s]["ratio"], "bound": bound, "kind": "max" if s in ("step", "memory") else "min",
                           "met": (result[s]["ratio"] <= bound) if s in ("step", "memory") else (result[s]["ratio"] >= bound)}
                       for s, bound in goals.items() if s in result}
    return result


# ---------------------------------------------------------------------------------- CLI


def cmd_bench(args: argparse.Namespace) -> int:
    """`coconut-lm bench`: run, print the table, write the JSON record if asked."""
    import torch

    from coconut_lm.model.backbone import PRESETS

    if args.memory_plan:
        return cmd_memory_plan(args)
    for flag in ("preset", "loop_preset"):
        if getattr(args, flag) not in PRESETS:
            raise CoconutError(f"--{flag.replace('_', '-')} '{getattr(args, flag)}' is not a preset; "
                               f"choose one of {', '.join(PRESETS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CoconutError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    for flag in ("warmup", "num_workers", "loop_length_buckets"):
        if getattr(args, flag) < 0:
            raise CoconutError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if args.prune_last_block and (args.gradient_checkpointing or args.compile is not None):
        raise CoconutError("--prune-last-block does not combine with --gradient-checkpointing or --compile")
    if args.gradient_checkpointing and args.compile is not None:
        raise CoconutError("--gradient-checkpointing does not combine with --compile (dynamo cannot trace a "
                           "checkpointed block's KV-cache replay); choose one")
    fields = {f: getattr(args, f) for f in BenchConfig.__dataclass_fields__ if f != "skip"}
    cfg = BenchConfig(**fields, skip=tuple(args.skip))
    longest = cfg.question + 10 + cfg.latents + 2 + max(cfg.answer, cfg.gen_tokens)
    if longest > 1024:
        raise CoconutError(f"rows of up to {longest} tokens (--question + 10 + --latents + 2 + answer or "
                           f"generated tokens) exceed the backbone's 1024 positions")
    try:
        result = run_bench(cfg)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        text = str(e)
        if not isinstance(e, (torch.OutOfMemoryError, MemoryError)) and "alloc" not in text.lower():
            raise
        first = (text.strip().splitlines() or [type(e).__name__])[0][:200]
        raise CoconutError(f"bench: --batch-size {cfg.batch_size}, --vocab {cfg.vocab}, --question {cfg.question} "
                           f"need more {cfg.device} memory than there is ({type(e).__name__}: {first}); ask for "
                           f"smaller sizes") from None
    print(format_table(result))
    _write_json(args.json, result)
    return 0


def _write_json(out: str | None, record: dict) -> None:
    """`--json FILE`: write the record there (its folder made) and say so; nothing without the option."""
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {path}")


def cmd_memory_plan(args: argparse.Namespace) -> int:
    """`coconut-lm bench --memory-plan MODEL_OR_CONFIG`: print the expected peak of a train step (and measure it)."""
    from coconut_lm.bench.memory_plan import (
        PlanShape,
        format_plan,
        load_model_config,
        measure_peak,
        measured_width,
        memory_plan,
        plan_record,
    )

    precision = args.precision if args.precision != "auto" else ("bf16" if args.device == "cuda" else "fp32")
    shape = PlanShape(batch=args.batch_size, seq_len=args.seq_len, latents=args.latents, answer=args.answer,
                      lora_r=args.lora_r, precision=precision, device=args.device)
    if shape.seq_len < shape.latents + shape.answer + 3:
        raise CoconutError(f"--seq-len {shape.seq_len} leaves no question before {shape.latents} thoughts, "
                           f"<bot>, <eot> and {shape.answer} answer tokens")
    if args.measure:  # the plan of the very batch that is measured
        if args.device != "cpu" or precision not in ("fp32", "bf16-weights"):
            raise CoconutError("--measure runs the step on this CPU in fp32 or bf16-weights: use --device cpu "
                               "--precision fp32 (or bf16-weights)")
        shape = replace(shape, seq_len=measured_width(shape))
    config = load_model_config(args.memory_plan)
    plans = memory_plan(config, shape)
    print(format_plan(args.memory_plan, shape, plans))
    record = plan_record(args.memory_plan, shape, plans)
    if args.measure:
        _say("measuring the four steps on CPU (full and LoRA, with and without gradient checkpointing)")
        record["measured"] = {}
        for mode in ("full", "lora"):
            for ck in (False, True):
                got = measure_peak(config, shape, mode, ck)
                want = plans[mode].peak_checkpointed if ck else plans[mode].peak
                key = f"{mode}{'_checkpointed' if ck else ''}"
                record["measured"][key] = got
                print(f"measured peak, {key:<18} {got / 2**20:10.1f} MiB   plan {want / 2**20:10.1f} MiB   "
                      f"plan/measured {want / got:.3f}")
    _write_json(args.json, record)
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand to the `coconut-lm` parser (sets `func`)."""
    from coconut_lm.argtypes import positive_int
    from coconut_lm.model.compiled import COMPILE_MODES

    d = BenchConfig()
    p = sub.add_parser("bench", help="time Coconut's train step, memory, eval and training loop against baselines",
                       description="Measure, side by side in one process: (a) a Coconut train step vs the same step "
                                   "on the same tokens without thoughts, (b) their peak memory, (c) batched eval vs the "
                                   "row-by-row no-cache reference, (d) the training loop with data vs the model steps "
                                   "alone. Prints a table; --json also writes the record with machine and versions.")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device (default cpu)")
    p.add_argument("--preset", default=d.preset,
                   help=f"backbone preset for (a)-(c), random weights: tiny, gpt2-124m, ... (default {d.preset})")
    p.add_argument("--n-layer", type=positive_int, default=None, help="layers of that backbone (default: the preset's)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"train-step batch (default {d.batch_size})")
    p.add_argument("--latents", type=positive_int, default=d.latents, help=f"continuous thoughts per row (default {d.latents})")
    p.add_argument("--question", type=positive_int, default=d.question, help=f"mean question tokens (default {d.question})")
    p.add_argument("--answer", type=positive_int, default=d.answer, help=f"supervised tokens after <eot> (default {d.answer})")
    p.add_argument("--vocab", type=positive_int, default=d.vocab, help=f"vocabulary size (default {d.vocab}, GPT-2's)")
    p.add_argument("--precision", default=d.precision, choices=("auto", "fp32", "bf16", "bf16-weights"),
                   help="auto: bf16 autocast on GPU, fp32 on CPU, as the trainer; bf16-weights: bf16 weights with "
                        "fp32 master copies in the optimizer (the trainer's precision=bf16-weights) (default auto)")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed rounds before timing (default {d.warmup})")
    p.add_argument("--repeats", type=positive_int, default=d.repeats,
                   help=f"timed rounds of the step; eval and loop use about half (default {d.repeats})")
    p.add_argument("--eval-batch-size", type=positive_int, default=None, help="generation batch (default 64 on CPU, 256 on GPU)")
    p.add_argument("--gen-tokens", type=positive_int, default=d.gen_tokens, help=f"new tokens per eval row (default {d.gen_tokens})")
    p.add_argument("--loop-preset", default=d.loop_preset, help=f"backbone preset for (d) (default {d.loop_preset})")
    p.add_argument("--loop-batch-size", type=positive_int, default=d.loop_batch_size,
                   help=f"batch of the training loop (default {d.loop_batch_size})")
    p.add_argument("--loop-steps", type=positive_int, default=d.loop_steps,
                   help=f"optimizer steps per timed loop epoch (default {d.loop_steps})")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help=f"DataLoader workers in (d) (default {d.num_workers})")
    p.add_argument("--loop-length-buckets", type=int, default=d.loop_length_buckets, metavar="N",
                   help="also time (d) with length_buckets=N: batches of similar length, less padding (default: not)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's own choice); 1 is steadier on a shared machine")
    p.add_argument("--hf-yardstick", action="store_true",
                   help="also time HF's own forward+loss (logits at every position) and HF generate on the plain prompt")
    p.add_argument("--reference-step", action="store_true",
                   help="also time the slow reference's step in (a): the whole sequence recomputed for every thought")
    p.add_argument("--compile", default=None, metavar="MODE", choices=COMPILE_MODES,
                   help="torch.compile every transformer block in this mode (default, reduce-overhead, ...); "
                        "the warm-up rounds absorb the compilation (default: eager)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute every transformer block in backward (the gradient_checkpointing config key); "
                        "compare (b) with and without it")
    p.add_argument("--prune-last-block", action="store_true",
                   help="run the last transformer block only where the losses read it (the prune_last_block config "
                        "key; GPT-2 presets); compare (a) and the (d) trainer with and without it")
    p.add_argument("--memory-plan", metavar="MODEL_OR_CONFIG", default=None,
                   help="instead of measuring, print the expected peak memory of one train step (weights, gradients, "
                        "AdamW, activations with and without gradient checkpointing, the K/V buffer) for full "
                        "fine-tuning and LoRA, from the config alone: llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, a "
                        "preset, a config.json or a model folder; uses --batch-size, --latents, --seq-len, --answer, "
                        "--lora-r, --precision, --device")
    p.add_argument("--seq-len", type=positive_int, default=512, help="tokens per row for --memory-plan (default 512)")
    p.add_argument("--lora-r", type=positive_int, default=16, help="LoRA rank for --memory-plan (default 16)")
    p.add_argument("--measure", action="store_true",
                   help="with --memory-plan: also build the model with random weights and measure the step's peak "
                        "RSS on this CPU (fp32, small sizes only)")
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out (repeatable)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the record (JSON) here")
    p.set_defaults(func=cmd_bench)


