"""The PoseCNN network in PoseCNN-PyTorch's (PT's) module layout, so PT checkpoints load key for key.

Trunk: VGG16 ``features[:30]`` (torchvision indices; taps after conv4_3's and conv5_3's ReLU, strides 8 and 16).
Dense heads: semantic scores and centre ("vertex") maps at input resolution. RoI heads: 7x7 max RoI pooling of
both taps (scales 1/8, 1/16) added together, the VGG classifier layers 0 and 3, then ``fc8`` (box class score),
``fc9`` (box deltas) and ``fc10`` (allocentric quaternion per class).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .roi_pool import roi_max_pool

__all__ = ["PoseCNN", "PIXEL_MEANS_BGR", "normalize_bgr", "SEMANTIC_UNITS", "VERTEX_UNITS", "POOL_SIZE",
           "trunk_channels", "TRUNK_CONVS", "label_map"]

PIXEL_MEANS_BGR = (102.98 / 255.0, 115.95 / 255.0, 122.77 / 255.0)
SEMANTIC_UNITS = 64  # PT's num_units
VERTEX_UNITS = 128   # 2 * num_units
POOL_SIZE = 7
_CONV4_TAP, _CONV5_TAP = 22, 29          # indices in `features` whose outputs are the taps
_EARLY_CONVS = (0, 2, 5, 7, 10, 12, 14)  # conv1_1 .. conv3_3, frozen by PT's TRAIN.FREEZE_LAYERS
# the trunk's convs by VGG name -> index in `features` (conv1_1 -> 0, ..., conv5_3 -> 28)
TRUNK_CONVS = {f"conv{b}_{k}": i for (b, k), i in zip(
    [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 1), (4, 2), (4, 3), (5, 1), (5, 2), (5, 3)],
    (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))}
# torchvision's VGG16 configuration up to conv5_3: conv output widths, "M" = 2x2 max pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def normalize_bgr(image: np.ndarray | Tensor, channels_last: bool = True) -> Tensor:
    """BGR image(s) -> network input: float32 [B, 3, H, W], scaled to [0, 1] minus ``PIXEL_MEANS_BGR``.

    ``image``: numpy array or tensor, [H, W, 3] or [B, H, W, 3] (OpenCV layout) when ``channels_last``, else
    [3, H, W] or [B, 3, H, W]. uint8 values are divided by 255; floating values must already be in [0, 1].
    The result stays on the input tensor's device. No padding is done here.
    """
    if isinstance(image, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, Tensor):
        x = image
    else:
        raise TypeError(f"image must be a numpy array or torch.Tensor, got {type(image).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(f"image must have 3 or 4 dimensions, got shape {tuple(x.shape)}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if channels_last:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] != 3:
        raise ValueError(f"image must have 3 (BGR) channels, got shape {tuple(image.shape)} "
                         f"(channels_last={channels_last})")
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    elif x.is_floating_point():
        x = x.to(torch.float32)
    else:
        raise TypeError(f"image must be uint8 or floating, got {x.dtype}")
    means = torch.tensor(PIXEL_MEANS_BGR, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - means).contiguous()


def trunk_channels(trunk_width: float = 1.0) -> list[int]:
    """Output widths of the 13 trunk convs for ``trunk_width`` w: round(c·w) but at least 8, c in VGG16's
    (64, 64, 128, 128, 256 ×3, 512 ×6). w = 1 gives VGG16 itself."""
    if isinstance(trunk_width, bool) or not isinstance(trunk_width, (int, float)) or not 0 < trunk_width <= 1e3:
        raise ValueError(f"trunk_width must be a positive number, got {trunk_width!r}")
    return [max(8, int(round(c * float(trunk_width)))) for c in _VGG16_CFG if c != "M"]


def label_map(scores: torch.Tensor) -> torch.Tensor:
    """Per-pixel class [B, H, W] int64 of dense scores [B, C, H, W]: the first maximal class, as ``argmax(1)``.
    Computed with ``max(1)``, which returns the same indices (ties included: the first maximum) but is ~5x
    faster on the CPU for a class axis that is not innermost (33 vs 6.5 ms at 640x480, 7 classes, one thread)."""
    return scores.max(dim=1).indices


def _vgg16_trunk(in_channels: int, trunk_width: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    widths = iter(trunk_channels(trunk_width))
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out = next(widths)
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = out
    return nn.Sequential(*layers)


def _conv1x1(in_ch: int, out_ch: int, relu: bool) -> nn.Module:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=1)
    return nn.Sequential(conv, nn.ReLU(inplace=True)) if relu else conv


class PoseCNN(nn.Module):
    """PoseCNN with PT's parameter names and shapes (48 tensors for a full model).

    num_classes: C, including the background. in_channels: 3 (BGR) or 6 (BGR + depth channels, PT's RGB-D).
    fc_dim: width of the RoI classifier (4096 = VGG; PT's "slim" variant uses 256).
    trunk_width: scales the trunk's conv widths (64·w, 128·w, 256·w, 512·w, rounded, at least 8; see
    :func:`trunk_channels`) for lighter models; the embeddings then take 512·w inputs and the RoI flatten size is
    512·w·49. Parameter names do not change; w = 1 (default) is VGG16, as in PT's checkpoints.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, fc_dim: int = 4096,
                 trunk_width: float = 1.0) -> None:
        super().__init__()
        for name, value, low in (("num_classes", num_classes, 2), ("in_channels", in_channels, 1),
                                 ("fc_dim", fc_dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.fc_dim = fc_dim
        widths = trunk_channels(trunk_width)  # validates trunk_width
        self.trunk_width = float(trunk_width)
        self.trunk_channels = widths[-1]  # conv4_3 and conv5_3 width (512 at w = 1)
        C = num_classes
        T = self.trunk_channels

        self.features = _vgg16_trunk(in_channels, trunk_width)
        self.classifier = nn.Sequential(
            nn.Linear(T * POOL_SIZE * POOL_SIZE, fc_dim), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc_dim, fc_dim), nn.ReLU(inplace=True), nn.Dropout(0.5))
        # semantic labelling branch
        self.conv4_embed = _conv1x1(T, SEMANTIC_UNITS, relu=True)
        self.conv5_embed = _conv1x1(T, SEMANTIC_UNITS, relu=True)
        self.conv_score = _conv1x1(SEMANTIC_UNITS, C, relu=True)
        # centre (vertex) regression branch: no activations
        self.conv4_vertex_embed = _conv1x1(T, VERTEX_UNITS, relu=False)
        self.conv5_vertex_embed = _conv1x1(T, VERTEX_UNITS, relu=False)
        self.conv_vertex_score = _conv1x1(VERTEX_UNITS, 3 * C, relu=False)
        # one dropout shared by both dense branches, as in PT (it has no parameters)
        self.dropout = nn.Dropout(0.5)
        # RoI heads
        self.fc8 = nn.Sequential(nn.Linear(fc_dim, C), nn.LeakyReLU(0.1, inplace=True))
        self.fc9 = nn.Linear(fc_dim, 4 * C)
        self.fc10 = nn.Linear(fc_dim, 4 * C)
        self._init_weights()

    def _init_weights(self) -> None:
        """PT's from-scratch init: He-normal convs with zero bias, VGG's N(0, 0.01) classifier; fc8-10 default.

        A light model (fc_dim != 4096 or trunk_width != 1, which no ImageNet VGG16 file can initialise) gets a
        He-normal classifier instead: N(0, 0.01) through two narrow layers nearly zeroes the RoI features and
        stalls training from scratch.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        vgg_shaped = self.fc_dim == 4096 and self.trunk_width == 1.0
        for m in self.classifier:
            if isinstance(m, nn.Linear):
                if vgg_shaped:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def freeze_early_convs(self, frozen: bool = True) -> None:
        """Stop (or restart) training of conv1_1..conv3_3, like PT's TRAIN.FREEZE_LAYERS."""
        for i in _EARLY_CONVS:
            for p in self.features[i].parameters():
                p.requires_grad_(not frozen)

    def parts(self) -> dict[str, nn.Module]:
        """The network's trainable parts by name: the trunk's convs (``conv1_1`` .. ``conv5_3``) and the other
        modules under their attribute names (``classifier``, ``fc8``, ``fc9``, ``fc10``, ``conv4_embed``, ...)."""
        named = {name: self.features[i] for name, i in TRUNK_CONVS.items()}
        named.update((name, m) for name, m in self.named_children()
                     if name != "features" and any(True for _ in m.parameters()))
        return named

    def train_only(self, names: list[str] | tuple[str, ...]) -> None:
        """Train only the parts named in ``names`` (see :meth:`parts`); every other parameter is frozen.
        Unknown names raise ValueError listing the known ones."""
        parts = self.parts()
        unknown = [n for n in names if n not in parts]
        if unknown:
            raise ValueError(f"unknown network part(s) {unknown}; known: {', '.join(parts)}")
        for p in self.parameters():
            p.requires_grad_(False)
        for n in names:
            for p in parts[n].parameters():
                p.requires_grad_(True)

    def _check_image(self, image: Tensor) -> None:
        if not isinstance(image, Tensor):
            raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"image must be [B, {self.in_channels}, H, W], got shape {tuple(image.shape)}")
        H, W = image.shape[-2:]
        if H % 16 or W % 16 or H == 0 or W == 0:
            raise ValueError(f"image height and width must be positive multiples of 16, got {H}x{W} "
                             "(pad the image first)")

    def trunk(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """VGG16 trunk -> (conv4 [B, T, H/8, W/8], conv5 [B, T, H/16, W/16]), both after ReLU; T = trunk_channels
        (512 at trunk_width 1)."""
        self._check_image(image)
        x = image
        conv4 = None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == _CONV4_TAP:
                conv4 = x
        assert conv4 is not None and len(self.features) == _CONV5_TAP + 1
        return conv4, x

    def _dense_branch(self, conv4: Tensor, conv5: Tensor, embed4: nn.Module, embed5: nn.Module,
                      score: nn.Module) -> Tensor:
        """PT's branch: embed4(conv4) + 2x-upsampled embed5(conv5), dropout, 8x bilinear upsampling, then the
        1x1 score conv (with its ReLU for the labels).

        Computed in a cheaper but equivalent order: the 1x1 conv runs *before* the 8x upsampling, on 1/64 of the
        pixels, and only its C (or 3C) outputs are upsampled instead of its 64 (or 128) inputs. Both are linear
        and bilinear weights sum to one, so conv(up(x)) = up(conv(x)), bias included, up to float rounding; the
        ReLU, which is not linear, stays after the upsampling. The upsampled maps come out in the default
        (contiguous) layout, which is what voting and argmax read."""
        up5 = F.interpolate(embed5(conv5), scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.dropout(embed4(conv4) + up5)
        conv, relu = (score[0], True) if isinstance(score, nn.Sequential) else (score, False)
        x = F.interpolate(conv(x).contiguous(), scale_factor=8.0, mode="bilinear", align_corners=False)
        return F.relu(x) if relu else x

    def dense(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Dense pass on a normalised [B, in_channels, H, W] image (H, W multiples of 16).

        Returns (scores [B, C, H, W] = conv_score output after its ReLU, before softmax;
        vertex [B, 3C, H, W]; conv4 [B, T, H/8, W/8]; conv5 [B, T, H/16, W/16]), T = ``trunk_channels``.
        """
        conv4, conv5 = self.trunk(image)
        scores = self._dense_branch(conv4, conv5, self.conv4_embed, self.conv5_embed, self.conv_score)
        vertex = self._dense_branch(conv4, conv5, self.conv4_vertex_embed, self.conv5_vertex_embed,
                                    self.conv_vertex_score)
        return scores, vertex, conv4, conv5

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Same as :meth:`dense`."""
        return self.dense(image)

    def roi_features(self, conv4: Tensor, conv5: Tensor, rois: Tensor, backend: str = "auto",
                     check_rois: bool = True) -> Tensor:
        """[R, 5] rois (batch, x1, y1, x2, y2 in input pixels) -> [R, fc_dim] shared RoI features; ``backend``
        chooses the RoI pooling implementation (``posecnn_core.ops.backend``). ``check_rois=False`` skips the
        compiled pooling's check of the batch column (which waits for a GPU) for callers that wrote that column
        themselves."""
        T = self.trunk_channels
        if conv4.dim() != 4 or conv5.dim() != 4 or conv4.shape[1] != T or conv5.shape[1] != T:
            raise ValueError(f"conv4/conv5 must be [B, {T}, h, w], got {tuple(conv4.shape)} and "
                             f"{tuple(conv5.shape)}")
        if conv4.shape[0] != conv5.shape[0]:
            raise ValueError(f"conv4 and conv5 batch sizes differ: {conv4.shape[0]} vs {conv5.shape[0]}")
        if not isinstance(rois, Tensor):
            raise TypeError(f"rois must be a torch.Tensor, got {type(rois).__name__}")
        rois = rois.to(torch.float32)  # PT's kernel reads RoIs as float32 whatever the feature dtype
        trusted = {} if check_rois else {"check_batch": False}
        pooled = (roi_max_pool(conv4, rois, POOL_SIZE, 1.0 / 8.0, backend=backend, **trusted)
                  + roi_max_pool(conv5, rois, POOL_SIZE, 1.0 / 16.0, backend=backend, **trusted))
        return self.classifier(pooled.flatten(1))

    def box_head(self, conv4: Tensor, conv5: Tensor, rois: Tensor, backend: str = "auto",
                 check_rois: bool = True) -> tuple[Tensor, Tensor]:
        """-> (class_scores [R, C] = fc8 output incl. its LeakyReLU, box_deltas [R, 4C] = fc9)."""
        x = self.roi_features(conv4, conv5, rois, backend, check_rois)
        return self.fc8(x), self.fc9(x)

    def rotation_head(self, conv4: Tensor, conv5: Tensor, rois: Tensor, backend: str = "auto",
                      check_rois: bool = True) -> Tensor:
        """-> raw quaternions [R, 4C] (fc10; (w, x, y, z) per class, allocentric, not normalised)."""
        return self.fc10(self.roi_features(conv4, conv5, rois, backend, check_rois))
