"""The pruned last block (coconut_lm.model.last_block): loss and gradients equal the full block and the reference."""

from __future__ import annotations

import pytest
import torch
from test_model import THOUGHT_CASES, TK, assert_close, grads, make_model, make_rows, pad_batch
from torch import nn

from coconut_lm.errors import CoconutError
from coconut_lm.model import coconut as coconut_module
from coconut_lm.model import last_block
from coconut_lm.model.checkpointing import checkpoint_blocks
from coconut_lm.model.compiled import compile_blocks
from coconut_lm.model.reference import reference_forward


def pruned(model):
    assert last_block.prune_last_block(model)
    return model


def loss_and_grads(model, ids, mask, labels):
    out = model(ids, mask, labels)
    total = out.loss + (out.eot_loss if out.eot_loss is not None else 0)
    return total.detach(), grads(model, total)


def full_and_pruned(model, ids, mask, labels):
    """(loss, grads) of `model` (pruned) with pruning switched off, then on."""
    pruning, model.last_block = model.last_block, None
    full = loss_and_grads(model, ids, mask, labels)
    model.last_block = pruning
    return full, loss_and_grads(model, ids, mask, labels)


def assert_same(a, b, tol=1e-9):
    assert_close(a[0], b[0], tol)
    assert set(a[1]) == set(b[1])
    for name, g in a[1].items():
        assert torch.isfinite(b[1][name]).all(), name
        assert_close(b[1][name], g, tol)


@pytest.mark.parametrize("shift", [0, 1, (3, False)], ids=["plain", "shift1", "shift3-faithful"])
@pytest.mark.parametrize("eot", [False, True], ids=["lm", "eot"])
@pytest.mark.parametrize("mode", ["left", "right", "align"])
@pytest.mark.parametrize("case", ["none", "one", "mixed", "odd"])
def test_pruned_equals_full_and_reference(case, mode, eot, shift):
    model = pruned(make_model("gpt2", eot_classifier=eot, token_shift=shift))
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], THOUGHT_CASES[case]), mode)
    full, fast = full_and_pruned(model, ids, mask, labels)
    assert_same(full, fast)
    pruning, model.last_block = model.last_block, None
    ref = reference_forward(model, ids, mask, labels)
    model.last_block = pruning
    ref_total = ref.loss + (ref.eot_loss if eot else 0)
    assert_same((ref_total.detach(), grads(model, ref_total)), fast)


@pytest.mark.parametrize("mode", ["left", "right"])
@pytest.mark.parametrize("case", ["none", "mixed"])
def test_labels_on_padding_positions(case, mode):
    """Labels everywhere, pads included (HF's `labels = input_ids.clone()` habit): a padding position's output
    is read by the LM head, so it must be what the full block gives (left padding: a fully masked row)."""
    model = pruned(make_model("gpt2", token_shift=1))
    ids, mask, _ = pad_batch(*make_rows([5, 2, 7], THOUGHT_CASES[case]), mode)
    labels = ids.clone()
    labels[ids == TK.latent] = -100
    assert not mask.all()
    full, fast = full_and_pruned(model, ids, mask, labels)
    assert_same(full, fast)


@pytest.mark.parametrize("mode", ["left", "right"])
def test_cot_rows_with_labels_mid_row(mode):
    """CoT-like rows: labels from the middle of the question on, no thoughts (one pass), with a token shift."""
    model = pruned(make_model("gpt2", token_shift=1))
    rows, _ = make_rows([9, 4, 12], (0, 0, 0), a_len=5)
    ids, mask, labels = pad_batch(rows, [3, 2, 6], mode)
    full, fast = full_and_pruned(model, ids, mask, labels)
    assert_same(full, fast)


def test_split_columns_and_float32_left_padding_stay_finite():
    """Extra pass boundaries (FSDP lockstep) and float32 with whole masked query rows: equal, no NaN."""
    model = pruned(make_model("gpt2", eot_classifier=True, token_shift=1).float())
    ids, mask, labels = pad_batch(*make_rows([7, 2, 4], (2, 4, 1)), "left")
    full, fast = full_and_pruned(model, ids, mask, labels)
    assert_same(full, fast, 1e-5)
    out = model(ids, mask, labels, split_columns=[1, 3, ids.shape[1] - 1])
    assert_close(out.loss + out.eot_loss, fast[0], 1e-5)


def test_forgetting_the_thought_positions_is_caught(monkeypatch):
    """A selection without the positions before the thoughts gives another loss: the tests above would fail."""
    model = pruned(make_model("gpt2"))
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], THOUGHT_CASES["mixed"]), "left")
    full, _ = full_and_pruned(model, ids, mask, labels)

    def labels_only(input_ids, attention_mask, labels, tokens, eot_classifier):
        return nn.functional.pad(labels[:, 1:] != -100, (0, 1), value=False)

    monkeypatch.setattr(coconut_module, "needed_positions", labels_only)
    broken = model(ids, mask, labels).loss
    assert not torch.allclose(broken, full[0], atol=1e-6)


def test_a_wrapped_projection_takes_the_whole_path():
    """A c_attn that is not a plain Conv1D (a LoRA layer) runs whole, with the same results."""
    model = pruned(make_model("gpt2", token_shift=1))
    attn = model.last_block.block.attn
    attn.c_attn = nn.Sequential(attn.c_attn)
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], THOUGHT_CASES["odd"]), "right")
    full, fast = full_and_pruned(model, ids, mask, labels)
    assert_same(full, fast)


def test_without_a_selection_the_block_is_untouched():
    """Logits and hidden states of a pruned model are those of the plain one, bit for bit."""
    plain, model = make_model("gpt2", token_shift=1), pruned(make_model("gpt2", token_shift=1))
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], THOUGHT_CASES["mixed"]), "left")
    with torch.no_grad():
        a, b = plain(ids, mask, labels, return_logits=True), model(ids, mask, labels, return_logits=True)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.loss, b.loss)
        assert torch.equal(plain.hidden_states(ids, mask), model.hidden_states(ids, mask))


@pytest.mark.parametrize("shift", [0, 3, (3, False)], ids=["plain", "shift3", "shift3-faithful"])
@pytest.mark.parametrize("classifier", [False, True])
@pytest.mark.parametrize("mode", ["left", "right"])
def test_generation_with_a_pruned_prompt_pass(mode, classifier, shift):
    """Generation's prompt pass computes only the states it reads: the same tokens and thoughts."""
    model = pruned(make_model("gpt2", eot_classifier=classifier, token_shift=shift))
    rows, n_prompt = make_rows([5, 2, 7], (0, 0, 0) if classifier else (2, 3, 1))
    prompts = [r[:n - (1 if classifier else 0)] for r, n in zip(rows, n_prompt)]  # with the classifier: up to <bot>
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], mode)
    kw = {"use_eot_classifier": classifier, "max_thoughts": 3, "return_thoughts": True}
    with torch.no_grad():
        fast = model.generate(ids, mask, 6, **kw)
        pruning, model.last_block = model.last_block, None
        full = model.generate(ids, mask, 6, **kw)
        model.last_block = pruning
    assert torch.equal(fast.sequences, full.sequences) and torch.equal(fast.num_thoughts, full.num_thoughts)
    for a, b in zip(fast.thoughts, full.thoughts):
        assert_close(a, b)


def test_other_families_and_wrapped_blocks():
    assert not last_block.prune_last_block(make_model("llama"))
    model = make_model("gpt2")
    checkpoint_blocks(model)
    with pytest.raises(CoconutError, match="gradient checkpointing or compile"):
        last_block.prune_last_block(model)
    model = pruned(make_model("gpt2"))
    with pytest.raises(CoconutError, match="pruned"):
        checkpoint_blocks(model)
    with pytest.raises(CoconutError, match="pruned"):
        compile_blocks(model, backend="aot_eager")


def test_needed_positions():
    ids = torch.tensor([[7, 8, TK.bot, TK.latent, TK.latent, TK.eot, 9, TK.eos]])
    mask = torch.ones_like(ids)
    labels = torch.tensor([[-100] * 6 + [9, TK.eos]])
    lm = last_block.needed_positions(ids, mask, labels, TK, eot_classifier=False)
    assert lm.nonzero()[:, 1].tolist() == [2, 3, 5, 6]  # before each <latent>, before each label
    eot = last_block.needed_positions(ids, mask, labels, TK, eot_classifier=True)
    assert eot.nonzero()[:, 1].tolist() == [2, 3, 4, 5, 6]  # and the classifier's decisions


def test_the_config_key_trains_the_same_run(tmp_path, monkeypatch):
    """`prune_last_block=true` (and null on CPU) logs the losses of `false`, stages with thoughts included; the
    pruned block really runs with true and null and never with false."""
    from test_train import _cfg

    from coconut_lm.training.runlog import read_metrics
    from coconut_lm.training.train import train

    calls = []
    pruned_block = last_block._pruned
    monkeypatch.setattr(last_block, "_pruned", lambda *a: calls.append(1) or pruned_block(*a))
    losses, ran = {}, {}
    for on in ("false", "true", "null"):
        calls.clear()
        cfg = _cfg(tmp_path / on, "prosqa", "coconut", "num_epochs=2", "epochs_per_stage=1", "max_latent_stage=1",
                   "max_steps_per_epoch=2", "eval_every=2", f"prune_last_block={on}")
        rows = read_metrics(train(cfg, progress=False, device="cpu").run_dir)
        losses[on], ran[on] = [r["loss"] for r in rows if r["type"] == "train"], len(calls)
    assert ran["false"] == 0 and ran["true"] > 0 and ran["null"] == ran["true"]
    assert len(losses["true"]) == 4
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-6, abs=1e-9)
    assert losses["null"] == losses["true"]


def test_the_config_key_refuses_what_it_cannot_prune(tmp_path):
    from test_train import _cfg

    from coconut_lm.training.config import load_config
    from coconut_lm.training.train import train

    for other in ("gradient_checkpointing=true", "compile=true"):
        with pytest.raises(CoconutError, match="prune_last_block"):
            load_config(None, ["prune_last_block=true", other])
    cfg = _cfg(tmp_path, "prosqa", "coconut", "arch=llama", "prune_last_block=true")
    with pytest.raises(CoconutError, match="needs a GPT-2 backbone"):
        train(cfg, progress=False, device="cpu")
