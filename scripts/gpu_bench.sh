#!/usr/bin/env bash
# The GPU side of the speed goals in one call: `coconut-lm bench` at batch 32 and 128, fp32 and bf16,
# then one table beside the official Coconut code's H200 numbers. COMPILE (default reduce-overhead: CUDA graphs)
# adds a bf16 run per batch with every transformer block compiled in that mode; COMPILE="" leaves it out.
# Results go to $OUT (7 files: 6 JSON records and gpu_bench.md).
#
#   device run:  OUT=/tmp/out bash scripts/gpu_bench.sh
#   CPU dry run: PYTHON=.venv/bin/python OUT=/tmp/out DEVICE=cpu PRESET=micro BATCHES="2 4" COMPILE="" \
#                EXTRA="--latents 2 --question 12 --answer 4 --vocab 64 --warmup 0 --repeats 1 --gen-tokens 3 --eval-batch-size 2" \
#                bash scripts/gpu_bench.sh
set -euo pipefail
export PYTHONPATH=src
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu_bench_out}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-gpt2-124m}
BATCHES=${BATCHES:-"32 128"}
COMPILE=${COMPILE-reduce-overhead}
read -r -a extra <<< "${EXTRA:-}"
mkdir -p "$OUT"
variants=(fp32 bf16)
if [ -n "$COMPILE" ]; then variants+=(bf16_compiled); fi
for b in $BATCHES; do
  for v in "${variants[@]}"; do  # bf16_compiled: bf16 with every block compiled in mode $COMPILE
    flags=(--precision "${v%_compiled}")
    if [ "$v" = bf16_compiled ]; then flags+=(--compile "$COMPILE"); fi
    "$PY" -m coconut_lm.cli bench --device "$DEVICE" --preset "$PRESET" --batch-size "$b" "${flags[@]}" \
      --skip loop --skip memory "${extra[@]}" --json "$OUT/bench_b${b}_${v}.json" | tail -n 12
  done
done
"$PY" - "$OUT" <<'PYEOF'
"""One markdown table from the bench records, beside the official code's H200 numbers (issue 13)."""
import glob
import json
import os
import sys

out = sys.argv[1]
# The official Coconut code on an H200, fp32, gpt2-124m, ~190-token questions, 6 thoughts, 30 answer tokens:
# Coconut train step ms, plain forward+backward ms, generation ms per example.
OFFICIAL = {32: (3508, 164, 109), 128: (24148, 606, 184)}
rows = ["| batch | precision | compile | Coconut step ms | plain step ms | ratio (goal <= 1.25) | vs official step "
        "(goal >= 17x b32, 32x b128) | eval ex/s | vs official eval (goal >= 50x) | device |",
        "|---|---|---|---|---|---|---|---|---|---|"]
def batch_of(path):
    return int(os.path.basename(path).split("_")[1].removeprefix("b"))


for path in sorted(glob.glob(os.path.join(out, "bench_b*_*.json")), key=lambda p: (batch_of(p), p)):
    r = json.load(open(path))
    c, s, e = r["config"], r["step"], r.get("eval", {})
    step_ms, plain_ms = 1e3 * s["coconut"]["median_s"], 1e3 * s["plain"]["median_s"]
    official = OFFICIAL.get(c["batch_size"])
    vs_step = f"{official[0] / step_ms:.1f}x" if official else "-"
    ex_s = e.get("batched_examples_per_s")
    vs_eval = f"{ex_s * official[2] / 1e3:.1f}x" if official and ex_s else "-"
    device = r["machine"].get("gpu", r["machine"]["cpu"])
    eval_cells = f"{ex_s:.1f} | {vs_eval}" if ex_s else "- | -"
    rows.append(f"| {c['batch_size']} | {c['precision']} | {c.get('compile') or 'eager'} | {step_ms:.1f} | "
                f"{plain_ms:.1f} | {s['ratio']:.2f}x | {vs_step} | {eval_cells} | {device} |")
table = "\n".join(rows) + "\n"
open(os.path.join(out, "gpu_bench.md"), "w").write(table)
print(table)
PYEOF
