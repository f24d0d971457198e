"""Write configs/<task>_<method>[_tiny].yaml for every task and method from one table.

    python scripts/make_configs.py          # rewrites configs/*.yaml

The full presets follow the paper's settings (DESIGN.md §1); the *_tiny presets train a tiny
from-scratch model on CPU in a few minutes. Edit this file, not the YAMLs, to change a preset.
"""

from __future__ import annotations

from pathlib import Path

import yaml

METHODS = ["cot", "no_cot", "icot", "pause", "coconut", "no_curriculum", "no_thought", "pause_as_thought"]

# Paper settings per task: c thoughts per step, latent stages, epochs per stage, epochs.
PAPER = {
    "prosqa": dict(c_thought=1, max_latent_stage=6, epochs_per_stage=5, num_epochs=50, pause_tokens=6, max_new_tokens=128),
    "prontoqa": dict(c_thought=1, max_latent_stage=6, epochs_per_stage=5, num_epochs=50, pause_tokens=6, max_new_tokens=128),
    "gsm8k": dict(c_thought=2, max_latent_stage=3, epochs_per_stage=3, num_epochs=25, pause_tokens=6, max_new_tokens=256),
}
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
# Method-specific settings (the same for every task unless a task overrides them).
METHOD_EXTRA = {
    "icot": dict(icot_delta=8.0, icot_lambda=4.0),
    "pause": {},
    "coconut": {},
}


def full(task: str, method: str) -> dict:
    train, val, _ = DATA[task]
    cfg = dict(task=task, method=method, train_path=train, val_path=val, model="gpt2-124m", max_length=1024)
    cfg.update(PAPER[task])
    # As the official configs: every example gets the stage's full count of thoughts, so training
    # (k*c thoughts at stage k) and evaluation (max_latent_stage*c) use the same number.
    cfg["pad_latent_to_max"] = True
    cfg.update(lr=1e-4, weight_decay=0.01, batch_size=128, micro_batch_size=32, reset_optimizer="stage",
               eval_batch_size=128, seed=0)
    if method in ("cot", "no_cot", "pause"):
        cfg["num_epochs"] = PAPER[task]["num_epochs"]
    cfg.update(METHOD_EXTRA.get(method, {}))
    return cfg


def tiny(task: str, method: str) -> dict:
    train, val, _ = TINY_DATA[task]
    cfg = full(task, method)
    cfg.update(train_path=train, val_path=val, model="tiny", max_length=512 if task != "gsm8k" else 384,
               num_epochs=6, epochs_per_stage=1, max_latent_stage=3, pause_tokens=3 * PAPER[task]["c_thought"],
               lr=1e-3, batch_size=32, micro_batch_size=32, eval_batch_size=100, val_max_examples=100, warmup_steps=10)
    if method == "icot":
        cfg.update(icot_delta=12.0)
    return cfg


HEADER = """# {name}: {what}
# Method {method} on {task}. Every key is documented by `coconut-lm train --help-config`.
# Data: {data}
# Run: coconut-lm train configs/{name}.yaml [key=value ...]
"""


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "configs"
    out.mkdir(exist_ok=True)
    for task in PAPER:
        for method in METHODS:
            for suffix, build, what, data in (
                ("", full, "the paper's settings (GPT-2 124M architecture from scratch; model=openai-community/gpt2 for the pretrained start)", DATA[task][2]),
                ("_tiny", tiny, "a tiny from-scratch model that trains on CPU in a few minutes", TINY_DATA[task][2]),
            ):
                name = f"{task}_{method}{suffix}"
                text = HEADER.format(name=name, what=what, method=method, task=task, data=data)
                text += yaml.safe_dump(build(task, method), sort_keys=False)
                (out / f"{name}.yaml").write_text(text)
    print(f"wrote {len(PAPER) * len(METHODS) * 2} configs to {out}")


if __name__ == "__main__":
    main()
