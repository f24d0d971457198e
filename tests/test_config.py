"""Config loading: every shipped preset, overrides, the official format, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from coconut_lm.config import TrainConfig, describe_fields, load_config
from coconut_lm.errors import CoconutError
from coconut_lm.methods import METHODS

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


def test_official_yaml_maps_onto_method_and_fields(tmp_path):
    p = tmp_path / "prosqa_coconut.yaml"
    p.write_text(
        "project: coconut\nsave_path: /tmp/ckpt\nname: prosqa-coconut\nonly_eval: False\n"
        "coconut: True\ncot: False\nno_thoughts: False\nno_cot: False\n"
        "c_thought: 1\nepochs_per_stage: 5\nmax_latent_stage: 6\npad_latent_to_max: True\n"
        "save_only_improve: False\nuniform_prob: 0.0\nmodel_id: openai-community/gpt2\n"
        "load_model_path: None\nseed: 0\nresume: 0\nbf16: False\ntrain_path: data/prosqa_train.json\n"
        "val_path: data/prosqa_valid.json\nreset_optimizer: True\nbatch_size_training: 32\ndebug: False\n"
        "gradient_accumulation_steps: 1\nnum_epochs: 50\nlr: !!float 1e-4\nweight_decay: 0.01\n"
    )
    cfg = load_config(p)
    assert cfg.method == "coconut"
    assert (cfg.c_thought, cfg.epochs_per_stage, cfg.max_latent_stage, cfg.pad_latent_to_max) == (1, 5, 6, True)
    assert (cfg.micro_batch_size, cfg.batch_size, cfg.reset_optimizer) == (32, 128, "epoch")
    assert cfg.model == "openai-community/gpt2" and cfg.init_from is None and cfg.out_dir == "/tmp/ckpt"
    p.write_text("coconut: True\nno_thoughts: True\n")
    assert load_config(p).method == "no_thought"
    p.write_text("cot: True\nbogus_key: 1\n")
    with pytest.raises(CoconutError, match="unknown key 'bogus_key'"):
        load_config(p)


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
