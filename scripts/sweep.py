"""Run several training runs at once as separate processes, then summarise their learning curves.

    python scripts/sweep.py sweeps/prontoqa_recipe_cpu.yaml            # runs, then writes <out>/summary.md
    python scripts/sweep.py sweeps/prontoqa_recipe_cpu.yaml --summary-only

A spec is YAML:

    out: runs/sweep_name         # one folder per run below it, plus summary.md / summary.json
    parallel: 2                  # runs at a time (small models do not fill a GPU or a core)
    threads: 1                   # OMP/torch threads per run
    config: configs/prontoqa_cot_tiny.yaml   # default config of every run
    common: [train_path=..., val_path=...]   # overrides for every run
    runs:
      - name: lr3e-3
        overrides: [lr=3e-3]
      - name: llama
        config: configs/prontoqa_coconut_tiny.yaml
        overrides: [arch=llama]

Each run is `python -m coconut_lm.cli train CONFIG COMMON OVERRIDES out_dir=<out>/<name>`, its
output in `<out>/<name>.log`. The summary lists, per run, steps, training seconds, the best and
last validation accuracy, and the validation accuracy after every evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from coconut_lm.training.runlog import read_metrics


def load_spec(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or "runs" not in spec or "out" not in spec:
        sys.exit(f"{path}: a sweep spec needs 'out' and 'runs'")
    names = [r["name"] for r in spec["runs"]]
    if len(set(names)) != len(names):
        sys.exit(f"{path}: run names must be unique")
    return spec


def command(spec: dict, run: dict, out: Path, extra: list[str]) -> list[str]:
    config = run.get("config", spec.get("config"))
    if not config:
        sys.exit(f"run {run['name']}: no config (set 'config' in the run or at the top)")
    return [sys.executable, "-m", "coconut_lm.cli", "train", config, *spec.get("common", []),
            *run.get("overrides", []), *extra, f"out_dir={out / run['name']}", "overwrite=true",
            "--no-progress"]


def run_all(spec: dict, out: Path, extra: list[str]) -> None:
    parallel, threads = int(spec.get("parallel", 1)), str(spec.get("threads", 1))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    pending = list(spec["runs"])
    active: list[tuple[dict, subprocess.Popen, float]] = []
    out.mkdir(parents=True, exist_ok=True)
    while pending or active:
        while pending and len(active) < parallel:
            run = pending.pop(0)
            log = open(out / f"{run['name']}.log", "w")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(command(spec, run, out, extra), env=env, stdout=log, stderr=subprocess.STDOUT)
            active.append((run, proc, time.time()))
            print(f"[sweep] started {run['name']}", flush=True)
        time.sleep(1.0)
        for item in list(active):
            run, proc, t0 = item
            if proc.poll() is not None:
                active.remove(item)
                print(f"[sweep] {run['name']} exited {proc.returncode} after {time.time() - t0:.0f}s", flush=True)


def summarise(spec: dict, out: Path) -> list[dict]:
    rows = []
    for run in spec["runs"]:
        metrics = read_metrics(out / run["name"])
        vals = [r for r in metrics if r.get("type") == "val" and r.get("val_accuracy") is not None]
        end = next((r for r in reversed(metrics) if r.get("type") == "end"), {})
        train_rows = [r for r in metrics if r.get("type") == "train"]
        rows.append({
            "name": run["name"], "overrides": run.get("overrides", []), "config": run.get("config", spec.get("config")),
            "steps": end.get("step", train_rows[-1]["step"] if train_rows else 0),
            "seconds": end.get("seconds"), "finished": bool(end),
            "best_val_accuracy": max((r["val_accuracy"] for r in vals), default=None),
            "last_val_accuracy": vals[-1]["val_accuracy"] if vals else None,
            "last_val_loss": vals[-1].get("val_loss") if vals else None,
            "last_train_loss": train_rows[-1]["loss"] if train_rows else None,
            "curve": [(r["step"], round(r["val_accuracy"], 3)) for r in vals],
        })
    return rows


def to_markdown(spec: dict, rows: list[dict]) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    lines = [f"# Sweep {spec['out']}", "", f"Common overrides: `{' '.join(spec.get('common', []))}`", "",
             "| run | overrides | steps | train s | best val acc | last val acc | last val loss | val acc by step |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        curve = ", ".join(f"{s}:{a:.2f}" for s, a in r["curve"])
        lines.append(f"| {r['name']} | `{' '.join(r['overrides'])}` | {r['steps']} | {f(r['seconds'], '.0f')} | "
                     f"{f(r['best_val_accuracy'], '.3f')} | {f(r['last_val_accuracy'], '.3f')} | "
                     f"{f(r['last_val_loss'], '.3f')} | {curve} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path, help="sweep spec (YAML)")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the summary from finished runs")
    parser.add_argument("--extra", nargs="*", default=[], help="key=value overrides appended to every run (e.g. a CPU dry run)")
    parser.add_argument("--out", default=None, help="output folder instead of the spec's")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    if args.out:
        spec["out"] = args.out
    out = Path(spec["out"])
    if not args.summary_only:
        run_all(spec, out, args.extra)
    rows = summarise(spec, out)
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    (out / "summary.md").write_text(to_markdown(spec, rows))
    print(to_markdown(spec, rows))


if __name__ == "__main__":
    main()
