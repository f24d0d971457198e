"""Does a model answer ProsQA by a graph statistic instead of the chain? (`coconut_lm.analysis.shortcuts`)

    coconut-lm eval models/prosqa-no_cot-s0 --data official_valid.json --out ev_nocot
    python scripts/shortcut_probe.py official_valid.json no_cot=ev_nocot coconut=ev_coconut [--json OUT]

For each statistic (`--statistic`, default all) and each model's predictions (a predictions.jsonl, or the
eval folder holding one; `LABEL=` names it), prints by hop count: how often the statistic alone picks
the target where it picks at all, how often the model picks what it picks, and the model's accuracy
where the statistic picks and where it ties. The predictions must be of DATA, in its order.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from coconut_lm.analysis.html import read_predictions
from coconut_lm.analysis.shortcuts import STATISTICS, format_table, shortcut_rows, shortcut_table
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.prosqa_graph import load_graph_examples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="the ProsQA file the predictions are of (with graph keys)")
    p.add_argument("predictions", nargs="+", metavar="[LABEL=]PREDICTIONS",
                   help="a predictions.jsonl of `coconut-lm eval`, or the folder holding one")
    p.add_argument("--statistic", action="append", choices=sorted(STATISTICS), default=None,
                   help="a statistic to test (repeatable; default: all of " + ", ".join(STATISTICS) + ")")
    p.add_argument("--json", type=Path, default=None, help="also write every table as JSON")
    args = p.parse_args(argv)
    try:
        _, graphs = load_graph_examples(args.data)
        out = {}
        for spec in args.predictions:
            label, path, records = read_predictions(spec, option="predictions")
            if sorted(records) != list(range(len(graphs))):
                raise CoconutError(f"predictions {path}: indices do not cover the {len(graphs)} items of {args.data} "
                                   f"exactly (were they made on another file, or with --max-examples?)")
            rows = shortcut_rows(graphs, [records[i]["text"] for i in range(len(graphs))])
            for stat in args.statistic or list(STATISTICS):
                table = shortcut_table(rows, stat)
                print(format_table(table, stat, label))
                out.setdefault(label, {})[stat] = {h: asdict(c) for h, c in table.items()}
    except CoconutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "tables": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
