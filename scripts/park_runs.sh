#!/usr/bin/env bash
# Keep what a queue of chains (scripts/table1_official.sh) needs to go on, inside the repository: run folders
# under /tmp do not outlive a session, and a chain cut at STOP_AT must resume next session, not start over.
#
#   bash scripts/park_runs.sh ROOT DEST          # e.g. /tmp/t1 runs/table1; then commit DEST
#   mkdir -p ROOT && cp -a DEST/. ROOT/          # next session, before the queue runs again
#
# Every cell folder of ROOT whose chain is not finished (no CELL/main-c2/eval_fresh) is copied to DEST/CELL with
# its logs (ROOT/CELL.out and the stage logs), replacing what DEST held for it, and without what can be made
# again or is not needed to go on:
# - data/ folders: official_cpu.sh writes them again, byte for byte (`coconut-lm data` is seeded), before any stage
#   runs, so a resumed stage finds the data fingerprints its checkpoint recorded;
# - step checkpoints of a run that trained to its last epoch (its best/, config.yaml and metrics.jsonl stay: the
#   next stage starts from best/, the model card reads the rest);
# - all but the newest step checkpoint of a run that was cut (the one `--resume` continues from).
# A cell that finished since it was parked is removed from DEST (ship it with scripts/ship_model.py instead).
# Run folders hold absolute paths (init_from, train_path): restore to the same ROOT.
# Park after the queue has stopped (STOP_AT): a run still training may be copied between two of its writes.
set -euo pipefail
root=${1:?usage: park_runs.sh ROOT DEST}
dest=${2:?usage: park_runs.sh ROOT DEST}
[ -d "$root" ] || { echo "park_runs.sh: $root: no such folder" >&2; exit 2; }
root=$(cd "$root" && pwd)
mkdir -p "$dest" && dest=$(cd "$dest" && pwd)
finished() {  # RUN trained to its last epoch (chain_lib.sh's chain_done)
  tail -n 1 "$1/metrics.jsonl" 2>/dev/null | grep -q '"type": "end".*"stopped_early": false'
}
for cell_dir in "$root"/*/; do
  cell=$(basename "$cell_dir")
  [ "$cell" = data ] && continue
  if [ -d "$root/$cell/main-c2/eval_fresh" ]; then
    [ -e "$dest/$cell" ] && rm -rf "${dest:?}/$cell" "$dest/$cell.out" && echo "$cell: finished; removed from $dest"
    continue
  fi
  tmp=$(mktemp -d "$dest/.park.XXXXXX")
  tar -C "$root" -cf - --exclude="$cell/data" --exclude="$cell/n10/data" --exclude='train.lock' "$cell" \
    | tar -C "$tmp" -xf -
  [ -f "$root/$cell.out" ] && cp -a "$root/$cell.out" "$tmp/"
  while IFS= read -r ckpts; do
    run=$(dirname "$ckpts")
    if finished "$run"; then
      rm -rf "$ckpts"
    else
      ls -d "$ckpts"/step-* 2>/dev/null | sort | head -n -1 | xargs -r rm -rf
    fi
  done < <(find "$tmp/$cell" -type d -name checkpoints)
  rm -rf "${dest:?}/$cell" "$dest/$cell.out"
  mv "$tmp/$cell" "$dest/$cell"
  [ -f "$tmp/$cell.out" ] && mv "$tmp/$cell.out" "$dest/$cell.out"
  rmdir "$tmp"
  echo "$cell: parked in $dest/$cell ($(du -sh "$dest/$cell" | cut -f1))"
done
