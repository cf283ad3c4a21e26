"""Data-parallel training under torchrun (gloo, 2 CPU processes): equal to one process with the same global batch,
disjoint frames per rank, only rank 0 writes, resume across world sizes, a failing or stalled rank stops the run.

Every run trains the same tiny model (trunk_width 0.125, fc_dim 16, 48x64 frames, ground-truth RoIs, dropout 0,
SGD) for 4 iterations on 6 frames with a global batch of 2: 3 iterations per epoch, the learning rate x0.1 from
the 2nd epoch (iteration 4), checkpoints at iterations 2 (mid-epoch), 3 (epoch end) and 4.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import write_object_set, write_toy_dataset  # noqa: E402

from posecnn_core.checkpoint import read_state_dict, read_train_state  # noqa: E402
from posecnn_core.train.config import load_config  # noqa: E402
from posecnn_core.train.data import EpochSampler  # noqa: E402
from posecnn_core.train.trainer import Trainer, TrainingError  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "test" / "_ddp_worker.py"
FRAMES, ITERS = 6, 4
# Largest |difference| of any weight between 2 processes x batch 1 and 1 process x batch 2 that the tests accept.
# The runs differ only in the order of floating-point sums (one convolution over 2 images vs 2 over 1 image whose
# gradients gloo adds): measured 7e-8 (float32 rounding) after 4 steps that move the weights by up to 1.7e-2.
# Averaging the ranks' own loss means instead of normalising over the global batch gives 1e-3. The data are
# noisy images and the object set has no symmetric class, so that no exact tie (equal image patches under a max
# pooling, equidistant grid points in the symmetric rotation loss's nearest-point search) lets rounding pick a
# different branch in the two runs, which would amplify 1e-7 into 1e-4 within a step.
WEIGHT_ATOL = 2e-6
LOSS_RTOL = 2e-5  # the CSV logs keep 6 significant digits


def _settings(data: Path, objects: Path, out: str | Path, batch_size: int, *extra: str) -> list[str]:
    return [f"train_data=[{{root: {data}}}]", f"objects={objects}", "vgg16_init=null", "trunk_width=0.125",
            "fc_dim=16", "device=cpu", "workers=0", "progress=false", f"output_dir={out}", "roi_source=gt",
            "dropout=0", "optimizer=sgd", "lr=0.001", "lr_milestones=[2]", f"max_iters={ITERS}",
            "checkpoint_interval=2", f"batch_size={batch_size}", "augment.background_prob_real=0", *extra]


def _torchrun(cwd: Path, settings: list[str], *launcher: str, env: dict[str, str] | None = None,
              timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    """``torchrun --standalone --nproc_per_node=2 test/_ddp_worker.py`` (= posecnn-train plus test spies)."""
    environ = dict(os.environ)
    environ.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")]),
                   **(env or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *launcher,
           str(WORKER), *(f"--set={s}" for s in settings)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t0


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state, _ = read_state_dict(path)
    return {k: v.float() for k, v in state.items()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _frames(path: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        it, fid = line.split()
        out.setdefault(int(it), []).append(fid)
    return out


def _assert_same_rows(rows: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    assert [r["iteration"] for r in rows] == [r["iteration"] for r in want]
    for r, w in zip(rows, want):
        for k in ("epoch", "rois", "fg_rois", "pose_rois"):
            assert r[k] == w[k], (r["iteration"], k)
        for k in ("lr", "loss", "semantic", "vertex", "box_class", "box_reg", "pose"):
            assert float(r[k]) == pytest.approx(float(w[k]), rel=LOSS_RTOL, abs=1e-7), (r["iteration"], k)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The toy data, one process x batch 2 (in this process) and 2 processes x batch 1 (torchrun)."""
    from posecnn_core.ops import extension

    extension.load_ops()  # build the operator library once here, not in both ranks at once
    root = tmp_path_factory.mktemp("ddp")
    objects = write_object_set(root, symmetric_training=())  # no nearest-point matching (ties in a grid)
    write_toy_dataset(root / "ds", frames=FRAMES, noise=20.0)
    data = root / "ds"
    single = Trainer(load_config(None, _settings(data, objects, root / "single", 2)))
    init = {k: v.detach().clone() for k, v in single.net.state_dict().items()}
    t0 = time.perf_counter()
    single.train()
    single_s = time.perf_counter() - t0
    (root / "spy").mkdir()
    proc, secs = _torchrun(root, _settings(data, objects, "out", 1, "progress=true"),
                           "--log-dir", str(root / "logs"), "--redirects", "3",
                           env={"POSECNN_TEST_RANK_DIRS": "1", "POSECNN_TEST_FRAMES": str(root / "spy")})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"1 process x batch 2: {single_s:.1f} s; torchrun 2 x batch 1: {secs:.1f} s")
    return {"root": root, "data": data, "objects": objects, "single": root / "single", "init": init,
            "dist": root / "rank0" / "out", "rank1": root / "rank1", "spy": root / "spy", "logs": root / "logs",
            "dataset": single.dataset}


def test_two_processes_equal_one_process(runs):
    single = _weights(runs["single"] / "model_final.pt")
    dist = _weights(runs["dist"] / "model_final.pt")
    diff = _max_diff(dist, single)
    moved = _max_diff(single, runs["init"])
    print(f"max |weight difference| {diff:.2e}; max |change by training| {moved:.2e}")
    assert moved > 100 * WEIGHT_ATOL  # the runs trained: equality is not trivial
    assert diff <= WEIGHT_ATOL
    # every iteration: the same global-batch losses, RoI counts (summed over the ranks) and learning rate
    rows = _rows(runs["dist"] / "train_iterations.csv")
    want = _rows(runs["single"] / "train_iterations.csv")
    _assert_same_rows(rows, want)
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4])
    assert int(rows[0]["rois"]) > int(rows[0]["fg_rois"]) > 0 and float(rows[0]["pose"]) > 0
    state = read_train_state(runs["dist"] / "checkpoints" / "latest.pt")
    assert (state["global_batch"], state["world_size"], state["batch_size"], state["iteration"]) == (2, 2, 1, 4)


def test_ranks_draw_disjoint_frames_in_the_global_order(runs):
    r0 = _frames(runs["spy"] / "frames_rank0.txt")
    r1 = _frames(runs["spy"] / "frames_rank1.txt")
    assert sorted(r0) == sorted(r1) == list(range(1, ITERS + 1))
    assert all(len(r0[i]) == len(r1[i]) == 1 for i in r0)
    # epoch 0 = iterations 1..3: the two ranks draw disjoint frames that cover all 6
    e0 = [f for i in (1, 2, 3) for f in r0[i]], [f for i in (1, 2, 3) for f in r1[i]]
    assert not set(e0[0]) & set(e0[1]) and len(set(e0[0]) | set(e0[1])) == FRAMES
    # each step takes the next 2 samples of the epoch's global order, rank r the one at position 2k + r: the
    # batches of the single process
    ds = runs["dataset"]
    ids = ds.parts[0][0].frame_ids
    for epoch, its in ((0, (1, 2, 3)), (1, (4,))):
        one = EpochSampler(FRAMES, 3 * 2, seed=0)  # one process: 3 iterations x 2 samples
        one.set_epoch(epoch)
        order = one.indices()
        for k, it in enumerate(its):
            assert (r0[it][0], r1[it][0]) == (ids[order[2 * k]], ids[order[2 * k + 1]])
    # disjoint in any world size while an epoch is one pass over the data
    for world in (2, 3, 4):
        shares = [set(EpochSampler(12, 12 // world, seed=5, rank=r, world_size=world).indices())
                  for r in range(world)]
        assert sum(len(s) for s in shares) == 12 and set().union(*shares) == set(range(12))


def test_only_rank_zero_writes(runs):
    out = runs["dist"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "iter_0000002.pt", "iter_0000003.pt", "iter_0000004.pt", "latest.pt"]
    assert (out / "model_final.pt").is_file()
    assert [r["iteration"] for r in _rows(out / "train_iterations.csv")] == ["1", "2", "3", "4"]
    assert [r["epoch"] for r in _rows(out / "train_epochs.csv")] == ["0", "1"]
    # rank 1 worked in its own directory and wrote nothing there (no output folder, log or checkpoint)
    assert list(runs["rank1"].iterdir()) == []
    # progress bar and summary: rank 0 only (torchrun's per-rank logs)
    logs = {p.parent.name + "/" + p.name: p.read_text() for p in runs["logs"].rglob("*.log")}
    assert {"0/stdout.log", "0/stderr.log", "1/stdout.log", "1/stderr.log"} <= set(logs)
    assert "trained 4 iterations" in logs["0/stdout.log"] and "train:" in logs["0/stderr.log"]
    assert "trained" not in logs["1/stdout.log"] and "train:" not in logs["1/stderr.log"]


def test_resume_two_processes_to_one(runs, tmp_path):
    """A checkpoint of 2 processes x batch 1 (mid-epoch) resumed by 1 process x batch 2 continues the schedule
    and the data order: the result equals the uninterrupted runs."""
    ckpt = runs["dist"] / "checkpoints" / "iter_0000002.pt"
    t = Trainer(load_config(None, _settings(runs["data"], runs["objects"], tmp_path, 2, f"resume={ckpt}")))
    assert t.iteration == 2 and t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    t.train()
    _assert_same_rows(_rows(tmp_path / "train_iterations.csv"), _rows(runs["single"] / "train_iterations.csv")[2:])
    assert _max_diff(_weights(tmp_path / "model_final.pt"), _weights(runs["single"] / "model_final.pt")) \
        <= WEIGHT_ATOL


def test_resume_one_process_to_two(runs, tmp_path):
    """A checkpoint of 1 process x batch 2 resumed by 2 processes x batch 1 (torchrun)."""
    ckpt = runs["single"] / "checkpoints" / "iter_0000002.pt"
    (tmp_path / "spy").mkdir()
    proc, secs = _torchrun(tmp_path, _settings(runs["data"], runs["objects"], tmp_path / "out", 1,
                                               f"resume={ckpt}"),
                           env={"POSECNN_TEST_FRAMES": str(tmp_path / "spy")})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"torchrun resume: {secs:.1f} s")
    out = tmp_path / "out"
    _assert_same_rows(_rows(out / "train_iterations.csv"), _rows(runs["single"] / "train_iterations.csv")[2:])
    assert _max_diff(_weights(out / "model_final.pt"), _weights(runs["single"] / "model_final.pt")) <= WEIGHT_ATOL
    # the data continue at the 5th sample of epoch 0 (iteration 3), then epoch 1, as in the uninterrupted run
    r0, r1 = _frames(tmp_path / "spy" / "frames_rank0.txt"), _frames(tmp_path / "spy" / "frames_rank1.txt")
    first = _frames(runs["spy"] / "frames_rank0.txt"), _frames(runs["spy"] / "frames_rank1.txt")
    assert sorted(r0) == [3, 4] and all(r0[i] == first[0][i] and r1[i] == first[1][i] for i in (3, 4))


def test_resume_refuses_another_global_batch(runs, tmp_path):
    ckpt = runs["single"] / "checkpoints" / "iter_0000002.pt"
    with pytest.raises(TrainingError, match=r"global batch of 2 \(1 process\(es\) x batch_size 2\), this run has 1"):
        Trainer(load_config(None, _settings(runs["data"], runs["objects"], tmp_path, 1, f"resume={ckpt}")))


def test_failing_rank_stops_the_run(runs, tmp_path):
    """Rank 1 raises at iteration 2: torchrun stops rank 0 and exits non-zero with rank 1's error."""
    proc, secs = _torchrun(tmp_path, _settings(runs["data"], runs["objects"], tmp_path / "out", 1),
                           env={"POSECNN_TEST_FAIL": "1:2:raise"}, timeout=240)
    text = proc.stdout + proc.stderr
    print(f"failing rank: exit {proc.returncode} after {secs:.1f} s")
    assert proc.returncode != 0
    assert "RuntimeError: injected failure on rank 1 at iteration 2" in text
    assert "rank      : 1 (local_rank: 1)" in text  # torchrun's summary names the failed rank
    assert not (tmp_path / "out" / "model_final.pt").exists()


def test_stalled_rank_times_out(runs, tmp_path):
    """Rank 1 stops answering at iteration 2: rank 0's next collective gives up after dist_timeout_s, rank 0
    exits with an error saying so, and torchrun stops rank 1."""
    proc, secs = _torchrun(tmp_path, _settings(runs["data"], runs["objects"], tmp_path / "out", 1,
                                               "dist_timeout_s=5"),
                           env={"POSECNN_TEST_FAIL": "1:2:hang"}, timeout=240)
    text = proc.stdout + proc.stderr
    print(f"stalled rank: exit {proc.returncode} after {secs:.1f} s")
    assert proc.returncode != 0
    assert "error: [rank 0 of 2] a collective operation timed out after dist_timeout_s = 5 s" in text
    assert secs < 200  # not the hour rank 1 sleeps
    assert not (tmp_path / "out" / "model_final.pt").exists()


def test_processes_that_resume_differently_stop(runs, tmp_path):
    """resume: auto where only rank 0 sees the checkpoint (an output_dir that the machines do not share): every
    process stops with an error before training instead of running out of step."""
    ckpt_dir = tmp_path / "rank0" / "out" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "latest.pt").write_bytes((runs["single"] / "checkpoints" / "iter_0000002.pt").read_bytes())
    proc, secs = _torchrun(tmp_path, _settings(runs["data"], runs["objects"], "out", 1, "resume=auto"),
                           env={"POSECNN_TEST_RANK_DIRS": "1"}, timeout=240)
    text = proc.stdout + proc.stderr
    print(f"inconsistent resume: exit {proc.returncode} after {secs:.1f} s")
    assert proc.returncode != 0
    assert "the processes start at different iterations (0 to 2" in text
    assert not (tmp_path / "rank0" / "out" / "model_final.pt").exists()
