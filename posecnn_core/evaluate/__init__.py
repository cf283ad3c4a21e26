"""Evaluation: match estimates to ground truth, ADD / ADD-S / VOCap AUC per object, table, CSV, Markdown, plot.

The seam for testing without a model is :func:`evaluate_results` (results + ground truth + object set -> Report).
"""
from .report import ClassSummary, InstanceResult, Report, evaluate_results, match_frame
from .results import Detection, FrameResults, GroundTruth, ResultsError, load_results, save_results

__all__ = ["ClassSummary", "InstanceResult", "Report", "evaluate_results", "match_frame", "Detection",
           "FrameResults", "GroundTruth", "ResultsError", "load_results", "save_results"]
