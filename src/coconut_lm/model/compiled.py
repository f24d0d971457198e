"""Compiled backbone passes: `torch.compile` of each transformer block, with a clean fallback.

Coconut runs the backbone once for the question and once per thought, so a step is a handful
of passes of different lengths (one position for most thoughts, and for every decoding step).
Compiling the whole `CoconutLM` would trace its Python control flow (the pass plan, the cache
bookkeeping) and recompile for every new plan. Compiling each transformer block instead keeps
that control flow in eager Python and hands the compiler the part that is the same on every
pass. `mode` is `torch.compile`'s: "default", "reduce-overhead" (CUDA graphs on a GPU: the
one-position passes and decoding are launch-bound there), "max-autotune" or
"max-autotune-no-cudagraphs".

A backend that fails (no C++ compiler, an unsupported op) falls back to eager for that block,
with torch's warning, instead of stopping the run: `torch._dynamo.config.suppress_errors`.
Inside each attention layer the KV-buffer write stays eager (`kv_cache.BufferLayer.update`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from coconut_lm.errors import CoconutError

if TYPE_CHECKING:
    from torch import nn

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Graphs per block code object before dynamo falls back to eager (see `compile_blocks`).
RECOMPILE_LIMIT = 64


def transformer_blocks(body: nn.Module) -> nn.ModuleList:
    """The list of decoder layers of an HF transformer body (GPT-2's `h`, Llama's `layers`, ...)."""
    from torch import nn

    for name in ("h", "layers", "layer", "blocks"):
        blocks = getattr(body, name, None)
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return blocks
    lists = [m for m in body.children() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise CoconutError(f"cannot find the transformer blocks of {type(body).__name__} to compile")
    return max(lists, key=len)


def compile_blocks(model: nn.Module, mode: str = "default", backend: str | Callable = "inductor") -> int:
    """Compile every transformer block of `model` (a `CoconutLM`) in place; returns how many.

    The compiled blocks compute what the eager ones do (tests/test_compiled.py checks loss,
    gradients and generations against the slow reference). Shapes are torch's automatic dynamic
    ones: a block is compiled for its first shape and again, with symbolic sizes, when another
    length comes. One-position passes, grad on and off (training, validation) and autocast each
    need their own graphs, and every layer shares one code object, so dynamo's recompile limit
    is raised to `RECOMPILE_LIMIT` (torch's default of 8 sent later variants back to eager).
    `backend` is `torch.compile`'s, a name or a callable (the CPU tests use "aot_eager": the
    same graph capture without the C++ build); `mode` applies to inductor only.

    Two dynamo settings are process-wide: the recompile limit, and `suppress_errors`, which
    makes a failing backend run that block eagerly (with torch's warning) instead of stopping
    the run. Both stay set for the rest of the process.
    """
    import torch

    if mode not in COMPILE_MODES:
        raise CoconutError(f"compile mode '{mode}' is not one of {', '.join(COMPILE_MODES)}")
    if getattr(model, "last_block", None) is not None:
        raise CoconutError("compile_blocks: the last block is pruned (last_block.prune_last_block); the two do not combine")
    config = torch._dynamo.config
    config.suppress_errors = True
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    blocks = transformer_blocks(model.body)
    for block in blocks:
        if backend == "inductor":
            block.compile(mode=None if mode == "default" else mode)
        else:
            block.compile(backend=backend)
    return len(blocks)
