#!/usr/bin/env bash
# One GPU window (about 15 minutes): Table 1 of the paper on one task, all eight methods at once as
# separate processes on one GPU, then the report. Results go to $OUT (at most 8 files).
#
#   device run:  bash scripts/gpu_window.sh prosqa          (carry: data/ holding <task>_valid.json)
#   CPU dry run: PYTHON=.venv/bin/python OUT=/tmp/out bash scripts/gpu_window.sh prosqa model=micro max_train_seconds=20 num_epochs=2
set -euo pipefail
task=${1:-prosqa}
shift || true
export PYTHONPATH=src
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu_window_out}
mkdir -p data "$OUT"
case "$task" in
  prosqa) n=17886 ;;
  prontoqa) n=9000 ;;
  *) echo "task must be prosqa or prontoqa" >&2; exit 2 ;;
esac
test -f "data/${task}_valid.json" || { echo "data/${task}_valid.json is missing (copy it from shared/data)" >&2; exit 2; }
"$PY" -m coconut_lm.cli data "$task" --n "$n" --seed 0 --out "data/${task}_train.json"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/device.txt" 2>/dev/null || echo "no GPU" > "$OUT/device.txt"
"$PY" scripts/sweep.py "sweeps/gpu_table1_${task}.yaml" --extra "$@" | tail -n 20
run_root=$("$PY" -c "import yaml,sys; print(yaml.safe_load(open('sweeps/gpu_table1_${task}.yaml'))['out'])")
for run in "$run_root"/*/; do  # final numbers with each method's own eval setting, as Table 1 reports them
  "$PY" -m coconut_lm.cli eval "$run/best" --data "data/${task}_valid.json" --out "$run/eval" --batch-size 300 \
    --no-progress | tail -n 2 || echo "eval of $run failed"
done
"$PY" -m coconut_lm.cli report "$run_root"/*/ --out "$OUT/table1_${task}.md"
cp "$run_root/summary.md" "$OUT/sweep_${task}.md"
tar czf "$OUT/metrics_${task}.tgz" "$run_root"/*/metrics.jsonl "$run_root"/*/config.yaml "$run_root"/*.log
