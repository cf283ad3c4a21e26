"""Evaluation: match estimates to ground truth, ADD / ADD-S / VOCap AUC per object, table, CSV, Markdown, plot.

The seam for testing without a model is :func:`evaluate_results` (results + ground truth + object set -> Report);
:func:`frame_instances` (one frame) and :func:`build_report` (AUCs of collected instances) serve callers that
gather frames themselves, such as the ROS demo.
"""
from .report import (ClassSummary, InstanceResult, Report, build_report, evaluate_results, frame_instances,
                     match_frame, unmatched_detections)
from .results import Detection, FrameResults, GroundTruth, ResultsError, load_results, save_results

__all__ = ["ClassSummary", "InstanceResult", "Report", "build_report", "evaluate_results", "frame_instances",
           "unmatched_detections", "match_frame", "Detection", "FrameResults", "GroundTruth", "ResultsError", "load_results", "save_results"]
