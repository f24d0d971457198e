"""Tokenizers: word-level and BPE round trips on the valid files, unknown tokens, special tokens, HF folders."""

from __future__ import annotations

import pytest

from coconut_lm.data.pipeline import segment_texts, tokenize_examples, unknown_tokens, vocabulary_texts
from coconut_lm.data.tokenizer import (
    add_coconut_tokens,
    build_bpe_tokenizer,
    build_word_tokenizer,
    load_tokenizer,
    special_token_ids,
    word_pieces,
)
from coconut_lm.errors import CoconutError
from coconut_lm.recipe.tokens import COCONUT_TOKENS
from coconut_lm.tasks.examples import load_examples


@pytest.mark.parametrize("fixture", ["prosqa_valid", "prontoqa_valid", "gsm_valid"])
def test_word_tokenizer_round_trips_every_valid_file(fixture, request):
    examples = load_examples(request.getfixturevalue(fixture))
    tok = build_word_tokenizer(vocabulary_texts(examples))
    for ex, data in zip(examples, tokenize_examples(examples, tok)):
        q, steps, a = segment_texts(ex)
        assert tok.decode(data.question) == q
        assert [tok.decode(s) for s in data.steps] == steps
        assert tok.decode(data.answer, skip_special_tokens=True) == a
        assert tok.unk_token_id not in data.question + [t for s in data.steps for t in s] + data.answer


def test_word_pieces_keep_spaces_and_isolate_punctuation_and_digits():
    assert word_pieces("Tom is a terpus.\nEvery") == ["Tom", "▁is", "▁a", "▁terpus", ".", "\n", "Every"]
    assert word_pieces("$1,000") == ["$", "1", ",", "0", "0", "0"]


def test_special_tokens_come_first_and_are_single_tokens():
    tok = build_word_tokenizer(["Tom is a wumpus ."])
    ids = special_token_ids(tok)
    assert (ids.pad, ids.eos, ids.bot, ids.eot, ids.latent, ids.pause) == (0, 1, 3, 4, 5, 6)
    for text in COCONUT_TOKENS:
        assert len(tok.encode(text, add_special_tokens=False)) == 1
    assert tok.decode([ids.bot, ids.latent, ids.eot], skip_special_tokens=True) == ""


def test_unknown_words_map_to_unk():
    tok = build_word_tokenizer(["Tom is a wumpus ."])
    assert tok.unk_token_id in tok.encode("Tom is a zorpus", add_special_tokens=False)


def test_saved_word_tokenizer_loads_as_an_hf_folder(tmp_path):
    tok = build_word_tokenizer(["Tom is a wumpus.\n", "### Tom"])
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = load_tokenizer(tmp_path)
    assert special_token_ids(loaded) == special_token_ids(tok)
    assert loaded.encode("Tom is a wumpus.\n", add_special_tokens=False) == tok.encode("Tom is a wumpus.\n", add_special_tokens=False)


def test_hf_tokenizer_without_coconut_tokens_gets_them(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]").save_pretrained(tmp_path)
    tok = load_tokenizer(tmp_path)  # no pad, no eos, no Coconut tokens in the folder
    ids = special_token_ids(tok)
    assert len({ids.bot, ids.eot, ids.latent, ids.pause, ids.pad, ids.eos}) == 6
    assert add_coconut_tokens(tok) == 0  # a second call adds nothing


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(CoconutError, match="cannot load a tokenizer from"):
        load_tokenizer(tmp_path / "nothing_here")


def test_gsm8k_words_unseen_in_training_are_counted_by_the_word_tokenizer_and_never_unknown_with_bpe(gsm_valid):
    # The word-level vocabulary of 200 questions misses words of the other 300; byte-level BPE trained
    # on the same 200 encodes all 500 and decodes them back exactly, segment by segment.
    examples = load_examples(gsm_valid)
    train, held_out = examples[:200], examples[200:]
    word = build_word_tokenizer(vocabulary_texts(train))
    unknown = unknown_tokens(held_out, tokenize_examples(held_out, word), word)
    assert unknown is not None and unknown.count >= unknown.items > 0
    first = held_out[unknown.first_item]
    assert unknown.first_field == "question" and unknown.first_word in first.question
    assert unknown.first_word not in {w.strip("▁") for w in word.get_vocab()}
    assert "unknown tokens (<unk>)" in unknown.message("gsm_valid.json")

    bpe = build_bpe_tokenizer(vocabulary_texts(train), vocab_size=1000)
    assert len(bpe) <= 1000 and special_token_ids(bpe) == special_token_ids(word)
    data = tokenize_examples(held_out, bpe)
    assert unknown_tokens(held_out, data, bpe) is None
    for ex, d in zip(held_out, data):
        q, steps, a = segment_texts(ex)
        assert (bpe.decode(d.question), [bpe.decode(s) for s in d.steps]) == (q, steps)
        assert bpe.decode(d.answer, skip_special_tokens=True) == a
