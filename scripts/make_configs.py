"""Write configs/<task>_<method>[_tiny].yaml for every task and method from one table.

    python scripts/make_configs.py          # rewrites configs/*.yaml

The full presets follow the paper's settings (its section 4 and appendix, and the official args/*.yaml); the *_tiny presets train a tiny
from-scratch model on CPU in a few minutes. Edit this file, not the YAMLs, to change a preset.
"""

from __future__ import annotations

from pathlib import Path

import yaml

METHODS = ["cot", "no_cot", "icot", "pause", "coconut", "no_curriculum", "no_thought", "pause_as_thought"]

# Where the paper presets' values come from: the paper (Hao et al. 2024, section numbers), the
# official code (facebookresearch/coconut: args/<task>_coconut.yaml, run.py) and, for iCoT, its own
# code (da03/Internalize_CoT_Step_by_Step: README commands, src/train.py defaults).
OFFICIAL_ARGS = {"prosqa": "args/prosqa_coconut.yaml", "prontoqa": "args/prontoqa_coconut.yaml",
                 "gsm8k": "args/gsm_coconut.yaml"}
# Paper settings per task: c thoughts per step, latent stages, epochs per stage, epochs.
PAPER = {
    "prosqa": dict(c_thought=1, max_latent_stage=6, epochs_per_stage=5, num_epochs=50),
    "prontoqa": dict(c_thought=1, max_latent_stage=6, epochs_per_stage=5, num_epochs=50),
    "gsm8k": dict(c_thought=2, max_latent_stage=3, epochs_per_stage=3, num_epochs=25),
}
MAX_NEW_TOKENS = {"prosqa": 128, "prontoqa": 128, "gsm8k": 64}  # official run.py: 64 if "gsm" in val_path else 128
DATA = {
    "prosqa": ("data/prosqa_train.json", "data/prosqa_valid.json",
               "coconut-lm data prosqa --n 17886 --seed 0 --out data/prosqa_train.json; cp ../shared/data/prosqa/prosqa_valid.json data/"),
    "prontoqa": ("data/prontoqa_train.json", "data/prontoqa_valid.json",
                 "coconut-lm data prontoqa --n 9000 --seed 0 --out data/prontoqa_train.json; cp ../shared/data/prontoqa/prontoqa_valid.json data/"),
    "gsm8k": ("data/gsm_train.json", "data/gsm_valid.json",
              "coconut-lm data gsm8k --from ../shared/data/gsm8k/openai_train.jsonl --exclude ../shared/data/gsm8k/gsm_valid.json --out data/gsm_train.json; cp ../shared/data/gsm8k/gsm_valid.json data/"),
}
TINY_DATA = {
    "prosqa": ("data/prosqa_train_tiny.json", "data/prosqa_val_tiny.json",
               "coconut-lm data prosqa --n 2000 --seed 0 --out data/prosqa_train_tiny.json; coconut-lm data prosqa --n 200 --seed 1 --out data/prosqa_val_tiny.json"),
    "prontoqa": ("data/prontoqa_train_tiny.json", "data/prontoqa_val_tiny.json",
                 "coconut-lm data prontoqa --n 2000 --seed 0 --out data/prontoqa_train_tiny.json; coconut-lm data prontoqa --n 200 --seed 1 --out data/prontoqa_val_tiny.json"),
    "gsm8k": ("data/gsm_train.json", "data/gsm_valid.json", DATA["gsm8k"][2]),
}
#: The CoT run whose best/ starts GSM8k Coconut (train configs/gsm8k_cot.yaml with out_dir=this first).
GSM8K_COT_RUN = "runs/gsm8k_cot/best"
TINY = "tiny preset: sized for a CPU, not the paper"

Sourced = dict[str, tuple[object, str]]


def full_sourced(task: str, method: str) -> Sourced:
    """Every key of the paper preset `task`_`method` with the source of its value."""
    off = f"official {OFFICIAL_ARGS[task]}"
    train, val, _ = DATA[task]
    paper = PAPER[task]
    cfg: Sourced = {
        "task": (task, "the task"),
        "method": (method, "the method (paper section 4.3 lists the baselines)"),
        "train_path": (train, "made by the Data line above"),
        "val_path": (val, "the official validation split"),
        "model": ("gpt2-124m", "section 4.1: GPT-2 (124M), from scratch; model=openai-community/gpt2 for the pretrained start"),
        "max_length": (1024, "GPT-2's context length"),
        "c_thought": (paper["c_thought"], f"{off}: c_thought (section 4.1: c thoughts per reasoning step)"),
        "max_latent_stage": (paper["max_latent_stage"], f"{off}: max_latent_stage"),
        "epochs_per_stage": (paper["epochs_per_stage"], f"{off}: epochs_per_stage"),
        "num_epochs": (paper["num_epochs"], f"{off}: num_epochs (every method trains as long)"),
        "pause_tokens": (paper["max_latent_stage"] * paper["c_thought"],
                         "section 4.3: as many <pause> tokens as Coconut has thoughts (max_latent_stage*c)"),
        "max_new_tokens": (MAX_NEW_TOKENS[task], "official run.py: 64 new tokens for GSM8k, 128 otherwise"),
        "pad_latent_to_max": (True, f"{off}: pad_latent_to_max"),
        "lr": (1e-4, f"{off}: lr"),
        "weight_decay": (0.01, f"{off}: weight_decay"),
        "batch_size": (128, f"{off}: batch_size_training 32 on each of 4 GPUs, no accumulation"),
        "micro_batch_size": (32, "32 rows per forward, as on each official GPU"),
        "grad_clip": (0.0, "the official code does not clip gradients"),
        "precision": ("fp32", f"{off}: bf16: False"),
        "reset_optimizer": ("stage", f"{off}: reset_optimizer: True (it resets every epoch; here once per stage, docs/methods.md)"),
        "eval_batch_size": (128, "generation batch; greedy results do not depend on it"),
        "seed": (0, f"{off}: seed"),
    }
    if task == "gsm8k" and method == "coconut":
        cfg["init_from"] = (GSM8K_COT_RUN, f"{off}: load_model_path, a GSM8k CoT checkpoint (train gsm8k_cot first)")
        cfg["start_epoch"] = (paper["epochs_per_stage"], f"{off}: resume: 3, so the curriculum starts at stage 1")
    if method == "icot":
        icot = "iCoT (da03/Internalize_CoT_Step_by_Step)"
        cfg.update(
            icot_delta=(8.0, f"{icot}: remove_per_epoch 8"),
            icot_lambda=(4.0, f"{icot}: removal_smoothing_lambda 4"),
            grad_clip=(1.0, f"{icot} src/train.py: max_grad_norm 1.0"),
            reset_optimizer=("stage", f"{icot}: --reset_optimizer, a fresh AdamW whenever the removal count grows"),
        )
        if task == "gsm8k":
            cfg.update(
                icot_max_removed=(39, f"{icot} GSM8K command: remove_all_when_remove_beyond 39"),
                num_epochs=(80, f"{icot} GSM8K command: 80 epochs"),
                lr=(5e-5, f"{icot} GPT-2 command and src/train.py default: lr 5e-5"),
                batch_size=(32, f"{icot} GPT-2 command: batch_size 32, accumulate 1"),
                micro_batch_size=(32, f"{icot} GPT-2 command: batch_size 32"),
            )
    return cfg


def tiny_sourced(task: str, method: str) -> Sourced:
    """The tiny CPU preset: the paper preset with a small model, short schedule and a clipped from-scratch start."""
    train, val, _ = TINY_DATA[task]
    cfg = full_sourced(task, method)
    for key in ("init_from", "start_epoch", "precision", "icot_max_removed"):
        cfg.pop(key, None)
    overrides = dict(train_path=train, val_path=val, model="tiny", max_length=512 if task != "gsm8k" else 384,
                     num_epochs=6, epochs_per_stage=1, max_latent_stage=3, pause_tokens=3 * PAPER[task]["c_thought"],
                     lr=1e-3, batch_size=32, micro_batch_size=32, eval_batch_size=100, val_max_examples=100,
                     warmup_steps=10, grad_clip=1.0)
    if method == "icot":
        overrides["icot_delta"] = 12.0
    cfg.update({k: (v, TINY) for k, v in overrides.items()})
    return cfg


def full(task: str, method: str) -> dict:
    """The paper preset as a config dict."""
    return {k: v for k, (v, _) in full_sourced(task, method).items()}


def tiny(task: str, method: str) -> dict:
    """The tiny CPU preset as a config dict."""
    return {k: v for k, (v, _) in tiny_sourced(task, method).items()}


def render(cfg: Sourced) -> str:
    """YAML with each key's source as a trailing comment."""
    return "".join(f"{yaml.safe_dump({k: v}).strip()}  # {src}\n" for k, (v, src) in cfg.items())


HEADER = """# {name}: {what}
# Method {method} on {task}. Every key is documented by `coconut-lm train --help-config`; the comment
# after each value says where it comes from (the paper, the official code, or this preset).
# Data: {data}
# Run: coconut-lm train configs/{name}.yaml [key=value ...]
"""


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "configs"
    out.mkdir(exist_ok=True)
    for task in PAPER:
        for method in METHODS:
            for suffix, build, what, data in (
                ("", full_sourced, "the paper's settings (GPT-2 124M architecture from scratch; model=openai-community/gpt2 for the pretrained start)", DATA[task][2]),
                ("_tiny", tiny_sourced, "a tiny from-scratch model that trains on CPU in a few minutes", TINY_DATA[task][2]),
            ):
                name = f"{task}_{method}{suffix}"
                text = HEADER.format(name=name, what=what, method=method, task=task, data=data)
                text += render(build(task, method))
                (out / f"{name}.yaml").write_text(text)
    print(f"wrote {len(PAPER) * len(METHODS) * 2} configs to {out}")


if __name__ == "__main__":
    main()
