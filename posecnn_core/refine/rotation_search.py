"""Global search over start rotations spread over SO(3) (RefineOptions.rotation_search), for initial rotations that
may be far off."""
from __future__ import annotations

import torch

from .hypotheses import _HypothesisRunner, _centred_translation, _depth_shift
from .icp import _icp, _model_index
from .options import RefineOptions
from .so3 import _so3_samples
from .tensors import _pad, _repeat, _subsample_rows, _transform
from .visibility import _visible


def _rotation_search(work, nearest, K, R0, t0, z_obs, sym, opts: RefineOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Global search over start rotations (see RefineOptions.rotation_search) on subsampled points.

    Returns the search_keep best poses per instance: R [I, k, 3, 3], t [I, k, 3].
    """
    dev, dt = K.device, R0.dtype
    I = len(work)
    # Observed points, normals and flags are subsampled alike (same length, same evenly spaced rows).
    obs = [[_subsample_rows(x, opts.search_points) for x in w[1:4]] for w in work]
    M = max(len(o[0]) for o in obs)
    q, obs_valid = _pad([o[0] for o in obs], M)
    nrm, _ = _pad([o[1] for o in obs], M)
    nok, _ = _pad([o[2] for o in obs], M)
    models = [_subsample_rows(w[4], opts.search_model_points) for w in work]
    model, model_valid = _pad(models, max(len(m) for m in models))
    grid, spacing = _model_index(model, model_valid, opts)
    runner = _HypothesisRunner((q, nrm, nok, obs_valid, model, model_valid), spacing, nearest, K, sym, opts, grid)
    G = _so3_samples(opts.rotation_search, dev, dt)
    S = G.shape[0]

    def rep(x: torch.Tensor) -> torch.Tensor:
        return _repeat(x, S)

    data = [rep(x) for x in runner.data]
    R_c = (R0[:, None] @ G[None]).reshape(I * S, 3, 3)  # rotate about the object's own origin
    t_rep, z_rep = rep(t0), rep(z_obs)
    s_c = _transform(data[4], R_c, t_rep)
    vis_c = _visible(s_c, data[5], K, opts.visibility_margin, opts.backend) if opts.visibility else data[5]
    t_c = _centred_translation(data[0], data[3], s_c, vis_c, t_rep, K, z_rep, _depth_shift(s_c, vis_c, z_rep, opts))
    gate0 = torch.full((I * S,), opts.gate_start, dtype=dt, device=dev)
    sym_rep = rep(sym)
    first = opts.search_iterations
    if opts.search_prune_after is not None and opts.search_survivors < S:
        first = min(opts.search_prune_after, opts.search_iterations)
    R_f, t_f, _, _, gate = _icp(*data, K, R_c, t_c, R_c, sym_rep, gate0, first, opts,
                                None if grid is None else grid.repeat(S))
    _, score = runner.evaluate(R_f, t_f, rep)
    ar = torch.arange(I, device=dev)[:, None]
    if first < opts.search_iterations:
        # Early rejection: only the search_survivors best starts of each instance run the remaining iterations.
        k = opts.search_survivors
        top = score.view(I, S).topk(k, dim=1).indices
        sel = (ar * S + top).reshape(-1)
        R_f, t_f, _, _, _ = _icp(*(x[sel] for x in data), K, R_f[sel], t_f[sel], R_c[sel], sym_rep[sel], gate[sel],
                                 opts.search_iterations - first, opts, None if grid is None else grid.repeat(k))
        _, score = runner.evaluate(R_f, t_f, lambda x: _repeat(x, k))
        S = k
    top = score.view(I, S).topk(min(opts.search_keep, S), dim=1).indices
    return R_f.view(I, S, 3, 3)[ar, top], t_f.view(I, S, 3)[ar, top]
