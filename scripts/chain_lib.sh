# Sourced by the CPU recipe scripts (official_cpu.sh, prontoqa_cpu.sh): resumable training stages.
# The caller sets CLI (the coconut-lm command) and the array `common` (the keys every new run of the chain takes).
#
# chain_gen OUT ARGS...: `coconut-lm data ARGS --out OUT`, once (an existing file is kept).
# chain_train RUN ARGS...: a new run (`common`, then ARGS), or the continuation of one that stopped (its
#   config.yaml is there), with ARGS again; nothing for a run that trained to its last epoch (chain_done). STOP_AT=TIME (anything `date -d` reads, e.g. "04:20" or "+2 hours";
#   a bare time of day is today's, so one already past means "no time left": say "tomorrow 04:20"; it is read
#   once, when this file is sourced: see the end) gives the run the seconds left until then as max_train_seconds. A run that stopped on its time budget is
#   validated and checkpointed by the trainer but not scored: chain_train then ends the script (exit 0), so
#   rerunning the same command later resumes it.
# chain_done RUN: true when RUN's training ran to its last epoch (the trainer's closing metrics row).
# cell_done CELL_DIR: true when an official_cpu.sh chain in CELL_DIR is finished: its stage 4 is scored
#   (CELL_DIR/main-c2/eval_fresh; table1_official.sh and park_runs.sh).
# chain_score RUN DATA:NAME ...: best/ of RUN evaluated on each DATA file into RUN/NAME.

chain_gen() {
  local out=$1; shift
  [ -f "$out" ] || "$CLI" data "$@" --out "$out"
}

chain_train() {
  local run=$1; shift
  chain_done "$run" && return 0  # trained to its last epoch already (cut while being scored): nothing to resume
  local budget=(max_train_seconds=null) before=0  # a resumed run must not keep the budget of the session that cut it
  if [ -n "${STOP_AT:-}" ]; then
    local stop left
    stop=$(date -d "$STOP_AT" +%s)  # apart from `local`, so that a STOP_AT date cannot read stops the script (set -e)
    left=$(( stop - $(date +%s) ))
    if [ "$left" -lt 60 ]; then echo "STOP_AT=$STOP_AT: no time left for $run; rerun to go on"; exit 0; fi
    budget=(max_train_seconds="$left")
  fi
  if [ -f "$run/config.yaml" ]; then
    [ -f "$run.log" ] && before=$(wc -l < "$run.log")  # a resume appends; a new run's log starts over (before=0)
    "$CLI" train --no-progress "$run/config.yaml" --resume "${budget[@]}" "$@" >> "$run.log" 2>&1
  else
    "$CLI" train "${common[@]}" out_dir="$run" "${budget[@]}" "$@" > "$run.log" 2>&1
  fi
  # grep reads to the end (no -q): under pipefail, tail killed by SIGPIPE after an early match would hide it
  if tail -n +$((before + 1)) "$run.log" | grep "^max_train_seconds=.* reached" > /dev/null; then
    echo "$run stopped on its time budget before its last epoch (not scored); rerun the same command to resume it"
    exit 0
  fi
}

chain_done() {
  tail -n 1 "$1/metrics.jsonl" 2>/dev/null | grep -q '"type": "end".*"stopped_early": false'
}

chain_score() {
  local run=$1; shift
  local item
  for item in "$@"; do
    "$CLI" eval "$run/best" --data "${item%%:*}" --out "$run/${item##*:}" --no-progress --overwrite
  done
}

cell_done() { [ -d "$1/main-c2/eval_fresh" ]; }

# STOP_AT is read once, when a script sources this file, and kept as an absolute time (@SECONDS), exported to
# the chains a queue starts: "tomorrow 01:35" or "+2 hours" then means the same moment for every later stage,
# where reading it again at each stage start made "tomorrow" a day later once midnight had passed.
if [ -n "${STOP_AT:-}" ] && [[ "$STOP_AT" != @* ]]; then
  STOP_AT="@$(date -d "$STOP_AT" +%s)"  # a STOP_AT date cannot read stops the script here (set -e)
  export STOP_AT
fi
