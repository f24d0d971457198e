"""The package as a user installs it: a wheel, outside the checkout, runs the demo's help and a one-epoch train."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_trains(tmp_path):
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    # A PEP 517 build in an isolated environment (pip fetches the build backend pyproject.toml names),
    # as `python -m build --wheel` does.
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(wheels)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("coconut_lm-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", "import sys; from coconut_lm.cli import main; sys.exit(main())",
                               *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run([sys.executable, "-c", "import coconut_lm; print(coconut_lm.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where  # the installed copy, not the checkout's
    assert "--methods" in cli("demo", "--help")
    cli("data", "prosqa", "--format", "symbolic", "--nodes", "8", "--min-hops", "2", "--max-hops", "2",
        "--n", "16", "--seed", "0", "--workers", "1", "--out", "train.json")
    cli("train", "train_path=train.json", "val_path=train.json", "method=coconut", "model=micro", "num_epochs=1",
        "batch_size=8", "micro_batch_size=8", "max_new_tokens=4", "max_latent_stage=1", "out_dir=run", "--no-progress")
    assert (work / "run" / "best" / "model.safetensors").is_file()
