#!/usr/bin/env bash
# One GPU window (about 15 minutes): Table 1 of the paper on one task, all eight methods at once as
# separate processes on one GPU, then the report; or one of the pretrained-model recipes of
# scripts/gpu_recipes.sh. Results go to $OUT (at most 8 files), per-step time and peak memory of every run
# in $OUT/steps_<task>.md (scripts/recipe_table.py, from the trainer's metrics rows).
#
#   device run:  bash scripts/gpu_window.sh prosqa          (carry: data/ holding <task>_valid.json)
#                bash scripts/gpu_window.sh prosqa_symbolic (carry: data/prosqa_valid.json; the symbolic form,
#                2 layers x 768 from scratch, the CPU recipe of docs/experiments.md scaled up)
#                bash scripts/gpu_window.sh gsm8k_gpt2 models/gpt2          (carry: data/gsm_valid.json,
#                data/openai_train.jsonl, the pretrained GPT-2 folder; CoT, then Coconut c=2 with 3 latent stages)
#                bash scripts/gpu_window.sh lora_1b models/Llama-3.2-1B     (carry: data/prosqa_valid.json, the
#                model folder; LoRA r 16 Coconut on ProsQA, precision=bf16-weights)
#                (the model folder may also come as MODEL=PATH; TRAIN_SECONDS=300 caps each stage, see gpu_recipes.sh)
#   CPU dry run: PYTHON=.venv/bin/python OUT=/tmp/out bash scripts/gpu_window.sh prosqa model=micro max_train_seconds=20 num_epochs=2
#                PYTHON=.venv/bin/python OUT=/tmp/out N=2000 bash scripts/gpu_window.sh prosqa_symbolic n_embd=64 n_head=2 batch_size=32 micro_batch_size=32 max_train_seconds=20 num_epochs=2
set -euo pipefail
task=${1:-prosqa}
shift || true
case "$task" in gsm8k_gpt2|lora_1b) exec bash "$(dirname "$0")/gpu_recipes.sh" "$task" "$@" ;; esac
export PYTHONPATH=src
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu_window_out}
mkdir -p data "$OUT"
case "$task" in  # N=... overrides the training-set size (e.g. for a CPU dry run)
  prosqa) gen=(prosqa --n "${N:-17886}") ;;
  prontoqa) gen=(prontoqa --n "${N:-9000}") ;;
  prosqa_symbolic) gen=(prosqa --format symbolic --relabel --n "${N:-100000}") ;;
  *) echo "task must be prosqa, prontoqa, prosqa_symbolic, gsm8k_gpt2 or lora_1b" >&2; exit 2 ;;
esac
source_task=${task%_symbolic}
test -f "data/${source_task}_valid.json" || { echo "data/${source_task}_valid.json is missing (copy it from shared/data)" >&2; exit 2; }
if [ "$task" = prosqa_symbolic ]; then  # the official validation file, rendered one token per node
  "$PY" -m coconut_lm.cli data symbolic "data/prosqa_valid.json" --out "data/${task}_valid.json"
fi
"$PY" -m coconut_lm.cli data "${gen[@]}" --seed 0 --out "data/${task}_train.json"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/device.txt" 2>/dev/null || echo "no GPU" > "$OUT/device.txt"
"$PY" scripts/sweep.py "sweeps/gpu_table1_${task}.yaml" --extra "$@" | tail -n 20
run_root=$("$PY" -c "import yaml,sys; print(yaml.safe_load(open('sweeps/gpu_table1_${task}.yaml'))['out'])")
for run in "$run_root"/*/; do  # final numbers with each method's own eval setting, as Table 1 reports them
  "$PY" -m coconut_lm.cli eval "$run/best" --data "data/${task}_valid.json" --out "$run/eval" --overwrite --batch-size 300 \
    --no-progress | tail -n 2 || echo "eval of $run failed"
done
"$PY" -m coconut_lm.cli report "$run_root"/*/ --out "$OUT/table1_${task}.md" --overwrite
for run in "$run_root"/*/; do  # accuracy per hop count (the literature reports the 3-4-hop part)
  echo "$(basename "$run") $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("accuracy_by_steps"))' "$run/eval/summary.json" 2>/dev/null)"
done > "$OUT/by_hops_${task}.txt"
cp "$run_root/summary.md" "$OUT/sweep_${task}.md"
"$PY" scripts/recipe_table.py "$run_root"/*/ --out "$OUT/steps_${task}.md" --device-file "$OUT/device.txt" > /dev/null
tar czf "$OUT/metrics_${task}.tgz" "$run_root"/*/metrics.jsonl "$run_root"/*/config.yaml "$run_root"/*.log
