"""The crop stream of a training run (``crops:`` in the config): each iteration, a batch of object-centred crops
(``posecnn_core.train.crops``) through the trunk and the rotation head, and their rotation loss.

Crop i of iteration n comes from the random stream (seed, n, i) alone, so a resumed run makes the same crops as
an uninterrupted one.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from ..losses import point_matching_loss, pose_loss
from ..network import PoseCNN, normalize_bgr
from ..objects import ObjectSet
from . import ddp
from .config import ConfigError, TrainConfig
from .crops import CropBatch, CropSettings, ViewBank, make_crop_batch
from .rotation_targets import RotationTargets

__all__ = ["CropStream", "CROP_STREAM"]

CROP_STREAM = 0x43524F50  # "CROP": the crops' random streams, apart from the frames' and the RoIs'


class CropStream:
    """Makes each iteration's crops and computes their rotation loss with the network being trained."""

    REFRESH_EVERY = 50

    def __init__(self, cfg: TrainConfig, objects: ObjectSet, device: torch.device, env: ddp.DistEnv) -> None:
        c = cfg.crops
        if env.distributed:
            raise ConfigError("crops: the crop stream is not supported in data-parallel (torchrun) runs yet; "
                              "train with one process or set crops.bank: null")
        self.cfg = cfg
        self.device = device
        self.bank = ViewBank(c.bank, objects.class_names[1:])
        self.settings = CropSettings(canvas=c.canvas, size_min=c.size_min, size_max=c.size_max,
                                     occlusion_prob=c.occlusion_prob, max_occlusion=c.max_occlusion,
                                     roi_jitter=c.roi_jitter, resolution_min=c.resolution_min)
        self.photos = None
        if c.photo_dir is not None:
            from ..synth.photos import PhotoCollection

            self.photos = PhotoCollection.load(c.photo_dir)
        self.frames = None
        if c.frame_fraction > 0:
            from .frame_crops import FrameCrops

            self.frames = FrameCrops(c.frame_data if c.frame_data is not None else cfg.train_data, c.canvas,
                                     c.size_min, c.size_max, c.roi_jitter, cfg.min_visible_pixels)
        self.photometric = None
        if c.photometric and cfg.augment.enabled:
            self.photometric = dataclasses.replace(cfg.augment.for_source(True), background_prob=0.0)
        pts, counts = objects.points_tensor(device, max_points=cfg.pose_points)
        self.points, self.point_counts = pts, counts
        self.rotation_targets = RotationTargets(objects, cfg.rotation_targets, device)
        self.symmetric = self.rotation_targets.symmetric
        self.extents = torch.as_tensor(np.asarray(objects.extents, dtype=np.float32), device=device)

    def batch(self, iteration: int) -> CropBatch:
        """The crops of ``iteration`` (deterministic for the config's seed)."""
        S = self.settings.canvas
        if iteration % self.REFRESH_EVERY == 0 and len(self.bank) < self.bank.views_total:
            self.bank.refresh()  # a bank still being rendered: use the views written since
        rngs = [np.random.default_rng([CROP_STREAM, self.cfg.seed, iteration, i])
                for i in range(self.cfg.crops.batch_size)]
        if self.photos is not None:
            backgrounds = [self.photos.sample(rng, S, S) for rng in rngs]
        else:
            from ..synth.backgrounds import random_background

            backgrounds = [random_background(rng, S, S) for rng in rngs]
        return make_crop_batch(self.bank, rngs, self.settings, backgrounds, self.photometric, self.frames,
                               self.cfg.crops.frame_fraction)

    def loss(self, net: PoseCNN, iteration: int) -> Tensor:
        """Rotation loss of ``iteration``'s crops (differentiable w.r.t. the trunk and the RoI heads)."""
        image, rois, classes, q_gt = self.batch(iteration).tensors(self.device)
        x = normalize_bgr(image)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        conv4, conv5 = net.trunk(x)
        q = net.rotation_head(conv4, conv5, rois)
        n = classes.shape[0]
        q_pred = q.view(n, -1, 4)[torch.arange(n, device=q.device), classes].float()
        q_gt = self.rotation_targets.targets(q_pred, q_gt, classes)
        if self.cfg.rotation_loss == "pt":
            return point_matching_loss(q_pred, q_gt, self.points[classes], self.extents[classes],
                                       self.symmetric[classes], hard_angle=self.cfg.hard_angle,
                                       point_counts=self.point_counts[classes])
        return pose_loss(q_pred, q_gt, self.points[classes], self.point_counts[classes], self.symmetric[classes])
