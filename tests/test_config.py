"""Config loading: every shipped preset, overrides, the official format, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from coconut_lm.errors import CoconutError
from coconut_lm.recipe.methods import METHODS
from coconut_lm.training.config import TrainConfig, describe_fields, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_presets_for_every_task_and_method():
    names = {p.stem for p in CONFIGS}
    for task in ("prosqa", "prontoqa", "gsm8k"):
        for method in METHODS:
            assert f"{task}_{method}" in names, f"missing configs/{task}_{method}.yaml"
            assert f"{task}_{method}_tiny" in names, f"missing configs/{task}_{method}_tiny.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_preset_loads(path):
    cfg = load_config(path)
    assert cfg.method in METHODS
    assert cfg.task in path.stem


def test_overrides_are_typed():
    cfg = load_config(None, ["lr=3e-4", "num_epochs=7", "pad_latent_to_max=true", "eval_thoughts=null", "method=cot"])
    assert (cfg.lr, cfg.num_epochs, cfg.pad_latent_to_max, cfg.eval_thoughts, cfg.method) == (3e-4, 7, True, None, "cot")


def test_shift_thoughts_takes_a_bool_or_one_path(tmp_path):
    """shift_thoughts is true, false, receive or send, from the command line and from YAML; None stays None."""
    for text, want in (("true", True), ("no", False), ("receive", "receive"), ("send", "send"), ("null", None)):
        assert load_config(None, [f"shift_thoughts={text}"]).shift_thoughts == want
    p = tmp_path / "c.yaml"
    p.write_text("shift_thoughts: send\n")
    assert load_config(p).shift_thoughts == "send"


def test_unknown_key_suggests_the_nearest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: coconut\nepoch_per_stage: 3\n")
    with pytest.raises(CoconutError, match=r"unknown config key 'epoch_per_stage'; did you mean 'epochs_per_stage'\?"):
        load_config(p)
    with pytest.raises(CoconutError, match="command line: unknown config key 'lrr'; did you mean 'lr'"):
        load_config(None, ["lrr=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method=coconutt", "'method': 'coconutt' is not one of"),
        ("num_epochs=abc", "'num_epochs' expects int"),
        ("uniform_prob=2", "'uniform_prob': must be in"),
        ("batch_size=0", "'batch_size': must be >= 1"),
        ("noequals", "is not key=value"),
    ],
)
def test_bad_values_are_one_line_errors(override, message):
    with pytest.raises(CoconutError, match=message):
        load_config(None, [override])


# The official repository's args/gsm_coconut.yaml, as published (placeholders included).
OFFICIAL_GSM = """# need 4 gpus

project: coconut
save_path: YOUR_PATH_TO_SAVE_THE_MODEL
name: gsm-coconut

local: True
local_path: /home/someone/models--openai-community--gpt2/snapshots/abc

only_eval: False

coconut: True
special_token: False
cot: False
no_thoughts: False
no_cot: False

c_thought: 2
epochs_per_stage: 3
max_latent_stage: 3
pad_latent_to_max: True

save_only_improve: False
uniform_prob: 0.0
model_id: openai-community/gpt2
load_model_path: YOUR_PATH_TO_SAVE_THE_MODEL/gsm-cot/checkpoint_22
seed: 0
resume: 3
bf16: False
train_path: data/gsm_train.json
val_path: data/gsm_valid.json
reset_optimizer: True
batch_size_training: 32
debug: False
gradient_accumulation_steps: 1
num_epochs: 25
lr: !!float "1e-4"
weight_decay: 0.01
"""


def test_official_yaml_maps_onto_method_and_fields(tmp_path):
    p = tmp_path / "gsm_coconut.yaml"
    p.write_text(OFFICIAL_GSM)
    cfg = load_config(p)
    assert (cfg.method, cfg.task, cfg.precision) == ("coconut", "gsm8k", "fp32")
    assert (cfg.c_thought, cfg.epochs_per_stage, cfg.max_latent_stage, cfg.pad_latent_to_max) == (2, 3, 3, True)
    assert (cfg.micro_batch_size, cfg.batch_size, cfg.reset_optimizer, cfg.start_epoch) == (32, 128, "epoch", 3)
    assert cfg.model == "/home/someone/models--openai-community--gpt2/snapshots/abc"  # local: True
    assert cfg.init_from == "YOUR_PATH_TO_SAVE_THE_MODEL/gsm-cot/checkpoint_22"
    assert cfg.out_dir == "YOUR_PATH_TO_SAVE_THE_MODEL/gsm-coconut"
    assert (cfg.lr, cfg.weight_decay, cfg.num_epochs) == (1e-4, 0.01, 25)


@pytest.mark.parametrize(
    ("flags", "method"),
    [
        ("coconut: True\nno_thoughts: True\n", "no_thought"),
        ("coconut: False\nno_thoughts: True\n", "no_thought"),
        ("coconut: False\nspecial_token: True\n", "pause_as_thought"),
        ("cot: True\n", "cot"),
        ("no_cot: True\n", "no_cot"),
    ],
)
def test_official_method_flags(tmp_path, flags, method):
    p = tmp_path / "prosqa_x.yaml"
    p.write_text(flags + "train_path: data/prosqa_train.json\n")
    cfg = load_config(p)
    assert cfg.method == method and cfg.task == "prosqa"


def test_official_yaml_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cot: True\nbogus_key: 1\n")
    with pytest.raises(CoconutError, match="unknown key 'bogus_key'"):
        load_config(p)
    p.write_text("coconut: True\nonly_eval: True\n")
    with pytest.raises(CoconutError, match="only_eval is set; evaluate a checkpoint with `coconut-lm eval"):
        load_config(p)
    p.write_text("coconut: False\n")
    with pytest.raises(CoconutError, match="sets none of"):
        load_config(p)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("log_every=0", "'log_every': must be >= 1"),
        ("max_steps_per_epoch=0", "'max_steps_per_epoch': must be >= 1"),
        ("keep_last=0", "'keep_last': must be >= 1"),
        ("grad_clip=-1", "'grad_clip': must be >= 0"),
        ("betas=[0.9]", "'betas': expects two numbers"),
        ("dropout=1.5", "'dropout': must be in"),
        ("activation=swish2", "'activation': 'swish2' is not an HF activation"),
        ("max_train_seconds=0", "'max_train_seconds': must be > 0"),
        ("eval_use_classifier=true", "needs eot_classifier=true"),
        (["method=pause", "eot_classifier=true"], "method pause has no continuous thoughts"),
        (["method=pause_as_thought", "eot_classifier=true"], "method pause_as_thought has no continuous thoughts"),
        ("shift_thoughts=maybe", "'shift_thoughts': 'maybe' is not one of true, false, receive, send"),
        ("shift_thoughts=1", "'shift_thoughts': '1' is not one of"),
    ],
)
def test_range_checks(override, message):
    with pytest.raises(CoconutError, match=message):
        load_config(None, override if isinstance(override, list) else [override])


def test_presets_train_and_evaluate_with_the_same_thought_count():
    """Evaluation uses max_latent_stage*c thoughts; every training example at that stage must get as many."""
    for path in CONFIGS:
        cfg = load_config(path)
        if cfg.method in ("coconut", "no_curriculum", "pause_as_thought"):
            assert cfg.pad_latent_to_max, path.name


def test_describe_fields_documents_every_field():
    text = describe_fields()
    for name in TrainConfig.__dataclass_fields__:
        assert f"  {name} (" in text


def test_malformed_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("method: [unclosed\n")
    with pytest.raises(CoconutError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(CoconutError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_configuration_docs_are_current():
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_docs", root / "scripts" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (root / "docs" / "configuration.md").read_text() == module.render(), "run: python scripts/make_docs.py"


def test_presets_are_current():
    import importlib.util

    import yaml

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_configs", root / "scripts" / "make_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path in CONFIGS:
        task, rest = path.stem.split("_", 1)
        tiny = rest.endswith("_tiny")
        method = rest[: -len("_tiny")] if tiny else rest
        want = (module.tiny if tiny else module.full)(task, method)
        assert yaml.safe_load(path.read_text()) == want, f"{path.name} is stale: run python scripts/make_configs.py"


def test_every_preset_value_says_where_it_comes_from():
    for path in CONFIGS:
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                value, _, source = line.partition("  # ")
                assert source.strip(), f"{path.name}: '{value}' has no source comment"


@pytest.mark.parametrize("task", ["prosqa", "prontoqa", "gsm8k"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_paper_presets_follow_the_official_recipe(task, method):
    cfg = load_config(CONFIGS[0].parent / f"{task}_{method}.yaml")
    # Official Coconut: no clipping, fp32 (bf16: False), 64 new tokens for GSM8k and 128 otherwise;
    # iCoT's own code clips at 1.0.
    assert cfg.grad_clip == (1.0 if method == "icot" else 0.0)
    assert cfg.precision == "fp32"
    assert cfg.max_new_tokens == (64 if task == "gsm8k" else 128)
    # GSM8k Coconut resumes from a CoT model at stage 1 (official resume: 3 with epochs_per_stage 3).
    starts_from_cot = task == "gsm8k" and method == "coconut"
    assert (cfg.init_from is not None, cfg.start_epoch) == ((True, 3) if starts_from_cot else (False, 0))
    if starts_from_cot:
        assert cfg.start_epoch == cfg.epochs_per_stage
    if task == "gsm8k" and method == "icot":  # iCoT's GSM8K settings
        assert (cfg.icot_max_removed, cfg.icot_delta, cfg.lr, cfg.batch_size) == (39, 8.0, 5e-5, 32)
