"""Speed and memory of CoconutLM against a plain HF step and the slow reference (tests/reference.py).

    .venv/bin/python scripts/bench_model.py                         # tiny preset, batch 16, CPU
    .venv/bin/python scripts/bench_model.py --vocab 512 --json out.json

(a) Training: one forward+backward of a Coconut batch (question ~190 tokens, <bot>, 6 latents,
    <eot>, 30 answer tokens; rows left-padded so the latents align, as the collator does), divided
    by one plain HF forward+backward of the same tokens (latents replaced by an ordinary token).
    The same ratio for the reference (one full no-cache recompute per thought, so slower than the
    official code, which keeps a cache but rebuilds its inputs in Python), and for a one-pass
    CoconutLM forward of the plain tokens, which isolates the cost of the extra passes. Memory is
    the bytes of activations saved for backward (weights excluded, storages counted once), which
    is what the passes change; on a GPU the peak allocation is reported too.
(b) Generation: batched KV-cache `generate` (6 thoughts in the prompt, 32 new tokens) against the
    reference, which decodes one row at a time and recomputes the whole sequence per token; HF's
    own batched `generate` on the plain prompt is listed as a yardstick for the decode loop.

The measuring functions (`bench_batch`, `time_median`, `time_interleaved`, `saved_activation_bytes`,
`bench_train`, `bench_generate`) take plain arguments and return dicts, so a `coconut-lm bench`
command can import them. Numbers on a shared machine drift: variants are timed in interleaved
rounds and each ratio is the median of same-round ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import reference_forward, reference_generate  # noqa: E402

from coconut_lm.backbone import build_backbone  # noqa: E402
from coconut_lm.model import CoconutLM, default_position_ids  # noqa: E402
from coconut_lm.tokenizer import SpecialTokens  # noqa: E402

# Word-tokenizer order (pad, eos, unk, bot, eot, latent, pause); EOS is moved out of the
# vocabulary for benchmarks so that every row generates exactly the requested number of tokens.
FIRST_WORD = 7


def bench_tokens(vocab: int) -> SpecialTokens:
    return SpecialTokens(pad=0, eos=vocab, bot=3, eot=4, latent=5, pause=6)


def bench_batch(batch: int, question: int, latents: int, answer: int, vocab: int, seed: int = 0,
                jitter: int = 10) -> dict[str, torch.Tensor]:
    """A Coconut batch and its plain twin. Question lengths vary by +-jitter (left padding)."""
    tk = bench_tokens(vocab)
    g = torch.Generator().manual_seed(seed)
    q_lens = [question + int(torch.randint(-jitter, jitter + 1, (1,), generator=g)) for _ in range(batch)]
    width = max(q_lens) + latents + 2 + answer
    ids = torch.full((batch, width), tk.pad)
    labels = torch.full((batch, width), -100)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for i, q in enumerate(q_lens):
        words = lambda n: torch.randint(FIRST_WORD, vocab, (n,), generator=g)  # noqa: E731
        row = torch.cat([words(q), torch.tensor([tk.bot] + [tk.latent] * latents + [tk.eot]), words(answer)])
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
        labels[i, width - answer:] = row[-answer:]
    plain = torch.where(ids == tk.latent, FIRST_WORD, ids)
    n_prompt = width - answer
    return {"ids": ids, "mask": mask, "labels": labels, "plain_ids": plain,
            "prompt_ids": ids[:, :n_prompt], "prompt_mask": mask[:, :n_prompt]}


def _timed(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_median(fn: Callable[[], object], warmup: int = 2, repeats: int = 5) -> dict[str, float]:
    """Median and min wall time of fn() in seconds, after warm-up calls."""
    for _ in range(warmup):
        fn()
    times = [_timed(fn) for _ in range(repeats)]
    return {"median_s": statistics.median(times), "min_s": min(times)}


def time_interleaved(fns: dict[str, Callable[[], object]], baseline: str, warmup: int = 2,
                     repeats: int = 5) -> dict[str, dict[str, float]]:
    """Time several variants in rounds (A, B, C, A, B, C, ...) so that load from other processes
    hits them alike; each gets its median and min, and the median over rounds of its time divided
    by the baseline's time in the same round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return {name: {"median_s": statistics.median(t), "min_s": min(t),
                   "ratio": statistics.median(x / y for x, y in zip(t, times[baseline]))}
            for name, t in times.items()}


def saved_activation_bytes(fn: Callable[[], torch.Tensor], params: set[int]) -> int:
    """Bytes of distinct storages autograd saves for backward while fn() builds its graph.

    Parameters (by storage pointer in `params`) are left out: every variant keeps them anyway.
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    loss.backward()
    return sum(seen.values())


def gpu_peak_bytes(fn: Callable[[], torch.Tensor]) -> int | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn().backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def build_model(preset: str, vocab: int, n_positions: int, device: str) -> CoconutLM:
    torch.manual_seed(0)
    base = build_backbone(preset, vocab_size=vocab, n_positions=n_positions)
    return CoconutLM(base, bench_tokens(vocab)).to(device).eval()  # eval: no dropout, same work


def bench_train(model: CoconutLM, batch: dict[str, torch.Tensor], warmup: int = 2, repeats: int = 5,
                with_reference: bool = True) -> dict[str, object]:
    """Forward+backward time and saved activations of each variant, and their ratios to plain HF.

    Variants: plain_hf (one HF forward of the plain tokens, HF's loss over all positions),
    plain_coconut_1pass (CoconutLM on the plain tokens: one pass, head only on labels),
    coconut (the multi-pass forward), coconut_stock_cache (the same with HF's concatenating
    DynamicCache), reference (full recompute per thought; timed over fewer rounds).
    """
    dev = next(model.parameters()).device
    b = {k: v.to(dev) for k, v in batch.items()}
    pos = default_position_ids(b["mask"])

    def coconut(kv_buffer: bool, ids: torch.Tensor) -> torch.Tensor:
        model.kv_buffer = kv_buffer
        return model(ids, b["mask"], b["labels"]).loss

    losses: dict[str, Callable[[], torch.Tensor]] = {
        "plain_hf": lambda: model.base(input_ids=b["plain_ids"], attention_mask=b["mask"], position_ids=pos,
                                       labels=b["labels"]).loss,
        "plain_coconut_1pass": lambda: coconut(True, b["plain_ids"]),
        "coconut": lambda: coconut(True, b["ids"]),
        "coconut_stock_cache": lambda: coconut(False, b["ids"]),
    }

    def step(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            fn().backward()
        return run

    out: dict[str, object] = dict(time_interleaved({k: step(f) for k, f in losses.items()}, "plain_hf",
                                                   warmup, repeats))
    if with_reference:
        losses["reference"] = lambda: reference_forward(model, b["ids"], b["mask"], b["labels"]).loss
        ref = time_interleaved({"plain_hf": step(losses["plain_hf"]), "reference": step(losses["reference"])},
                               "plain_hf", warmup=1, repeats=max(1, repeats // 2))
        out["reference"] = ref["reference"]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    for name, fn in losses.items():
        model.zero_grad(set_to_none=True)
        out[name]["saved_MB"] = saved_activation_bytes(fn, params) / 2**20
        model.zero_grad(set_to_none=True)
        out[name]["gpu_peak_MB"] = _mb(gpu_peak_bytes(fn))
        out[name]["saved_memory_ratio"] = out[name]["saved_MB"] / out["plain_hf"]["saved_MB"]
        if out[name]["gpu_peak_MB"] is not None:
            out[name]["gpu_peak_ratio"] = out[name]["gpu_peak_MB"] / out["plain_hf"]["gpu_peak_MB"]
    model.kv_buffer = True
    model.zero_grad(set_to_none=True)
    return out


def bench_generate(model: CoconutLM, batch: dict[str, torch.Tensor], new_tokens: int = 32,
                   n_reference: int | None = None) -> dict[str, float]:
    """Examples per second: batched KV-cache generation vs the row-by-row no-cache reference."""
    dev = next(model.parameters()).device
    ids, mask = batch["prompt_ids"].to(dev), batch["prompt_mask"].to(dev)
    model.generate(ids[:2], mask[:2], 2)  # warm-up
    t = time_median(lambda: model.generate(ids, mask, new_tokens), warmup=0, repeats=3)
    fast = ids.shape[0] / t["median_s"]
    plain = torch.where(ids == model.tokens.latent, FIRST_WORD, ids)
    hf = time_median(lambda: model.base.generate(input_ids=plain, attention_mask=mask, max_new_tokens=new_tokens,
                                                 min_new_tokens=new_tokens, do_sample=False,
                                                 pad_token_id=model.tokens.pad), warmup=1, repeats=3)
    rows = [ids[i][mask[i] == 1].tolist() for i in range(ids.shape[0])][: n_reference or ids.shape[0]]
    t0 = time.perf_counter()
    for row in rows:
        reference_generate(model, row, new_tokens)
    slow = len(rows) / (time.perf_counter() - t0)
    return {"fast_examples_per_s": fast, "reference_examples_per_s": slow, "speedup": fast / slow,
            "hf_generate_plain_prompt_examples_per_s": ids.shape[0] / hf["median_s"],
            "batch": ids.shape[0], "new_tokens": new_tokens, "reference_rows": len(rows)}


def _mb(n: int | None) -> float | None:
    return None if n is None else n / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=50257, help="GPT-2's by default")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--question", type=int, default=190)
    ap.add_argument("--latents", type=int, default=6)
    ap.add_argument("--answer", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--gen-reference-rows", type=int, default=4, help="rows the slow reference decodes")
    ap.add_argument("--skip", choices=["train", "generate", "reference"], action="append", default=[])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    batch = bench_batch(args.batch, args.question, args.latents, args.answer, args.vocab)
    model = build_model(args.preset, args.vocab, 1024, args.device)
    result: dict[str, object] = {"args": vars(args), "threads": torch.get_num_threads(),
                                 "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                                 "seq_len": batch["ids"].shape[1], "torch": torch.__version__}
    if "train" not in args.skip:
        result["train"] = bench_train(model, batch, args.warmup, args.repeats, "reference" not in args.skip)
    if "generate" not in args.skip:
        result["generate"] = bench_generate(model, batch, args.gen_tokens, args.gen_reference_rows)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
