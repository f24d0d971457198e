"""Checkpoint folders: atomic creation, manifest verification, latest-complete discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from coconut_lm.data.tokenizer import build_word_tokenizer
from coconut_lm.errors import CoconutError
from coconut_lm.training import checkpoint as ckpt
from coconut_lm.training import manifest

TOK = build_word_tokenizer(["a b c"])


def _write_model(tmp: Path) -> None:
    (tmp / "model.safetensors").write_bytes(b"x" * 100)
    (tmp / "coconut.json").write_text("{}")


def _save(run: Path, step: int) -> Path:
    return ckpt.save_checkpoint(run / "checkpoints" / ckpt.checkpoint_name(step), _write_model, TOK, {"global_step": step})


def test_save_writes_manifest_last_and_verifies(tmp_path):
    p = _save(tmp_path, 3)
    files = json.loads((p / manifest.MANIFEST).read_text())["files"]
    assert {"model.safetensors", "coconut.json", "tokenizer.json", ckpt.TRAINER_STATE} <= set(files)
    assert manifest.verify_checkpoint(p) == p
    assert ckpt.load_trainer_state(p)["global_step"] == 3
    assert not [q for q in p.parent.iterdir() if q.name.startswith(".tmp")]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / manifest.MANIFEST).unlink(), "incomplete"),
        (lambda p: (p / "model.safetensors").write_bytes(b"x" * 50), "has 50 bytes, expected 100"),
        (lambda p: (p / "model.safetensors").write_bytes(b"y" * 100), "corrupt"),
        (lambda p: (p / "coconut.json").unlink(), "coconut.json is missing"),
        (lambda p: (p / manifest.MANIFEST).write_text("{not json"), "unreadable"),
    ],
)
def test_damaged_checkpoints_are_reported_never_loaded(tmp_path, damage, message):
    p = _save(tmp_path, 1)
    damage(p)
    with pytest.raises(CoconutError, match=message):
        manifest.verify_checkpoint(p)
    with pytest.raises(CoconutError):
        ckpt.load_trainer_state(p)


def test_latest_skips_incomplete_and_corrupt(tmp_path):
    _save(tmp_path, 1)
    newer = _save(tmp_path, 2)
    (newer / "model.safetensors").write_bytes(b"z")
    # A folder left by a kill mid-write has no manifest.
    (tmp_path / "checkpoints" / ckpt.checkpoint_name(3)).mkdir()
    warnings: list[str] = []
    found = ckpt.latest_checkpoint(tmp_path, warn=warnings.append)
    assert found is not None and found.name == ckpt.checkpoint_name(1)
    assert len(warnings) == 2 and all("skipping" in w for w in warnings)


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path):
    good = _save(tmp_path, 5)

    def broken(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        ckpt.save_checkpoint(good, broken, TOK, {"global_step": 6})
    assert ckpt.load_trainer_state(good)["global_step"] == 5
    assert not [q for q in good.parent.iterdir() if q.name.startswith(".tmp")]


def test_prune_keeps_newest(tmp_path):
    for s in (1, 2, 3, 4):
        _save(tmp_path, s)
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [ckpt.checkpoint_name(4), ckpt.checkpoint_name(3)]


def test_trainer_state_loads_with_weights_only(tmp_path):
    state = {"optimizer": {"state": {}, "param_groups": []}, "torch_rng": torch.get_rng_state(), "reset_key": None}
    p = ckpt.save_checkpoint(tmp_path / "c", _write_model, TOK, state)
    assert torch.equal(ckpt.load_trainer_state(p)["torch_rng"], state["torch_rng"])


def test_run_meta_round_trips_and_fills_in_what_old_checkpoints_lack():
    from coconut_lm.errors import CoconutError
    from coconut_lm.recipe.methods import LayoutConfig
    from coconut_lm.training.checkpoint import RunMeta

    meta = RunMeta(method="pause", task="gsm8k", layout=LayoutConfig(c_thought=2, pause_tokens=4), epoch=3, stage=1,
                   eval_thoughts=4, max_new_tokens=64)
    flat = meta.to_json()
    assert flat["version"] == RunMeta.VERSION and flat["c_thought"] == 2 and "layout" not in flat
    assert RunMeta.from_json(flat) == meta
    old = RunMeta.from_json({"method": "cot", "stage": 2})  # a checkpoint from before most fields existed
    assert (old.method, old.task, old.eval_thoughts, old.max_thoughts, old.layout) == ("cot", "prosqa", 0, 16,
                                                                                     LayoutConfig())
    with pytest.raises(CoconutError, match="newer"):
        RunMeta.from_json({**flat, "version": RunMeta.VERSION + 1})
    with pytest.raises(CoconutError, match="'eval_thoughts' must be int"):
        RunMeta.from_json({**flat, "eval_thoughts": "many"}, "x/coconut.json")
