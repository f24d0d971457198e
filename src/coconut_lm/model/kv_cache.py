"""The KV cache of the multi-pass forward: one preallocated buffer per full-attention layer.

HF's `DynamicCache` concatenates a fresh copy of all keys and values at every pass, and backward
keeps each copy alive, so n thoughts cost n copies of the prefix's K/V. Here each pass writes only
its new positions into a buffer and attends to a view of the prefix; a small autograd function
routes the view's gradient back to the pieces that were written, so training is unchanged.

    cache = new_cache(model.config, capacity=T)            # pass as past_key_values / cache
"""

from __future__ import annotations

import functools

import torch

from coconut_lm.errors import CoconutError


def new_cache(config, capacity: int, buffered: bool = True):
    """A `DynamicCache` for `config` whose full-attention layers keep K/V in `capacity`-position buffers.

    Layers of other kinds (sliding-window) keep HF's own; `buffered=False` returns the stock cache.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    if not buffered:
        return cache
    layer_class = _buffer_layer_class()
    if not cache.layers:  # lazily built layers (no per-layer types in the config)
        cache.layer_class_to_replicate = lambda: layer_class(capacity)
    cache.layers = [layer_class(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


class _PrefixView(torch.autograd.Function):
    """buf[:, :, :e] as a function of the pieces already written into it, so gradients reach them."""

    @staticmethod
    def forward(ctx, buf: torch.Tensor, *pieces: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [p.shape[-2] for p in pieces]
        return buf[:, :, : sum(ctx.sizes)]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, *grad.split(ctx.sizes, dim=-2))


@functools.cache
def _buffer_layer_class() -> type:
    """The cache layer class, built on first use so that importing this module stays light."""
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A full-attention cache layer over preallocated (B, heads, capacity, d) K/V buffers.

        Writes go through `.data`, which autograd does not version: a view saved for backward
        by an earlier pass covers only positions that are never written again. `torch.compile`
        does not keep that distinction (it would trace the write as a versioned in-place
        update), so `update` stays eager inside compiled blocks (coconut_lm.model.compiled).
        """

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self.pieces: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            b, h, _, _ = key_states.shape
            self.device = key_states.device
            self.kbuf = key_states.new_empty(b, h, self.capacity, key_states.shape[-1])
            self.vbuf = value_states.new_empty(b, h, self.capacity, value_states.shape[-1])
            self.length = 0
            self.is_initialized = True

        @torch.compiler.disable
        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            s, e = self.length, self.length + key_states.shape[-2]
            if e > self.capacity:
                raise CoconutError(f"KV buffer of {self.capacity} positions is full")
            self.kbuf.data[:, :, s:e] = key_states.detach()
            self.vbuf.data[:, :, s:e] = value_states.detach()
            self.length = e
            if torch.is_grad_enabled() and (key_states.requires_grad or value_states.requires_grad):
                self.pieces[0].append(key_states)
                self.pieces[1].append(value_states)
                self.keys = _PrefixView.apply(self.kbuf, *self.pieces[0])
                self.values = _PrefixView.apply(self.vbuf, *self.pieces[1])
            else:
                self.keys, self.values = self.kbuf[:, :, :e], self.vbuf[:, :, :e]
            return self.keys, self.values

    return BufferLayer
