"""CoconutLM against the slow reference (coconut_lm.model.reference) on tiny random GPT-2 and Llama models.

Everything runs in float64 so that "equal" can mean equal to ~1e-9 (Llama: to float32 rounding,
see TOL): loss, logits, the gradient of every parameter, greedy generations, thoughts and the
`<eot>` classifier, over left, right and aligned padding and 0 to 8 thoughts per row.
"""

from __future__ import annotations

import json

import pytest
import torch

from coconut_lm.errors import CoconutError
from coconut_lm.model import coconut as model_module
from coconut_lm.model import loss as loss_module
from coconut_lm.model.backbone import build_backbone, build_tiny_llama
from coconut_lm.model.coconut import CoconutLM, read_checkpoint_info, read_meta
from coconut_lm.model.reference import reference_forward, reference_generate
from coconut_lm.recipe.tokens import SpecialTokens

TK = SpecialTokens(pad=0, eos=1, bot=3, eot=4, latent=5, pause=6)
VOCAB = 40
FIRST_WORD = 7  # ids below are special
# Llama's RMSNorm computes in float32 even in a float64 model, so its gradients agree only to
# float32 rounding; GPT-2 runs in float64 throughout.
TOL = {"gpt2": 1e-9, "llama": 1e-5}


#: Token-shift settings of the equality tests: (width K, shift_thoughts); False is the faithful variant,
#: "receive" and "send" keep one of the shift's two paths through the thoughts.
SHIFTS = [pytest.param((0, True), id="plain"), pytest.param((1, True), id="shift1"), pytest.param((3, True), id="shift3"),
          pytest.param((1, False), id="shift1-faithful"), pytest.param((3, False), id="shift3-faithful"),
          pytest.param((1, "receive"), id="shift1-receive"), pytest.param((3, "receive"), id="shift3-receive"),
          pytest.param((1, "send"), id="shift1-send"), pytest.param((3, "send"), id="shift3-send")]


def make_model(kind: str, eot_classifier: bool = False, seed: int = 0,
               token_shift: int | tuple[int, bool | str] = 0) -> CoconutLM:
    torch.manual_seed(seed)
    if kind == "gpt2":
        # A wide init makes the random model's greedy outputs vary, so generation tests bite.
        base = build_backbone({"n_layer": 2, "n_embd": 32, "n_head": 4, "initializer_range": 0.2},
                              vocab_size=VOCAB, n_positions=128, special=TK)
    else:
        base = build_tiny_llama(VOCAB, hidden_size=32, intermediate_size=64, initializer_range=0.2)
    width, shift_thoughts = token_shift if isinstance(token_shift, tuple) else (token_shift, True)
    model = CoconutLM(base, TK, eot_classifier=eot_classifier, token_shift=width,
                      shift_thoughts=shift_thoughts).double().eval()
    if eot_classifier:
        with torch.no_grad():  # logits of order 1: rows stop after different counts
            model.eot_head.weight.normal_(0, 0.2)
            model.eot_head.bias.fill_(-0.3)
    return model


def make_rows(q_lens, ks, a_len=3, seed=1, markers=True):
    """Token lists: question, <bot>, <latent>*k, <eot>, answer, <eos> (without `markers`: no <bot>/<eot>);
    and the prompt length."""
    g = torch.Generator().manual_seed(seed)
    rows, n_prompt = [], []
    for q, k in zip(q_lens, ks):
        words = lambda n: torch.randint(FIRST_WORD, VOCAB, (n,), generator=g).tolist()  # noqa: E731
        prompt = words(q) + ([TK.bot] + [TK.latent] * k + [TK.eot] if markers else [TK.latent] * k)
        rows.append(prompt + words(a_len) + [TK.eos])
        n_prompt.append(len(prompt))
    return rows, n_prompt


def pad_batch(rows, n_prompt, mode: str):
    """Pad left, right, or "align" (left-pad so every <bot> shares a column, then right-pad)."""
    if mode == "align":
        bot_col = [r.index(TK.bot) for r in rows]
        left = [max(bot_col) - c for c in bot_col]
    else:
        left = {"left": [max(map(len, rows)) - len(r) for r in rows], "right": [0] * len(rows)}[mode]
    width = max(lp + len(r) for lp, r in zip(left, rows))
    ids = torch.full((len(rows), width), TK.pad)
    labels = torch.full((len(rows), width), -100)
    for i, (lp, r, n) in enumerate(zip(left, rows, n_prompt)):
        ids[i, lp:lp + len(r)] = torch.tensor(r)
        labels[i, lp + n:lp + len(r)] = torch.tensor(r[n:])
    mask = torch.zeros_like(ids)
    for i, (lp, r) in enumerate(zip(left, rows)):
        mask[i, lp:lp + len(r)] = 1
    return ids, mask, labels


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_close(a, b, tol=1e-9):
    assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max()


THOUGHT_CASES = {
    "none": (0, 0, 0),
    "one": (1, 1, 1),
    "c2": (2, 4, 6),  # two thoughts per step: counts are multiples of c
    "mixed": (0, 3, 8),
    "odd": (5, 7, 1),
}


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", ["left", "right", "align"])
@pytest.mark.parametrize("case", list(THOUGHT_CASES))
def test_forward_matches_reference(kind, mode, case, shift):
    model = make_model(kind, eot_classifier=True, token_shift=shift)
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], THOUGHT_CASES[case]), mode)

    out = model(ids, mask, labels)
    assert out.logits is None
    fast_grads = grads(model, out.loss + out.eot_loss)
    ref = reference_forward(model, ids, mask, labels)
    ref_grads = grads(model, ref.loss + ref.eot_loss)

    tol = TOL[kind]
    assert torch.isfinite(out.loss) and out.loss.dtype == torch.float64
    assert_close(out.loss, ref.loss, tol)
    assert_close(out.eot_loss, ref.eot_loss, tol)
    assert set(fast_grads) == {n for n, _ in model.named_parameters()}  # every parameter got one
    for name, g in ref_grads.items():
        assert torch.isfinite(fast_grads[name]).all(), name
        assert_close(fast_grads[name], g, tol)
    with torch.no_grad():
        full = model(ids, mask, labels, return_logits=True)
    assert_close(full.logits, ref.logits.detach(), tol)
    assert_close(full.loss, ref.loss.detach(), tol)
    n_cols = len({j for j in range(ids.shape[1]) if (ids[:, j] == TK.latent).any()})
    assert out.n_passes == n_cols + 1


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_extra_split_columns_change_passes_not_results(kind):
    """FSDP's lockstep passes split at other ranks' latent columns too; the numbers must not move."""
    model = make_model(kind)
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], THOUGHT_CASES["mixed"]), "align")
    out = model(ids, mask, labels)
    base_grads = grads(model, out.loss)
    split = model(ids, mask, labels, split_columns=[1, 3, ids.shape[1] - 1, ids.shape[1] + 5])
    split_grads = grads(model, split.loss)
    assert split.n_passes > out.n_passes
    assert_close(split.loss, out.loss, TOL[kind])
    for name, g in base_grads.items():
        assert_close(split_grads[name], g, TOL[kind])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", ["left", "right", "align"])
def test_stock_concatenating_cache_matches_reference(kind, mode):
    """`kv_buffer = False` (HF's DynamicCache as is) must give the same numbers."""
    model = make_model(kind)
    model.kv_buffer = False
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], THOUGHT_CASES["mixed"]), mode)
    out = model(ids, mask, labels)
    fast = grads(model, out.loss)
    ref = reference_forward(model, ids, mask, labels)
    slow = grads(model, ref.loss)
    assert_close(out.loss, ref.loss, TOL[kind])
    for name, g in slow.items():
        assert_close(fast[name], g, TOL[kind])
    assert out.n_label_tokens == int((labels[:, 1:] != -100).sum())


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_zero_thoughts_is_one_plain_hf_forward(kind):
    model = make_model(kind)
    rows, n_prompt = make_rows([4, 6, 2], (0, 0, 0))
    rows[1][3] = TK.pause  # pause tokens are ordinary tokens: still one pass
    for mode in ("left", "right"):
        ids, mask, labels = pad_batch(rows, n_prompt, mode)
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = model(ids, mask, labels, return_logits=True)
        hf = model.base(input_ids=ids, attention_mask=mask, position_ids=pos, labels=labels)
        assert out.n_passes == 1
        assert_close(out.logits, hf.logits)
        assert abs(out.loss.item() - hf.loss.item()) < 1e-6  # HF computes its loss in float32


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_fully_masked_pad_rows_leave_no_nan_float32(kind, attn):
    """Left padding makes whole query rows masked; nothing may turn NaN (HF eager Llama does in
    float64, with or without Coconut, because it takes the softmax of a float64 mask in float32)."""
    model = make_model(kind, eot_classifier=True).float()
    model.base.config._attn_implementation = attn
    ids, mask, labels = pad_batch(*make_rows([7, 2, 4], (2, 4, 1)), "left")
    out = model(ids, mask, labels)
    fast = grads(model, out.loss + out.eot_loss)
    ref = reference_forward(model, ids, mask, labels)
    slow = grads(model, ref.loss + ref.eot_loss)
    assert torch.isfinite(out.loss) and all(torch.isfinite(g).all() for g in fast.values())
    assert_close(out.loss, ref.loss, 1e-5)
    for name, g in slow.items():
        assert_close(fast[name], g, 1e-4)


def test_sliding_window_layers_keep_their_own_cache():
    """A backbone mixing full and sliding-window layers (Qwen2 style): only full layers get the
    K/V buffer, and the results still equal the reference."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
                      layer_types=["full_attention", "sliding_attention"])
    model = CoconutLM(Qwen2ForCausalLM(cfg), TK).double().eval()
    assert [type(x).__name__ for x in model.new_cache(8).layers] == ["BufferLayer", "DynamicSlidingWindowLayer"]
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], (0, 3, 8)), "align")
    out = model(ids, mask, labels)
    fast = grads(model, out.loss)
    ref = reference_forward(model, ids, mask, labels)
    slow = grads(model, ref.loss)
    assert_close(out.loss, ref.loss, TOL["llama"])
    for name, g in slow.items():
        assert_close(fast[name], g, TOL["llama"])
    prompts = [r[:n] for r, n in zip(*make_rows([3, 6], (2, 5)))]
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], "left")
    gen = model.generate(ids, mask, 6)
    for i, p in enumerate(prompts):
        want = reference_generate(model, p, 6).tokens
        assert gen.sequences[i, :len(want)].tolist() == want


def test_right_padding_needs_no_position_ids():
    """With right padding, the derived positions equal HF's default arange."""
    model = make_model("gpt2")
    ids, mask, labels = pad_batch(*make_rows([4, 6], (0, 0)), "right")
    out = model(ids, mask, labels)
    assert abs(out.loss.item() - model.base(input_ids=ids, attention_mask=mask, labels=labels).loss.item()) < 1e-6


def test_explicit_position_ids_are_used():
    model = make_model("gpt2")
    ids, mask, labels = pad_batch(*make_rows([4, 6], (2, 2)), "align")
    pos = (mask.cumsum(1) - 1).clamp(min=0) + 3
    fast = model(ids, mask, labels, position_ids=pos)
    ref = reference_forward(model, ids, mask, labels, position_ids=pos)
    assert_close(fast.loss, ref.loss)
    assert abs(fast.loss.item() - model(ids, mask, labels).loss.item()) > 1e-6


def test_chunked_loss_equals_unchunked(monkeypatch):
    model = make_model("gpt2")
    ids, mask, labels = pad_batch(*make_rows([5, 3, 4], (2, 4, 0), a_len=6), "align")
    whole = model(ids, mask, labels)
    g_whole = grads(model, whole.loss)
    monkeypatch.setattr(loss_module, "CE_CHUNK_ELEMENTS", 3 * VOCAB)  # 3 positions per chunk
    chunked = model(ids, mask, labels)
    g_chunked = grads(model, chunked.loss)
    assert_close(whole.loss, chunked.loss)
    for name, g in g_whole.items():
        assert_close(g_chunked[name], g)


def test_no_supervised_positions_gives_zero_loss_not_nan():
    model = make_model("gpt2")
    ids, mask, labels = pad_batch(*make_rows([4, 5], (2, 1)), "align")
    out = model(ids, mask, torch.full_like(labels, -100))
    assert out.loss.item() == 0.0
    out.loss.backward()  # still part of the graph


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", ["left", "right"])
def test_generate_matches_row_by_row_reference(kind, mode, shift):
    model = make_model(kind, token_shift=shift)
    rows, n_prompt = make_rows([3, 6, 1, 4], (0, 1, 3, 6))
    prompts = [r[:n] for r, n in zip(rows, n_prompt)]
    # Make some rows stop early: EOS := the first token row 0 generates.
    first = reference_generate(model, prompts[0], 1).tokens[0]
    model.tokens = TK = SpecialTokens(**{**model.tokens.to_dict(), "eos": first})
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], mode)
    out = model.generate(ids, mask, max_new_tokens=7, return_thoughts=True)
    refs = [reference_generate(model, p, 7) for p in prompts]
    lengths = []
    for i, ref in enumerate(refs):
        n = len(ref.tokens)
        lengths.append(n)
        assert out.sequences[i, :n].tolist() == ref.tokens
        assert (out.sequences[i, n:] == TK.pad).all()
        assert out.num_tokens[i] == n and out.num_thoughts[i] == ref.num_thoughts
        assert len(out.thoughts[i]) == ref.num_thoughts
        for a, b in zip(out.thoughts[i], ref.thoughts):
            assert_close(a, b, TOL[kind])
    assert lengths[0] == 1 and max(lengths) == 7 and out.sequences.shape[1] == 7


@pytest.mark.parametrize("threshold", [0.5, 0.4, 0.6])
@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", ["left", "right"])
def test_classifier_generation_matches_row_by_row_reference(kind, mode, shift, threshold):
    model = make_model(kind, eot_classifier=True, seed=3, token_shift=shift)
    rows, _ = make_rows([3, 6, 1, 4, 5, 2], (0,) * 6, seed=4)
    prompts = [r[:r.index(TK.bot) + 1] for r in rows]  # question, <bot>
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], mode)
    out = model.generate(ids, mask, max_new_tokens=5, use_eot_classifier=True, max_thoughts=4,
                         return_thoughts=True, eot_threshold=threshold)
    refs = [reference_generate(model, p, 5, use_eot_classifier=True, max_thoughts=4, eot_threshold=threshold)
            for p in prompts]
    for i, ref in enumerate(refs):
        assert out.num_thoughts[i] == ref.num_thoughts
        assert out.sequences[i, :len(ref.tokens)].tolist() == ref.tokens
        for a, b in zip(out.thoughts[i], ref.thoughts):
            assert_close(a, b, TOL[kind])
    if threshold == 0.5:  # the model's logits are tuned so rows differ here; other thresholds may stop all alike
        assert len({r.num_thoughts for r in refs}) > 1, "rows should stop thinking at different counts"


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", ["left", "right"])
def test_classifier_without_markers_matches_reference(kind, mode, shift):
    """Without <bot>/<eot> the classifier decides from the question's last token on; a stop decodes at once.
    Its loss (decisions at the last question token and each slot) and generation equal the reference."""
    model = make_model(kind, eot_classifier=True, seed=3, token_shift=shift)
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], (0, 3, 8), markers=False), mode)
    out = model(ids, mask, labels)
    fast = grads(model, out.loss + out.eot_loss)
    ref = reference_forward(model, ids, mask, labels)
    slow = grads(model, ref.loss + ref.eot_loss)
    assert_close(out.eot_loss, ref.eot_loss, TOL[kind])
    for name, g in slow.items():
        assert_close(fast[name], g, TOL[kind])
    rows, _ = make_rows([3, 6, 1, 4, 5, 2], (0,) * 6, seed=4, markers=False)
    prompts = [r[:-4] for r in rows]  # the question alone (answer of 3 words and <eos> cut)
    pids, pmask, _ = pad_batch(prompts, [len(p) for p in prompts], mode)
    gen = model.generate(pids, pmask, max_new_tokens=5, use_eot_classifier=True, max_thoughts=4, return_thoughts=True)
    refs = [reference_generate(model, p, 5, use_eot_classifier=True, max_thoughts=4) for p in prompts]
    for i, r in enumerate(refs):
        assert gen.num_thoughts[i] == r.num_thoughts
        assert gen.sequences[i, :len(r.tokens)].tolist() == r.tokens
        for a, b in zip(gen.thoughts[i], r.thoughts):
            assert_close(a, b, TOL[kind])


def test_stop_decisions_of_a_layout_and_of_a_padded_batch_agree():
    """One rule, two forms: `recipe.tokens.stop_decisions` on ids and `stop_decision_mask` on batches."""
    from coconut_lm.model.loss import stop_decision_mask
    from coconut_lm.recipe.tokens import stop_decisions

    for markers in (True, False):
        rows, n_prompt = make_rows([5, 2, 7, 3], (0, 3, 8, 1), markers=markers)
        ids, mask, _ = pad_batch(rows, n_prompt, "left")
        at, stop = stop_decision_mask(ids, mask, TK)
        for i, r in enumerate(rows):
            lp = ids.shape[1] - len(r)
            want = stop_decisions(r, TK)
            assert (at[i].nonzero().flatten() - lp).tolist() == want
            assert (stop[i].nonzero().flatten() - lp).tolist() == ([want[-1]] if want else [])
        # With markers: every <bot> and <latent> decides, and latent mode ends where <eot> follows.
        if markers:
            assert at.sum() == ((ids == TK.bot) | (ids == TK.latent)).sum()
    assert stop_decisions([9, 9, TK.latent, TK.latent, 8], TK) == [1, 2, 3]


def test_a_higher_eot_threshold_thinks_at_least_as_long():
    """Thinking stops once sigmoid(z) > threshold: raising it never ends a row's latent mode sooner."""
    model = make_model("gpt2", eot_classifier=True, seed=3)
    rows, _ = make_rows([3, 6, 1, 4, 5, 2], (0,) * 6, seed=4)
    prompts = [r[:r.index(TK.bot) + 1] for r in rows]
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], "left")
    counts = [model.generate(ids, mask, max_new_tokens=2, use_eot_classifier=True, max_thoughts=8,
                             eot_threshold=t).num_thoughts for t in (0.05, 0.5, 0.95)]
    assert (counts[0] <= counts[1]).all() and (counts[1] <= counts[2]).all()
    assert counts[0].sum() < counts[2].sum()
    with pytest.raises(CoconutError, match="strictly between 0 and 1"):
        model.generate(ids, mask, max_new_tokens=2, use_eot_classifier=True, eot_threshold=1.0)


@pytest.mark.parametrize(("bias", "want"), [(0.01, 0), (-0.01, 3)])
def test_classifier_threshold_is_one_half_and_max_thoughts_caps(bias, want):
    model = make_model("gpt2", eot_classifier=True)
    with torch.no_grad():
        model.eot_head.weight.zero_()
        model.eot_head.bias.fill_(bias)  # sigmoid just above / just below 0.5 everywhere
    ids = torch.tensor([[9, 10, TK.bot], [TK.pad, 11, TK.bot]])
    out = model.generate(ids, (ids != TK.pad).long(), 2, use_eot_classifier=True, max_thoughts=3)
    assert out.num_thoughts.tolist() == [want, want] and out.num_tokens.tolist() == [2, 2]


def test_sampling_is_reproducible_and_top_p_tiny_is_greedy():
    model = make_model("gpt2")
    rows, n_prompt = make_rows([3, 5], (2, 2))
    prompts = [r[:n] for r, n in zip(rows, n_prompt)]
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], "left")
    greedy = model.generate(ids, mask, 6).sequences
    nucleus = model.generate(ids, mask, 6, temperature=1.0, top_p=1e-9).sequences
    assert torch.equal(greedy, nucleus)
    runs = [model.generate(ids, mask, 6, temperature=1.5, generator=torch.Generator().manual_seed(7))
            for _ in range(2)]
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    assert ((runs[0].sequences >= 0) & (runs[0].sequences < VOCAB)).all()


def test_save_load_round_trip(tmp_path):
    from transformers import AutoModelForCausalLM

    model = make_model("gpt2", eot_classifier=True)
    ids, mask, labels = pad_batch(*make_rows([4, 6], (2, 3)), "align")
    before = model(ids, mask, labels, return_logits=True)
    path = tmp_path / "ckpt"
    model.save_pretrained(path, meta={"method": "coconut", "stage": 2, "c": 1})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder gone

    loaded = CoconutLM.from_pretrained(path).eval()
    after = loaded(ids, mask, labels, return_logits=True)
    assert loaded.tokens == TK and loaded.eot_head is not None
    assert torch.equal(before.logits, after.logits) and torch.equal(before.eot_loss, after.eot_loss)
    assert read_meta(path) == {"method": "coconut", "stage": 2, "c": 1}

    plain = AutoModelForCausalLM.from_pretrained(path).eval()  # the folder is a plain HF model
    assert torch.equal(plain(input_ids=ids, attention_mask=mask).logits,
                       model.base(input_ids=ids, attention_mask=mask).logits)

    # Saving over an existing checkpoint keeps other files and drops the classifier flag cleanly.
    (path / "tokenizer.json").write_text("{}")
    CoconutLM(model.base, TK).save_pretrained(path, meta={"stage": 3})
    assert (path / "tokenizer.json").read_text() == "{}"
    info = read_checkpoint_info(path)
    assert info.meta == {"stage": 3} and not info.eot_classifier
    assert CoconutLM.from_pretrained(path).eot_head is None


def test_token_shift_round_trip_and_effect(tmp_path):
    """The shift's weight is saved beside the HF folder and restored; it changes the function."""
    model = make_model("gpt2", token_shift=2)
    ids, mask, labels = pad_batch(*make_rows([4, 6], (2, 3)), "left")
    before = model(ids, mask, labels, return_logits=True).logits
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / model_module.TOKEN_SHIFT_FILE).is_file()
    assert read_checkpoint_info(tmp_path / "ckpt").token_shift == 2
    loaded = CoconutLM.from_pretrained(tmp_path / "ckpt").double().eval()
    assert torch.equal(loaded(ids, mask, labels, return_logits=True).logits, before)
    unshifted = CoconutLM(model.base, TK).eval()
    assert not torch.allclose(unshifted(ids, mask, labels, return_logits=True).logits, before)
    (tmp_path / "ckpt" / model_module.TOKEN_SHIFT_FILE).unlink()
    with pytest.raises(CoconutError, match="token shift"):
        CoconutLM.from_pretrained(tmp_path / "ckpt")


def test_faithful_shift_leaves_thoughts_alone(tmp_path):
    """shift_thoughts=False changes only what passes through thought positions, and it is saved and restored."""
    shifted = make_model("gpt2", token_shift=(2, True))
    faithful = make_model("gpt2", token_shift=(2, False))
    faithful.load_state_dict(shifted.state_dict())
    plain_rows = pad_batch(*make_rows([4, 6], (0, 0)), "left")
    thought_rows = pad_batch(*make_rows([4, 6], (2, 3)), "left")
    with torch.no_grad():
        same = [m(*plain_rows, return_logits=True).logits for m in (shifted, faithful)]
        differ = [m(*thought_rows, return_logits=True).logits for m in (shifted, faithful)]
    assert torch.equal(same[0], same[1])  # no thought, nothing to leave alone
    assert not torch.allclose(differ[0], differ[1])
    # A thought enters exactly as the hidden state it copies: the pass that starts at a slot gets it unshifted.
    ids, mask, _ = thought_rows
    seen = []
    hook = faithful.body.register_forward_pre_hook(lambda mod, a, kw: seen.append(kw["inputs_embeds"]),
                                                   with_kwargs=True)
    with torch.no_grad():
        hidden = faithful.hidden_states(ids, mask)
    hook.remove()
    col = int((ids == TK.latent).nonzero()[:, 1].min())
    row = int((ids[:, col] == TK.latent).nonzero()[0])
    assert torch.equal(seen[1][row, 0], hidden[row, col - 1])
    faithful.save_pretrained(tmp_path / "ckpt")
    assert read_checkpoint_info(tmp_path / "ckpt").shift_thoughts is False
    loaded = CoconutLM.from_pretrained(tmp_path / "ckpt").double().eval()
    with torch.no_grad():
        assert torch.equal(loaded(*thought_rows, return_logits=True).logits, differ[1])


def _first_thought_input(model: CoconutLM, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The backbone input at the first thought column (of the first row with a slot there): (H,)."""
    seen = []
    hook = model.body.register_forward_pre_hook(lambda mod, a, kw: seen.append(kw["inputs_embeds"]), with_kwargs=True)
    with torch.no_grad():
        model.hidden_states(ids, mask)
    hook.remove()
    col = int((ids == TK.latent).nonzero()[:, 1].min())
    return seen[1][int((ids[:, col] == TK.latent).nonzero()[0]), 0]  # the pass that starts at that column


@pytest.mark.parametrize("mode", ["receive", "send"])
def test_one_shift_path_through_the_thoughts(tmp_path, mode):
    """shift_thoughts="receive" or "send" changes only what passes through thought positions, differs from both
    true and false, shifts a thought's own input exactly as the setting that shares that path does, and is saved
    and restored."""
    models = {v: make_model("gpt2", token_shift=(2, v)) for v in (True, False, mode)}
    for m in models.values():
        m.load_state_dict(models[True].state_dict())
    plain_rows = pad_batch(*make_rows([4, 6], (0, 0)), "left")
    thought_rows = pad_batch(*make_rows([4, 6], (2, 3)), "left")
    with torch.no_grad():
        same = {v: m(*plain_rows, return_logits=True).logits for v, m in models.items()}
        differ = {v: m(*thought_rows, return_logits=True).logits for v, m in models.items()}
    assert torch.equal(same[mode], same[True]) and torch.equal(same[mode], same[False])
    assert not torch.allclose(differ[mode], differ[True]) and not torch.allclose(differ[mode], differ[False])
    # The first thought's predecessors are tokens, so its input is the one of the setting it shares that path with.
    ids, mask, _ = thought_rows
    first = {v: _first_thought_input(m, ids, mask) for v, m in models.items()}
    receives = mode == "receive"
    assert models[mode].thoughts_receive_shift is receives and models[mode].thoughts_send_shift is not receives
    assert torch.equal(first[mode], first[receives])
    assert not torch.allclose(first[mode], first[not receives])
    models[mode].save_pretrained(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "coconut.json").read_text())["shift_thoughts"] == mode
    assert read_checkpoint_info(tmp_path / "ckpt").shift_thoughts == mode
    loaded = CoconutLM.from_pretrained(tmp_path / "ckpt").double().eval()
    with torch.no_grad():
        assert torch.equal(loaded(*thought_rows, return_logits=True).logits, differ[mode])


def test_shift_thoughts_refuses_other_values(tmp_path):
    """CoconutLM and coconut.json take true, false, "receive" and "send"; anything else is a one-line error."""
    model = make_model("gpt2", token_shift=1)
    for bad in ("maybe", 1, None, "Receive"):
        with pytest.raises(CoconutError, match="shift_thoughts"):
            model.shift_thoughts = bad
    model.shift_thoughts = "false"  # the word, as the command line gives it
    assert model.shift_thoughts is False
    model.save_pretrained(tmp_path / "ckpt")
    f = tmp_path / "ckpt" / "coconut.json"
    for bad in ("maybe", 1, "true"):
        f.write_text(json.dumps({**json.loads(f.read_text()), "shift_thoughts": bad}))
        with pytest.raises(CoconutError, match="field 'shift_thoughts'"):
            read_checkpoint_info(tmp_path / "ckpt")


def test_llama_round_trip(tmp_path):
    model = make_model("llama")
    ids, mask, labels = pad_batch(*make_rows([4, 6], (2, 3)), "left")
    model.save_pretrained(tmp_path / "ckpt")
    loaded = CoconutLM.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.base.config.num_key_value_heads < loaded.base.config.num_attention_heads
    assert torch.equal(model(ids, mask, labels).loss, loaded(ids, mask, labels).loss)


def test_bad_inputs_raise_coconut_error(tmp_path):
    model = make_model("gpt2")
    ids = torch.tensor([[TK.latent, 9, 10]])
    with pytest.raises(CoconutError, match="first position"):
        model(ids, torch.ones_like(ids))
    with pytest.raises(CoconutError, match="must both be"):
        model(ids, torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(CoconutError, match="eot_classifier"):
        model.generate(torch.tensor([[9, TK.bot]]), torch.ones(1, 2, dtype=torch.long), 3,
                       use_eot_classifier=True)
    with pytest.raises(CoconutError, match="n_positions"):
        long = torch.full((1, 200), 9)
        model(long, torch.ones_like(long))
    with pytest.raises(CoconutError, match="n_positions"):
        model.generate(torch.full((1, 100), 9), torch.ones(1, 100, dtype=torch.long), 40)
    with pytest.raises(CoconutError, match="not found"):
        read_checkpoint_info(tmp_path)
    (tmp_path / "coconut.json").write_text(json.dumps({"tokens": {"bot": 1}, "eot_classifier": False,
                                                        "meta": {}}))
    with pytest.raises(CoconutError, match="tokens"):
        read_checkpoint_info(tmp_path)
    with pytest.raises(CoconutError, match="JSON"):
        model.save_pretrained(tmp_path / "x", meta={"bad": object()})
    clf = make_model("gpt2", eot_classifier=True)
    with pytest.raises(CoconutError, match="<bot>"):  # markers in one row and not in another
        clf.generate(torch.tensor([[9, 10], [9, TK.bot]]), torch.ones(2, 2, dtype=torch.long), 3,
                     use_eot_classifier=True)


def test_padding_past_n_positions_is_fine_while_every_row_fits():
    """Only real positions count against n_positions (128), not the padded width (as with FSDP lockstep)."""
    model = make_model("gpt2")
    rows, n_prompt = make_rows([100, 60], (2, 3))  # 108 and 69 tokens

    def widen(t: torch.Tensor, value: int, width: int = 140) -> torch.Tensor:
        return torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)

    ids, mask, labels = pad_batch(rows, n_prompt, "align")
    wide = model(widen(ids, TK.pad), widen(mask, 0), widen(labels, -100))
    assert_close(wide.loss, model(ids, mask, labels).loss)

    prompts = [r[:n] for r, n in zip(rows, n_prompt)]
    ids, mask, _ = pad_batch(prompts, [len(p) for p in prompts], "left")
    narrow = model.generate(ids, mask, 8)
    wide = model.generate(widen(ids, TK.pad), widen(mask, 0), 8)
    assert torch.equal(wide.sequences, narrow.sequences)
    with pytest.raises(CoconutError, match="a sequence of 129 positions exceeds the model's n_positions=128"):
        model.generate(ids, mask, 129 - ids.shape[1])  # the longer row's prompt plus every new token


def test_training_mode_with_dropout_and_bf16_autocast_runs():
    torch.manual_seed(0)
    base = build_backbone({"n_layer": 2, "n_embd": 32, "n_head": 4, "dropout": 0.1}, vocab_size=VOCAB,
                          n_positions=128)
    model = CoconutLM(base, TK, eot_classifier=True).train()
    ids, mask, labels = pad_batch(*make_rows([5, 2, 7], (2, 4, 6)), "align")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, mask, labels)
    (out.loss + out.eot_loss).backward()
    assert out.n_passes == 7 and torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_gradient_checkpointing_is_refused_for_thoughts():
    model = make_model("gpt2").train()
    enable = getattr(model.base, "activation_checkpointing_enable", None) or model.base.gradient_checkpointing_enable
    enable()
    ids, mask, labels = pad_batch(*make_rows([4], (2,)), "left")
    with pytest.raises(CoconutError, match="checkpointing"):
        model(ids, mask, labels)
