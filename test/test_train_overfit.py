"""Training smoke test: a tiny PoseCNN overfits two hand-drawn frames on CPU (total loss < 50 % of its start)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import write_object_set, write_toy_dataset  # noqa: E402

from posecnn_core.train.config import load_config  # noqa: E402
from posecnn_core.train.data import collate  # noqa: E402
from posecnn_core.train.trainer import Trainer  # noqa: E402

MAX_ITERS = 80


def test_loss_drops_when_overfitting_two_frames(tmp_path):
    yaml_path = write_object_set(tmp_path)
    write_toy_dataset(tmp_path / "ds", frames=2, h=48, w=64)
    cfg = load_config(None, [
        f"train_data=[{{root: {tmp_path / 'ds'}}}]", f"objects={yaml_path}", "vgg16_init=null",
        "trunk_width=0.125", "fc_dim=32", "device=cpu", "workers=0", "progress=false", f"output_dir={tmp_path}",
        "batch_size=2", "optimizer=adam", "lr=0.003", "dropout=0", "roi_source=gt", "roi_jitter=0.02",
        "augment.enabled=false"])
    trainer = Trainer(cfg)
    batch = collate([trainer.dataset[0], trainer.dataset[1]])
    losses, parts = [], []
    t0 = time.perf_counter()
    for _ in range(MAX_ITERS):
        v = trainer.step(batch)
        trainer.iteration += 1
        losses.append(v["loss"])
        parts.append(v)
        if len(losses) >= 6 and np.mean(losses[-3:]) < 0.5 * losses[0]:
            break
    start, end = losses[0], np.mean(losses[-3:])  # start: before any update
    assert np.isfinite(losses).all()
    assert end < 0.5 * start, (f"loss went from {start:.3f} to {end:.3f} in {len(losses)} iterations "
                               f"({time.perf_counter() - t0:.0f} s)")
    # not only one term learns: the vertex loss drops too (the hard-pixel CE is a mean over a shrinking set of
    # pixels, so it need not fall monotonically)
    assert np.mean([p["vertex"] for p in parts[-3:]]) < 0.7 * parts[0]["vertex"]
    print(f"overfit: {start:.3f} -> {end:.3f} in {len(losses)} iterations, {time.perf_counter() - t0:.1f} s")
