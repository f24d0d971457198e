"""Stage schedule, stage mixing, iCoT removal and optimizer-reset points."""

from __future__ import annotations

import numpy as np

from coconut_lm.recipe.curriculum import (
    ALL_TOKENS,
    ScheduleConfig,
    coconut_stage,
    icot_removal,
    icot_scheduled_removal,
    sample_removal_offsets,
)
from coconut_lm.recipe.methods import get_method

COCONUT, ICOT, COT = get_method("coconut"), get_method("icot"), get_method("cot")


def test_stage_is_epoch_over_epochs_per_stage():
    assert [coconut_stage(e, 5) for e in (0, 4, 5, 9, 10, 49)] == [0, 0, 1, 1, 2, 9]
    assert coconut_stage(3, 1) == 3


def test_positions_follow_stage_without_mixing():
    cfg = ScheduleConfig(epochs_per_stage=2)
    ks = COCONUT.schedule.positions(cfg, 5, 0.3, np.array([3, 4, 5]), np.array([9, 9, 9]), np.random.default_rng(0))
    assert ks.tolist() == [2, 2, 2]


def test_stage_mixing_draws_uniformly_up_to_n_steps():
    cfg = ScheduleConfig(epochs_per_stage=100, uniform_prob=0.5)
    n_steps = np.full(20000, 4)
    ks = COCONUT.schedule.positions(cfg, 0, 0.0, n_steps, n_steps, np.random.default_rng(1))
    mixed = ks[ks > 0]
    # Half the examples are mixed, each with a stage uniform on 0..4, so 0.5 * 4/5 = 40% are > 0.
    assert abs(len(mixed) / len(ks) - 0.4) < 0.02
    assert set(np.unique(mixed)) == {1, 2, 3, 4}
    counts = np.bincount(mixed)[1:] / len(mixed)
    assert np.allclose(counts, 0.25, atol=0.02)


def test_icot_removal_is_delta_per_epoch_spread_over_steps():
    assert icot_scheduled_removal(0, 0.0, 8) == 0
    assert icot_scheduled_removal(0, 0.5, 8) == 4
    assert icot_scheduled_removal(2, 0.25, 8) == 18
    assert icot_removal(18, 30, 2, 100) == 20
    assert icot_removal(18, 19, 5, 100) == 19  # never more than the chain
    assert icot_removal(100, 30, 0, 100) == 30  # past the threshold everything goes


def test_icot_smoothing_offsets_are_geometric_with_lambda():
    o = sample_removal_offsets(np.random.default_rng(0), 200000, lam=4.0)
    # P(0) = 1 - e^-4 ≈ 0.9817; P(1) = e^-4 (1 - e^-4) ≈ 0.01798
    assert abs((o == 0).mean() - (1 - np.exp(-4))) < 0.002
    assert abs((o == 1).mean() - np.exp(-4) * (1 - np.exp(-4))) < 0.002
    assert (sample_removal_offsets(np.random.default_rng(0), 10, lam=0) == 0).all()


def test_icot_positions_use_schedule_plus_offsets():
    cfg = ScheduleConfig(icot_delta=10, icot_lambda=0)
    ks = ICOT.schedule.positions(cfg, 1, 0.5, np.array([3, 3]), np.array([12, 40]), np.random.default_rng(0))
    assert ks.tolist() == [12, 15]


def test_reset_key_changes_at_stage_boundaries_only():
    cfg = ScheduleConfig(epochs_per_stage=2, max_latent_stage=2)
    keys = [COCONUT.schedule.optimizer_key(cfg, e, 0.0) for e in range(10)]
    assert keys == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    every = ScheduleConfig(reset_optimizer="epoch")
    assert [COCONUT.schedule.optimizer_key(every, e, 0.0) for e in range(3)] == [0, 1, 2]
    assert COT.schedule.optimizer_key(cfg, 5, 0.0) is None
    assert COCONUT.schedule.optimizer_key(ScheduleConfig(reset_optimizer="never"), 5, 0.0) is None


def test_reset_key_for_icot_follows_each_new_removal():
    cfg = ScheduleConfig(icot_delta=4, icot_max_removed=6)
    keys = [ICOT.schedule.optimizer_key(cfg, 0, f) for f in (0.0, 0.2, 0.3, 0.5, 0.75)]
    assert keys == [0, 0, 1, 2, 3]
    assert ICOT.schedule.optimizer_key(cfg, 5, 0.0) == 6


def test_eval_position():
    assert COCONUT.schedule.eval_position(ScheduleConfig(epochs_per_stage=3), 7) == 2
    assert ICOT.schedule.eval_position(ScheduleConfig(icot_delta=8), 1) == 15
    assert ICOT.schedule.eval_position(ScheduleConfig(icot_delta=8, icot_max_removed=10), 1) == ALL_TOKENS


def test_icot_resets_stop_once_every_chain_is_removed():
    cfg = ScheduleConfig(icot_delta=8)
    keys = [ICOT.schedule.optimizer_key(cfg, e, 0.0, longest_chain=20) for e in range(6)]
    assert keys == [0, 8, 16, 20, 20, 20]
