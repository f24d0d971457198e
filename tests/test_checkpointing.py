"""Gradient checkpointing of the blocks (coconut_lm.model.checkpointing): the same step, recomputed in backward.

A Coconut train step with checkpointed blocks must give the loss and every gradient of the plain step
(float64, tiny random models, thoughts in every row but one, with and without LoRA), while each block
really runs again in backward. The memory it saves is measured by `coconut-lm bench`, not asserted here.
"""

from __future__ import annotations

import pytest
import torch
from test_families import make_family
from test_lora import _adapt, _perturb
from test_model import assert_close, grads, make_model, make_rows, pad_batch

from coconut_lm.model.checkpointing import checkpoint_blocks, is_checkpointed
from coconut_lm.model.compiled import transformer_blocks

#: GPT-2 and Llama (the buffered KV cache), Gemma 3 (sliding-window layers keep HF's cache), Qwen3 (GQA, q/k norms).
KINDS = ["gpt2", "llama", "gemma3", "qwen3"]


def _model(kind: str, lora: bool):
    model = (make_model(kind, eot_classifier=True, token_shift=1) if kind in ("gpt2", "llama")
             else make_family(kind, eot_classifier=True, token_shift=1))
    if lora:
        _perturb(_adapt(model, dropout=0.1))
    return model.train()  # dropout on: the recompute must draw the same masks


def _step(model, ids, mask, labels):
    torch.manual_seed(5)
    out = model(ids, mask, labels)
    return out, grads(model, out.loss + out.eot_loss)


def _count_calls(model) -> list[int]:
    """Patch every block to count its forward calls (recomputes included)."""
    calls = [0]
    for block in transformer_blocks(model.body):
        def counted(*args, _forward=block.forward, **kwargs):
            calls[0] += 1
            return _forward(*args, **kwargs)
        block.forward = counted
    return calls


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("kind", KINDS)
def test_checkpointed_step_equals_the_plain_step(kind, lora):
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], (0, 3, 8)), "left")
    plain = _model(kind, lora)
    want, want_grads = _step(plain, ids, mask, labels)
    model = _model(kind, lora)
    calls = _count_calls(model)
    n_blocks = checkpoint_blocks(model)
    assert is_checkpointed(model) and not is_checkpointed(plain)
    out, got = _step(model, ids, mask, labels)
    assert out.n_passes == want.n_passes == 9
    # Every block ran once per pass, and again in backward (the recompute).
    assert calls[0] == 2 * n_blocks * out.n_passes
    assert_close(out.loss, want.loss, 1e-12)
    assert_close(out.eot_loss, want.eot_loss, 1e-12)
    assert set(got) == set(want_grads) and got
    for name, g in want_grads.items():
        assert_close(got[name], g, 1e-12)


def test_without_gradients_nothing_is_recomputed_and_generation_is_unchanged():
    model = make_model("llama").eval()
    rows, n_prompt = make_rows([3, 6, 1], (0, 2, 5))
    prompts = [r[:n] for r, n in zip(rows, n_prompt)]
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], "left")
    want = model.generate(ids, mask, max_new_tokens=5).sequences
    calls = _count_calls(model)
    checkpoint_blocks(model)
    with torch.no_grad():
        out = model(*pad_batch(*make_rows([4], (2,)), "left"))
    assert calls[0] == 2 * out.n_passes  # two blocks, one call each per pass
    assert torch.equal(model.generate(ids, mask, max_new_tokens=5).sequences, want)


def test_checkpointing_twice_wraps_once():
    model = make_model("gpt2")
    checkpoint_blocks(model)
    forwards = [b.forward for b in transformer_blocks(model.body)]
    checkpoint_blocks(model)
    assert [b.forward for b in transformer_blocks(model.body)] == forwards


def test_the_config_key_trains_the_same_run(tmp_path):
    """`gradient_checkpointing=true` logs the same losses as the plain run, stages with thoughts included."""
    from test_train import _cfg

    from coconut_lm.training.runlog import read_metrics
    from coconut_lm.training.train import train

    losses = {}
    for on in (False, True):
        cfg = _cfg(tmp_path / str(on), "prosqa", "coconut", "num_epochs=2", "epochs_per_stage=1", "max_latent_stage=1",
                   "max_steps_per_epoch=2", "eval_every=2", f"gradient_checkpointing={str(on).lower()}")
        rows = read_metrics(train(cfg, progress=False, device="cpu").run_dir)
        losses[on] = [r["loss"] for r in rows if r["type"] == "train"]
    assert len(losses[True]) == 4
    assert losses[True] == pytest.approx(losses[False], rel=1e-6, abs=1e-9)


def test_compile_and_checkpointing_are_refused_together():
    from coconut_lm.errors import CoconutError
    from coconut_lm.training.config import load_config

    with pytest.raises(CoconutError, match="gradient_checkpointing.*compile"):
        load_config(None, ["gradient_checkpointing=true", "compile=true"])
