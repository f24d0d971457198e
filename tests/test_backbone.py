"""Backbone builders and loaders: presets, from-scratch GPT-2, any HF causal LM, new-token rows."""

from __future__ import annotations

import pytest
import torch

from coconut_lm.data.tokenizer import build_word_tokenizer, special_token_ids
from coconut_lm.errors import CoconutError
from coconut_lm.model.backbone import (
    PRESETS,
    build_backbone,
    build_tiny_llama,
    load_backbone,
    resize_for_new_tokens,
    tiny_llama_config,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_has_the_documented_shape(name):
    from coconut_lm.model.backbone import gpt2_config

    cfg = gpt2_config(name, vocab_size=100)  # a config only: the 124M model is not built here
    want = {"micro": (2, 64, 2), "mini": (3, 128, 4), "tiny": (4, 256, 4), "small": (6, 384, 6), "gpt2-124m": (12, 768, 12)}[name]
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head) == want
    assert cfg.vocab_size == 100 and cfg.n_positions == 1024


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_build_from_scratch_shapes_and_overrides(arch):
    from coconut_lm.model.backbone import build_from_scratch

    tok = build_word_tokenizer(["Tom is a wumpus ."])
    model = build_from_scratch("micro", len(tok), 96, special_token_ids(tok), arch=arch, n_layer=3, n_embd=None)
    cfg = model.config
    assert cfg.num_hidden_layers == 3 and cfg.hidden_size == 64 and cfg.vocab_size == len(tok)
    assert type(model).__name__ == {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[arch]
    out = model(torch.tensor([[5, 6, 7]]))
    assert out.logits.shape == (1, 3, len(tok))
    with pytest.raises(CoconutError, match="unknown architecture"):
        build_from_scratch("micro", 10, 32, arch="mamba")
    with pytest.raises(CoconutError, match="not divisible"):
        build_from_scratch("micro", 10, 32, arch="llama", n_head=3)


@pytest.mark.parametrize("arch,field,default", [("gpt2", "activation_function", "gelu_pytorch_tanh"),
                                                 ("llama", "hidden_act", "silu")])
def test_activation_override_is_built_and_saved(arch, field, default, tmp_path):
    from transformers import AutoModelForCausalLM

    from coconut_lm.model.backbone import build_from_scratch

    assert getattr(build_from_scratch("micro", 20, 32, arch=arch).config, field) == default
    torch.manual_seed(0)
    relu = build_from_scratch("micro", 20, 32, arch=arch, activation="relu")
    torch.manual_seed(0)
    same_weights = build_from_scratch("micro", 20, 32, arch=arch)
    assert getattr(relu.config, field) == "relu"
    x = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():  # same weights, another function
        assert not torch.allclose(relu(x).logits, same_weights(x).logits)
        relu.save_pretrained(tmp_path)
        assert torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path)(x).logits, relu(x).logits)
    with pytest.raises(CoconutError, match="unknown activation 'swish2'"):
        build_from_scratch("micro", 20, 32, arch=arch, activation="swish2")


def test_build_backbone_from_preset_and_overrides():
    tok = build_word_tokenizer(["Tom is a wumpus ."])
    special = special_token_ids(tok)
    torch.manual_seed(0)
    model = build_backbone({"preset": "tiny", "n_layer": 2, "dropout": 0.2}, vocab_size=len(tok),
                           n_positions=64, special=special)
    cfg = model.config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_positions, cfg.resid_pdrop, cfg.attn_pdrop) == (2, 256, 64, 0.2, 0.2)
    assert cfg.eos_token_id == special.eos and cfg.pad_token_id == special.pad
    assert model.get_input_embeddings().weight.shape == (len(tok), 256)
    ids = torch.tensor([[5, 6, 7]])
    assert model(input_ids=ids).logits.shape == (1, 3, len(tok))


def test_bad_presets_raise_coconut_error():
    with pytest.raises(CoconutError, match="unknown model preset 'huge'"):
        build_backbone("huge", vocab_size=10)
    with pytest.raises(CoconutError, match="positive"):
        build_backbone("tiny", vocab_size=10, n_positions=0)
    with pytest.raises(CoconutError, match="name or a dict"):
        build_backbone(3, vocab_size=10)


def test_load_backbone_round_trip_and_error(tmp_path):
    torch.manual_seed(0)
    model = build_tiny_llama(50).double()
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    model.save_pretrained(tmp_path / "m")
    loaded = load_backbone(tmp_path / "m")
    assert loaded.dtype == torch.float64  # the checkpoint's own dtype
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CoconutError, match="cannot load a causal LM from"):
        load_backbone(tmp_path / "empty")


def test_tiny_llama_config_overrides():
    cfg = tiny_llama_config(30, num_hidden_layers=1)
    assert cfg.num_hidden_layers == 1 and cfg.vocab_size == 30 and cfg.num_key_value_heads == 2


@pytest.mark.parametrize("tied", [True, False])
def test_resize_initialises_new_rows_from_a_token(tied):
    tok = build_word_tokenizer(["alpha beta gamma"])
    old = len(tok) - 2  # pretend the last two vocabulary entries were just added
    torch.manual_seed(0)
    if tied:
        model = build_backbone({"n_layer": 1, "n_embd": 16, "n_head": 2}, vocab_size=old, n_positions=16)
    else:
        model = build_tiny_llama(old, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                 num_key_value_heads=1)
    src = tok.convert_tokens_to_ids("alpha")
    assert src != tok.unk_token_id
    before = model.get_input_embeddings().weight[:old].detach().clone()
    assert resize_for_new_tokens(model, tok, init_from="alpha") == 2
    for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
        w = emb.weight.detach()
        assert w.shape[0] == len(tok)
        assert torch.equal(w[old], w[src]) and torch.equal(w[old + 1], w[src])
    assert torch.equal(model.get_input_embeddings().weight[:old], before)
    assert resize_for_new_tokens(model, tok) == 0  # already the right size


def test_resize_initialises_new_ids_inside_a_padded_matrix():
    tok = build_word_tokenizer(["alpha beta gamma"])
    torch.manual_seed(0)
    model = build_backbone({"n_layer": 1, "n_embd": 16, "n_head": 2}, vocab_size=len(tok) + 5, n_positions=16)
    src = tok.convert_tokens_to_ids("alpha")
    assert src != tok.unk_token_id
    assert resize_for_new_tokens(model, tok, init_from="alpha", n_new=2) == 2
    w = model.get_input_embeddings().weight
    assert w.shape[0] == len(tok) + 5  # a padded matrix is not shrunk
    assert torch.equal(w[len(tok) - 2], w[src]) and torch.equal(w[len(tok) - 1], w[src])
    assert not torch.equal(w[len(tok)], w[src])  # padding rows past the tokenizer are untouched


def test_resize_falls_back_to_the_mean_embedding():
    tok = build_word_tokenizer(["alpha beta gamma"])
    old = len(tok) - 1
    torch.manual_seed(0)
    model = build_backbone({"n_layer": 1, "n_embd": 16, "n_head": 2}, vocab_size=old, n_positions=16)
    mean = model.get_input_embeddings().weight[:old].detach().mean(0)
    resize_for_new_tokens(model, tok, init_from="<<")  # "<<" is two word-level tokens
    assert torch.allclose(model.get_input_embeddings().weight[old], mean)
