"""The last transformer block run only where its output is read (GPT-2 family backbones).

In the last block, a position's output reaches the loss only through the LM head where the position
has a label, the next thought (the last position before a `<latent>` slot) and the `<eot>`
classifier's decisions. Every position's keys and values are still needed (later positions attend to
them), but the query, the attention, `c_proj`, `ln_2` and the MLP at every other position are dead
computation: at the recipe's shapes (a 113-token question with no labels) most of that block.

    prune_last_block(model)          # model: a CoconutLM with a GPT-2 backbone; returns whether installed
    model(ids, mask, labels=labels)  # the forward selects the needed positions of each pass itself

`prune_last_block` wraps the last block's `forward` on the instance (state-dict keys stay as they are).
`CoconutLM.forward` with labels and without `return_logits` selects, before each pass, the positions
`needed_positions` marks, and generation's prompt pass each row's last position and those before its
thoughts; the block then computes `ln_1` and the K/V projections (and the cache update) at every new
position and the rest only at the selected ones (and, in rows with fewer of them than the pass's
widest, at as many unselected ones in order). Another position's output is the block's input (a finite
placeholder that nothing reads), so loss and gradients are those of the full block up to float rounding
(tests/test_last_block.py); with dropout on, the dropout masks are drawn for the computed positions only
(the same distribution, other samples). With no selection (`hidden_states`, `return_logits`, the
one-position passes of thoughts and decoding) the block runs as before.

Only GPT-2 blocks (`GPT2Block`, self-attention only) are pruned; other families (Llama, ...) keep the
plain path and `prune_last_block` returns False for them. It does not combine with
`checkpoint_blocks` (whose recompute in backward would run without the selection) nor with
`compile_blocks`; both combinations are refused.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coconut_lm.errors import CoconutError
from coconut_lm.model.compiled import transformer_blocks
from coconut_lm.model.loss import stop_decision_mask
from coconut_lm.recipe.methods import IGNORE
from coconut_lm.recipe.tokens import SpecialTokens


@dataclass
class Selection:
    """The positions one pass computes in full: `index` (B, s), distinct new-position indices per row,
    the needed ones first; `key_mask` (B, past + q), the 2D attention mask over the cache and the pass."""

    index: torch.Tensor
    key_mask: torch.Tensor


class LastBlockPruning:
    """The wrapper state of one pruned block: the selection of the pass running now, or None."""

    def __init__(self, block: nn.Module):
        self.block = block
        self.selection: Selection | None = None

    @contextlib.contextmanager
    def selecting(self, selection: Selection | None) -> Iterator[None]:
        """Run the block at `selection` only (None: in full) within this context."""
        self.selection = selection
        try:
            yield
        finally:
            self.selection = None


def prune_last_block(model: nn.Module) -> bool:
    """Install last-block pruning on `model` (a `CoconutLM`) in place; False (nothing done) for non-GPT-2 backbones.

    Refuses a model whose blocks are checkpointed (`checkpoint_blocks`) or compiled (`compile_blocks`).
    """
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    if getattr(model, "last_block", None) is not None:
        return True
    block = transformer_blocks(model.body)[-1]
    if type(block) is not GPT2Block or hasattr(block, "crossattention"):
        return False
    if getattr(block, "_coconut_checkpointed", False) or getattr(block, "_compiled_call_impl", None) is not None:
        raise CoconutError("prune_last_block does not combine with gradient checkpointing or compile; turn one off")
    pruning = LastBlockPruning(block)
    block.forward = functools.partial(_forward, pruning, block.forward)
    model.last_block = pruning
    return True


def needed_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                     tokens: SpecialTokens, eot_classifier: bool) -> torch.Tensor:
    """(B, T) bool: the positions whose last hidden state `CoconutLM.forward` reads.

    Those predicting a label (`loss.summed_nll`), those before a `<latent>` slot (the next thought)
    and, with an `<eot>` classifier, its decisions (`loss.stop_decision_mask`).
    """
    need = F.pad(labels[:, 1:] != IGNORE, (0, 1), value=False) | before_thoughts(input_ids == tokens.latent)
    if eot_classifier:
        need = need | stop_decision_mask(input_ids, attention_mask, tokens)[0]
    return need


def before_thoughts(latent: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the positions just before a `<latent>` slot (`latent`, (B, T)), whose state is the next thought."""
    return F.pad(latent[:, 1:], (0, 1), value=False)


def pass_selections(need: torch.Tensor, mask: torch.Tensor, bounds: list[int]) -> list[Selection | None]:
    """One `Selection` per pass [bounds[i], bounds[i+1]), None where the pass needs every position anyway.

    `need` (B, T) from `needed_positions`, `mask` the (B, T) attention mask; one host sync for all passes.
    """
    counts = F.pad(need.long().cumsum(1), (1, 0))[:, bounds]  # (B, passes + 1)
    widths = (counts[:, 1:] - counts[:, :-1]).amax(0).tolist()
    out: list[Selection | None] = []
    for s, e, width in zip(bounds[:-1], bounds[1:], widths):
        if width >= e - s:
            out.append(None)
            continue
        # A stable sort puts each row's needed positions first, then the others in order (distinct indices).
        order = torch.argsort((~need[:, s:e]).to(torch.uint8), dim=1, stable=True)[:, :max(width, 1)]
        out.append(Selection(order, mask[:, :e].bool()))
    return out


def _forward(pruning: LastBlockPruning, forward: Any, hidden_states: torch.Tensor, cache: Any = None,
             *args: Any, **kwargs: Any) -> torch.Tensor:
    """The block's `forward`, or with a selection set, `_pruned` (which builds its own attention mask)."""
    if pruning.selection is None:
        return forward(hidden_states, cache, *args, **kwargs)
    return _pruned(pruning.block, hidden_states, cache, pruning.selection)


def _pruned(block: nn.Module, x: torch.Tensor, cache: Any, sel: Selection) -> torch.Tensor:
    """GPT-2's block on x (B, q, H) with K/V at every position and the rest at `sel.index` (B, s) only."""
    attn = block.attn
    b, q, hid = x.shape
    heads, d = attn.num_heads, attn.head_dim
    idx = sel.index[..., None].expand(-1, -1, hid)  # (B, s, H)
    query, key, value = _qkv(attn.c_attn, block.ln_1(x), idx)
    key = key.view(b, q, heads, d).transpose(1, 2)
    value = value.view(b, q, heads, d).transpose(1, 2)
    if cache is not None:
        key, value = cache.update(key, value, attn.layer_idx)
    past = key.shape[2] - q
    query = query.view(b, -1, heads, d).transpose(1, 2)  # (B, heads, s, d)
    # Causal order over cache + pass and the 2D padding mask, as HF's mask has it. A query that sees no key
    # (a left-padding position) sees itself instead, so its softmax stays finite and cannot put NaN into
    # backward, and its output is then zeroed, as the full block's SDPA gives for a fully masked row: a
    # label on a padding position reads the same value in both.
    qpos = past + sel.index[..., None]  # (B, s, 1)
    kpos = torch.arange(key.shape[2], device=x.device)
    allowed = sel.key_mask[:, None, :] & (kpos <= qpos)  # (B, s, past + q)
    empty = ~allowed.any(-1)  # (B, s)
    allowed = allowed | ((kpos == qpos) & empty[..., None])
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed[:, None],
                                         dropout_p=attn.attn_dropout.p if attn.training else 0.0,
                                         scale=attn.scaling)
    out = out.masked_fill(empty[:, None, :, None], 0.0)
    out = attn.resid_dropout(attn.c_proj(out.transpose(1, 2).reshape(b, -1, hid)))
    h = x.gather(1, idx) + out
    h = h + block.mlp(block.ln_2(h))
    return x.scatter(1, idx, h)


def _qkv(c_attn: nn.Module, h: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(query (B, s, H) at the positions `idx`, key and value (B, q, H) at all) of GPT-2's fused projection.

    A plain `Conv1D` (h @ w + bias, w (H, 3H) = [q | k | v]) projects the query only where it is needed;
    anything else in its place (a LoRA layer) runs whole and its query is gathered.
    """
    from transformers.pytorch_utils import Conv1D

    hid = h.shape[-1]
    if type(c_attn) is not Conv1D:
        query, key, value = c_attn(h).split(hid, dim=2)
        return query.gather(1, idx), key, value
    w, bias = c_attn.weight, c_attn.bias
    kv = torch.addmm(bias[hid:], h.reshape(-1, hid), w[:, hid:]).view(*h.shape[:2], 2 * hid)
    query = torch.addmm(bias[:hid], h.gather(1, idx).reshape(-1, hid), w[:, :hid]).view(*idx.shape)
    return (query, *kv.split(hid, dim=2))
