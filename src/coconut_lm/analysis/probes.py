"""Superposition probes of continuous thoughts (Zhu et al. 2025; "The Illusion of Superposition?", 2026).

    records = probe_examples(model, tokenizer, examples, n_thoughts=3)   # one dict per example
    summary = summarize_probes(records)                                   # averages per thought
    write_probes(records, summary, "analysis/")      # probes.jsonl + probes_summary.json

For one example the prompt `question <bot> <latent>*K <eot>` goes through the model's own
multi-pass forward; then one plain forward of the backbone over the same inputs, thoughts in
place, returns every layer's hidden states and the last layer's attention (`trace`; its last
layer equals the multi-pass one). Thought t is the last hidden state at position q_t, the
position just before the t-th `<latent>` slot. Three probes read it:

- **Similarity.** thought_t · e(n) and cos(thought_t, e(n)) for every node n, e(n) the mean input
  embedding of n's name tokens (tokenised as in a step), grouped by the node's category after hop
  h = ceil(t / c) (`probe_categories.node_categories`: target, optimal, frontier, reachable,
  unreachable).
- **Attention.** The last layer's attention from q_t, averaged over heads, summed over the tokens
  of each edge's fact in the question, grouped by edge category at hop h
  (`probe_categories.edge_categories`: optimal, frontier, reachable, other).
- **Logit lens.** Each layer's residual stream at q_t through the final norm and the LM head,
  top k. The last layer is the thought itself (its norm is already applied), so its row is the
  decoded thought.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from coconut_lm.analysis.probe_categories import (
    EDGE_CATEGORIES,
    NODE_CATEGORIES,
    edge_categories,
    edge_token_spans,
    hop_of_thought,
    node_categories,
)
from coconut_lm.errors import CoconutError
from coconut_lm.model.coconut import default_position_ids
from coconut_lm.model.loss import upcast
from coconut_lm.tasks.examples import Example, atomic_write_text

FINAL_NORMS = ("ln_f", "norm", "final_layer_norm", "final_layernorm")  # GPT-2, Llama/Qwen, OPT/NeoX, Phi


# ------------------------------------------------------------------------------------ trace


@dataclass
class Trace:
    """One prompt's forward with every layer: hidden[l] (T, H) for l = 0 (inputs) .. L (last, normed)."""

    ids: list[int]
    thought_pos: list[int]  # q_t for t = 1..K: the position whose last hidden state is thought t
    hidden: list[torch.Tensor]
    attention: torch.Tensor | None  # (heads, T, T) of the last layer, or None
    multipass_last: torch.Tensor  # (T, H): the model's own multi-pass last hidden states

    @property
    def thoughts(self) -> torch.Tensor:
        """(K, H): the continuous thoughts, read from the last layer."""
        return self.hidden[-1][self.thought_pos]


def final_norm(model) -> torch.nn.Module | None:
    """The backbone's final norm (applied before the LM head), or None if it has none we know."""
    return next((m for name in FINAL_NORMS if isinstance(m := getattr(model.body, name, None), torch.nn.Module)), None)


@torch.no_grad()
def trace(model, prompt: Sequence[int], attention: bool = True) -> Trace:
    """Run `prompt` through `model` and return every layer's hidden states (and last-layer attention).

    The multi-pass forward fills the thought slots; one plain backbone pass over the same inputs
    (token shift included) then returns all layers. Attention needs the eager implementation,
    switched on for this call only.
    """
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    ids = torch.tensor([list(prompt)], device=param.device)
    mask = torch.ones_like(ids)
    last = model.hidden_states(ids, mask)  # (1, T, H)
    latent = ids == model.tokens.latent
    if bool(latent[0, 0]):
        raise CoconutError("trace: a <latent> slot is the first position of the prompt")
    embeds = model.base.get_input_embeddings()(ids)
    previous = torch.cat([embeds[:, :1], last[:, :-1].to(embeds.dtype)], 1)
    x = torch.where(latent[..., None], previous, embeds)
    x, _ = model._shift(x, mask, None, latent)
    base = model.base
    old = getattr(base.config, "_attn_implementation", None)
    switch = attention and old not in (None, "eager") and hasattr(base, "set_attn_implementation")
    if switch:
        base.set_attn_implementation("eager")
    try:
        out = model.body(inputs_embeds=x, attention_mask=mask, position_ids=default_position_ids(mask),
                         output_hidden_states=True, output_attentions=attention, use_cache=False)
    finally:
        if switch:
            base.set_attn_implementation(old)
        model.train(was_training)
    attn = out.attentions[-1][0] if attention and out.attentions else None
    slots = latent[0].nonzero().flatten().tolist()
    return Trace(ids=list(prompt), thought_pos=[p - 1 for p in slots], hidden=[h[0] for h in out.hidden_states],
                 attention=attn, multipass_last=last[0])


@torch.no_grad()
def logit_lens(model, trace_: Trace, position: int, k: int = 5) -> list[tuple[list[int], list[float]]]:
    """Top-k (token ids, probabilities) of each layer's residual stream at `position`, layer 0 (inputs) to L.

    Layers before the last go through the final norm first; the last layer already has it.
    """
    norm = final_norm(model)
    if norm is None:
        raise CoconutError(f"logit lens: no final norm found on {type(model.body).__name__} (looked for {FINAL_NORMS})")
    rows = torch.stack([h[position] for h in trace_.hidden])  # (L+1, H)
    rows = torch.cat([norm(rows[:-1]), rows[-1:]])
    probs = torch.softmax(upcast(model.logits(rows)), -1)
    top = probs.topk(min(k, probs.shape[-1]), -1)
    return [(i.tolist(), p.tolist()) for i, p in zip(top.indices, top.values)]


# ------------------------------------------------------------------------------------ probes


def _round(x: float) -> float:
    return float(f"{x:.5g}")


def node_embeddings(model, tokenizer, graph) -> tuple[torch.Tensor, list[list[int]]]:
    """(n_nodes, H) mean input embedding of each node's name tokens (as a step writes them), and those tokens."""
    from coconut_lm.analysis.latent_search import STEP_PREFIX, _NameTokens

    names = _NameTokens(tokenizer)
    prefix = "" if graph.symbolic else STEP_PREFIX
    ids = [names(prefix, n)[1] for n in graph.names]
    table = model.base.get_input_embeddings().weight
    return torch.stack([table[torch.tensor(i, device=table.device)].mean(0) for i in ids]), ids


@torch.no_grad()
def probe_example(model, tokenizer, example: Example, index: int, n_thoughts: int, method, layout,
                  top_k: int = 5) -> dict[str, Any]:
    """Every probe of one example with `n_thoughts` thoughts (module docstring), as a JSON-ready dict."""
    from coconut_lm.data.pipeline import segment_texts, tokenize_examples
    from coconut_lm.tasks.prosqa_graph import graph_from_example

    graph = graph_from_example(example, index=index)
    (tex,) = tokenize_examples([example], tokenizer)
    prompt = method.eval_prompt(tex, n_thoughts, layout, model.tokens)
    tr = trace(model, prompt)
    c = max(layout.c_thought, 1)
    emb, name_ids = node_embeddings(model, tokenizer, graph)
    thoughts = tr.thoughts.to(emb.dtype)  # (K, H)
    dot = thoughts @ emb.T  # (K, N)
    cos = torch.nn.functional.cosine_similarity(thoughts[:, None], emb[None], dim=-1)
    single = {ids[0]: n for n, ids in enumerate(name_ids) if len(ids) == 1}
    spans = edge_token_spans(tokenizer, segment_texts(example)[0], tex.question, graph)
    rec: dict[str, Any] = {
        "index": index, "n_thoughts": len(tr.thought_pos), "c_thought": c,
        "hops": [hop_of_thought(t, c) for t in range(1, len(tr.thought_pos) + 1)],
        "node_categories": [], "dot": [[_round(v) for v in row] for row in dot.double().tolist()],
        "cos": [[_round(v) for v in row] for row in cos.double().tolist()],
        "edge_categories": [], "attention": None if tr.attention is None or spans is None else [],
        "lens_layers": ["inputs", *(f"layer {i}" for i in range(1, len(tr.hidden)))], "lens": [], "lens_top1_node": [],
        "multipass_gap": float((tr.multipass_last - tr.hidden[-1]).abs().max()),
    }
    attn = None if tr.attention is None else tr.attention.float().mean(0)  # (T, T)
    for h, q in zip(rec["hops"], tr.thought_pos):
        rec["node_categories"].append(node_categories(graph, h))
        rec["edge_categories"].append(edge_categories(graph, h))
        if rec["attention"] is not None:
            row = attn[q]
            rec["attention"].append([_round(float(row[s].sum())) if s else 0.0 for s in spans])
        lens = logit_lens(model, tr, q, top_k) if final_norm(model) is not None else []
        rec["lens"].append([[[tokenizer.decode([i]), _round(p)] for i, p in zip(ids, ps)] for ids, ps in lens])
        rec["lens_top1_node"].append([single.get(ids[0], -1) for ids, _ in lens])
    return rec


def probe_examples(model, tokenizer, examples: Sequence[Example], n_thoughts: int, method=None, layout=None,
                   top_k: int = 5, progress: bool = True) -> list[dict[str, Any]]:
    """`probe_example` for each example (index = its position in `examples`)."""
    from tqdm.auto import tqdm

    from coconut_lm.eval.outputs import live_bars
    from coconut_lm.recipe.methods import METHODS, LayoutConfig

    method = method or METHODS["coconut"]
    layout = layout or LayoutConfig()
    bar = tqdm(examples, desc="probes", unit="ex", disable=not live_bars(progress), leave=False)
    return [probe_example(model, tokenizer, ex, i, n_thoughts, method, layout, top_k) for i, ex in enumerate(bar)]


# ----------------------------------------------------------------------------------- summary


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize_probes(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Averages per thought: similarity per node category, attention per edge category, logit-lens hits.

    Each example's mean over the nodes (edges) of a category counts once, so examples with many
    nodes of a category do not outweigh the others; `n` is the number of examples that have one.
    """
    n_thoughts = max((r["n_thoughts"] for r in records), default=0)
    sim, att, lens = [], [], []
    for t in range(n_thoughts):
        rows = [r for r in records if r["n_thoughts"] > t]
        for cat in NODE_CATEGORIES:
            per = {m: [_mean([r[m][t][n] for n, c in enumerate(r["node_categories"][t]) if c == cat]) for r in rows]
                   for m in ("dot", "cos")}
            keep = [i for i, v in enumerate(per["cos"]) if v is not None]
            sim.append({"thought": t + 1, "category": cat, "n": len(keep),
                        "mean_dot": _mean([per["dot"][i] for i in keep]), "mean_cos": _mean([per["cos"][i] for i in keep])})
        with_attn = [r for r in rows if r.get("attention")]
        for cat in EDGE_CATEGORIES:
            per_edge = [_mean([a for a, c in zip(r["attention"][t], r["edge_categories"][t]) if c == cat])
                        for r in with_attn]
            total = [sum(a for a, c in zip(r["attention"][t], r["edge_categories"][t]) if c == cat) for r in with_attn]
            keep = [i for i, v in enumerate(per_edge) if v is not None]
            att.append({"thought": t + 1, "category": cat, "n": len(keep),
                        "mean_per_edge": _mean([per_edge[i] for i in keep]), "mean_total": _mean(total)})
        n_layers = max((len(r["lens_top1_node"][t]) for r in rows), default=0)
        for layer in range(n_layers):
            named = [r["node_categories"][t][r["lens_top1_node"][t][layer]] if r["lens_top1_node"][t][layer] >= 0
                     else None for r in rows if len(r["lens_top1_node"][t]) > layer]
            lens.append({"thought": t + 1, "layer": layer, "n": len(named),
                         "any_node": _mean([float(c is not None) for c in named]),
                         **{cat: _mean([float(c == cat) for c in named]) for cat in NODE_CATEGORIES}})
    return {"n_examples": len(records), "n_thoughts": n_thoughts, "node_categories": list(NODE_CATEGORIES),
            "edge_categories": list(EDGE_CATEGORIES), "similarity": sim, "attention": att, "lens": lens,
            "max_multipass_gap": max((r["multipass_gap"] for r in records), default=0.0)}


def write_probes(records: Sequence[dict[str, Any]], summary: dict[str, Any], out_dir: str | os.PathLike,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write probes.jsonl (one record per example) and probes_summary.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "probes.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    atomic_write_text(out / "probes_summary.json", json.dumps({**summary, **(extra or {})}, indent=2) + "\n")
    return out
