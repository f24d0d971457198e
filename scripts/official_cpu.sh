#!/usr/bin/env bash
# The official-size ProsQA recipe on CPU (docs/experiments.md, "Official size"): a curriculum over graph
# sizes, each stage `init_from` the one before, 2 layers x 128 from scratch, one thread per run.
#   1. the demo's recipe for METHOD on 10-node, 3-hop graphs (2,800 steps, ~6 min)
#   2. 16-node graphs with 3-4 hops, fresh graphs every epoch (2,800 steps, ~6 min)
#   3. official-size graphs, fresh every epoch, 8-epoch curriculum stages, a cosine over 20,000 steps
#      (num_epochs=100; ~55 min of an idle core)
#   4. the continuation: a second, gentler cosine (lr 3e-4, 16,000 steps, fresh graphs from a new seed)
#      from stage 3's best/ (~50 min; docs/experiments.md, "a second cosine in the last stage")
#   5. with ADAPTIVE=1: the <eot> classifier (docs/methods.md, "when the classifier can be adaptive"), trained
#      from stage 4's best/ in the all-latent stage with pad_latent_to_max=false, so each graph gets as many
#      thoughts as its chain has hops and the classifier learns where the chain ends (lr 1e-4, 3,200 steps);
#      then eval sweeps of the classifier's threshold beside fixed counts on the selection graphs (to choose the
#      threshold), the official file and the fresh test graphs, into ROOT/NAME-stop/sweep_*
#
#   [METHOD=coconut] [SEED=0] bash scripts/official_cpu.sh ROOT NAME [key=value ...]
# runs stages 1-2 into ROOT once (skipped once ROOT/n16 trained to its last epoch, or once stage 3 is scored), then stage 3 into ROOT/NAME with the
# overrides, then stage 4 into ROOT/NAME-c2 (and stage 5 into ROOT/NAME-stop). Use one ROOT per METHOD, SEED and SET (finished stages 1-2 are
# reused as they are). Two chains can run side by side.
# Protocol (docs/table1.md): every best/ is chosen on 300 fresh official-size graphs (seed 555), then scored on
# the official validation file and on 500 other fresh graphs (seed 777), neither of which chose it.
# Needs ../shared/data/prosqa/prosqa_valid.json (or PROSQA_VALID=...). A stopped stage continues with
# `coconut-lm train ROOT/NAME/config.yaml --resume [max_train_seconds=...]`; rerunning the script skips a
# finished stage (one whose eval_fresh/ exists) and resumes a stopped one (its config.yaml is there; the
# overrides given then, e.g. max_train_seconds=, apply to the resumed run). STAGE4=0 stops after stage 3.
# STOP_AT=TIME (anything `date -d` reads, e.g. "04:20" or "+2 hours") gives each official-size stage the seconds
# left until then as max_train_seconds; a stage cut short is validated and checkpointed but not scored, and the
# script stops there, so rerunning it later resumes that stage (scripts/chain_lib.sh).
# SET="key=value ..." applies to every stage of the chain, the n10 demo included (`--set`): a variant of the model
# from scratch, e.g. SET="shift_thoughts=false" for faithful Coconut; key=value arguments after NAME apply only from
# stage 3 on.
# N10_STEPS, N16_EPOCHS, TRAIN_N, VALID_N, C2_EPOCHS and STOP_EPOCHS shrink the stages for a dry run
# (tests/test_scripts.py).
set -euo pipefail
root=${1:?usage: official_cpu.sh ROOT NAME [key=value ...]}
mkdir -p "$root/data" && root=$(cd "$root" && pwd)  # absolute: the training runs start from the checkout
name=${2:?usage: official_cpu.sh ROOT NAME [key=value ...]}
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
CLI=${CLI:-$here/.venv/bin/coconut-lm}
valid=${PROSQA_VALID:-$here/../shared/data/prosqa/prosqa_valid.json}
method=${METHOD:-coconut}
seed=${SEED:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
source "$here/scripts/chain_lib.sh"
read -r -a chain_set <<< "${SET:-}"  # whole-chain overrides (SET above)
demo_set=(); for kv in "${chain_set[@]}"; do demo_set+=(--set "$kv"); done
d=$root/data
# Training files of 6,400 examples: fresh_data draws as many new graphs per epoch, 200 steps of 32.
train_n=${TRAIN_N:-6400}
sym=(prosqa --format symbolic --relabel)
n16=(--nodes 16 --min-hops 3 --max-hops 4)
chain_gen "$d/official_valid.json" symbolic "$valid"
chain_gen "$d/official_train.json" "${sym[@]}" --n "$train_n" --seed 0
chain_gen "$d/select555.json" "${sym[@]}" --n "${VALID_N:-300}" --seed 555
chain_gen "$d/official_test777.json" "${sym[@]}" --n 500 --seed 777
chain_gen "$d/n16_train.json" "${sym[@]}" "${n16[@]}" --n "$train_n" --seed 0
chain_gen "$d/n16_val.json" "${sym[@]}" "${n16[@]}" --n 200 --seed 1

# What stages 2-4 share (stage 1 is the demo's own recipe). The curriculum keys mean nothing to methods
# without one (CoT, No-CoT, Pause), which ignore them.
common=(--no-progress "configs/prosqa_${method}_tiny.yaml" max_steps_per_epoch=200 model=mini n_layer=2 n_embd=128
        n_head=4 token_shift=1 latent_markers=false lr=1e-3 lr_schedule=cosine warmup_steps=50 batch_size=32
        micro_batch_size=32 uniform_prob=0.1 pad_latent_to_max=true max_new_tokens=12 length_buckets=8 seed="$seed")
[ "$method" = pause ] && common+=(pause_tokens=6)  # as many pauses as Coconut has thoughts at the last stage
# iCoT removes one chain token (one step) per curriculum stage of Coconut: every 2 epochs at n16, every 8 in
# stages 3-4, so a 6-step chain is gone when Coconut's is (the tiny preset's 12 per epoch would remove it at once).
icot16=(); icot=(); [ "$method" = icot ] && icot16=(icot_delta=0.5) && icot=(icot_delta=0.125)
score() {  # score RUN: best/ on the official file and on the fresh test graphs
  chain_score "$1" "$d/official_valid.json:eval_official" "$d/official_test777.json:eval_fresh"
}
cd "$here"
# Stages 1-2 only feed stage 3: a scored stage 3 (e.g. a shipped model copied into ROOT/NAME) needs neither.
if [ ! -d "$root/$name/eval_fresh" ] && ! chain_done "$root/n16"; then  # not best/ alone: a stage 2 cut short has one
  # The demo writes results.json last; a demo cut short leaves a folder the demo refuses to reuse (not empty).
  [ -f "$root/n10/results.json" ] || "$CLI" demo --methods "$method" --parallel 1 --seed "$seed" \
    --steps "${N10_STEPS:-2800}" "${demo_set[@]}" --out "$root/n10"
  "$CLI" train "${common[@]}" train_path="$d/n16_train.json" val_path="$d/n16_val.json" \
    "fresh_data=${sym[*]} ${n16[*]}" num_epochs="${N16_EPOCHS:-14}" epochs_per_stage=2 max_latent_stage=4 eval_every=2 \
    val_max_examples=200 init_from="$root/n10/$method/best" out_dir="$root/n16" overwrite=true "${icot16[@]}" "${chain_set[@]}" \
    > "$root/n16.log" 2>&1
fi
stage3=(train_path="$d/official_train.json" val_path="$d/select555.json" "fresh_data=${sym[*]}" num_epochs=100
        epochs_per_stage=8 max_latent_stage=6 eval_every=4 val_max_examples=300 "${icot[@]}" "${chain_set[@]}")
if [ ! -d "$root/$name/eval_fresh" ]; then
  chain_train "$root/$name" "${stage3[@]}" init_from="$root/n16/best" "$@"
  score "$root/$name"
fi
[ "${STAGE4:-1}" = 0 ] && exit 0
# Stage 4 starts inside the all-latent stage (epoch 56 of 8-epoch stages) and runs a cosine over C2_EPOCHS more.
c2=$root/$name-c2
if [ ! -d "$c2/eval_fresh" ]; then
  chain_train "$c2" "${stage3[@]}" "$@" init_from="$root/$name/best" start_epoch=56 num_epochs=$((56 + ${C2_EPOCHS:-80})) lr=3e-4 \
    warmup_steps=500 seed=$((seed + 1))
  score "$c2"
fi
[ "${ADAPTIVE:-0}" = 1 ] || exit 0
# Stage 5: the classifier, from stage 4's best/, in the all-latent stage with one thought per hop of each graph.
c5=$root/$name-stop
if [ ! -d "$c5/sweep_fresh" ]; then
  chain_train "$c5" "${stage3[@]}" "$@" init_from="$c2/best" start_epoch=56 num_epochs=$((56 + ${STOP_EPOCHS:-16})) \
    lr=1e-4 warmup_steps=100 seed=$((seed + 2)) eot_classifier=true pad_latent_to_max=false eval_use_classifier=true \
    max_thoughts=8
  for item in select555:sweep_select official_valid:sweep_official official_test777:sweep_fresh; do
    "$CLI" eval "$c5/best" --data "$d/${item%%:*}.json" --out "$c5/${item##*:}" --use-classifier \
      --eot-threshold 0.2,0.35,0.5,0.65,0.8 --latents 3,4,5,6 --no-progress --overwrite
  done
fi
