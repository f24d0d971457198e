"""Latent search (paper §5): the value a model gives each frontier node after k continuous thoughts.

    records = frontier_values(model, tokenizer, examples, hops=(1, 2))   # list[SearchRecord]
    decode_thoughts(model, tokenizer, gen.thoughts[0], k=5)   # top tokens of each thought
    decoded_thoughts(model, tokenizer, data[:3], gold_paths, method, layout, k, 64)  # the same, per example
    node_values(model, tokenizer, examples, n_thoughts=range(4))  # every node's value after t = 0..3 thoughts

**The value of a frontier node, exactly.** After h hops' worth of thoughts (h*c thoughts) the
prompt is `question <bot> <latent>*(h*c) <eot>`. The step the model writes next is "Every {node_h}
is a {node_h+1}." (for h = 0 it is "{Root} is a {child}."). The value of a frontier node n is the
teacher-forced probability of n's name tokens right after the template's first word:

    value(n) = prod_i P(name_i | prompt, "Every", name_<i)

"Every" is common to every candidate, so it is conditioned on rather than multiplied in (with a
trained model it is ~1). Its own probability, P("Every" | prompt), is kept for each frontier as
`prefix_prob`. value * prefix_prob is the probability of the whole beginning of the step.

Names are tokenised the way the training data tokenises a step. The text "Every " + name goes
through one tokenizer call. Steps are tokenised alone, so "Every" has no leading space: a
word-level tokenizer gives "Every", "▁lempus" and GPT-2 BPE gives "Every", " lem", "pus". The name's
tokens are whatever follows the prefix's own tokens.

In the symbolic form (`tasks.symbolic`) a step is the name of the node it reaches, with no template:
the hop-h node is the first thing written after (h-1)*c thoughts, so frontier h is scored there,
with an empty prefix.

The frontier after h hops is every node at the end of some h-edge path from the root
(`tasks.prosqa_graph.frontier`): the root's children after 1 thought and its grandchildren after 2.
This is the same "k hidden hops" reading that the path categories use. A node is *correct* when
the target is reachable from it. Its height is its distance to a leaf, both shortest and longest.
The records, their summary (parallelism, value against height) and their files are in
`analysis.search_records`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from coconut_lm.analysis.search_records import Frontier, NodeValue, SearchRecord
from coconut_lm.errors import CoconutError
from coconut_lm.eval.outputs import live_bars
from coconut_lm.model.loss import upcast
from coconut_lm.tasks.examples import Example

STEP_PREFIX = "Every"  # the first word of every concept-to-concept step


# ------------------------------------------------------------------------------------- values


@dataclass
class _Row:
    record: int  # index into the records list
    frontier: int  # index into record.frontiers
    node: int  # index into frontier.nodes (or -1: a prefix-only row, for an empty frontier)
    ids: list[int]
    n_prefix: int
    n_name: int


def _device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


class _NameTokens:
    """Token ids of the template prefix and of each name after it, cached."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[tuple[str, str], tuple[list[int], list[int]]] = {}

    def prefix(self, prefix: str) -> list[int]:
        """Token ids of the template prefix alone ([] for an empty prefix)."""
        return self(prefix, "")[0]

    def __call__(self, prefix: str, name: str) -> tuple[list[int], list[int]]:
        key = (prefix, name)
        if key not in self.cache:
            text = f"{prefix} {name}" if prefix and name else prefix or name
            enc = self.tokenizer([prefix, text], add_special_tokens=False)["input_ids"]
            pre, full = list(enc[0]) if prefix else [], list(enc[1]) if text else []
            if full[: len(pre)] != pre or (name and len(full) == len(pre)):
                raise CoconutError(f"the tokenizer does not keep the step template '{prefix}' apart from "
                                   f"the name '{name}' ({pre} vs {full}); cannot read the name's probability")
            self.cache[key] = (pre, full[len(pre):])
        return self.cache[key]


def _gold_path(ex: Example) -> list[str]:
    from coconut_lm.tasks.prosqa_graph import parse_fact
    from coconut_lm.tasks.symbolic import is_symbolic

    if is_symbolic(ex):  # the steps are the nodes after the root
        return [ex.extra["idx_to_symbol"][ex.extra["root"]], *ex.steps]

    path: list[str] = []
    for step in ex.steps:
        fact = parse_fact(step)
        if fact is None:
            return []
        path += [fact[1]] if path else list(fact)
    return path


def _new_record(i: int, ex: Example, hops: Sequence[int], n_per_hop: int) -> SearchRecord:
    """A record with every frontier's nodes laid out and values still at zero."""
    from coconut_lm.tasks.prosqa_graph import (
        frontier,
        graph_from_example,
        node_heights,
        reachable,
        shortest_distances,
    )

    graph = graph_from_example(ex, index=i)
    assert graph.target is not None
    heights = node_heights(graph)
    rec = SearchRecord(index=i, question_id=str(ex.extra.get("id", i)), root=graph.root,
                       root_name=graph.names[graph.root], target=graph.target,
                       target_name=graph.names[graph.target],
                       target_hops=shortest_distances(graph, graph.root).get(graph.target, -1),
                       gold_path=_gold_path(ex))
    for h in hops:
        previous = frontier(graph, graph.root, h - 1) if h > 0 else frozenset()
        nodes = [NodeValue(node=n, name=graph.names[n], value=0.0, log_value=0.0,
                           correct=reachable(graph, n, graph.target), is_target=n == graph.target,
                           height_shortest=heights[n].shortest, height_longest=heights[n].longest,
                           parents=sorted(p for p in graph.parents[n] if p in previous), n_tokens=0)
                 for n in sorted(frontier(graph, graph.root, h))]
        # A symbolic step names only the node it reaches: the hop-h node is written after h-1 hops of thoughts.
        n_thoughts = (max(h - 1, 0) if graph.symbolic else h) * n_per_hop
        rec.frontiers.append(Frontier(hops=h, n_thoughts=n_thoughts, prefix=STEP_PREFIX if h > 0 and not graph.symbolic else "",
                                      prefix_prob=1.0, nodes=nodes))
    return rec


@torch.no_grad()
def frontier_values(model, tokenizer, examples: Sequence[Example], hops: Sequence[int] = (1, 2),
                    method=None, layout=None, batch_size: int = 64, progress: bool = True,
                    data=None) -> list[SearchRecord]:
    """The value of every frontier node after each hop count in `hops` (see the module docstring).

    Args:
        model: a `CoconutLM` (or anything with its `hidden_states`, `logits` and `tokens`).
        tokenizer: the checkpoint's tokenizer.
        examples: ProsQA examples (with the graph keys).
        hops: hop counts h; the prompt holds h * c thoughts.
        method: lays out the prompt (default: coconut).
        layout: c and the other layout settings (default: c = 1).
        batch_size: rows (one per candidate node) per forward pass.
        data: `examples` already tokenised (`data_check.check_eval_data`); else done here.

    Each row is the prompt, the template prefix and one candidate's name, scored by one full
    multi-pass forward; rows are sorted by length and their first thoughts aligned (`collate`).
    The LM head runs only at the scored positions, so no (rows, length, vocabulary) logits exist.
    """
    from coconut_lm.data.pipeline import tokenize_examples
    from coconut_lm.recipe.methods import METHODS, LayoutConfig

    if not examples:
        raise CoconutError("frontier_values: no examples")
    if any(h < 0 for h in hops):
        raise CoconutError(f"frontier_values: hops must be >= 0, got {list(hops)}")
    method = method or METHODS["coconut"]
    layout = layout or LayoutConfig()
    tokens = model.tokens
    per_hop = max(layout.c_thought, 1)
    records = [_new_record(i, ex, hops, per_hop) for i, ex in enumerate(examples)]
    names = _NameTokens(tokenizer)

    rows: list[_Row] = []
    if data is None:
        data = tokenize_examples(examples, tokenizer)
    for r, (rec, tex) in enumerate(zip(records, data)):
        for f, fr in enumerate(rec.frontiers):
            prompt = method.eval_prompt(tex, fr.n_thoughts, layout, tokens)
            # An empty frontier still gets a prefix-only row, so its prefix_prob is known.
            targets = [(j, *names(fr.prefix, nv.name)) for j, nv in enumerate(fr.nodes)] or \
                [(-1, names.prefix(fr.prefix), [])]
            for j, pre, name in targets:
                if not pre and not name:
                    continue
                rows.append(_Row(r, f, j, prompt + pre + name, len(pre), len(name)))

    for row, (lp_prefix, lp_name) in zip(rows, _score_rows(model, tokens, rows, batch_size, progress)):
        fr = records[row.record].frontiers[row.frontier]
        fr.prefix_prob = math.exp(lp_prefix)
        if row.node >= 0:
            nv = fr.nodes[row.node]
            nv.log_value, nv.value, nv.n_tokens = lp_name, math.exp(lp_name), row.n_name
    return records


@torch.no_grad()
def node_values(model, tokenizer, examples: Sequence[Example], n_thoughts: Sequence[int], method=None,
                layout=None, batch_size: int = 64, progress: bool = True) -> list[dict[str, Any]]:
    """The value of *every* node of each example's graph after each thought count in `n_thoughts`.

    The frontier value (module docstring) read for all nodes and after every thought, not only at
    the frontier after whole hops: P(name | question <bot> <latent>*t <eot>, prefix), the prefix
    being "Every" (the symbolic form: none). Returns one dict per example: "n_thoughts" (the list
    given), "values" (per t, one value per node index) and "prefix_prob" (per t).
    """
    from coconut_lm.data.pipeline import tokenize_examples
    from coconut_lm.recipe.methods import METHODS, LayoutConfig
    from coconut_lm.tasks.prosqa_graph import graph_from_example

    if not examples:
        raise CoconutError("node_values: no examples")
    if any(t < 0 for t in n_thoughts):
        raise CoconutError(f"node_values: thought counts must be >= 0, got {list(n_thoughts)}")
    method = method or METHODS["coconut"]
    layout = layout or LayoutConfig()
    names = _NameTokens(tokenizer)
    out: list[dict[str, Any]] = []
    rows: list[_Row] = []
    for r, (ex, tex) in enumerate(zip(examples, tokenize_examples(examples, tokenizer))):
        graph = graph_from_example(ex, index=r)
        prefix = "" if graph.symbolic else STEP_PREFIX
        out.append({"n_thoughts": list(n_thoughts), "values": [[0.0] * len(graph.names) for _ in n_thoughts],
                    "prefix_prob": [1.0] * len(n_thoughts)})
        for f, t in enumerate(n_thoughts):
            prompt = method.eval_prompt(tex, t, layout, model.tokens)
            for node, name in enumerate(graph.names):
                pre, ids = names(prefix, name)
                rows.append(_Row(r, f, node, prompt + pre + ids, len(pre), len(ids)))
    for row, (lp_prefix, lp_name) in zip(rows, _score_rows(model, model.tokens, rows, batch_size, progress,
                                                           desc="node values")):
        rec = out[row.record]
        rec["prefix_prob"][row.frontier] = math.exp(lp_prefix)
        rec["values"][row.frontier][row.node] = math.exp(lp_name)
    return out


def _score_rows(model, tokens, rows: Sequence[_Row], batch_size: int, progress: bool,
                desc: str = "latent search") -> list[tuple[float, float]]:
    """(log P(prefix | prompt), log P(name | prompt, prefix)) of every row, in the order given.

    Rows are sorted by length and their first thoughts aligned (`collate`); one full multi-pass
    forward per batch, with the LM head only at the scored positions.
    """
    from coconut_lm.data.batching import collate
    from coconut_lm.recipe.methods import IGNORE, Layout

    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    device = _device(model)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(order), desc=desc, unit="row", disable=not live_bars(progress), leave=False)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        layouts = []
        for i in chunk:
            row = rows[i]
            n_scored = row.n_prefix + row.n_name
            prompt_len = len(row.ids) - n_scored
            layouts.append(Layout(row.ids, [IGNORE] * prompt_len + row.ids[prompt_len:]))
        batch = collate(layouts, tokens.pad, tokens.latent).to(device)
        hidden = model.hidden_states(batch.input_ids, batch.attention_mask)  # (B, T, H)
        target = batch.labels[:, 1:]  # label t is predicted at position t-1
        keep = target != IGNORE  # (B, T-1)
        logits = model.logits(hidden[:, :-1][keep])  # (N, V): the scored positions, row by row
        logp = torch.log_softmax(upcast(logits), -1)
        scored = logp.gather(-1, target[keep][:, None]).squeeze(-1).double().cpu().tolist()
        pos = 0
        for i in chunk:
            row = rows[i]
            n = row.n_prefix + row.n_name
            out[i] = (sum(scored[pos:pos + row.n_prefix]), sum(scored[pos + row.n_prefix:pos + n]))
            pos += n
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return out


# ---------------------------------------------------------------------------------- thoughts


@torch.no_grad()
def decode_thoughts(model, tokenizer, thoughts: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """The top-k tokens of the LM head applied to each continuous thought.

    `thoughts` is (n, H) (or (H,) for one thought); returns, per thought, (token text, probability)
    pairs, most probable first. Token text is `tokenizer.decode([id])`, so a leading space shows.
    """
    if thoughts.dim() == 1:
        thoughts = thoughts[None]
    if thoughts.dim() != 2:
        raise CoconutError(f"decode_thoughts: expected thoughts of shape (n, hidden), got {tuple(thoughts.shape)}")
    if thoughts.shape[0] == 0:
        return []
    param = next(model.parameters())
    logits = model.logits(thoughts.to(param.device, param.dtype))  # (n, V)
    probs = torch.softmax(upcast(logits), -1)
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [[(tokenizer.decode([int(i)]), float(p)) for p, i in zip(ps.tolist(), ids.tolist())]
            for ps, ids in zip(top.values, top.indices)]


def decoded_thoughts(model, tok, data, gold_paths, method, layout, k: int, max_new_tokens: int) -> list[dict]:
    """Generate with k thoughts for the tokenised examples `data` and decode each thought's top tokens
    (`gold_paths[i]`: example i's chain)."""
    from coconut_lm.eval.evaluate import generate_prompts

    prompts = [method.eval_prompt(t, k, layout, model.tokens) for t in data]
    out = []
    for i, g in enumerate(generate_prompts(model, tok, prompts, max_new_tokens, return_thoughts=True)):
        top = decode_thoughts(model, tok, g.thought_states, k=5) if g.thought_states is not None else []
        out.append({"index": i, "n_thoughts": k, "gold_path": gold_paths[i], "text": g.text,
                    "thoughts": [[{"token": t, "prob": p} for t, p in row] for row in top]})
    return out
