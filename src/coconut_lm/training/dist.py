"""Everything distributed lives here: process-group set-up, ranks, wrapping, rank-0 printing.

One process (CPU or one GPU) needs nothing: `init_distributed()` returns a world of size 1.
Under `torchrun --nproc_per_node N -m coconut_lm.cli train ...` it reads RANK, LOCAL_RANK and
WORLD_SIZE, joins the process group (NCCL on GPU, gloo on CPU) and picks the device from the
LOCAL rank, so multi-node runs put each process on its own node's GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global rank, rank on its node, world size and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str = "auto", index: int = 0) -> torch.device:
    """"auto" (CUDA when available, else CPU), "cpu" or "cuda"; asking for CUDA without one is a CoconutError."""
    from coconut_lm.errors import CoconutError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CoconutError(f"device '{name}': no CUDA device is available on this machine (use cpu)")
    if name not in ("cpu", "cuda"):
        raise CoconutError(f"device '{name}': choose auto, cpu or cuda")
    return torch.device("cuda", index) if name == "cuda" else torch.device("cpu")


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the torchrun process group if there is one and choose this process's device.

    Args:
        device: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        # Rank 0 validates alone under DDP while the others wait: allow an hour, not the 10-minute default.
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None,
                                timeout=timedelta(hours=1))
    return DistEnv(rank=rank, local_rank=local, world_size=world, device=dev)


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op in one process)."""
    if env.distributed:
        dist.barrier()


def all_reduce_sum(value: float, env: DistEnv) -> float:
    """Sum a Python number over ranks."""
    if not env.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return float(t.item())


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's `obj` on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_model(model: nn.Module, env: DistEnv, strategy: str) -> nn.Module:
    """DDP (default) or FSDP2 (`fully_shard` on each transformer block, then the root)."""
    if not env.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # HF names its transformer blocks in `_no_split_modules`; shard each block, then the rest.
        base = getattr(model, "base", model)
        blocks = set(getattr(base, "_no_split_modules", None) or ())
        for module in list(model.modules()):
            if type(module).__name__ in blocks:
                fully_shard(module)
        fully_shard(model)
        if hasattr(model, "generate"):
            from torch.distributed.fsdp import register_fsdp_forward_method

            # generate() uses the root's parameters (embeddings, head) outside forward().
            register_fsdp_forward_method(model, "generate")
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, env: DistEnv, strategy: str) -> tuple[dict, dict]:
    """Full (unsharded) model and optimizer state dicts; under FSDP every rank must call it.

    Under FSDP the gathered tensors are on the CPU of rank 0 and empty elsewhere.
    """
    if env.distributed and strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)
    return unwrap(model).state_dict(), optimizer.state_dict()


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict,
                    env: DistEnv, strategy: str) -> None:
    """Load full state dicts (as `full_state` returns them) into a possibly sharded model and its optimizer."""
    if env.distributed and strategy == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, model_state, options=opts)
        set_optimizer_state_dict(model, optimizer, optim_state, options=opts)
        return
    unwrap(model).load_state_dict(model_state)
    optimizer.load_state_dict(optim_state)


def lockstep_plan(input_ids: torch.Tensor, latent_id: int, env: DistEnv) -> tuple[int, list[int]]:
    """(width, split columns) that let every FSDP rank run the same passes over the same width.

    FSDP gathers each block's weights collectively on every call, so all ranks must call each
    block equally often: the width is the widest rank's and the split columns are the union of
    every rank's latent columns.
    """
    cols = sorted(set((input_ids == latent_id).any(0).nonzero().flatten().tolist()))
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, (int(input_ids.shape[1]), cols))
    width = max(w for w, _ in gathered)
    return width, sorted({c for _, cs in gathered for c in cs})


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 shards in place, so it is already the module)."""
    return getattr(model, "module", model)


def cleanup(env: DistEnv) -> None:
    """Leave the process group."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
