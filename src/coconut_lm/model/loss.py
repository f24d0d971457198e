"""The summed losses of `CoconutLM.forward`: each returns (sum, count), and whoever averages divides once.

`summed_nll` is the cross-entropy of the labels with the LM head run only on the N supervised
positions, in chunks recomputed in backward when (N, V) logits would be large; `summed_stop_bce` is
the `<eot>` classifier's BCE at the decisions of `stop_decision_mask`.

    loss_sum, n = summed_nll(hidden, labels, None, model.logits, vocab)
    bce_sum, m = summed_stop_bce(hidden, input_ids, attention_mask, tokens, eot_head)

Shapes: B batch, T sequence, H hidden size, V vocabulary, N supervised positions, M decisions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from coconut_lm.recipe.methods import IGNORE
from coconut_lm.recipe.tokens import SpecialTokens

# Above this many logits (N * V) the loss runs in chunks whose logits are recomputed in backward,
# so that a large vocabulary never holds (N, V) logits and their gradient at once.
CE_CHUNK_ELEMENTS = 2**26


def stop_decision_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       tokens: SpecialTokens) -> tuple[torch.Tensor, torch.Tensor]:
    """(where the `<eot>` classifier decides, where it should say stop), both (B, T) bool.

    It decides at every real `<bot>` and `<latent>` and at the input just before a `<latent>` (without
    markers, the last question token); it should stop where the next input is not a `<latent>`. With
    markers that is "the next input is `<eot>`". The rule of `recipe.tokens.stop_decisions`, batched.
    """
    lat = input_ids == tokens.latent
    next_lat = F.pad(lat[:, 1:], (0, 1), value=False)
    at = (lat | next_lat | (input_ids == tokens.bot)) & attention_mask.bool()
    return at, at & ~next_lat


def summed_nll(hidden: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None,
               head: Callable[[torch.Tensor], torch.Tensor], vocab: int) -> tuple[torch.Tensor, int]:
    """(Summed NLL of labels[:, t+1] given position t, N), with the LM `head` only on the N supervised positions.

    `logits` (B, T, V), when the forward computed them anyway, are used as they are.
    """
    target = labels[:, 1:]
    keep = target != IGNORE  # (B, T-1)
    y = target[keep]  # (N,)
    if logits is not None:
        return F.cross_entropy(upcast(logits[:, :-1][keep]), y, reduction="sum"), y.numel()
    h = hidden[:, :-1][keep]  # (N, H)
    chunk = max(1, CE_CHUNK_ELEMENTS // vocab)
    if h.shape[0] <= chunk:
        return _ce_sum(head, h, y), y.numel()
    grad = torch.is_grad_enabled()
    total = 0.0
    for i in range(0, h.shape[0], chunk):
        hc, yc = h[i:i + chunk], y[i:i + chunk]
        total = total + (checkpoint(_ce_sum, head, hc, yc, use_reentrant=False) if grad else _ce_sum(head, hc, yc))
    return total, y.numel()


def _ce_sum(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(upcast(head(h)), y, reduction="sum")


def summed_stop_bce(hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    tokens: SpecialTokens, eot_head: nn.Module) -> tuple[torch.Tensor, int]:
    """(Summed BCE of "latent mode ends here" at the M decision positions (`stop_decision_mask`), M)."""
    at, stop = stop_decision_mask(input_ids, attention_mask, tokens)
    z = eot_head(hidden[at]).squeeze(-1)  # (M,)
    bce = F.binary_cross_entropy_with_logits(upcast(z), stop[at].to(upcast(z).dtype), reduction="sum")
    return bce, z.numel()


def upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits go to float32 for the loss; float64 stays float64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
