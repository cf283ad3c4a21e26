"""``posecnn-train --config cfg.yaml [--set key=value ...]`` (also ``python -m posecnn_core.train``).

Multi-GPU: ``torchrun --standalone --nproc_per_node=N -m posecnn_core.train --config cfg.yaml`` (docs/training.md).
Errors (config, data, checkpoints, files, a diverging loss, and under torchrun a collective that timed out) are
one line on stderr (naming the rank under torchrun) and exit status 2; torchrun then stops the other processes.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import yaml

from .config import ConfigError, load_config

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posecnn-train", description=(
        "Train PoseCNN on datasets in the YCB-Video layout. Defaults reproduce PoseCNN-PyTorch's YCB-Video "
        "recipe; see config/train/*.yaml. Multi-GPU: torchrun --nproc_per_node=N -m posecnn_core.train ..."))
    p.add_argument("--config", help="YAML training config (fields of posecnn_core.train.config.TrainConfig)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (dotted keys, YAML values), e.g. --set max_iters=100 "
                        "--set augment.noise_or_blur_prob=0; repeatable")
    p.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):  # under torchrun: an unexpected exception's traceback also
        from torch.distributed.elastic.multiprocessing.errors import record  # goes to its failure summary

        return record(_train)(cfg)
    return _train(cfg)


def _train(cfg) -> int:  # noqa: ANN001 (TrainConfig; torch-heavy imports only when training)
    from ..checkpoint import CheckpointError
    from ..datasets.ycb import BadFrameFileError
    from .ddp import env_from_environ
    from .trainer import Trainer, TrainingError

    env = env_from_environ()
    where = f"[rank {env.rank} of {env.world_size}] " if env.distributed else ""

    def fail(exc: BaseException) -> int:
        print(f"error: {where}{' '.join(str(exc).split())}", file=sys.stderr)
        return 2

    failures = (ConfigError, TrainingError, CheckpointError, BadFrameFileError, OSError, ValueError)
    try:
        trainer = Trainer(cfg, env=env)
    except failures as exc:
        return fail(exc)
    try:
        summary = trainer.train()
    except failures as exc:
        return fail(exc)
    except RuntimeError as exc:
        if not (env.distributed and "timed out" in str(exc).lower()):
            raise
        print(f"error: {where}a collective operation timed out after dist_timeout_s = {cfg.dist_timeout_s:g} s: "
              f"another process failed or stalled ({' '.join(str(exc).split())})", file=sys.stderr)
        return 2
    finally:
        trainer.close()
    if trainer.env.is_main:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in summary["last_losses"].items()
                           if k in ("loss", "semantic", "vertex", "box_class", "box_reg", "pose"))
        print(f"trained {summary['iterations']} iterations in {summary['seconds']:.1f} s; last: {losses}; "
              f"model: {summary['final_checkpoint']}")
    return 0
