"""Each epoch's training data: the file's, freshly generated (`fresh_data`), or relabelled, tokenised.

    symbolic = check_training_form(examples, relabel=True, source="train.json")
    texts = tokenizer_texts(examples, symbolic)                 # what a from-scratch tokenizer must cover
    epochs = EpochData(examples, data, tokenizer, seed=0, visited=steps * batch_size, fresh_data="prosqa ...")
    data = epochs.draw(epoch=3)                                 # what EpochBatches lays out this epoch

A drawn epoch is a pure function of (seed, epoch), so a resumed run draws what it would have drawn.
Only the examples the epoch visits (a prefix of its seeded order, `epoch_order`) are drawn anew or
relabelled; the others keep the file's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from coconut_lm.data.pipeline import check_lengths, epoch_order, tokenize_examples, vocabulary_texts
from coconut_lm.errors import CoconutError
from coconut_lm.recipe.methods import LayoutConfig, TokenizedExample
from coconut_lm.tasks.examples import Example

#: Fresh training data of epoch e is drawn with seed FRESH_SEED + seed * 10**6 + e (far from any val/test seed).
FRESH_SEED = 10**9


def check_training_form(examples: Sequence[Example], relabel: bool, source: str) -> bool:
    """Whether the training examples are all symbolic; refuse `relabel` (relabel_every_epoch) on data it cannot rename.

    Relabelling reads each ProsQA graph, so a bad one fails now, not epochs later.
    """
    from coconut_lm.tasks.symbolic import is_symbolic
    from coconut_lm.tasks.symbolic_prontoqa import is_symbolic_prontoqa

    symbolic = bool(examples) and all(is_symbolic(e) for e in examples)
    if relabel and not symbolic:
        raise CoconutError(f"{source}: relabel_every_epoch needs symbolic data (coconut-lm data symbolic)")
    if relabel and not any(is_symbolic_prontoqa(e) for e in examples):
        from coconut_lm.tasks.prosqa_graph import graph_from_example

        for i, ex in enumerate(examples):
            graph_from_example(ex, i, source)
    return symbolic


def tokenizer_texts(examples: Sequence[Example], symbolic: bool) -> list[str]:
    """Every text a tokenizer built from the training data must cover: its pieces, and for symbolic data the
    whole symbol alphabet (relabelled or fresh epochs use names the file does not)."""
    from coconut_lm.tasks.symbolic import alphabet_for

    return vocabulary_texts(examples) + ([alphabet_for(examples)] if symbolic else [])


class EpochData:
    """The training set tokenised once, and each epoch's draw from it.

    `visited` is how many examples an epoch visits (steps per epoch times the batch size);
    `fresh_data` holds `coconut-lm data` arguments ("" for none); `relabel` renames the symbols.
    """

    def __init__(self, examples: Sequence[Example], data: Sequence[TokenizedExample], tokenizer, *, seed: int,
                 visited: int, layout: LayoutConfig, max_length: int, source: str, fresh_data: str = "",
                 relabel: bool = False) -> None:
        self.examples, self.data, self.tokenizer = list(examples), list(data), tokenizer
        self.seed, self.visited, self.layout, self.max_length = seed, visited, layout, max_length
        self.source, self.fresh_data, self.relabel = source, fresh_data, relabel

    def draw(self, epoch: int) -> list[TokenizedExample]:
        """Epoch `epoch`'s tokenised training data: the file's, or with the visited examples drawn anew."""
        if not self.fresh_data and not self.relabel:
            return self.data
        used = epoch_order(self.seed, epoch, len(self.data))[: self.visited]
        examples = [self.examples[i] for i in used]
        if self.fresh_data:
            from coconut_lm.tasks.generate import fresh_examples

            examples = fresh_examples(self.fresh_data, len(used), FRESH_SEED + self.seed * 10**6 + epoch)
        if self.relabel:
            from coconut_lm.tasks.symbolic import relabel

            rng = random.Random(f"coconut-lm/relabel/{self.seed}/{epoch}")
            examples = [relabel(e, rng) for e in examples]
        fresh = tokenize_examples(examples, self.tokenizer)
        unknown = sum(t == self.tokenizer.unk_token_id for ex in fresh for t in ex.question)
        if unknown:
            raise CoconutError(f"fresh_data '{self.fresh_data}': epoch {epoch} has {unknown} question tokens "
                               f"the tokenizer built from {self.source} does not know")
        check_lengths(fresh, self.layout, self.max_length, f"fresh data of epoch {epoch}")
        data = list(self.data)
        for i, ex in zip(used, fresh):
            data[i] = ex
        return data
