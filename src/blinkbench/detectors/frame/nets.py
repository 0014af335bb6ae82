"""The frame-level CNNs as plain ``nn.Module``s (reusable by Lightning, foolbox and export).

Every network here takes RGB face crops ``(B, 3, H, W)``, float in [0, 1], and returns one
logit per image, shape ``(B,)``, for the class *fake* (``sigmoid(logit)`` = fake
probability). Resizing to the architecture's input size and input normalisation happen
inside ``forward``, so an attack in pixel space works on the crop itself with bounds (0, 1)
and its gradient reaches the pixels through both steps.

- ``TimmNet``: a timm backbone built with ``pretrained=False`` (nothing is downloaded), its
  convolutional trunk (``forward_features``), then the common deepfake-detection head:
  global average pooling, dense ``hidden`` + ReLU, dropout, linear to 1.

  ========== ======================== ========== ===============================
  name       timm model               paper size normalisation
  ========== ======================== ========== ===============================
  resnet50   ``resnet50``             224        ImageNet mean/std
  vgg19      ``vgg19_bn``             224        ImageNet mean/std
  xception   ``legacy_xception``      299        0.5/0.5 (the FF++ Xception's)
  efficientnet_b4 ``efficientnet_b4`` 380        ImageNet mean/std
  ========== ======================== ========== ===============================

  ``legacy_xception`` is the Cadene/Keras Xception that FaceForensics++ fine-tuned (timm's
  ``xception41/65`` are the later aligned variants). VGG19 is timm's ``vgg19_bn`` (VGG19
  with batch norm, as torchvision's ``vgg19_bn``): nothing here is pretrained unless a
  checkpoint is given, and the batch-norm-free ``vgg19`` barely trains from scratch (on
  the tests' 8-crop batch its loss stayed at 0.693 for 15 steps at lr 1e-3 and reached
  0.57 in 6 at 1e-4, where ``vgg19_bn`` fits the batch). Its fc6/fc7 layers (a
  102M-parameter 7x7 "conv-MLP" in timm) are dropped in favour of the pooled head, the
  usual transfer recipe, which also keeps CPU training feasible.

- ``Meso4`` and ``MesoInception4``: MesoNet (Afchar et al., WIFS 2018) exactly as the
  authors' Keras code (github DariusAf/MesoNet ``classifiers.py``): conv(+bias, ReLU) ->
  batch norm (eps 1e-3, as Keras) -> max pool ('same'), four times; flatten; dropout 0.5;
  dense 16; LeakyReLU 0.1; dropout 0.5; dense 1 (the authors' sigmoid is applied by the
  caller). Inputs are the authors' [0, 1] pixels (no mean/std normalisation). The flatten
  is done in NHWC order, as Keras does, so the authors' dense kernels load unpermuted
  (:mod:`.mesonet_h5`). Pooling uses ``ceil_mode``, which equals Keras 'same' pooling at
  the paper's 256 px (all sizes divisible) and differs only in where the pad goes at
  other sizes.

Checkpoints (``checkpoint=path``, never downloaded): a full blinkbench state dict of the
same network, or for timm nets a timm/torchvision-style backbone state dict (classifier
keys are ignored; every backbone weight must be present), or for MesoNet the authors'
Keras ``.h5``. timm state dicts of the four backbones load, and torchvision's ResNet50 and
VGG19-BN ones (same key names); torchvision's EfficientNet and the FF++ repository's
wrapped Xception use other key names and need mapping to timm's first.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (timm model, paper input size, mean, std)
TIMM_ARCHS: dict[str, tuple[str, int, tuple, tuple]] = {
    "resnet50": ("resnet50", 224, IMAGENET_MEAN, IMAGENET_STD),
    "vgg19": ("vgg19_bn", 224, IMAGENET_MEAN, IMAGENET_STD),
    "xception": ("legacy_xception", 299, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "efficientnet_b4": ("efficientnet_b4", 380, IMAGENET_MEAN, IMAGENET_STD),
}
MESO_INPUT = 256
PAPER_INPUT_SIZE = {**{k: v[1] for k, v in TIMM_ARCHS.items()}, "meso4": MESO_INPUT, "mesoinception4": MESO_INPUT}

PREDICT_BATCH = 32     # crops per forward pass when predicting (converted batch by batch)


def to_tensor(crops) -> torch.Tensor:
    """Crops ``(n, H, W, 3)`` (uint8, or float in [0, 1]) as the networks' ``(n, 3, H, W)``
    float32 input in [0, 1]. Here, not beside the training code, so that predicting (re-scoring,
    evaluation, attacks) does not import Lightning (~3.5 s of CPU per process)."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected crops (n, H, W, 3), got shape {crops.shape}")
    if crops.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    elif np.issubdtype(crops.dtype, np.floating):
        if crops.size and (not np.isfinite(crops).all() or crops.min() < 0 or crops.max() > 1):
            raise ValueError("float crops must be finite and in [0, 1]")
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).permute(0, 3, 1, 2)
    else:
        raise ValueError(f"crops must be uint8 or float in [0, 1], got {crops.dtype}")
    return x.contiguous()


# Keys of classification heads in timm / torchvision / Cadene checkpoints (not loaded).
_CLASSIFIER_PREFIXES = ("fc.", "head.", "classifier.", "pre_logits.", "last_linear.")


class FrameNet(nn.Module):
    """Resize + normalise inside ``forward``; subclasses provide ``backbone`` and ``head``."""

    backbone: nn.Module
    head: nn.Module

    def __init__(self, input_size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if int(input_size) < 32:
            raise ValueError(f"input_size must be >= 32 pixels, got {input_size}")
        self.input_size = int(input_size)
        # persistent: the normalisation is part of the model and travels with its weights
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB crops of any size -> the backbone's normalised input."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) RGB crops, got shape {tuple(x.shape)}")
        s = self.input_size
        if tuple(x.shape[-2:]) != (s, s):
            # antialias: downsizing a 256 px crop without it aliases the very high-frequency
            # traces these detectors rely on (and that attacks perturb).
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.preprocess(x))).squeeze(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, d)``: the backbone's output as the head's first dense
        layer receives it (pooled for the timm nets: Xception's 2048-d pooled features;
        flattened for MesoNet). Differentiable; dropout acts only in train mode."""
        z = self.features(self.preprocess(x))
        for layer in self.head:
            if isinstance(layer, nn.Linear):
                return z
            z = layer(z)
        raise RuntimeError(f"{type(self).__name__}: head without a dense layer")


class TimmNet(FrameNet):
    """A timm backbone's trunk + pooled dense head (see the module docstring)."""

    def __init__(self, arch: str, input_size: int | None = None, hidden: int = 256, dropout: float = 0.5):
        if arch not in TIMM_ARCHS:
            raise ValueError(f"unknown timm arch {arch!r}; known: {sorted(TIMM_ARCHS)}")
        import timm

        timm_name, paper, mean, std = TIMM_ARCHS[arch]
        super().__init__(paper if input_size is None else input_size, mean, std)
        self.arch = arch
        # VGG's fc6/fc7 conv-MLP is replaced by our head: build it 1 channel wide (allocating
        # and initialising its 102M weights only to drop them costs seconds), then drop it.
        extra = {"mlp_ratio": 1 / 4096} if timm_name.startswith("vgg") else {}
        backbone = timm.create_model(timm_name, pretrained=False, num_classes=0, **extra)
        if hasattr(backbone, "pre_logits"):
            backbone.pre_logits = nn.Identity()
        self.backbone = backbone
        width = backbone.num_features if arch != "vgg19" else backbone.feature_info[-1]["num_chs"]
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(width, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


class _ConvBlock(nn.Sequential):
    """Keras ``Conv2D(activation='relu', padding='same')`` -> ``BatchNormalization`` -> ``MaxPooling2D('same')``."""

    def __init__(self, cin: int, cout: int, k: int, pool: int):
        super().__init__(nn.Conv2d(cin, cout, k, padding="same"), nn.ReLU(),
                         nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01), nn.MaxPool2d(pool, ceil_mode=True))


class Inception(nn.Module):
    """MesoInception's block ``InceptionLayer(a, b, c, d)``: four ReLU branches concatenated
    in the order 1x1 | 1x1-3x3 | 1x1-3x3 dilation 2 | 1x1-3x3 dilation 3."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(cin, a, 1), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(cin, b, 1), nn.ReLU(), nn.Conv2d(b, b, 3, padding="same"), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(cin, c, 1), nn.ReLU(), nn.Conv2d(c, c, 3, padding="same", dilation=2), nn.ReLU())
        self.b4 = nn.Sequential(nn.Conv2d(cin, d, 1), nn.ReLU(), nn.Conv2d(d, d, 3, padding="same", dilation=3), nn.ReLU())
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class _FlattenNHWC(nn.Module):
    """Keras' Flatten on channels-last tensors: (B, C, H, W) -> (B, H*W*C) in h, w, c order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


def _meso_head(flat: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(_FlattenNHWC(), nn.Dropout(dropout), nn.Linear(flat, 16), nn.LeakyReLU(0.1),
                         nn.Dropout(dropout), nn.Linear(16, 1))


def _meso_grid(size: int) -> int:
    """Spatial side after the pools 2, 2, 2, 4 (ceil, as 'same' pooling)."""
    for p in (2, 2, 2, 4):
        size = math.ceil(size / p)
    return size


class Meso4(FrameNet):
    """Meso-4 (Afchar et al. 2018); weights of the authors' Keras model load via :mod:`.mesonet_h5`."""

    def __init__(self, input_size: int = MESO_INPUT, dropout: float = 0.5):
        super().__init__(input_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.arch = "meso4"
        self.backbone = nn.Sequential(_ConvBlock(3, 8, 3, 2), _ConvBlock(8, 8, 5, 2), _ConvBlock(8, 16, 5, 2),
                                      _ConvBlock(16, 16, 5, 4))
        self.head = _meso_head(16 * _meso_grid(self.input_size) ** 2, dropout)


class MesoInception4(FrameNet):
    """MesoInception-4 (Afchar et al. 2018): two inception blocks (1,4,4,2) and (2,4,4,2),
    each followed by batch norm and 2x2 pooling, then two 5x5 conv blocks as in Meso-4."""

    def __init__(self, input_size: int = MESO_INPUT, dropout: float = 0.5):
        super().__init__(input_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.arch = "mesoinception4"
        i1, i2 = Inception(3, 1, 4, 4, 2), Inception(11, 2, 4, 4, 2)
        self.backbone = nn.Sequential(
            nn.Sequential(i1, nn.BatchNorm2d(i1.out_channels, eps=1e-3, momentum=0.01), nn.MaxPool2d(2, ceil_mode=True)),
            nn.Sequential(i2, nn.BatchNorm2d(i2.out_channels, eps=1e-3, momentum=0.01), nn.MaxPool2d(2, ceil_mode=True)),
            _ConvBlock(12, 16, 5, 2), _ConvBlock(16, 16, 5, 4))
        self.head = _meso_head(16 * _meso_grid(self.input_size) ** 2, dropout)


def gradient_view(net: nn.Module) -> nn.Module:
    """``net`` as an attack's input-gradient loop should call it: for a :class:`FrameNet` in
    eval mode, a :class:`GradientView` (the same function in fewer, smaller operations; same
    logits and input gradients up to floating-point rounding order); any other module, or a
    FrameNet in train mode, is returned as it is."""
    if (isinstance(net, FrameNet) and not net.training and type(net).forward is FrameNet.forward
            and type(net).preprocess is FrameNet.preprocess):
        return GradientView(net)
    return net


class GradientView(nn.Module):
    """A :class:`FrameNet` in eval mode, computed for input gradients (PGD's loop,
    :mod:`blinkbench.attacks.frame.base`). The same function as ``net.forward``; only the
    rounding order of some operations differs, and ``net`` is not modified (the view shares
    its layers). Measured on Meso-4 at 256 px, batch 8 of 240 px crops, one thread: one
    forward + input-gradient pass ~1.5x faster (``benchmarks/bench_attacks.py``).

    - resize: when the crop is upsampled (neither side larger than the input size) the
      antialiased bilinear resize is plain bilinear (align_corners=False): for scale factors
      >= 1 PyTorch's antialias filter has the bilinear support and the same weights
      (normalised at the borders, where plain bilinear clamps), so both are one linear map
      (float64: equal to 1e-17); the plain kernel is ~3x cheaper forward and backward.
      Downsizing keeps the antialiased resize;
    - normalisation: skipped when it is the identity (mean 0, std 1: MesoNet), where
      ``(x - 0) / 1`` is ``x`` exactly;
    - MesoNet blocks (conv -> ReLU -> batch norm -> max pool): max pooling moves in front of
      the ReLU and the eval-mode batch norm when every channel's batch-norm scale
      (``weight / sqrt(running_var + eps)``) is positive. Both are non-decreasing per
      channel, even rounded, so ``pool(bn(relu(c)))`` and ``bn(relu(pool(c)))`` are equal to
      the bit; ReLU and batch norm then run on a quarter (a sixteenth) of the values. The
      gradient can differ only where two values of a pooling window tie after rounding
      (the pool routes it to another pixel of the window). Each pool writes its input
      gradient into a buffer it keeps across calls (:class:`_ReusedGradPool`: the same
      kernel, the same values to the bit, no fresh 16 MB per call);
    - timm backbones (``TimmNet``) run as they are (only the resize and normalisation apply).

    How large "rounding order" is here: on the benchmark's Meso-4 crops the reference's own
    float32 input gradient differs in sign from its float64 gradient at ~0.3 % of the pixels
    (near-ties of max pooling); this view's float32 gradient differs from the reference's at
    about as many."""

    def __init__(self, net: "FrameNet"):
        super().__init__()
        if net.training:
            raise ValueError("GradientView: the network must be in eval mode (batch norm running statistics)")
        self.net = net
        self.identity_norm = bool(torch.all(net.mean == 0)) and bool(torch.all(net.std == 1))
        self.backbone = _pool_first(net.backbone) if type(net) in (Meso4, MesoInception4) else None

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) RGB crops, got shape {tuple(x.shape)}")
        s = net.input_size
        h, w = x.shape[-2:]
        if (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=h > s or w > s)
        return x if self.identity_norm else (x - net.mean) / net.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.preprocess(x)
        z = self.backbone(u) if self.backbone is not None else self.net.features(u)
        return self.net.head(z).squeeze(1)


def _monotone_bn(m: nn.Module) -> bool:
    """An eval-mode 2-d batch norm whose every channel is an increasing affine map."""
    if not isinstance(m, nn.BatchNorm2d) or m.training or not m.track_running_stats or m.running_var is None:
        return False
    return m.weight is None or bool(torch.all(m.weight > 0))


def _pool_first(seq: nn.Module) -> nn.Module:
    """``seq`` (a Sequential of Sequentials) with every max pool moved in front of the ReLUs
    and increasing batch norms that directly precede it, and computed by :class:`_ReusedGradPool`;
    the other layers are shared, not copied."""
    if not isinstance(seq, nn.Sequential):
        return seq
    layers = [_pool_first(m) for m in seq]
    moved = True
    while moved:
        moved = False
        for i in range(len(layers) - 1):
            a, b = layers[i], layers[i + 1]
            if (isinstance(b, nn.MaxPool2d) and not b.return_indices
                    and (isinstance(a, nn.ReLU) or _monotone_bn(a))):
                layers[i], layers[i + 1] = b, a
                moved = True
    return nn.Sequential(*[_ReusedGradPool(m) if type(m) is nn.MaxPool2d and not m.return_indices else m
                           for m in layers])


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(a) for a in v]


class _ReusedGradPool(nn.Module):
    """``pool`` (an ``nn.MaxPool2d``) whose backward pass writes the input gradient into one
    buffer this module keeps, instead of a fresh one per call: the same ATen kernel
    (``max_pool2d_with_indices_backward``, its ``out=`` form), so the same values to the bit.

    Why: PGD calls forward and backward ten times per batch on same-shaped crops, and the
    pool's input gradient is the largest tensor of the pass (Meso-4: 8 x 8 x 256 x 256 floats,
    16 MB). Fresh, it costs page faults on every call (glibc hands large blocks back to the
    kernel when freed); reused, a ``zero_`` over warm pages. Measured on Meso4_DF.h5, batch 8 of
    240 px face crops, one thread: PGD 9.39 -> 11.48 crops/s, the same perturbations to the bit
    (``benchmarks/bench_attacks.py --before-after 20``).

    The buffer is returned as the gradient of an intermediate tensor (never of a leaf, the
    caller's own input, which gets the plain pool): autograd never adds into a gradient that
    anything else references, and the next call overwrites it only after this pass is
    consumed. A :class:`GradientView` (and so these modules) is built per attack call, so
    concurrent calls never share a buffer. ``create_graph`` (double backward) is not supported."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel_size, self.dilation = _pair(pool.kernel_size), _pair(pool.dilation)
        self.stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
        self.padding, self.ceil_mode = _pair(pool.padding), bool(pool.ceil_mode)
        self.grad_buffer: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad) or x.grad_fn is None:
            # no gradient, or the caller's own tensor (its gradient is handed back to the
            # caller, who may keep it): the plain pool
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        return _ReusedGradPoolFn.apply(x, self)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, ceil_mode={self.ceil_mode}"


class _ReusedGradPoolFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, pool: _ReusedGradPool) -> torch.Tensor:
        out, idx = torch.ops.aten.max_pool2d_with_indices(x, pool.kernel_size, pool.stride, pool.padding,
                                                           pool.dilation, pool.ceil_mode)
        ctx.save_for_backward(x, idx)
        ctx.pool = pool
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, idx = ctx.saved_tensors
        pool = ctx.pool
        buf = pool.grad_buffer
        if (buf is None or buf.shape != x.shape or buf.stride() != x.stride() or buf.dtype != grad_out.dtype
                or buf.device != x.device):
            buf = pool.grad_buffer = torch.empty_strided(x.shape, x.stride(), dtype=grad_out.dtype, device=x.device)
        torch.ops.aten.max_pool2d_with_indices_backward(grad_out, x, pool.kernel_size, pool.stride, pool.padding,
                                                        pool.dilation, pool.ceil_mode, idx, grad_input=buf)
        return buf, None


class TwoClassLogits(nn.Module):
    """``(B,)`` fake logit ``z`` -> ``(B, 2)`` logits ``[0, z]`` (class 1 = fake): the same
    probabilities under softmax as ``sigmoid(z)``, in the shape foolbox's classification
    attacks expect. A ``(B, 1)`` output is flattened first. The one definition: the frame
    attacks (:mod:`blinkbench.attacks.frame.base`) import it from here."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x).reshape(-1)
        return torch.stack([torch.zeros_like(z), z], dim=1)

