"""A checkpoint's manifest: every file's size and SHA-256, written last, and its verification.

A folder is a complete checkpoint when its `MANIFEST.json` exists and every file it lists has the
recorded size and hash; `verify_checkpoint` says what is wrong otherwise.

    write_manifest(folder)            # after every other file is written
    verify_checkpoint(folder)         # the folder, or CoconutError("... incomplete / corrupt ...")
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from coconut_lm.errors import CoconutError

MANIFEST = "MANIFEST.json"


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes (manifests, and the data fingerprints a resume checks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record every file's size and hash; written last, it marks the folder complete."""
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"files": files}, indent=1))
    os.replace(tmp, folder / MANIFEST)


def verify_checkpoint(folder: str | os.PathLike) -> Path:
    """Return the folder if it is a complete checkpoint; else raise CoconutError saying what is wrong."""
    p = Path(folder)
    if not p.is_dir():
        raise CoconutError(f"checkpoint {p}: no such folder")
    manifest = p / MANIFEST
    if not manifest.is_file():
        raise CoconutError(f"checkpoint {p}: incomplete (no {MANIFEST}; the run stopped while writing it?)")
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CoconutError(f"checkpoint {p}: {MANIFEST} is unreadable") from None
    for name, meta in files.items():
        f = p / name
        if not f.is_file():
            raise CoconutError(f"checkpoint {p}: file {name} is missing")
        if f.stat().st_size != meta["size"]:
            raise CoconutError(f"checkpoint {p}: file {name} has {f.stat().st_size} bytes, expected {meta['size']}")
        if sha256_file(f) != meta["sha256"]:
            raise CoconutError(f"checkpoint {p}: file {name} is corrupt (checksum mismatch)")
    return p
