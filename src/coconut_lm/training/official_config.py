"""The official Coconut code's YAML format, mapped onto TrainConfig keys.

The official files name the method by booleans (`coconut: True`, `cot`, `no_thoughts`, `no_cot`,
`special_token`) and give a per-GPU batch (`batch_size_training`, `gradient_accumulation_steps`);
`from_official` turns such a dict into our keys, which `config.load_config` then checks like any other.

    raw = from_official(yaml.safe_load(text), "args/gsm_coconut.yaml") if is_official(raw) else raw
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coconut_lm.errors import CoconutError

# Official Coconut YAML keys -> ours (None: read by `from_official` itself, or accepted and ignored).
OFFICIAL_KEYS: dict[str, str | None] = {
    "c_thought": "c_thought", "epochs_per_stage": "epochs_per_stage", "max_latent_stage": "max_latent_stage",
    "pad_latent_to_max": "pad_latent_to_max", "uniform_prob": "uniform_prob", "model_id": "model",
    "load_model_path": "init_from", "seed": "seed", "resume": "start_epoch", "train_path": "train_path",
    "val_path": "val_path", "num_epochs": "num_epochs", "lr": "lr", "weight_decay": "weight_decay",
    "save_path": None, "project": None, "name": None, "only_eval": None, "debug": None, "local": None,
    "local_path": None, "save_only_improve": None, "bf16": None, "reset_optimizer": None,
    "batch_size_training": None, "gradient_accumulation_steps": None, "coconut": None, "cot": None,
    "no_thoughts": None, "no_cot": None, "special_token": None,
}
#: The paper trained on 4 GPUs; the official files give a per-GPU batch, so the global batch assumes 4.
OFFICIAL_WORLD_SIZE = 4
METHOD_FLAGS = ("coconut", "cot", "no_thoughts", "no_cot", "special_token")


def is_official(raw: dict[str, Any]) -> bool:
    """True for a file in the official code's format (it has the method booleans)."""
    return any(k in raw for k in METHOD_FLAGS) and "method" not in raw


def _official_method(flags: dict[str, bool], source: str) -> str:
    # As the official run.py: no_thoughts wins over coconut; special_token puts a token in each thought slot.
    if flags["cot"]:
        return "cot"
    if flags["no_cot"]:
        return "no_cot"
    if flags["no_thoughts"]:
        return "no_thought"
    if flags["special_token"]:
        return "pause_as_thought"
    if flags["coconut"]:
        return "coconut"
    raise CoconutError(f"{source}: official config sets none of coconut/cot/no_cot/no_thoughts/special_token")


def _official_task(raw: dict[str, Any]) -> str | None:
    """The task named by the file's run name or data paths (each task's `official_key`: gsm, prontoqa, ...), if any."""
    from coconut_lm.tasks.registry import TASKS

    text = " ".join(str(raw.get(k, "")) for k in ("name", "train_path", "val_path")).lower()
    return next((task.name for task in TASKS.values() if task.official_key and task.official_key in text), None)


def from_official(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Map an official Coconut YAML dict onto TrainConfig keys."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in OFFICIAL_KEYS:
            raise CoconutError(f"{source}: unknown key '{key}' in an official-format config")
        if OFFICIAL_KEYS[key] is not None and value is not None:
            out[OFFICIAL_KEYS[key]] = value
    if raw.get("only_eval"):
        raise CoconutError(f"{source}: only_eval is set; evaluate a checkpoint with `coconut-lm eval CKPT --data FILE "
                           f"--out DIR --latents K` instead of training")
    out["method"] = _official_method({k: bool(raw.get(k, False)) for k in METHOD_FLAGS}, source)
    task = _official_task(raw)
    if task:
        out["task"] = task
    if raw.get("local") and raw.get("local_path"):
        out["model"] = raw["local_path"]
    if raw.get("save_path"):
        out["out_dir"] = str(Path(str(raw["save_path"])) / str(raw.get("name", "run")))
    micro = int(raw.get("batch_size_training", 32))
    out["micro_batch_size"] = micro
    out["batch_size"] = micro * int(raw.get("gradient_accumulation_steps", 1)) * OFFICIAL_WORLD_SIZE
    out["precision"] = "bf16" if raw.get("bf16") else "fp32"
    # Official reset_optimizer=True builds a new optimizer every epoch; False keeps one for the run.
    if "reset_optimizer" in raw:
        out["reset_optimizer"] = "epoch" if raw["reset_optimizer"] else "never"
    return out
