"""AdamW over fp32 master copies of bf16 weights: what `precision=bf16-weights` trains with.

    opt = MasterAdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01)
    loss.backward()                       # bf16 gradients on the bf16 weights
    opt.clip_grad_norm(1.0)               # their global norm, summed in fp32, at most 1.0
    opt.step()                            # AdamW on the fp32 masters, then every weight = its master rounded
    opt.zero_grad()

The usual mixed-precision master-weights scheme: the model holds only bf16 weights (2 bytes a
parameter, half of fp32), the forward and backward run in bf16, and the optimizer keeps an fp32
master of every trainable weight (4 bytes) and AdamW's two fp32 moments (8 bytes). A small update
that rounds away in bf16 still accumulates in the master. A trainable weight that is already fp32 is
its own master (no copy); frozen weights (LoRA's base) get neither a master nor AdamW state.

The step goes through the weights in chunks of at most `chunk_elements(sizes)` elements (the largest
tensor's size, and at least `CHUNK_ELEMENTS`, so that many small tensors, LoRA's, step together): the
chunk's bf16 gradients become fp32 gradients on their masters (scaled by the clip) and are freed, AdamW
steps those masters (torch's multi-tensor step on GPU), and the weights take their masters' values. So
the fp32 gradients never hold more than one chunk at once, and the gradients cost 2 bytes a parameter,
not 4; AdamW is elementwise, so the result is what one step over all the masters gives.

The masters are saved with the optimizer (`state_dict()["masters"]`), since the rounded bf16 weights
cannot give them back: a resume restores them and continues exactly. `masters=` hands an optimizer
the masters of the one it replaces (a curriculum reset), so a reset drops the moments, not the fp32
weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from coconut_lm.errors import CoconutError

#: The least a chunk of the step may hold, in elements (64 MiB of fp32 gradients): a few calls of AdamW per step.
CHUNK_ELEMENTS = 2**24


class MasterAdamW:
    """torch AdamW stepping fp32 masters of (bf16) parameters and copying the result back into them.

    It answers what the trainer asks of an optimizer: `param_groups` (the lr is set there), `step`,
    `zero_grad`, `state_dict` and `load_state_dict`, and `clip_grad_norm` in place of torch's clip.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], masters: list[torch.Tensor] | None = None,
                 **adamw: Any) -> None:
        self.params = [p for p in params if p.requires_grad]
        if masters is None:
            masters = [p if p.dtype == torch.float32 else p.detach().float().clone() for p in self.params]
        elif len(masters) != len(self.params):
            raise CoconutError(f"MasterAdamW: {len(masters)} masters for {len(self.params)} trainable weights")
        self.masters = masters
        self.inner = torch.optim.AdamW(self.masters, **adamw)
        self.chunks = _chunks([p.numel() for p in self.params])
        self._scale: torch.Tensor | None = None  # this step's clip factor (clip_grad_norm)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW's groups (over the masters): the trainer sets each step's lr here."""
        return self.inner.param_groups

    @property
    def state(self) -> Any:
        """AdamW's per-master state (exp_avg, exp_avg_sq, step), fp32."""
        return self.inner.state

    @torch.no_grad()
    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Have `step` scale the gradients so that their global L2 norm (each tensor's summed in fp32) is at
        most `max_norm`, as `torch.nn.utils.clip_grad_norm_` does on fp32 gradients; the norm before."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros(())
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]))
        self._scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        return total

    @torch.no_grad()
    def step(self) -> None:
        """AdamW on the masters, chunk by chunk, with their weights' gradients (in fp32, clipped); then each
        weight takes its master's value."""
        grads: list[torch.Tensor | None] = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        for chunk in self.chunks:
            for i in chunk:
                g, grads[i] = grads[i], None
                if g is None:
                    continue
                g = g.float() if g.dtype != torch.float32 else g
                if self._scale is not None:
                    g.mul_(self._scale.to(g.device))
                self.masters[i].grad = g
            self.inner.step()  # only this chunk's masters have gradients, so AdamW steps them alone
            for i in chunk:
                self.masters[i].grad = None
                if self.masters[i] is not self.params[i]:
                    self.params[i].copy_(self.masters[i])
        self._scale = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients of the weights and of the masters."""
        for p in self.params:
            p.grad = None
        self.inner.zero_grad(set_to_none=set_to_none)
        self._scale = None

    def state_dict(self) -> dict[str, Any]:
        """AdamW's state dict and the fp32 masters (copies, on the CPU), in the order of the trainable weights."""
        return {"adamw": self.inner.state_dict(), "masters": [m.detach().cpu().clone() for m in self.masters]}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` output: AdamW's moments, the masters, and the bf16 weights from the masters."""
        if not isinstance(state, dict) or "masters" not in state or "adamw" not in state:
            raise CoconutError("config 'precision': bf16-weights resumes from a checkpoint of a bf16-weights run "
                               "(its optimizer state has no fp32 master weights); set precision back or start a new run")
        masters = state["masters"]
        if len(masters) != len(self.masters) or any(a.shape != b.shape for a, b in zip(masters, self.masters)):
            raise CoconutError("config 'precision': the checkpoint's fp32 master weights do not match this model's "
                               "trainable weights")
        for m, saved in zip(self.masters, masters):
            m.copy_(saved)
        self.inner.load_state_dict(state["adamw"])  # the masters are fp32: AdamW keeps its moments in fp32
        for p, m in zip(self.params, self.masters):
            if m is not p:
                p.copy_(m)


def chunk_elements(sizes: list[int]) -> int:
    """The most elements one chunk of `MasterAdamW.step` holds: the largest size, at least `CHUNK_ELEMENTS`."""
    return max(max(sizes, default=0), CHUNK_ELEMENTS)


def _chunks(sizes: list[int]) -> list[list[int]]:
    """Consecutive indices of `sizes`, grouped so that no group's total exceeds `chunk_elements(sizes)`."""
    limit, chunks, total = chunk_elements(sizes), [], 0
    for i, n in enumerate(sizes):
        if not chunks or total + n > limit:
            chunks.append([])
            total = 0
        chunks[-1].append(i)
        total += n
    return chunks


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse `precision=bf16-weights` on a device without bf16 arithmetic (a GPU older than Ampere)."""
    if precision != "bf16-weights" or device.type != "cuda":
        return
    if not torch.cuda.is_bf16_supported():
        raise CoconutError(f"config 'precision': bf16-weights needs bf16 arithmetic, which {torch.cuda.get_device_name(device)} "
                           f"lacks; use precision=fp32")
