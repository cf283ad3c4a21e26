"""posecnn_core.evaluate: matching, ADD/ADD-S/AUC numbers checked by hand, files, results I/O, CLI on saved results."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from posecnn_core.evaluate import (Detection, FrameResults, GroundTruth, ResultsError, evaluate_results,
                                   load_results, match_frame, save_results)
from posecnn_core.evaluate.cli import main as eval_main
from posecnn_core.objects import ObjectSet

I3 = np.eye(3)
RZ180 = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture
def objects() -> ObjectSet:
    pts = np.array([[0.01, 0, 0], [-0.01, 0, 0]])
    return ObjectSet(name="two", class_names=["__background__", "a", "b"],
                     points=[np.zeros((0, 3)), pts, pts], extents=np.zeros((3, 3)),
                     symmetric=[False, False, True])


def pose(t) -> np.ndarray:
    return np.hstack([I3, np.asarray(t, float).reshape(3, 1)])


@pytest.fixture
def scene():
    gt = [GroundTruth("f1", [1, 2], np.stack([pose([0, 0, 1]), pose([0.1, 0, 1])]),
                      [[10, 10, 50, 50], [60, 10, 100, 50]]),
          GroundTruth("f2", [1, 2], np.stack([pose([0, 0, 1]), pose([0.1, 0, 1])]),
                      [[10, 10, 50, 50], [60, 10, 100, 50]]),
          GroundTruth("f3", [1], pose([0, 0, 1])[None], [[10, 10, 50, 50]])]
    res = FrameResults(class_names=["__background__", "a", "b"], frames={
        "f1": [Detection(1, 0.99, [200, 200, 220, 220], I3, [0, 0, 1]),      # exact pose but wrong place: unused
               Detection(1, 0.50, [12, 10, 50, 52], I3, [0.02, 0, 1]),       # best IoU -> ADD 0.02, ADD-S 0.01
               Detection(2, 0.90, [60, 10, 100, 50], RZ180, [0.1, 0, 1])],   # ADD 0.02, ADD-S 0
        "f2": [Detection(1, 0.80, [10, 10, 50, 50], I3, [0.05, 0, 1]),       # ADD 0.05, ADD-S 0.04
               Detection(2, 0.70, [60, 10, 100, 50], I3, [0.1, 0, 1.08])]})  # ADD = ADD-S = 0.08
    return res, gt                                                           # f3 absent: a miss


def test_auc_numbers_by_hand(objects, scene):
    rep = evaluate_results(*scene, objects)
    by = {s.name: s for s in rep.per_class}
    # a: ADD [0.02, 0.05, inf] -> (0.02/3 + 0.03*2/3 + 0.05*2/3) / 0.1 = 60
    assert by["a"].add_auc == pytest.approx(60.0, abs=1e-3)
    # a: ADD-S [0.01, 0.04, inf] -> (0.01/3 + 0.03*2/3 + 0.06*2/3) / 0.1 = 63.33
    assert by["a"].adds_auc == pytest.approx(190 / 3, abs=1e-3)
    assert by["a"].add_or_adds_auc == pytest.approx(60.0, abs=1e-3)
    # b: ADD [0.02, 0.08] -> 0.02*0.5 + 0.06 + 0.02 = 0.09 -> 90; ADD-S [0, 0.08] -> 100
    assert by["b"].add_auc == pytest.approx(90.0, abs=1e-3)
    assert by["b"].adds_auc == pytest.approx(100.0, abs=1e-3)
    assert by["b"].add_or_adds_auc == pytest.approx(100.0, abs=1e-3)  # symmetric -> ADD-S
    assert (by["a"].count, by["a"].detected, by["b"].count, by["b"].detected) == (3, 2, 2, 2)
    assert rep.mean.add_auc == pytest.approx(75.0, abs=1e-3)
    assert rep.mean.add_or_adds_auc == pytest.approx(80.0, abs=1e-3)
    # pooled ADD [0.02, 0.02, 0.05, 0.08, inf]: 0.02*0.2 + 0.03*0.6 + 0.03*0.8 + 0.02*0.8 = 0.062 -> 62
    assert rep.pooled.add_auc == pytest.approx(62.0, abs=1e-3)
    f1a = [r for r in rep.instances if r.frame_id == "f1" and r.class_id == 1][0]
    assert f1a.add == pytest.approx(0.02, abs=1e-6) and f1a.adds == pytest.approx(0.01, abs=1e-6)
    assert f1a.score == pytest.approx(0.5)
    miss = [r for r in rep.instances if r.frame_id == "f3"][0]
    assert not miss.detected and math.isinf(miss.add) and math.isinf(miss.adds)
    assert any("no results entry" in n for n in rep.notes)


def test_one_to_one_matching_with_repeated_classes():
    gt = GroundTruth("f", [1, 1], np.stack([pose([0, 0, 1]), pose([0.1, 0, 1])]), [[0, 0, 10, 10], [20, 0, 30, 10]])
    dets = [Detection(1, 0.9, [19, 0, 30, 10], I3, [0.1, 0, 1]), Detection(1, 0.8, [0, 0, 10, 10], I3, [0, 0, 1])]
    assert match_frame(gt, dets) == [1, 0]
    assert match_frame(gt, dets[:1]) == [None, 0]
    # no overlap at all: still matched (PT takes the best-IoU detection of the class, even at IoU 0)
    assert match_frame(gt, [Detection(1, 0.5, [100, 100, 110, 110], I3, [0, 0, 1])]) == [0, None]
    assert match_frame(gt, [Detection(2, 0.5, [0, 0, 10, 10], I3, [0, 0, 1])]) == [None, None]


def test_table_markdown_csv_and_plot(objects, scene, tmp_path):
    rep = evaluate_results(*scene, objects, title="unit")
    table = rep.table()
    assert "ADD(-S) AUC" in table and "MEAN" in table and "ALL" in table
    assert "60.0" in table and "100.0" in table
    files = rep.write(tmp_path)
    rows = list(csv.DictReader(open(files["csv"])))
    assert [r["object"] for r in rows] == ["a", "b", "MEAN", "ALL"]
    assert float(rows[0]["add_auc"]) == pytest.approx(60.0, abs=1e-3)
    md = files["markdown"].read_text()
    assert md.startswith("# unit") and "| a |  | 3 | 2 | 60.0 | 63.3 | 60.0 |" in md
    inst = list(csv.DictReader(open(files["instances"])))
    assert len(inst) == 5 and sum(r["add_m"] == "inf" for r in inst) == 1
    png = files["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_results_round_trip(scene, tmp_path, suffix):
    res, _ = scene
    res.frames["empty"] = []
    back = load_results(save_results(tmp_path / f"r{suffix}", res))
    assert back.class_names == res.class_names and list(back.frames) == list(res.frames)
    assert back.frames["empty"] == []
    d0, e0 = res.frames["f1"][2], back.frames["f1"][2]
    assert e0.class_id == 2 and np.allclose(e0.R, d0.R) and np.allclose(e0.t, d0.t) and np.allclose(e0.roi, d0.roi)


def test_bad_results_and_inputs(objects, scene, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"format": "posecnn_results", "frames": {"f": [{"class_id": 1, "t": [0, 0, 1]}]}}))
    with pytest.raises(ResultsError, match=r"frames\['f'\]\[0\]: missing fields \['R'\]"):
        load_results(p)
    p.write_text("{}")
    with pytest.raises(ResultsError, match="not a posecnn_results file"):
        load_results(p)
    res, gt = scene
    res.class_names = ["__background__", "x", "y"]
    with pytest.raises(ValueError, match="results were made for classes"):
        evaluate_results(res, gt, objects)
    with pytest.raises(ValueError, match="outside 1..2"):
        evaluate_results({"f1": [Detection(5, 1, [0, 0, 1, 1], I3, [0, 0, 1])]}, gt[:1], objects)


def test_cli_on_saved_results(tmp_path, capsys):
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from _train_helpers import write_object_set, write_toy_dataset
    from posecnn_core.datasets.ycb import read_frame
    yaml_path = write_object_set(tmp_path)
    ids = write_toy_dataset(tmp_path / "ds", frames=1, test_frames=2)
    frames = [read_frame(tmp_path / "ds", f, load_depth=False) for f in ids[1:]]
    # perfect estimates for frame 1, frame 2 missing entirely
    res = FrameResults(class_names=["__background__", "plate", "brick"], frames={frames[0].frame_id: [
        Detection(c, 1.0, [0, 0, 63, 47], P[:, :3], P[:, 3]) for c, P in zip(frames[0].cls_indexes, frames[0].poses)]})
    save_results(tmp_path / "res.json", res)
    rc = eval_main(["--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"), "--split", "test",
                    "--results", str(tmp_path / "res.json"), "--out", str(tmp_path / "out")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "plate" in out and "brick" in out and "ALL" in out
    rows = {r["object"]: r for r in csv.DictReader(open(tmp_path / "out" / "per_object.csv"))}
    # each class: one perfect (0 m) and one miss -> 50
    assert float(rows["plate"]["add_auc"]) == pytest.approx(50.0, abs=1e-6)
    assert float(rows["brick"]["adds_auc"]) == pytest.approx(50.0, abs=1e-6)
    assert (tmp_path / "out" / "accuracy.png").is_file() and (tmp_path / "out" / "report.md").is_file()
    rc = eval_main(["--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"), "--split", "nope",
                    "--results", str(tmp_path / "res.json"), "--out", str(tmp_path / "out2")])
    assert rc == 2 and "no frame list for split 'nope'" in capsys.readouterr().err


def test_rotation_translation_and_false_positives_by_hand(objects, scene):
    rep = evaluate_results(*scene, objects)
    by = {s.name: s for s in rep.per_class}
    # a (not symmetric): detections with identity rotation, t errors 0.02 and 0.05 -> medians 0 deg, 0.035 m
    assert by["a"].rot_median_deg == pytest.approx(0.0, abs=1e-6)
    assert by["a"].t_median_m == pytest.approx(0.035)
    # b (symmetric; the two-point model is symmetric under RZ180): the 180 deg turn is no error up to symmetry
    f1b = next(r for r in rep.instances if r.frame_id == "f1" and r.class_name == "b")
    assert f1b.rot_error_deg == pytest.approx(180.0) and f1b.rot_error_sym_deg == pytest.approx(0.0, abs=1.0)
    assert by["b"].t_median_m == pytest.approx(0.04)
    # the unused 0.99 detection of a in f1 is the only false positive
    assert (by["a"].false_positives, by["b"].false_positives, rep.pooled.false_positives) == (1, 0, 1)
    assert rep.false_positives_per_frame == pytest.approx(1 / 3)
    assert rep.rot_median_nonsymmetric_deg == pytest.approx(0.0, abs=1e-6)
    missed = next(r for r in rep.instances if r.frame_id == "f3")
    assert math.isinf(missed.t_error) and math.isnan(missed.rot_error_deg)
    assert any("1 in 3 frames" in line for line in rep.summary_lines())
    assert "false pos." in rep.table()
    # it lies away from every annotated box
    assert rep.false_positive_kinds == {"own_class": 0, "other_class": 0, "elsewhere": 1}
    assert any("1 elsewhere" in line for line in rep.summary_lines())


def test_translation_error_along_and_across_the_camera_ray(objects, scene):
    from posecnn_core.evaluate.report import ray_split

    along, across, ratio = ray_split(np.array([0.0, 0.0, 1.1]), np.array([0.0, 0.0, 1.0]))
    assert (along, across, ratio) == pytest.approx((0.1, 0.0, 1.1))
    # a centre off the optical axis: the error (0.03, 0, 0.04) split on the ray along (3, 0, 4) / 5
    along, across, ratio = ray_split(np.array([0.63, 0.0, 0.84]), np.array([0.6, 0.0, 0.8]))
    assert along == pytest.approx(0.05) and across == pytest.approx(0.0, abs=1e-12) and ratio == pytest.approx(1.05)
    along, across, _ = ray_split(np.array([0.0, 0.02, 1.0]), np.array([0.0, 0.0, 1.0]))
    assert along == pytest.approx(0.0) and across == pytest.approx(0.02)
    assert all(math.isnan(v) for v in ray_split(np.ones(3), np.zeros(3)))
    rep = evaluate_results(*scene, objects)
    f2b = next(r for r in rep.instances if r.frame_id == "f2" and r.class_name == "b")
    # true (0.1, 0, 1), estimated (0.1, 0, 1.08): along = 0.08 * cos(atan(0.1)), the rest across it
    cos = 1 / math.sqrt(1.01)
    assert f2b.t_along == pytest.approx(0.08 * cos) and f2b.t_across == pytest.approx(0.08 * 0.1 * cos)
    assert f2b.depth_ratio == pytest.approx(1 + 0.08 * cos / math.sqrt(1.01))
    missed = next(r for r in rep.instances if r.frame_id == "f3")
    assert math.isnan(missed.t_along) and math.isnan(missed.depth_ratio)
    line = next(l for l in rep.summary_lines() if l.startswith("translation error"))
    # along the ray: 0 (f1 a, f2 a: sideways errors on the axis; f1 b exact), 0.0796 (f2 b) -> median 0; across:
    # 0.02, 0, 0.05, 0.0080 -> median 0.014 m
    assert "along the camera ray (depth) 0.0 cm, across it 1.4 cm" in line


def test_false_positive_kinds(objects):
    gt = [GroundTruth("f", [1, 2], np.stack([pose([0, 0, 1]), pose([0.1, 0, 1])]),
                      [[10, 10, 50, 50], [60, 10, 100, 50]])]
    dets = [Detection(1, 0.9, [10, 10, 50, 50], I3, [0, 0, 1]),     # matched to a
            Detection(2, 0.9, [60, 10, 100, 50], I3, [0.1, 0, 1]),  # matched to b
            Detection(1, 0.8, [12, 12, 50, 50], I3, [0, 0, 1]),     # a second a on a: own class
            Detection(1, 0.7, [62, 10, 100, 48], I3, [0, 0, 1]),    # an a on b: other class
            Detection(2, 0.6, [200, 200, 240, 240], I3, [0, 0, 1]),  # nothing there
            Detection(2, 0.6, [40, 10, 70, 50], I3, [0, 0, 1])]     # straddles both, IoU < 0.3 with each
    rep = evaluate_results({"f": dets}, gt, objects)
    assert rep.pooled.false_positives == 4
    assert rep.false_positive_kinds == {"own_class": 1, "other_class": 1, "elsewhere": 2}


def test_cli_never_replaces_a_report_and_checks_out_before_work(tmp_path, capsys, monkeypatch):
    """An --out holding a report is refused (nothing changed) unless --overwrite; --out naming a file, an empty
    split: one-line errors, exit 2, before anything is run."""
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from _train_helpers import write_object_set, write_toy_dataset
    from posecnn_core.evaluate import runner

    yaml_path = write_object_set(tmp_path)
    write_toy_dataset(tmp_path / "ds", frames=1, test_frames=2)
    save_results(tmp_path / "res.json", FrameResults(class_names=["__background__", "plate", "brick"], frames={}))
    base = ["--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"), "--split", "test",
            "--results", str(tmp_path / "res.json")]
    out = tmp_path / "out"
    assert eval_main(base + ["--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert eval_main(base + ["--out", str(out), "--title", "second"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} already holds a report (report.md, per_object.csv" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1 and {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert eval_main(base + ["--out", str(out), "--title", "second", "--overwrite"]) == 0
    assert "# second" in (out / "report.md").read_text()

    # checked before any work: the estimator runner must not be reached
    monkeypatch.setattr(runner, "run_estimator", lambda *a, **k: pytest.fail("inference ran"))
    afile = tmp_path / "a_file.txt"
    afile.write_text("keep")
    ckpt_args = ["--objects", str(yaml_path), "--dataset", str(tmp_path / "ds"), "--split", "test",
                 "--checkpoint", str(tmp_path / "unused.pt")]
    capsys.readouterr()
    assert eval_main(ckpt_args + ["--out", str(afile)]) == 2
    assert f"--out {afile} is a regular file, not a folder" in capsys.readouterr().err
    assert afile.read_text() == "keep"
    assert eval_main(ckpt_args + ["--out", str(afile / "sub")]) == 2
    assert "cannot be created" in capsys.readouterr().err
    (tmp_path / "ds" / "image_sets" / "empty.txt").write_text("\n")
    assert eval_main(base[:5] + ["empty", "--results", str(tmp_path / "res.json"), "--out",
                                 str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "split 'empty' of" in err and "lists no frames" in err
    assert not (tmp_path / "o2").exists()
