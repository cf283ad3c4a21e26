"""Input and output plumbing of the refinement: numpy/torch conversion, device choice, padding and subsampling of
point sets, masked medians, rigid transforms of padded batches."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .options import RefineOptions


def _to_tensor(name: str, value, device: torch.device | None, dtype=torch.float32) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        out = value.detach()
    else:
        try:
            out = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}") from exc
    if out.dtype == torch.bool and dtype != torch.bool:
        raise TypeError(f"{name} must be numeric, got bool")
    return out.to(device=device, dtype=dtype)


def _pick_device(options: RefineOptions, values: Sequence[Any]) -> torch.device:
    if options.device is not None:
        return torch.device(options.device)
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def _output(value: torch.Tensor, like) -> Any:
    if isinstance(like, torch.Tensor):
        return value.to(device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float64)
    dtype = np.asarray(like).dtype
    return value.detach().cpu().double().numpy().astype(dtype if np.issubdtype(dtype, np.floating) else np.float64)


def _initial_output(R_in, t_in) -> tuple[Any, Any]:
    if isinstance(R_in, torch.Tensor):
        R_out = R_in.detach().clone()
    else:
        R_out = np.array(R_in, dtype=np.float64 if not np.issubdtype(np.asarray(R_in).dtype, np.floating)
                         else np.asarray(R_in).dtype)
    if isinstance(t_in, torch.Tensor):
        t_out = t_in.detach().clone().reshape(3)
    else:
        t_arr = np.asarray(t_in)
        t_out = np.array(t_arr.reshape(3), dtype=t_arr.dtype if np.issubdtype(t_arr.dtype, np.floating)
                         else np.float64)
    return R_out, t_out


def _subsample_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """At most n rows of x, evenly spaced (all of them when there are no more than n)."""
    if len(x) <= n:
        return x
    return x[torch.linspace(0, len(x) - 1, n, device=x.device).round().long()]


def _repeat(x: torch.Tensor, k: int) -> torch.Tensor:
    """[B, ...] -> [B·k, ...]: each element repeated k times in a row (k hypotheses per instance)."""
    return x[:, None].expand(x.shape[0], k, *x.shape[1:]).reshape(x.shape[0] * k, *x.shape[1:])


def _pad(tensors: list[torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = tensors[0].new_zeros(len(tensors), width, *tensors[0].shape[1:])
    valid = torch.zeros(len(tensors), width, dtype=torch.bool, device=tensors[0].device)
    for j, x in enumerate(tensors):
        out[j, :len(x)] = x
        valid[j, :len(x)] = True
    return out, valid


def _masked_median(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.nanmedian(torch.where(valid, x, torch.full_like(x, float("nan"))), dim=1).values


def _transform(model: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return model @ R.transpose(-1, -2) + t[:, None, :]
