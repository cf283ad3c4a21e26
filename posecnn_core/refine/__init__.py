"""Depth-based 6D pose refinement (robust ICP), batched over instances, CPU or GPU, no renderer.

PoseCNN's depth refinement lifts YCB-Video ADD AUC from 53.7 to 79.3 and ADD-S from 75.9 to 93.0. The
reference PyTorch implementation refines with an SDF against an EGL-rendered model and is broken; this module
instead aligns the model points with the depth pixels under the instance's label mask directly, in torch on
whatever device the inputs live on.

Pipeline per instance (all instances × start hypotheses run as one padded torch batch):

1. Observed points: masked pixels with a valid depth reading are back-projected with K (evenly subsampled to
   at most `max_points`). Fewer than `min_pixels` → decline. Normals come from the depth map (cross product
   of differences to the neighbours about `normal_radius` away; one-sided at holes and depth jumps).
2. Depth correction along the viewing ray: the median depth of the observed points minus the median depth of
   the model's *visible* points at the initial pose gives ΔZ; t is scaled by (Tz + ΔZ)/Tz, which moves the
   object along the ray through its origin and keeps its projected centre.
3. Start hypotheses: the corrected Tz plus each of `tz_offsets`, the uncorrected Tz, and one shifted sideways
   so that the projected visible model points are centred on the observed pixels. After `prune_after`
   iterations only the best-ranked hypothesis (step 5) goes on (saves most of the work).
4. Robust ICP. Correspondences go **observed → model**: each observed point is matched to its nearest
   neighbour among the model points transformed by the current pose *and visible from the camera*.
   Why this direction: the depth map sees only the front surface and, through occlusion and the mask, often
   only part of it, so the observed points are a subset of the visible model surface; every observed point
   has a true partner, whereas many model points have none. Why the visibility test: when the pose is too
   close to the camera, the observed front surface can coincide with the model's back surface and plain NN
   matching would lock onto it. Visibility is a point-splatting z-buffer: the projected model points are
   binned into a coarse pixel grid (cells sized to hold a few camera-facing points), and a point is visible
   if its depth is within `visibility_margin` plus one cell's footprint of its cell's nearest point.
   Each Gauss-Newton step (linearised about the centroid of the matched observed points, damped 6×6 solve)
   minimises point-to-plane residuals along the observed normals plus a point-to-point term whose weight
   fades with the gate (`method="point_to_plane"`, the default and the accurate one), or point-to-point
   residuals only (`method="point_to_point"`, which snaps to the discrete model points and so is only as
   accurate as their spacing). Weights: a distance gate that shrinks from `gate_start` (by at most
   `gate_decay` per iteration) towards `gate_factor` × the median match distance, never below `gate_end`,
   times Huber weights (`robust="huber"`) or a trim keeping the `trim_fraction` closest matches
   (`robust="trimmed"`). Steps that keep pointing the same way are lengthened (`acceleration`).
5. Selection: the converged hypothesis with the best rank wins: its inlier fraction minus `free_space_weight`
   × its free-space violations. An observed point is an inlier when its point-to-plane distance (point
   distance without a normal) is below `inlier_distance` and its matched model point lies within
   `inlier_distance` plus the model's point spacing. A free-space violation is a visible model point that the
   camera sees through (every depth reading within `free_space_radius` pixels of its projection lies more
   than `free_space_margin` behind it): the inlier fraction only asks that the observed points be explained,
   not that the model stay inside what the camera saw.
   Rotation search (`rotation_search` > 0, the default; for initial rotations that may be far off, as from
   an under-trained network): `rotation_search` start rotations spread evenly over SO(3) (composed with the
   initial one) each run `search_iterations` ICP iterations on subsampled points from the centred
   translation for that rotation; the `search_keep` best run steps 3-5 like the initial pose's hypotheses,
   and the result replaces the local one only if its rank is higher by `search_margin` (an instance whose
   local rank is already at least 1 − `search_margin` skips the search: ranks never exceed 1, so it could not
   win). An object whose *shape* has a symmetry that its texture breaks (a printed box turned by 180 degrees)
   can be turned to the copy that fits the depth slightly better; depth alone cannot tell them apart.
6. Acceptance: the result is declined (initial pose returned, `success=False`, `reason` says why) when there
   is too little depth, no hypothesis converged, the inlier fraction is below `min_inlier_fraction` or below
   that of the initial pose, or the pose moved more than `max_translation_change` / `max_rotation_change_deg`
   (the rotation limit only without the rotation search).

Symmetric objects (`symmetric=True`): NN correspondences never fight a symmetry (any symmetric copy of the
surface is equally near), so ICP converges in the ADD-S sense. What a symmetry does is leave rotation
directions unconstrained, along which the estimate could drift without changing the fit; the damped solve
hardly moves along such null directions, and for symmetric objects the total rotation away from the initial
estimate is capped at `symmetric_max_rotation_deg` (translation stays free), so the result stays in the
ADD-S basin of the initial estimate instead of wandering around the symmetry.

Conventions (docs/conventions.md): X_cam = R·X_obj + t in metres, u = fx·X/Z + px, v = fy·Y/Z + py, pixel
(row r, column c) has its centre at (u, v) = (c, r). Depth images are metres with 0 = no reading. Computation
is float32 (6×6 solves in float64). Nearest neighbours (`neighbours`): "grid" (default) looks each observed point
up in a table of candidate model points per cell of a grid in the object frame, built once per model point set and
cached (refine/neighbours.py; a handful of distances per point instead of one per model point); "brute" is the
exact search, in chunks of at most `nn_chunk_elements` distances. Speed levers that keep the accuracy: the rotation
search drops all but the `search_survivors` best starts of each instance after `search_prune_after` iterations;
`coarse_points` (off) runs the start hypotheses on fewer observed points until pruning.

Package layout: options (RefineOptions, RefineResult), pipeline (refine_pose, refine_poses: input checks, batching,
acceptance), observed (depth pixels to points and normals), visibility (z-buffer visibility, free-space checks),
icp (nearest neighbours, inlier statistics, the ICP loop), hypotheses (start hypotheses and their ranking),
rotation_search (the search over SO(3)), neighbours (the lookup grid), so3 and tensors (small helpers).
"""
from .options import RefineOptions, RefineResult
from .pipeline import refine_pose, refine_poses

__all__ = ["RefineOptions", "RefineResult", "refine_pose", "refine_poses"]
