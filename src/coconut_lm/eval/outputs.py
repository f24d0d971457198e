"""What a command may write over: the `--out`/`--overwrite` rules every command shares; and whether it
draws live progress bars (`live_bars`).

    check_out_dir("runs/x/eval", overwrite=False, command="eval")   # refuse a file or a non-empty folder
    clear_outputs("runs/x/eval", EVAL_OUTPUTS)                        # --overwrite: remove the earlier run's files
    check_out_files(["results.md", "results.json"], overwrite=False, command="report")

No command writes over a file it did not create unless told to (`--overwrite`); and when told to,
it first removes every output of its own kind that it is about to replace, so two runs' files are
never mixed in one folder (an old `forced_k/k6` beside a new `k0..k3`). Only the command's own
outputs are removed: anything else in the folder stays.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from coconut_lm.errors import CoconutError


def check_out_dir(out: str | os.PathLike, overwrite: bool, command: str) -> Path:
    """Refuse an output folder that is a file, or that already holds something, unless `overwrite`."""
    path = Path(out)
    if str(out).strip() == "":
        raise CoconutError(f"{command}: --out is an empty path; give an output folder")
    if path.exists() and not path.is_dir():
        raise CoconutError(f"{command}: --out {out} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CoconutError(f"{command}: --out {out} is not empty (earlier results?); choose a new folder or "
                           f"pass --overwrite")
    return path


def clear_outputs(out: str | os.PathLike, names: re.Pattern[str]) -> list[Path]:
    """Delete the entries of `out` whose names fully match `names` (a command's outputs); return them."""
    path = Path(out)
    if not path.is_dir():
        return []
    gone = sorted(p for p in path.iterdir() if names.fullmatch(p.name))
    for p in gone:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return gone


def check_out_files(paths: Sequence[str | os.PathLike], overwrite: bool, command: str) -> None:
    """Refuse to write files that already exist (or are folders), unless `overwrite` (then only folders are refused)."""
    for p in map(Path, paths):
        if p.is_dir():
            raise CoconutError(f"{command}: {p} is a folder; give another --out")
        if p.exists() and not overwrite:
            raise CoconutError(f"{command}: {p} already exists (earlier results, or another command's?); choose "
                               f"another --out or pass --overwrite to replace it")


def live_bars(progress: bool) -> bool:
    """Whether to draw live progress bars: asked for, and stderr is a terminal (in a log file they would
    write thousands of carriage-return updates; callers print plain lines there instead)."""
    return progress and sys.stderr.isatty()
