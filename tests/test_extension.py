"""A new method with a new schedule kind, and a new task, each added in one place, train a step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coconut_lm.model.coconut import read_meta
from coconut_lm.recipe import methods
from coconut_lm.recipe.curriculum import Schedule
from coconut_lm.recipe.methods import METHODS, Coconut, register_method
from coconut_lm.tasks import registry
from coconut_lm.tasks.examples import Example, save_examples
from coconut_lm.tasks.registry import TASKS, Task, register_task
from coconut_lm.training.config import load_config
from coconut_lm.training.train import train


class EveryOtherEpoch(Schedule):
    """A toy schedule kind: stage 0 on even epochs, stage 1 on odd ones."""

    kind = "alternating"
    staged = True

    def positions(self, cfg, epoch, step_frac, n_steps, n_chain_tokens, rng):
        return np.full(len(n_steps), epoch % 2, dtype=np.int64)

    def reset_key(self, cfg, epoch, step_frac, longest_chain=None):
        return epoch % 2

    def eval_position(self, cfg, epoch):
        return epoch % 2

    def stage(self, cfg, epoch):
        return epoch % 2

    def val_thoughts(self, cfg, epoch, slots_per_stage, final):
        return (epoch % 2) * slots_per_stage


class Alternating(Coconut):
    name = "toy_alternating"
    label = "toy"
    schedule = EveryOtherEpoch()


def _echo_examples(n: int, seed: int) -> list[Example]:
    """A toy task: repeat the last of four letters; one step names it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        letters = [str(c) for c in rng.choice(list("abcdef"), size=4)]
        out.append(Example(question=" ".join(letters) + " last ?", steps=[f"it is {letters[-1]}"], answer=letters[-1]))
    return out


@pytest.fixture
def toy_registrations():
    method = register_method(Alternating())
    task = register_task(Task("toy_echo", "Echo", lambda text: text.strip().lower(),
                              lambda exs: all(len(ex.answer) == 1 for ex in exs), paper={"coconut": (100.0, None)}))
    yield method, task
    del METHODS[method.name], TASKS[task.name]


def test_new_method_and_task_train_in_one_place(tmp_path, toy_registrations):
    save_examples(_echo_examples(16, 0), tmp_path / "train.json")
    save_examples(_echo_examples(4, 1), tmp_path / "val.json")
    cfg = load_config(None, [
        "task=toy_echo", "method=toy_alternating", f"train_path={tmp_path / 'train.json'}",
        f"val_path={tmp_path / 'val.json'}", f"out_dir={tmp_path / 'run'}", "model=micro", "batch_size=8",
        "micro_batch_size=8", "num_epochs=2", "max_steps_per_epoch=1", "max_new_tokens=4", "max_latent_stage=1"])
    result = train(cfg, progress=False, device="cpu")
    assert result.global_step == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["type"] == "val"]
    # The toy schedule decided the validation setting of each epoch: 0 thoughts, then 1.
    assert [(r["stage"], r["val_thoughts"]) for r in val] == [(0, 0), (1, 1)]
    # Its reset key changed between the epochs, so the optimizer was reset once.
    assert [r["key"] for r in rows if r["type"] == "reset"] == [1]
    meta = read_meta(tmp_path / "run" / "best")
    assert (meta["method"], meta["task"]) == ("toy_alternating", "toy_echo")


def test_registered_task_answers_and_report(toy_registrations):
    from coconut_lm.analysis.report import method_labels, paper_numbers
    from coconut_lm.tasks.answers import answers_match, data_task

    assert answers_match("toy_echo", "it is b\n### B ", "b")
    assert data_task(_echo_examples(3, 2)) == "toy_echo"
    assert method_labels()["toy_alternating"] == "toy"
    assert paper_numbers()["coconut"]["toy_echo"] == (100.0, None)
    assert registry.get_task("toy_echo").label == "Echo"
    assert methods.get_method("toy_alternating").schedule.kind == "alternating"


def test_registering_a_name_twice_is_refused():
    from coconut_lm.errors import CoconutError

    with pytest.raises(CoconutError, match="already registered"):
        register_method(Coconut())
    with pytest.raises(CoconutError, match="already registered"):
        register_task(TASKS["prosqa"])


def test_the_import_graph_has_no_cycle():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"
    spec = importlib.util.spec_from_file_location("import_graph", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    g = module.graph()
    assert "coconut_lm.cli" in g["coconut_lm.demo"] or "coconut_lm.demo" in g["coconut_lm.cli"]  # edges are seen
    assert module.cycles(g) == []
    assert module.cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]  # a cycle would be found
