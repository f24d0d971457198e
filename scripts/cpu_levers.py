"""Time CPU levers for a small model's train step side by side: eager fp32, bf16 autocast, exact GELU, torch.compile.

    OMP_NUM_THREADS=1 python scripts/cpu_levers.py --n-embd 128 --question 113 --latents 6
    OMP_NUM_THREADS=1 python scripts/cpu_levers.py --n-embd 256 --skip-compile
    OMP_NUM_THREADS=1 python scripts/cpu_levers.py --matmul-shapes     # the step's matmuls alone vs 1024^3

One Coconut train step (forward, backward, AdamW) of a from-scratch 2-layer GPT-2 on random
symbolic-ProsQA-shaped rows (left padding from 0 to 9 tokens, the thoughts, 3 answer tokens);
variants run in interleaved rounds, and each ratio is the median of the same-round ratios against
eager fp32, so load from other processes hits them alike. "exact GELU" is `activation=gelu` (the erf
GELU) in place of the default tanh GELU; "eager attention" is HF's matmul-softmax-matmul attention in
place of torch's fused scaled_dot_product_attention. `torch.compile` compiles each transformer block
(inductor); its first call's compile time is printed apart. "fused AdamW" is torch's fused kernel in
place of the per-tensor loop torch uses on CPU; "tanh GELU fused" keeps GPT-2's tanh GELU but compiles
it alone as x * sigmoid(2z), the same function, one inductor kernel per direction (torch's own tanh-GELU
kernel is several times slower than its erf GELU on this CPU).

`--matmul-shapes` instead times each matmul shape of the 2-layer step (forward, input gradient,
weight gradient; batch x tokens rows) alone, on hot caches, against a 1024x1024 fp32 matmul in
the same rounds: how far these shapes can run when nothing else competes for the caches.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from coconut_lm.bench.timing import matmul_flops_per_s, step_flops, time_interleaved
from coconut_lm.model.backbone import build_from_scratch
from coconut_lm.model.coconut import CoconutLM
from coconut_lm.model.compiled import compile_blocks
from coconut_lm.recipe.tokens import SpecialTokens


class GeluTanhSigmoid(torch.nn.Module):
    """GPT-2's tanh GELU written as x * sigmoid(2z): the same function (0.5 (1 + tanh z) = sigmoid 2z)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x))


TOKENS = SpecialTokens(pad=0, eos=1, bot=2, eot=3, latent=4, pause=5)


def add_shape_args(p: argparse.ArgumentParser, rounds: int, steps: int) -> None:
    """The recipe's shapes and the interleaved rounds, as every lever script takes them."""
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--vocab", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--question", type=int, default=113)
    p.add_argument("--latents", type=int, default=6)
    p.add_argument("--answer", type=int, default=3)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--steps", type=int, default=steps, help="steps per variant per round")


def recipe_model(args: argparse.Namespace, activation: str | None = None, attention: str = "sdpa") -> CoconutLM:
    """The same fresh from-scratch GPT-2 (seed 0, token shift 1) every call, in train mode."""
    torch.manual_seed(0)
    base = build_from_scratch("mini", args.vocab, 512, TOKENS, n_layer=args.n_layer, n_embd=args.n_embd,
                              n_head=args.n_head, activation=activation)
    base.config._attn_implementation = attention
    return CoconutLM(base, TOKENS, token_shift=1).train()


def recipe_batch(args: argparse.Namespace, latents: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, labels): left padding of i % 10 tokens, the question, `latents` slots, the answer (labelled)."""
    b, q = args.batch_size, args.question
    t = q + latents + args.answer
    ids = torch.randint(6, args.vocab, (b, t), generator=generator)
    mask = torch.ones(b, t, dtype=torch.long)
    for i in range(b):
        mask[i, : i % 10] = 0
        ids[i, : i % 10] = TOKENS.pad
    ids[:, q:q + latents] = TOKENS.latent
    labels = torch.full_like(ids, -100)
    labels[:, -args.answer:] = ids[:, -args.answer:]
    return ids, mask, labels


def make_step(args: argparse.Namespace, bf16: bool, compiled: bool, activation: str | None = None,
              attention: str = "sdpa", fused_adamw: bool = False, fused_gelu: bool = False):
    """One train step of a fresh model; `activation` overrides the preset's MLP activation and `attention`
    the attention implementation of the HF backbone ("sdpa", torch's fused kernel, or "eager": matmul,
    softmax, matmul). `fused_adamw` uses torch's fused AdamW kernel in place of its per-tensor loop (the
    CPU default); `fused_gelu` keeps the tanh GELU but runs it as one inductor kernel per direction."""
    model = recipe_model(args, activation, attention)
    if fused_gelu:  # only the activation is compiled: a tiny graph with no breaks
        act = torch.compile(GeluTanhSigmoid(), dynamic=True)
        for block in model.base.transformer.h:
            block.mlp.act = act
    if compiled:  # each transformer block, in place, as the trainer's compile=true does
        compile_blocks(model)
    ids, mask, labels = recipe_batch(args, args.latents)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, **({"fused": True} if fused_adamw else {}))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(ids, mask, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def matmul_shapes(args: argparse.Namespace) -> None:
    """Each matmul shape of the step alone, relative to a 1024^3 matmul's FLOP/s in the same rounds."""
    h, rows = args.n_embd, args.batch_size * (args.question + args.latents + args.answer)
    shapes = {"qkv forward": (rows, h, 3 * h), "attention out forward": (rows, h, h),
              "MLP up forward": (rows, h, 4 * h), "MLP down forward": (rows, 4 * h, h),
              "qkv input grad": (rows, 3 * h, h), "MLP up input grad": (rows, 4 * h, h),
              "qkv weight grad": (h, rows, 3 * h), "MLP down weight grad": (4 * h, rows, h)}
    big_a, big_b = torch.randn(1024, 1024), torch.randn(1024, 1024)

    def rate(a: torch.Tensor, b: torch.Tensor, n: int = 5) -> float:
        a @ b
        t0 = time.perf_counter()
        for _ in range(n):
            a @ b
        return 2 * a.shape[0] * a.shape[1] * b.shape[1] * n / (time.perf_counter() - t0)

    print(f"{'matmul (m x k x n)':<40}{'GFLOP/s':>9}{'vs 1024^3':>11}")
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        ratios, rates = [], []
        for _ in range(args.rounds):
            big, r = rate(big_a, big_b), rate(a, b)
            ratios.append(r / big)
            rates.append(r)
        print(f"{f'{name} ({m}x{k}x{n})':<40}{statistics.median(rates) / 1e9:>9.1f}{statistics.median(ratios):>10.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_args(p, rounds=5, steps=4)
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--matmul-shapes", action="store_true", help="time the step's matmul shapes alone instead")
    args = p.parse_args()
    if args.matmul_shapes:
        matmul_shapes(args)
        return
    variants = {"eager fp32": make_step(args, False, False), "bf16 autocast": make_step(args, True, False),
                "exact GELU fp32": make_step(args, False, False, "gelu"),
                "exact GELU + bf16": make_step(args, True, False, "gelu"),
                "eager attention": make_step(args, False, False, attention="eager"),
                "fused AdamW": make_step(args, False, False, fused_adamw=True),
                "exact GELU + fused AdamW": make_step(args, False, False, "gelu", fused_adamw=True)}
    if not args.skip_compile:
        compiled = make_step(args, False, True)
        t0 = time.perf_counter()
        compiled()
        print(f"torch.compile: first step (compiling) {time.perf_counter() - t0:.1f} s")
        variants["torch.compile fp32"] = compiled
        variants["tanh GELU fused"] = make_step(args, False, False, fused_gelu=True)
    rounds = {name: (lambda fn=fn: [fn() for _ in range(args.steps)]) for name, fn in variants.items()}
    t = time_interleaved(rounds, "eager fp32", torch.device("cpu"), warmup=1, repeats=args.rounds)
    flops = step_flops(variants["eager fp32"])  # the same matmuls in every variant
    peak = matmul_flops_per_s(torch.device("cpu"))
    print(f"2x{args.n_embd} ({args.n_head} heads), batch {args.batch_size}, {args.question}+{args.latents}+"
          f"{args.answer} tokens, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
          f"{flops / 1e9:.2f} GFLOP per step, 1024^3 matmul {peak / 1e9:.0f} GFLOP/s")
    print(f"{'variant':<28}{'step ms':>10}{'speed-up':>10}{'utilisation':>13}")
    for name, timing in t.items():
        step_s = timing.median_s / args.steps
        print(f"{name:<28}{1e3 * step_s:>10.1f}{1 / timing.ratio:>9.2f}x{100 * flops / step_s / peak:>12.0f}%")


if __name__ == "__main__":
    main()
