"""`posecnn-infer`: run the PoseCNN estimator on a folder of images, like PoseCNN-PyTorch's image demo.

    posecnn-infer --images DIR|GLOB|FILE (--camera camera_info.yaml | --fx F --fy F --cx C --cy C) --out OUT
                  [--checkpoint C --objects O] [--depth DIR] [--depth-scale 0.001] [--rectify] [--overwrite]
                  [--track [--fps F]]

For each image, OUT/<stem>.json (class, score, R, t, quaternion w-x-y-z, box, ...) and OUT/<stem>_overlay.png
(model points, axes, boxes: posecnn_core.overlay, the drawing the ROS node publishes). Without --checkpoint and
--objects the bundled demo checkpoint and object set are used. The camera is a ROS camera calibration YAML
(camera_calibration's / camera_info_manager's format) or fx, fy, cx, cy. With --rectify, images (and depth, nearest
neighbour) are undistorted with the calibration's D, R, P and estimated with P's intrinsics; without it a
calibration with distortion gets one warning. A folder's images are its .png/.jpg/.jpeg/.bmp/.tif/.tiff/.webp files
except depth images (stem ending in "depth"); --depth DIR holds, for image S, S or S with "color" replaced by
"depth", as a 16-bit PNG/TIFF (× --depth-scale metres) or a .npy of float metres.

With --track the images are taken as one sequence in name order (an image sequence from a camera, --fps frames
per second): objects are tracked over the frames (posecnn_core.tracking, defaults of TrackerConfig): each
object's "track_id" stays with it from frame to frame, its pose is filtered, and only confirmed tracks are
written; with --depth, confirmed tracks are refined from their predicted pose by local ICP.

Problems with the arguments, files or model stop it before any work with one line on stderr and exit code 2; an
image that cannot be read or estimated is reported on one line, the others are still done, and the exit code is 2.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from posecnn_core.camera_model import CameraModel, Rectifier, load_camera_yaml

EXIT_ERROR = 2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEPTH_SUFFIXES = (".png", ".tif", ".tiff", ".npy")


class CliError(Exception):
    """A problem that stops the run: printed as one line, exit code 2."""


@dataclass
class Job:
    image: Path
    depth: Path | None
    json_out: Path
    overlay_out: Path


def find_images(spec: str) -> list[Path]:
    """The images a DIR, GLOB or FILE argument names, sorted."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                 and not p.stem.lower().endswith("depth")]
    elif path.is_file():
        found = [path]
    elif glob.has_magic(spec):
        found = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()]
    else:
        raise CliError(f"--images {spec}: no such file, folder or pattern")
    if not found:
        raise CliError(f"--images {spec}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return sorted(found)


def find_depth(image: Path, depth_dir: Path) -> Path:
    """The depth file of `image` in `depth_dir` (same stem, or "color" -> "depth" in the stem)."""
    stems = [image.stem] + ([image.stem.replace("color", "depth")] if "color" in image.stem else [])
    for stem in stems:
        for suffix in DEPTH_SUFFIXES:
            candidate = depth_dir / f"{stem}{suffix}"
            if candidate.is_file() and candidate != image:
                return candidate
    raise CliError(f"no depth image for {image.name} in {depth_dir} (tried {', '.join(s + '.*' for s in stems)})")


def plan_jobs(images: list[Path], depth_dir: Path | None, out: Path, overwrite: bool) -> list[Job]:
    """Pair images with depth and output names; refuses duplicate stems and existing results (unless overwrite)."""
    jobs, seen = [], {}
    for image in images:
        if image.stem in seen:
            raise CliError(f"two images are named {image.stem}: {seen[image.stem]} and {image}; their results would "
                           f"overwrite each other")
        seen[image.stem] = image
        depth = find_depth(image, depth_dir) if depth_dir is not None else None
        jobs.append(Job(image, depth, out / f"{image.stem}.json", out / f"{image.stem}_overlay.png"))
    existing = [j.json_out for j in jobs if j.json_out.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CliError(f"{existing[0]} exists{more}; pass --overwrite to replace results")
    return jobs


def camera_from_args(args: argparse.Namespace) -> CameraModel:
    """The camera from --camera YAML, or from --fx --fy --cx --cy."""
    given = [name for name in ("fx", "fy", "cx", "cy") if getattr(args, name) is not None]
    if args.camera is not None:
        if given:
            raise CliError("give either --camera or --fx/--fy/--cx/--cy, not both")
        try:
            return load_camera_yaml(args.camera)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if len(given) != 4:
        missing = [name for name in ("fx", "fy", "cx", "cy") if name not in given]
        raise CliError(f"the camera is needed: --camera camera_info.yaml, or all of --fx --fy --cx --cy "
                       f"(missing --{', --'.join(missing)})")
    values = [getattr(args, name) for name in ("fx", "fy", "cx", "cy")]
    if not all(math.isfinite(v) for v in values) or args.fx <= 0 or args.fy <= 0:
        raise CliError(f"--fx/--fy must be positive and all four finite, got {values}")
    K = np.array([[args.fx, 0.0, args.cx], [0.0, args.fy, args.cy], [0.0, 0.0, 1.0]])
    return CameraModel(width=0, height=0, K=K)


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot read it as an image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def read_depth(path: Path, depth_scale: float) -> np.ndarray:
    """float32 metres [H, W], 0 = no reading."""
    import cv2

    if path.suffix == ".npy":
        depth = np.load(path, allow_pickle=False).astype(np.float32)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.ndim != 2:
            raise ValueError(f"{path}: not a single-channel depth image")
        depth = raw.astype(np.float32) * np.float32(depth_scale) if raw.dtype.kind in "ui" else raw.astype(np.float32)
    if depth.ndim != 2:
        raise ValueError(f"{path}: depth must be [H, W], got shape {depth.shape}")
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def result_json(job: Job, result: Any, K: np.ndarray, size: tuple[int, int], rectified: bool) -> dict:
    """The JSON document of one image's estimates."""
    objects = []
    for obj in result.objects:
        objects.append({
            "class": str(obj.class_name), "class_id": int(obj.class_id), "instance": int(obj.instance),
            "score": float(obj.score), "R": np.asarray(obj.R, float).tolist(), "t": np.asarray(obj.t, float).tolist(),
            "quaternion": np.asarray(obj.quaternion, float).tolist(), "box": np.asarray(obj.roi, float).tolist(),
            "center": np.asarray(obj.center, float).tolist(), "votes": int(obj.votes),
            "refined": bool(getattr(obj, "refined", False)), "refine_status": str(getattr(obj, "refine_status", "")),
            "track_id": getattr(obj, "track_id", None),
        })
    return {"image": str(job.image), "depth": str(job.depth) if job.depth else None, "width": size[0],
            "height": size[1], "K": np.asarray(K, float).tolist(), "rectified": rectified,
            "quaternion_order": "w, x, y, z", "objects": objects,
            "timings_ms": {k: float(v) for k, v in result.timings_ms.items()}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="posecnn-infer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder, glob pattern (quote it) or single image")
    parser.add_argument("--out", required=True, type=Path, help="folder for <stem>.json and <stem>_overlay.png")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled demo model)")
    parser.add_argument("--objects", default=None, help="object set YAML (default: the bundled demo object set)")
    parser.add_argument("--camera", type=Path, default=None, help="ROS camera calibration YAML (camera_info.yaml)")
    for name in ("fx", "fy", "cx", "cy"):
        parser.add_argument(f"--{name}", type=float, default=None, help=f"intrinsics {name} (pixels)")
    parser.add_argument("--depth", type=Path, default=None, help="folder of depth images matching the images")
    parser.add_argument("--depth-scale", type=float, default=0.001, help="metres per unit of integer depth images")
    parser.add_argument("--rectify", action="store_true", help="undistort with the calibration's D, R, P")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="detection score threshold (default: the estimator's, PoseCNN-PyTorch demo 0.1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--track", action="store_true",
                        help="the images are a sequence (name order): track objects over them (track ids, filtered "
                             "poses)")
    parser.add_argument("--fps", type=float, default=10.0, help="with --track: frames per second of the sequence")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from posecnn_core.estimator import EstimatorConfig, PoseEstimator
    from posecnn_core.overlay import draw_overlay
    from posecnn_core.resources import DEMO_CHECKPOINT, DEMO_OBJECTS, resource_path

    camera = camera_from_args(args)
    if args.depth is not None and not args.depth.is_dir():
        raise CliError(f"--depth {args.depth}: not a folder")
    if not (args.depth_scale > 0 and math.isfinite(args.depth_scale)):
        raise CliError(f"--depth-scale must be positive, got {args.depth_scale}")
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise CliError(f"--fps must be positive, got {args.fps}")
    rectifier = None
    if args.rectify:
        if camera.width <= 0 or camera.height <= 0:
            raise CliError("--rectify needs a calibration YAML with image_width and image_height")
        try:
            rectifier = Rectifier(camera)
        except ValueError as exc:
            raise CliError(f"cannot rectify: {exc}") from None
    elif camera.is_distorted:
        print(f"posecnn-infer: warning: the calibration has lens distortion ({camera.distortion_model} "
              f"D={camera.D.tolist()}) but --rectify is not set: results assume rectified images", file=sys.stderr)
    jobs = plan_jobs(find_images(args.images), args.depth, args.out, args.overwrite)

    files = []
    for value, bundled, what in ((args.checkpoint, DEMO_CHECKPOINT, "checkpoint"),
                                 (args.objects, DEMO_OBJECTS, "object set")):
        if value is None:
            files.append(resource_path(bundled))
        elif not Path(value).expanduser().is_file():
            raise CliError(f"{what} {value} does not exist")
        else:
            files.append(Path(value).expanduser())
    config = EstimatorConfig()
    if args.score_threshold is not None:
        config = EstimatorConfig(score_threshold=args.score_threshold)
    try:
        estimator = PoseEstimator(str(files[0]), str(files[1]), device=args.device, config=config)
    except (ValueError, RuntimeError) as exc:
        raise CliError(str(exc)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    objset = estimator.object_set
    points = [np.asarray(p, np.float64).reshape(-1, 3) for p in objset.points]
    extents = np.asarray(objset.extents, np.float64)

    import cv2

    tracker = None
    if args.track:
        from posecnn_core.tracking import Tracker

        tracker = Tracker(object_set=objset)
    failures = 0
    detections = 0
    bar = tqdm(jobs, unit="image", desc="posecnn-infer", file=sys.stderr)
    for index, job in enumerate(bar):
        try:
            rgb = read_rgb(job.image)
            h, w = rgb.shape[:2]
            if camera.width and (w, h) != (camera.width, camera.height):
                raise ValueError(f"{job.image}: image is {w}x{h} but the calibration is "
                                 f"{camera.width}x{camera.height}")
            depth = read_depth(job.depth, args.depth_scale) if job.depth is not None else None
            if depth is not None and depth.shape != (h, w):
                raise ValueError(f"{job.depth}: depth is {depth.shape[1]}x{depth.shape[0]} but the image is {w}x{h}")
            K = camera.K
            if rectifier is not None:
                rgb = rectifier.rectify_image(rgb)
                depth = rectifier.rectify_depth(depth) if depth is not None else None
                K = rectifier.K
            if tracker is not None:
                result = estimator.estimate(rgb, K, depth, tracker=tracker, stamp=index / args.fps)
            else:
                result = estimator.estimate(rgb, K, depth)
        except ValueError as exc:
            failures += 1
            bar.write(f"posecnn-infer: error: {exc}", file=sys.stderr)
            continue
        detections += len(result.objects)
        doc = result_json(job, result, K, (w, h), rectifier is not None)
        job.json_out.write_text(json.dumps(doc, indent=1) + "\n")
        drawn = draw_overlay(rgb, result.objects, K, points, extents)
        cv2.imwrite(str(job.overlay_out), np.ascontiguousarray(drawn[:, :, ::-1]))
    bar.close()
    done = len(jobs) - failures
    print(f"posecnn-infer: {done} of {len(jobs)} image(s) done, {detections} object(s); results in {args.out}",
          file=sys.stderr)
    if failures:
        print(f"posecnn-infer: error: {failures} image(s) failed (see above)", file=sys.stderr)
        return EXIT_ERROR
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (CliError, FileNotFoundError) as exc:
        print(f"posecnn-infer: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
