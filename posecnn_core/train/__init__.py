"""PoseCNN training: config (YAML), data pipeline, training step, DDP plumbing, the run loop and the CLI.

``posecnn-train --config config/train/demo.yaml`` or ``torchrun --nproc_per_node=N -m posecnn_core.train ...``.
"""
from .config import AugmentConfig, ConfigError, DataSource, TrainConfig, load_config

__all__ = ["AugmentConfig", "ConfigError", "DataSource", "TrainConfig", "load_config"]
