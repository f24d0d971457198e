"""Ship a trained run as a small folder anyone can score, analyse or reuse: `models/<name>/`.

    python scripts/ship_model.py RUN_DIR models/prosqa-coconut-s1 [--command "bash scripts/official_cpu.sh ..."]

The folder holds what a user needs and nothing that only resumes training:
- `best/`: the checkpoint the run chose on its validation set (weights, tokenizer, coconut.json, MANIFEST.json);
- `config.yaml` and `metrics.jsonl`: the run's settings and its curves;
- `eval*/summary.json`: every score of `best/` written by `coconut-lm eval --out RUN_DIR/eval*`;
- `MODEL.md`: the model card, with the stages that made it (followed back through `init_from`), their
  steps, examples seen and wall time, the set that chose `best/`, and the scores.

`coconut-lm eval models/<name> --data FILE` and `coconut-lm analyze models/<name> ...` take it as it is;
`coconut-lm report models/prosqa-* --eval-subdir eval_fresh` rebuilds the table from the folders alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from coconut_lm.errors import CoconutError
from coconut_lm.model.files import read_checkpoint_info
from coconut_lm.training.lineage import Stage, run_chain


def scores(run: Path) -> dict[str, dict[str, Any]]:
    """Every `eval*/summary.json` of the run: accuracy, n, data file, accuracy by hop count."""
    out = {}
    for f in sorted(run.glob("eval*/summary.json")):
        s = json.loads(f.read_text())
        out[f.parent.name] = {k: s.get(k) for k in ("accuracy", "n", "data", "mean_tokens", "mean_thoughts",
                                                      "accuracy_by_steps")}
    return out


def model_card(name: str, run: Path, stages: list[Stage], evals: dict[str, dict[str, Any]],
               command: str | None) -> str:
    """MODEL.md: what the model is, how it was made, what it scores."""
    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    info = read_checkpoint_info(run / "best")
    shape = ", ".join([*(f"{k}={cfg[k]}" for k in ("model", "arch", "n_layer", "n_embd", "n_head", "activation")
                         if cfg.get(k) is not None),
                       f"token_shift={info.token_shift}", f"shift_thoughts={str(info.shift_thoughts).lower()}"])
    total_ex = sum(s.examples for s in stages)
    total_s = sum(s.seconds or 0 for s in stages)
    lines = [f"# {name}", "",
             f"Method **{cfg.get('method')}** on **{cfg.get('task')}**, trained from scratch with coconut-lm ({shape}).",
             "", "## How it was made", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += ["| stage | run | method | seed | steps | examples seen | wall (s) | best val | chosen on |",
              "|---|---|---|---|---|---|---|---|---|"]
    for i, s in enumerate(stages, 1):
        wall = "–" if s.seconds is None else f"≈{s.seconds:.0f} (stopped)" if s.stopped else f"{s.seconds:.0f}"
        val = f"{100 * s.best_val_accuracy:.1f}%" if s.best_val_accuracy is not None else "–"
        lines.append(f"| {i} | {s.name} | {s.method} | {s.seed} | {s.steps} | {s.examples:,} | {wall} | "
                     f"{val} | `{Path(str(s.val_path)).name}` |")
    lines += ["", f"In all: {total_ex:,} examples seen, {total_s / 60:.0f} min of training on one CPU thread "
                  "(wall time on a shared 2-core machine; evaluation not included).", "",
              "`best/` is the checkpoint of the last stage with the best accuracy on its validation set "
              f"(`{Path(str(stages[-1].val_path)).name}`), which is apart from every set scored below.", "",
              "## Scores of best/", "", "| eval | data | n | accuracy | by hop count |", "|---|---|---|---|---|"]
    for sub, s in evals.items():
        hops = ", ".join(f"{k}: {100 * v['accuracy']:.1f}" for k, v in sorted((s.get("accuracy_by_steps") or {}).items(),
                                                                              key=lambda kv: int(kv[0])))
        lines.append(f"| {sub} | `{Path(str(s['data'])).name}` | {s['n']} | {100 * s['accuracy']:.1f}% | {hops} |")
    lines += ["", "Rescore: `coconut-lm eval models/" + name + " --data FILE --out DIR` (docs/table1.md gives the data commands).", ""]
    return "\n".join(lines)


def ship(run: Path, out: Path, command: str | None = None, overwrite: bool = False) -> Path:
    """Copy what a user needs from `run` into `out` and write its model card; returns `out`."""
    if not (run / "best" / "coconut.json").is_file():
        raise CoconutError(f"{run / 'best'}: no checkpoint (coconut.json missing)")
    # The chain is read before OUT is replaced: a stage may have started from OUT itself (its stages.json).
    stages, evals = run_chain(run), scores(run)
    if not evals:
        raise CoconutError(f"{run}: no eval*/summary.json; score best/ with `coconut-lm eval --out {run}/eval_...` first")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CoconutError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(run / "best", out / "best")
    for f in ("config.yaml", "metrics.jsonl"):
        shutil.copy2(run / f, out / f)
    for sub in evals:
        (out / sub).mkdir()
        shutil.copy2(run / sub / "summary.json", out / sub / "summary.json")
    (out / "MODEL.md").write_text(model_card(out.name, run, stages, evals, command))
    (out / "stages.json").write_text(json.dumps([asdict(s) | {"examples": s.examples} for s in stages], indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a finished run folder (best/, config.yaml, metrics.jsonl, eval*/)")
    p.add_argument("out", type=Path, help="the folder to write, e.g. models/prosqa-coconut-s1")
    p.add_argument("--command", default=None, help="the command that made the run, for the model card")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    args = p.parse_args(argv)
    try:
        out = ship(args.run, args.out, args.command, args.overwrite)
    except CoconutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"shipped {args.run} -> {out} ({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
