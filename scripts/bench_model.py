"""Thin wrapper around `coconut-lm bench` (src/coconut_lm/bench.py), which replaced this script.

    .venv/bin/python scripts/bench_model.py --device cpu --preset tiny --batch-size 16 --json bench.json
"""

from __future__ import annotations

import argparse
import sys

from coconut_lm.bench import add_bench_parser
from coconut_lm.errors import CoconutError

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_model.py")
    add_bench_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", *sys.argv[1:]])
    try:
        sys.exit(args.func(args))
    except CoconutError as e:
        sys.exit(f"error: {e}")
