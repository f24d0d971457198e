#!/usr/bin/env bash
# Keep what a queue of chains (scripts/table1_official.sh) needs to go on, inside the repository: run folders
# under /tmp do not outlive a session, and a chain cut at STOP_AT must resume next session, not start over.
#
#   bash scripts/park_runs.sh ROOT DEST          # e.g. /tmp/t1 runs/table1; then commit DEST (.gitignore lets
#                                                # runs/table1 in, unlike the rest of runs/)
#   mkdir -p ROOT && cp -a DEST/. ROOT/          # next session, before the queue runs again
#
# Every cell folder of ROOT whose chain is not finished (no CELL/main-c2/eval_fresh) is copied to DEST/CELL with
# its logs (ROOT/CELL.out and the stage logs), replacing what DEST held for it, and without what can be made
# again or is not needed to go on:
# - data/ folders: official_cpu.sh writes them again, byte for byte (`coconut-lm data` is seeded), before any stage
#   runs, so a resumed stage finds the data fingerprints its checkpoint recorded;
# - step checkpoints of a run that trained to its last epoch (its best/, config.yaml and metrics.jsonl stay: the
#   next stage starts from best/, the model card reads the rest; chain_lib.sh scores such a run without resuming);
# - all but the newest step checkpoint of a run that was cut (the one `--resume` continues from).
# A cell that finished since it was parked is removed from DEST (ship it with scripts/ship_model.py instead).
# Run folders hold absolute paths (init_from, train_path): restore to the same ROOT.
# Park after the queue has stopped (STOP_AT): a run still training may be copied between two of its writes.
set -euo pipefail
shopt -s nullglob
root=${1:?usage: park_runs.sh ROOT DEST}
dest=${2:?usage: park_runs.sh ROOT DEST}
[ -d "$root" ] || { echo "park_runs.sh: $root: no such folder" >&2; exit 2; }
root=$(cd "$root" && pwd)
dest=$(realpath -m "$dest")
case "$dest/" in "$root"/*) echo "park_runs.sh: $dest is inside $root" >&2; exit 2 ;; esac
mkdir -p "$dest"
source "$(dirname "$0")/chain_lib.sh"  # chain_done, cell_done
tmp=
trap '[ -n "$tmp" ] && rm -rf "$tmp"' EXIT  # a copy cut short leaves nothing in DEST
for cell_dir in "$root"/*/; do
  cell=$(basename "$cell_dir")
  [ "$cell" = data ] && continue
  if cell_done "$root/$cell"; then
    if [ -e "$dest/$cell" ] || [ -e "$dest/$cell.out" ]; then
      rm -rf "${dest:?}/$cell" "$dest/$cell.out"
      echo "$cell: finished; removed from $dest"
    fi
    continue
  fi
  tmp=$(mktemp -d "$dest/.park.XXXXXX")
  cp -a "$root/$cell" "$tmp/$cell"
  rm -rf "$tmp/$cell/data" "$tmp/$cell/n10/data"
  find "$tmp/$cell" -name train.lock -type f -delete
  [ -f "$root/$cell.out" ] && cp -a "$root/$cell.out" "$tmp/"
  while IFS= read -r -d '' ckpts; do
    if chain_done "$(dirname "$ckpts")"; then
      rm -rf "$ckpts"
    else  # all but the newest step-NNNNNNNN (zero-padded, so the names sort by step)
      find "$ckpts" -mindepth 1 -maxdepth 1 -name 'step-*' -print0 | sort -z | head -z -n -1 | xargs -0 -r rm -rf
    fi
  done < <(find "$tmp/$cell" -type d -name checkpoints -print0)
  rm -rf "${dest:?}/$cell" "$dest/$cell.out"
  mv "$tmp/$cell" "$dest/$cell"
  [ -f "$tmp/$cell.out" ] && mv "$tmp/$cell.out" "$dest/$cell.out"
  rmdir "$tmp" && tmp=
  echo "$cell: parked in $dest/$cell ($(du -sh "$dest/$cell" | cut -f1))"
done
