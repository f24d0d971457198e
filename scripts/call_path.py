"""How often following the config from `train` to the first optimizer step climbs back up a layer.

    OMP_NUM_THREADS=1 python scripts/call_path.py            # the count, and where each climb happens
    python scripts/call_path.py --stays                      # every stay, in order
    python scripts/call_path.py --task prontoqa --method cot

A tiny run (the `<task>_<method>_tiny.yaml` preset on the micro model, one step, on CPU) is traced
with `sys.setprofile` from the call of `training.train.train` until `CurriculumOptimizer.step` is
entered: the first optimizer step. The measure, exactly:
- the *path* is the sequence of coconut_lm functions entered, in order (`--path`, below; a `call` event whose
  code lives under src/coconut_lm; torch, transformers and generated code such as a dataclass's
  `__init__` are not part of the story and are skipped);
- a *stay* is a run of consecutive entered functions in one module (`data.tokenizer`); its layer is
  the rank of the module's folder in `scripts/import_graph.py`'s LAYERS (tasks < recipe < data <
  model < eval < training < ...);
- a *climb* is a stay whose layer is above the layer of the stay before it: the reader, having gone
  down into a lower folder, has to come back up to a higher one to follow the next call.
Returns are not stays: the path is what a reader opens, in order, not the call stack. `--path`
picks the entries: each function the first time it is entered (default: code already read is not
read again, so a loop over examples counts once), every entry, or only the functions handed the
config (as an argument, or as the `cfg` of an argument such as `self`).

Also reported: the distinct *upward calls*, a function calling (through torch or not) a coconut_lm
function whose folder lies above its own; the import rule forbids the import, not the call, so these
come from objects or callbacks handed down.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "coconut_lm"
# The micro model, one step, and no warm-up: the smallest run that reaches an optimizer step.
FAST = ["model=micro", "batch_size=4", "micro_batch_size=4", "eval_batch_size=8", "val_max_examples=4",
        "max_new_tokens=8", "warmup_steps=0", "num_epochs=1", "max_steps_per_epoch=1", "log_every=1"]
FIRST_STEP = ("coconut_lm.training.optim", "step")  # CurriculumOptimizer.step: where the first step begins
PATHS = ("first", "every", "config")


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Stay:
    """A run of consecutive entered functions in one module, and the layer of its folder."""

    module: str
    layer: int
    calls: int  # functions entered during the stay


def stays(modules: list[str], rank: dict[str, int]) -> list[Stay]:
    """Collapse the modules of the entered functions, in order, into stays (`rank`: folder -> layer)."""
    ig = _import_graph()
    out: list[Stay] = []
    for m in modules:
        if out and out[-1].module == m:
            out[-1] = Stay(m, out[-1].layer, out[-1].calls + 1)
        else:
            out.append(Stay(m, rank[ig.unit(m)], 1))
    return out


def climbs(path: list[Stay]) -> list[tuple[Stay, Stay]]:
    """Each (stay, next stay) where the next one lies in a higher layer."""
    return [(a, b) for a, b in zip(path, path[1:]) if b.layer > a.layer]


def upward_calls(entries: list[tuple[str, str | None]], rank: dict[str, int]) -> list[tuple[str, str]]:
    """Each distinct (caller module, callee module) where the callee lies in a higher layer than its caller:
    a lower folder calling back up (through an object or a callback handed down)."""
    ig = _import_graph()
    up = {(c, m) for m, c in entries if c is not None and rank[ig.unit(m)] > rank[ig.unit(c)]}
    return sorted(up)


def receives(frame, cfg) -> bool:
    """Whether the function just entered in `frame` is handed `cfg`: as an argument, or as its object's `cfg`."""
    values = frame.f_locals.values()  # at a call event, the arguments only
    return any(v is cfg or getattr(v, "cfg", None) is cfg for v in values)


def trace_train(task: str = "prosqa", method: str = "coconut", workdir: Path | None = None,
                path: str = "first") -> list[tuple[str, str | None]]:
    """(module, caller's module) of each coconut_lm function entered from `train(cfg)` up to the first
    optimizer step; the caller is the nearest coconut_lm frame below it (None for `train` itself).

    `path` picks which entries count (`PATHS`): "first" (each function the first time only),
    "every" (every entry) or "config" (the entries handed the config, `receives`).
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prontoqa import generate_prontoqa
    from coconut_lm.tasks.prosqa import generate_prosqa
    from coconut_lm.training.config import load_config
    from coconut_lm.training.train import train

    ig = _import_graph()
    work = Path(workdir or tempfile.mkdtemp(prefix="call_path_"))
    paths = []
    for split, n, seed in (("train", 8, 0), ("val", 4, 1)):
        p = work / f"{task}_{split}.json"
        save_examples(generate_prosqa(n, seed, workers=1) if task == "prosqa" else generate_prontoqa(n, seed), p)
        paths.append(p)
    cfg = load_config(ROOT / "configs" / f"{task}_{method}_tiny.yaml",
                      [f"train_path={paths[0]}", f"val_path={paths[1]}", f"out_dir={work / 'run'}", *FAST])
    package = str(PACKAGE) + os.sep
    names: dict[str, str] = {}  # file -> module
    seen: list[tuple[str, str | None]] = []
    entered: set = set()  # code objects already entered
    done = False

    def profile(frame, event, arg) -> None:
        nonlocal done
        if done or event != "call":
            return
        file = frame.f_code.co_filename
        if not file.startswith(package):
            return
        module = names.get(file) or names.setdefault(file, ig.module_name(Path(file)))
        back = frame.f_back
        while back is not None and not back.f_code.co_filename.startswith(package):
            back = back.f_back
        caller = None if back is None else names.setdefault(back.f_code.co_filename,
                                                             ig.module_name(Path(back.f_code.co_filename)))
        code = frame.f_code
        if (module, code.co_name) == FIRST_STEP:
            done = True
        elif path == "first" and code in entered or path == "config" and not receives(frame, cfg):
            return
        entered.add(code)
        seen.append((module, caller))

    sys.setprofile(profile)
    try:
        train(cfg, progress=False, device="cpu")
    finally:
        sys.setprofile(None)
    if not done:
        raise SystemExit("call_path: the run ended without an optimizer step")
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="prosqa", choices=("prosqa", "prontoqa"))
    parser.add_argument("--method", default="coconut")
    parser.add_argument("--stays", action="store_true", help="print every stay, in order")
    parser.add_argument("--path", choices=PATHS, default="first",
                        help="which entered functions make the path: each function the first time it is entered "
                             "(default: the code a reader opens), every entry, or those handed the config")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(SRC))
    rank = {name: i for i, name in enumerate(_import_graph().LAYERS)}
    entries = trace_train(args.task, args.method, path=args.path)
    path = stays([m for m, _ in entries], rank)
    up = climbs(path)
    short = {s.module: s.module.removeprefix("coconut_lm.") for s in path}
    if args.stays:
        for s in path:
            print(f"  {s.layer:>2} {short[s.module]:<28} {s.calls} call(s)")
    for a, b in up:
        print(f"climb: {short[a.module]} (layer {a.layer}) -> {short[b.module]} (layer {b.layer})")
    print(f"{args.task}/{args.method}, path '{args.path}': {len({s.module for s in path})} modules in {len(path)} stays, "
          f"{len(up)} climb(s) back up a layer from train() to the first optimizer step")
    calls = upward_calls(entries, rank)
    for c, m in calls:
        print(f"upward call: {c.removeprefix('coconut_lm.')} calls into {m.removeprefix('coconut_lm.')}")
    print(f"{len(calls)} distinct upward call(s): a module calling into a folder above its own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
