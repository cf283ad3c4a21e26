"""posecnn-eval end to end with a checkpoint (runs PoseEstimator): tiny random-weight model on a hand-drawn split."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import write_object_set, write_toy_dataset  # noqa: E402

from posecnn_core.checkpoint import CheckpointMeta, save_checkpoint  # noqa: E402
from posecnn_core.evaluate.cli import main as eval_main  # noqa: E402
from posecnn_core.network import PoseCNN  # noqa: E402


def _tiny_model_and_split(tmp_path: Path):
    """A toy object set, a hand-drawn split with 2 test frames, and a tiny random-weight checkpoint for it."""
    import torch

    yaml_path = write_object_set(tmp_path)
    write_toy_dataset(tmp_path / "ds", frames=1, test_frames=2)
    torch.manual_seed(0)
    net = PoseCNN(3, fc_dim=32, trunk_width=0.125)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", net, CheckpointMeta(
        num_classes=3, fc_dim=32, trunk_width=0.125, class_names=["__background__", "plate", "brick"]))
    return yaml_path, net, ckpt


def test_eval_cli_runs_checkpoint(tmp_path, capsys):
    yaml_path, net, ckpt = _tiny_model_and_split(tmp_path)
    rc = eval_main(["--checkpoint", str(ckpt), "--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"),
                    "--split", "test", "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ADD(-S) AUC" in text and "plate" in text and "brick" in text and "ms per frame" in text
    out = tmp_path / "out"
    doc = json.loads((out / "results.json").read_text())
    assert doc["format"] == "posecnn_results" and sorted(doc["frames"]) == ["0000/000001", "0000/000002"]
    rows = {r["object"]: r for r in csv.DictReader(open(out / "per_object.csv"))}
    assert rows["plate"]["objects"] == "2" and rows["ALL"]["objects"] == "4"
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG" and (out / "report.md").is_file()
    # the saved estimates give the same report without the model
    rc = eval_main(["--results", str(out / "results.json"), "--objects", str(yaml_path), "--dataset",
                    str(tmp_path / "ds"), "--split", "test", "--out", str(tmp_path / "out2")])
    assert rc == 0
    assert (out / "per_object.csv").read_text() == (tmp_path / "out2" / "per_object.csv").read_text()
    # a checkpoint for other classes is refused with a clear message
    bad = save_checkpoint(tmp_path / "bad.pt", net, CheckpointMeta(
        num_classes=3, fc_dim=32, trunk_width=0.125, class_names=["__background__", "x", "y"]))
    rc = eval_main(["--checkpoint", str(bad), "--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"),
                    "--split", "test", "--out", str(tmp_path / "out3"), "--device", "cpu", "--no-progress"])
    assert rc == 2 and "does not match checkpoint" in capsys.readouterr().err


def test_eval_cli_with_depth_reports_with_and_without_refinement(tmp_path, capsys):
    yaml_path, net, ckpt = _tiny_model_and_split(tmp_path)
    rc = eval_main(["--checkpoint", str(ckpt), "--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"),
                    "--split", "test", "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress",
                    "--depth", "--score-threshold", "0"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "depth refinement: mean ADD AUC" in text
    out = tmp_path / "out"
    for folder in (out, out / "without_refinement"):
        rows = {r["object"]: r for r in csv.DictReader(open(folder / "per_object.csv"))}
        assert rows["ALL"]["objects"] == "4"
        assert json.loads((folder / "results.json").read_text())["format"] == "posecnn_results"
    assert "with depth refinement" in (out / "report.md").read_text()
    assert "without refinement" in (out / "without_refinement" / "report.md").read_text()


def test_eval_cli_rotation_search_option(tmp_path, capsys, monkeypatch):
    yaml_path, net, ckpt = _tiny_model_and_split(tmp_path)
    from posecnn_core import estimator as estimator_module

    seen = []
    real = estimator_module.PoseEstimator

    def spy(*args, **kwargs):
        seen.append(kwargs["config"].refine_options.rotation_search)
        return real(*args, **kwargs)

    monkeypatch.setattr(estimator_module, "PoseEstimator", spy)
    base = ["--checkpoint", str(ckpt), "--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"),
            "--split", "test", "--device", "cpu", "--no-progress", "--depth", "--score-threshold", "0"]
    assert eval_main(base + ["--out", str(tmp_path / "a"), "--rotation-search", "0"]) == 0
    assert eval_main(base + ["--out", str(tmp_path / "b")]) == 0
    assert seen == [0, estimator_module.RefineOptions().rotation_search]
    capsys.readouterr()
    assert eval_main(base + ["--out", str(tmp_path / "c"), "--rotation-search", "-1"]) == 2
    assert "--rotation-search must be >= 0" in capsys.readouterr().err


def test_eval_cli_mono_gives_the_model_grey_frames(tmp_path, capsys, monkeypatch):
    import numpy as np

    from posecnn_core import estimator as estimator_module

    yaml_path, net, ckpt = _tiny_model_and_split(tmp_path)
    frames = []
    real_estimate = estimator_module.PoseEstimator.estimate

    def spy(self, rgb, K, depth=None):
        frames.append(rgb.copy())
        return real_estimate(self, rgb, K, depth)

    monkeypatch.setattr(estimator_module.PoseEstimator, "estimate", spy)
    base = ["--checkpoint", str(ckpt), "--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"),
            "--split", "test", "--device", "cpu", "--no-progress"]
    assert eval_main(base + ["--out", str(tmp_path / "colour")]) == 0
    assert eval_main(base + ["--out", str(tmp_path / "mono"), "--mono"]) == 0
    colour, mono = frames[:2], frames[2:]
    assert len(mono) == 2 and "(mono)" in (tmp_path / "mono" / "report.md").read_text()
    for c, m in zip(colour, mono):
        assert not np.array_equal(c[..., 0], c[..., 1])  # the toy frames are coloured
        np.testing.assert_array_equal(m[..., 0], m[..., 1])
        np.testing.assert_array_equal(m[..., 0], m[..., 2])
        lum = 0.299 * c[..., 0].astype(float) + 0.587 * c[..., 1] + 0.114 * c[..., 2]
        assert np.abs(m[..., 0] - lum).max() <= 1.0
    capsys.readouterr()
    assert eval_main(["--results", str(tmp_path / "mono" / "results.json"), "--objects", str(yaml_path),
                      "--dataset", str(tmp_path / "ds"), "--split", "test", "--out", str(tmp_path / "r"),
                      "--mono"]) == 2
    assert "--mono" in capsys.readouterr().err
