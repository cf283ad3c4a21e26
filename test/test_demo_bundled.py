"""The README demo end to end: bundled bag -> node (real PoseEstimator, bundled demo checkpoint, CPU) -> estimates
scored against the bag's ground truth (the demo's summary.json), with and without depth refinement. Real processes,
rclpy from the wheels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import _node_helpers as helpers  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]

# Measured with the bundled demo checkpoint on the bundled bag (README, "The bundled demo model"); the bounds leave
# a margin for run-to-run differences (there are none on CPU with the same inputs, but thread counts vary).
MIN_FOUND_FRACTION = 0.75   # measured 108/125 (the models before: 109/125, 108/125, 107/125)
MAX_MEDIAN_T_CM = 6.0          # measured 5.0 cm (the models before: 5.1 cm, 4.6 cm, 5.7 cm)
MAX_MEDIAN_T_CM_REFINED = 1.0  # measured 0.2 cm with depth refinement (the models before: 0.2 cm)
MIN_ADDS_2CM_REFINED = 0.4     # fraction of objects with ADD(-S) < 2 cm: measured 89/125 with refinement, 37/125
                               # without (the models before: 89/125 and 42/125; 86/125 and 36/125; 84/125 and 35/125)
MAX_MEDIAN_ROT_SYM_DEG = 50.0  # median rotation error up to each object's symmetries, RGB only: measured 32.1 deg
                               # (the models before: 35.2, 38.1 and 43.0 deg; the first, whose rotations were
                               # unlearned: 99.8)


def _run_demo(tmp_path: Path, *extra: str) -> dict:
    """Run the demo; its summary.json."""
    env = helpers.ros_env(helpers.session_domain_id(70 + len(extra)))
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "posecnn_ros.demo", "--lockstep", "--device", "cpu", "--out", str(out),
                           "--frame-timeout", "60", "--startup-timeout", "120", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert len(list(out.glob("overlay_*.png"))) == 30, text
    return json.loads((out / "summary.json").read_text())


def _summary(s: dict) -> tuple[int, int, float, int]:
    """-> (ground-truth objects, found, median translation error (cm), objects with ADD(-S) < 2 cm)."""
    return (s["objects"]["ground_truth"], s["objects"]["found"], 100 * s["translation_error_m"]["median"],
            s["add_s"]["below_2cm"])


def test_demo_bundled_bag_and_checkpoint(tmp_path):
    s = _run_demo(tmp_path)
    assert s["frames"] == {"played": 30, "answered": 30, "dropped_by_node": 0, "rejected_by_node": 0}, s["frames"]
    total, found, median_cm, _ = _summary(s)
    assert total >= 90
    assert found >= MIN_FOUND_FRACTION * total, s
    assert median_cm <= MAX_MEDIAN_T_CM, s
    assert s["rotation_error_sym_deg"]["median"] <= MAX_MEDIAN_ROT_SYM_DEG, s


def test_demo_with_depth_refinement(tmp_path):
    s = _run_demo(tmp_path, "--depth")
    total, found, median_cm, adds_2cm = _summary(s)
    assert found >= MIN_FOUND_FRACTION * total, s
    assert median_cm <= MAX_MEDIAN_T_CM_REFINED, s
    assert adds_2cm >= MIN_ADDS_2CM_REFINED * total, s
