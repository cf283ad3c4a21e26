"""``posecnn-eval`` (also ``python -m posecnn_core.evaluate``): ADD / ADD-S / AUC of a checkpoint on a split.

Either runs ``--checkpoint`` over ``--dataset``/``--split`` (writing the estimates to OUT/results.json) or reads
saved estimates with ``--results``; then prints the per-object table and writes per_object.csv, instances.csv,
report.md and accuracy.png to ``--out``. An ``--out`` that already holds a report is refused (``--overwrite``
replaces it), checked before any work like the rest of the arguments; an empty split is an error. Errors are one
line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ..files import path_kind

__all__ = ["build_parser", "main", "REPORT_FILES", "check_out_dir"]

# What a run writes into --out; any of them there means a report would be replaced.
REPORT_FILES = ("results.json", "report.md", "per_object.csv", "instances.csv", "accuracy.png", "without_refinement")


def check_out_dir(out: Path, overwrite: bool) -> None:
    """ValueError unless ``out`` can receive a report: a folder (or one that can be created) holding no report,
    unless ``overwrite``."""
    kind = path_kind(out)
    if kind == "missing":
        parent = out.parent
        while path_kind(parent) == "missing" and parent != parent.parent:
            parent = parent.parent
        if path_kind(parent) != "directory" or not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"--out {out} cannot be created: {parent} is not a writable folder")
        return
    if kind != "directory":
        raise ValueError(f"--out {out} is a {kind}, not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} is not writable")
    present = [name for name in REPORT_FILES if (out / name).exists()]
    if present and not overwrite:
        raise ValueError(f"--out {out} already holds a report ({', '.join(present)}); give another folder, or "
                         f"--overwrite to replace it")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posecnn-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", required=True, help="object-set YAML the checkpoint was trained for")
    p.add_argument("--models-root", help="override the object set's models_root")
    p.add_argument("--dataset", required=True, help="dataset root in the YCB-Video layout")
    p.add_argument("--split", default="test", help="frame list: image_sets/<split>.txt (default: test)")
    p.add_argument("--out", required=True, help="output folder for the table, CSV, Markdown and plot")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="model checkpoint to run (through PoseEstimator)")
    src.add_argument("--results", help="saved estimates (.json or .npz) instead of running a model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (with --checkpoint)")
    p.add_argument("--preset", default="pt_ycb_eval", choices=("pt_ycb_eval", "pt_demo"),
                   help="estimator post-processing: PoseCNN-PyTorch's YCB-Video keyframe evaluation (no score "
                        "threshold, NMS IoU 0.5; default) or its image demo (score > 0.1, NMS IoU 0.2)")
    p.add_argument("--score-threshold", type=float, default=None, help="override the preset's score threshold")
    p.add_argument("--depth-mode", choices=("scale", "resample"), default=None,
                   help="focal-length-aware depth: scale the network's depth (default) or resample the image")
    p.add_argument("--depth", action="store_true",
                   help="pass depth images to the estimator: depth refinement (and RGB-D models); the report is "
                        "then written with and without refinement (OUT and OUT/without_refinement)")
    p.add_argument("--rotation-search", type=int, default=None, metavar="N",
                   help="with --depth: start rotations of the refinement's global rotation search (0 = local ICP "
                        "only; default: RefineOptions' default)")
    p.add_argument("--rotation-crop", type=float, default=None, metavar="SIZE",
                   help="rotation head on per-detection crops resampled to SIZE pixels (EstimatorConfig."
                        "rotation_crop_size); 0 = pooled from the frame, as PT; default: as the checkpoint says")
    p.add_argument("--mono", action="store_true",
                   help="turn each colour frame grey first, as a mono8 camera gives it (luminance on 3 channels)")
    p.add_argument("--max-frames", type=int, default=None, help="evaluate only the first N frames of the split")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..datasets.ycb import BadFrameFileError, read_frame_list
    from ..objects import load_object_set
    from .report import evaluate_results
    from .results import FrameResults, ResultsError, load_results, save_results
    from .runner import read_ground_truth, run_estimator

    out = Path(args.out)
    try:
        check_out_dir(out, args.overwrite)
        if args.max_frames is not None and args.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
        if args.rotation_search is not None and args.rotation_search < 0:
            raise ValueError(f"--rotation-search must be >= 0, got {args.rotation_search}")
        if args.mono and args.results:
            raise ValueError("--mono changes the frames a model sees: it needs --checkpoint, not --results")
        objects = load_object_set(args.objects, models_root=args.models_root)
        ids = read_frame_list(args.dataset, args.split)
        if not ids:
            raise ValueError(f"split {args.split!r} of {args.dataset} lists no frames: nothing to evaluate")
        if args.max_frames is not None:
            ids = ids[:args.max_frames]
        gt = read_ground_truth(args.dataset, args.split, objects, frame_ids=ids)
        timing = None
        initial = None
        if args.results:
            results = load_results(args.results)
        else:
            from ..estimator import EstimatorConfig, PoseEstimator

            cfg = EstimatorConfig.preset(args.preset)
            if args.score_threshold is not None:
                cfg = dataclasses.replace(cfg, score_threshold=args.score_threshold)
            if args.depth_mode is not None:
                cfg = dataclasses.replace(cfg, depth_mode=args.depth_mode)
            if args.rotation_crop is not None:
                cfg = dataclasses.replace(cfg, rotation_crop_size=args.rotation_crop or None)
            if args.rotation_search is not None:
                cfg = dataclasses.replace(cfg, refine_options=dataclasses.replace(
                    cfg.refine_options, rotation_search=args.rotation_search))
            est = PoseEstimator(args.checkpoint, objects, device=args.device, config=cfg)
            initial = FrameResults(class_names=list(est.class_names)) if args.depth else None
            results, timing = run_estimator(est, args.dataset, args.split, frame_ids=ids, use_depth=args.depth,
                                            progress=not args.no_progress, initial=initial, mono=args.mono)
            out.mkdir(parents=True, exist_ok=True)
            save_results(out / "results.json", results)
            if initial is not None:
                (out / "without_refinement").mkdir(exist_ok=True)
                save_results(out / "without_refinement" / "results.json", initial)
        title = args.title or f"PoseCNN on {Path(args.dataset).name}/{args.split}" + (
            " (mono)" if args.mono else "") + (f" ({Path(args.checkpoint).name})" if args.checkpoint else "")
        report = evaluate_results(results, gt, objects, title=title + (" with depth refinement" if initial else ""))
        before = (evaluate_results(initial, gt, objects, title=title + " without refinement")
                  if initial is not None else None)
    except (ValueError, OSError, BadFrameFileError, ResultsError, RuntimeError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if timing is not None:
        report.notes.append(f"{timing['frames']} frames in {timing['seconds']:.1f} s "
                            f"({timing['ms_per_frame']:.1f} ms per frame, device {args.device})")
    try:
        if before is not None:
            before.write(out / "without_refinement")
        files = report.write(out)
    except OSError as exc:
        print(f"error: cannot write the report to {out}: {exc}", file=sys.stderr)
        return 2
    if before is not None:
        print(before.table())
        print()
    print(report.table())
    for line in report.summary_lines():
        print(line)
    if before is not None:
        print(f"depth refinement: mean ADD AUC {before.mean.add_auc:.1f} -> {report.mean.add_auc:.1f}, "
              f"mean ADD-S AUC {before.mean.adds_auc:.1f} -> {report.mean.adds_auc:.1f}")
    for note in report.notes:
        print(f"note: {note}")
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0
