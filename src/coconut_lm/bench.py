"""`coconut-lm bench`: the cost of Coconut's training step, memory, eval and loop against baselines.

    coconut-lm bench --device cpu --preset tiny --batch-size 16 --json bench_cpu.json
    coconut-lm bench --device cuda --preset gpt2-124m --batch-size 32 --json bench_gpu_b32.json

All four measures run side by side in one process, after warm-up, as medians over repeats.
The variants of a measure run in interleaved rounds (A, B, A, B, ...), so that load from other
processes hits them alike. Each ratio is the median of the same-round ratios.

(a) step: one Coconut train step (forward, backward, grad clip and AdamW, as the trainer does).
    The batch holds ProsQA-shaped rows: a question of about 190 tokens, `<bot>`, the latents,
    `<eot>`, then 30 answer tokens. Rows are left-padded so the thoughts align, as the collator
    does. The baseline is the same step on the same tokens with every slot an ordinary word: one
    pass of the same code, with the head on the same labels. HF's own forward with its loss is
    a yardstick: it computes logits at every position.
(b) memory: the peak of each step. On GPU, CUDA max allocated. On CPU, the process RSS,
    sampled while the step runs; large blocks are mapped one by one here, so freed memory goes
    back to the OS. "step" is the rise over the memory held just before the step, and
    "saved" is the activations autograd keeps for backward.
(c) eval: examples/s of batched KV-cache generation of prompts with thoughts, against the
    row-by-row no-cache reference (`coconut_lm.reference`), which recomputes the whole
    sequence for every new position, as the official code does.
(d) loop: examples/s of the real `Trainer.train_epoch` on generated ProsQA (data loading
    included), against the same model steps on batches built beforehand.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coconut_lm.errors import CoconutError
from coconut_lm.memory import RssSampler, map_large_blocks, saved_activation_bytes, step_memory
from coconut_lm.tokenizer import SpecialTokens

if TYPE_CHECKING:  # torch is imported where it is used, so that `coconut-lm --help` stays quick
    import torch

    from coconut_lm.model import CoconutLM

SECTIONS = ("step", "memory", "eval", "loop")
# The bar per device (docs/performance.md, "What it measures"): step and memory ratios at most, eval and loop at least.
GOALS = {
    "cpu": {"step": 1.15, "memory": 1.2, "eval": 10.0, "loop": 0.9},
    "cuda": {"step": 1.25, "memory": 1.2, "eval": 50.0, "loop": 0.9},
}
# The special ids of the word tokenizer (pad, eos, unk, bot, eot, latent, pause); words follow.
# EOS lies outside the vocabulary, so every row generates exactly the requested number of tokens.
FIRST_WORD = 7


@dataclass
class BenchConfig:
    """What `coconut-lm bench` measures, and how."""

    device: str = "cpu"  # cpu | cuda
    preset: str = "tiny"  # backbone of (a)-(c)
    n_layer: int | None = None  # layers of that backbone (None: the preset's)
    batch_size: int = 16  # rows in the train-step batch
    latents: int = 6  # continuous thoughts per row
    question: int = 190  # mean question length (+-10, so rows need padding)
    answer: int = 30  # supervised tokens after <eot>
    vocab: int = 50257  # GPT-2's vocabulary, as the paper's backbone
    precision: str = "auto"  # auto (bf16 autocast on GPU, as the trainer) | fp32 | bf16
    warmup: int = 2
    repeats: int = 5
    eval_batch_size: int | None = None  # None: 64 on CPU, 256 on GPU
    gen_tokens: int = 32  # new tokens per eval row
    loop_preset: str = "tiny"  # backbone of (d)
    loop_batch_size: int = 16
    loop_steps: int = 4  # optimizer steps per timed epoch
    num_workers: int = 0  # DataLoader workers in (d)
    loop_length_buckets: int = 0  # also time (d) with length_buckets=N (0: not)
    threads: int | None = None  # torch CPU threads; None: torch's default
    hf_yardstick: bool = False  # also time HF's own forward+loss and generate
    reference_step: bool = False  # also time the slow reference's forward+backward (whole sequence per thought)
    compile: str | None = None  # torch.compile mode for every transformer block (coconut_lm.compiled); None: eager
    skip: tuple[str, ...] = ()


@dataclass
class Timing:
    """Seconds per call: median and min over rounds, and the median same-round ratio to the baseline."""

    median_s: float
    min_s: float
    ratio: float


@dataclass
class BenchBatch:
    """A Coconut batch and its plain twin (slots replaced by a word), plus eval prompts."""

    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    plain_ids: torch.Tensor
    n_prompt: int  # the columns before the answer: (ids, mask)[:, :n_prompt] are prompts

    def to(self, device: str | torch.device) -> BenchBatch:
        return BenchBatch(*(t.to(device) for t in (self.ids, self.mask, self.labels, self.plain_ids)), self.n_prompt)


def bench_tokens(vocab: int) -> SpecialTokens:
    """Special ids for a benchmark vocabulary of `vocab` words (EOS outside it)."""
    return SpecialTokens(pad=0, eos=vocab, bot=3, eot=4, latent=5, pause=6)


def bench_batch(batch: int, question: int, latents: int, answer: int, vocab: int, seed: int = 0,
                jitter: int = 10) -> BenchBatch:
    """Random words in ProsQA's shape; question lengths vary by +-jitter, rows are left-padded."""
    import torch

    tk = bench_tokens(vocab)
    g = torch.Generator().manual_seed(seed)
    q_lens = (question + torch.randint(-jitter, jitter + 1, (batch,), generator=g)).clamp(min=1).tolist()
    width = max(q_lens) + latents + 2 + answer
    ids = torch.full((batch, width), tk.pad)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for i, q in enumerate(q_lens):
        row = torch.cat([torch.randint(FIRST_WORD, vocab, (q,), generator=g),
                         torch.tensor([tk.bot] + [tk.latent] * latents + [tk.eot]),
                         torch.randint(FIRST_WORD, vocab, (answer,), generator=g)])
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    labels = torch.full_like(ids, -100)
    labels[:, width - answer:] = ids[:, width - answer:]
    plain = torch.where(ids == tk.latent, FIRST_WORD, ids)
    return BenchBatch(ids, mask, labels, plain, width - answer)


# ----------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], object]], baseline: str, device: torch.device,
                     warmup: int = 2, repeats: int = 5) -> dict[str, Timing]:
    """Time variants in rounds after `warmup` rounds; see `Timing`.

    Rounds alternate the order (A, B, C, then C, B, A), so no variant always runs first.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            fn = fns[name]
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: Timing(statistics.median(t), min(t), statistics.median(x / y for x, y in zip(t, times[baseline])))
            for name, t in times.items()}


def _autocast(device: torch.device, precision: str):
    import torch

    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


# ----------------------------------------------------------------------------- (a) step


@dataclass
class TrainStep:
    """One variant of the train step: `loss()` builds the graph; calling the object runs a full step."""

    model: CoconutLM
    opt: torch.optim.Optimizer
    loss: Callable[[], torch.Tensor]
    precision: str

    def __call__(self) -> None:
        import torch

        with _autocast(self.opt.param_groups[0]["params"][0].device, self.precision):
            loss = self.loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)  # as the trainer does
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def train_steps(model: CoconutLM, b: BenchBatch, precision: str, hf_yardstick: bool = False,
                reference: bool = False) -> dict[str, TrainStep]:
    """The step variants (coconut, plain; plain_hf and reference if asked), sharing one AdamW."""
    import torch

    from coconut_lm.model import default_position_ids

    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)  # tiny: the weights barely move between steps
    pos = default_position_ids(b.mask)
    losses: dict[str, Callable[[], torch.Tensor]] = {
        "coconut": lambda: model(b.ids, b.mask, b.labels).loss,
        "plain": lambda: model(b.plain_ids, b.mask, b.labels).loss,
    }
    if hf_yardstick:
        losses["plain_hf"] = lambda: model.base(input_ids=b.plain_ids, attention_mask=b.mask, position_ids=pos,
                                                labels=b.labels).loss
    if reference:
        from coconut_lm.reference import reference_forward

        losses["reference"] = lambda: reference_forward(model, b.ids, b.mask, b.labels).loss
    return {name: TrainStep(model, opt, fn, precision) for name, fn in losses.items()}


def step_flops(step: TrainStep) -> int:
    """FLOPs of one call of `step` (forward, backward and optimizer), as torch's FlopCounterMode counts them:
    the matmuls and attention of the actual shapes."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def matmul_flops_per_s(device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of a large square fp32 matmul on this device and these threads: the yardstick of utilisation."""
    import torch

    n = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        if i:  # the first call warms up
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def count_host_syncs(fn: Callable[[], object], device: torch.device) -> int | None:
    """CUDA host synchronisations during fn() (None on CPU), as counted by torch's sync debug mode."""
    if device.type != "cuda":
        return None
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


# --------------------------------------------------------------------------- (b) memory


def bench_memory(model: CoconutLM, steps: dict[str, TrainStep], device: torch.device, precision: str,
                 repeats: int = 3) -> dict[str, Any]:
    """Peak memory (CUDA max allocated, or RSS) and saved activations of every step variant.

    Variants alternate over `repeats` rounds. A sampled RSS peak can only come out low, so each
    variant keeps its highest reading.
    """
    mapped = map_large_blocks() if device.type == "cpu" else None
    sampler = RssSampler() if device.type == "cpu" else None
    for step in steps.values():
        step()  # warm-up: optimizer state and allocator caches exist before measuring
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for r in range(repeats):
        for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            seen[name].append(step_memory(steps[name], device, sampler))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    out: dict[str, Any] = {"kind": "cuda_max_allocated" if device.type == "cuda" else "rss",
                           "glibc_large_blocks_mapped": mapped}
    for name, step in steps.items():
        row = {"peak_MB": max(p for p, _ in seen[name]), "step_MB": max(r for _, r in seen[name])}
        with _autocast(device, precision):
            row["saved_MB"] = saved_activation_bytes(step.loss, params) / 2**20
        model.zero_grad(set_to_none=True)
        out[name] = row
    for key in ("peak_MB", "step_MB", "saved_MB"):
        out[key.replace("_MB", "_ratio")] = out["coconut"][key] / out["plain"][key]
    return out


# ----------------------------------------------------------------------------- (c) eval


def bench_eval(model: CoconutLM, b: BenchBatch, cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """Batched generation vs the row-by-row no-cache reference, in examples/s (one reference row per round)."""
    import torch

    from coconut_lm.reference import reference_generate

    ids, mask = b.ids[:, :b.n_prompt], b.mask[:, :b.n_prompt]
    rows = itertools.cycle([ids[i][mask[i] == 1].tolist() for i in range(ids.shape[0])])
    plain = torch.where(ids == model.tokens.latent, FIRST_WORD, ids)
    n = cfg.gen_tokens
    model.eval()
    fns: dict[str, Callable[[], object]] = {
        "batched": lambda: model.generate(ids, mask, n),
        "reference": lambda: reference_generate(model, next(rows), n),
    }
    if cfg.hf_yardstick:
        fns["hf_generate_plain"] = lambda: model.base.generate(
            input_ids=plain, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=model.tokens.pad)
    with _autocast(device, cfg.precision):
        t = time_interleaved(fns, "batched", device, warmup=1, repeats=max(cfg.repeats // 2 + 1, 2))
    model.train()
    rows_b = ids.shape[0]
    out = {"batch": rows_b, "new_tokens": n, "prompt_tokens": b.n_prompt,
           "batched_examples_per_s": rows_b / t["batched"].median_s,
           "reference_examples_per_s": 1 / t["reference"].median_s,
           # per round: (one reference row's time) / (the batched time per row)
           "speedup": t["reference"].ratio * rows_b}
    if cfg.hf_yardstick:
        out["hf_generate_plain_examples_per_s"] = rows_b / t["hf_generate_plain"].median_s
    return out


# ----------------------------------------------------------------------------- (d) loop


def bench_loop(cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """The real Trainer's epoch (data included) vs its model steps alone on prebuilt batches."""
    from torch.utils.data import DataLoader

    from coconut_lm.config import TrainConfig
    from coconut_lm.data import EpochBatches
    from coconut_lm.dist import init_distributed
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa
    from coconut_lm.train import Trainer

    n = cfg.loop_batch_size * cfg.loop_steps
    with tempfile.TemporaryDirectory(prefix="coconut-bench-") as tmp:
        save_examples(generate_prosqa(n, seed=0, workers=1), Path(tmp) / "train.json")
        tc = TrainConfig(task="prosqa", train_path=str(Path(tmp) / "train.json"), model=cfg.loop_preset,
                         method="coconut", max_latent_stage=cfg.latents, epochs_per_stage=1,
                         pad_latent_to_max=True, batch_size=cfg.loop_batch_size,
                         micro_batch_size=cfg.loop_batch_size, num_workers=cfg.num_workers,
                         max_length=1024, precision=cfg.precision, out_dir=str(Path(tmp) / "run"),
                         log_every=10**9, warmup_steps=0, compile=cfg.compile is not None,
                         compile_mode=cfg.compile or "default")
        tc.validate()
        trainer = Trainer(tc, init_distributed(device.type), progress=False)
        trainer.epoch = cfg.latents  # the stage with `latents` thoughts in every row
        ds = EpochBatches(trainer.train_data, trainer.method, trainer.layout, trainer.schedule, trainer.tokens,
                          trainer.plan, seed=tc.seed, epoch=trainer.epoch)
        prebuilt = [ds[i] for i in range(len(ds))]
        if device.type == "cuda":
            prebuilt = [mb.pin_memory() for mb in prebuilt]
        accum = trainer.plan.accumulation

        def trainer_epoch() -> None:
            trainer.micro_index = 0
            trainer.train_epoch()

        steps = [prebuilt[i:i + accum] for i in range(0, len(prebuilt), accum)]

        def model_only() -> None:  # Trainer.train_step on prebuilt micro-batches: the epoch minus data and logging
            for micro_batches in steps:
                trainer.train_step(micro_batches)

        def data_only() -> None:
            for _ in DataLoader(ds, batch_size=None, num_workers=tc.num_workers, pin_memory=device.type == "cuda"):
                pass

        variants = {"trainer": trainer_epoch, "model_only": model_only, "data_only": data_only}
        if cfg.loop_length_buckets > 1:
            def trainer_bucketed() -> None:  # the same epoch with length bucketing: same examples, less padding
                tc.length_buckets = cfg.loop_length_buckets
                try:
                    trainer_epoch()
                finally:
                    tc.length_buckets = 0

            variants["trainer_bucketed"] = trainer_bucketed
        t = time_interleaved(variants, "trainer", device, warmup=1, repeats=max(cfg.repeats // 2 + 1, 2))
        trainer.log.close()
    return {"preset": cfg.loop_preset, "batch": cfg.loop_batch_size, "steps": cfg.loop_steps,
            "examples": n, "num_workers": cfg.num_workers, "seq_len": int(prebuilt[0].batch.input_ids.shape[1]),
            "trainer_examples_per_s": n / t["trainer"].median_s,
            "model_only_examples_per_s": n / t["model_only"].median_s,
            "data_only_examples_per_s": n / t["data_only"].median_s,
            # per round: model-only time / trainer time = trainer throughput / model-only throughput
            "ratio": t["model_only"].ratio,
            **({"length_buckets": cfg.loop_length_buckets,
                "bucketed_examples_per_s": n / t["trainer_bucketed"].median_s,
                # per round: trainer time / bucketed trainer time
                "bucketing_speedup": 1 / t["trainer_bucketed"].ratio} if "trainer_bucketed" in t else {})}


# ------------------------------------------------------------------------------ together


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

    from coconut_lm.backbone import build_backbone
    from coconut_lm.model import CoconutLM

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
    if cfg.compile is not None:  # the warm-up rounds absorb the compilation
        from coconut_lm.compiled import compile_blocks

        compile_blocks(model, cfg.compile)
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


def format_table(r: dict[str, Any]) -> str:
    """The record as a fixed-width table: one line per measure, with its ratio and goal."""
    lines = [f"{'measure':<46}{'coconut':>12}{'baseline':>12}{'ratio':>9}  goal",
             "-" * 90]

    def row(label: str, a: float, b: float | None, ratio: float | None, goal: str = "") -> None:
        bs = "" if b is None else f"{b:12.1f}"
        rs = "" if ratio is None else f"{ratio:8.2f}x"
        lines.append(f"{label:<46}{a:12.1f}{bs:>12}{rs:>9}  {goal}")

    def goal(section: str) -> str:
        g = r["goals"][section]
        return f"{'<=' if g['kind'] == 'max' else '>='} {g['bound']:g}x  {'met' if g['met'] else 'NOT MET'}"

    if "step" in r:
        s = r["step"]
        row("(a) train step, ms (vs the same tokens, 1 pass)", 1e3 * s["coconut"]["median_s"],
            1e3 * s["plain"]["median_s"], s["ratio"], goal("step"))
        if "utilisation" in s:
            u = s["utilisation"]
            row("    utilisation: FLOP/s / a large fp32 matmul's, %", 100 * u["coconut"], 100 * u["plain"], None,
                f"(matmul {u['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s)")
        if "plain_hf" in s:
            row("    yardstick: HF forward+loss, all logits, ms", 1e3 * s["plain_hf"]["median_s"], None,
                s["plain_hf"]["ratio"], "(its time / plain step)")
        if "reference" in s:
            row("    slow reference (recompute per thought), ms", 1e3 * s["reference"]["median_s"], None,
                s["reference"]["ratio"], "(its time / plain step)")
    if "memory" in r:
        m, what = r["memory"], "CUDA max allocated" if r["memory"]["kind"] != "rss" else "RSS"
        row(f"(b) peak memory, MiB ({what})", m["coconut"]["peak_MB"], m["plain"]["peak_MB"], m["peak_ratio"],
            goal("memory"))
        row("    rise during the step, MiB", m["coconut"]["step_MB"], m["plain"]["step_MB"], m["step_ratio"])
        row("    saved for backward, MiB", m["coconut"]["saved_MB"], m["plain"]["saved_MB"], m["saved_ratio"])
    if "eval" in r:
        e = r["eval"]
        row(f"(c) eval examples/s (batch {e['batch']} vs row-by-row ref)", e["batched_examples_per_s"],
            e["reference_examples_per_s"], e["speedup"], goal("eval"))
        if "hf_generate_plain_examples_per_s" in e:
            row("    yardstick: HF generate, plain prompt", e["hf_generate_plain_examples_per_s"], None, None)
    if "loop" in r:
        lp = r["loop"]
        row(f"(d) loop examples/s ({lp['preset']}, batch {lp['batch']}, {lp['num_workers']} workers)",
            lp["trainer_examples_per_s"], lp["model_only_examples_per_s"], lp["ratio"], goal("loop"))
        row("    data pipeline alone, examples/s", lp["data_only_examples_per_s"], None, None)
        if "bucketed_examples_per_s" in lp:
            row(f"    length_buckets={lp['length_buckets']}, examples/s vs (d)", lp["bucketed_examples_per_s"],
                lp["trainer_examples_per_s"], lp["bucketing_speedup"], "(speed-up)")
    m = r["machine"]
    lines.append(f"device {m.get('gpu', m['cpu'])}, {m['torch_threads']} threads; torch {r['versions']['torch']}, "
                 f"transformers {r['versions']['transformers']}; seq_len {r.get('seq_len', '-')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- CLI


def cmd_bench(args: argparse.Namespace) -> int:
    """`coconut-lm bench`: run, print the table, write the JSON record if asked."""
    import torch

    from coconut_lm.backbone import PRESETS

    for flag in ("preset", "loop_preset"):
        if getattr(args, flag) not in PRESETS:
            raise CoconutError(f"--{flag.replace('_', '-')} '{getattr(args, flag)}' is not a preset; "
                               f"choose one of {', '.join(PRESETS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CoconutError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    for flag in ("warmup", "num_workers", "loop_length_buckets"):
        if getattr(args, flag) < 0:
            raise CoconutError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    fields = {f: getattr(args, f) for f in BenchConfig.__dataclass_fields__ if f != "skip"}
    cfg = BenchConfig(**fields, skip=tuple(args.skip))
    longest = cfg.question + 10 + cfg.latents + 2 + max(cfg.answer, cfg.gen_tokens)
    if longest > 1024:
        raise CoconutError(f"rows of up to {longest} tokens (--question + 10 + --latents + 2 + answer or "
                           f"generated tokens) exceed the backbone's 1024 positions")
    result = run_bench(cfg)
    print(format_table(result))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand to the `coconut-lm` parser (sets `func`)."""
    from coconut_lm.argtypes import positive_int
    from coconut_lm.compiled import COMPILE_MODES

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
    p.add_argument("--precision", default=d.precision, choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast on GPU, fp32 on CPU, as the trainer (default auto)")
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
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out (repeatable)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the record (JSON) here")
    p.set_defaults(func=cmd_bench)


