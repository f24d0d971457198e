"""The files of a CoconutLM folder: an HF model folder plus `coconut.json` and the extra weights.

`AutoModelForCausalLM.from_pretrained` alone loads the backbone; `coconut.json` holds the special
token ids, whether an `<eot>` classifier and a token shift exist, and the trainer's `meta`; the
classifier and the token shift are `eot_head.safetensors` and `token_shift.safetensors`.
`CoconutLM.save_pretrained` / `from_pretrained` call `save_folder` / `load_folder`.

A LoRA model (`lora.lora_info(model)`) saves no backbone: `adapter.safetensors` holds its adapters and token
rows, and `coconut.json`'s `lora` field the base to rebuild it from; `load_folder` loads that base,
checks it is the one the adapters were trained on, and puts them back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from coconut_lm.errors import CoconutError
from coconut_lm.model.lora import ADAPTER_FILE, LoraInfo, lora_info
from coconut_lm.model.shift_modes import ShiftThoughts, is_shift_thoughts
from coconut_lm.recipe.tokens import SpecialTokens

M = TypeVar("M", bound=nn.Module)  # CoconutLM, which imports this module

COCONUT_JSON = "coconut.json"
EOT_HEAD_FILE = "eot_head.safetensors"
TOKEN_SHIFT_FILE = "token_shift.safetensors"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointInfo:
    """The contents of a checkpoint's `coconut.json`."""

    tokens: SpecialTokens
    eot_classifier: bool
    meta: dict[str, Any]
    token_shift: int = 0
    shift_thoughts: ShiftThoughts = True
    lora: LoraInfo | None = None  # a LoRA checkpoint: adapters on this base, no backbone weights of its own


def save_folder(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None,
                state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write `model` as an HF folder (loadable by `AutoModelForCausalLM` alone) plus `coconut.json`.

    `state_dict` (the model's keys, e.g. gathered from FSDP shards) replaces the live weights.

    Everything is written into a temporary sibling folder first. A new folder then appears by
    one rename; into an existing folder each file moves by `os.replace`, `coconut.json` last,
    and stale weight files of an earlier save are removed. Other files (the tokenizer, the
    trainer state) are left alone.
    """
    path = Path(path)
    lora = lora_info(model)
    try:
        info = json.dumps({"format": FORMAT_VERSION, "tokens": model.tokens.to_dict(),
                           "eot_classifier": model.eot_head is not None,
                           "token_shift": model.shift_width, "shift_thoughts": model.shift_thoughts,
                           "meta": meta or {}, **({"lora": lora.to_dict()} if lora else {})},
                          indent=2, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise CoconutError(f"checkpoint meta for {path} is not JSON-serialisable: {e}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        if lora is not None:
            from safetensors.torch import save_file

            from coconut_lm.model.lora import lora_state

            save_file(lora_state(model, state_dict), str(tmp / ADAPTER_FILE))
        else:
            with _no_hf_progress():
                base_sd = None if state_dict is None else _sub_state(state_dict, "base.")
                model.base.save_pretrained(tmp, state_dict=base_sd)
        for name, file in (("eot_head", EOT_HEAD_FILE), ("token_shift", TOKEN_SHIFT_FILE)):
            module = getattr(model, name)
            if module is None:
                continue
            from safetensors.torch import save_file

            sd = module.state_dict() if state_dict is None else _sub_state(state_dict, f"{name}.")
            save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, str(tmp / file))
        (tmp / COCONUT_JSON).write_text(info + "\n")
        if not path.exists():
            os.replace(tmp, path)
            return
        written = {f.name for f in tmp.iterdir()}
        for f in sorted(tmp.iterdir(), key=lambda f: f.name == COCONUT_JSON):
            os.replace(f, path / f.name)
        for old in path.iterdir():
            if old.name not in written and _is_weight_file(old.name):
                old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_folder(cls: type[M], path: str | os.PathLike, **load_kwargs: Any) -> M:
    """A `cls` (CoconutLM) from a folder written by `save_folder`; keyword arguments go to the backbone loader."""
    from coconut_lm.model.backbone import load_backbone

    info = read_checkpoint_info(path)
    with _no_hf_progress():
        base = load_backbone(path, **load_kwargs) if info.lora is None else _lora_base(path, info.lora, **load_kwargs)
    model = cls(base, info.tokens, eot_classifier=info.eot_classifier, token_shift=info.token_shift,
                shift_thoughts=info.shift_thoughts)
    if info.lora is not None:
        _put_adapters_back(model, path, info.lora)
    for name, file, what in (("eot_head", EOT_HEAD_FILE, "a classifier"), ("token_shift", TOKEN_SHIFT_FILE, "a token shift")):
        module = getattr(model, name)
        if module is None:
            continue
        from safetensors.torch import load_file

        f = Path(path) / file
        if not f.is_file():
            raise CoconutError(f"{f}: missing, but {COCONUT_JSON} says the checkpoint has {what}")
        param = next(base.parameters())
        module.load_state_dict({k: v.to(param.dtype) for k, v in load_file(str(f)).items()})
    return model


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """Read and validate `coconut.json` in a checkpoint folder."""
    f = Path(path) / COCONUT_JSON
    if not f.is_file():
        raise CoconutError(f"{f}: not found; {path} is not a coconut-lm checkpoint")
    try:
        d = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CoconutError(f"{f}: cannot read JSON: {e}") from None
    for key, kind in (("tokens", dict), ("eot_classifier", bool), ("meta", dict)):
        if not isinstance(d.get(key), kind):
            raise CoconutError(f"{f}: field '{key}' must be a {kind.__name__}")
    try:
        tokens = SpecialTokens.from_dict(d["tokens"])
    except (KeyError, TypeError, ValueError) as e:
        raise CoconutError(f"{f}: field 'tokens' is incomplete or not integers: {e}") from None
    shift = d.get("token_shift", 0)  # absent in checkpoints written before the option existed
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise CoconutError(f"{f}: field 'token_shift' must be a whole number >= 0")
    shift_thoughts = d.get("shift_thoughts", True)  # absent before the option existed: the shift acted everywhere
    if not is_shift_thoughts(shift_thoughts):
        raise CoconutError(f"{f}: field 'shift_thoughts' must be true, false, \"receive\" or \"send\"")
    lora = None if d.get("lora") is None else LoraInfo.from_dict(d["lora"], str(f))
    return CheckpointInfo(tokens=tokens, eot_classifier=d["eot_classifier"], meta=d["meta"], token_shift=shift,
                          shift_thoughts=shift_thoughts, lora=lora)


#: Relative difference of the base checksum that still counts as the same weights (reduction order, device).
CHECKSUM_RTOL = 1e-6


def _lora_base(path: str | os.PathLike, lora: LoraInfo, **load_kwargs: Any) -> nn.Module:
    """The backbone a LoRA checkpoint's adapters belong to: loaded, resized to the trained vocabulary, and checked."""
    from coconut_lm.model.backbone import hub_offline, load_backbone
    from coconut_lm.model.lora import base_checksum

    if not (Path(path) / ADAPTER_FILE).is_file():
        raise CoconutError(f"{Path(path) / ADAPTER_FILE}: missing, but {COCONUT_JSON} says the checkpoint holds "
                           f"LoRA adapters")
    local = Path(lora.base).exists()
    if not local and hub_offline():
        load_kwargs = {"local_files_only": True, **load_kwargs}
    try:
        base = load_backbone(lora.base, **load_kwargs)
    except CoconutError as e:
        raise CoconutError(f"{path}: holds LoRA adapters for the base model '{lora.base}', which cannot be loaded "
                           f"({e}); the adapters need the model they were trained on") from None
    rows = base.get_input_embeddings().weight.shape[0]
    if rows > lora.vocab_rows:
        raise CoconutError(f"{path}: its LoRA base '{lora.base}' has {rows} embedding rows, more than the "
                           f"{lora.vocab_rows} it was trained with; it is another model")
    if rows < lora.vocab_rows:  # the added tokens: their values come from the adapter file
        with torch.random.fork_rng(devices=[]):
            base.resize_token_embeddings(lora.vocab_rows, mean_resizing=False)
    if lora.checksum is not None:
        now = base_checksum(base, lora.rows)
        if abs(now - lora.checksum) > CHECKSUM_RTOL * max(abs(lora.checksum), 1e-12):
            raise CoconutError(f"{path}: its LoRA base '{lora.base}' is not the model the adapters were trained on "
                               f"(its weights' checksum is {now:.9g}, the checkpoint's {lora.checksum:.9g}); restore "
                               f"that model, or use a merged export of the run")
    return base


def _put_adapters_back(model: nn.Module, path: str | os.PathLike, lora: LoraInfo) -> None:
    """Adapt a freshly built CoconutLM with `lora` and load its adapters and token rows from the folder."""
    from safetensors.torch import load_file

    from coconut_lm.model.lora import apply_lora, load_lora_state

    with torch.random.fork_rng(devices=[]):  # the adapters' random init is overwritten: leave the RNG as it was
        apply_lora(model, lora)
    f = Path(path) / ADAPTER_FILE
    param = next(model.base.parameters())
    load_lora_state(model, {k: v.to(param.dtype) for k, v in load_file(str(f)).items()}, str(f))


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The `meta` dict the trainer saved with a checkpoint (method, stage, c, eval settings)."""
    return read_checkpoint_info(path).meta


@contextlib.contextmanager
def _no_hf_progress():
    """Silence HF's per-call progress bars (weight loading and saving) that flood training logs."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `state` under `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _is_weight_file(name: str) -> bool:
    return name == ADAPTER_FILE or name.startswith(("model", "pytorch_model")) and (
        name.endswith((".safetensors", ".bin")) or name.endswith(".index.json"))
