"""The four measures of `coconut-lm bench` (coconut_lm.bench.run runs them, prints and records them).

All four measures run side by side in one process, after warm-up, as medians over repeats.
The variants of a measure run in interleaved rounds (A, B, A, B, ...), so that load from other
processes hits them alike (`coconut_lm.bench.timing`). Each ratio is the median of the same-round ratios.

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
    row-by-row no-cache reference (`coconut_lm.model.reference`), which recomputes the whole
    sequence for every new position, as the official code does.
(d) loop: examples/s of the real `Trainer.train_epoch` on generated ProsQA (data loading
    included), against the same model steps on batches built beforehand.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coconut_lm.bench.memory import RssSampler, map_large_blocks, saved_activation_bytes, step_memory
from coconut_lm.bench.timing import matmul_flops_per_s, step_flops, time_interleaved
from coconut_lm.recipe.tokens import SpecialTokens

if TYPE_CHECKING:  # torch is imported where it is used, so that `coconut-lm --help` stays quick
    import torch

    from coconut_lm.model.coconut import CoconutLM

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
    compile: str | None = None  # torch.compile mode for every transformer block (coconut_lm.model.compiled); None: eager
    gradient_checkpointing: bool = False  # recompute every block in backward (coconut_lm.model.checkpointing)
    prune_last_block: bool = False  # the last block only where the losses read it (coconut_lm.model.last_block)
    skip: tuple[str, ...] = ()


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


def _autocast(device: torch.device, precision: str):
    import torch

    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


# ----------------------------------------------------------------------------- (a) step


@dataclass
class TrainStep:
    """One variant of the train step: `loss()` builds the graph; calling the object runs a full step."""

    model: CoconutLM
    opt: torch.optim.Optimizer  # or a MasterAdamW (precision bf16-weights)
    loss: Callable[[], torch.Tensor]
    precision: str

    def __call__(self) -> None:
        import torch

        with _autocast(self.opt.param_groups[0]["params"][0].device, self.precision):
            loss = self.loss()
        loss.backward()
        if hasattr(self.opt, "clip_grad_norm"):  # bf16-weights (MasterAdamW): as the trainer does
            self.opt.clip_grad_norm(1.0)
        else:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)  # as the trainer does
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def train_steps(model: CoconutLM, b: BenchBatch, precision: str, hf_yardstick: bool = False,
                reference: bool = False) -> dict[str, TrainStep]:
    """The step variants (coconut, plain; plain_hf and reference if asked), sharing one AdamW."""
    import torch

    from coconut_lm.model.coconut import default_position_ids

    if precision == "bf16-weights":  # the trainer's optimizer for bf16 weights: AdamW on fp32 masters
        from coconut_lm.training.master import MasterAdamW

        opt: Any = MasterAdamW(model.parameters(), lr=1e-6)
    else:
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
        from coconut_lm.model.reference import reference_forward

        losses["reference"] = lambda: reference_forward(model, b.ids, b.mask, b.labels).loss
    return {name: TrainStep(model, opt, fn, precision) for name, fn in losses.items()}


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

    from coconut_lm.model.reference import reference_generate

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

    from coconut_lm.data.pipeline import EpochBatches
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa
    from coconut_lm.training.config import TrainConfig
    from coconut_lm.training.dist import init_distributed
    from coconut_lm.training.train import Trainer

    n = cfg.loop_batch_size * cfg.loop_steps
    with tempfile.TemporaryDirectory(prefix="coconut-bench-") as tmp:
        save_examples(generate_prosqa(n, seed=0, workers=1), Path(tmp) / "train.json")
        tc = TrainConfig(task="prosqa", train_path=str(Path(tmp) / "train.json"), model=cfg.loop_preset,
                         method="coconut", max_latent_stage=cfg.latents, epochs_per_stage=1,
                         pad_latent_to_max=True, batch_size=cfg.loop_batch_size,
                         micro_batch_size=cfg.loop_batch_size, num_workers=cfg.num_workers,
                         max_length=1024, precision=cfg.precision, out_dir=str(Path(tmp) / "run"),
                         log_every=10**9, warmup_steps=0, compile=cfg.compile is not None,
                         compile_mode=cfg.compile or "default",
                         # as (a)-(c) and the recorded config say: not the trainer's CPU default (null: on)
                         prune_last_block=cfg.prune_last_block)
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
        # Utilisation of the loop, as for the step: the epoch's counted FLOPs per second over a large matmul's.
        peak = matmul_flops_per_s(device)
        utilisation = {"matmul_flops_per_s": peak,
                       **{name: step_flops(variants[name]) / t[name].median_s / peak
                          for name in ("trainer", "trainer_bucketed") if name in variants}}
        trainer.log.close()
    return {"preset": cfg.loop_preset, "batch": cfg.loop_batch_size, "steps": cfg.loop_steps,
            "examples": n, "num_workers": cfg.num_workers, "seq_len": int(prebuilt[0].batch.input_ids.shape[1]),
            "trainer_examples_per_s": n / t["trainer"].median_s,
            "model_only_examples_per_s": n / t["model_only"].median_s,
            "data_only_examples_per_s": n / t["data_only"].median_s,
            # per round: model-only time / trainer time = trainer throughput / model-only throughput
            "ratio": t["model_only"].ratio, "utilisation": utilisation,
            **({"length_buckets": cfg.loop_length_buckets,
                "bucketed_examples_per_s": n / t["trainer_bucketed"].median_s,
                # per round: trainer time / bucketed trainer time
                "bucketing_speedup": 1 / t["trainer_bucketed"].ratio} if "trainer_bucketed" in t else {})}
