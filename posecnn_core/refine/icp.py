"""Robust ICP on padded batches (B elements, M observed points, N model points): nearest neighbours, inlier
statistics, one Gauss-Newton step and the iteration loop."""
from __future__ import annotations

import math

import torch

from ..ops.backend import resolve_backend
from .neighbours import ModelGrid
from .options import RefineOptions
from .so3 import _cap_rotation, _rotation_angle, _skew, _so3_exp
from .tensors import _masked_median, _transform
from .visibility import _visible


def _nearest(q: torch.Tensor, s: torch.Tensor, s_ok: torch.Tensor, chunk_elements: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Index [B, M] of the nearest allowed point of s [B, N, 3] for each q [B, M, 3], and its distance
    (inf where no point is allowed). Brute force (like torch.cdist), chunked over M to bound memory."""
    B, M, _ = q.shape
    N = s.shape[1]
    centre = q.mean(1, keepdim=True)  # centring keeps the float32 expansion below accurate
    qc, sc = q - centre, s - centre
    sc = torch.where(s_ok[..., None], sc, torch.full_like(sc, 1e4))  # excluded points: far away
    s_sq = (sc * sc).sum(-1)[:, None, :]
    chunk = max(1, chunk_elements // max(1, B * N))
    idx = torch.empty(B, M, dtype=torch.long, device=q.device)
    for start in range(0, M, chunk):
        # argmin_j |q_i − s_j|² = argmin_j (|s_j|² − 2 q_i·s_j)
        scores = torch.baddbmm(s_sq, qc[:, start:start + chunk], sc.transpose(1, 2), alpha=-2.0)
        idx[:, start:start + chunk] = scores.argmin(-1)
    matched = torch.gather(s, 1, idx[..., None].expand(B, M, 3))
    d = (matched - q).norm(dim=-1)
    d = torch.where(s_ok.any(1, keepdim=True), d, torch.full_like(d, float("inf")))
    return idx, d


def _spacing(model: torch.Tensor, model_valid: torch.Tensor, chunk_elements: int) -> torch.Tensor:
    """Median distance [B] from a model point to its nearest other model point (the sampling density)."""
    B, N, _ = model.shape
    far = torch.where(model_valid[..., None], model, torch.full_like(model, 1e4))
    chunk = max(1, chunk_elements // max(1, B * N))
    nn = torch.empty(B, N, dtype=model.dtype, device=model.device)
    for start in range(0, N, chunk):
        nn[:, start:start + chunk] = torch.cdist(far[:, start:start + chunk], far).topk(2, largest=False).values[..., 1]
    return _masked_median(nn, model_valid).clamp_min(1e-5)


def _model_index(model: torch.Tensor, model_valid: torch.Tensor, options: RefineOptions):
    """(lookup grid or None, point spacing [B]) of padded model point sets, as options.neighbours asks."""
    if options.neighbours == "grid":
        return ModelGrid.build(model, model_valid, options.backend)
    return None, _spacing(model, model_valid, options.nn_chunk_elements)


def _surface_distance(q, normals, normal_ok, m, d) -> torch.Tensor:
    """Distance of observed points to the model surface near their match m: the point-to-plane distance where
    the observed normal is known, else the point distance d."""
    plane = ((m - q) * normals).sum(-1).abs()
    return torch.where(normal_ok, plane, d)


def _match(q, s, vis, R, t, grid, options) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest visible model point of each observed point: through the lookup grid (neighbours.ModelGrid) when
    there is one, else brute force."""
    if grid is not None:
        return grid.nearest(q, s, vis, R, t)
    return _nearest(q, s, vis, options.nn_chunk_elements)


def _inlier_stats(q, normals, normal_ok, obs_valid, s, vis, spacing, options, R=None, t=None, grid=None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inlier fraction [B] and mean inlier surface distance [B]. An observed point is an inlier when its
    surface distance is below inlier_distance and its matched model point is within inlier_distance plus the
    model's point spacing (a surface sampled at spacing h is everywhere within about h of a sample).
    s is the model at pose (R, t); the pose is needed only with a lookup grid."""
    B, M, _ = q.shape
    idx, d = _match(q, s, vis, R, t, grid, options)
    m = torch.gather(s, 1, idx[..., None].expand(B, M, 3))
    e = _surface_distance(q, normals, normal_ok, m, d)
    inl = obs_valid & (e < options.inlier_distance) & (d < options.inlier_distance + spacing[:, None])
    frac = inl.sum(1).to(q.dtype) / obs_valid.sum(1).clamp_min(1).to(q.dtype)
    mean_e = torch.where(inl, e, torch.zeros_like(e)).sum(1) / inl.sum(1).clamp_min(1).to(q.dtype)
    return frac, mean_e


def _normal_equations(q, m, normals, normal_ok, w, c, point_weight, plane: bool, backend: str = "auto"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal equations (H [B, 6, 6], g [B, 6], float64) of one robust Gauss-Newton step in (ω, δ) for observed
    points q [B, M, 3] matched to model points m [B, M, 3], weights w [B, M], about centroids c [B, 3]:
    point-to-point rows weighted w·point_weight [B], and with `plane` point-to-plane rows (weight w) for the points
    with a normal. backend (ops.backend): the compiled operator posecnn::icp_normal_equations (float32 inputs;
    sums in point order, equal to this reference to ~1e-12 relative) or the PyTorch reference."""
    if q.dtype == torch.float32 and resolve_backend(backend, q.device, "icp_normal_equations") == "ext":
        return torch.ops.posecnn.icp_normal_equations(q, m, normals, normal_ok, w.to(q.dtype), c,
                                                      point_weight.to(q.dtype), plane)
    return _normal_equations_torch(q, m, normals, normal_ok, w, c, point_weight, plane)


def _normal_equations_torch(q, m, normals, normal_ok, w, c, point_weight, plane: bool
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The PyTorch reference of _normal_equations."""
    B = q.shape[0]
    dev, dt = q.device, q.dtype
    mc = (m - c[:, None, :]).double()
    r = (m - q).double()
    # Point-to-point rows r + [−[mc]×, I]·(ω, δ), summed in closed form.
    w_pp = (w * point_weight[:, None]).double()
    sw = w_pp.sum(1)
    wmc = w_pp[..., None] * mc
    swm = wmc.sum(1)
    mm = torch.bmm(wmc.transpose(1, 2), mc)  # Σ w·mc·mcᵀ
    eye3 = torch.eye(3, dtype=torch.float64, device=dev)
    Hm = torch.zeros(B, 6, 6, dtype=torch.float64, device=dev)
    Hm[:, :3, :3] = mm.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None] * eye3 - mm
    Hm[:, :3, 3:] = _skew(swm)
    Hm[:, 3:, :3] = -_skew(swm)
    Hm[:, 3:, 3:] = sw[:, None, None] * eye3
    g = torch.cat([torch.cross(wmc, r, dim=-1).sum(1), (w_pp[..., None] * r).sum(1)], -1)
    if plane:
        # Point-to-plane rows: n·r + (mc × n)·ω + n·δ.
        n64 = normals.double()
        J_pl = torch.cat([torch.cross(mc, n64, dim=-1), n64], -1)  # [B, M, 6]
        Jw = J_pl * (w * normal_ok.to(dt)).double()[..., None]
        Hm = Hm + Jw.transpose(1, 2) @ J_pl
        g = g + (Jw * (n64 * r).sum(-1, keepdim=True)).sum(1)
    return Hm, g


def _icp_step(q, normals, normal_ok, obs_valid, model, model_valid, K, R, t, R0, cap, gate, prev_step, boost,
              options: RefineOptions, grid=None):
    """One robust Gauss-Newton ICP step for B padded elements. Returns the new (R, t, gate, prev_step, boost)
    and per element whether the gate has settled, whether there were enough matches and whether the step was
    below the convergence tolerances."""
    B, M, _ = q.shape
    dev, dt = q.device, q.dtype
    plane = options.method == "point_to_plane"
    s = _transform(model, R, t)
    vis = _visible(s, model_valid, K, options.visibility_margin, options.backend) if options.visibility else model_valid
    idx, d = _match(q, s, vis, R, t, grid, options)
    m = torch.gather(s, 1, idx[..., None].expand(B, M, 3))
    # Gate: shrink by at most gate_decay per iteration towards gate_factor × median match distance.
    med = _masked_median(d, obs_valid & (d < gate[:, None]))
    target = torch.nan_to_num(options.gate_factor * med, nan=options.gate_end)
    new_gate = torch.maximum(gate * options.gate_decay, target).clamp(options.gate_end).minimum(gate)
    settled = (new_gate >= gate * 0.999) | (new_gate <= options.gate_end)
    gate = new_gate
    w = (obs_valid & (d < gate[:, None])).to(dt)
    if options.robust == "huber":
        w = w * (options.huber_delta / d.clamp_min(1e-12)).clamp(max=1.0)
    else:
        kept = torch.nanquantile(torch.where(w > 0, d, torch.full_like(d, float("nan"))),
                                 options.trim_fraction, dim=1, keepdim=True)
        w = w * ((d <= kept) | (d < options.inlier_distance)).to(dt)  # never trim inliers
    enough = (w > 0).sum(1) >= 6
    # Linearise about the weighted centroid c of the observed points: m' = exp(ω)(m − c) + c + δ.
    c = (w[..., None] * q).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-12)
    # In point_to_plane the point-to-point rows fade with the gate: they help large moves, but their pull towards
    # the nearest (discrete) model point would bias the final pose by up to half the model point spacing.
    point_weight = options.plane_point_weight * gate / options.gate_start if plane else torch.ones_like(gate)
    Hm, g = _normal_equations(q, m, normals, normal_ok, w, c, point_weight, plane, options.backend)
    Hd = Hm + options.damping * torch.diag_embed(Hm.diagonal(dim1=-2, dim2=-1)) \
        + 1e-12 * torch.eye(6, dtype=torch.float64, device=dev)
    step = -torch.linalg.solve(Hd, g[..., None])[..., 0]
    step = torch.where(torch.isfinite(step).all(-1, keepdim=True), step, torch.zeros_like(step)).to(dt)
    if options.acceleration:
        # Successive steps pointing the same way (ICP creeping along a valley): lengthen them.
        cos = (step * prev_step).sum(-1) / (step.norm(dim=-1) * prev_step.norm(dim=-1)).clamp_min(1e-12)
        boost = torch.where(cos > 0.9, (boost * 1.5).clamp(max=4.0), torch.ones_like(boost))
        prev_step = step
        step = step * boost[:, None]
    omega, delta = step[:, :3], step[:, 3:]
    dR = _so3_exp(omega)
    R_new = _cap_rotation(dR @ R, R0, cap)
    t_new = (dR @ (t - c)[..., None])[..., 0] + c + delta
    # Converged when the pose actually applied barely moved (for a symmetric object pressing against its
    # rotation cap, the raw step may stay large while the capped pose stands still).
    small = ((t_new - t).norm(dim=-1) < options.converge_translation) & \
        (_rotation_angle(R_new @ R.transpose(-1, -2)) < math.radians(options.converge_rotation_deg))
    keep = ~enough
    R_new = torch.where(keep[:, None, None], R, R_new)
    t_new = torch.where(keep[:, None], t, t_new)
    return R_new, t_new, gate, prev_step, boost, settled, enough, small


def _icp(q, normals, normal_ok, obs_valid, model, model_valid, K, R, t, R0, symmetric, gate, max_iterations,
         options, grid=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Robust ICP on B padded elements from (R, t) with distance gate [B]; R0 is the initial rotation (for the
    symmetric cap). Each iteration works only on the elements still running (converged ones and ones left
    without matches drop out). Returns R [B,3,3], t [B,3], converged [B], iterations [B] and the gate [B]."""
    B = q.shape[0]
    dev, dt = q.device, q.dtype
    R, t, gate = R.clone(), t.clone(), gate.clone()
    converged = torch.zeros(B, dtype=torch.bool, device=dev)
    stalled = torch.zeros(B, dtype=torch.bool, device=dev)
    iterations = torch.zeros(B, dtype=torch.long, device=dev)
    cap = torch.where(symmetric, math.radians(options.symmetric_max_rotation_deg), math.inf).to(dt)
    prev_step = torch.zeros(B, 6, dtype=dt, device=dev)
    boost = torch.ones(B, dtype=dt, device=dev)
    for _ in range(max_iterations):
        running = ~converged & ~stalled
        if bool(running.all()):  # every element still runs: no need to gather (and copy) the batch
            R, t, gate, prev_step, boost, settled, enough, small = _icp_step(
                q, normals, normal_ok, obs_valid, model, model_valid, K, R, t, R0, cap, gate, prev_step, boost,
                options, grid)
            iterations += enough.long()
            converged = enough & small & settled
            stalled = ~enough
            continue
        run = torch.nonzero(running).squeeze(1)
        if run.numel() == 0:
            break
        sub = [x[run] for x in (q, normals, normal_ok, obs_valid, model, model_valid)]
        R_r, t_r, g_r, p_r, b_r, settled, enough, small = _icp_step(
            *sub, K, R[run], t[run], R0[run], cap[run], gate[run], prev_step[run], boost[run], options,
            None if grid is None else grid.select(run))
        R[run], t[run], gate[run], prev_step[run], boost[run] = R_r, t_r, g_r, p_r, b_r
        iterations[run] += enough.long()
        converged[run] = enough & small & settled
        stalled[run] = ~enough
    return R, t, converged, iterations, gate
