"""Each method's exact token layout and label mask for one known example, at several stages."""

from __future__ import annotations

import pytest

from coconut_lm.recipe.methods import (
    IGNORE,
    METHODS,
    LayoutConfig,
    TokenizedExample,
    get_method,
    latent_steps,
)
from coconut_lm.recipe.tokens import SpecialTokens

T = SpecialTokens(bot=901, eot=902, latent=903, pause=904, pad=0, eos=999)
# Question [1, 2], three steps [11, 12] [21] [31, 32, 33], answer [41, 999].
EX = TokenizedExample(question=[1, 2], steps=[[11, 12], [21], [31, 32, 33]], answer=[41, T.eos])
CFG = LayoutConfig(c_thought=1, max_latent_stage=2, pad_latent_to_max=False, pause_tokens=3)
B, E, L, P, X = T.bot, T.eot, T.latent, T.pause, IGNORE


def layout(name: str, k: int, cfg: LayoutConfig = CFG) -> tuple[list[int], list[int]]:
    lay = get_method(name).train_layout(EX, k, cfg, T)
    assert len(lay.input_ids) == len(lay.labels)
    return lay.input_ids, lay.labels


def test_registry_has_the_eight_methods():
    assert set(METHODS) == {"cot", "no_cot", "icot", "pause", "coconut", "no_curriculum", "no_thought", "pause_as_thought"}


def test_cot_supervises_whole_chain_and_answer():
    assert layout("cot", 5) == ([1, 2, 11, 12, 21, 31, 32, 33, 41, 999], [X, X, 11, 12, 21, 31, 32, 33, 41, 999])


def test_no_cot_is_question_then_answer():
    assert layout("no_cot", 3) == ([1, 2, 41, 999], [X, X, 41, 999])


@pytest.mark.parametrize(
    ("k", "ids", "labels"),
    [
        (0, [1, 2, 11, 12, 21, 31, 32, 33, 41, 999], [X, X, 11, 12, 21, 31, 32, 33, 41, 999]),
        (2, [1, 2, 21, 31, 32, 33, 41, 999], [X, X, 21, 31, 32, 33, 41, 999]),
        (3, [1, 2, 31, 32, 33, 41, 999], [X, X, 31, 32, 33, 41, 999]),
        (6, [1, 2, 41, 999], [X, X, 41, 999]),
        (100, [1, 2, 41, 999], [X, X, 41, 999]),
    ],
)
def test_icot_removes_tokens_from_the_start_of_the_chain(k, ids, labels):
    assert layout("icot", k) == (ids, labels)


def test_pause_puts_pauses_between_question_and_answer_masked():
    assert layout("pause", 2) == ([1, 2, P, P, P, 41, 999], [X, X, X, X, X, 41, 999])


@pytest.mark.parametrize(
    ("k", "ids", "labels"),
    [
        # Stage 0 is CoT with empty latent mode.
        (0, [1, 2, B, E, 11, 12, 21, 31, 32, 33, 41, 999], [X, X, X, X, 11, 12, 21, 31, 32, 33, 41, 999]),
        (1, [1, 2, B, L, E, 21, 31, 32, 33, 41, 999], [X, X, X, X, X, 21, 31, 32, 33, 41, 999]),
        (2, [1, 2, B, L, L, E, 31, 32, 33, 41, 999], [X, X, X, X, X, X, 31, 32, 33, 41, 999]),
        # Past max_latent_stage=2: every language step goes, the thoughts stay at the maximum.
        (3, [1, 2, B, L, L, E, 41, 999], [X, X, X, X, X, X, 41, 999]),
    ],
)
def test_coconut_layout_per_stage(k, ids, labels):
    assert layout("coconut", k) == (ids, labels)


def test_coconut_c2_doubles_thoughts_per_step():
    cfg = LayoutConfig(c_thought=2, max_latent_stage=2)
    assert layout("coconut", 1, cfg) == ([1, 2, B, L, L, E, 21, 31, 32, 33, 41, 999], [X] * 6 + [21, 31, 32, 33, 41, 999])


def test_pad_latent_to_max_only_matters_for_short_chains_past_the_last_stage():
    # The official rule: at a stage k <= max_latent_stage an example always gets k thoughts (a chain
    # shorter than k loses all its steps); only past the last stage is the count capped at its steps.
    short = TokenizedExample(question=[1], steps=[[11]], answer=[41, T.eos])
    free = LayoutConfig(max_latent_stage=3, pad_latent_to_max=False)
    padded = LayoutConfig(max_latent_stage=3, pad_latent_to_max=True)
    coconut = get_method("coconut")
    for cfg in (free, padded):
        assert coconut.train_layout(short, 3, cfg, T).input_ids == [1, B, L, L, L, E, 41, 999]
        assert latent_steps(1, 2, cfg) == (1, 2)
    assert coconut.train_layout(short, 4, free, T).input_ids == [1, B, L, E, 41, 999]
    assert coconut.train_layout(short, 4, padded, T).input_ids == [1, B, L, L, L, E, 41, 999]
    assert latent_steps(1, 4, free) == (1, 1)
    assert latent_steps(1, 4, padded) == (1, 3)
    assert latent_steps(5, 7, free) == latent_steps(5, 7, padded) == (5, 3)


def test_no_curriculum_uses_final_stage_from_the_start():
    assert layout("no_curriculum", 0) == ([1, 2, B, L, L, E, 41, 999], [X, X, X, X, X, X, 41, 999])


def test_no_thought_drops_steps_without_slots_or_markers():
    assert layout("no_thought", 2) == ([1, 2, 31, 32, 33, 41, 999], [X, X, 31, 32, 33, 41, 999])
    assert layout("no_thought", 9) == ([1, 2, 41, 999], [X, X, 41, 999])


def test_pause_as_thought_fills_slots_with_pauses():
    assert layout("pause_as_thought", 1) == ([1, 2, B, P, E, 21, 31, 32, 33, 41, 999], [X] * 5 + [21, 31, 32, 33, 41, 999])


@pytest.mark.parametrize(
    ("name", "n", "prompt"),
    [
        ("cot", 6, [1, 2]),
        ("no_cot", 6, [1, 2]),
        ("icot", 6, [1, 2]),
        ("pause", 6, [1, 2, P, P, P]),
        ("coconut", 2, [1, 2, B, L, L, E]),
        ("coconut", 0, [1, 2, B, E]),
        ("no_curriculum", 2, [1, 2, B, L, L, E]),
        ("no_thought", 2, [1, 2]),
        ("pause_as_thought", 2, [1, 2, B, P, P, E]),
    ],
)
def test_eval_prompts(name, n, prompt):
    assert get_method(name).eval_prompt(EX, n, CFG, T) == prompt


def test_only_coconut_family_needs_multipass():
    assert {m.name for m in METHODS.values() if m.continuous} == {"coconut", "no_curriculum"}


def test_default_eval_thoughts():
    cfg = LayoutConfig(c_thought=2, max_latent_stage=3, pause_tokens=6)
    assert get_method("coconut").default_eval_thoughts(cfg) == 6
    assert get_method("pause").default_eval_thoughts(cfg) == 6
    assert get_method("cot").default_eval_thoughts(cfg) == 0


def test_unknown_method_is_a_clear_error():
    from coconut_lm.errors import CoconutError

    with pytest.raises(CoconutError, match="unknown method 'coconutt'"):
        get_method("coconutt")


STEPS = ["Tom is a wumpus.", " Every wumpus is a lempus. ", "Every lempus is a zumpus."]
ALL = [s.strip() for s in STEPS]
GSM = LayoutConfig(c_thought=2, max_latent_stage=3)  # GSM8k's Coconut: two thoughts per step, three stages


@pytest.mark.parametrize(
    ("name", "n", "cfg", "expected"),
    [
        ("cot", 0, CFG, ALL),
        ("cot", 6, GSM, ALL),
        ("no_cot", 0, CFG, None),
        ("icot", 0, CFG, None),
        ("pause", 3, CFG, None),
        # Forced k < max_latent_stage: stage k wrote the steps after the k-th.
        ("coconut", 0, CFG, ALL),
        ("coconut", 1, CFG, ALL[1:]),
        ("coconut", 2, GSM, ALL[1:]),
        ("coconut", 3, GSM, ALL[1:]),  # 3 thoughts at c=2: stage 1
        ("coconut", 4, GSM, ALL[2:]),
        # max_latent_stage*c thoughts is the final stage's prompt, which writes no step (GSM8k at eval).
        ("coconut", 6, GSM, None),
        ("coconut", 2, CFG, None),
        ("coconut", 3, LayoutConfig(max_latent_stage=6), None),  # every step already latent
        ("coconut", 2, LayoutConfig(c_thought=0), None),
        ("pause_as_thought", 2, GSM, ALL[1:]),
        ("pause_as_thought", 6, GSM, None),
        ("no_curriculum", 0, CFG, None),
        ("no_curriculum", 1, CFG, None),
        ("no_thought", 0, CFG, None),
        ("no_thought", 0, GSM, None),
    ],
)
def test_expected_steps_at_eval(name, n, cfg, expected):
    assert get_method(name).expected_steps(STEPS, n, cfg) == expected


def test_layout_config_round_trips_through_checkpoint_meta():
    cfg = LayoutConfig(c_thought=2, max_latent_stage=3, pad_latent_to_max=True, pause_tokens=4)
    assert LayoutConfig.from_meta({**cfg.to_meta(), "method": "coconut", "stage": 2}) == cfg
    assert LayoutConfig.from_meta({}) == LayoutConfig()


def test_without_latent_markers_thoughts_follow_the_question():
    """latent_markers=False (Zhu et al.'s layout): stage 0 is exactly CoT, then slots with no <bot>/<eot>."""
    cfg = LayoutConfig(c_thought=1, max_latent_stage=2, latent_markers=False, pause_tokens=3)
    assert layout("coconut", 0, cfg) == layout("cot", 0, cfg)
    assert layout("coconut", 1, cfg) == ([1, 2, L, 21, 31, 32, 33, 41, 999], [X, X, X, 21, 31, 32, 33, 41, 999])
    assert layout("coconut", 3, cfg) == ([1, 2, L, L, 41, 999], [X, X, X, X, 41, 999])
    assert layout("pause_as_thought", 1, cfg)[0] == [1, 2, P, 21, 31, 32, 33, 41, 999]
    assert get_method("coconut").eval_prompt(EX, 2, cfg, T) == [1, 2, L, L]
    assert LayoutConfig.from_meta(cfg.to_meta()) == cfg
