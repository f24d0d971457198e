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

import torch

from coconut_lm.model.backbone import build_from_scratch
from coconut_lm.model.coconut import CoconutLM
from coconut_lm.model.last_block import prune_last_block
from coconut_lm.recipe.tokens import SpecialTokens

TOKENS = SpecialTokens(pad=0, eos=1, bot=2, eot=3, latent=4, pause=5)


def make_model(args: argparse.Namespace, prune: bool) -> CoconutLM:
    """The same fresh model (seed 0) every call, pruned or not."""
    torch.manual_seed(0)
    base = build_from_scratch("mini", args.vocab, 512, TOKENS, n_layer=args.n_layer, n_embd=args.n_embd,
                              n_head=args.n_head)
    model = CoconutLM(base, TOKENS, token_shift=1)
    if prune:
        prune_last_block(model)
    return model.train()


def make_batch(args: argparse.Namespace, latents: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, labels): left padding of i % 10 tokens, question, `latents` slots, answer (labelled)."""
    g = torch.Generator().manual_seed(1)
    b, q = args.batch_size, args.question
    t = q + args.latents + args.answer
    ids = torch.randint(6, args.vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    for i in range(b):
        mask[i, : i % 10] = 0
        ids[i, : i % 10] = TOKENS.pad
    ids[:, q:q + latents] = TOKENS.latent
    labels = torch.full_like(ids, -100)
    labels[:, -args.answer:] = ids[:, -args.answer:]
    return ids, mask, labels


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
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--vocab", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--question", type=int, default=113)
    p.add_argument("--latents", type=int, default=6)
    p.add_argument("--answer", type=int, default=3)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    p.add_argument("--generate", action="store_true", help="time greedy generation instead of the train step")
    args = p.parse_args()
    if args.generate:
        runs = {prune: make_generate(args, prune) for prune in (False, True)}
        assert torch.equal(runs[False](), runs[True]()), "pruned generation differs"
        times = {prune: [] for prune in runs}
        for r in range(args.rounds):
            for prune in ((False, True) if r % 2 == 0 else (True, False)):
                t0 = time.thread_time()
                for _ in range(args.steps):
                    runs[prune]()
                times[prune].append((time.thread_time() - t0) / args.steps)
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
    for fn in steps.values():  # warm-up
        fn()
    times: dict[tuple[str, bool], list[float]] = {k: [] for k in steps}
    for r in range(args.rounds):
        for key in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            t0 = time.thread_time()
            for _ in range(args.steps):
                steps[key]()
            times[key].append((time.thread_time() - t0) / args.steps)
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
