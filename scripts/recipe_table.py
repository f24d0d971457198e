"""Per-step time and peak memory of finished runs, as one markdown table (scripts/gpu_window.sh writes it to $OUT).

    python scripts/recipe_table.py RUN_DIR... --out steps.md [--device-file device.txt]

No timing code of its own: it reads each run's `config.yaml` and the trainer's own `train` rows in
`metrics.jsonl`. Seconds per optimizer step are batch_size / examples_per_s (a row's throughput over the
steps since the row before, data loading and logging included), the median over the rows after the
first (the first holds the warm-up, and on GPU the compilation); a run with one row uses it. Peak
memory is the largest `peak_memory_MiB` of the rows: on CUDA the most memory tensors held during an
epoch's steps (`torch.cuda.max_memory_allocated`, reset at each epoch), on CPU the process's peak RSS.
Accuracy is the best validation accuracy during training and, where `RUN/eval/summary.json` exists, the
final `coconut-lm eval` score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

COLUMNS = ("run", "model", "method", "precision", "LoRA r", "batch (micro)", "steps", "s / step", "peak memory, GiB",
           "best val acc", "eval acc")


def run_row(run: Path) -> list[str]:
    """The table's cells for one run folder."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("type") == "train"]
    timed = train[1:] or train
    step_s = statistics.median(cfg["batch_size"] / r["examples_per_s"] for r in timed) if timed else None
    peaks = [r["peak_memory_MiB"] for r in train if "peak_memory_MiB" in r]
    accs = [r["val_accuracy"] for r in rows if r.get("type") == "val" and r.get("val_accuracy") is not None]
    summary = run / "eval" / "summary.json"
    final = json.loads(summary.read_text()).get("accuracy") if summary.is_file() else None
    model = Path(str(cfg["model"])).name or str(cfg["model"])
    if cfg.get("init_from"):  # e.g. Coconut from a CoT stage: "gpt2 from cot"
        start = Path(str(cfg["init_from"]))
        model = f"{model} from {(start.parent if start.name == 'best' else start).name}"
    return [run.name, model, cfg["method"], cfg["precision"], str(cfg.get("lora_r", 0)),
            f"{cfg['batch_size']} ({cfg['micro_batch_size']})", str(train[-1]["step"] if train else 0),
            f"{step_s:.3f}" if step_s is not None else "-", f"{max(peaks) / 1024:.2f}" if peaks else "-",
            f"{max(accs):.3f}" if accs else "-", f"{final:.3f}" if final is not None else "-"]


def table(runs: list[Path], device: str = "") -> str:
    """The markdown table of `runs` (skipping folders without metrics), headed by the device line."""
    lines = [f"device: {device}", ""] if device else []
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for run in runs:
        if (run / "metrics.jsonl").is_file() and (run / "config.yaml").is_file():
            lines.append("| " + " | ".join(run_row(run)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (and print) the table of the given run folders."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (each with config.yaml and metrics.jsonl)")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    p.add_argument("--device-file", type=Path, default=None, help="a file whose first line names the device")
    args = p.parse_args(argv)
    device = ""
    if args.device_file is not None and args.device_file.is_file():
        device = (args.device_file.read_text().splitlines() or [""])[0].strip()
    text = table(args.runs, device)
    args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
