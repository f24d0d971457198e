"""The symbolic form of ProsQA: rendering, the converter, relabelling and its tokenizer."""

from __future__ import annotations

import json
import random

import pytest

from coconut_lm.data import tokenize_examples, vocabulary_texts
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import load_examples
from coconut_lm.tasks.prosqa import ProsQAConfig, all_shortest_paths, generate_prosqa, graph_from_example
from coconut_lm.tasks.symbolic import alphabet, is_symbolic, relabel, symbolize, to_symbolic
from coconut_lm.tokenizer import build_symbol_tokenizer


def _check(sym, word=None):
    """Every fact of the rendering against the graph it came from."""
    g = graph_from_example(sym)
    names = g.names
    edges_text, _, tail = sym.question.partition(" [Q] ")
    pairs = [tuple(e.split()) for e in edges_text.split(" | ")]
    assert sorted(pairs) == sorted((names[a], names[b]) for a, b in g.edges)
    a, b, r, root = tail.split()
    assert r == "[R]" and root == names[g.root] and {a, b} == {names[g.target], names[g.neg_target]}
    assert sym.answer == names[g.target]
    path = (names[g.root], *sym.steps)
    assert tuple(names.index(s) for s in path) in all_shortest_paths(g, g.root, g.target)
    if word is not None:
        assert len(sym.steps) == len(word.steps)


def test_official_file_renders_symbolically(prosqa_valid):
    word = load_examples(prosqa_valid)
    sym = symbolize(word, seed=0)
    assert all(is_symbolic(s) for s in sym)
    for w, s in zip(word, sym):
        _check(s, w)
        assert s.extra["idx_to_symbol"] == [str(i) for i in range(len(w.extra["idx_to_symbol"]))]
    n_tokens = [len(s.question.split()) for s in sym]
    assert 80 < sum(n_tokens) / len(n_tokens) < 130  # the literature's "about 118 tokens per item"


def test_relabelling_is_seeded_injective_and_keeps_the_problem():
    word = generate_prosqa(50, seed=0, workers=1, config=ProsQAConfig(n_nodes=12, min_hops=1, max_hops=3,
                                                                       hop_keep=(1.0, 1.0, 1.0)))
    a, b = symbolize(word, seed=3, relabel=True), symbolize(word, seed=3, relabel=True)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    assert [x.question for x in a] != [x.question for x in symbolize(word, seed=4, relabel=True)]
    for s in a:
        _check(s)
        assert len(set(s.extra["idx_to_symbol"])) == len(s.extra["idx_to_symbol"])
    again = [relabel(s, random.Random(i)) for i, s in enumerate(a)]
    for s, r in zip(a, again):
        _check(r)
        assert r.extra["edges"] == s.extra["edges"] and r.extra["target"] == s.extra["target"]
    assert any(r.question != s.question for s, r in zip(a, again))
    with pytest.raises(CoconutError, match="already"):
        to_symbolic(a[0])
    with pytest.raises(CoconutError, match="not in the symbolic form"):
        relabel(word[0], random.Random(0))


def test_symbol_tokenizer_gives_one_token_per_symbol_everywhere():
    word = generate_prosqa(20, seed=1, workers=1)
    sym = symbolize(word, seed=0, relabel=True)
    tok = build_symbol_tokenizer(vocabulary_texts(sym) + [alphabet()])
    data = tokenize_examples(sym, tok)
    for s, d in zip(sym, data):
        assert d.question == tok.convert_tokens_to_ids(s.question.split())  # no splits, no space tokens
        assert [len(step) for step in d.steps] == [1] * len(s.steps)  # a step is one node, no newline
        assert d.answer[:-1] == tok.convert_tokens_to_ids(["###", s.answer]) and d.answer[-1] == tok.eos_token_id
        assert tok.unk_token_id not in d.question
    first = sym[0].question.split()[0]
    assert tok.encode(first)[0] == tok.encode(f"x {first}")[1]  # the same token first or not
    assert tok.decode(data[0].question).split() == sym[0].question.split()


def test_cli_renders_the_official_file(tmp_path, prosqa_valid):
    from coconut_lm.cli import main

    out = tmp_path / "sym.json"
    assert main(["data", "symbolic", str(prosqa_valid), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 300 and rows[0]["format"] == "symbolic"
    gen = tmp_path / "gen.json"
    assert main(["data", "prosqa", "--n", "5", "--nodes", "12", "--min-hops", "1", "--max-hops", "3",
                 "--format", "symbolic", "--relabel", "--workers", "1", "--out", str(gen)]) == 0
    assert all(r["format"] == "symbolic" for r in json.loads(gen.read_text()))


def test_fast_symbol_tokenisation_equals_the_tokenizers_own():
    from coconut_lm.data import segment_texts

    sym = symbolize(generate_prosqa(30, seed=2, workers=1), seed=1, relabel=True)
    tok = build_symbol_tokenizer(vocabulary_texts(sym[:1]))  # later items hold unknown symbols
    for ex, d in zip(sym, tokenize_examples(sym, tok)):
        q, steps, a = segment_texts(ex)
        assert d.question == tok(q, add_special_tokens=True)["input_ids"]
        assert d.steps == [tok(s, add_special_tokens=False)["input_ids"] for s in steps]
        assert d.answer == tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert any(tok.unk_token_id in d.question for d in tokenize_examples(sym, tok))
