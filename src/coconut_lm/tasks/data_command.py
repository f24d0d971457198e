"""`coconut-lm data`: make and inspect datasets in the common format (question, steps, answer).

    coconut-lm data prosqa --n 1000 --seed 0 --out data/prosqa_train.json
    coconut-lm data symbolic prosqa_valid.json --out data/prosqa_valid_symbolic.json
    coconut-lm data gsm8k --from train.jsonl --out data/gsm8k_train.json
    coconut-lm data stats data/prosqa_train.json

`add_data_parser` adds the subcommands to the `coconut-lm` parser (`coconut_lm.cli`); each sets `func`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coconut_lm.argtypes import path, positive_int
from coconut_lm.tasks.generate import add_prontoqa_arguments, add_prosqa_arguments, write_prosqa


def _cmd_data_prosqa(args: argparse.Namespace) -> int:
    write_prosqa(args)
    return 0


def _cmd_data_symbolic(args: argparse.Namespace) -> int:
    from coconut_lm.tasks.examples import read_json, save_examples
    from coconut_lm.tasks.symbolic import symbolize
    from coconut_lm.tasks.symbolic_prontoqa import is_symbolic_prontoqa

    if isinstance(read_json(Path(args.source)), dict):  # the ProntoQA generator's own output file
        from coconut_lm.tasks.prontoqa import load_prontoqa_raw

        source = load_prontoqa_raw(args.source)
    else:
        from coconut_lm.tasks.examples import load_examples

        source = load_examples(args.source)
    examples = symbolize(source, seed=args.seed, relabel=args.relabel)
    save_examples(examples, args.out)
    task = "ProntoQA" if examples and is_symbolic_prontoqa(examples[0]) else "ProsQA"
    print(f"wrote {len(examples)} symbolic {task} examples from {args.source} to {args.out}")
    return 0


def _cmd_data_prontoqa(args: argparse.Namespace) -> int:
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.generate import prontoqa_examples

    examples = prontoqa_examples(args)
    save_examples(examples, args.out)
    print(f"wrote {len(examples)} ProntoQA examples ({args.format} form) to {args.out}")
    return 0


def _cmd_data_gsm8k(args: argparse.Namespace) -> int:
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.gsm8k import load_gsm8k

    result = load_gsm8k(args.source, exclude=args.exclude)
    save_examples(result.examples, args.out)
    dropped = f", dropped {result.n_dropped} that appear in {args.exclude}" if args.exclude else ""
    print(f"read {result.n_read} problems ({result.source_format}){dropped}; wrote {len(result.examples)} to {args.out}")
    return 0


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from coconut_lm.tasks.examples import load_examples
    from coconut_lm.tasks.stats import dataset_stats, format_stats

    print(format_stats(dataset_stats(load_examples(args.file)), title=str(args.file)))
    return 0


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """Add `data` and its subcommands (prosqa, prontoqa, symbolic, gsm8k, stats) to the `coconut-lm` parser."""
    p = sub.add_parser("data", help="generate ProsQA/ProntoQA, convert GSM8k, print dataset statistics",
                       description="Make and inspect datasets in the common format (question, steps, answer).")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{prosqa,prontoqa,symbolic,gsm8k,stats}")
    for name, fn, what in (
        ("prosqa", _cmd_data_prosqa, "ProsQA: graph reasoning over a random DAG (paper Algorithm 1)"),
        ("prontoqa", _cmd_data_prontoqa, "ProntoQA: 5-hop fictional-ontology true/false questions (--min-hops/--max-hops for shorter chains)"),
    ):
        g = dsub.add_parser(name, help=f"generate {what}", description=f"Generate {what}.")
        g.add_argument("--n", type=positive_int, required=True, help="number of examples")
        g.add_argument("--seed", type=int, default=0, help="random seed; the output is a pure function of it (default 0)")
        g.add_argument("--out", type=path, required=True, help="output JSON file (written atomically)")
        (add_prosqa_arguments if name == "prosqa" else add_prontoqa_arguments)(g)
        g.set_defaults(func=fn)
    g = dsub.add_parser("symbolic", help="render a word-form ProsQA or ProntoQA file (e.g. an official one) symbolically",
                        description="Render a word-form file in the symbolic form. ProsQA (graph keys idx_to_symbol, "
                                    "edges, root, target, neg_target): one token per node. ProntoQA (True/False answers; "
                                    "the common format, or the generator's own output file): one token per concept, "
                                    "property and entity. The task is told from the items.")
    g.add_argument("source", type=path, help="ProsQA or ProntoQA JSON file in the official word form")
    g.add_argument("--out", type=path, required=True, help="output JSON file (written atomically)")
    g.add_argument("--seed", type=int, default=0, help="seed for the edge order and relabelling (default 0)")
    g.add_argument("--relabel", action="store_true",
                   help="ProsQA: draw each example's node names at random from 0..31; ProntoQA: draw its concept "
                        "and entity names anew from the generator's names")
    g.set_defaults(func=_cmd_data_symbolic)
    g = dsub.add_parser("gsm8k", help="convert GSM8k from OpenAI jsonl or iCoT text",
                        description="Convert GSM8k (OpenAI .jsonl or iCoT 'q||<<a>> <<b>> #### ans' text) to the common format.")
    g.add_argument("--from", type=path, dest="source", required=True, help="input: OpenAI .jsonl, or iCoT .txt")
    g.add_argument("--exclude", type=path, default=None,
                   help="drop questions that appear in this file (any supported format), e.g. the validation set")
    g.add_argument("--out", type=path, required=True, help="output JSON file (written atomically)")
    g.set_defaults(func=_cmd_data_gsm8k)
    g = dsub.add_parser("stats", help="print a dataset's statistics as a table",
                        description="Print statistics of a common-format file: steps per item, lengths, and for ProsQA the graph statistics.")
    g.add_argument("file", type=path, help="common-format JSON file")
    g.set_defaults(func=_cmd_data_stats)
