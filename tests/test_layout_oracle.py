"""An independent oracle for the layouts: the official Coconut data rules restated, compared with every method.

The oracle is written from the official pipeline's documented behaviour (facebookresearch/coconut,
`dataset.py`: the training and question-only datasets, `run.py`: which flags each method sets), not
from `coconut_lm.recipe.methods`. It takes a tokenised example, a stage, c, `max_latent_stage` and
`pad_latent_to_max` (stage mixing off) and returns the exact tokens and labels the official code
trains on, and the prompt it evaluates with. Methods the official code lacks (iCoT, pause, w/o
curriculum) are checked against the paper's descriptions.
"""

from __future__ import annotations

import itertools

import pytest

from coconut_lm.recipe.methods import IGNORE, LayoutConfig, TokenizedExample, get_method
from coconut_lm.recipe.tokens import SpecialTokens
from coconut_lm.training.config import load_config
from coconut_lm.training.run_config import val_thoughts

T = SpecialTokens(bot=901, eot=902, latent=903, pause=904, pad=0, eos=999)
ANSWER = [77, 78, T.eos]  # "### answer" then EOS
QUESTION = [1, 2, 3]


def example(n_steps: int) -> TokenizedExample:
    """n steps of 1, 2 or 3 tokens each (ids 100*i + j), so that dropping whole steps is visible."""
    return TokenizedExample(question=list(QUESTION), steps=[[100 * (i + 1) + j for j in range(i % 3 + 1)]
                                                            for i in range(n_steps)], answer=list(ANSWER))


# --- the oracle: official flags per method, then its two datasets ---------------------------------------

#: The official run's switches for each method it has: (coconut, cot, no_cot, no_thoughts).
OFFICIAL_FLAGS = {
    "coconut": dict(cot=False, no_cot=False, no_thoughts=False),
    "cot": dict(cot=True, no_cot=False, no_thoughts=False),
    "no_cot": dict(cot=False, no_cot=True, no_thoughts=False),
    "no_thought": dict(cot=False, no_cot=False, no_thoughts=True),
}


def official_stage(method: str, stage: int) -> int:
    """run.py: CoT and No-CoT always train at stage 0; the others at epoch // epochs_per_stage."""
    return 0 if OFFICIAL_FLAGS[method]["cot"] or OFFICIAL_FLAGS[method]["no_cot"] else stage


def official_train(method: str, ex: TokenizedExample, stage: int, c: int, max_stage: int, pad: bool,
                   markers: bool = True, slot: int = T.latent) -> tuple[list[int], list[int]]:
    """The tokens and labels of the official training dataset for one example at `stage` (no stage mixing)."""
    flags = OFFICIAL_FLAGS[method]
    c = 0 if flags["no_thoughts"] else c  # w/o thought: run.py sets c_thought to 0
    no_marker = flags["cot"] or flags["no_cot"] or flags["no_thoughts"] or not markers
    stage = official_stage(method, stage)
    if stage > max_stage:
        skip = len(ex.steps)
        n_latent = max_stage if pad else min(len(ex.steps), max_stage)
    else:
        skip, n_latent = stage, stage
    if flags["no_cot"]:
        skip, n_latent = len(ex.steps), 0
    n_latent *= c
    head = ex.question + ([] if no_marker else [T.bot]) + [slot] * n_latent + ([] if no_marker else [T.eot])
    tail = [t for step in ex.steps[skip:] for t in step] + ex.answer
    return head + tail, [IGNORE] * len(head) + tail


def official_eval(method: str, ex: TokenizedExample, stage: int, c: int, max_stage: int, pad: bool,
                  markers: bool = True) -> tuple[list[int], int]:
    """The official question-only dataset: the generation prompt and its thought count."""
    flags = OFFICIAL_FLAGS[method]
    c = 0 if flags["no_thoughts"] else c
    no_marker = flags["cot"] or flags["no_cot"] or flags["no_thoughts"] or not markers
    cap = max_stage if pad else min(max_stage, len(ex.steps))
    k = min(cap, official_stage(method, stage)) * c
    if flags["no_cot"]:
        k = 0
    prompt = ex.question + ([] if no_marker else [T.bot]) + [T.latent] * k + ([] if no_marker else [T.eot])
    return prompt, k


# --- the comparisons --------------------------------------------------------------------------------------

GRID = list(itertools.product(range(8), range(9), (1, 2, 3), (True, False)))  # steps, stage, c, pad


@pytest.mark.parametrize("method", ["coconut", "cot", "no_cot", "no_thought"])
@pytest.mark.parametrize("max_stage", [2, 6])
def test_training_layouts_match_the_official_rules(method, max_stage):
    for n_steps, k, c, pad in GRID:
        cfg = LayoutConfig(c_thought=c, max_latent_stage=max_stage, pad_latent_to_max=pad)
        lay = get_method(method).train_layout(example(n_steps), k, cfg, T)
        want = official_train(method, example(n_steps), k, c, max_stage, pad)
        assert (lay.input_ids, lay.labels) == want, (method, n_steps, k, c, pad)


def test_pause_as_thought_is_coconut_with_pause_tokens_in_the_slots():
    for n_steps, k, c, pad in GRID:
        cfg = LayoutConfig(c_thought=c, max_latent_stage=3, pad_latent_to_max=pad)
        lay = get_method("pause_as_thought").train_layout(example(n_steps), k, cfg, T)
        assert (lay.input_ids, lay.labels) == official_train("coconut", example(n_steps), k, c, 3, pad, slot=T.pause)


def test_without_markers_the_thoughts_follow_the_question():
    # Zhu et al.'s layout: the official sequence without its <bot>/<eot> pair.
    for n_steps, k, c, pad in GRID:
        cfg = LayoutConfig(c_thought=c, max_latent_stage=3, pad_latent_to_max=pad, latent_markers=False)
        lay = get_method("coconut").train_layout(example(n_steps), k, cfg, T)
        assert (lay.input_ids, lay.labels) == official_train("coconut", example(n_steps), k, c, 3, pad, markers=False)
        assert get_method("coconut").eval_prompt(example(n_steps), 2, cfg, T) == QUESTION + [T.latent] * 2


def test_no_curriculum_trains_on_the_final_stage_at_every_epoch():
    # Paper section 4.3: "w/o curriculum" trains directly on the last stage's data.
    for n_steps, k, c, pad in GRID:
        cfg = LayoutConfig(c_thought=c, max_latent_stage=3, pad_latent_to_max=pad)
        lay = get_method("no_curriculum").train_layout(example(n_steps), k, cfg, T)
        assert (lay.input_ids, lay.labels) == official_train("coconut", example(n_steps), 4, c, 3, pad)


def test_icot_removes_the_first_k_chain_tokens():
    # Deng et al. 2024: the first k tokens of the chain (the left side) are removed; the question is not supervised.
    for n_steps, k in itertools.product(range(8), range(20)):
        ex = example(n_steps)
        chain = [t for s in ex.steps for t in s]
        lay = get_method("icot").train_layout(ex, k, LayoutConfig(), T)
        assert lay.input_ids == QUESTION + chain[k:] + ANSWER
        assert lay.labels == [IGNORE] * len(QUESTION) + chain[k:] + ANSWER


def test_pause_puts_p_masked_pauses_before_the_answer():
    # Paper section 4.3: <pause> tokens between question and answer, as many as Coconut's thoughts.
    for n_steps, p in itertools.product(range(8), range(7)):
        lay = get_method("pause").train_layout(example(n_steps), 0, LayoutConfig(pause_tokens=p), T)
        assert lay.input_ids == QUESTION + [T.pause] * p + ANSWER
        assert lay.labels == [IGNORE] * (len(QUESTION) + p) + ANSWER


@pytest.mark.parametrize("method", ["coconut", "cot", "no_cot", "no_thought"])
def test_evaluation_prompts_match_the_official_rules(method):
    # The prompt for a given count equals the official one; the count ours uses at the final stage is
    # the official one whenever it does not read the example's own step count (pad_latent_to_max: true, or a
    # chain at least max_latent_stage long) - the difference docs/methods.md lists.
    m = get_method(method)
    for n_steps, k, c, pad in GRID:
        cfg = LayoutConfig(c_thought=c, max_latent_stage=3, pad_latent_to_max=pad)
        prompt, n = official_eval(method, example(n_steps), k, c, 3, pad)
        if method in ("coconut",):
            assert m.eval_prompt(example(n_steps), n, cfg, T) == prompt, (n_steps, k, c, pad)
        else:
            assert m.eval_prompt(example(n_steps), m.default_eval_thoughts(cfg), cfg, T) == prompt
        if k > 3 and (pad or n_steps >= 3):
            assert m.default_eval_thoughts(cfg) == n, (method, n_steps, k, c, pad)


@pytest.mark.parametrize("method", ["coconut", "no_thought", "pause_as_thought"])
def test_validation_during_the_curriculum_uses_the_stages_count(method):
    # Official: the question-only dataset at stage s holds min(s, max_latent_stage)*c thoughts (pad true).
    for epoch, c in itertools.product(range(12), (1, 2)):
        cfg = load_config(None, [f"method={method}", "epochs_per_stage=2", "max_latent_stage=3", f"c_thought={c}",
                                 "pad_latent_to_max=true"])
        want = min(epoch // 2, 3) * c if method != "no_thought" else 0
        assert val_thoughts(cfg, get_method(method), epoch) == want, (epoch, c)
