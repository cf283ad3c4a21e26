"""Start hypotheses of an instance and their ranking: depth correction, centred start translations, and the runner
that refines hypotheses as one batch and keeps each instance's best."""
from __future__ import annotations

import torch

from ..geometry import project_uv
from .icp import _icp, _inlier_stats
from .options import RefineOptions
from .tensors import _masked_median, _repeat, _transform
from .visibility import _free_space_violation, _visible


def _centred_translation(q, obs_valid, s, vis, t, K, z_obs, shift) -> torch.Tensor:
    """Start translation [B, 3] for a pose whose model points are s [B, N, 3] (camera frame, translation t):
    moved along the viewing ray by the depth correction ``shift`` [B], then sideways at the observed median
    depth z_obs [B] so that the projected visible model points and the observed pixels have the same mean
    (pixel positions are unaffected by wrong depth readings)."""
    def mean_uv(p: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        uv = torch.stack(project_uv(p, K), -1)
        wv = valid.to(p.dtype)[..., None]
        return (torch.nan_to_num(uv) * wv).sum(1) / wv.sum(1).clamp_min(1)
    duv = mean_uv(q, obs_valid) - mean_uv(s, vis & (s[..., 2] > 1e-3))
    tz = t[:, 2]
    t_c = t * ((tz + shift) / tz)[:, None]
    lateral = torch.stack([duv[:, 0] / K[0, 0], duv[:, 1] / K[1, 1], torch.zeros_like(tz)], -1)
    return t_c + lateral * z_obs[:, None]


def _depth_shift(s, vis, z_obs, opts: RefineOptions) -> torch.Tensor:
    """Depth correction [B]: observed median depth minus that of the visible model points (0 when off)."""
    if not opts.depth_correction:
        return torch.zeros_like(z_obs)
    return torch.nan_to_num(z_obs - _masked_median(s[..., 2], vis), nan=0.0)


class _HypothesisRunner:
    """Runs start hypotheses [I, Hn] of I instances as one batch and picks each instance's best.

    Ranking: inlier fraction less free_space_weight × free-space violations (ties: the smaller mean distance).
    After prune_after iterations only each instance's best hypothesis goes on (convergence is not asked for
    then: a slower one may still be better); without pruning converged hypotheses are preferred.
    Rotations are capped (symmetric objects) relative to each hypothesis's own start rotation.
    """

    def __init__(self, data, spacing, nearest, K, sym, opts: RefineOptions, grid=None) -> None:
        self.data, self.spacing, self.nearest, self.K, self.sym, self.opts = data, spacing, nearest, K, sym, opts
        self.grid = grid  # neighbours.ModelGrid of the instances, or None (brute-force matching)

    def _grid(self, k: int):
        return None if self.grid is None else (self.grid if k == 1 else self.grid.repeat(k))

    def evaluate(self, R, t, expand=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inlier fraction, ranking score) [B] of poses R, t (per instance, or per hypothesis via expand)."""
        f = expand if expand is not None else (lambda x: x)
        q, nrm, nok, obs_valid, model, model_valid = (f(x) for x in self.data)
        opts = self.opts
        s = _transform(model, R, t)
        vis = _visible(s, model_valid, self.K, opts.visibility_margin, opts.backend) if opts.visibility else model_valid
        grid = self._grid(R.shape[0] // self.spacing.shape[0])
        frac, mean_d = _inlier_stats(q, nrm, nok, obs_valid, s, vis, f(self.spacing), opts, R, t, grid)
        through = _free_space_violation(s, vis, self.nearest, self.K, opts.free_space_margin)
        score = frac.double() - opts.free_space_weight * through.double() \
            - 1e-3 * (mean_d.double() / opts.inlier_distance)
        return frac, score

    def __call__(self, R_start: torch.Tensor, t_start: torch.Tensor):
        """-> (R [I, 3, 3], t [I, 3], converged [I], iterations [I], inlier fraction [I], score [I])."""
        opts, K, sym = self.opts, self.K, self.sym
        I, Hn = t_start.shape[:2]
        dev = t_start.device
        ar = torch.arange(I, device=dev)

        def rep(x: torch.Tensor) -> torch.Tensor:
            return _repeat(x, Hn)

        R_flat = R_start.reshape(I * Hn, 3, 3)
        gate0 = torch.full((I * Hn,), opts.gate_start, dtype=t_start.dtype, device=dev)
        first = opts.max_iterations if opts.prune_after is None else min(opts.prune_after, opts.max_iterations)
        # Coarse to fine: before pruning, the hypotheses use every stride-th observed point only.
        stride = 1
        if first < opts.max_iterations and opts.coarse_points is not None:
            stride = max(1, -(-self.data[0].shape[1] // opts.coarse_points))
        coarse = self if stride == 1 else _HypothesisRunner(
            tuple(x[:, ::stride] for x in self.data[:4]) + tuple(self.data[4:]), self.spacing, self.nearest, K, sym,
            opts, self.grid)
        R_b, t_b, conv, iters, gate = _icp(*(rep(x) for x in coarse.data), K, R_flat, t_start.reshape(I * Hn, 3),
                                           R_flat, rep(sym), gate0, first, opts, self._grid(Hn))
        frac, score = (x.view(I, Hn) for x in coarse.evaluate(R_b, t_b, rep))
        conv = conv.view(I, Hn)
        if first == opts.max_iterations:
            score = score + 10.0 * conv.double()
        best = score.argmax(1)
        sel = ar * Hn + best
        R_best, t_best, conv_best, iters_best = R_b[sel], t_b[sel], conv[ar, best], iters.view(I, Hn)[ar, best]
        frac_best, score_best = frac[ar, best], score[ar, best]
        if first < opts.max_iterations and (stride > 1 or not bool(conv_best.all())):
            R_best, t_best, conv_best, more, _ = _icp(*self.data, K, R_best, t_best, R_flat[sel], sym, gate[sel],
                                                      opts.max_iterations - first, opts, self.grid)
            iters_best = iters_best + more
            frac_best, score_best = self.evaluate(R_best, t_best)
        elif first == opts.max_iterations:
            score_best = score_best - 10.0 * conv_best.double()
        return R_best, t_best, conv_best, iters_best, frac_best, score_best
