"""Latent-search values on a hand-built graph, where every value is known by hand.

A stub model's logits depend only on the current token and on how many thoughts the row holds, so
P(next token) is a table we write; a fake tokenizer splits concept names into two tokens to check
that a name's value is the product over its tokens. A real tiny CoconutLM checks that batching
(padding, aligned thoughts) changes nothing and that decode_thoughts reads the LM head.
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from coconut_lm.analysis.latent_search import decode_thoughts, frontier_values
from coconut_lm.analysis.search_records import (
    Frontier,
    NodeValue,
    SearchRecord,
    load_search_records,
    parallelism,
    summarize_search,
    value_by_height,
    write_search,
)
from coconut_lm.data.pipeline import segment_texts
from coconut_lm.data.tokenizer import build_word_tokenizer, special_token_ids
from coconut_lm.errors import CoconutError
from coconut_lm.tasks.examples import Example

#   Tom -> wumpus -> lempus -> zumpus (target);  Tom -> yumpus -> {lempus, rompus -> gorpus -> zumpus}
#   Tom -> sterpus -> impus (a dead end);  lempus -> impus;  Bob -> scrompus (the distractor)
NAMES = ["Tom", "Bob", "wumpus", "yumpus", "lempus", "rompus", "gorpus", "zumpus", "impus", "scrompus", "sterpus"]
EDGES = [[0, 2], [0, 3], [2, 4], [3, 4], [3, 5], [5, 6], [6, 7], [4, 7], [4, 8], [1, 9], [0, 10], [10, 8]]
CHILDREN = {"wumpus", "yumpus", "sterpus"}
GRANDCHILDREN = {"lempus", "rompus", "impus"}
# heights (shortest, longest) worked out by hand
HEIGHTS = {"wumpus": (2, 2), "yumpus": (2, 3), "sterpus": (1, 1), "lempus": (1, 1), "rompus": (2, 2), "impus": (0, 0)}
CORRECT = {"wumpus", "yumpus", "lempus", "rompus"}


def _sentence(a: int, b: int) -> str:
    return f"{NAMES[a]} is a {NAMES[b]}." if a in (0, 1) else f"Every {NAMES[a]} is a {NAMES[b]}."


def make_example() -> Example:
    facts = " ".join(_sentence(a, b) for a, b in EDGES)
    return Example(question=f"{facts} Is Tom a zumpus or scrompus?",
                   steps=["Tom is a wumpus.", "Every wumpus is a lempus.", "Every lempus is a zumpus."],
                   answer="Tom is a zumpus.",
                   extra={"idx_to_symbol": NAMES, "edges": EDGES, "root": 0, "target": 7, "neg_target": 9})


def word_tokenizer():
    pieces = segment_texts(make_example())
    return build_word_tokenizer([pieces[0], *pieces[1], pieces[2], "Every " + " ".join(NAMES)])


class SplitNameTokenizer:
    """A minimal tokenizer that writes each '-pus' concept as two tokens: '▁lem' 'pus'."""

    def __init__(self, texts: list[str]) -> None:
        self.vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", "<bot>", "<eot>", "<latent>", "<pause>"])}
        self.eos_token_id, self.pad_token_id = 1, 0
        for t in texts:
            for piece in self.pieces(t):
                self.vocab.setdefault(piece, len(self.vocab))
        self.inverse = {i: t for t, i in self.vocab.items()}

    @staticmethod
    def pieces(text: str) -> list[str]:
        out = []
        for space, word in re.findall(r"( ?)(\w+|[^\w ])", text):
            head = "▁" if space else ""
            if word.endswith("pus") and len(word) > 3:
                out += [head + word[:-3], "pus"]
            else:
                out.append(head + word)
        return out

    def __call__(self, texts, add_special_tokens: bool = True):
        return {"input_ids": [[self.vocab.get(p, 2) for p in self.pieces(t)] for t in texts]}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(self.inverse[i] for i in ids).replace("▁", " ")


class TableModel(nn.Module):
    """logits[b, t] = table[number of <latent> slots in row b, input_ids[b, t]]: a bigram per thought count.

    It offers what `frontier_values` uses of a CoconutLM: `hidden_states`, `logits` and `tokens`.
    """

    def __init__(self, tokens, vocab: int, max_thoughts: int = 3) -> None:
        super().__init__()
        self.tokens = tokens
        self.table = nn.Parameter(torch.zeros(max_thoughts + 1, vocab, vocab, dtype=torch.float64))

    def set_next(self, k: int, after: int, probs: dict[int, float]) -> None:
        """P(next | current = after, k thoughts) = probs, the rest spread evenly over other tokens."""
        vocab = self.table.shape[-1]
        rest = (1.0 - sum(probs.values())) / (vocab - len(probs))
        row = torch.full((vocab,), rest, dtype=torch.float64)
        for i, p in probs.items():
            row[i] = p
        with torch.no_grad():
            self.table[k, after] = row.log()

    def hidden_states(self, input_ids, attention_mask, position_ids=None):
        """The "hidden state" is the logit row itself; `logits` is then the identity."""
        k = ((input_ids == self.tokens.latent) & attention_mask.bool()).sum(1)  # (B,)
        return self.table[k[:, None], input_ids]

    def logits(self, hidden):
        return hidden


def tid(tok, piece: str) -> int:
    ids = tok([piece], add_special_tokens=False)["input_ids"][0]
    assert len(ids) == 1, piece
    return ids[0]


def test_frontier_values_equal_hand_computed_probabilities():
    tok = word_tokenizer()
    model = TableModel(special_token_ids(tok), len(tok))
    every, eot = tid(tok, "Every"), tok.convert_tokens_to_ids("<eot>")
    w = {n: tok.convert_tokens_to_ids("▁" + n) for n in NAMES[2:]}
    model.set_next(1, eot, {every: 0.9})
    model.set_next(1, every, {w["wumpus"]: 0.5, w["yumpus"]: 0.3, w["sterpus"]: 0.1})
    model.set_next(2, eot, {every: 0.8})
    model.set_next(2, every, {w["lempus"]: 0.6, w["rompus"]: 0.25, w["impus"]: 0.05})
    [rec] = frontier_values(model, tok, [make_example()], hops=(1, 2), progress=False)

    f1, f2 = rec.frontier(1), rec.frontier(2)
    assert {n.name for n in f1.nodes} == CHILDREN and {n.name for n in f2.nodes} == GRANDCHILDREN
    values = {n.name: n.value for f in (f1, f2) for n in f.nodes}
    expected = {"wumpus": 0.5, "yumpus": 0.3, "sterpus": 0.1, "lempus": 0.6, "rompus": 0.25, "impus": 0.05}
    assert values == pytest.approx(expected, abs=1e-9)
    assert f1.prefix_prob == pytest.approx(0.9) and f2.prefix_prob == pytest.approx(0.8)
    assert f1.prefix == "Every" and f1.n_thoughts == 1 and f2.n_thoughts == 2
    for n in f1.nodes + f2.nodes:
        assert n.correct == (n.name in CORRECT)
        assert (n.height_shortest, n.height_longest) == HEIGHTS[n.name]
        assert n.n_tokens == 1 and n.log_value == pytest.approx(math.log(n.value))
    lempus = next(n for n in f2.nodes if n.name == "lempus")
    assert lempus.parents == [2, 3]  # wumpus and yumpus
    assert rec.target_name == "zumpus" and rec.target_hops == 3
    assert rec.gold_path == ["Tom", "wumpus", "lempus", "zumpus"]
    assert f1.top_k(1) == pytest.approx(0.5) and f1.top_k(3) == pytest.approx(0.9)
    assert f1.top_k(5) == pytest.approx(0.9)  # fewer nodes than k: all of them


def test_zero_hops_scores_the_root_without_a_prefix():
    tok = word_tokenizer()
    model = TableModel(special_token_ids(tok), len(tok))
    model.set_next(0, tok.convert_tokens_to_ids("<eot>"), {tid(tok, "Tom"): 0.7})
    [rec] = frontier_values(model, tok, [make_example()], hops=(0,), progress=False)
    [node] = rec.frontier(0).nodes
    assert node.name == "Tom" and node.value == pytest.approx(0.7)
    assert rec.frontier(0).prefix == "" and rec.frontier(0).prefix_prob == 1.0


def test_multi_token_name_value_is_the_product_of_its_tokens():
    ex = make_example()
    tok = SplitNameTokenizer([*segment_texts(ex)[:1], *ex.steps, "Every " + " ".join(NAMES)])
    model = TableModel(special_token_ids(SimpleNamespace(get_vocab=lambda: tok.vocab, pad_token_id=0,
                                                         eos_token_id=1)), len(tok.vocab))
    v = tok.vocab
    model.set_next(1, v["<eot>"], {v["Every"]: 1.0 - 1e-9})
    model.set_next(1, v["Every"], {v["▁wum"]: 0.4, v["▁yum"]: 0.4, v["▁ster"]: 0.2 - 1e-9})
    model.set_next(1, v["▁wum"], {v["pus"]: 0.5})
    model.set_next(1, v["▁yum"], {v["pus"]: 0.25})
    model.set_next(1, v["▁ster"], {v["pus"]: 1.0 - 1e-9})
    [rec] = frontier_values(model, tok, [ex], hops=(1,), progress=False)
    values = {n.name: n.value for n in rec.frontier(1).nodes}
    assert values == pytest.approx({"wumpus": 0.2, "yumpus": 0.1, "sterpus": 0.2}, abs=1e-6)
    assert all(n.n_tokens == 2 for n in rec.frontier(1).nodes)


def _tiny_coconut(tok, seed: int = 0):
    from coconut_lm.model.backbone import build_backbone
    from coconut_lm.model.coconut import CoconutLM

    torch.manual_seed(seed)
    tokens = special_token_ids(tok)
    base = build_backbone({"n_layer": 2, "n_embd": 64, "n_head": 4, "initializer_range": 0.2},
                          vocab_size=len(tok), n_positions=512, special=tokens)
    return CoconutLM(base.double(), tokens).eval()


def test_real_model_batched_values_match_one_row_forward():
    from coconut_lm.data.pipeline import tokenize_examples

    tok = word_tokenizer()
    model = _tiny_coconut(tok)
    # Two examples of different lengths, so rows are padded and their thoughts aligned.
    ex = make_example()
    short = Example(ex.question.split(" ", 5)[-1], ex.steps, ex.answer, ex.extra)
    batched = frontier_values(model, tok, [ex, short], hops=(1, 2), batch_size=64, progress=False)
    single = frontier_values(model, tok, [ex, short], hops=(1, 2), batch_size=1, progress=False)

    t = model.tokens
    every = tid(tok, "Every")
    for rec, rec1, tex in zip(batched, single, tokenize_examples([ex, short], tok)):
        for h in (1, 2):
            ids = torch.tensor([tex.question + [t.bot] + [t.latent] * h + [t.eot, every]])
            with torch.no_grad():
                probs = torch.softmax(model(ids, torch.ones_like(ids), return_logits=True).logits[0], -1)
            for n, n1 in zip(rec.frontier(h).nodes, rec1.frontier(h).nodes):
                name_id = tok.convert_tokens_to_ids("▁" + n.name)
                assert n.value == pytest.approx(float(probs[-1, name_id]), rel=1e-9)
                assert n1.value == pytest.approx(n.value, rel=1e-9)
            assert rec.frontier(h).prefix_prob == pytest.approx(float(probs[-2, every]), rel=1e-9)


def test_decode_thoughts_reads_the_lm_head():
    tok = word_tokenizer()
    model = _tiny_coconut(tok)
    vocab = len(tok)
    with torch.no_grad():  # the (tied) head becomes the identity on the first `vocab` dimensions
        model.base.get_output_embeddings().weight.copy_(torch.eye(vocab, 64, dtype=torch.float64))
    lempus = tok.convert_tokens_to_ids("▁lempus")
    thought = torch.zeros(2, 64, dtype=torch.float64)
    thought[0, lempus] = 3.0
    thought[1, tid(tok, "Every")] = 1.0
    top = decode_thoughts(model, tok, thought, k=3)
    assert len(top) == 2 and len(top[0]) == 3
    assert top[0][0][0] == " lempus"
    assert top[0][0][1] == pytest.approx(math.exp(3) / (math.exp(3) + vocab - 1))
    assert top[1][0][0] == "Every"
    assert decode_thoughts(model, tok, thought[0], k=1)[0][0][0] == " lempus"  # one (H,) thought
    assert decode_thoughts(model, tok, thought[:0]) == []
    with pytest.raises(CoconutError, match="shape"):
        decode_thoughts(model, tok, thought[None])


def test_non_prosqa_examples_are_a_one_line_error():
    tok = word_tokenizer()
    model = TableModel(special_token_ids(tok), len(tok))
    with pytest.raises(CoconutError, match="item 0: field 'idx_to_symbol'"):
        frontier_values(model, tok, [Example("Is Tom a cat?", ["step"], "True")], progress=False)
    with pytest.raises(CoconutError, match="no examples"):
        frontier_values(model, tok, [], progress=False)


# ------------------------------------------------------------------------ aggregation by hand


def _node(name: str, value: float, correct: bool, hs: int, hl: int) -> NodeValue:
    return NodeValue(node=0, name=name, value=value, log_value=math.log(value), correct=correct, is_target=False,
                     height_shortest=hs, height_longest=hl, parents=[], n_tokens=1)


def _records() -> list[SearchRecord]:
    tables = [  # per example, thought 1: (value, correct, shortest height, longest height)
        [(0.5, True, 2, 3), (0.3, False, 1, 1), (0.1, False, 1, 2), (0.05, False, 0, 0)],
        [(0.9, True, 2, 2)],
        [(0.2, True, 1, 3), (0.4, False, 2, 2)],
    ]
    out = []
    for i, rows in enumerate(tables):
        nodes = [_node(f"n{j}", *r) for j, r in enumerate(rows)]
        out.append(SearchRecord(i, str(i), 0, "Tom", 9, "zumpus", 3, [], [Frontier(1, 1, "Every", 0.9, nodes)]))
    return out


def test_parallelism_curves_from_a_hand_made_value_table():
    curves = {c.k: c for c in parallelism(_records(), hops=1)}
    assert curves[1].sorted_values == pytest.approx([0.4, 0.5, 0.9])
    assert curves[2].sorted_values == pytest.approx([0.6, 0.8, 0.9])
    assert curves[3].sorted_values == pytest.approx([0.6, 0.9, 0.9])
    assert curves[1].mean == pytest.approx(0.6) and curves[3].n == 3
    assert parallelism(_records(), hops=2)[0].n == 0  # no such frontier


def test_value_by_height_from_a_hand_made_value_table():
    bins = {(b.height_kind, b.correct, b.height): b for b in value_by_height(_records(), hops=1)}
    b = bins[("shortest", False, 1)]  # 0.3 and 0.1
    assert (b.n, b.mean_value) == (2, pytest.approx(0.2))
    assert b.sem == pytest.approx(math.sqrt(0.02) / math.sqrt(2))
    assert bins[("longest", True, 3)].mean_value == pytest.approx(0.35)  # 0.5 and 0.2
    assert bins[("longest", False, 2)].mean_value == pytest.approx(0.25)  # 0.1 and 0.4
    assert bins[("shortest", True, 2)].n == 2 and bins[("longest", True, 2)].sem == 0.0
    assert sum(b.n for b in bins.values() if b.height_kind == "shortest") == 7


def test_summary_and_json_round_trip(tmp_path):
    records = _records()
    summary = summarize_search(records)
    [fs] = summary.frontiers
    assert fs.n_examples == 3 and fs.mean_size == pytest.approx(7 / 3)
    assert fs.mean_total_value == pytest.approx((0.95 + 0.9 + 0.6) / 3)
    assert fs.mean_correct_value == pytest.approx((0.5 + 0.9 + 0.2) / 3)
    assert fs.top_node_correct == pytest.approx(2 / 3)  # the third example's best node is wrong
    write_search(records, summary, tmp_path)
    assert load_search_records(tmp_path / "latent_search.jsonl") == records
    assert (tmp_path / "latent_search_summary.json").is_file()
