"""The `coconut-lm` command line: one plain dict maps each subcommand to its function.

    coconut-lm data prosqa --n 1000 --seed 0 --out data/prosqa_train.json
    coconut-lm data stats data/prosqa_train.json
    coconut-lm --help

Bad input raises `CoconutError`; `main` prints it as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from coconut_lm.errors import CoconutError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------------------- data


def _cmd_data_prosqa(args: argparse.Namespace) -> int:
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa

    examples = generate_prosqa(args.n, seed=args.seed, workers=args.workers)
    save_examples(examples, args.out)
    print(f"wrote {len(examples)} ProsQA examples to {args.out}")
    return 0


def _cmd_data_prontoqa(args: argparse.Namespace) -> int:
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prontoqa import generate_prontoqa

    examples = generate_prontoqa(args.n, seed=args.seed)
    save_examples(examples, args.out)
    print(f"wrote {len(examples)} ProntoQA examples to {args.out}")
    return 0


def _cmd_data_gsm8k(args: argparse.Namespace) -> int:
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.gsm8k import convert_gsm8k

    examples = convert_gsm8k(args.source, exclude=args.exclude)
    save_examples(examples, args.out)
    print(f"wrote {len(examples)} GSM8k examples to {args.out}")
    return 0


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from coconut_lm.tasks.examples import load_examples
    from coconut_lm.tasks.stats import dataset_stats, format_stats

    print(format_stats(dataset_stats(load_examples(args.file)), title=str(args.file)))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate ProsQA/ProntoQA, convert GSM8k, print dataset statistics",
                       description="Make and inspect datasets in the common format (question, steps, answer).")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{prosqa,prontoqa,gsm8k,stats}")
    for name, fn, what in (
        ("prosqa", _cmd_data_prosqa, "ProsQA: graph reasoning over a random DAG (paper Algorithm 1)"),
        ("prontoqa", _cmd_data_prontoqa, "ProntoQA: 5-hop fictional-ontology true/false questions"),
    ):
        g = dsub.add_parser(name, help=f"generate {what}", description=f"Generate {what}.")
        g.add_argument("--n", type=_positive_int, required=True, help="number of examples")
        g.add_argument("--seed", type=int, default=0, help="random seed; the output is a pure function of it (default 0)")
        g.add_argument("--out", required=True, help="output JSON file (written atomically)")
        if name == "prosqa":
            g.add_argument("--workers", type=int, default=None,
                           help="worker processes (default: one per CPU core; 1 = in-process)")
        g.set_defaults(func=fn)
    g = dsub.add_parser("gsm8k", help="convert GSM8k from OpenAI jsonl or iCoT text",
                        description="Convert GSM8k (OpenAI .jsonl or iCoT 'q||<<a>> <<b>> #### ans' text) to the common format.")
    g.add_argument("--from", dest="source", required=True, help="input: OpenAI .jsonl, or iCoT .txt")
    g.add_argument("--exclude", default=None,
                   help="drop questions that appear in this file (any supported format), e.g. the validation set")
    g.add_argument("--out", required=True, help="output JSON file (written atomically)")
    g.set_defaults(func=_cmd_data_gsm8k)
    g = dsub.add_parser("stats", help="print a dataset's statistics as a table",
                        description="Print statistics of a common-format file: steps per item, lengths, and for ProsQA the graph statistics.")
    g.add_argument("file", help="common-format JSON file")
    g.set_defaults(func=_cmd_data_stats)


# ----------------------------------------------------------------------------------------- main

# Subcommand name -> function that adds its parser. Each parser sets `func`.
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "data": _add_data,
}


def build_parser() -> argparse.ArgumentParser:
    """The full `coconut-lm` argument parser."""
    from coconut_lm import __version__

    parser = _Parser(prog="coconut-lm", description="Coconut: train and study LMs that reason in a continuous latent space.")
    parser.add_argument("--version", action="version", version=f"coconut-lm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}",
                                parser_class=_Parser)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `coconut-lm` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CoconutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
