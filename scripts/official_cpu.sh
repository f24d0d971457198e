#!/usr/bin/env bash
# The official-size ProsQA recipe on CPU (docs/experiments.md, "Official size"): a curriculum over graph
# sizes, each stage `init_from` the one before, 2 layers x 128 from scratch, one thread per run.
#   1. the demo's Coconut on 10-node, 3-hop graphs (2,800 steps, ~6 min)
#   2. 16-node graphs with 3-4 hops, fresh graphs every epoch (2,800 steps, ~6 min)
#   3. official-size graphs, fresh every epoch, 8-epoch curriculum stages, a cosine over 20,000 steps
#      (num_epochs=100; 92.7% on the official file in ~7,500 s of one core), validated on the official file
#
#   bash scripts/official_cpu.sh ROOT NAME [key=value ...]
# runs stages 1-2 into ROOT once (skipped when ROOT/n16/best exists), then stage 3 into ROOT/NAME with the
# overrides; two NAMEs can run side by side once stage 2 is there. Needs ../shared/data/prosqa/prosqa_valid.json
# (or PROSQA_VALID=...). A stopped stage 3 continues with
# `coconut-lm train ROOT/NAME/config.yaml --resume [max_train_seconds=...]`.
# N10_STEPS, N16_EPOCHS and TRAIN_N shrink stages 1-2 for a dry run (tests/test_scripts.py).
set -euo pipefail
root=${1:?usage: official_cpu.sh ROOT NAME [key=value ...]}
mkdir -p "$root/data" && root=$(cd "$root" && pwd)  # absolute: the training runs start from the checkout
name=${2:?usage: official_cpu.sh ROOT NAME [key=value ...]}
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
CLI=${CLI:-$here/.venv/bin/coconut-lm}
valid=${PROSQA_VALID:-$here/../shared/data/prosqa/prosqa_valid.json}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
d=$root/data
gen() { local out=$1; shift; [ -f "$out" ] || "$CLI" data "$@" --out "$out"; }  # each data file once
# Training files of 6,400 examples: fresh_data draws as many new graphs per epoch, 200 steps of 32.
train_n=${TRAIN_N:-6400}
sym=(prosqa --format symbolic --relabel)
n16=(--nodes 16 --min-hops 3 --max-hops 4)
gen "$d/official_valid.json" symbolic "$valid"
gen "$d/official_train.json" "${sym[@]}" --n "$train_n" --seed 0
gen "$d/official_test777.json" "${sym[@]}" --n 500 --seed 777
gen "$d/n16_train.json" "${sym[@]}" "${n16[@]}" --n "$train_n" --seed 0
gen "$d/n16_val.json" "${sym[@]}" "${n16[@]}" --n 200 --seed 1

# What stages 2 and 3 share (stage 1 is the demo's own recipe).
common=(--no-progress configs/prosqa_coconut_tiny.yaml max_steps_per_epoch=200 model=mini n_layer=2 n_embd=128 n_head=4
        token_shift=1 latent_markers=false lr=1e-3 lr_schedule=cosine warmup_steps=50 batch_size=32
        micro_batch_size=32 uniform_prob=0.1 pad_latent_to_max=true max_new_tokens=12 length_buckets=8)
cd "$here"
if [ ! -d "$root/n16/best" ]; then
  [ -d "$root/n10/coconut/best" ] || "$CLI" demo --methods coconut --parallel 1 --steps "${N10_STEPS:-2800}" --out "$root/n10"
  "$CLI" train "${common[@]}" train_path="$d/n16_train.json" val_path="$d/n16_val.json" \
    "fresh_data=${sym[*]} ${n16[*]}" num_epochs="${N16_EPOCHS:-14}" epochs_per_stage=2 max_latent_stage=4 eval_every=2 \
    val_max_examples=200 init_from="$root/n10/coconut/best" out_dir="$root/n16" overwrite=true > "$root/n16.log" 2>&1
fi
"$CLI" train "${common[@]}" train_path="$d/official_train.json" val_path="$d/official_valid.json" \
  "fresh_data=${sym[*]}" num_epochs=100 epochs_per_stage=8 max_latent_stage=6 eval_every=4 val_max_examples=300 \
  init_from="$root/n16/best" out_dir="$root/$name" "$@" > "$root/$name.log" 2>&1
"$CLI" eval "$root/$name/best" --data "$d/official_valid.json" --out "$root/$name/eval_official" --no-progress --overwrite
"$CLI" eval "$root/$name/best" --data "$d/official_test777.json" --out "$root/$name/eval_fresh" --no-progress --overwrite
