#!/usr/bin/env bash
# Adaptive latent reasoning at the demo's scale (issue 27; docs/experiments.md, "the model decides when
# to stop"): 10-node symbolic ProsQA with 2-4 hops, the demo's recipe without latent markers, and the
# <eot> classifier trained with pad_latent_to_max=false, so where thinking should stop tells the chain's
# length. Then a threshold sweep beside fixed counts on the validation graphs (to choose the threshold)
# and on the held-out graphs. One thread, ~13 min of an idle core.
#   bash scripts/adaptive_cpu.sh ROOT [key=value ...]
set -euo pipefail
R=${1:?usage: adaptive_cpu.sh ROOT [key=value ...]}
shift
mkdir -p "$R/data" && R=$(cd "$R" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
CLI=${CLI:-$here/.venv/bin/coconut-lm}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
D=$R/data
g() { local out=$1; shift; [ -f "$out" ] || "$CLI" data prosqa --format symbolic --relabel --nodes 10 --min-hops 2 --max-hops 4 "$@" --out "$out"; }
g "$D/train.json" --n "${TRAIN_N:-20000}" --seed 0
g "$D/val.json" --n 200 --seed 1
g "$D/test.json" --n 500 --seed 2
cd "$here"
[ -f "$R/run/best/coconut.json" ] || "$CLI" train --no-progress configs/prosqa_coconut_tiny.yaml train_path="$D/train.json" \
  val_path="$D/val.json" out_dir="$R/run" overwrite=true model=mini n_layer=2 n_embd=128 n_head=4 lr=1e-3 \
  lr_schedule=cosine warmup_steps=50 batch_size=32 micro_batch_size=32 relabel_every_epoch=true val_max_examples=200 \
  max_new_tokens=10 eval_every=2 log_every=20 num_epochs=14 max_steps_per_epoch=200 epochs_per_stage=2 \
  max_latent_stage=4 uniform_prob=0.1 pad_latent_to_max=false latent_markers=false eot_classifier=true token_shift=1 \
  max_thoughts=6 "$@" > "$R/train.log" 2>&1
for split in val test; do
  "$CLI" eval "$R/run" --data "$D/$split.json" --out "$R/sweep_$split" --use-classifier \
    --eot-threshold 0.2,0.35,0.5,0.65,0.8 --latents 2,3,4 --no-progress --overwrite
done
