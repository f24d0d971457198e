"""Collation: layouts to padded tensors, with every row's first thought slot at the same position.

Training rows are left-padded so that the first `<latent>` of every row lands at one column (the
multi-pass forward then needs one pass per latent column, as in the paper's batches), then
right-padded to the longest row. Prompts for generation are left-padded so they all end together.

    batch = collate([layout, ...], pad_id=tokens.pad, latent_id=tokens.latent)
    batch.input_ids, batch.attention_mask, batch.labels        # (B, T) int64 tensors
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from coconut_lm.recipe.methods import IGNORE, Layout


@dataclass
class Batch:
    """A padded batch. `n_label_tokens` counts supervised next-token targets (labels[:, 1:] != -100)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def n_label_tokens(self) -> int:
        return int((self.labels[:, 1:] != IGNORE).sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch on `device`."""
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (self.input_ids, self.attention_mask, self.labels)))

    def pad_to(self, width: int, pad_id: int) -> Batch:
        """The batch right-padded to `width` columns (masked, unsupervised)."""
        extra = width - self.input_ids.shape[1]
        if extra <= 0:
            return self
        pad = torch.nn.functional.pad
        return Batch(pad(self.input_ids, (0, extra), value=pad_id), pad(self.attention_mask, (0, extra), value=0),
                     pad(self.labels, (0, extra), value=IGNORE))

    def pin_memory(self) -> Batch:
        """Pinned copies, so host-to-GPU copies can overlap compute (called by DataLoader)."""
        return Batch(*(t.pin_memory() for t in (self.input_ids, self.attention_mask, self.labels)))


def collate(layouts: Sequence[Layout], pad_id: int, latent_id: int) -> Batch:
    """Pad layouts into a batch, aligning the first latent slot of every row that has one."""
    if not layouts:
        raise ValueError("collate needs at least one layout")
    lengths = np.array([len(x.input_ids) for x in layouts])
    first = np.array([_first_index(x.input_ids, latent_id) for x in layouts])
    has_latent = first >= 0
    left = np.zeros(len(layouts), dtype=np.int64)
    if has_latent.any():
        left[has_latent] = first[has_latent].max() - first[has_latent]
    width = int((left + lengths).max())
    ids = np.full((len(layouts), width), pad_id, dtype=np.int64)
    labels = np.full((len(layouts), width), IGNORE, dtype=np.int64)
    mask = np.zeros((len(layouts), width), dtype=np.int64)
    for i, x in enumerate(layouts):
        a, b = left[i], left[i] + lengths[i]
        ids[i, a:b] = x.input_ids
        labels[i, a:b] = x.labels
        mask[i, a:b] = 1
    return Batch(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(labels))


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad generation prompts so they all end at the last column: (input_ids, attention_mask)."""
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(prompts), width), dtype=np.int64)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, width - len(p):] = p
            mask[i, width - len(p):] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def _first_index(ids: Sequence[int], value: int) -> int:
    try:
        return (ids if isinstance(ids, list) else list(ids)).index(value)
    except ValueError:
        return -1
