"""Checkpoints: an HF folder plus `coconut.json`, a trainer state, and a manifest written last.

    <run>/checkpoints/step-00000420/   config.json, model.safetensors, tokenizer files,
                                       coconut.json, trainer_state.pt, MANIFEST.json
    <run>/best/                        the same, without trainer_state.pt

A checkpoint is built in a hidden temporary folder and renamed into place, and its
`MANIFEST.json` (every file's size and SHA-256) is written last. A folder without a manifest, or
whose files do not match it, is incomplete or corrupt: `manifest.verify_checkpoint` reports it and
`latest_checkpoint` skips it, so `--resume` never loads half a checkpoint.

    model, tokenizer, meta = load_model("runs/x")     # a run folder means its best/; meta is a RunMeta
    resolve_checkpoint("runs/x/checkpoints/step-00000420")

`RunMeta` is the schema of what the trainer records about a checkpoint (method, task, layout,
evaluation settings) in `coconut.json`; it is the one place that knows the defaults of fields older
checkpoints lack, so no reader guesses them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from coconut_lm.errors import CoconutError
from coconut_lm.model.files import COCONUT_JSON
from coconut_lm.model.shift_modes import ShiftThoughts, shift_thoughts_word
from coconut_lm.recipe.methods import LayoutConfig
from coconut_lm.training.manifest import MANIFEST, verify_checkpoint, write_manifest

TRAINER_STATE = "trainer_state.pt"
CKPT_PREFIX = "step-"


@dataclass(frozen=True)
class RunMeta:
    """What a checkpoint records about its training and how to evaluate it (`coconut.json`'s `meta`).

    Written flat, with `version`, so a checkpoint stays readable as plain JSON. The defaults are
    those of checkpoints written before a field existed (`from_json` fills them in).
    """

    method: str = "coconut"
    task: str = "prosqa"
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    #: generation budget per example at evaluation
    max_new_tokens: int = 128
    #: the epoch (0-based) and curriculum stage the weights come from
    epoch: int = -1
    stage: int = 0
    #: thoughts (or pause slots) evaluation uses unless told otherwise
    eval_thoughts: int = 0
    #: end latent mode with the learned <eot> classifier instead of a fixed count
    eval_use_classifier: bool = False
    #: the classifier's cap on thoughts
    max_thoughts: int = 16
    #: the form of the training data: "symbolic" or "words" ("" in checkpoints written before it was recorded)
    data_format: str = ""

    VERSION = 1

    def to_json(self) -> dict[str, Any]:
        """The flat dict `coconut.json` stores: every field, the layout's fields inlined, and `version`."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layout"}
        return {"version": self.VERSION, **out, **asdict(self.layout)}

    @classmethod
    def from_json(cls, meta: dict[str, Any], source: str | os.PathLike = "checkpoint") -> RunMeta:
        """Read a `meta` dict (any version so far); a field of the wrong type is a CoconutError naming it."""
        if int(meta.get("version", 1)) > cls.VERSION:
            raise CoconutError(f"{source}: checkpoint meta version {meta['version']} is newer than this coconut-lm "
                               f"reads ({cls.VERSION}); upgrade coconut-lm")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "layout" or f.name not in meta:
                continue
            kind = type(f.default)
            try:
                values[f.name] = kind(meta[f.name])
            except (TypeError, ValueError):
                raise CoconutError(f"{source}: meta field '{f.name}' must be {kind.__name__}, got {meta[f.name]!r}") from None
        for name, least in (("eval_thoughts", 0), ("max_thoughts", 0), ("max_new_tokens", 1)):
            if name in values and values[name] < least:
                raise CoconutError(f"{source}: meta field '{name}' must be >= {least}, got {values[name]}")
        try:
            layout = LayoutConfig.from_meta(meta)
        except (TypeError, ValueError) as e:
            raise CoconutError(f"{source}: layout fields: {e}") from None
        return cls(layout=layout, **values)


def _usual_permissions(folder: Path) -> None:
    """Give every file in `folder` the mode a plain write gets (0666 less the umask): some writers use 0600."""
    umask = os.umask(0)
    os.umask(umask)
    for f in folder.iterdir():
        if f.is_file():
            os.chmod(f, 0o666 & ~umask)


def save_checkpoint(
    folder: str | os.PathLike,
    write_model: Callable[[Path], None],
    tokenizer: Any,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Atomically create `folder`: the model (via `write_model(tmp)`), tokenizer, trainer state, manifest.

    An existing folder of the same name is replaced only after the new one is complete.
    """
    final = Path(folder)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        write_model(tmp)
        tokenizer.save_pretrained(tmp)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
        write_manifest(tmp)
        _usual_permissions(tmp)
        if final.exists():
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        # A full disk or a file-size limit surfaces as OSError, as safetensors' SafetensorError, or as
        # torch.save's RuntimeError from its stream writer.
        if isinstance(e, OSError) or type(e).__name__ == "SafetensorError" or \
                (isinstance(e, RuntimeError) and "PytorchStreamWriter" in str(e)):
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CoconutError(f"checkpoint {final}: cannot be written ({type(e).__name__}: {first}); the "
                               f"previous checkpoints are untouched") from None
        raise
    return final


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def clean_stray_checkpoints(run_dir: str | os.PathLike) -> list[str]:
    """Clear what a kill during `save_checkpoint` left in a run folder; return one line per thing done.

    A `.tmp-NAME-PID` folder is a checkpoint being built, a `.old-NAME-PID` one the folder it was
    replacing. If the kill came between the two renames, `NAME` is missing: the new checkpoint is
    moved into place when it is complete (its manifest verifies), else the old one is put back.
    Everything else is deleted, and so are the temporary files of an interrupted `atomic_write_text`.
    Call it only while holding the run folder (`runlock`): another writer's temporaries look the same.
    """
    done: list[str] = []
    for parent in (Path(run_dir), Path(run_dir) / "checkpoints"):
        if not parent.is_dir():
            continue
        stray = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.startswith((".tmp-", ".old-")))
        for p in stray:
            name = p.name[5:].rsplit("-", 1)[0]
            final = parent / name
            if p.exists() and not final.exists() and name:
                new = next((q for q in stray if q.name.startswith(f".tmp-{name}-") and q.exists()), None)
                old = next((q for q in stray if q.name.startswith(f".old-{name}-") and q.exists()), None)
                try:
                    verify_checkpoint(new) if new is not None else None
                except CoconutError:
                    new = None
                keep = new or old
                if keep is not None:
                    os.replace(keep, final)
                    done.append(f"restored {final} from {keep.name}, left by an interrupted checkpoint write")
            if p.exists():
                size = _folder_bytes(p)
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed {p} ({size / 1e6:.1f} MB), left by an interrupted checkpoint write")
        for f in sorted(parent.glob(".*.tmp")):
            if f.is_file():
                f.unlink(missing_ok=True)
                done.append(f"removed {f}, left by an interrupted write")
    return done


def checkpoint_name(global_step: int) -> str:
    """Folder name of the checkpoint after `global_step` optimizer steps."""
    return f"{CKPT_PREFIX}{global_step:08d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Step checkpoints of a run, newest first (complete or not)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CKPT_PREFIX) and p.name[len(CKPT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CKPT_PREFIX):]), reverse=True)


def latest_checkpoint(run_dir: str | os.PathLike, warn: Callable[[str], None] = print) -> Path | None:
    """The newest complete step checkpoint with a trainer state; incomplete ones are reported and skipped."""
    for p in list_checkpoints(run_dir):
        try:
            verify_checkpoint(p)
        except CoconutError as e:
            warn(f"warning: skipping {e}")
            continue
        if (p / TRAINER_STATE).is_file():
            return p
    return None


def load_trainer_state(folder: str | os.PathLike) -> dict[str, Any]:
    """The trainer state of a verified checkpoint."""
    p = verify_checkpoint(folder)
    if not (p / TRAINER_STATE).is_file():
        raise CoconutError(f"checkpoint {p}: has no {TRAINER_STATE}, so training cannot resume from it")
    return torch.load(p / TRAINER_STATE, map_location="cpu", weights_only=True)


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest `keep` (at least 1) step checkpoints."""
    for p in list_checkpoints(run_dir)[max(keep, 1):]:
        shutil.rmtree(p, ignore_errors=True)


def resolve_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """A checkpoint folder, or a run folder's `best/`; a one-line CoconutError otherwise.

    `what` names the path in the message (e.g. "--cot"). A folder counts as a checkpoint when it
    has `coconut.json` or a manifest; `load_model` then checks that it is complete.
    """
    p = Path(path)
    if not p.is_dir():
        raise CoconutError(f"{what} {p}: no such folder")
    for folder in (p, p / "best"):
        if (folder / COCONUT_JSON).is_file() or (folder / MANIFEST).is_file():
            return folder
    steps = list_checkpoints(p)
    hint = f"; its newest step checkpoint is {steps[0]}" if steps else ""
    raise CoconutError(f"{what} {p}: not a checkpoint (no {COCONUT_JSON}) nor a run folder with best/{hint}")


def load_model(path: str | os.PathLike, what: str = "checkpoint", shift_thoughts: ShiftThoughts | None = None):
    """A checkpoint (or a run folder's best/) as (CoconutLM, tokenizer, RunMeta).

    The folder is found by `resolve_checkpoint`; a manifest, when present, is verified first.
    Folders written by `CoconutLM.save_pretrained` alone (no manifest) load too. `shift_thoughts`
    replaces the checkpoint's setting in the loaded model (an inference-time probe of the token
    shift's paths through the thoughts; None: the checkpoint's); a model without a token shift
    refuses any other value than its own, which would change nothing.
    """
    from coconut_lm.data.tokenizer import load_tokenizer
    from coconut_lm.model.coconut import CoconutLM
    from coconut_lm.model.files import read_meta

    p = resolve_checkpoint(path, what)
    if (p / MANIFEST).exists() or not (p / COCONUT_JSON).exists():
        verify_checkpoint(p)
    try:
        model = CoconutLM.from_pretrained(p)
    except CoconutError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors, torch and transformers each raise their own kind
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CoconutError(f"{what} {p}: its weights cannot be read ({type(e).__name__}: {first}); the files may be "
                           f"damaged or truncated (a folder with MANIFEST.json says which)") from None
    check_finite_weights(model, p, what)
    if shift_thoughts is not None and shift_thoughts != model.shift_thoughts:
        if model.token_shift is None:
            raise CoconutError(f"{what} {p}: has no token shift (token_shift 0), so shift_thoughts="
                               f"{shift_thoughts_word(shift_thoughts)} would change nothing; leave it out")
        model.shift_thoughts = shift_thoughts
    meta = RunMeta.from_json(read_meta(p), p / COCONUT_JSON)
    tokenizer = load_tokenizer(p)
    rows = model.base.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise CoconutError(f"{what} {p}: its tokenizer has {len(tokenizer)} tokens but the model's embedding only "
                           f"{rows} rows; the tokenizer files belong to another model")
    return model, tokenizer, meta


def check_finite_weights(model: torch.nn.Module, folder: str | os.PathLike, what: str = "checkpoint") -> None:
    """Refuse weights that hold NaN or infinity (a diverged run, damaged bytes), naming the file and the tensor.

    Each `*.safetensors` file of the folder is read tensor by tensor, so the message names the file;
    a folder without one (e.g. `pytorch_model.bin`) is checked through the loaded `model`.
    """
    from safetensors import safe_open

    folder = Path(folder)

    def refuse(where: Path, name: str) -> CoconutError:
        return CoconutError(f"{what} {where}: weight '{name}' holds non-finite values (NaN or inf); the run "
                            f"diverged or the file is damaged, so it cannot be used")

    files = sorted(folder.glob("*.safetensors"))
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not iterable
                tensor = st.get_tensor(name)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise refuse(f, name)
    if not files:
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise refuse(folder, name)
