"""The public entry points: input checks, one batch per depth frame, and acceptance of the results."""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import numpy as np
import torch

from .hypotheses import _HypothesisRunner, _centred_translation, _depth_shift
from .icp import _inlier_stats, _model_index
from .observed import _observed_points
from .options import RefineOptions, RefineResult
from .rotation_search import _rotation_search
from .so3 import _rotation_angle
from .tensors import (_initial_output, _masked_median, _output, _pad, _pick_device, _subsample_rows,
                      _to_tensor, _transform)
from .visibility import _nearest_reading, _visible


def _options(options: RefineOptions | None, overrides: dict) -> RefineOptions:
    if options is not None and not isinstance(options, RefineOptions):
        raise TypeError(f"options must be a RefineOptions, got {type(options).__name__}")
    base = options or RefineOptions()
    names = {f.name for f in dataclasses.fields(RefineOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown refinement option(s): {', '.join(unknown)}")
    return dataclasses.replace(base, **overrides) if overrides else base


def refine_pose(depth, K, mask, R, t, points, options: RefineOptions | None = None, **overrides) -> RefineResult:
    """Refine one object pose against a depth image.

    depth [H, W] metres (0 = no reading); K [3, 3]; mask [H, W] bool (the instance's label mask);
    R [3, 3], t (3,) initial pose, X_cam = R·X_obj + t; points [N, 3] model points in the object frame.
    numpy arrays or torch tensors (any device). Options come from `options` and/or keyword overrides of
    RefineOptions fields (e.g. `symmetric=True`). Returns a RefineResult whose R/t have the type of the input
    R/t; when declined, they are the initial pose and `reason` says why.
    """
    sym = overrides.pop("symmetric", None)
    opts = _options(options, overrides)
    if sym is not None:
        opts = dataclasses.replace(opts, symmetric=bool(sym))
    return refine_poses(depth, K, [mask], [R], [t], [points], options=opts)[0]


def refine_poses(depth, K, masks: Sequence, Rs: Sequence, ts: Sequence, points: Sequence,
                 options: RefineOptions | None = None, symmetric: bool | Sequence[bool] | None = None,
                 **overrides) -> list[RefineResult]:
    """Refine several instances of one depth frame in one batch (same options for all).

    masks, Rs, ts, points: sequences of equal length, one entry per instance (see refine_pose).
    symmetric: one flag for all instances or one per instance; None uses options.symmetric.
    Returns one RefineResult per instance, in order.
    """
    start_time = time.perf_counter()
    # Inference mode: the solve is never differentiated, and skipping autograd's bookkeeping (version counters,
    # view tracking) on its many small tensor ops saves about an eighth of the CPU time.
    with torch.inference_mode():
        results = _refine_poses(depth, K, masks, Rs, ts, points, options, symmetric, overrides)
    elapsed = (time.perf_counter() - start_time) * 1000.0 / max(len(results), 1)
    for r in results:
        r.time_ms = elapsed
        # tensors made in inference mode cannot enter autograd later: hand out ordinary copies
        if isinstance(r.R, torch.Tensor) and r.R.is_inference():
            r.R = r.R.clone()
        if isinstance(r.t, torch.Tensor) and r.t.is_inference():
            r.t = r.t.clone()
    return results


def _refine_poses(depth, K, masks: Sequence, Rs: Sequence, ts: Sequence, points: Sequence,
                  options: RefineOptions | None, symmetric: bool | Sequence[bool] | None,
                  overrides: dict) -> list[RefineResult]:
    """refine_poses without the timing and inference-mode wrapper."""
    opts = _options(options, overrides)
    n_inst = len(masks)
    for name, seq in (("Rs", Rs), ("ts", ts), ("points", points)):
        if len(seq) != n_inst:
            raise ValueError(f"{name} has {len(seq)} entries but masks has {n_inst}")
    if symmetric is None:
        sym_flags = [opts.symmetric] * n_inst
    elif isinstance(symmetric, (bool, np.bool_)):
        sym_flags = [bool(symmetric)] * n_inst
    else:
        sym_flags = [bool(s) for s in symmetric]
        if len(sym_flags) != n_inst:
            raise ValueError(f"symmetric has {len(sym_flags)} entries but masks has {n_inst}")
    if n_inst == 0:
        return []
    dev = _pick_device(opts, [depth, K, *masks, *Rs, *ts, *points])
    dt = torch.float32

    depth_t = _to_tensor("depth", depth, dev, dt)
    if depth_t.ndim != 2:
        raise ValueError(f"depth must have shape [H, W], got {tuple(depth_t.shape)}")
    K_t = _to_tensor("K", K, dev, dt)
    if K_t.shape != (3, 3):
        raise ValueError(f"K must have shape (3, 3), got {tuple(K_t.shape)}")
    if not bool(torch.isfinite(K_t).all()) or float(K_t[0, 0]) <= 0 or float(K_t[1, 1]) <= 0:
        raise ValueError("K must be finite with positive focal lengths")

    results: list[RefineResult | None] = [None] * n_inst
    work = []  # (index, q, normals, normal_ok, model, R0, t0)
    for i in range(n_inst):
        mask_t = masks[i]
        mask_t = _to_tensor(f"masks[{i}]", mask_t, dev, torch.bool) if not isinstance(mask_t, torch.Tensor) \
            else mask_t.detach().to(dev).bool()
        if mask_t.shape != depth_t.shape:
            raise ValueError(f"masks[{i}] must have the depth's shape {tuple(depth_t.shape)}, "
                             f"got {tuple(mask_t.shape)}")
        R_i = _to_tensor(f"Rs[{i}]", Rs[i], dev, dt)
        if R_i.shape != (3, 3) or not bool(torch.isfinite(R_i).all()):
            raise ValueError(f"Rs[{i}] must be a finite 3x3 matrix, got shape {tuple(R_i.shape)}")
        if float((R_i @ R_i.T - torch.eye(3, device=dev)).abs().max()) > 1e-3 or float(torch.det(R_i)) < 0:
            raise ValueError(f"Rs[{i}] must be a rotation matrix (orthonormal, det +1)")
        t_i = _to_tensor(f"ts[{i}]", ts[i], dev, dt).reshape(-1)
        if t_i.shape != (3,) or not bool(torch.isfinite(t_i).all()):
            raise ValueError(f"ts[{i}] must be 3 finite numbers, got shape {tuple(t_i.shape)}")
        p_i = _to_tensor(f"points[{i}]", points[i], dev, dt)
        if p_i.ndim != 2 or p_i.shape[1] != 3 or p_i.shape[0] < 3 or not bool(torch.isfinite(p_i).all()):
            raise ValueError(f"points[{i}] must be finite with shape [N >= 3, 3], got {tuple(p_i.shape)}")
        R_init, t_init = _initial_output(Rs[i], ts[i])
        if float(t_i[2]) <= opts.min_depth:
            results[i] = RefineResult(R_init, t_init, False, float("nan"),
                                      f"initial pose is not in front of the camera: tz {float(t_i[2]):.3f} m", 0, 0.0)
            continue
        q, nrm, nok, count = _observed_points(depth_t, K_t, mask_t, opts)
        if count < opts.min_pixels:
            results[i] = RefineResult(R_init, t_init, False, float("nan"),
                                      f"too few depth pixels in mask: {count} < {opts.min_pixels}", 0, 0.0)
            continue
        work.append((i, q, nrm, nok, _subsample_rows(p_i, opts.max_model_points), R_i, t_i))

    if work:
        valid_depth = torch.isfinite(depth_t) & (depth_t >= opts.min_depth) & (depth_t <= opts.max_depth)
        clean = torch.where(valid_depth, depth_t, torch.zeros_like(depth_t))
        nearest = _nearest_reading(clean, opts.free_space_radius)
        _refine_batch(work, nearest, K_t, sym_flags, opts, results, Rs, ts)
    return results  # type: ignore[return-value]


def _refine_batch(work, nearest, K, sym_flags, opts: RefineOptions, results, Rs, ts) -> None:
    dev = K.device
    idx = [w[0] for w in work]
    I = len(work)
    M = max(len(w[1]) for w in work)
    N = max(len(w[4]) for w in work)
    q, obs_valid = _pad([w[1] for w in work], M)
    nrm, _ = _pad([w[2] for w in work], M)
    nok, _ = _pad([w[3] for w in work], M)
    model, model_valid = _pad([w[4] for w in work], N)
    R0 = torch.stack([w[5] for w in work])
    t0 = torch.stack([w[6] for w in work])
    sym = torch.tensor([sym_flags[i] for i in idx], dtype=torch.bool, device=dev)

    # Initial-pose statistics and depth correction along the viewing ray.
    s0 = _transform(model, R0, t0)
    vis0 = _visible(s0, model_valid, K, opts.visibility_margin, opts.backend) if opts.visibility else model_valid
    grid, spacing = _model_index(model, model_valid, opts)
    frac0, _ = _inlier_stats(q, nrm, nok, obs_valid, s0, vis0, spacing, opts, R0, t0, grid)
    tz0 = t0[:, 2]
    z_obs = _masked_median(q[..., 2], obs_valid)
    shift = _depth_shift(s0, vis0, z_obs, opts)
    tz_h = [tz0 + shift + o for o in opts.tz_offsets]
    if opts.include_initial_tz and (opts.depth_correction or 0.0 not in opts.tz_offsets):
        tz_h.append(tz0)
    tz_all = torch.stack(tz_h, 1).clamp_min(opts.min_depth)             # [I, Hn]
    starts = [t0[:, None, :] * (tz_all / tz0[:, None])[..., None]]      # [I, Hn, 3]
    if opts.center_hypothesis:
        starts.append(_centred_translation(q, obs_valid, s0, vis0, t0, K, z_obs, shift)[:, None, :])
    t_start = torch.cat(starts, 1)
    data = (q, nrm, nok, obs_valid, model, model_valid)
    run = _HypothesisRunner(data, spacing, nearest, K, sym, opts, grid)
    R_best, t_best, conv_best, iters_best, frac_best, score_best = run(R0[:, None].expand(I, t_start.shape[1], 3, 3),
                                                                       t_start)
    # The local result stands unless the search's best converged pose fits clearly better. A rank is at most 1,
    # so the search cannot beat a local result ranked >= 1 - search_margin: those skip it.
    n = torch.nonzero(score_best < 1.0 - opts.search_margin).flatten() if opts.rotation_search > 0 else None
    if n is not None and n.numel():
        R_s, t_s = _rotation_search([work[j] for j in n.tolist()], nearest, K, R0[n], t0[n], z_obs[n], sym[n], opts)
        sub = _HypothesisRunner(tuple(x[n] for x in data), spacing[n], nearest, K, sym[n], opts,
                                None if grid is None else grid.select(n))
        R_g, t_g, conv_g, iters_g, frac_g, score_g = sub(R_s, t_s)
        better = (score_g > score_best[n] + opts.search_margin) & (conv_g | ~conv_best[n])
        R_best[n] = torch.where(better[:, None, None], R_g, R_best[n])
        t_best[n] = torch.where(better[:, None], t_g, t_best[n])
        conv_best[n] = torch.where(better, conv_g, conv_best[n])
        iters_best[n] = torch.where(better, iters_g, iters_best[n])
        frac_best[n] = torch.where(better, frac_g, frac_best[n])
    dtrans = (t_best - t0).norm(dim=-1)
    drot = torch.rad2deg(_rotation_angle(R_best @ R0.transpose(-1, -2)))
    if opts.rotation_search > 0:
        drot = torch.zeros_like(drot)  # with the search on, the rotation may move anywhere

    data = [x.cpu().tolist() for x in (frac_best, conv_best, iters_best, dtrans, drot, frac0)]
    for j, i in enumerate(idx):
        f, c, it, dtr, drt, f0 = (col[j] for col in data)
        R_init, t_init = _initial_output(Rs[i], ts[i])
        reason = ""
        if not c:
            reason = f"did not converge in {opts.max_iterations} iterations"
        elif f < opts.min_inlier_fraction:
            reason = f"inlier fraction {f:.3f} < {opts.min_inlier_fraction}"
        elif f < f0:
            reason = f"refinement lowered the inlier fraction: {f:.3f} < {f0:.3f} at the initial pose"
        elif dtr > opts.max_translation_change:
            reason = f"translation moved {dtr:.3f} m > {opts.max_translation_change} m"
        elif drt > opts.max_rotation_change_deg:
            reason = f"rotation moved {drt:.1f} deg > {opts.max_rotation_change_deg} deg"
        if reason:
            results[i] = RefineResult(R_init, t_init, False, float(f0), reason, int(it), 0.0)
        else:
            results[i] = RefineResult(_output(R_best[j], Rs[i]), _output(t_best[j], ts[i]).reshape(3), True,
                                      float(f), "", int(it), 0.0)
