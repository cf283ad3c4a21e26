"""The GPU runbooks (tools/gpu_check.sh, tools/gpu_train.sh) in their CPU dry-run mode: every step that needs no GPU
runs on tiny sizes, the CUDA-only ones are skipped with a reason, and the report files hold every field, so the
scripts cannot rot between the rare runs on a GPU machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                 reason="needs bash and coreutils' timeout")]


def _run(script: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("POSECNN_GPU_PYTHON", None)
    return subprocess.run(["bash", str(ROOT / "tools" / script), str(out), *extra, "--cpu-dry-run"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)


def _steps(report: dict) -> dict[str, dict]:
    steps = {s["name"]: s for s in report["steps"]}
    for s in steps.values():
        assert {"name", "rc", "seconds", "status", "timeout_s"} <= set(s)
        assert s["seconds"] >= 0
    return steps


def test_gpu_check_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "check"
    proc = _run("gpu_check.sh", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "gpu_report.json", "gpu_report.md"]
    report = json.loads((out / "gpu_report.json").read_text())
    assert report["kind"] == "check" and report["dry_run"] and report["complete"]
    steps = _steps(report)
    assert list(steps) == ["machine", "install", "build", "tests", "bench", "syncs", "ddp", "memcheck", "racecheck",
                           "compile"]
    for name in ("machine", "install", "build", "tests", "bench", "syncs", "ddp", "compile"):
        assert steps[name]["status"] == "ok", steps[name]
    for name in ("memcheck", "racecheck"):
        assert steps[name]["status"].startswith("skipped: needs CUDA"), steps[name]
    m = report["machine"]
    assert {"python", "torch", "cuda_available", "nvidia-smi", "nvcc", "compute-sanitizer", "cpu_count"} <= set(m)
    build = report["build"]
    assert build["loaded"] and build["seconds"] >= 0 and "hough_voting" in build["ops"]
    tests = report["tests"]
    assert tests["failures"] == tests["errors"] == 0 and tests["passed"] > 0 and tests["skipped"] > 0
    bench = report["benchmark"]
    fp32 = bench["variants"]["fp32"]
    assert fp32["status"] == "ok" and fp32["median_ms"] > 0 and fp32["p99_ms"] >= fp32["median_ms"]
    assert fp32["ratio_vs_fp32"]["median_ms"] == pytest.approx(1.0)
    assert set(fp32["stages_median_ms"]) == {"preprocess", "network", "voting", "rotation"}
    nchw = bench["variants"]["nchw"]
    assert nchw["status"] == "ok" and nchw["pose_diff_vs_fp32"]["count_mismatches"] == 0
    for name in ("bf16", "graph", "graph_bf16", "compile", "compile_graph_bf16"):
        assert bench["variants"][name]["status"] == "skipped: needs CUDA"
    for mode in ("same_label", "no_same_label"):
        assert set(bench["voting"][mode]) == {"1", "5", "20"}
        assert bench["voting"][mode]["5"]["found"] >= 1
    assert bench["syncs"]["status"] == "skipped: needs CUDA"
    assert bench["summary"]["targets"]["e2e_median_ms"] == 3.0 and "voting_5_ms" in bench["summary"]
    # data-parallel training: the CPU dry run compares torchrun/gloo (2 x batch 1) with 1 process x batch 2
    ddp = report["ddp"]
    assert ddp["mode"] == "gloo" and ddp["ok"] and ddp["world_size"] == 2 and ddp["iterations"] == 4
    assert ddp["max_weight_diff"] <= ddp["tolerance"] < ddp["max_weight_change"] / 100
    assert ddp["runs"]["a"]["processes"] == 2 and ddp["runs"]["b"]["batch_size"] == 2
    md = (out / "gpu_report.md").read_text()
    for heading in ("## Machine", "## Steps", "## Operator build", "## CUDA tests", "## Benchmark",
                    "## Data-parallel training"):
        assert heading in md
    assert "==== " in (out / "gpu_check.log").read_text()


def test_gpu_train_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "train"
    proc = _run("gpu_train.sh", out, "0.1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    steps_text = (out / "train_report.md").read_text() if (out / "train_report.md").is_file() else proc.stdout[-3000:]
    assert {"gpu_train.log", "train_report.json", "train_report.md", "demo_gpu.pt", "eval_report.md",
            "per_object.csv"} <= set(names) and len(names) <= 8, steps_text
    report = json.loads((out / "train_report.json").read_text())
    assert report["kind"] == "train" and report["dry_run"] and report["complete"]
    steps = _steps(report)
    assert list(steps) == ["machine", "install", "gl", "render", "probe", "train", "export", "eval", "precision"]
    assert steps["gl"]["status"].startswith("skipped")
    for name in ("machine", "install", "render", "probe", "train", "export", "eval", "precision"):
        assert steps[name]["status"] == "ok", steps[name]
    train = report["train"]
    assert train["iterations"] >= 2 and train["iterations"] == train["planned_iterations"]
    assert train["last_losses"]["loss"] > 0 and train["checkpoint"]
    assert (out / "demo_gpu.pt").stat().st_size < 16 * 2**20
    assert report["eval"]["rows"] and {"add_auc", "adds_auc"} <= set(report["eval"]["rows"][0])
    fp32 = report["precision"]["variants"]["fp32"]
    assert fp32["status"] == "ok" and fp32["ms_per_frame"] > 0
    variants = report["precision"]["variants"]
    assert variants["bf16"]["status"] == "ok" and variants["bf16"]["vs_fp32"]["frames"] > 0  # CPU autocast
    assert variants["graph_bf16"]["status"] == "skipped: needs CUDA"


def test_probe_rate_when_the_probe_ends_between_two_looks(tmp_path: Path, monkeypatch) -> None:
    """A short probe (the dry run's 4 iterations) can write all its rows between two looks at the CSV; its rate then
    comes from the trainer's per-iteration times (the first, with its warm-up, left out)."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_train_run", ROOT / "tools" / "gpu_train_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def fake_watch(cmd, csv_path, timeout, mark):
        csv_path.parent.mkdir(parents=True)
        csv_path.write_text("epoch,iteration,loss,seconds\n0,1,5.0,2.0\n0,2,4.0,0.25\n0,3,3.5,0.25\n0,4,3.0,0.5\n")
        return 0, 3.0, {0: 4, -1: 3.0}  # no look saw the first row

    monkeypatch.setattr(mod, "_watch", fake_watch)
    (tmp_path / "data.json").write_text(json.dumps({"roots": ["data/x"]}))
    args = argparse.Namespace(data=str(tmp_path / "data.json"), out=str(tmp_path), iters=4, set=[], config="c.yaml",
                              timeout=60.0)
    assert mod.cmd_probe(args) == 0
    probe = json.loads((tmp_path / "probe.json").read_text())
    assert probe["iters_per_s"] == pytest.approx(3 / 1.0) and probe["startup_s"] == 3.0
