"""Every current decoder family under CoconutLM equals the slow reference: loss, gradients, generation, reload.

Each family is a tiny random model built from its transformers config class (no hub). The fast
multi-pass forward and the batched KV-cache generation must match `coconut_lm.model.reference`, which
recomputes everything with no cache, so a family whose cache or attention the fast path mishandles
fails here rather than training quietly on wrong numbers. Float64 where the family computes in it.
"""

from __future__ import annotations

import pytest
import torch
from test_model import TK, VOCAB, assert_close, grads, make_rows, pad_batch

from coconut_lm.model.coconut import CoconutLM
from coconut_lm.model.reference import reference_forward, reference_generate

SMALL = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
         "initializer_range": 0.2, "pad_token_id": TK.pad, "bos_token_id": TK.eos, "eos_token_id": TK.eos}

#: family -> (config class name, its fields beyond SMALL)
FAMILIES = {
    "llama3": ("LlamaConfig", {"rope_theta": 500000.0}),
    "qwen2.5": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 8}),
    "mistral": ("MistralConfig", {"sliding_window": 4096}),
    "gemma2": ("Gemma2Config", {"head_dim": 8, "sliding_window": 4096, "final_logit_softcapping": 30.0,
                                "attn_logit_softcapping": 50.0, "query_pre_attn_scalar": 8}),
    "gemma3": ("Gemma3TextConfig", {"head_dim": 8, "sliding_window": 4096, "query_pre_attn_scalar": 8}),
    "phi3": ("Phi3Config", {"num_key_value_heads": 4}),
    "olmo2": ("Olmo2Config", {}),
    "smollm3": ("SmolLM3Config", {}),
}
# Families whose norms or attention compute in float32 inside a float64 model agree to float32 rounding.
TOL = 1e-5
#: Gemma 2's eager soft-capped attention gives NaN at left-padded rows in float64 (the reference too: an
#: upstream limit, not ours), so it runs in float32, where fast and slow paths agree to float32 rounding.
FLOAT32 = {"gemma2": 1e-4}


def make_family(name: str, seed: int = 0, eot_classifier: bool = False, token_shift: int = 0) -> CoconutLM:
    import transformers
    from transformers import AutoModelForCausalLM

    cls_name, extra = FAMILIES[name]
    config = getattr(transformers, cls_name)(**{**SMALL, **extra})
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_config(config)
    model = CoconutLM(base, TK, eot_classifier=eot_classifier, token_shift=token_shift).eval()
    return model if name in FLOAT32 else model.double()


def step_against_reference(model):
    """One Coconut step on left-padded rows with 0, 3 and 8 thoughts, and the slow reference's: the two outputs
    and the gradients of loss + eot_loss by parameter name (fast, slow). The fast loss must be finite."""
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], (0, 3, 8)), "left")
    out = model(ids, mask, labels)
    fast = grads(model, out.loss + out.eot_loss)
    ref = reference_forward(model, ids, mask, labels)
    slow = grads(model, ref.loss + ref.eot_loss)
    assert torch.isfinite(out.loss)
    return out, ref, fast, slow


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_forward_and_gradients_match_reference(family):
    model = make_family(family, eot_classifier=True, token_shift=1)
    tol = FLOAT32.get(family, TOL)
    out, ref, fast, slow = step_against_reference(model)
    assert_close(out.loss, ref.loss, tol)
    assert_close(out.eot_loss, ref.eot_loss, tol)
    assert set(fast) == {n for n, _ in model.named_parameters()}
    for name, g in slow.items():
        assert_close(fast[name], g, tol)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_generation_matches_reference_and_survives_reload(family, tmp_path):
    model = make_family(family)
    rows, n_prompt = make_rows([3, 6, 1, 4], (0, 1, 3, 6))
    prompts = [r[:n] for r, n in zip(rows, n_prompt)]
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], "left")
    out = model.generate(ids, mask, max_new_tokens=6, return_thoughts=True)
    for i, p in enumerate(prompts):
        ref = reference_generate(model, p, 6)
        assert out.sequences[i, :len(ref.tokens)].tolist() == ref.tokens, (family, i)
        for a, b in zip(out.thoughts[i], ref.thoughts):
            assert_close(a, b, FLOAT32.get(family, TOL))
    model.save_pretrained(tmp_path / "ckpt")
    loaded = CoconutLM.from_pretrained(tmp_path / "ckpt").to(next(model.parameters()).dtype).eval()
    again = loaded.generate(ids, mask, max_new_tokens=6)
    assert torch.equal(again.sequences, out.sequences)
