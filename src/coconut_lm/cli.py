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
from pathlib import Path

from coconut_lm.argtypes import Parser, int_list, non_blank, non_negative_int, path, positive_int, probability_list
from coconut_lm.errors import CoconutError
from coconut_lm.model.compiled import COMPILE_MODES
from coconut_lm.model.shift_modes import SHIFT_THOUGHTS_WORDS, ShiftThoughts, parse_shift_thoughts
from coconut_lm.tasks.data_command import add_data_parser

# ---------------------------------------------------------------------------------- train, eval


def _cmd_train(args: argparse.Namespace) -> int:
    from coconut_lm.training.config import describe_fields, load_config

    if args.help_config:
        print("Config keys (YAML or key=value):\n" + describe_fields())
        return 0
    if args.config is None and not args.overrides:
        raise CoconutError("give a config file (see configs/) and/or key=value overrides")
    from coconut_lm.training.train import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # only overrides were given
        config, overrides = None, [config, *overrides]
    cfg = load_config(config, overrides)
    result = train(cfg, resume=args.resume, progress=not args.no_progress, device=args.device)
    total = result.total_seconds or result.seconds
    sessions = f" ({total:.0f}s over every session)" if total > result.seconds + 0.5 else ""
    print(f"done in {result.seconds:.0f}s{sessions}: {result.global_step} steps, best val accuracy "
          f"{result.best_accuracy:.3f} (epoch {result.best_epoch + 1}); run folder {result.run_dir}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a method with a config (one process, or under torchrun)",
                       description="Train with a YAML config (ours or the official code's) and key=value overrides. "
                                   "Under torchrun each process trains one rank (DDP, or FSDP2 with distributed=fsdp).")
    p.add_argument("config", nargs="?", help="YAML config, e.g. configs/prosqa_coconut_tiny.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. lr=3e-4 num_epochs=10")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in out_dir")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--help-config", action="store_true", help="list every config key with its default and meaning")
    p.set_defaults(func=_cmd_train)


def _cmd_eval(args: argparse.Namespace) -> int:
    from coconut_lm.checkpoint_eval import evaluate_checkpoint
    from coconut_lm.eval.evaluate import format_summaries

    summaries = evaluate_checkpoint(args.checkpoint, args.data, args.out, latents=args.latents,
                                    batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                    use_classifier=True if args.use_classifier else None,
                                    max_examples=args.max_examples, device=args.device, progress=not args.no_progress,
                                    any_task=args.any_task, compile=args.compile, eot_thresholds=args.eot_threshold,
                                    overwrite=args.overwrite, shift_thoughts=args.shift_thoughts)
    print(format_summaries(summaries))
    if sum(s.use_classifier for s in summaries.values()) > 1:  # a threshold sweep: the trade-off as a figure
        from coconut_lm.analysis.plots import plot_tradeoff

        print(f"wrote {plot_tradeoff(summaries, Path(args.out) / 'tradeoff.png')}")
    if len(summaries) > 1:
        print(f"wrote {args.out}/forced_k.json and predictions.jsonl, summary.json in each of "
              + ", ".join(f"{args.out}/{name}" for name in summaries))
    else:
        print(f"wrote {args.out}/predictions.jsonl and {args.out}/summary.json")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="batched generation eval of a checkpoint: accuracy, tokens, forced k",
                       description="Evaluate a checkpoint with batched KV-cache generation. Writes predictions.jsonl "
                                   "(per example: id, text, parsed answer, correct, tokens, thoughts) and summary.json.")
    p.add_argument("checkpoint", type=path, help="checkpoint folder, or a run folder (its best/ is used)")
    p.add_argument("--data", type=path, required=True, help="common-format JSON file to evaluate on")
    p.add_argument("--out", type=path, required=True, help="output folder")
    p.add_argument("--latents", type=int_list, default=None,
                   help="thoughts per prompt, or a list for forced-k (e.g. 0,1,2,3,4,5,6); default: the checkpoint's eval_thoughts")
    p.add_argument("--use-classifier", action="store_true",
                   help="let the <eot> classifier end latent mode; with --latents, those fixed counts are scored beside it")
    p.add_argument("--eot-threshold", type=probability_list, default=None, metavar="T[,T...]",
                   help="with --use-classifier: stop thinking once sigmoid(logit) > T (default 0.5); a list sweeps "
                        "the accuracy-thoughts trade-off, one summary per threshold")
    p.add_argument("--overwrite", action="store_true",
                   help="replace earlier results in a non-empty --out (an earlier eval's files there are removed first)")
    p.add_argument("--any-task", action="store_true",
                   help="score data that looks like another task's than the checkpoint's (refused otherwise)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="generation batch size (default 64)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help="generation budget per example (default: the training run's max_new_tokens)")
    p.add_argument("--max-examples", type=positive_int, default=None, help="evaluate only the first N examples")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device (default: cuda if available)")
    p.add_argument("--compile", default=None, metavar="MODE", choices=COMPILE_MODES,
                   help="torch.compile every transformer block in this mode, e.g. reduce-overhead (CUDA graphs) "
                        "for decoding on a GPU (default: eager)")
    _add_shift_thoughts(p, "; summary.json records the value used")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)


def _shift_thoughts(text: str) -> ShiftThoughts:
    """An argparse type: a `shift_thoughts` value (true, false, receive, send)."""
    try:
        return parse_shift_thoughts(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_shift_thoughts(p: argparse.ArgumentParser, note: str = "") -> None:
    words = ",".join(SHIFT_THOUGHTS_WORDS)
    p.add_argument("--shift-thoughts", type=_shift_thoughts, default=None, metavar="{" + words + "}",
                   help="probe the token shift's paths through the thoughts: run the model with this shift_thoughts "
                        "instead of the checkpoint's, for this command only (true: thoughts receive and send the "
                        "shift; false: neither; receive, send: that path only; docs/methods.md)" + note
                        + " (default: the checkpoint's; refused for a model without a token shift)")


def _cmd_generate(args: argparse.Namespace) -> int:
    from coconut_lm.data.pipeline import check_control_tokens, tokenize_examples
    from coconut_lm.eval.evaluate import generate_prompts
    from coconut_lm.recipe.methods import get_method
    from coconut_lm.tasks.examples import Example
    from coconut_lm.training.checkpoint import load_model

    model, tok, meta = load_model(args.checkpoint, shift_thoughts=args.shift_thoughts)
    method = get_method(meta.method)
    n = args.latents if args.latents is not None else meta.eval_thoughts
    question = [Example(args.question, [], "?")]
    check_control_tokens(question, tok, "--question")
    prompt = method.eval_prompt(tokenize_examples(question, tok)[0], n, meta.layout, model.tokens)
    (out,) = generate_prompts(model, tok, [prompt], args.max_new_tokens, return_thoughts=args.show_thoughts)
    print(out.text)
    if args.show_thoughts and out.thought_states is not None and len(out.thought_states):
        from coconut_lm.analysis.latent_search import decode_thoughts

        for i, top in enumerate(decode_thoughts(model, tok, out.thought_states, k=5)):
            print(f"thought {i + 1}: " + ", ".join(f"{t} {p:.2f}" for t, p in top))
    return 0


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="answer one question with a checkpoint",
                       description="Generate for one question; optionally decode each continuous thought.")
    p.add_argument("checkpoint", type=path, help="checkpoint folder, or a run folder (its best/ is used)")
    p.add_argument("--question", type=non_blank, required=True, help="the question text")
    p.add_argument("--latents", type=non_negative_int, default=None,
                   help="thoughts to use (default: the checkpoint's eval_thoughts)")
    p.add_argument("--max-new-tokens", type=positive_int, default=64, help="generation budget (default 64)")
    p.add_argument("--show-thoughts", action="store_true", help="print the top tokens of each thought through the LM head")
    _add_shift_thoughts(p)
    p.set_defaults(func=_cmd_generate)


def _cmd_export(args: argparse.Namespace) -> int:
    from coconut_lm.training.export import export_merged

    print(f"wrote {export_merged(args.checkpoint, args.out)}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint as one HF folder, LoRA adapters merged in",
                       description="Write a checkpoint (or a run folder's best/) as a plain Hugging Face model folder "
                                   "with its tokenizer: LoRA adapters and the added tokens' rows are merged into the "
                                   "weights, so model=OUT trains from it and coconut-lm eval OUT scores it.")
    p.add_argument("checkpoint", type=path, help="checkpoint folder, or a run folder (its best/ is used)")
    p.add_argument("--merge", action="store_true", required=True,
                   help="merge the adapters into the weights (required: the one export there is)")
    p.add_argument("--out", type=path, required=True, help="output folder, new or empty")
    p.set_defaults(func=_cmd_export)


# ------------------------------------------------------------------------------------------ demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from coconut_lm.demo import run_demo

    run_demo(out=args.out, methods=args.methods, steps=args.steps, parallel=args.parallel, seed=args.seed,
             extra_overrides=args.set)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from coconut_lm.demo import DEMO_METHODS, METHOD_OVERRIDES, PARALLEL, STEPS

    def method_list(text: str) -> tuple[str, ...]:
        names = tuple(METHOD_OVERRIDES) if text == "all" else tuple(m.strip() for m in text.split(",") if m.strip())
        unknown = [m for m in names if m not in METHOD_OVERRIDES]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or text!r}; choose from "
                                             f"{', '.join(METHOD_OVERRIDES)} or 'all'")
        return names

    p = sub.add_parser("demo", help="end-to-end demo: Coconut, CoT and No-CoT from scratch on symbolic ProsQA (CPU)",
                       description="Generate small symbolic ProsQA graphs, train Coconut and the CoT and No-CoT "
                                   "baselines from scratch on CPU for the same number of steps, score each on a "
                                   "fresh held-out set, print the table and write results.json (~7 min, 2 cores).")
    p.add_argument("--out", type=path, default=None, help="output folder, which must be new or empty (default: runs/demo-<time>)")
    p.add_argument("--steps", type=positive_int, default=STEPS,
                   help=f"optimizer steps of 32 examples per method (default {STEPS})")
    p.add_argument("--methods", type=method_list, default=DEMO_METHODS,
                   help=f"comma-separated methods, or 'all' for the eight of Table 1 (default {','.join(DEMO_METHODS)})")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every model's initialisation and data order; the data stays the same (default 0)")
    p.add_argument("--parallel", type=positive_int, default=PARALLEL,
                   help=f"methods trained at once, one thread each (default {PARALLEL})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a training config key for every method, over the demo's recipe (repeatable), e.g. "
                        "--set shift_thoughts=false or --set token_shift=0; `coconut-lm train --help-config` lists them")
    p.set_defaults(func=_cmd_demo)


# ----------------------------------------------------------------------------------------- main

def _add_analyze(sub: argparse._SubParsersAction) -> None:
    from coconut_lm.analysis.run import add_analyze_parser

    add_analyze_parser(sub)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from coconut_lm.bench.run import add_bench_parser

    add_bench_parser(sub)


def _add_report(sub: argparse._SubParsersAction) -> None:
    from coconut_lm.analysis.report import add_report_parser

    add_report_parser(sub)


# Subcommand name -> function that adds its parser. Each parser sets `func`.
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "data": add_data_parser,
    "train": _add_train,
    "eval": _add_eval,
    "generate": _add_generate,
    "export": _add_export,
    "demo": _add_demo,
    "analyze": _add_analyze,
    "report": _add_report,
    "bench": _add_bench,
}


def build_parser() -> argparse.ArgumentParser:
    """The full `coconut-lm` argument parser."""
    from coconut_lm import __version__

    parser = Parser(prog="coconut-lm", description="Coconut: train and study LMs that reason in a continuous latent space.")
    parser.add_argument("--version", action="version", version=f"coconut-lm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}",
                                parser_class=Parser)
    for add in COMMANDS.values():
        add(sub)
    return parser


def _is_override(arg: str) -> bool:
    key, sep, _ = arg.partition("=")
    return bool(sep and key) and not arg.startswith("-")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a `coconut-lm` command line; `train`'s key=value overrides may also follow its flags.

    argparse fills the `train` positionals from their first run only, so in `train CFG --no-progress
    k=v` the `k=v` is left over; `parse_intermixed_args` would fix that but refuses subparsers
    (TypeError). So leftovers of `train` that all look like key=value join its overrides, in order.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "train" and all(_is_override(a) for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `coconut-lm` console script; returns the exit status."""
    args = parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CoconutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be read or written: name it and the cause, in one line
        if e.filename is None:
            raise
        print(f"error: {e.filename}: {e.strerror or type(e).__name__} (cannot read or write it)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
