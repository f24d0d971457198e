"""Shared fixtures: the public validation files in ../shared/data (skipped when absent), a tiny checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a model hub: a name that is not a local folder fails at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Under pytest-xdist (`make test` runs `-n auto`) each worker gets an equal share of the cores, so that
# N workers do not each start a thread per core; subprocesses the tests start inherit the same share.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or max(
        1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    import torch

    torch.set_num_threads(_threads)


def _find_shared_data() -> Path:
    """$COCONUT_SHARED_DATA, else ../shared/data beside the checkout, else /work/shared/data."""
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")]
    if os.environ.get("COCONUT_SHARED_DATA"):
        candidates.insert(0, Path(os.environ["COCONUT_SHARED_DATA"]))
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DATA = _find_shared_data()


def shared_file(rel: str) -> Path:
    """Path of a file under shared/data, or skip the test with the reason."""
    p = SHARED_DATA / rel
    if not p.is_file():
        pytest.skip(f"public data file {p} is not present (set COCONUT_SHARED_DATA to its folder)")
    return p


@pytest.fixture
def prosqa_valid() -> Path:
    return shared_file("prosqa/prosqa_valid.json")


@pytest.fixture
def prontoqa_valid() -> Path:
    return shared_file("prontoqa/prontoqa_valid.json")


@pytest.fixture
def gsm_valid() -> Path:
    return shared_file("gsm8k/gsm_valid.json")


@pytest.fixture
def icot_valid() -> Path:
    return shared_file("gsm8k/icot_valid.txt")


@pytest.fixture
def openai_train() -> Path:
    return shared_file("gsm8k/openai_train.jsonl")


@pytest.fixture(scope="session")
def coconut_checkpoint(tmp_path_factory):
    """A micro Coconut model trained for two steps on generated ProsQA (weights are near random)."""
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prosqa import generate_prosqa
    from coconut_lm.training.config import load_config
    from coconut_lm.training.train import train

    root = tmp_path_factory.mktemp("ckpt")
    save_examples(generate_prosqa(16, seed=0, workers=1), root / "train.json")
    save_examples(generate_prosqa(6, seed=1, workers=1), root / "val.json")
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "prosqa_coconut_tiny.yaml", [
        f"train_path={root / 'train.json'}", f"val_path={root / 'val.json'}", f"out_dir={root / 'run'}", "model=micro",
        "batch_size=8", "micro_batch_size=8", "num_epochs=1", "max_new_tokens=8", "eval_thoughts=2"])
    train(cfg, progress=False, device="cpu")
    return root
