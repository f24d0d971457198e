"""Collation, tokenisation and the epoch batch plan (determinism, rank splits, loss normalisation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coconut_lm.data.batching import collate, left_pad
from coconut_lm.data.pipeline import BatchPlan, EpochBatches, check_lengths, tokenize_examples
from coconut_lm.data.tokenizer import build_word_tokenizer, special_token_ids
from coconut_lm.errors import CoconutError
from coconut_lm.recipe.curriculum import ScheduleConfig
from coconut_lm.recipe.methods import IGNORE, Layout, LayoutConfig, TokenizedExample, get_method
from coconut_lm.tasks.examples import Example

X = IGNORE


def test_collate_aligns_first_latent_and_pads_right():
    lat, pad = 9, 0
    a = Layout([1, 2, 3, 8, lat, lat, 7, 5], [X, X, X, X, X, X, 7, 5])
    b = Layout([1, 8, lat, 7, 5, 6], [X, X, X, 7, 5, 6])
    c = Layout([1, 2, 5], [X, 2, 5])  # no latent: not shifted
    batch = collate([a, b, c], pad, lat)
    assert batch.input_ids.tolist() == [
        [1, 2, 3, 8, lat, lat, 7, 5],
        [0, 0, 1, 8, lat, 7, 5, 6],
        [1, 2, 5, 0, 0, 0, 0, 0],
    ]
    assert batch.attention_mask.tolist() == [[1] * 8, [0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0, 0]]
    assert batch.labels.tolist()[1] == [X, X, X, X, X, 7, 5, 6]
    assert batch.n_label_tokens == 2 + 3 + 2


def test_left_pad_prompts_end_together():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def _examples(n: int) -> list[Example]:
    return [Example(f"q{i} is a w{i % 3} .", [f"s{j}" for j in range(1 + i % 4)], f"a{i % 2}") for i in range(n)]


def test_tokenize_examples_segments_round_trip():
    exs = _examples(6)
    tok = build_word_tokenizer([t for e in exs for t in (e.question + "\n", *(s + "\n" for s in e.steps), "### " + e.answer)])
    data = tokenize_examples(exs, tok)
    for e, d in zip(exs, data):
        assert tok.decode(d.question) == e.question + "\n"
        assert [tok.decode(s) for s in d.steps] == [s + "\n" for s in e.steps]
        assert d.answer[-1] == tok.eos_token_id
        assert tok.decode(d.answer[:-1]) == "### " + e.answer


def _epoch(world: int, rank: int, micro: int, epoch: int = 0, uniform_prob: float = 0.5) -> EpochBatches:
    data = [TokenizedExample([1, 2 + i % 5], [[10 + j] * (1 + j % 2) for j in range(1 + i % 4)], [40, 99]) for i in range(40)]
    tokens = special_token_ids(build_word_tokenizer(["x"]))
    return EpochBatches(data, get_method("coconut"), LayoutConfig(max_latent_stage=3), ScheduleConfig(epochs_per_stage=1, uniform_prob=uniform_prob),
                        tokens, BatchPlan(8, micro, world, rank), seed=3, epoch=epoch)


def test_epoch_is_deterministic_and_seed_dependent():
    a, b = _epoch(1, 0, 4), _epoch(1, 0, 4)
    assert len(a) == 5 * 2
    for i in range(len(a)):
        assert torch.equal(a[i].batch.input_ids, b[i].batch.input_ids)
    assert not np.array_equal(_epoch(1, 0, 4, epoch=1).order, a.order)


def test_two_ranks_see_exactly_the_micro_batches_of_one_rank():
    one = _epoch(1, 0, 4)
    r0, r1 = _epoch(2, 0, 4), _epoch(2, 1, 4)
    assert len(r0) == len(r1) == 5
    for step in range(5):
        for got, want in ((r0[step], one[2 * step]), (r1[step], one[2 * step + 1])):
            assert torch.equal(got.batch.input_ids, want.batch.input_ids)
            assert torch.equal(got.batch.labels, want.batch.labels)
            assert got.global_label_tokens == want.global_label_tokens
    # The micro-batches of a step together hold exactly the global token count.
    assert sum(one[i].batch.n_label_tokens for i in (0, 1)) == one[0].global_label_tokens


def test_batch_plan_rejects_uneven_splits():
    with pytest.raises(CoconutError, match="multiple of"):
        BatchPlan(10, 4, 1, 0)
    assert BatchPlan(32, 4, 2, 0).accumulation == 4


def test_too_few_examples_for_one_batch():
    data = [TokenizedExample([1], [[2]], [3, 4])] * 3
    tokens = special_token_ids(build_word_tokenizer(["x"]))
    with pytest.raises(CoconutError, match="fewer than one batch"):
        EpochBatches(data, get_method("cot"), LayoutConfig(), ScheduleConfig(), tokens, BatchPlan(8, 8), 0, 0)


def test_over_long_example_is_reported_with_its_index():
    data = [TokenizedExample([1] * 5, [[2]], [3, 4]), TokenizedExample([1] * 50, [[2]], [3, 4])]
    check_lengths(data[:1], LayoutConfig(), 40, "train.json")
    with pytest.raises(CoconutError, match="train.json: item 1: .* exceeds max_length=40"):
        check_lengths(data, LayoutConfig(), 40, "train.json")


def test_step_fraction_follows_the_capped_epoch():
    data = [TokenizedExample([1, 2], [[10], [11]], [40, 99]) for _ in range(80)]
    tokens = special_token_ids(build_word_tokenizer(["x"]))
    ds = EpochBatches(data, get_method("icot"), LayoutConfig(), ScheduleConfig(icot_delta=8, icot_lambda=0), tokens,
                      BatchPlan(8, 8), seed=0, epoch=0, max_steps=2)
    assert ds.steps == 2 and [ds.step_frac(s) for s in (0, 1)] == [0.0, 0.5]
    assert [ds[i].step_frac for i in range(2)] == [0.0, 0.5]
    assert ds.positions(1)[1].tolist() == [2] * 8  # removal 8 * 0.5 = 4, capped at the 2-token chain


def test_thought_slots_are_counted_over_the_global_batch():
    one = _epoch(1, 0, 4)
    mbs = [one[0], one[1]]
    from coconut_lm.model.loss import stop_decision_mask

    tokens = special_token_ids(build_word_tokenizer(["x"]))
    local = [int(stop_decision_mask(m.batch.input_ids, m.batch.attention_mask, tokens)[0].sum()) for m in mbs]
    assert mbs[0].global_thought_slots == sum(local) > 0


def test_length_buckets_regroup_the_same_examples_with_less_padding():
    rng = np.random.default_rng(0)
    data = [TokenizedExample([1] * int(n), [[10]], [40, 99]) for n in rng.integers(5, 60, size=96)]
    tokens = special_token_ids(build_word_tokenizer(["x"]))

    def epoch(buckets: int, max_steps: int | None = None) -> EpochBatches:
        return EpochBatches(data, get_method("cot"), LayoutConfig(), ScheduleConfig(), tokens, BatchPlan(8, 8),
                            seed=1, epoch=2, max_steps=max_steps, length_buckets=buckets)

    plain, bucketed = epoch(0), epoch(4)
    assert sorted(plain.order.tolist()) == sorted(bucketed.order.tolist())
    # each window of 4 batches (32 examples) holds the same examples as before, in batches of similar length
    for w in range(0, 96, 32):
        assert set(plain.order[w:w + 32]) == set(bucketed.order[w:w + 32])
    padded = {name: sum(int(ds[i].batch.input_ids.numel()) for i in range(len(ds))) for name, ds in
              (("plain", plain), ("bucketed", bucketed))}
    assert padded["bucketed"] < 0.8 * padded["plain"]
    assert np.array_equal(epoch(4).order, bucketed.order)  # seeded
    # a capped epoch regroups only the examples it visits
    capped = epoch(4, max_steps=5)
    assert set(capped.order[:40]) == set(plain.order[:40]) and np.array_equal(capped.order[40:], plain.order[40:])
    assert np.array_equal(epoch(1).order, plain.order)
