"""Options and result of the depth refinement."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ops.backend import check_backend

_METHODS = ("point_to_plane", "point_to_point")
_ROBUST = ("huber", "trimmed")
_NEIGHBOURS = ("grid", "brute")


@dataclass(frozen=True)
class RefineOptions:
    """Options of the depth refinement (lengths in metres, angles in degrees).

    method: "point_to_plane" (normals from the depth map) or "point_to_point".
    robust: "huber" (weights min(1, huber_delta/d)) or "trimmed" (keep the trim_fraction closest matches).
    max_iterations: ICP iterations per hypothesis at most.
    min_pixels: fewest valid depth pixels in the mask to attempt refinement.
    max_points: observed points used (evenly subsampled); max_model_points likewise for the model.
    min_depth, max_depth: depth readings outside [min_depth, max_depth] are treated as missing.
    depth_correction: correct Tz along the viewing ray from the masked depth before ICP.
    tz_offsets: offsets added to the corrected Tz, one hypothesis each.
    include_initial_tz: also start one hypothesis from the uncorrected Tz.
    prune_after: after this many iterations only the best hypothesis (by inlier fraction) of each instance
        goes on; None runs all hypotheses to the end. coarse_points: until then the hypotheses use only about
        this many of the observed points (every k-th; the one that goes on uses all); None uses all throughout.
    center_hypothesis: also start one hypothesis shifted sideways (at the corrected Tz) so that the projected
        visible model points are centred on the observed pixels.
    gate_start, gate_end, gate_decay, gate_factor: correspondence distance gate; it starts at gate_start and
        each iteration moves to max(gate·gate_decay, gate_factor·median match distance), never growing and
        never below gate_end.
    acceleration: lengthen steps (up to 4×) while successive steps point the same way.
    huber_delta: Huber threshold on the match distance. trim_fraction: kept fraction for "trimmed"
        (matches closer than inlier_distance are never trimmed).
    plane_point_weight: weight of the point-to-point rows in "point_to_plane" at gate_start; it falls in
        proportion to the gate. Points without a valid normal contribute only these rows.
    normal_radius: normals from differences of the pixels about this far (metres, at least one pixel)
        left/right and up/down; one-sided where a neighbour is missing or across a depth jump larger than
        normal_max_jump (which then also invalidates the normal if both sides are).
    visibility: restrict matches to model points visible at the current pose; visibility_margin: depth
        tolerance of that test.
    inlier_distance: surface distance of an inlier (see the module docstring); min_inlier_fraction: accept
        only above this.
    converge_translation, converge_rotation_deg: a change of the pose smaller than both in one iteration (once
        the gate stopped shrinking) ends the iterations for a hypothesis.
    damping: Levenberg-Marquardt damping relative to the diagonal of the normal equations.
    symmetric: the object is symmetric; rotation away from the initial pose is capped at
        symmetric_max_rotation_deg.
    max_translation_change, max_rotation_change_deg: decline results further than this from the initial pose
        (the rotation limit does not apply when rotation_search is on).
    rotation_search: number of start rotations spread evenly over all of SO(3) (super-Fibonacci samples,
        composed with the initial rotation) for a global search, for when the initial rotation may be far off;
        0 refines locally only. Each sample runs search_iterations ICP iterations on at most
        search_points observed and search_model_points model points, starting at the centred translation for
        that rotation; the search_keep best (by rank) run the full refinement, and its result replaces the
        local one only when it ranks higher by search_margin (instances whose local rank is already at least
        1 - search_margin skip the search). search_prune_after: after this many of the search_iterations only the
        search_survivors best starts of each instance (by rank) go on; None runs every start to the end.
    free_space_weight, free_space_margin: hypotheses are ranked by inlier fraction minus free_space_weight ×
        the fraction of visible model points that the camera sees through (the depth reading at their pixel
        lies more than free_space_margin behind them, and so do all readings within free_space_radius pixels,
        which forgives small misalignments at the outline). The inlier fraction alone cannot tell a pose whose
        model covers the observed points from one that also sticks out where the camera sees background.
    neighbours: how observed points find their nearest visible model point: "grid" (a lookup table of candidate
        points per cell of a grid in the object frame, built once per model and cached; see refine/neighbours.py)
        or "brute" (every model point, exact, the cost grows with observed × model points).
    nn_chunk_elements: bound on the elements of one distance matrix chunk in the brute-force search.
    device: torch device to compute on; None = the device of the first torch input, else CPU.
    backend: implementation of the visibility test and the grid's nearest-point lookup (posecnn_core.ops.backend):
        "auto" (the compiled operators posecnn::model_visibility / model_grid_nearest where the library has them
        for the device, else PyTorch), "torch", "cpp" or "cuda". Both give bit-identical results
        (cuda_ops/csrc/refine_common.h); the compiled ones are faster.
    """

    method: str = "point_to_plane"
    robust: str = "huber"
    max_iterations: int = 60
    min_pixels: int = 50
    max_points: int = 1000
    max_model_points: int = 3000
    min_depth: float = 0.05
    max_depth: float = 10.0
    depth_correction: bool = True
    tz_offsets: tuple[float, ...] = (0.0, -0.02, 0.02)
    include_initial_tz: bool = True
    center_hypothesis: bool = True
    prune_after: int | None = 10
    coarse_points: int | None = None
    gate_start: float = 0.08
    gate_end: float = 0.01
    gate_decay: float = 0.8
    gate_factor: float = 3.0
    acceleration: bool = True
    huber_delta: float = 0.005
    trim_fraction: float = 0.8
    plane_point_weight: float = 0.1
    normal_max_jump: float = 0.02
    normal_radius: float = 0.0035
    visibility: bool = True
    visibility_margin: float = 0.01
    inlier_distance: float = 0.01
    min_inlier_fraction: float = 0.3
    converge_translation: float = 5e-4
    converge_rotation_deg: float = 0.25
    damping: float = 1e-3
    symmetric: bool = False
    symmetric_max_rotation_deg: float = 20.0
    max_translation_change: float = 0.15
    max_rotation_change_deg: float = 60.0
    rotation_search: int = 72
    search_iterations: int = 12
    search_points: int = 200
    search_model_points: int = 500
    search_keep: int = 2
    search_prune_after: int | None = 4
    search_survivors: int = 12
    search_margin: float = 0.05
    free_space_weight: float = 1.0
    free_space_margin: float = 0.02
    free_space_radius: int = 3
    neighbours: str = "grid"
    nn_chunk_elements: int = 1 << 23
    device: str | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        def is_int(value: Any) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        check_backend(self.backend)
        if self.neighbours not in _NEIGHBOURS:
            raise ValueError(f"neighbours must be one of {_NEIGHBOURS}, got {self.neighbours!r}")
        if self.robust not in _ROBUST:
            raise ValueError(f"robust must be one of {_ROBUST}, got {self.robust!r}")
        for name in ("max_iterations", "min_pixels", "max_points", "max_model_points", "nn_chunk_elements",
                     "search_iterations", "search_points", "search_model_points", "search_keep",
                     "search_survivors"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("min_depth", "max_depth", "gate_start", "gate_end", "huber_delta", "inlier_distance",
                     "visibility_margin", "normal_max_jump", "normal_radius", "converge_translation",
                     "converge_rotation_deg", "max_translation_change", "max_rotation_change_deg",
                     "symmetric_max_rotation_deg", "gate_factor", "free_space_margin"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.max_depth <= self.min_depth:
            raise ValueError(f"max_depth ({self.max_depth}) must exceed min_depth ({self.min_depth})")
        if self.gate_end > self.gate_start:
            raise ValueError(f"gate_end ({self.gate_end}) must not exceed gate_start ({self.gate_start})")
        if not 0 < self.gate_decay <= 1:
            raise ValueError(f"gate_decay must be in (0, 1], got {self.gate_decay!r}")
        if not 0 < self.trim_fraction <= 1:
            raise ValueError(f"trim_fraction must be in (0, 1], got {self.trim_fraction!r}")
        if not 0 <= self.min_inlier_fraction <= 1:
            raise ValueError(f"min_inlier_fraction must be in [0, 1], got {self.min_inlier_fraction!r}")
        if not self.plane_point_weight >= 0 or not self.damping >= 0:
            raise ValueError("plane_point_weight and damping must be >= 0")
        if not is_int(self.rotation_search) or self.rotation_search < 0:
            raise ValueError(f"rotation_search must be an integer >= 0, got {self.rotation_search!r}")
        if not (isinstance(self.search_margin, (int, float)) and 0 <= self.search_margin <= 1):
            raise ValueError(f"search_margin must be in [0, 1], got {self.search_margin!r}")
        if not is_int(self.free_space_radius) or not 0 <= self.free_space_radius <= 32:
            raise ValueError(f"free_space_radius must be an integer in [0, 32], got {self.free_space_radius!r}")
        if not (isinstance(self.free_space_weight, (int, float)) and 0 <= self.free_space_weight < math.inf):
            raise ValueError(f"free_space_weight must be a number >= 0, got {self.free_space_weight!r}")
        if self.prune_after is not None and (isinstance(self.prune_after, bool) or self.prune_after < 1):
            raise ValueError(f"prune_after must be a positive integer or None, got {self.prune_after!r}")
        if self.coarse_points is not None and (not is_int(self.coarse_points) or self.coarse_points < 1):
            raise ValueError(f"coarse_points must be a positive integer or None, got {self.coarse_points!r}")
        if self.search_prune_after is not None and (isinstance(self.search_prune_after, bool)
                                                    or self.search_prune_after < 1):
            raise ValueError(f"search_prune_after must be a positive integer or None, got {self.search_prune_after!r}")
        offsets = tuple(float(o) for o in self.tz_offsets)
        if not all(math.isfinite(o) for o in offsets):
            raise ValueError(f"tz_offsets must be finite, got {self.tz_offsets!r}")
        if not offsets and not self.include_initial_tz:
            raise ValueError("tz_offsets is empty and include_initial_tz is False: no hypothesis to refine")
        object.__setattr__(self, "tz_offsets", offsets)


@dataclass
class RefineResult:
    """Outcome of refining one instance.

    R, t: refined pose (the initial one when declined), numpy arrays or torch tensors like the input R.
    success: whether the refinement was accepted. inlier_fraction: fraction of observed points within
    inlier_distance of the visible model at the returned pose (nan when no depth was usable).
    reason: why it declined ("" on success). iterations: ICP iterations of the chosen hypothesis.
    time_ms: wall time of the call divided by the number of instances in it.
    """

    R: Any
    t: Any
    success: bool
    inlier_fraction: float
    reason: str
    iterations: int
    time_ms: float
