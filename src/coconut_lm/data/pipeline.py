"""From examples to training batches: tokenise once per run, then lay out each batch on demand.

    data = tokenize_examples(examples, tokenizer)
    plan = BatchPlan(batch_size=128, micro_batch_size=32, world_size=1, rank=0)
    epoch = EpochBatches(data, method, layout_cfg, schedule_cfg, tokens, plan, seed=0, epoch=3)
    for mb in epoch.loader(start=0, num_workers=2): ...

An epoch is a seeded permutation cut into global batches (the last incomplete one is dropped).
Each global batch is split across ranks, then into micro-batches for gradient accumulation. The
schedule positions (stage mixing, iCoT smoothing) are drawn for the whole global batch from a
generator seeded by (seed, epoch, step), so the data a run sees does not depend on the number of
ranks or workers, and two ranks with B/2 see exactly what one rank with B sees.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from coconut_lm.data.batching import Batch, collate
from coconut_lm.errors import CoconutError
from coconut_lm.recipe.curriculum import ScheduleConfig
from coconut_lm.recipe.methods import IGNORE, Layout, LayoutConfig, Method, TokenizedExample
from coconut_lm.recipe.tokens import SpecialTokens, stop_decisions
from coconut_lm.tasks.examples import Example


def segment_texts(ex: Example) -> tuple[str, list[str], str]:
    """The text pieces a sequence is built from: question and steps end in a newline, the answer is '### answer'."""
    return ex.question + "\n", [s + "\n" for s in ex.steps], "### " + ex.answer


def vocabulary_texts(examples: Sequence[Example]) -> list[str]:
    """Every text piece a word-level tokenizer must cover: the segments exactly as they are tokenised."""
    return [t for e in examples for q, steps, a in [segment_texts(e)] for t in (q, *steps, a)]


def _symbol_vocab(tokenizer) -> dict[str, int] | None:
    """The vocabulary of a symbol tokenizer (`build_symbol_tokenizer`: whitespace split, word level), else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.pre_tokenizer).__name__ != "WhitespaceSplit" \
            or type(backend.model).__name__ != "WordLevel" or backend.normalizer is not None:
        return None
    return tokenizer.get_vocab()


def is_symbol_tokenizer(tokenizer) -> bool:
    """Whether `tokenizer` is a symbol tokenizer (`build_symbol_tokenizer`): the model reads symbolic ProsQA."""
    return _symbol_vocab(tokenizer) is not None


def tokenize_examples(examples: Sequence[Example], tokenizer) -> list[TokenizedExample]:
    """Tokenise question, steps and answer of every example in three batched calls.

    A symbol tokenizer is applied directly (a dictionary lookup per word, the same ids as the
    tokenizer's own call, ~10x faster), since runs with fresh or relabelled data tokenise every epoch.
    """
    if not examples:
        return []
    vocab = _symbol_vocab(tokenizer)
    if vocab is not None:
        unk, eos = tokenizer.unk_token_id, tokenizer.eos_token_id
        enc = lambda text: [vocab.get(w, unk) for w in text.split()]  # noqa: E731
        return [TokenizedExample(question=enc(q), steps=[enc(st) for st in steps], answer=enc(a) + [eos])
                for q, steps, a in map(segment_texts, examples)]
    pieces = [segment_texts(e) for e in examples]
    questions = tokenizer([q for q, _, _ in pieces], add_special_tokens=True)["input_ids"]
    flat_steps = [s for _, steps, _ in pieces for s in steps]
    step_ids = tokenizer(flat_steps, add_special_tokens=False)["input_ids"] if flat_steps else []
    answers = tokenizer([a for _, _, a in pieces], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out, j = [], 0
    for e, q, a in zip(examples, questions, answers):
        n = len(e.steps)
        out.append(TokenizedExample(question=list(q), steps=[list(s) for s in step_ids[j:j + n]], answer=list(a) + [eos]))
        j += n
    return out


def check_control_tokens(examples: Sequence[Example], tokenizer, source: str) -> None:
    """Refuse data whose text holds a control token's string (`<latent>`, `<eos>`, ...), naming file, item and field.

    The tokenizer would turn such text into the control token itself: a plain-text `<latent>` in a
    question would become a continuous-thought slot.
    """
    specials = sorted({t for t in tokenizer.all_special_tokens if t}, key=len, reverse=True)
    for i, ex in enumerate(examples):
        fields = [("question", ex.question), *((f"steps[{j}]", st) for j, st in enumerate(ex.steps)), ("answer", ex.answer)]
        for name, text in fields:
            hit = next((t for t in specials if t in text), None)
            if hit is not None:
                raise CoconutError(f"{source}: item {i}: field '{name}' contains the control token '{hit}' as text; "
                                   f"data text may not hold control tokens (remove or rename it)")


@dataclass(frozen=True)
class UnknownTokens:
    """Where a tokenizer fell back to its unknown token in a data set: how often, and the first case."""

    count: int
    items: int
    first_item: int
    first_field: str
    first_word: str

    def message(self, source: str) -> str:
        """One warning line naming the file, the count and the first offending word."""
        return (f"warning: {source}: {self.count} unknown tokens (<unk>) in {self.items} items; the first is "
                f"'{self.first_word}' in item {self.first_item}, field '{self.first_field}'")


def _unknown_word(text: str, tokenizer, unk: int) -> str:
    """The first piece of `text` (as the tokenizer's pre-tokenizer splits it) that encodes to `unk`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    pieces = [p for p, _ in pre.pre_tokenize_str(text)] if pre is not None else text.split()
    for piece in pieces:
        if unk in tokenizer(piece, add_special_tokens=False)["input_ids"]:
            return piece.replace("▁", " ").strip() or piece
    return text.strip()[:40]


def unknown_tokens(examples: Sequence[Example], data: Sequence[TokenizedExample], tokenizer) -> UnknownTokens | None:
    """Count unknown tokens in tokenised `data` (from `examples`); None when there are none or no unknown token."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return None
    count = items = 0
    first: tuple[int, str, str] | None = None
    for i, (ex, tex) in enumerate(zip(examples, data)):
        q, steps, a = segment_texts(ex)
        fields = [("question", q, tex.question), *((f"steps[{j}]", st, ids) for j, (st, ids) in
                                                   enumerate(zip(steps, tex.steps))), ("answer", a, tex.answer)]
        in_item = 0
        for name, text, ids in fields:
            n = ids.count(unk)
            if n and first is None:
                first = (i, name, _unknown_word(text, tokenizer, unk))
            in_item += n
        count += in_item
        items += in_item > 0
    return None if first is None else UnknownTokens(count, items, *first)


def tokenize_checked(examples: Sequence[Example], tokenizer, source: str,
                     warn: bool = True) -> tuple[list[TokenizedExample], UnknownTokens | None]:
    """Tokenise data read from `source` as every command does: control-token text is refused, and unknown
    tokens are counted (and, with `warn`, reported on stderr in one line)."""
    check_control_tokens(examples, tokenizer, source)
    data = tokenize_examples(examples, tokenizer)
    unknown = unknown_tokens(examples, data, tokenizer)
    if unknown is not None and warn:
        print(unknown.message(source), file=sys.stderr, flush=True)
    return data, unknown


def max_layout_length(ex: TokenizedExample, layout: LayoutConfig) -> int:
    """An upper bound on any method's sequence length for `ex` (CoT chain plus markers and slots)."""
    slots = max(layout.max_latent_stage * layout.c_thought, layout.pause_tokens)
    return len(ex.question) + sum(len(s) for s in ex.steps) + len(ex.answer) + 2 + slots


def check_lengths(data: Sequence[TokenizedExample], layout: LayoutConfig, max_length: int, source: str) -> None:
    """Raise a CoconutError naming the first example whose sequence would exceed `max_length`."""
    for i, ex in enumerate(data):
        n = max_layout_length(ex, layout)
        if n > max_length:
            raise CoconutError(
                f"{source}: item {i}: sequence of up to {n} tokens exceeds max_length={max_length} "
                f"(raise max_length, or drop long examples)"
            )


@dataclass(frozen=True)
class BatchPlan:
    """How a global batch is split: over `world_size` ranks, then into micro-batches."""

    batch_size: int
    micro_batch_size: int
    world_size: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        per_rank, rem = divmod(self.batch_size, self.world_size)
        if rem or per_rank % self.micro_batch_size:
            raise CoconutError(
                f"batch_size={self.batch_size} must be a multiple of world_size*micro_batch_size="
                f"{self.world_size}*{self.micro_batch_size}"
            )

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step on each rank."""
        return self.batch_size // (self.world_size * self.micro_batch_size)


@dataclass
class MicroBatch:
    """One forward/backward's worth of data, with what the loss normalisation needs.

    `global_label_tokens` counts supervised tokens in the whole global batch (all ranks, all
    micro-batches), so that summing token losses / that count gives the same gradient however
    the batch is split; `global_thought_slots` counts its classifier decisions (`stop_decisions`), where
    the `<eot>` classifier's loss lives, for the same reason. `step_frac` is how far through the
    epoch the step is (the schedule and the optimizer resets both read it).
    """

    batch: Batch
    global_label_tokens: int
    global_thought_slots: int
    step: int
    micro: int
    step_frac: float
    positions: np.ndarray

    def pin_memory(self) -> MicroBatch:
        self.batch = self.batch.pin_memory()
        return self


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The seeded order in which epoch `epoch` visits `n` training examples (its first steps*batch are used)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def bucket_by_length(order: np.ndarray, lengths: np.ndarray, batch_size: int, window: int,
                     rng: np.random.Generator) -> np.ndarray:
    """`order` with each run of `window` global batches regrouped so every batch holds similar lengths.

    Within a window the examples are sorted by length and cut into batches, whose order is then
    shuffled: the same examples in the same stretch of the epoch, with less padding in each batch.
    `window` 0 or 1 leaves `order` as it is.
    """
    if window <= 1:
        return order
    out = order.copy()
    span = window * batch_size
    for start in range(0, len(order) - batch_size + 1, span):
        chunk = order[start:start + span]
        chunk = chunk[: len(chunk) // batch_size * batch_size]
        by_len = chunk[np.argsort(lengths[chunk], kind="stable")].reshape(-1, batch_size)
        by_len = rng.permuted(by_len, axis=1)  # rows in no length order, so no rank always gets the longest
        out[start:start + by_len.size] = by_len[rng.permutation(len(by_len))].reshape(-1)
    return out


class EpochBatches(Dataset):
    """The micro-batches of one epoch for one rank, built on demand (safe in DataLoader workers)."""

    def __init__(
        self,
        data: Sequence[TokenizedExample],
        method: Method,
        layout: LayoutConfig,
        schedule: ScheduleConfig,
        tokens: SpecialTokens,
        plan: BatchPlan,
        seed: int,
        epoch: int,
        max_steps: int | None = None,
        length_buckets: int = 0,
    ) -> None:
        if len(data) < plan.batch_size:
            raise CoconutError(f"{len(data)} training examples is fewer than one batch (batch_size={plan.batch_size})")
        self.data, self.method, self.layout, self.schedule = data, method, layout, schedule
        self.tokens, self.plan, self.seed, self.epoch = tokens, plan, seed, epoch
        self.order = epoch_order(seed, epoch, len(data))
        self.steps_per_epoch = len(data) // plan.batch_size
        self.steps = self.steps_per_epoch if max_steps is None else min(max_steps, self.steps_per_epoch)
        self.n_steps = np.array([ex.n_steps for ex in data])
        self.n_chain = np.array([sum(len(s) for s in ex.steps) for ex in data])
        if length_buckets > 1:  # regroup only the examples this epoch visits, so the set visited stays the same
            used = self.steps * plan.batch_size
            lengths = self.n_chain + np.array([len(ex.question) + len(ex.answer) for ex in data])
            self.order = np.concatenate([bucket_by_length(self.order[:used], lengths, plan.batch_size, length_buckets,
                                                          np.random.default_rng([seed, epoch, 2])), self.order[used:]])
        # The layouts of the last global batch built, and their label count: the micro-batches of
        # one step share them, so the batch is laid out once per step, not once per micro-batch.
        self._step_cache: tuple[int, list[Layout], np.ndarray, int, int] | None = None

    def __len__(self) -> int:
        return self.steps * self.plan.accumulation

    def loader(self, start: int = 0, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
        """The micro-batches from number `start` on, in order (a resumed epoch starts mid-way)."""
        # Its own generator: an iterator would otherwise draw from the global RNG, which resume restores.
        return DataLoader(self, batch_size=None, sampler=range(start, len(self)),
                          generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch),
                          num_workers=num_workers, pin_memory=pin_memory, persistent_workers=False)

    def step_frac(self, step: int) -> float:
        """How far through the epoch (as trained, i.e. after `max_steps`) global batch `step` is, in [0, 1)."""
        return step / self.steps

    def positions(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(example indices, schedule positions) of global batch `step`."""
        idx = self.order[step * self.plan.batch_size:(step + 1) * self.plan.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, step, 1])
        ks = self.method.schedule.positions(self.schedule, self.epoch, self.step_frac(step),
                                            self.n_steps[idx], self.n_chain[idx], rng)
        return idx, ks

    def __getitem__(self, i: int) -> MicroBatch:
        if not 0 <= i < len(self):
            raise IndexError(i)
        step, micro = divmod(i, self.plan.accumulation)
        if self._step_cache is None or self._step_cache[0] != step:
            idx, ks = self.positions(step)
            layouts = [self.method.train_layout(self.data[j], int(k), self.layout, self.tokens) for j, k in zip(idx, ks)]
            slots = sum(len(stop_decisions(lay.input_ids, self.tokens)) for lay in layouts)
            self._step_cache = (step, layouts, ks, sum(_n_targets(lay.labels) for lay in layouts), slots)
        _, layouts, ks, total, slots = self._step_cache
        per_rank = self.plan.batch_size // self.plan.world_size
        start = self.plan.rank * per_rank + micro * self.plan.micro_batch_size
        sl = slice(start, start + self.plan.micro_batch_size)
        batch = collate(layouts[sl], self.tokens.pad, self.tokens.latent)
        return MicroBatch(batch=batch, global_label_tokens=total, global_thought_slots=slots, step=step, micro=micro,
                          step_frac=self.step_frac(step), positions=ks[sl])


def _n_targets(labels: list[int]) -> int:
    """Supervised next-token targets of one row: labels[1:] that are not IGNORE (list.count runs in C)."""
    if not labels:
        return 0
    return len(labels) - 1 - labels.count(IGNORE) + (labels[0] == IGNORE)
