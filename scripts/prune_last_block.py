"""Time the train step with the last transformer block pruned to the positions it must compute (issue 30).

    OMP_NUM_THREADS=1 python scripts/prune_last_block.py                  # batch 32, 113+6+3 tokens
    OMP_NUM_THREADS=1 python scripts/prune_last_block.py --rounds 11 --n-layer 3
    OMP_NUM_THREADS=1 python scripts/prune_last_block.py --generate --batch-size 64   # greedy generation instead

One train step (forward, backward, AdamW) of a from-scratch GPT-2 (token shift 1, as in
`scripts/cpu_levers.py`) on random symbolic-ProsQA-shaped rows: left padding of 0 to 9 tokens, a
question, the thoughts, the answer, labels on the answer only. "coconut" rows carry `--latents`
thought slots; "plain" rows are the same tokens without thoughts (one pass). Each pair runs with
and without `last_block.prune_last_block`, in interleaved rounds (the order alternating) in one
process; each round's time is the thread's CPU time (`time.thread_time`) of `--steps` steps, and a
speed-up is the median over rounds of the same-round ratio, so other processes on the cores weigh on
both sides alike. Before timing, the pruned step's loss and gradients are checked against the full one.
`--generate` times greedy generation (no grad) of the answer after the question and the thoughts
instead, where only the prompt pass is pruned.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import cpu_levers  # (scripts/ is on sys.path when this file runs as a script)
import torch

from coconut_lm.bench.timing import time_interleaved
from coconut_lm.model.coconut import CoconutLM
from coconut_lm.model.last_block import prune_last_block


def make_model(args: argparse.Namespace, prune: bool) -> CoconutLM:
    """The same fresh model (seed 0) every call, pruned or not."""
    model = cpu_levers.recipe_model(args)
    if prune:
        prune_last_block(model)
    return model


def make_batch(args: argparse.Namespace, latents: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, labels) of `cpu_levers.recipe_batch`, the same every call (generator seed 1)."""
    return cpu_levers.recipe_batch(args, latents, torch.Generator().manual_seed(1))


def cpu_rounds(fns: dict[Any, Callable[[], object]], args: argparse.Namespace) -> dict[Any, list[float]]:
    """CPU seconds per call of each fn (`time.thread_time`) in each of `--rounds` interleaved rounds of `--steps`
    calls, after one warm-up call each (`bench.timing.time_interleaved`)."""
    timed = time_interleaved(fns, next(iter(fns)), torch.device("cpu"), warmup=1, repeats=args.rounds,
                             clock=time.thread_time, calls=args.steps)
    return {key: t.rounds for key, t in timed.items()}


def make_step(args: argparse.Namespace, latents: int, prune: bool):
    """One train step closure of a fresh model, and the model."""
    model = make_model(args, prune)
    ids, mask, labels = make_batch(args, latents)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        model(ids, mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, model


def make_generate(args: argparse.Namespace, prune: bool):
    """Greedy generation of `--answer` tokens after the question and the thoughts (the prompt: all but the answer)."""
    model = make_model(args, prune).eval()
    ids, mask, _ = make_batch(args, args.latents)
    n = ids.shape[1] - args.answer

    def run() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(ids[:, :n], mask[:, :n], args.answer).sequences

    return run


def check(args: argparse.Namespace, latents: int) -> float:
    """Largest gradient difference (relative to the gradient's scale) between the pruned and the full model."""
    grads = []
    for prune in (False, True):
        model = make_model(args, prune)
        ids, mask, labels = make_batch(args, latents)
        model(ids, mask, labels=labels).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    return max(((grads[0][n] - grads[1][n]).abs().max() / grads[0][n].abs().max().clamp_min(1e-12)).item()
               for n in grads[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cpu_levers.add_shape_args(p, rounds=7, steps=3)
    p.add_argument("--generate", action="store_true", help="time greedy generation instead of the train step")
    args = p.parse_args()
    if args.generate:
        runs = {prune: make_generate(args, prune) for prune in (False, True)}
        assert torch.equal(runs[False](), runs[True]()), "pruned generation differs"
        times = cpu_rounds(runs, args)
        ratio = statistics.median(f / q for f, q in zip(times[False], times[True]))
        print(f"generation, batch {args.batch_size}, {args.question}+{args.latents} prompt + {args.answer} new tokens, "
              f"{torch.get_num_threads()} thread(s): full {1e3 * statistics.median(times[False]):.1f} ms, pruned "
              f"{1e3 * statistics.median(times[True]):.1f} ms CPU, {ratio:.2f}x")
        return
    pairs = {"coconut": args.latents, "plain": 0}
    for name, latents in pairs.items():
        print(f"{name}: pruned vs full gradients, largest relative difference {check(args, latents):.1e}")
    steps = {(name, prune): make_step(args, latents, prune)[0] for name, latents in pairs.items()
             for prune in (False, True)}
    times = cpu_rounds(steps, args)
    print(f"{args.n_layer}x{args.n_embd} ({args.n_head} heads), batch {args.batch_size}, {args.question}+"
          f"{args.latents}+{args.answer} tokens, {torch.get_num_threads()} thread(s), {args.rounds} rounds of "
          f"{args.steps} steps, CPU time per step (median)")
    print(f"{'step':<10}{'full ms':>10}{'pruned ms':>11}{'speed-up':>10}")
    for name in pairs:
        full, pruned = times[(name, False)], times[(name, True)]
        ratio = statistics.median(f / q for f, q in zip(full, pruned))
        print(f"{name:<10}{1e3 * statistics.median(full):>10.1f}{1e3 * statistics.median(pruned):>11.1f}"
              f"{ratio:>9.2f}x")


if __name__ == "__main__":
    main()
