"""Where a thought pass's time goes: CPU time of each part of one Coconut train step, by pass width.

    OMP_NUM_THREADS=1 python scripts/thought_pass_breakdown.py                  # batch 32, 113+6+3 tokens
    OMP_NUM_THREADS=1 python scripts/thought_pass_breakdown.py --batch-size 1

Runs the train step of `scripts/cpu_levers.py` (a from-scratch GPT-2, token shift 1, sdpa attention)
with timers wrapped around the pieces of each backbone pass: the whole pass forward, HF's mask
construction (`create_causal_mask`), each block, its attention module, the sdpa call in it, the KV
buffer's update (with `_PrefixView`), the MLP, and the token shift outside the pass. A pass's backward
is timed from the gradient reaching its output to the gradient leaving its input (tensor hooks).
Times are the thread's CPU time (`time.thread_time`), not wall time, so that other processes on the
same cores inflate them less (caches and memory bandwidth are still shared); medians over steps.
For the step's ratio to the plain step use `coconut-lm bench` (section `step`) or `cpu_levers.py`.

Widths: q=1 are the one-position thought passes, the first pass is the question, the last the final
thought and the answer. The script patches transformers' GPT-2 module for its own process only.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch
import transformers.models.gpt2.modeling_gpt2 as gpt2

from coconut_lm.model import coconut, kv_cache, token_shift

_times: dict[str, list[float]] = collections.defaultdict(list)
_width = {"q": 0}  # the width of the pass running now


def _timed(name: str, fn, width_of=None):
    """fn, adding its CPU time to `_times` under name and the pass width (`width_of(args)`, or the running pass's)."""
    def wrapper(*args, **kwargs):
        t0 = time.thread_time()
        out = fn(*args, **kwargs)
        width = _width["q"] if width_of is None else width_of(args)
        _times[f"q={width:<4}{name}"].append(time.thread_time() - t0)
        return out
    return wrapper


def instrument() -> None:
    """Wrap the timed pieces (this process only)."""
    gpt2.create_causal_mask = _timed("forward: HF mask (create_causal_mask)", gpt2.create_causal_mask)
    gpt2.ALL_ATTENTION_FUNCTIONS["sdpa"] = _timed("forward: sdpa call, per layer",
                                                  gpt2.ALL_ATTENTION_FUNCTIONS["sdpa"])
    gpt2.GPT2Block.forward = _timed("forward: block, per layer", gpt2.GPT2Block.forward)
    gpt2.GPT2Attention.forward = _timed("forward: attention module, per layer", gpt2.GPT2Attention.forward)
    gpt2.GPT2MLP.forward = _timed("forward: MLP, per layer", gpt2.GPT2MLP.forward)
    layer = kv_cache._buffer_layer_class()
    layer.update = _timed("forward: KV buffer update + _PrefixView, per layer", layer.update)
    token_shift.TokenShift.shift = _timed("forward: token shift (before the pass)", token_shift.TokenShift.shift,
                                          width_of=lambda args: args[1].shape[1])  # (self, x, ...)
    run_pass = coconut.CoconutLM._pass

    def timed_pass(self, x, mask, pos, cache, *rest):
        _width["q"] = x.shape[1]
        t0 = time.thread_time()
        out = run_pass(self, x, mask, pos, cache, *rest)
        _times[f"q={x.shape[1]:<4}forward: whole pass"].append(time.thread_time() - t0)
        if out.requires_grad and x.requires_grad:
            start, key = [], f"q={x.shape[1]:<4}backward: whole pass"
            out.register_hook(lambda g: start.append(time.thread_time()))
            x.register_hook(lambda g: _times[key].append(time.thread_time() - start[-1]) if start else None)
        return out

    coconut.CoconutLM._pass = timed_pass


def main() -> None:
    import cpu_levers  # scripts/ is on sys.path when this file runs as a script

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--question", type=int, default=113)
    p.add_argument("--latents", type=int, default=6)
    p.add_argument("--answer", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args()
    instrument()
    shapes = argparse.Namespace(n_layer=2, n_embd=128, n_head=4, vocab=40, batch_size=args.batch_size,
                                question=args.question, latents=args.latents, answer=args.answer)
    step = cpu_levers.make_step(shapes, bf16=False, compiled=False)
    for _ in range(3):
        step()
    _times.clear()
    t0 = time.thread_time()
    for _ in range(args.steps):
        step()
    total = (time.thread_time() - t0) / args.steps
    print(f"batch {args.batch_size}, {args.question}+{args.latents}+{args.answer} tokens, "
          f"{torch.get_num_threads()} thread(s): {1e3 * total:.1f} ms CPU per train step")
    print(f"{'pass width, piece':<62}{'median ms':>10}{'calls/step':>11}")
    for name in sorted(_times, key=lambda k: (int(k[2:6]), k)):
        values = _times[name]
        print(f"{name:<62}{1e3 * statistics.median(values):>10.3f}{len(values) / args.steps:>11.0f}")


if __name__ == "__main__":
    main()
