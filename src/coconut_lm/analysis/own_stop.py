"""The model's own stop: where the `<eot>` classifier ends latent mode, read against the latent search.

A checkpoint trained with the classifier (`eot_classifier=true`) chooses its own thought count per
example. This step lets it (eval's `--use-classifier`), then asks whether "stop" means "found":

    run_own_stop(model, tok, examples, data_ids, graphs, method, layout, out, args, threshold=0.5, n_values=100)

After t thoughts every node has a value (`latent_search.node_values`): the probability that the
model writes it as the next step. The target is *found* after t thoughts when its value is the
highest of all nodes. This reading is made for the symbolic form, where the value after t thoughts
is that of the node written next (hop t/c + 1): a model that stops once the target is found stops
c thoughts after it (offset stop - found = c). In the word form the value is that of the next
step's subject (hop t/c), which the target never is (the chain ends at it), so it is rarely found.

Files: `own_stop/` (the classifier's evaluation, as `eval` writes it), `own_stop.jsonl` (one record
per example: hops, thoughts used, correct, the first thought at which the target is found, and the
target's and the best other node's value after each thought), `own_stop_summary.json` and
`figures/own_stop.png` (drawn from the summary alone; its section of analysis.md is
`markdown._own_stop_markdown`).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from coconut_lm.analysis.figstyle import FONT, _figure, _save

RECORDS, SUMMARY, FOLDER, FIGURE = "own_stop.jsonl", "own_stop_summary.json", "own_stop", "own_stop.png"
ALIGN = range(-3, 2)  # thoughts relative to the stop at which the aligned values are averaged


def stop_record(index: int, hops: int, stop: int, correct: bool, values: list[list[float]], target: int) -> dict:
    """One example's record: `values[t][node]` after t = 0, 1, ... thoughts; `target` the target's node index."""
    tv = [v[target] for v in values]
    other = [max((x for n, x in enumerate(v) if n != target), default=0.0) for v in values]
    found = next((t for t, (a, b) in enumerate(zip(tv, other)) if a > b), None)
    return {"index": index, "hops": hops, "stop": stop, "correct": bool(correct), "found": found,
            "target_value": tv, "best_other_value": other}


def summarize_own_stop(records: list[dict], threshold: float) -> dict[str, Any]:
    """Thoughts used by hop count, Spearman of thoughts against hops and against the found thought, the
    offsets stop - found, and the target's value aligned to each example's stop."""
    from coconut_lm.eval.evaluate import spearman

    n = len(records)
    by_hops: dict[str, dict[str, float]] = {}
    for h in sorted({r["hops"] for r in records}):
        rs = [r for r in records if r["hops"] == h]
        by_hops[str(h)] = {"n": len(rs), "mean_thoughts": sum(r["stop"] for r in rs) / len(rs),
                           "accuracy": sum(r["correct"] for r in rs) / len(rs),
                           "thoughts": {str(t): c for t, c in sorted(Counter(r["stop"] for r in rs).items())}}
    found = [r for r in records if r["found"] is not None]
    offsets = Counter(r["stop"] - r["found"] for r in found)
    aligned = []
    for d in ALIGN:
        pts = [(r["target_value"][r["stop"] + d], r["best_other_value"][r["stop"] + d]) for r in records
               if 0 <= r["stop"] + d < len(r["target_value"])]
        if pts:
            aligned.append({"offset": d, "n": len(pts), "target": sum(p[0] for p in pts) / len(pts),
                            "best_other": sum(p[1] for p in pts) / len(pts)})
    acc_by_offset = {str(o): sum(r["correct"] for r in found if r["stop"] - r["found"] == o) / c
                     for o, c in sorted(offsets.items())}
    return {"threshold": threshold, "n": n, "accuracy": sum(r["correct"] for r in records) / max(n, 1),
            "mean_thoughts": sum(r["stop"] for r in records) / max(n, 1), "by_hops": by_hops,
            "spearman_thoughts_hops": spearman([r["stop"] for r in records], [r["hops"] for r in records]),
            "n_found": len(found), "spearman_thoughts_found": spearman([r["stop"] for r in found],
                                                                       [r["found"] for r in found]),
            "offsets": {str(o): c for o, c in sorted(offsets.items())}, "accuracy_by_offset": acc_by_offset,
            "aligned_values": aligned}


def run_own_stop(model, tok, examples, data_ids, graphs, method, layout, out: Path, args: dict[str, Any],
                 threshold: float, n_values: int, max_thoughts: int, checkpoint: str) -> dict[str, Any]:
    """Evaluate with the classifier, read every node's value after each thought for the first `n_values`
    examples, and write the records and the summary into `out` (see the module docstring)."""
    from coconut_lm.analysis.latent_search import node_values
    from coconut_lm.checkpoint_eval import write_eval
    from coconut_lm.eval.evaluate import evaluate
    from coconut_lm.tasks.examples import atomic_write_text

    ev = evaluate(model, tok, examples, method, layout, "prosqa", 0, args["batch_size"], args["max_new_tokens"],
                  use_classifier=True, max_thoughts=max_thoughts, progress=args["progress"], desc="own stop",
                  data=data_ids, eot_threshold=threshold)
    write_eval(ev, out / FOLDER, extra={"checkpoint": checkpoint, "method": method.name, "task": "prosqa",
                                        "use_classifier": True, "eot_threshold": threshold})
    shown = ev.records[:n_values]
    horizon = range(min(max(r.thoughts for r in shown) + max(ALIGN), max_thoughts) + 1)
    values = node_values(model, tok, [examples[r.index] for r in shown], horizon, method, layout,
                         batch_size=args["batch_size"], progress=args["progress"])
    records = [stop_record(r.index, len(examples[r.index].steps), r.thoughts, r.correct, v["values"],
                           graphs[r.index].target) for r, v in zip(shown, values)]
    summary = summarize_own_stop(records, threshold)
    atomic_write_text(out / RECORDS, "".join(json.dumps(r) + "\n" for r in records))
    atomic_write_text(out / SUMMARY, json.dumps({"checkpoint": checkpoint, **summary}, indent=2) + "\n")
    return summary


# ------------------------------------------------------------------------------------ figure


def own_stop_figure(summary: dict[str, Any]):
    """Left: thoughts used against the gold chain's length (bubbles: examples; line: the mean). Middle: how many
    examples stop d thoughts after the target is found. Right: the target's value and the best other node's,
    averaged with each example aligned at its own stop."""
    fig, axes = _figure(15.5, 4.2, 1, 3)
    ax = axes[0, 0]
    hops = sorted(summary["by_hops"], key=int)
    for h in hops:
        counts = summary["by_hops"][h].get("thoughts", {})
        ax.scatter([int(h)] * len(counts), [int(t) for t in counts], s=[12 + 600 * c / summary["n"] for c in counts.values()],
                   color="#1e88e5", alpha=0.5)
    ax.plot([int(h) for h in hops], [summary["by_hops"][h]["mean_thoughts"] for h in hops], marker="o", color="black",
            label="mean")
    ax.set_xticks([int(h) for h in hops])
    ax.set_xlabel("hops of the gold chain", fontsize=FONT["label"])
    ax.set_ylabel("thoughts used", fontsize=FONT["label"])
    ax.legend(fontsize=FONT["legend"], frameon=False, loc="upper left")
    ax.grid(alpha=0.3)
    ax = axes[0, 1]
    offsets = {int(k): v for k, v in summary["offsets"].items()}
    never = summary["n"] - summary["n_found"]
    xs = sorted(offsets)
    ax.bar([str(x) for x in xs] + (["never found"] if never else []), [offsets[x] for x in xs] + ([never] if never else []),
           color="#1e88e5")
    ax.set_xlabel("thoughts used − first thought with the target on top", fontsize=FONT["label"])
    ax.set_ylabel("examples", fontsize=FONT["label"])
    ax.grid(alpha=0.3, axis="y")
    ax = axes[0, 2]
    al = summary["aligned_values"]
    ax.plot([a["offset"] for a in al], [a["target"] for a in al], marker="o", color="#ffb300", label="target")
    ax.plot([a["offset"] for a in al], [a["best_other"] for a in al], marker="o", color="#9e9e9e",
            label="best other node")
    ax.axvline(0, color="black", linewidth=1, linestyle=":")
    ax.set_xticks([a["offset"] for a in al])
    ax.set_xlabel("thoughts relative to its own stop (0: the stop)", fontsize=FONT["label"])
    ax.set_ylabel("mean value (probability written next)", fontsize=FONT["label"])
    ax.legend(fontsize=FONT["legend"], frameon=False)
    ax.grid(alpha=0.3)
    fig.suptitle(f"Where the <eot> classifier stops (threshold {summary['threshold']:g}, n = {summary['n']})",
                 fontsize=FONT["title"])
    return fig


def plot_own_stop(summary: dict[str, Any], out: str | os.PathLike) -> Path:
    """Write `own_stop_figure` to `out` (a PNG path)."""
    return _save(own_stop_figure(summary), out)
