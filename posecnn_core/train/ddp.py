"""torch.distributed plumbing: torchrun environment, process group, DDP wrapping, rank-0-only side effects.

Launch multi-GPU training with ``torchrun --nproc_per_node=N -m posecnn_core.train --config cfg.yaml``; each
process then trains on ``cuda:LOCAL_RANK`` with NCCL and 1/N of every global batch (``data.EpochSampler``).
Without torchrun variables it is one process and nothing is initialised. CPU runs use gloo. Every collective
(and the rendezvous) gives up after the process group's timeout (``dist_timeout_s``), so a stalled process makes
the others fail instead of waiting for ever. docs/training.md says what makes N processes equal one.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["DistEnv", "env_from_environ", "resolve_device", "init_distributed", "wrap_model", "unwrap",
           "all_reduce_sum", "min_max", "barrier", "shutdown", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 1800.0  # torch's own default for gloo (30 min)


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


def init_distributed(env: DistEnv, device: torch.device, init_method: str | None = None,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Start the process group (NCCL on CUDA, gloo on CPU) when ``env.distributed``; no-op otherwise.

    ``init_method`` defaults to torchrun's env:// rendezvous; tests pass e.g. ``file:///tmp/x``. ``timeout_s``:
    how long the rendezvous and every collective wait for the other processes before raising (NCCL: its
    watchdog aborts the process, with TORCH_NCCL_ASYNC_ERROR_HANDLING at its default).
    """
    if not env.distributed or dist.is_initialized():
        return
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method=init_method or "env://", rank=env.rank,
                            world_size=env.world_size, timeout=datetime.timedelta(seconds=timeout_s))


def wrap_model(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed (every parameter is used in each step)."""
    if not env.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def all_reduce_sum(values: Tensor, env: DistEnv) -> Tensor:
    """Sum of a tensor over all processes (a detached copy; the input itself when not distributed)."""
    if not env.distributed or not dist.is_initialized():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def min_max(value: int, env: DistEnv, device: torch.device) -> tuple[int, int]:
    """(smallest, largest) of an integer over all processes (``(value, value)`` when not distributed)."""
    if not env.distributed or not dist.is_initialized():
        return value, value
    t = torch.tensor([-value, value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return -int(t[0]), int(t[1])


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    """Destroy the process group if this module created one."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
