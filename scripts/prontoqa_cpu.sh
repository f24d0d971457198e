#!/usr/bin/env bash
# ProntoQA from scratch on CPU (docs/experiments.md, "ProntoQA learns from scratch"): the symbolic form with
# the negation as its own postfix token (`happy ~`), 3 layers x 128, token shift 2, one thread per run.
#   1. CoT on 1-hop items, a fixed file of 40,000 (14 epochs of 200 steps)               -> ROOT/h1
#   2. CoT on 1-5-hop items, fresh every epoch, from 1's best/ (12 epochs)                -> ROOT/h15
#   3. METHOD on 5-hop items (the official shape), fresh every epoch, from 2's best/      -> ROOT/NAME
#      (num_epochs=30: for Coconut and its variants 2-epoch curriculum stages up to max_latent_stage=6, where
#      every step is a thought, that last stage held for epochs 12-29, and two thoughts per step, c_thought=2:
#      with one, the last step, the property literal (`happy ~`, two tokens), does not survive becoming a
#      thought; docs/experiments.md, "ProntoQA: the last step as a thought")
# Stages 1-2 are CoT for every METHOD: they stand in for the paper's pretrained GPT-2, which all its methods
# start from (from scratch, no method learns 5-hop ProntoQA without them: docs/experiments.md).
#
#   [METHOD=coconut] [SEED=0] bash scripts/prontoqa_cpu.sh ROOT NAME [key=value ...]
# runs stages 1-2 into ROOT once (skipped once ROOT/h15 trained to its last epoch), then stage 3 into ROOT/NAME with the
# overrides. Use one ROOT per SEED; methods of one seed share its stages 1-2 (run them one after another, or
# start the second once ROOT/h15 has finished: its metrics.jsonl ends with the closing row). Every best/ is chosen on 300 fresh items of its stage's shape
# (seed 555); stage 3's is then scored on the official validation file and on 500 other fresh 5-hop items
# (seed 777), neither of which chose it. Needs ../shared/data/prontoqa/prontoqa_valid.json (or PRONTOQA_VALID=...).
# STOP_AT=TIME and reruns resume a stopped stage (scripts/chain_lib.sh). H1_N, TRAIN_N, VALID_N, H1_EPOCHS,
# H15_EPOCHS and STEPS_PER_EPOCH shrink the stages for a dry run (tests/test_scripts.py).
set -euo pipefail
root=${1:?usage: prontoqa_cpu.sh ROOT NAME [key=value ...]}
mkdir -p "$root/data" && root=$(cd "$root" && pwd)  # absolute: the training runs start from the checkout
name=${2:?usage: prontoqa_cpu.sh ROOT NAME [key=value ...]}
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
CLI=${CLI:-$here/.venv/bin/coconut-lm}
valid=${PRONTOQA_VALID:-$here/../shared/data/prontoqa/prontoqa_valid.json}
method=${METHOD:-coconut}
seed=${SEED:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
source "$here/scripts/chain_lib.sh"
d=$root/data
train_n=${TRAIN_N:-6400}  # fresh_data draws as many new items per epoch: 200 steps of 32
sym=(prontoqa --format symbolic --relabel)
chain_gen "$d/official_valid.json" symbolic "$valid"
chain_gen "$d/h1_train.json" "${sym[@]}" --min-hops 1 --max-hops 1 --n "${H1_N:-40000}" --seed 0
chain_gen "$d/h1_select555.json" "${sym[@]}" --min-hops 1 --max-hops 1 --n "${VALID_N:-300}" --seed 555
chain_gen "$d/h15_train.json" "${sym[@]}" --min-hops 1 --max-hops 5 --n "$train_n" --seed 0
chain_gen "$d/h15_select555.json" "${sym[@]}" --min-hops 1 --max-hops 5 --n "${VALID_N:-300}" --seed 555
chain_gen "$d/h5_train.json" "${sym[@]}" --n "$train_n" --seed 0
chain_gen "$d/h5_select555.json" "${sym[@]}" --n "${VALID_N:-300}" --seed 555
chain_gen "$d/h5_test777.json" "${sym[@]}" --n 500 --seed 777

keys=(model=mini n_layer=3 n_embd=128 n_head=4 token_shift=2 latent_markers=false lr=1e-3 lr_schedule=cosine
      warmup_steps=50 batch_size=32 micro_batch_size=32 max_steps_per_epoch="${STEPS_PER_EPOCH:-200}" epochs_per_stage=2 uniform_prob=0.1
      pad_latent_to_max=true eval_every=2 val_max_examples=300 max_new_tokens=10 length_buckets=8 log_every=50
      seed="$seed")
cd "$here"
common=(--no-progress configs/prontoqa_cot_tiny.yaml "${keys[@]}")
if ! chain_done "$root/h15"; then
  chain_done "$root/h1" || \
    chain_train "$root/h1" train_path="$d/h1_train.json" val_path="$d/h1_select555.json" num_epochs="${H1_EPOCHS:-14}"
  chain_train "$root/h15" train_path="$d/h15_train.json" val_path="$d/h15_select555.json" \
    "fresh_data=${sym[*]} --min-hops 1 --max-hops 5" num_epochs="${H15_EPOCHS:-12}" init_from="$root/h1/best"
fi
common=(--no-progress "configs/prontoqa_${method}_tiny.yaml" "${keys[@]}")
# Pause gets as many pauses as Coconut has thoughts at the last stage (6 steps x c_thought 2); iCoT removes one
# chain token every 2 epochs, so the 6-token chain is gone at epoch 12, when Coconut's last step becomes a thought.
[ "$method" = pause ] && common+=(pause_tokens=12)
[ "$method" = icot ] && common+=(icot_delta=0.5)
if [ ! -d "$root/$name/eval_fresh" ]; then
  chain_train "$root/$name" train_path="$d/h5_train.json" val_path="$d/h5_select555.json" "fresh_data=${sym[*]}" \
    max_latent_stage=6 c_thought=2 num_epochs=30 init_from="$root/h15/best" "$@"
  chain_score "$root/$name" "$d/official_valid.json:eval_official" "$d/h5_test777.json:eval_fresh"
fi
