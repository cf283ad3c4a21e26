"""Test-only torchrun entry point: ``posecnn-train`` (``posecnn_core.train.cli.main``) with spies and faults.

    python -m torch.distributed.run --standalone --nproc_per_node=2 test/_ddp_worker.py --set ...

Environment (all optional; without them this is exactly ``python -m posecnn_core.train``):

- ``POSECNN_TEST_RANK_DIRS=1``: each process works in its own directory ``./rank<RANK>`` (created), so that
  whatever a rank writes under a relative ``output_dir`` can be told apart;
- ``POSECNN_TEST_FRAMES=DIR``: each process appends ``<iteration> <frame id>`` for every frame it trains on to
  ``DIR/frames_rank<RANK>.txt``;
- ``POSECNN_TEST_FAIL=R:I:MODE``: process R, at the step of iteration I (1-based), raises a RuntimeError
  (MODE ``raise``) or stops answering (MODE ``hang``: sleeps for an hour).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def _install_spies(rank: int) -> None:
    from posecnn_core.train.trainer import Trainer

    frames_dir = os.environ.get("POSECNN_TEST_FRAMES")
    fail = os.environ.get("POSECNN_TEST_FAIL")
    fail_rank, fail_iter, fail_mode = (-1, -1, "")
    if fail:
        r, i, fail_mode = fail.split(":")
        fail_rank, fail_iter = int(r), int(i)
        if fail_mode not in ("raise", "hang"):
            raise ValueError(f"POSECNN_TEST_FAIL mode must be raise or hang, got {fail_mode!r}")
    original = Trainer.step

    def step(self: Trainer, batch):  # type: ignore[no-untyped-def]
        iteration = self.iteration + 1
        if frames_dir:
            with open(Path(frames_dir) / f"frames_rank{rank}.txt", "a") as fh:
                fh.writelines(f"{iteration} {fid}\n" for fid in batch.frame_ids)
        if rank == fail_rank and iteration == fail_iter:
            if fail_mode == "raise":
                raise RuntimeError(f"injected failure on rank {rank} at iteration {iteration}")
            time.sleep(3600)
        return original(self, batch)

    Trainer.step = step  # type: ignore[method-assign]


def main() -> int:
    rank = int(os.environ.get("RANK", "0"))
    if os.environ.get("POSECNN_TEST_RANK_DIRS") == "1":
        here = Path.cwd() / f"rank{rank}"
        here.mkdir(exist_ok=True)
        os.chdir(here)
    _install_spies(rank)
    from posecnn_core.train.cli import main as train_main

    return train_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
