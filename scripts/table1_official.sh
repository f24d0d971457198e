#!/usr/bin/env bash
# Table 1 at the official size (docs/table1.md) as one resumable queue: every cell is a whole
# scripts/official_cpu.sh chain from scratch in ROOT/CELL, LANES chains at a time, one thread each.
#
#   [STOP_AT=TIME] [LANES=2] [CELLS="..."] bash scripts/table1_official.sh ROOT
#
# CELLS: space-separated CELL:METHOD:SEED[:SET] entries, SET being comma-separated key=value pairs for every stage
# of that chain (official_cpu.sh's SET). The default is the table: the eight methods with seed 0, faithful Coconut,
# and second seeds of Coconut, CoT and No-CoT.
# A cell is done once ROOT/CELL/main-c2/eval_fresh exists (stage 4 scored). Each lane takes the first cell that is
# neither done, nor held by a live lane (ROOT/CELL.lane holds its PID), nor failed (ROOT/CELL.failed: the chain
# exited non-zero; its log is ROOT/CELL.out; delete the mark to retry), runs its chain and goes on. STOP_AT=TIME
# (as in official_cpu.sh) gives each stage the time left; a chain cut there ends its lane and no lane takes a new
# cell after that, so running the same command again resumes every cut chain before it starts new ones. Two cells that were started by hand in ROOT
# under the same names are resumed the same way. The script exits non-zero if any chain failed.
# Ship a finished cell: python scripts/ship_model.py ROOT/CELL/main-c2 models/prosqa-CELL --command "..."
# OFFICIAL=PATH runs another chain script in place of official_cpu.sh (tests/test_scripts.py).
set -euo pipefail
root=${1:?usage: table1_official.sh ROOT}
mkdir -p "$root" && root=$(cd "$root" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
official=${OFFICIAL:-$here/scripts/official_cpu.sh}
lanes=${LANES:-2}
source "$here/scripts/chain_lib.sh"  # STOP_AT, read once here: the same moment for every cell the lanes start
default_cells="coconut-s0:coconut:0 cot-s0:cot:0 no_cot-s0:no_cot:0 icot-s0:icot:0 pause-s0:pause:0
  no_curriculum-s0:no_curriculum:0 no_thought-s0:no_thought:0 pause_as_thought-s0:pause_as_thought:0
  coconut-faithful-s0:coconut:0:shift_thoughts=false coconut-s1:coconut:1 cot-s1:cot:1 no_cot-s1:no_cot:1"
read -r -a cells <<< "$(echo ${CELLS:-$default_cells})"
for entry in "${cells[@]}"; do
  IFS=: read -r cell method seed _ <<< "$entry"
  if [ -z "$cell" ] || [ -z "$method" ] || ! [[ "$seed" =~ ^[0-9]+$ ]]; then
    echo "table1_official.sh: CELLS entry '$entry': expected CELL:METHOD:SEED[:SET]" >&2; exit 2
  fi
done

done_cell() { cell_done "$root/$1"; }  # chain_lib.sh
held() { local pid; pid=$(cat "$root/$1.lane" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# The first cell no lane holds, claimed for the calling lane (pid $1) under a lock; nothing when none is left.
claim() {
  local entry cell
  until mkdir "$root/.queue.lock" 2>/dev/null; do sleep 0.2; done
  [ -e "$root/.queue.stop" ] || for entry in "${cells[@]}"; do
    cell=${entry%%:*}
    if ! done_cell "$cell" && [ ! -e "$root/$cell.failed" ] && ! held "$cell"; then
      echo "$1" > "$root/$cell.lane"
      echo "$entry"
      break
    fi
  done
  rmdir "$root/.queue.lock"
}

lane() {
  local me=$BASHPID entry cell method seed set rc
  while entry=$(claim "$me") && [ -n "$entry" ]; do
    IFS=: read -r cell method seed set <<< "$entry"
    echo "lane $me: $cell (METHOD=$method SEED=$seed${set:+ SET=${set//,/ }})"
    rc=0
    SET="${set//,/ }" METHOD=$method SEED=$seed bash "$official" "$root/$cell" main >> "$root/$cell.out" 2>&1 || rc=$?
    rm -f "$root/$cell.lane"
    if [ "$rc" != 0 ]; then
      echo "lane $me: $cell failed (exit $rc; log $root/$cell.out); marked $root/$cell.failed"
      touch "$root/$cell.failed"
    elif done_cell "$cell"; then
      echo "lane $me: $cell finished"
    else
      echo "lane $me: $cell stopped before its end (STOP_AT); rerun to resume it"
      touch "$root/.queue.stop"  # the time is up for every lane: none takes another cell
      return 0
    fi
  done
}

rmdir "$root/.queue.lock" 2>/dev/null || true  # a lock left by a killed run
rm -f "$root/.queue.stop"
pids=()
for _ in $(seq "$lanes"); do lane & pids+=($!); sleep 1; done
for pid in "${pids[@]}"; do wait "$pid"; done
status=0
for entry in "${cells[@]}"; do
  cell=${entry%%:*}
  if done_cell "$cell"; then state=done; elif [ -e "$root/$cell.failed" ]; then state=failed; status=1
  elif [ -d "$root/$cell" ]; then state=started; else state=waiting; fi
  echo "$cell: $state"
done
exit $status
