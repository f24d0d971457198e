"""Activation (gradient) checkpointing of the backbone's blocks, across Coconut's thought passes.

    checkpoint_blocks(model)     # model: a CoconutLM; every block now keeps only its inputs for backward

A checkpointed block saves its inputs and recomputes its inside in backward, so a step holds one
(B, T, H) input per block instead of every intermediate activation. HF's own gradient
checkpointing cannot do this for Coconut: it drops the KV cache (`use_cache=False`), and the
thought passes need it. The cache is a side effect: the first run of a block writes its new keys
and values into it, and a recompute in backward must neither write them again nor see the later
passes' positions. So each checkpointed call records what the cache's `update` returned for its
layer (for the K/V buffer of `kv_cache`, a view of the buffer: no copy), and the recompute gets
exactly those tensors back without touching the cache. Any cache layer works this way: the K/V
buffer, HF's concatenating and sliding-window layers.

Only the blocks are checkpointed; the embeddings, the final norm, the LM head (whose loss is
already chunked and recomputed for a large vocabulary) and the small Coconut heads are not.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from coconut_lm.errors import CoconutError
from coconut_lm.model.compiled import transformer_blocks

KV = tuple[torch.Tensor, torch.Tensor]


def checkpoint_blocks(model: nn.Module) -> int:
    """Checkpoint every transformer block of `model` (a `CoconutLM`) in place; returns how many.

    The block's `forward` is wrapped on the instance (state-dict keys and module hooks such as
    FSDP2's stay as they are, outside the checkpoint). Without gradients (validation, generation)
    a block runs as before. Loss and gradients are those of the plain model (tests/test_checkpointing.py).
    """
    if getattr(model, "last_block", None) is not None:
        raise CoconutError("checkpoint_blocks: the last block is pruned (last_block.prune_last_block); the two do not combine")
    blocks = transformer_blocks(model.body)
    for index, block in enumerate(blocks):
        if getattr(block, "_coconut_checkpointed", False):
            continue
        block.forward = functools.partial(_checkpointed_forward, block.forward, index)
        block._coconut_checkpointed = True
    model.checkpointing = True
    return len(blocks)


def is_checkpointed(model: nn.Module) -> bool:
    """Whether `checkpoint_blocks` was applied to `model`."""
    return bool(getattr(model, "checkpointing", False))


def _checkpointed_forward(forward: Callable[..., Any], index: int, *args: Any, **kwargs: Any) -> Any:
    """`forward(*args, **kwargs)` of block `index`, checkpointed when gradients are on."""
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    cache = _find_cache(args, kwargs)
    if cache is None:  # one pass, no thoughts: nothing is written, nothing to replay
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    seen: dict[int, KV] = {}
    contexts = lambda: (_recording(cache, seen), _replaying(cache, seen, index))  # noqa: E731
    return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)


def _find_cache(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The HF `Cache` among a block's arguments (GPT-2 passes it by position, Llama by keyword), or None."""
    from transformers.cache_utils import Cache

    return next((a for a in (*args, *kwargs.values()) if isinstance(a, Cache)), None)


@contextlib.contextmanager
def _recording(cache: Any, seen: dict[int, KV]) -> Iterator[None]:
    """The first run: `cache.update` as usual, remembering (detached) what it returned per layer."""
    update = cache.update

    def record(key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> KV:
        k, v = update(key, value, layer_idx, *args, **kwargs)
        seen[layer_idx] = (k.detach().requires_grad_(k.requires_grad), v.detach().requires_grad_(v.requires_grad))
        return k, v

    cache.update = record
    try:
        yield
    finally:
        del cache.update  # the class's method again


@contextlib.contextmanager
def _replaying(cache: Any, seen: dict[int, KV], index: int) -> Iterator[None]:
    """The recompute in backward: `cache.update` returns the first run's keys and values, writing nothing."""

    def replay(key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> KV:
        if layer_idx not in seen:
            raise CoconutError(f"gradient checkpointing: block {index} updated cache layer {layer_idx} only when "
                               f"recomputed; this backbone's cache use is not supported (gradient_checkpointing=false)")
        # Fresh leaves that require grad as the originals did, so the recompute saves the same tensors
        # for backward (autograd saves what a needed gradient uses); the recompute's own graph is dropped.
        return tuple(t.detach().requires_grad_(t.requires_grad) for t in seen[layer_idx])

    cache.update = replay
    try:
        yield
    finally:
        del cache.update
