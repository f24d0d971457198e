#!/usr/bin/env bash
# Recipes with pretrained models from local folders (the GPU machine reaches no hub); scripts/gpu_window.sh
# runs them. Results go to $OUT: <recipe>.md (the report of the final evals), steps_<recipe>.md (per-step
# time and peak memory of every stage, from the trainer's own metrics rows: scripts/recipe_table.py),
# metrics_<recipe>.tgz (every stage's metrics.jsonl, config.yaml and log), device.txt.
#
#   gsm8k_gpt2  GSM8k with a pretrained GPT-2: a CoT stage on the base (configs/gsm8k_cot.yaml), then Coconut
#               from the CoT run's best/ with c_thought=2 and 3 latent stages, the curriculum from stage 1
#               (configs/gsm8k_coconut.yaml: the paper's GSM8k setting), both evaluated on gsm_valid.json.
#               device run: bash scripts/gpu_window.sh gsm8k_gpt2 models/gpt2
#               carry: data/ holding gsm_valid.json and openai_train.jsonl (TRAIN_SOURCE= another converter input,
#               e.g. the iCoT-augmented .txt), and the model folder
#   lora_1b     LoRA (r 16, alpha 32, lr 2e-4) on a 1B Llama-family model, one Coconut run on ProsQA
#               (configs/prosqa_coconut.yaml, one epoch per stage), bf16 weights with fp32 masters, evaluated on
#               prosqa_valid.json.
#               device run: bash scripts/gpu_window.sh lora_1b models/Llama-3.2-1B
#               carry: data/prosqa_valid.json and the model folder
#
# The model folder is the argument after the recipe or MODEL=PATH. key=value arguments after it go to every
# training stage. TRAIN_SECONDS caps each stage's training (default 300: both recipes fit a 15-minute window;
# TRAIN_SECONDS= runs the configs' whole schedules); PRECISION (gsm8k_gpt2: auto, bf16 autocast on GPU;
# lora_1b: bf16-weights); DATA and RUNS move data/ and runs/; N sets ProsQA's training-set size.
#   CPU dry run: tests/test_scripts.py (tiny random models saved from transformers config classes)
set -euo pipefail
recipe=${1:?recipe: gsm8k_gpt2 or lora_1b}
shift
if [ $# -gt 0 ] && [ -d "$1" ]; then MODEL=$1; shift; fi
MODEL=${MODEL:?give the model folder: bash scripts/gpu_window.sh $recipe PATH (or MODEL=PATH)}
test -f "$MODEL/config.json" || { echo "$MODEL is not a Hugging Face model folder (no config.json)" >&2; exit 2; }
export PYTHONPATH=src HF_HUB_OFFLINE=1  # the model is a local folder: never wait for a hub
PY=${PYTHON:-python}
OUT=${OUT:-runs/gpu_window_out}
DATA=${DATA:-data}
root=${RUNS:-runs}/$recipe
EVAL_BATCH=${EVAL_BATCH:-128}
mkdir -p "$DATA" "$OUT" "$root"
limit=()
if [ -n "${TRAIN_SECONDS-300}" ]; then limit=("max_train_seconds=${TRAIN_SECONDS-300}"); fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/device.txt" 2>/dev/null || echo "no GPU ($(uname -m) CPU)" > "$OUT/device.txt"
cli() { "$PY" -m coconut_lm.cli "$@"; }

stage() {  # stage NAME CONFIG key=value...: train into $root/NAME (resuming a stage cut short), log beside it
  local name=$1 config=$2
  shift 2
  local resume=()
  if [ -d "$root/$name/checkpoints" ]; then resume=(--resume); fi
  cli train "$config" "out_dir=$root/$name" "$@" "${limit[@]}" "${extra[@]}" "${resume[@]}" --no-progress \
    > "$root/$name.log" 2>&1 || { tail -n 20 "$root/$name.log" >&2; return 1; }
  tail -n 3 "$root/$name.log"
}

evaluate() {  # evaluate NAME DATAFILE: the stage's best/ with its own eval settings
  cli eval "$root/$1/best" --data "$2" --out "$root/$1/eval" --overwrite --batch-size "$EVAL_BATCH" --no-progress | tail -n 2
}

extra=("$@")
case "$recipe" in
  gsm8k_gpt2)
    test -f "$DATA/gsm_valid.json" || { echo "$DATA/gsm_valid.json is missing (copy it from shared/data/gsm8k)" >&2; exit 2; }
    source=${TRAIN_SOURCE:-$DATA/openai_train.jsonl}
    test -f "$source" || { echo "$source is missing (copy openai_train.jsonl from shared/data/gsm8k)" >&2; exit 2; }
    cli data gsm8k --from "$source" --exclude "$DATA/gsm_valid.json" --out "$DATA/gsm_train.json"
    common=("model=$MODEL" "train_path=$DATA/gsm_train.json" "val_path=$DATA/gsm_valid.json"
            "precision=${PRECISION:-auto}" "eval_batch_size=$EVAL_BATCH")
    stage cot configs/gsm8k_cot.yaml "${common[@]}"
    stage coconut configs/gsm8k_coconut.yaml "${common[@]}" "init_from=$root/cot/best" c_thought=2 max_latent_stage=3
    runs=(cot coconut)
    valid=$DATA/gsm_valid.json ;;
  lora_1b)
    test -f "$DATA/prosqa_valid.json" || { echo "$DATA/prosqa_valid.json is missing (copy it from shared/data/prosqa)" >&2; exit 2; }
    test -f "$DATA/prosqa_train.json" || cli data prosqa --n "${N:-17886}" --seed 0 --out "$DATA/prosqa_train.json"
    stage coconut configs/prosqa_coconut.yaml "model=$MODEL" "train_path=$DATA/prosqa_train.json" \
      "val_path=$DATA/prosqa_valid.json" lora_r=16 lora_alpha=32 lr=2e-4 warmup_steps=20 \
      "precision=${PRECISION:-bf16-weights}" micro_batch_size=16 epochs_per_stage=1 num_epochs=8 \
      "eval_batch_size=$EVAL_BATCH"
    runs=(coconut)
    valid=$DATA/prosqa_valid.json ;;
  *) echo "recipe must be gsm8k_gpt2 or lora_1b" >&2; exit 2 ;;
esac
for run in "${runs[@]}"; do evaluate "$run" "$valid"; done
dirs=("${runs[@]/#/$root/}")
cli report "${dirs[@]}" --out "$OUT/$recipe.md" --overwrite
"$PY" scripts/recipe_table.py "${dirs[@]}" --out "$OUT/steps_$recipe.md" --device-file "$OUT/device.txt"
tar czf "$OUT/metrics_$recipe.tgz" "${dirs[@]/%//metrics.jsonl}" "${dirs[@]/%//config.yaml}" "${dirs[@]/%/.log}"
