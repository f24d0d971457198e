"""The symbolic form of ProsQA: rendering, the converter, relabelling and its tokenizer."""

from __future__ import annotations

import json
import random

import pytest

from coconut_lm.data.pipeline import tokenize_examples, vocabulary_texts
from coconut_lm.data.tokenizer import build_symbol_tokenizer
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import load_examples
from coconut_lm.tasks.prosqa import ProsQAConfig, generate_prosqa
from coconut_lm.tasks.prosqa_graph import all_shortest_paths, graph_from_example
from coconut_lm.tasks.symbolic import alphabet, is_symbolic, relabel, symbolize, to_symbolic


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
    from coconut_lm.data.pipeline import segment_texts

    sym = symbolize(generate_prosqa(30, seed=2, workers=1), seed=1, relabel=True)
    tok = build_symbol_tokenizer(vocabulary_texts(sym[:1]))  # later items hold unknown symbols
    for ex, d in zip(sym, tokenize_examples(sym, tok)):
        q, steps, a = segment_texts(ex)
        assert d.question == tok(q, add_special_tokens=True)["input_ids"]
        assert d.steps == [tok(s, add_special_tokens=False)["input_ids"] for s in steps]
        assert d.answer == tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert any(tok.unk_token_id in d.question for d in tokenize_examples(sym, tok))


# ------------------------------------------------------------------------------ symbolic ProntoQA


def _forward_chain_check(sym):
    """Check a symbolic ProntoQA item with a forward-chaining reader of the compact form alone.

    Every group is 'subject object [~]'; the entity's memberships start the chain; each step must follow
    from the previous one by a stated rule; the last step is a property literal; the answer says whether
    it equals the query's literal; and the closure of all rules decides the query the same way.
    """
    context, query = sym.question.split(" [Q] ")
    groups = []
    for g in context.split(" | "):
        tokens = g.split()
        assert len(tokens) == 2 or (len(tokens) == 3 and tokens[2] == "~"), g
        groups.append((tokens[0], " ".join(tokens[1:])))  # (subject, object literal)
    entity, *goal_tokens = query.split()
    goal = " ".join(goal_tokens)
    rules = set(groups)
    known = {o for s, o in groups if s == entity}
    assert (entity, sym.steps[0]) in rules  # the first step is a stated membership
    for prev, nxt in zip(sym.steps, sym.steps[1:]):
        assert (prev, nxt) in rules, (prev, nxt)
    last = sym.steps[-1]
    assert last.split()[0] == goal.split()[0]  # the chain ends at the queried property
    assert sym.answer == ("True" if last == goal else "False")
    frontier = list(known)
    while frontier:  # the closure: every concept and literal that follows for the entity
        c = frontier.pop()
        for s, o in groups:
            if s == c and o not in known:
                known.add(o)
                frontier.append(o)
    negation = goal.split()[0] if goal.endswith(" ~") else goal + " ~"
    assert (goal in known) != (negation in known)  # decided, and only one way
    assert sym.answer == ("True" if goal in known else "False")
    return groups, entity, goal


def _symbolic_prontoqa(n, seed=0, relabel=False):
    from coconut_lm.tasks.prontoqa import generate_prontoqa

    return symbolize(generate_prontoqa(n, seed=seed), seed=seed, relabel=relabel)


def test_symbolic_prontoqa_chain_follows_from_the_rules():
    from coconut_lm.tasks.prontoqa import generate_prontoqa
    from coconut_lm.tasks.prontoqa_sentences import parse_sentence, split_question
    from coconut_lm.tasks.symbolic_prontoqa import is_symbolic_prontoqa

    word = generate_prontoqa(100, seed=3)
    sym = symbolize(word, seed=0)
    answers = {"True": 0, "False": 0}
    for w, s in zip(word, sym):
        assert is_symbolic_prontoqa(s) and s.answer == w.answer
        groups, entity, goal = _forward_chain_check(s)
        assert len(s.steps) == len(w.steps) == 6 and len(groups) == 25
        assert s.steps[:5] == w.extra["chain_concepts"] == s.extra["chain_concepts"]
        context, _ = split_question(w.question)
        for sentence, group in zip(context, groups):  # sentence by sentence, in the file's order
            p = parse_sentence(sentence)
            subject = getattr(p, "subject", None) or p.entity
            obj = getattr(p, "obj", None) or getattr(p, "concept", None)
            assert group == (subject, obj + (" ~" if getattr(p, "negated", False) else ""))
        answers[s.answer] += 1
    assert min(answers.values()) > 30
    # a wrong answer fails the checker: it can fail
    bad = sym[0].__class__(sym[0].question, sym[0].steps, "False" if sym[0].answer == "True" else "True", sym[0].extra)
    with pytest.raises(AssertionError):
        _forward_chain_check(bad)


def test_symbolic_prontoqa_renders_each_sentence_form():
    from coconut_lm.tasks.examples import Example
    from coconut_lm.tasks.symbolic_prontoqa import prontoqa_to_symbolic

    ex = Example("Every wumpus is a tumpus. Tumpuses are not happy. Each wumpus is windy. Alex is a wumpus. "
                 "True or false: Alex is happy.",
                 ["Alex is a wumpus. Every wumpus is a tumpus.", "Alex is a tumpus. Tumpuses are not happy.",
                  "Alex is not happy."], "False")
    s = prontoqa_to_symbolic(ex)
    assert s.question == "wumpus tumpus | tumpus happy ~ | wumpus windy | Alex wumpus [Q] Alex happy"
    assert s.steps == ["wumpus", "tumpus", "happy ~"] and s.answer == "False"
    _forward_chain_check(s)
    with pytest.raises(CoconutError, match="field 'answer'"):  # an answer the context does not prove
        prontoqa_to_symbolic(Example(ex.question, ex.steps, "True"), index=4)


def test_official_prontoqa_file_converts_with_every_item_valid(prontoqa_valid, tmp_path):
    from coconut_lm.cli import main

    word = load_examples(prontoqa_valid)
    out = tmp_path / "sym.json"
    assert main(["data", "symbolic", str(prontoqa_valid), "--out", str(out)]) == 0
    sym = load_examples(out)
    assert len(sym) == len(word) == 200
    for w, s in zip(word, sym):
        assert s.extra["format"] == "symbolic" and s.extra["task"] == "prontoqa" and s.answer == w.answer
        _forward_chain_check(s)
        assert s.steps[:5] == w.extra["chain_concepts"]
        assert "edges" not in s.extra  # not mistaken for ProsQA by graph tools
    for s in sym:  # 25 groups of 2 with 24 separators, then '[Q] entity property', and one '~' per negation
        tokens = s.question.split()
        assert len(tokens) == 25 * 3 - 1 + 3 + tokens.count("~") and 0 < tokens.count("~") < 12
    # relabelled, from the CLI: seeded, and still every item valid
    rel = tmp_path / "rel.json"
    assert main(["data", "symbolic", str(prontoqa_valid), "--relabel", "--seed", "5", "--out", str(rel)]) == 0
    relabelled = load_examples(rel)
    assert [s.answer for s in relabelled] == [w.answer for w in word]
    assert sum(r.question != s.question for r, s in zip(relabelled, sym)) > 190
    for r in relabelled:
        _forward_chain_check(r)


def test_prontoqa_generator_file_converts(prontoqa_valid, tmp_path):
    from coconut_lm.cli import main

    raw = prontoqa_valid.parent / "raw_generator_sample.json"
    if not raw.is_file():
        pytest.skip(f"public data file {raw} is not present")
    out = tmp_path / "raw.json"
    assert main(["data", "symbolic", str(raw), "--out", str(out)]) == 0
    sym = load_examples(out)
    assert len(sym) == 5
    for s in sym:
        _forward_chain_check(s)
    assert sym[0].steps[:5] == ["vumpus", "brimpus", "grimpus", "shumpus", "numpus"]


def test_prontoqa_relabelling_keeps_answers_and_structure():
    from coconut_lm.tasks.prontoqa_sentences import CONCEPT_NAMES, ENTITY_NAMES, PROPERTIES
    from coconut_lm.tasks.symbolic_prontoqa import relabel_prontoqa

    base = _symbolic_prontoqa(40, seed=1)
    a, b = _symbolic_prontoqa(40, seed=1, relabel=True), _symbolic_prontoqa(40, seed=1, relabel=True)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]  # seeded
    assert [x.question for x in a] != [x.question for x in _symbolic_prontoqa(40, seed=2, relabel=True)]
    for s in a:
        _forward_chain_check(s)
    changed = 0
    for i, s in enumerate(base):
        r = relabel(s, random.Random(i))  # the trainer's entry point dispatches to ProntoQA's relabelling
        assert r.to_dict() == relabel_prontoqa(s, random.Random(i)).to_dict()
        _forward_chain_check(r)
        assert r.answer == s.answer and len(r.steps) == len(s.steps)
        # unshuffled (the same names: they are drawn before any shuffle), token by token a consistent renaming
        same_order = relabel_prontoqa(s, random.Random(i), shuffle=False)
        old, new = s.question.split(), same_order.question.split()
        assert len(old) == len(new)
        rename = {}
        steps = lambda x: [t for step in x.steps for t in step.split()]  # noqa: E731
        for o, n in zip(old + steps(s), new + steps(same_order)):
            assert rename.setdefault(o, n) == n  # a function ...
            if o in PROPERTIES or o in ("|", "[Q]", "~"):
                assert n == o  # properties and markers keep their names
            elif o == s.extra["entity"]:
                assert n in ENTITY_NAMES
            else:
                assert n in CONCEPT_NAMES
        assert len(set(rename.values())) == len(rename)  # ... and injective
        groups = lambda x: x.question.split(" [Q] ")[0].split(" | ")  # noqa: E731
        assert sorted(groups(r)) == sorted(groups(same_order))  # shuffling only reorders the groups
        assert all(g.startswith(r.extra["entity"] + " ") for g in groups(r)[-2:])  # memberships stay last
        changed += groups(r) != groups(same_order)
    assert changed > 35
    with pytest.raises(CoconutError, match="not symbolic ProntoQA"):
        relabel_prontoqa(symbolize(generate_prosqa(1, seed=0, workers=1))[0], random.Random(0))


def test_symbolic_prontoqa_tokenizer_answers_and_task_detection(prontoqa_valid):
    from coconut_lm.tasks.answers import answers_match, data_task
    from coconut_lm.tasks.symbolic import alphabet_for

    sym = symbolize(load_examples(prontoqa_valid), seed=0)
    tok = build_symbol_tokenizer(vocabulary_texts(_symbolic_prontoqa(20, seed=4)) + [alphabet_for(sym)])
    data = tokenize_examples(sym, tok)
    for s, d in zip(sym, data):
        assert tok.unk_token_id not in d.question  # the alphabet covers every official name
        assert d.question == tok.convert_tokens_to_ids(s.question.split())
        assert [len(step) for step in d.steps] == [1] * 5 + [len(s.steps[-1].split())]
        assert d.answer[:-1] == tok.convert_tokens_to_ids(["###", s.answer])
    relabelled = [relabel(s, random.Random(i)) for i, s in enumerate(sym)]
    assert all(tok.unk_token_id not in d.question for d in tokenize_examples(relabelled, tok))
    assert answers_match("prontoqa", "tumpus gorpus happy ~ ### False", "False")
    assert not answers_match("prontoqa", "tumpus gorpus happy ### True", "False")
    assert data_task(sym) == "prontoqa"
    assert data_task(symbolize(generate_prosqa(5, seed=0, workers=1))) == "prosqa"


def test_symbolic_prontoqa_trains_and_evaluates_end_to_end(tmp_path, capsys):
    """A micro Coconut model trains a few steps on relabelled symbolic ProntoQA; eval and forced k run on the
    official validation file (on generated word-form items where ../shared/data is absent)."""
    from pathlib import Path

    from coconut_lm.cli import main
    from coconut_lm.model.coconut import read_meta
    from coconut_lm.tasks.answers import answers_match
    from coconut_lm.tasks.examples import save_examples
    from coconut_lm.tasks.prontoqa import generate_prontoqa
    from coconut_lm.training.config import load_config
    from coconut_lm.training.train import train

    prontoqa_valid = Path(__file__).resolve().parents[2] / "shared" / "data" / "prontoqa" / "prontoqa_valid.json"
    if not prontoqa_valid.is_file():
        prontoqa_valid = tmp_path / "word.json"
        save_examples(generate_prontoqa(20, seed=2), prontoqa_valid)

    gen = ["data", "prontoqa", "--format", "symbolic", "--relabel"]
    assert main([*gen, "--n", "32", "--seed", "0", "--out", str(tmp_path / "train.json")]) == 0
    assert main([*gen, "--n", "8", "--seed", "1", "--out", str(tmp_path / "val.json")]) == 0
    official = tmp_path / "official.json"
    assert main(["data", "symbolic", str(prontoqa_valid), "--out", str(official)]) == 0
    configs = Path(__file__).resolve().parents[1] / "configs"
    cfg = load_config(configs / "prontoqa_coconut_tiny.yaml", [
        f"train_path={tmp_path / 'train.json'}", f"val_path={tmp_path / 'val.json'}", f"out_dir={tmp_path / 'run'}",
        "model=micro", "batch_size=8", "micro_batch_size=8", "eval_batch_size=8", "num_epochs=2", "max_steps_per_epoch=2",
        "max_latent_stage=6", "max_new_tokens=12", "warmup_steps=0", "relabel_every_epoch=true",
        "fresh_data=prontoqa --format symbolic --relabel"])
    result = train(cfg, progress=False, device="cpu")
    assert 0.0 <= result.best_accuracy <= 1.0 and result.global_step == 4
    assert read_meta(tmp_path / "run" / "best")["data_format"] == "symbolic"
    out = tmp_path / "eval"
    assert main(["eval", str(tmp_path / "run"), "--data", str(official), "--out", str(out), "--latents", "0,6",
                 "--max-examples", "20", "--device", "cpu", "--no-progress"]) == 0
    assert "k6" in capsys.readouterr().out
    for k in (0, 6):
        summary = json.loads((out / f"k{k}" / "summary.json").read_text())
        assert summary["n"] == 20 and 0.0 <= summary["accuracy"] <= 1.0
        assert summary["task"] == summary["data_task"] == "prontoqa" and summary["unknown_tokens"] == 0
        assert summary["mean_thoughts"] == k and summary["accuracy_by_steps"]["6"]["n"] == 20
        rows = [json.loads(x) for x in (out / f"k{k}" / "predictions.jsonl").read_text().splitlines()]
        assert all(r["correct"] == answers_match("prontoqa", r["predicted"], r["gold"]) for r in rows)
        assert summary["accuracy"] == sum(r["correct"] for r in rows) / 20
        golds = [r["gold"] for r in rows]  # chance: always giving the commoner truth value
        assert summary["chance"] == max(golds.count("True"), golds.count("False")) / 20
    # the wrong form or the wrong task is refused
    assert main(["eval", str(tmp_path / "run"), "--data", str(prontoqa_valid), "--out", str(tmp_path / "e2"),
                 "--max-examples", "4", "--device", "cpu", "--no-progress"]) == 2
    assert "is ProntoQA in the word form but checkpoint" in capsys.readouterr().err
    prosqa = tmp_path / "prosqa.json"
    assert main(["data", "prosqa", "--format", "symbolic", "--n", "4", "--nodes", "10", "--min-hops", "1",
                 "--max-hops", "3", "--workers", "1", "--out", str(prosqa)]) == 0
    assert main(["eval", str(tmp_path / "run"), "--data", str(prosqa), "--out", str(tmp_path / "e3"), "--device", "cpu",
                 "--no-progress"]) == 2
    assert "looks like prosqa data" in capsys.readouterr().err
    # analyze: what applies to ProntoQA (forced k, chain match, decoded thoughts), from the same checkpoint
    an = tmp_path / "analysis"
    assert main(["analyze", str(tmp_path / "run"), "--data", str(official), "--out", str(an), "--latents", "0,2",
                 "--max-examples", "6", "--decode-examples", "2", "--device", "cpu", "--no-progress"]) == 0
    info = json.loads((an / "settings.json").read_text())
    assert [s["k"] for s in info["settings"]] == [0, 2] and info["n_examples"] == 6
    assert all(0.0 <= s["accuracy"] <= 1.0 and 0.0 <= s["chain_match"] <= 1.0 for s in info["settings"])
    decoded = json.loads((an / "thoughts.json").read_text())["examples"]
    assert len(decoded) == 2 and decoded[0]["gold_path"] == load_examples(official)[0].steps
    assert all(len(ex["thoughts"]) == ex["n_thoughts"] > 0 for ex in decoded)
    assert (an / "figures" / "accuracy_vs_k.png").is_file()
    md = (an / "analysis.md").read_text()
    assert "## Forced k" in md and "## Decoded thoughts" in md and "Latent search" not in md
