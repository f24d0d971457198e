"""The eight methods of the paper, each one small unit: how it lays out an example at progress k.

A method turns a tokenised example into (a) a training sequence with its label mask and (b) an
evaluation prompt; it also says (c) which language steps it should write at evaluation. `k` is the method's schedule position for that example: the curriculum stage
for the stage-based methods, the number of removed chain tokens for iCoT, and unused otherwise.

    method = METHODS["coconut"]
    layout = method.train_layout(ex, k=2, cfg=cfg, tokens=tokens)
    prompt = method.eval_prompt(ex, n_thoughts=6, cfg=cfg, tokens=tokens)
    method.expected_steps(example.steps, n_thoughts=6, cfg=cfg)   # the chain it should write, or None
    method.eval_thoughts(cfg, schedule_cfg, epoch=9)              # the thought count evaluation uses

Layouts (Q question, S_i steps, A "### answer<eos>", labels masked on everything in brackets):

    cot               [Q] S1 .. Sn A
    no_cot            [Q] A
    icot              [Q] S1..Sn with its first k tokens removed, A
    pause             [Q <pause>*p] A
    coconut           [Q <bot> <latent>*(m*c) <eot>] S_{k+1} .. Sn A   (m = latent steps at stage k)
    no_curriculum     coconut at the final stage, from epoch 0
    no_thought        [Q] S_{k+1} .. Sn A
    pause_as_thought  [Q <bot> <pause>*(m*c) <eot>] S_{k+1} .. Sn A

Only the remaining steps and the answer are supervised; the question, the markers and every
thought or pause slot carry label -100. With `latent_markers=False` the `<bot>`/`<eot>` pair is
left out, so the thoughts follow the question directly (the from-scratch symbolic ProsQA layout of
Zhu et al. 2025); the first thought is then the hidden state that, at stage 0, predicted step 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from coconut_lm.recipe.curriculum import FIXED, STAGES, TOKEN_REMOVAL, Schedule, ScheduleConfig
from coconut_lm.recipe.tokens import SpecialTokens

IGNORE = -100


@dataclass(frozen=True)
class TokenizedExample:
    """An example as token ids: question (with the tokenizer's BOS if any), steps, and the answer.

    `answer` is the tokens of "### <answer>" followed by EOS; every step ends with its newline.
    """

    question: list[int]
    steps: list[list[int]]
    answer: list[int]

    @property
    def n_steps(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class LayoutConfig:
    """The fields every layout reads: thoughts per step, the last latent stage, padding, pauses."""

    c_thought: int = 1
    max_latent_stage: int = 6
    pad_latent_to_max: bool = False
    pause_tokens: int = 6
    latent_markers: bool = True

    def __post_init__(self) -> None:
        if self.c_thought < 0 or self.max_latent_stage < 0 or self.pause_tokens < 0:
            raise ValueError("c_thought, max_latent_stage and pause_tokens must be >= 0")

    def to_meta(self) -> dict[str, int | bool]:
        """The fields as a checkpoint's coconut.json records them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_meta(cls, meta: dict) -> LayoutConfig:
        """The layout a checkpoint was trained with, from its coconut.json meta (defaults where absent)."""
        return cls(**{f.name: type(f.default)(meta[f.name]) for f in dataclasses.fields(cls) if f.name in meta})


@dataclass(frozen=True)
class Layout:
    """One training sequence: token ids and labels of the same length (IGNORE where masked)."""

    input_ids: list[int]
    labels: list[int]


def latent_steps(n_steps: int, k: int, cfg: LayoutConfig) -> tuple[int, int]:
    """(language steps dropped, latent steps inserted) at stage k, as the official Coconut code counts them.

    At a stage k <= `max_latent_stage` the first k steps are dropped and k latent steps inserted,
    even for a chain with fewer than k steps (it loses all of them). Past `max_latent_stage` every
    step is dropped and the latent count is `max_latent_stage`, or, without `pad_latent_to_max`,
    the chain's own step count when that is smaller.
    """
    if k <= cfg.max_latent_stage:
        return min(k, n_steps), k
    return n_steps, cfg.max_latent_stage if cfg.pad_latent_to_max else min(n_steps, cfg.max_latent_stage)


def _chain(steps: Sequence[list[int]]) -> list[int]:
    return [t for s in steps for t in s]


def _written(steps: Sequence[str]) -> list[str] | None:
    """Steps as the generation's chain lines read them (stripped, blanks dropped); None if there are none."""
    return [s.strip() for s in steps if s.strip()] or None


def _supervised(prefix: list[int], target: list[int]) -> Layout:
    """`prefix` masked, `target` supervised."""
    return Layout(prefix + target, [IGNORE] * len(prefix) + list(target))


class Method:
    """Base class: a name, a schedule, and the two layouts. Subclasses override only what differs."""

    name: str = ""
    #: The name tables print (the paper's Table 1 row).
    label: str = ""
    #: What moves the layouts through training (`curriculum.Schedule`); fixed unless overridden.
    schedule: Schedule = FIXED
    #: True when the layout holds `<latent>` slots, i.e. training needs the multi-pass forward.
    continuous: bool = False

    def train_layout(self, ex: TokenizedExample, k: int, cfg: LayoutConfig, tokens: SpecialTokens) -> Layout:
        """The training sequence for `ex` at schedule position k."""
        raise NotImplementedError

    def eval_prompt(self, ex: TokenizedExample, n_thoughts: int, cfg: LayoutConfig, tokens: SpecialTokens) -> list[int]:
        """The generation prompt for `ex` with `n_thoughts` thought (or pause) slots; cot-like methods ignore it."""
        return list(ex.question)

    def default_eval_thoughts(self, cfg: LayoutConfig) -> int:
        """Thoughts used at evaluation unless set explicitly: the final stage's count."""
        return 0

    def eval_thoughts(self, cfg: LayoutConfig, schedule: ScheduleConfig, epoch: int, fixed: int | None = None) -> int:
        """Thought (or pause) slots evaluation uses after `epoch`: the one place this number is decided.

        The final setting is `fixed` (the config's `eval_thoughts`) or, unset, the final stage's count
        (`default_eval_thoughts`); the schedule says when it applies (`Schedule.val_thoughts`): Coconut's
        stages validate with the current stage's k*c until the last latent stage, every other method
        with the final setting. Validation uses it, and each checkpoint records it as `eval_thoughts`.
        """
        final = fixed if fixed is not None else self.default_eval_thoughts(cfg)
        slots_per_stage = cfg.c_thought if self.default_eval_thoughts(cfg) > 0 else 0
        return self.schedule.val_thoughts(schedule, epoch, slots_per_stage, final)

    def has_thought_slots(self, cfg: LayoutConfig, tokens: SpecialTokens) -> bool:
        """Whether the eval prompt changes with the thought count (so forced k means something)."""
        probe = TokenizedExample(question=[tokens.eos], steps=[[tokens.eos]], answer=[tokens.eos])
        return self.eval_prompt(probe, 0, cfg, tokens) != self.eval_prompt(probe, 1, cfg, tokens)

    def expected_steps(self, ex_steps: Sequence[str], n_thoughts: int, cfg: LayoutConfig) -> list[str] | None:
        """The language steps this method was trained to write at eval with `n_thoughts` thought slots.

        None: it writes no chain (evaluation then leaves `cot_match` out). By default a method is
        evaluated at the end of its schedule, where only cot still writes steps.
        """
        return None


class CoT(Method):
    """Chain of thought: the full language chain is supervised."""

    name = "cot"
    label = "CoT"

    def train_layout(self, ex, k, cfg, tokens):
        return _supervised(list(ex.question), _chain(ex.steps) + ex.answer)

    def expected_steps(self, ex_steps, n_thoughts, cfg):
        return _written(ex_steps)


class NoCoT(Method):
    """No chain: the question, then the answer."""

    name = "no_cot"
    label = "No-CoT"

    def train_layout(self, ex, k, cfg, tokens):
        return _supervised(list(ex.question), list(ex.answer))


class ICoT(Method):
    """Implicit CoT (stepwise internalisation): the first k chain tokens are removed."""

    name = "icot"
    label = "iCoT"
    schedule = TOKEN_REMOVAL

    def train_layout(self, ex, k, cfg, tokens):
        return _supervised(list(ex.question), _chain(ex.steps)[max(k, 0):] + ex.answer)


class Pause(Method):
    """Pause-token baseline: `pause_tokens` `<pause>` tokens between question and answer."""

    name = "pause"
    label = "Pause token"

    def train_layout(self, ex, k, cfg, tokens):
        return _supervised(list(ex.question) + [tokens.pause] * cfg.pause_tokens, list(ex.answer))

    def eval_prompt(self, ex, n_thoughts, cfg, tokens):
        return list(ex.question) + [tokens.pause] * cfg.pause_tokens

    def default_eval_thoughts(self, cfg):
        return cfg.pause_tokens


class Coconut(Method):
    """Coconut: the first k steps become k*c continuous thoughts between `<bot>` and `<eot>`."""

    name = "coconut"
    label = "Coconut"
    schedule = STAGES
    continuous = True

    def slot(self, tokens: SpecialTokens) -> list[int]:
        """The token that fills one thought slot."""
        return [tokens.latent]

    def latent_block(self, tokens: SpecialTokens, n_slots: int, cfg: LayoutConfig) -> list[int]:
        """`<bot>`, n slots, `<eot>` (just the slots without `latent_markers`): what stands between question and steps."""
        slots = self.slot(tokens) * n_slots
        return [tokens.bot, *slots, tokens.eot] if cfg.latent_markers else slots

    def train_layout(self, ex, k, cfg, tokens):
        dropped, latent = latent_steps(ex.n_steps, k, cfg)
        prefix = list(ex.question) + self.latent_block(tokens, latent * cfg.c_thought, cfg)
        return _supervised(prefix, _chain(ex.steps[dropped:]) + ex.answer)

    def eval_prompt(self, ex, n_thoughts, cfg, tokens):
        return list(ex.question) + self.latent_block(tokens, n_thoughts, cfg)

    def default_eval_thoughts(self, cfg):
        return cfg.max_latent_stage * cfg.c_thought

    def expected_steps(self, ex_steps, n_thoughts, cfg):
        if cfg.c_thought == 0:  # no slots at any stage, so the thought count does not tell the stage
            return None
        k = n_thoughts // cfg.c_thought
        # max_latent_stage*c thoughts is the final stage's prompt (stage > max_latent_stage), trained
        # to write no step; fewer is a forced-k stage k, trained to write the steps after the k-th.
        if k >= cfg.max_latent_stage:
            return None
        return _written(ex_steps[k:])


class NoCurriculum(Coconut):
    """Coconut without the curriculum: the final-stage layout (all steps latent) from epoch 0."""

    name = "no_curriculum"
    label = "w/o curriculum"
    schedule = FIXED

    def train_layout(self, ex, k, cfg, tokens):
        return super().train_layout(ex, cfg.max_latent_stage + 1, cfg, tokens)

    def expected_steps(self, ex_steps, n_thoughts, cfg):
        return None  # only ever trained on the final stage, which writes no step


class NoThought(Coconut):
    """Coconut's curriculum removes the steps, but nothing replaces them (no slots, no markers, as the official code)."""

    name = "no_thought"
    label = "w/o thought"
    continuous = False

    def latent_block(self, tokens, n_slots, cfg):
        return []

    def default_eval_thoughts(self, cfg):
        return 0

    def expected_steps(self, ex_steps, n_thoughts, cfg):
        return None  # its prompt has no slots to say the stage; it is evaluated at the final stage


class PauseAsThought(Coconut):
    """Coconut's curriculum with `<pause>` tokens in the thought slots (one ordinary forward pass)."""

    name = "pause_as_thought"
    label = "pause as thought"
    continuous = False

    def slot(self, tokens):
        return [tokens.pause]


METHODS: dict[str, Method] = {
    m.name: m for m in (CoT(), NoCoT(), ICoT(), Pause(), Coconut(), NoCurriculum(), NoThought(), PauseAsThought())
}


def register_method(method: Method) -> Method:
    """Add `method` to `METHODS` (a name already there is an error) and return it: the config, the
    trainer, eval and the report then know it."""
    from coconut_lm.errors import CoconutError

    if method.name in METHODS:
        raise CoconutError(f"method '{method.name}' is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The method called `name`; an unknown name is a CoconutError listing the valid ones."""
    from coconut_lm.errors import CoconutError

    if name not in METHODS:
        raise CoconutError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}")
    return METHODS[name]
