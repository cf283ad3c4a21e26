"""The training run: model, data, optimiser, schedule, checkpoints (with resume), logs and progress.

Checkpoints are our format (``posecnn_core.checkpoint``): the model weights and meta (class names, network size,
config) plus a ``train_state`` with the optimizer, scheduler, AMP scaler, epoch/iteration counters and RNG
states, all tensors or plain values so that ``torch.load(weights_only=True)`` reads them. Each file is also a
model checkpoint for the estimator. Data order, augmentation and RoI sampling are derived from (seed, epoch,
sample index / position), never from the rank layout, so a resumed run continues exactly as an uninterrupted one
would, with any world size that keeps the global batch (world_size x batch_size).

Data-parallel runs (torchrun) equal one process with the same global batch: every loss is normalised over the
global batch (``compute_losses(reduce_counts=...)``), so the gradients DDP averages are those of the global batch;
see docs/training.md ("Several GPUs") for what else this needs.
"""
from __future__ import annotations

import gc
import itertools
import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..checkpoint import (CheckpointError, CheckpointMeta, load_vgg16_imagenet, load_weights, read_state_dict,
                          read_train_state, save_checkpoint)
from ..files import atomic_replace
from ..network import PoseCNN
from ..objects import ObjectSet, load_object_set
from . import ddp
from .config import AugmentConfig, ConfigError, TrainConfig
from .crop_stream import CropStream
from .data import Batch, EpochSampler, TrainDataset, collate
from .logs import CsvLog, TensorBoardLog
from .loop import LOSS_NAMES, RoiPlanner, TrainModel, compute_losses
from .rotation_eval import RotationProbe, summarize
from .rotation_targets import RotationTargets

__all__ = ["Trainer", "TrainingError", "NO_INTERNET_HINT"]

log = logging.getLogger(__name__)

NO_INTERNET_HINT = ("This machine has no internet access, so nothing is downloaded: fetch torchvision's ImageNet "
                    "VGG16 weights (vgg16-397923af.pth, https://download.pytorch.org/models/vgg16-397923af.pth) "
                    "elsewhere and copy the file to that path (or point vgg16_init at it), or set "
                    "vgg16_init: null to train from scratch.")
ITER_FIELDS = ["epoch", "iteration", "lr", *LOSS_NAMES, "crop_pose", "rois", "fg_rois", "pose_rois", "seconds"]
EPOCH_FIELDS = ["epoch", "iterations", *LOSS_NAMES, "seconds"]
ROTATION_FIELDS = ["iteration", "instances", "median_deg", "mean_deg", "below_15", "below_30"]
ROI_STREAM = 0x526F49  # tags the RoI-sampling random streams apart from the augmentation's


def pt_lr_factor(iteration: int, iters_per_epoch: int, milestones: list[int], gamma: float) -> float:
    """PT's step schedule: PT steps its MultiStepLR at the start of every epoch, so during the e-th epoch
    (1-based) the learning rate is lr · gamma^(number of milestones m <= e)."""
    epoch = iteration // iters_per_epoch + 1
    return gamma ** sum(1 for m in milestones if epoch >= m)


class TrainingError(RuntimeError):
    """Training cannot start or continue (missing files, diverged loss, bad resume checkpoint)."""


def _atomic_copy(src: Path, dst: Path) -> None:
    with atomic_replace(dst) as tmp:
        shutil.copyfile(src, tmp)


def make_rotation_probe(cfg: TrainConfig, objects: ObjectSet, device: torch.device) -> RotationProbe:
    """The rotation check of a run: ``rotation_eval_frames`` frames spread evenly over ``rotation_eval_data`` (or
    the training data), without augmentation."""
    sources = [cfg.rotation_eval_data] if cfg.rotation_eval_data is not None else cfg.train_data
    if not sources:
        raise ConfigError("rotation_eval_interval: a crops-only run has no training frames to check the "
                          "rotation on; give rotation_eval_data")
    plain = TrainDataset(sources, objects, in_channels=cfg.in_channels, input_size=cfg.input_size,
                         augment=AugmentConfig(enabled=False), seed=cfg.seed, skip_bad=cfg.skip_bad_frames,
                         reference_focal=cfg.reference.focal)
    n = min(cfg.rotation_eval_frames, len(plain))
    idx = np.unique(np.linspace(0, len(plain) - 1, n).round().astype(int))
    return RotationProbe(plain, idx, ~objects.finite_symmetry, cfg.min_visible_pixels, device,
                         symmetry_groups=objects.symmetry_groups)


class Trainer:
    """Builds everything from a :class:`TrainConfig`; :meth:`train` runs until ``epochs`` (or ``max_iters``).

    ``env``: distributed environment (default: read torchrun's variables); ``init_method``: process-group
    rendezvous (default env://). ``objects``: an already loaded ObjectSet instead of ``cfg.objects``.
    """

    def __init__(self, cfg: TrainConfig, env: ddp.DistEnv | None = None, init_method: str | None = None,
                 objects: ObjectSet | None = None) -> None:
        cfg.validate()
        cfg.check_ready()
        self.cfg = cfg
        self.env = env if env is not None else ddp.env_from_environ()
        self.device = ddp.resolve_device(cfg.device, self.env)
        ddp.init_distributed(self.env, self.device, init_method, timeout_s=cfg.dist_timeout_s)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.objects = objects if objects is not None else load_object_set(cfg.objects, models_root=cfg.models_root)
        C = self.objects.num_classes
        self.reference_camera = cfg.reference
        self.dataset = None if cfg.crops.only else TrainDataset(  # crops.only: no frames are read
            cfg.train_data, self.objects, in_channels=cfg.in_channels, input_size=cfg.input_size,
            augment=cfg.augment, seed=cfg.seed, skip_bad=cfg.skip_bad_frames,
            reference_focal=self.reference_camera.focal)
        self.global_batch = cfg.batch_size * self.env.world_size
        self.iters_per_epoch = cfg.iters_per_epoch or max(1, len(self.dataset) // self.global_batch)
        self.total_iters = cfg.epochs * self.iters_per_epoch
        if cfg.max_iters is not None:
            self.total_iters = min(self.total_iters, cfg.max_iters)
        self.sampler = None if self.dataset is None else EpochSampler(
            len(self.dataset), self.iters_per_epoch * cfg.batch_size, seed=cfg.seed, rank=self.env.rank,
            world_size=self.env.world_size)

        resume = self._resume_path()
        if resume is None and cfg.vgg16_init is not None and not Path(cfg.vgg16_init).is_file():
            raise TrainingError(f"vgg16_init: ImageNet VGG16 weights not found at {cfg.vgg16_init}. "
                                f"{NO_INTERNET_HINT}")
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.net = PoseCNN(C, in_channels=cfg.in_channels, fc_dim=cfg.fc_dim, trunk_width=cfg.trunk_width)
        if resume is None and cfg.vgg16_init is not None:
            self._load_vgg16(Path(cfg.vgg16_init))
        if resume is None and cfg.init_weights is not None:
            self._load_init_weights(Path(cfg.init_weights))
        for m in self.net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = cfg.dropout
        if cfg.freeze_early_convs:  # pretrained early convs (ImageNet or init_weights) stay as they are
            if cfg.vgg16_init is None and cfg.init_weights is None:
                raise ConfigError("freeze_early_convs: true needs pretrained weights (vgg16_init or init_weights); "
                                  "it would freeze randomly initialised convolutions")
            self.net.freeze_early_convs(True)
        if cfg.trainable is not None:  # only these parts train (e.g. conv5 and the rotation head on crops)
            try:
                self.net.train_only(cfg.trainable)
            except ValueError as exc:
                raise ConfigError(f"field 'trainable': {exc}") from exc
            if cfg.freeze_early_convs:
                self.net.freeze_early_convs(True)
        if cfg.channels_last:  # a memory layout only: about 20 % faster convolutions on the CPU (oneDNN)
            self.net = self.net.to(memory_format=torch.channels_last)
        self.model = ddp.wrap_model(TrainModel(self.net).to(self.device), self.env, self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.base_lr = cfg.lr * (self.global_batch / cfg.lr_reference_batch if cfg.lr_scaling == "linear" else 1.0)
        if self.env.is_main and self.base_lr != cfg.lr:
            log.info("lr %.4g x global batch %d / %d (lr_scaling: linear) = %.4g", cfg.lr, self.global_batch,
                     cfg.lr_reference_batch, self.base_lr)
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=self.base_lr, momentum=cfg.momentum,
                                             weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=self.base_lr, weight_decay=cfg.weight_decay)
        ipe, milestones, gamma = self.iters_per_epoch, list(cfg.lr_milestones), cfg.lr_gamma
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: pt_lr_factor(it, ipe, milestones, gamma))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        pts, counts = self.objects.points_tensor(self.device, max_points=cfg.pose_points)
        self.points, self.point_counts = pts, counts
        self.rotation_targets = RotationTargets(self.objects, cfg.rotation_targets, self.device)
        self.extents = torch.as_tensor(np.asarray(self.objects.extents, dtype=np.float32), device=self.device)
        self.rotation_probe = self._rotation_probe() if cfg.rotation_eval_interval and self.env.is_main else None
        self.crop_stream = CropStream(cfg, self.objects, self.device, self.env) if cfg.crops.enabled else None
        self.iteration = 0
        torch.manual_seed(cfg.seed + 1000003 * self.env.rank)  # dropout stream of this rank
        if resume is not None:
            self._resume(resume)
        first, last = ddp.min_max(self.iteration, self.env, self.device)
        if first != last:
            raise TrainingError(f"the processes start at different iterations ({first} to {last}; this one, rank "
                                f"{self.env.rank}, at {self.iteration}): every process must read the same resume "
                                "checkpoint (resume: auto needs an output_dir that all machines share)")
        self.last_losses: dict[str, float] = {}

    # -- setup helpers --------------------------------------------------------------------------------------
    def _rotation_probe(self) -> RotationProbe:
        return make_rotation_probe(self.cfg, self.objects, self.device)

    def _resume_path(self) -> Path | None:
        r = self.cfg.resume
        if r is None:
            return None
        if r == "auto":
            latest = self.cfg.checkpoint_path / "latest.pt"
            return latest if latest.is_file() else None
        path = Path(r)
        if not path.is_file():
            raise TrainingError(f"resume: checkpoint {path} does not exist")
        return path

    def _load_vgg16(self, path: Path) -> None:
        if not path.is_file():
            raise TrainingError(f"vgg16_init: ImageNet VGG16 weights not found at {path}. {NO_INTERNET_HINT}")
        try:
            report = load_vgg16_imagenet(self.net, path)
        except CheckpointError as exc:
            raise TrainingError(f"vgg16_init: {exc}") from exc
        if self.env.is_main:
            log.info("initialised the trunk from %s (%d tensors)", path, len(report.loaded))

    def _load_init_weights(self, path: Path) -> None:
        """Start from another checkpoint's weights (fine-tuning); every key and shape must match the model, except
        the keys under ``init_exclude`` prefixes, which keep their fresh initialisation (and are listed)."""
        prefixes = tuple(self.cfg.init_exclude)
        try:
            state_dict, _ = read_state_dict(path)
            if prefixes:
                own = self.net.state_dict()
                unused = [p for p in prefixes if not any(k.startswith(p) for k in own)]
                if unused:
                    raise TrainingError(f"init_exclude: no weight of the model starts with {unused}")
                fresh = {k: v for k, v in own.items() if k.startswith(prefixes)}
                state_dict = {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}
                state_dict.update(fresh)
            load_weights(self.net, state_dict)  # copying casts float16 checkpoints to the model's float32
        except CheckpointError as exc:
            raise TrainingError(f"init_weights: {exc}") from exc
        if self.env.is_main:
            log.info("initialised the weights from %s (%d tensors)", path, len(state_dict) - len(fresh)
                     if prefixes else len(state_dict))
            if prefixes:
                log.info("init_exclude: %d tensors keep their fresh initialisation: %s", len(fresh),
                         ", ".join(sorted(fresh)))

    def _resume(self, path: Path) -> None:
        try:
            state_dict, meta = read_state_dict(path)
            state = read_train_state(path)
        except CheckpointError as exc:
            raise TrainingError(f"resume: {exc}") from exc
        if state is None:
            raise TrainingError(f"resume: {path} holds weights but no training state (not a training checkpoint)")
        saved_batch = state.get("global_batch")
        if saved_batch is not None and int(saved_batch) != self.global_batch:
            raise TrainingError(
                f"resume: {path} was trained with a global batch of {int(saved_batch)} ({state.get('world_size')} "
                f"process(es) x batch_size {state.get('batch_size')}), this run has {self.global_batch} "
                f"({self.env.world_size} x {self.cfg.batch_size}); iterations, epochs and the data order are "
                f"counted in global batches, so keep world_size x batch_size (set batch_size accordingly)")
        if meta is not None and meta.class_names is not None and meta.class_names != self.objects.class_names:
            raise TrainingError(f"resume: {path} was trained for classes {meta.class_names}, the config's object "
                                f"set has {self.objects.class_names}")
        ref = meta.reference_camera if meta is not None else None
        if ref is not None and not math.isclose(ref.focal, self.reference_camera.focal, rel_tol=1e-6):
            raise TrainingError(f"resume: {path} was trained with reference_camera focal length {ref.focal:.3f} px "
                                f"({ref.to_dict()}), the config has {self.reference_camera.focal:.3f} px "
                                f"({self.reference_camera.to_dict()}); its depth head would get other targets")
        try:
            load_weights(self.net, state_dict)
        except CheckpointError as exc:
            raise TrainingError(f"resume: {path} does not fit the configured network: {exc}") from exc
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        if self.env.rank == 0 and isinstance(state.get("torch_rng"), torch.Tensor):
            torch.set_rng_state(state["torch_rng"])
        else:
            torch.manual_seed(self.cfg.seed + 1000003 * self.env.rank + self.iteration)
        cuda_rng = state.get("cuda_rng")
        if self.device.type == "cuda" and self.env.rank == 0 and isinstance(cuda_rng, torch.Tensor):
            torch.cuda.set_rng_state(cuda_rng, self.device)
        if self.env.is_main:
            log.info("resumed from %s at iteration %d", path, self.iteration)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def meta(self) -> CheckpointMeta:
        return CheckpointMeta(num_classes=self.objects.num_classes, in_channels=self.cfg.in_channels,
                              fc_dim=self.cfg.fc_dim, trunk_width=self.cfg.trunk_width,
                              class_names=list(self.objects.class_names), reference_camera=self.reference_camera,
                              rotation_crop_size=self.cfg.rotation_crop_size,
                              extra={"config": self.cfg.to_dict(), "object_set": self.objects.name,
                                     "iteration": self.iteration,
                                     "epoch": self.iteration // self.iters_per_epoch})

    def train_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.amp else {}, "iteration": self.iteration,
            "iters_per_epoch": self.iters_per_epoch, "torch_rng": torch.get_rng_state(),
            "global_batch": self.global_batch, "world_size": self.env.world_size, "batch_size": self.cfg.batch_size}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self) -> Path | None:
        """Write ``iter_<N>.pt`` and ``latest.pt`` in the checkpoint directory (rank 0 only)."""
        if not self.env.is_main:
            return None
        d = self.cfg.checkpoint_path
        path = save_checkpoint(d / f"iter_{self.iteration:07d}.pt", self.net, self.meta(),
                               train_state=self.train_state())
        _atomic_copy(path, d / "latest.pt")
        return path

    def save_final(self) -> Path | None:
        """The trained model alone (no training state), float16 when ``save_half``: ``<output_dir>/model_final.pt``."""
        if not self.env.is_main:
            return None
        return save_checkpoint(Path(self.cfg.output_dir) / "model_final.pt", self.net, self.meta(),
                               half=self.cfg.save_half)

    # -- the loop -------------------------------------------------------------------------------------------
    def step_crops(self) -> dict[str, float]:
        """One optimisation step on this iteration's crops alone (``crops.only``); the frame losses are 0."""
        self.model.train()
        crop_pose = self.crop_stream.loss(self.net, self.iteration)
        if not math.isfinite(float(crop_pose.detach())):
            raise TrainingError(f"crop rotation loss is {float(crop_pose.detach())} at iteration {self.iteration}."
                                " Lower lr or check the view bank.")
        lr = self._optimise(self.cfg.crops.loss_weight * crop_pose)
        out = dict.fromkeys(LOSS_NAMES, 0.0)
        out["loss"] = self.cfg.crops.loss_weight * float(crop_pose.detach())
        out.update(crop_pose=float(crop_pose.detach()), lr=lr, rois=0, fg_rois=0, pose_rois=0)
        return out

    def _optimise(self, loss: Tensor) -> float:
        """Backward pass of ``loss`` and one optimiser and scheduler step; returns the learning rate used."""
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        # DDP averages the gradients over the processes; the global batch's gradient is the sum of the shares'
        self.scaler.scale(loss * self.env.world_size).backward()
        if self.cfg.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return lr

    def step(self, batch: Batch | None) -> dict[str, float]:
        """One optimisation step on ``batch`` (this process's part of the global batch); returns the losses and
        the RoI counts of the global batch, and the learning rate. ``None``: a crops-only step."""
        if batch is None:
            return self.step_crops()
        cfg, env = self.cfg, self.env
        batch = batch.to(self.device, non_blocking=True)
        epoch, step_in_epoch = divmod(self.iteration, self.iters_per_epoch)
        # one RoI random stream per sample, keyed by its position in the epoch's global order (not by rank)
        rngs = [np.random.default_rng([ROI_STREAM, cfg.seed, epoch, pos])
                for pos in self.sampler.positions(step_in_epoch, len(batch.frame_ids))]
        planner = RoiPlanner(batch, cfg, rngs, self.extents, self.reference_camera.focal,
                             global_batch=self.global_batch)
        self.model.train()
        image = batch.image.contiguous(memory_format=torch.channels_last) if cfg.channels_last else batch.image
        with torch.autocast(self.device.type, enabled=self.amp):
            outputs = self.model(image, planner)
        reduce_counts = (lambda c: ddp.all_reduce_sum(c, env)) if env.distributed else None
        rt = self.rotation_targets
        losses = compute_losses(outputs, batch, self.points, self.point_counts, rt.symmetric, self.extents, cfg,
                                reduce_counts=reduce_counts, targets=rt.targets)
        crop_pose = None
        if self.crop_stream is not None:
            crop_pose = self.crop_stream.loss(self.net, self.iteration)
            losses["loss"] = losses["loss"] + cfg.crops.loss_weight * crop_pose
        # the losses are this process's shares of the global batch's losses: summed over the processes they are
        # the global batch's; the RoI counts add up likewise
        box_t, pose_t = outputs.box_targets, outputs.pose_targets
        counts = torch.stack([box_t.classes.new_tensor(box_t.rois.shape[0]), (box_t.classes > 0).sum(),
                              box_t.classes.new_tensor(pose_t.classes.shape[0])]).float()
        local = torch.cat([torch.stack([losses[name].detach().float() for name in LOSS_NAMES]), counts])
        totals = ddp.all_reduce_sum(local, env).cpu().tolist()
        if not math.isfinite(totals[0]):
            where = f" on rank {env.rank}" if env.distributed else ""
            raise TrainingError(f"loss is {totals[0]} at iteration {self.iteration} (frames {batch.frame_ids}{where});"
                                f" parts: { {k: float(v.detach()) for k, v in losses.items()} }. Lower lr or check "
                                "the data.")
        lr = self._optimise(losses["loss"])
        out: dict[str, float] = dict(zip(LOSS_NAMES, totals))
        out["crop_pose"] = float(crop_pose.detach()) if crop_pose is not None else float("nan")
        out.update(lr=lr, rois=int(totals[-3]), fg_rois=int(totals[-2]), pose_rois=int(totals[-1]))
        return out

    def evaluate_rotation(self) -> dict[str, float] | None:
        """Rotation error of the rotation head on the probe frames (None without a probe)."""
        if self.rotation_probe is None:
            return None
        return {"iteration": self.iteration, **summarize(self.rotation_probe.errors(self.net)).as_row()}

    def _loader(self, epoch: int, start_iter: int) -> Iterable[Batch | None]:
        if self.cfg.crops.only:  # one None per remaining iteration of the epoch: step() makes the crops
            return itertools.repeat(None, self.iters_per_epoch - start_iter)
        self.sampler.set_epoch(epoch, start_iter * self.cfg.batch_size)
        self.dataset.set_epoch(epoch)
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.cfg.batch_size, sampler=self.sampler, num_workers=self.cfg.workers,
            collate_fn=collate, pin_memory=self.device.type == "cuda", drop_last=False,
            persistent_workers=False,
            # own generator: creating a loader must not consume the global RNG (dropout), so resuming
            # mid-epoch reproduces an uninterrupted run
            generator=torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch))

    def train(self) -> dict[str, Any]:
        """Train to ``total_iters``; returns {"iterations", "final_checkpoint", "last_losses", "seconds"}."""
        cfg, main = self.cfg, self.env.is_main
        iter_log = epoch_log = tb = rot_log = None
        if main:
            iter_log = CsvLog(cfg.log_path / "train_iterations.csv", ITER_FIELDS)
            epoch_log = CsvLog(cfg.log_path / "train_epochs.csv", EPOCH_FIELDS)
            if self.rotation_probe is not None:
                rot_log = CsvLog(cfg.log_path / "train_rotation_eval.csv", ROTATION_FIELDS)
                if self.iteration == 0:
                    self._log_rotation(rot_log)
            if self.iteration > 0:  # rows an interrupted run wrote after this checkpoint are written again
                dropped = iter_log.drop_after("iteration", self.iteration)
                dropped += epoch_log.drop_after("epoch", self.iteration // self.iters_per_epoch - 1)
                if rot_log is not None:
                    dropped += rot_log.drop_after("iteration", self.iteration)
                if dropped:
                    log.info("dropped %d log rows written after iteration %d by the interrupted run", dropped,
                             self.iteration)
            if cfg.tensorboard:
                try:
                    tb = TensorBoardLog(cfg.log_path)
                except RuntimeError as exc:
                    print(f"warning: {exc}", file=sys.stderr)
        bar = tqdm(total=self.total_iters, initial=self.iteration, disable=not (main and cfg.progress),
                   desc="train", dynamic_ncols=True)
        t_run = time.perf_counter()
        try:
            while self.iteration < self.total_iters:
                epoch = self.iteration // self.iters_per_epoch
                start = self.iteration % self.iters_per_epoch
                sums = dict.fromkeys(LOSS_NAMES, 0.0)
                count, t_epoch = 0, time.perf_counter()
                for batch in self._loader(epoch, start):
                    t0 = time.perf_counter()
                    values = self.step(batch)
                    self.iteration += 1
                    count += 1
                    for k in LOSS_NAMES:
                        sums[k] += values[k]
                    self.last_losses = values
                    if main:
                        iter_log.write({"epoch": epoch, "iteration": self.iteration,
                                        "seconds": time.perf_counter() - t0, **values})
                        if tb is not None:
                            tb.scalars({k: values[k] for k in (*LOSS_NAMES, "lr")}, self.iteration)
                        bar.update(1)
                        bar.set_postfix(loss=f"{values['loss']:.4f}", epoch=epoch)
                    if rot_log is not None and self.iteration % cfg.rotation_eval_interval == 0:
                        self._log_rotation(rot_log)
                    if self.iteration % cfg.checkpoint_interval == 0:
                        self.save()
                    if self.iteration >= self.total_iters:
                        break
                epoch_done = self.iteration % self.iters_per_epoch == 0
                if main and count:
                    epoch_log.write({"epoch": epoch, "iterations": count, "seconds": time.perf_counter() - t_epoch,
                                     **{k: v / count for k, v in sums.items()}})
                if (epoch_done or self.iteration >= self.total_iters) \
                        and self.iteration % cfg.checkpoint_interval != 0:
                    self.save()
                if count == 0:  # nothing left in this epoch's share (cannot happen with a consistent sampler)
                    break
            final = self.save_final()
            ddp.barrier(self.env)  # every process leaves together (none tears down while rank 0 still writes)
        finally:
            bar.close()
            if tb is not None:
                tb.close()
        return {"iterations": self.iteration, "final_checkpoint": final, "last_losses": self.last_losses,
                "seconds": time.perf_counter() - t_run}

    def _log_rotation(self, rot_log: CsvLog) -> None:
        row = self.evaluate_rotation()
        if row is None:
            return
        rot_log.write(row)
        log.info("iteration %d: rotation error on %d probe objects: median %.1f deg, < 30 deg %.0f %%",
                 row["iteration"], row["instances"], row["median_deg"], 100 * row["below_30"])

    def close(self) -> None:
        """Release the process group. The DistributedDataParallel wrapper holds a reference to it, so the wrapper
        goes first: a group that outlives destroy_process_group is torn down only at interpreter exit, where gloo's
        threads can abort the process (seen as SIGABRT of a rank after a finished run)."""
        if self.env.distributed:
            self.model = ddp.unwrap(self.model)
            gc.collect()
        ddp.shutdown(self.env)

