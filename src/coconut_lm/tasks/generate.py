"""The generators' command-line arguments, shared by `coconut-lm data prosqa|prontoqa` and a run's `fresh_data`.

    examples = fresh_examples("prosqa --format symbolic --relabel", n=6400, seed=7)
    examples = fresh_examples("prontoqa --format symbolic --relabel", n=6400, seed=7)

`fresh_data` names the same arguments the data command takes, so a run draws new examples from
exactly the distribution a `coconut-lm data` call would write to a file.
"""

from __future__ import annotations

import argparse
import shlex

from coconut_lm.argtypes import Parser, positive_int
from coconut_lm.errors import CoconutError


def add_prosqa_arguments(g: argparse.ArgumentParser) -> None:
    """The generator options of `coconut-lm data prosqa` (besides --n, --seed and --out)."""
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per CPU core; 1 = in-process)")
    g.add_argument("--nodes", type=positive_int, default=None,
                   help="nodes drawn per graph (default 28, which matches the official statistics)")
    g.add_argument("--min-hops", type=positive_int, default=None,
                   help="shortest root-to-target distance allowed (default 3)")
    g.add_argument("--max-hops", type=positive_int, default=None,
                   help="longest shortest root-to-target distance allowed (default 6)")
    g.add_argument("--format", choices=("words", "symbolic"), default="words",
                   help="words: the official sentences (default); symbolic: one token per node, "
                        "'s t | ... [Q] a b [R] root' (see coconut_lm.tasks.symbolic)")
    g.add_argument("--relabel", action="store_true",
                   help="symbolic form: draw each example's node names at random from 0..31")


def prosqa_examples(args: argparse.Namespace) -> list:
    """The examples `coconut-lm data prosqa ARGS` makes (also what a run's `fresh_data` draws each epoch)."""
    from coconut_lm.tasks.prosqa import generate_prosqa

    config = None
    if args.nodes is not None or args.min_hops is not None or args.max_hops is not None:
        from coconut_lm.tasks.prosqa import ProsQAConfig

        default = ProsQAConfig()
        lo = args.min_hops if args.min_hops is not None else default.min_hops
        hi = args.max_hops if args.max_hops is not None else default.max_hops
        # A custom hop range keeps every question length it can make (the default mix is fitted to 3..6).
        keep = default.hop_keep if (lo, hi) == (default.min_hops, default.max_hops) else (1.0,) * (hi - lo + 1)
        config = ProsQAConfig(n_nodes=args.nodes or default.n_nodes, min_hops=lo, max_hops=hi, hop_keep=keep)
    if args.relabel and args.format != "symbolic":
        raise CoconutError("--relabel needs --format symbolic")
    examples = generate_prosqa(args.n, seed=args.seed, workers=args.workers, config=config)
    if args.format == "symbolic":
        from coconut_lm.tasks.symbolic import symbolize

        examples = symbolize(examples, seed=args.seed, relabel=args.relabel)
    return examples


def add_prontoqa_arguments(g: argparse.ArgumentParser) -> None:
    """The generator options of `coconut-lm data prontoqa` (besides --n, --seed and --out)."""
    g.add_argument("--min-hops", type=positive_int, default=None,
                   help="shortest chain of concepts (default 5, the official shape, or --max-hops if lower)")
    g.add_argument("--max-hops", type=positive_int, default=None,
                   help="longest chain of concepts, at most 6; each example's length is drawn uniformly from "
                        "min..max (default 5, or --min-hops if higher)")
    g.add_argument("--format", choices=("words", "symbolic"), default="words",
                   help="words: the official sentences (default); symbolic: one token per concept, property and "
                        "entity, 'wumpus tumpus | wumpus happy ~ | ... [Q] Alex happy' (see coconut_lm.tasks.symbolic_prontoqa)")
    g.add_argument("--relabel", action="store_true",
                   help="symbolic form: draw each example's concept and entity names anew (seeded)")


def prontoqa_examples(args: argparse.Namespace) -> list:
    """The examples `coconut-lm data prontoqa ARGS` makes (also what a run's `fresh_data` draws each epoch)."""
    from coconut_lm.tasks.prontoqa import generate_prontoqa

    if args.relabel and args.format != "symbolic":
        raise CoconutError("--relabel needs --format symbolic")
    from coconut_lm.tasks.prontoqa import HOPS

    lo = args.min_hops or min(HOPS, args.max_hops or HOPS)
    hi = args.max_hops or max(lo, HOPS)
    examples = generate_prontoqa(args.n, seed=args.seed, min_hops=lo, max_hops=hi)
    if args.format == "symbolic":
        from coconut_lm.tasks.symbolic_prontoqa import symbolize_prontoqa

        examples = symbolize_prontoqa(examples, seed=args.seed, relabel=args.relabel)
    return examples


def write_prosqa(args: argparse.Namespace) -> None:
    """What `coconut-lm data prosqa ARGS` does: make the examples, write them to `args.out`, say so."""
    from coconut_lm.tasks.examples import save_examples

    examples = prosqa_examples(args)
    save_examples(examples, args.out)
    print(f"wrote {len(examples)} ProsQA examples ({args.format} form) to {args.out}")


def parse_prosqa_args(words: list[str], what: str, task: str = "prosqa") -> argparse.Namespace:
    """`coconut-lm data <task>` arguments (without the leading task name); a bad one is a CoconutError naming `what`."""
    parser = Parser(prog=what, add_help=False)
    parser.add_argument("--n", type=positive_int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="-")
    (add_prosqa_arguments if task == "prosqa" else add_prontoqa_arguments)(parser)
    try:
        return parser.parse_args(words)
    except SystemExit:
        raise CoconutError(f"{what}: not valid `coconut-lm data {task}` arguments") from None


def fresh_examples(data_args: str, n: int, seed: int) -> list:
    """`n` examples from `coconut-lm data <data_args>` with `seed` (a run's `fresh_data`; --n/--seed/--out are set here)."""
    words = shlex.split(data_args)
    if any(w in ("--n", "--seed", "--out") for w in words):
        raise CoconutError(f"fresh_data '{data_args}': leave out --n, --seed and --out (the trainer sets them)")
    if not words or words[0] not in ("prosqa", "prontoqa"):
        raise CoconutError(f"fresh_data '{data_args}': only 'prosqa ...' and 'prontoqa ...' generators can draw fresh data")
    args = parse_prosqa_args(words[1:], f"fresh_data '{data_args}'", task=words[0])
    args.n, args.seed, args.workers = n, seed, 1
    return prosqa_examples(args) if words[0] == "prosqa" else prontoqa_examples(args)
