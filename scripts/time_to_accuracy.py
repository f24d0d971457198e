"""Time to accuracy of training chains: validation accuracy against examples seen and core-seconds.

    python scripts/time_to_accuracy.py RUN [RUN ...] [--targets 0.9,0.95] [--plot tta.png]

Each RUN is the last run of a chain (e.g. `ROOT/main-c2` of scripts/official_cpu.sh); the chain is followed
back through `init_from` to its first run, so the numbers count from scratch; a target counts only on the last stage's validation set. The validation set of the last
stages should be fresh graphs (official_cpu.sh chooses on 300 fresh official-size graphs, seed 555), so the
curve measures learning, not a file the run was tuned on. Core-seconds are training seconds of one thread
(each chain runs with OMP_NUM_THREADS=1); evaluation is not counted. Two recipes compared in one run: start
both chains side by side (two cores, one each) and give both here; the table prints their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coconut_lm.errors import CoconutError
from coconut_lm.training.lineage import chain_curve, run_chain


def first_reach(points: list[tuple[int, float, float, str]], target: float) -> tuple[int, float, str] | None:
    """(examples, seconds, stage) at the first validation with accuracy >= target, or None."""
    return next(((ex, sec, name) for ex, sec, acc, name in points if acc >= target), None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="the last run folder of each chain")
    p.add_argument("--targets", default="0.9,0.95", help="accuracies to reach (default 0.9,0.95)")
    p.add_argument("--plot", type=Path, default=None, help="write the curves (accuracy vs examples and vs hours)")
    p.add_argument("--json", type=Path, default=None, help="write the points and the table as JSON")
    args = p.parse_args(argv)
    try:
        targets = [float(t) for t in args.targets.split(",") if t.strip()]
        stages = {str(r): run_chain(r) for r in args.runs}
        chains = {run: chain_curve(st) for run, st in stages.items()}
    except (CoconutError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    head = f"{'chain':<40}{'best':>7}" + "".join(f"{f'to {t:.0%}: examples':>22}{'core-h':>8}" for t in targets)
    print(head)
    table = {}
    for run, points in chains.items():
        # Targets count on the last stage's validation set (earlier stages validate on smaller graphs).
        final = {st.name for st in stages[run] if st.val_path == stages[run][-1].val_path}
        scored = [pt for pt in points if pt[3] in final]
        best = max((acc for _, _, acc, _ in scored), default=float("nan"))
        reach = {t: first_reach(scored, t) for t in targets}
        table[run] = {"best": best, **{f"{t:g}": reach[t] for t in targets}}
        cells = "".join(f"{r[0]:>22,}{r[1] / 3600:>8.2f}" if r else f"{'not reached':>22}{'–':>8}"
                        for r in reach.values())
        print(f"{run[-40:]:<40}{best:>7.3f}{cells}")
    if len(chains) == 2:
        (a, ra), (b, rb) = ((run, table[run]) for run in chains)
        for t in targets:
            x, y = ra[f"{t:g}"], rb[f"{t:g}"]
            if x and y:
                print(f"to {t:.0%}: {Path(b).name} needs {y[0] / x[0]:.2f}x the examples and {y[1] / x[1]:.2f}x the "
                      f"core-seconds of {Path(a).name}")
    if args.json:
        args.json.write_text(json.dumps({"points": chains, "table": table}, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for run, points in chains.items():
            for ax, x in zip(axes, ([pt[0] for pt in points], [pt[1] / 3600 for pt in points])):
                ax.plot(x, [pt[2] for pt in points], marker=".", label=Path(run).parent.name + "/" + Path(run).name)
        for ax, label in zip(axes, ("examples seen (from scratch)", "core-hours of training")):
            ax.set_xlabel(label)
            for t in targets:
                ax.axhline(t, color="grey", lw=0.5, ls="--")
        axes[0].set_ylabel("validation accuracy")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
