"""Tokenizers: any HF tokenizer, or one built from the training data (word-level, symbols or byte-level BPE).

Both kinds carry Coconut's special tokens: `<bot>` and `<eot>` open and close latent mode,
`<latent>` marks a continuous-thought slot, `<pause>` is the pause-token baseline's filler, plus a
pad and an end-of-sequence token.

    tok = build_word_tokenizer(texts)          # synthetic tasks, trained from scratch
    tok = build_symbol_tokenizer(texts)        # symbolic tasks: every space-separated symbol is a token
    tok = build_bpe_tokenizer(texts, 4096)     # natural language (GSM8k): byte-level BPE, nothing is unknown
    tok = load_tokenizer("gpt2")                # any HF folder or hub id (special tokens added)
    ids = special_token_ids(tok)                # SpecialTokens(bot=..., eot=..., ...)

The word-level tokenizer splits on spaces and isolates punctuation and digits. A space is kept as
a `▁` prefix of the following word, so `decode(encode(s)) == s` for every string whose words are
in the vocabulary, and segments tokenised one at a time join back into the original text.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

from coconut_lm.errors import CoconutError
from coconut_lm.recipe.tokens import BOT, COCONUT_TOKENS, EOS, EOT, LATENT, PAD, PAUSE, UNK, SpecialTokens

# Splits the text into words with their leading space (as "▁"), single punctuation marks and digits.
_SPLIT_PATTERN = r"[^\w▁]|\d"


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
        ]
    )


def word_pieces(text: str) -> list[str]:
    """The word-level tokenizer's pieces for `text` (the vocabulary entries it would need)."""
    return [piece for piece, _ in _pre_tokenizer().pre_tokenize_str(text)]


def build_word_tokenizer(texts: Iterable[str], min_freq: int = 1):
    """Build a word-level `PreTrainedTokenizerFast` whose vocabulary covers `texts`.

    Pieces seen fewer than `min_freq` times map to `<unk>`. Special tokens come first, so their ids
    are 0..6 in the order pad, eos, unk, bot, eot, latent, pause.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    counts: Counter[str] = Counter()
    pre = _pre_tokenizer()
    for text in texts:
        counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    specials = [PAD, EOS, UNK, *COCONUT_TOKENS]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for piece in sorted(p for p, c in counts.items() if c >= min_freq):
        vocab.setdefault(piece, len(vocab))
    model = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    model.pre_tokenizer = pre
    model.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=model,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens=list(COCONUT_TOKENS),
    )
    return tok


def build_symbol_tokenizer(texts: Iterable[str]):
    """A `PreTrainedTokenizerFast` for symbolic data: each whitespace-separated piece is one token.

    Unlike the word-level tokenizer, a symbol is the same token wherever it stands (first in a text
    or not), punctuation such as `|` never splits off a space token, and line breaks are not tokens:
    the answer marker follows the last symbol directly, so a token shift hands it that symbol.
    Decoding joins tokens with single spaces (text comes back equal up to whitespace).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.WhitespaceSplit()
    pieces: set[str] = set()
    for text in texts:
        pieces.update(piece for piece, _ in pre.pre_tokenize_str(text))
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *COCONUT_TOKENS])}
    for piece in sorted(pieces):
        vocab.setdefault(piece, len(vocab))
    model = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    model.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   extra_special_tokens=list(COCONUT_TOKENS))


def build_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts`, for natural-language data from scratch.

    Byte-level (as GPT-2's): every string encodes, so no word of a validation or test file is ever
    `<unk>`, and `decode(encode(s)) == s`, also for segments encoded one at a time. The special
    tokens come first, with the word-level tokenizer's ids 0..6; `vocab_size` counts them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, EOS, UNK, *COCONUT_TOKENS]
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    model.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   extra_special_tokens=list(COCONUT_TOKENS))


#: What `tokenizer:` may name besides an HF folder or id: a tokenizer built from the training data.
BUILT_TOKENIZERS = ("word", "symbol", "bpe")


def add_coconut_tokens(tok) -> int:
    """Add `<bot>`, `<eot>`, `<latent>`, `<pause>` (and pad/eos where missing) to a tokenizer.

    Returns how many tokens were new, so the caller knows whether to resize the embeddings.
    """
    before = len(tok)
    if tok.eos_token is None:
        tok.add_special_tokens({"eos_token": EOS})
    if tok.pad_token is None:
        # GPT-2 and Llama have no pad token; reusing EOS would mask real EOS labels, so add one.
        tok.add_special_tokens({"pad_token": PAD})
    missing = [t for t in COCONUT_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return len(tok) - before


def load_base_tokenizer(path_or_id: str | os.PathLike, **kwargs):
    """Load an HF tokenizer folder or hub id as it is (see `load_tokenizer` for one ready for Coconut).

    Extra keyword arguments go to `from_pretrained` (e.g. `local_files_only`).
    """
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path_or_id), **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CoconutError(f"cannot load a tokenizer from '{path_or_id}': {first}") from None


def load_tokenizer(path_or_id: str | os.PathLike):
    """Load an HF tokenizer folder or hub id and make sure it has every Coconut token."""
    tok = load_base_tokenizer(path_or_id)
    add_coconut_tokens(tok)
    return tok


def special_token_ids(tok) -> SpecialTokens:
    """The ids of Coconut's special tokens in `tok`; an error names any that is missing."""
    vocab = tok.get_vocab()
    ids = {}
    for name, text in (("bot", BOT), ("eot", EOT), ("latent", LATENT), ("pause", PAUSE)):
        if text not in vocab:
            raise CoconutError(f"tokenizer has no '{text}' token; load it with coconut_lm.data.tokenizer.load_tokenizer")
        ids[name] = vocab[text]
    if tok.pad_token_id is None or tok.eos_token_id is None:
        raise CoconutError("tokenizer needs both a pad and an eos token")
    return SpecialTokens(pad=tok.pad_token_id, eos=tok.eos_token_id, **ids)
