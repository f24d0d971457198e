"""The token shift: a short causal convolution on the backbone's inputs, not in the paper.

Every input vector x_t (a token's embedding or a thought) enters the backbone as
x_t + W [x_{t-1}; ...; x_{t-K}], with positions before the start and padded positions taken as
zero. It hands each position its K predecessors for free, which a from-scratch model otherwise has
to gather with a previous-token attention head before it can do any in-context lookup
(docs/experiments.md: associative recall goes from a 12% plateau to 100% in 750 steps). W (H x K*H)
is the only weight outside the backbone; it is saved beside it in `token_shift.safetensors`.
At thought positions two paths can be cut apart (`CoconutLM.shift_thoughts`, `shift_modes.py`):
`unshifted` inputs enter as they are (a thought that does not receive the shift), and `silent`
inputs count as zero among the predecessors of the inputs after them (a thought that does not
send); with both, a thought enters exactly as the hidden state it copies and no linear path runs
from it to the positions after it (the faithful variant; docs/methods.md).

    shift = TokenShift(hidden=H, width=K, std=0.02)
    x, before = shift.shift(x, real, before=None, unshifted=None, silent=None)  # (B, q, H), last K inputs (B, K, H)

Shapes: B batch, q new positions, H hidden size, K width.
"""

from __future__ import annotations

import torch
from torch import nn


class TokenShift(nn.Linear):
    """W of x_t + W [x_{t-1}; ...; x_{t-K}]: a bias-free linear map from K*H to H (its key stays `weight`)."""

    def __init__(self, hidden: int, width: int, std: float, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(hidden * width, hidden, bias=False, device=device, dtype=dtype)
        nn.init.normal_(self.weight, std=std)

    @property
    def width(self) -> int:
        """K: how many predecessors each input sees."""
        return self.in_features // self.out_features

    def shift(self, x: torch.Tensor, real: torch.Tensor | None, before: torch.Tensor | None,
              unshifted: torch.Tensor | None = None,
              silent: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t + W [x_{t-1}; ...; x_{t-K}] for new inputs x (B, q, H), the last K masked inputs (B, K, H)).

        `real` (B, q) zeroes padded inputs as predecessors (None: all real); `before` (B, K, H) holds
        the K inputs just before x[:, 0] (None: nothing, i.e. zeros). `unshifted` (B, q) marks inputs
        left as they are, and `silent` (B, q) inputs that count as zero among the predecessors (None:
        none; `CoconutLM._shift` marks the thoughts in either, as `shift_thoughts` says).
        """
        k, q = self.width, x.shape[1]
        xm = x if real is None else x * real[..., None].to(x.dtype)
        if silent is not None:
            xm = xm.masked_fill(silent[..., None], 0.0)
        if before is None:
            before = xm.new_zeros(xm.shape[0], k, xm.shape[2])
        ext = torch.cat([before, xm], 1)  # (B, K+q, H)
        prev = torch.cat([ext[:, k - j: k - j + q] for j in range(1, k + 1)], -1)  # (B, q, K*H)
        shift = self(prev)
        if unshifted is not None:
            shift = shift.masked_fill(unshifted[..., None], 0.0)
        return x + shift, ext[:, -k:]

    def predecessors(self, embeds: torch.Tensor, hidden: torch.Tensor, latent: torch.Tensor,
                     attention_mask: torch.Tensor, last: torch.Tensor, silent_thoughts: bool) -> torch.Tensor:
        """The inputs up to each row's position `last` (B,) as `shift` takes them in `before`: (B, K, H).

        A prompt's input at a `<latent>` slot (`latent`, (B, T)) was the hidden state before it
        (`hidden`, (B, T, H)), elsewhere its embedding (`embeds`); padded ones, positions before the
        start and, with `silent_thoughts`, the thoughts count as zero.
        """
        rows = torch.arange(embeds.shape[0], device=embeds.device)[:, None]
        cols = last[:, None] - torch.arange(self.width - 1, -1, -1, device=embeds.device)  # (B, K), oldest first
        ok = cols >= 0
        cols = cols.clamp(min=0)
        # A slot's input is the hidden state before it; a prompt's first column has no such state.
        inputs = torch.where(latent[rows, cols, None], hidden[rows, (cols - 1).clamp(min=0)], embeds[rows, cols])
        real = ok & attention_mask.bool()[rows, cols]
        if silent_thoughts:
            real = real & ~latent[rows, cols]
        return inputs * real[..., None].to(inputs.dtype)
