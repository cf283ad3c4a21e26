"""torch.distributed plumbing: torchrun environment, process group, DDP wrapping, rank-0-only side effects.

Launch multi-GPU training with ``torchrun --nproc_per_node=N -m posecnn_core.train --config cfg.yaml``; each
process then trains on ``cuda:LOCAL_RANK`` with NCCL and 1/N of every epoch's samples (``data.EpochSampler``).
Without torchrun variables it is one process and nothing is initialised. CPU runs use gloo.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["DistEnv", "env_from_environ", "resolve_device", "init_distributed", "wrap_model", "unwrap",
           "all_reduce_mean", "barrier", "shutdown"]


@dataclass(frozen=True)
class DistEnv:
    """rank / world_size / local_rank of this process; ``distributed`` when a process group is (to be) used."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_from_environ(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read torchrun's RANK, WORLD_SIZE, LOCAL_RANK (absent -> a single non-distributed process)."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return DistEnv()
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ValueError(f"bad torchrun environment (RANK={env.get('RANK')!r}, WORLD_SIZE="
                         f"{env.get('WORLD_SIZE')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r})") from exc
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistEnv(rank=rank, world_size=world, local_rank=local, distributed=True)


def resolve_device(name: str, env: DistEnv) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when CUDA is available, else CPU; 'cuda' under torchrun -> cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available (use device: cpu)")
        if dev.index is None:
            dev = torch.device("cuda", env.local_rank if env.distributed else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return dev


def init_distributed(env: DistEnv, device: torch.device, init_method: str | None = None) -> None:
    """Start the process group (NCCL on CUDA, gloo on CPU) when ``env.distributed``; no-op otherwise.

    ``init_method`` defaults to torchrun's env:// rendezvous; tests pass e.g. ``file:///tmp/x``.
    """
    if not env.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method=init_method or "env://", rank=env.rank,
                            world_size=env.world_size)


def wrap_model(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed (every parameter is used in each step)."""
    if not env.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def all_reduce_mean(values: Tensor, env: DistEnv) -> Tensor:
    """Mean of a tensor over all processes (a copy; the input itself when not distributed)."""
    if not env.distributed or not dist.is_initialized():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / env.world_size


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    """Destroy the process group if this module created one."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
