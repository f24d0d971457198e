"""The bench record as a fixed-width table: one line per measure, with its ratio and goal.

    print(format_table(run_bench(cfg)))     # what `coconut-lm bench` prints
"""

from __future__ import annotations

from typing import Any


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
        # A checkpoint's own saved-tensor hooks hide what it keeps from the count: with checkpointed blocks
        # this row leaves them out (the RSS rows above hold everything).
        hidden = " (blocks not seen)" if r["config"].get("gradient_checkpointing") else ""
        row(f"    saved for backward, MiB{hidden}", m["coconut"]["saved_MB"], m["plain"]["saved_MB"], m["saved_ratio"])
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
        u = lp.get("utilisation", {})
        if "trainer" in u:
            row("    utilisation of the loop, %", 100 * u["trainer"], None, None,
                f"(matmul {u['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s)")
        if "bucketed_examples_per_s" in lp:
            row(f"    length_buckets={lp['length_buckets']}, examples/s vs (d)", lp["bucketed_examples_per_s"],
                lp["trainer_examples_per_s"], lp["bucketing_speedup"], "(speed-up)")
            if "trainer_bucketed" in u:
                row("    utilisation with length_buckets, %", 100 * u["trainer_bucketed"], None, None)
    m = r["machine"]
    lines.append(f"device {m.get('gpu', m['cpu'])}, {m['torch_threads']} threads; torch {r['versions']['torch']}, "
                 f"transformers {r['versions']['transformers']}; seq_len {r.get('seq_len', '-')}")
    return "\n".join(lines)
