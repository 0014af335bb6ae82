"""EOT-robust PGD: expectation over the transformations that compression and re-encoding apply.

Plain PGD optimises the crop the detector sees *now*; after H.264 or JPEG re-encoding and a
fresh face detection the detector sees a blurred, re-quantised, slightly shifted and
rescaled version of it, which can undo a perturbation that sat just past the boundary.
Expectation over transformation (Athalye et al., ICML 2018) replaces the loss by its mean
over random transformations ``t``:

    delta <- Proj_eps( delta - alpha * sign( mean_k grad_delta L(f(t_k(x + delta))) ) )

with ``L`` the same cross-entropy towards "real" as :class:`~.base.PGD` (``softplus(z)`` for
the fake logit ``z``), ``samples`` transformations drawn afresh at every step, the same
random start, step (``rel_step_size * eps``) and projection as PGD. Each sample chains the
enabled ``transforms``, in the order compression then re-detection meets them:

- ``blur``: Gaussian blur, sigma ~ U(0, ``blur_sigma_max``) px of the crop;
- ``jpeg``: JPEG at quality ~ U{``jpeg_quality_min`` .. ``jpeg_quality_max``}, through a
  differentiable JPEG (:func:`jpeg`): YCbCr, 4:2:0 chroma, 8x8 DCT, the standard tables
  scaled by quality (IJG), rounding with a straight-through estimator (forward: the exact
  rounding; backward: identity), inverse DCT;
- ``noise``: additive Gaussian noise, std ~ U(0, ``noise_std_max``) levels (0-255);
- ``resize``: down/up-scaling by s ~ U(1 - ``resize_max``, 1 + ``resize_max``) and back to
  the crop's size (bilinear, antialiased), as a re-detected box of another size resamples;
- ``translate``: a shift of up to ``translate_max`` px in x and y (sub-pixel, bilinear,
  border pixels repeated), as a re-detected box lands a few pixels off.

All draws come from torch's generator, which :meth:`Attack.__call__` seeds: a fixed seed
gives the same result on CPU. With ``transforms=[]`` (or ``samples=1`` and every range 0)
this is PGD with the same loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from blinkbench.attacks.linf import sign_step, valid_delta

from .base import Attack, register
from .fakeretouch import gaussian_blur

TRANSFORMS = ("blur", "jpeg", "noise", "resize", "translate")   # the order they are applied in

# IJG standard quantisation tables (JPEG Annex K), luminance and chrominance
_Q_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
           14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
           49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_Q_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
             47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def quant_table(quality: int, chroma: bool) -> torch.Tensor:
    """The IJG (libjpeg) quantisation table for ``quality`` in 1..100, 8 x 8, in 0-255 levels."""
    q = max(1, min(100, int(quality)))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    base = torch.tensor(_Q_CHROMA if chroma else _Q_LUMA, dtype=torch.float32)
    return torch.clamp(torch.floor((base * scale + 50) / 100), 1, 255).view(8, 8)


def _dct_matrix() -> torch.Tensor:
    """Orthonormal 8-point DCT-II matrix ``D`` (``D @ v`` is the DCT of ``v``)."""
    k = torch.arange(8, dtype=torch.float64)[:, None]
    n = torch.arange(8, dtype=torch.float64)[None, :]
    d = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float()


_DCT = _dct_matrix()
_DCT2 = torch.kron(_DCT, _DCT)      # 64 x 64: the 2-D DCT of a flattened 8x8 block, one GEMM per image


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass (straight-through)."""
    return x + (torch.round(x) - x).detach()


def _blocks_quantise(c: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """8x8-block DCT of one-channel images ``(N, 1, H, W)`` (H, W multiples of 8), quantised
    with ``table`` (straight-through rounding) and transformed back."""
    n, _, h, w = c.shape
    d2 = _DCT2.to(c)
    b = c.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(-1, 64)   # one row per block
    t = table.to(c).reshape(64)
    coef = round_ste((b @ d2.T) / t) * t
    b = coef @ d2
    return b.reshape(n, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(n, 1, h, w)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Differentiable JPEG of RGB crops ``(B, 3, H, W)`` in [0, 1] at ``quality`` (libjpeg's
    defaults: BT.601 full-range YCbCr, 4:2:0 chroma by 2x2 averaging, upsampled back
    bilinearly; edges padded by replication to whole 16-px blocks). Rounding is
    straight-through, so gradients flow; the output is clipped to [0, 1]."""
    b, _, h, w = x.shape
    ph, pw = (-h) % 16, (-w) % 16
    v = F.pad(x, (0, pw, 0, ph), mode="replicate") * 255.0 if (ph or pw) else x * 255.0
    r, g, bl = v[:, 0:1], v[:, 1:2], v[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl + 128
    y = _blocks_quantise(y - 128, quant_table(quality, False)) + 128
    hh, ww = v.shape[-2:]
    chroma = torch.cat([cb, cr], 0) - 128                                        # (2B, 1, H, W)
    chroma = F.avg_pool2d(chroma, 2)
    chroma = _blocks_quantise(chroma, quant_table(quality, True))
    chroma = F.interpolate(chroma, size=(hh, ww), mode="bilinear", align_corners=False) + 128
    cb, cr = chroma[:b], chroma[b:]
    rgb = torch.cat([y + 1.402 * (cr - 128),
                     y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                     y + 1.772 * (cb - 128)], 1) / 255.0
    return torch.clamp(rgb[..., :h, :w], 0.0, 1.0)


def resize_back(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` resampled to ``scale`` times its size and back (bilinear, antialiased)."""
    h, w = x.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return x
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def translate(x: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """``x`` shifted by ``(dx, dy)`` pixels (content moves right/down for positive values),
    bilinear, border pixels repeated."""
    if dx == 0 and dy == 0:
        return x
    b, _, h, w = x.shape
    theta = torch.tensor([[1.0, 0.0, -2.0 * dx / w], [0.0, 1.0, -2.0 * dy / h]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(b, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@register("eot_pgd")
@dataclass(frozen=True, kw_only=True)
class EOTPGD(Attack):
    """L-inf PGD on the loss averaged over ``samples`` random compression-like
    transformations per step (see the module docstring)."""

    steps: int = 10
    rel_step_size: float = 0.25
    random_start: bool = True
    samples: int = 8
    transforms: str = ",".join(TRANSFORMS)     # a list in params.yaml; stored comma-joined
    blur_sigma_max: float = 1.0
    jpeg_quality_min: int = 50
    jpeg_quality_max: int = 95
    noise_std_max: float = 2.0
    resize_max: float = 0.1
    translate_max: float = 2.0

    test_params = {"steps": 5, "samples": 2}

    def __post_init__(self) -> None:
        t = self.transforms
        if isinstance(t, (list, tuple)):
            if not all(isinstance(v, str) for v in t):
                raise TypeError(f"{self.name}: parameter 'transforms' must be a list of names, got {t!r}")
            object.__setattr__(self, "transforms", ",".join(t))
        super().__post_init__()
        names = self.transform_names()
        unknown = sorted(set(names) - set(TRANSFORMS))
        if unknown:
            raise ValueError(f"{self.name}: unknown transforms {unknown}; known: {list(TRANSFORMS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a transform is listed twice: {names}")
        if self.samples < 1 or self.steps < 1:
            raise ValueError(f"{self.name}: samples and steps must be >= 1")
        if not 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100:
            raise ValueError(f"{self.name}: need 1 <= jpeg_quality_min <= jpeg_quality_max <= 100")
        if self.resize_max >= 1:
            raise ValueError(f"{self.name}: resize_max must be < 1, got {self.resize_max}")

    def transform_names(self) -> list[str]:
        return [s.strip() for s in self.transforms.split(",") if s.strip()]

    def sample_transform(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
        """One random transformation (drawn from torch's generator) and its parameters."""
        chosen = set(self.transform_names())
        params: dict = {}
        if "blur" in chosen:
            params["blur_sigma"] = float(torch.rand(())) * self.blur_sigma_max
        if "jpeg" in chosen:
            params["jpeg_quality"] = int(torch.randint(self.jpeg_quality_min, self.jpeg_quality_max + 1, ()))
        if "noise" in chosen:
            params["noise_std"] = float(torch.rand(())) * self.noise_std_max
        if "resize" in chosen:
            params["resize"] = 1.0 + (2 * float(torch.rand(())) - 1) * self.resize_max
        if "translate" in chosen:
            params["translate"] = tuple((2 * float(v) - 1) * self.translate_max for v in torch.rand(2))
        noise_seed = int(torch.randint(0, 2**31 - 1, ()))

        def t(x: torch.Tensor) -> torch.Tensor:
            if "blur_sigma" in params:
                x = gaussian_blur(x, params["blur_sigma"])
            if "jpeg_quality" in params:
                x = jpeg(x, params["jpeg_quality"])
            if params.get("noise_std"):
                g = torch.Generator(device=x.device).manual_seed(noise_seed)
                x = torch.clamp(x + torch.randn(x.shape, generator=g, device=x.device) * (params["noise_std"] / 255.0),
                                0.0, 1.0)
            if "resize" in params:
                x = resize_back(x, params["resize"])
            if "translate" in params:
                x = translate(x, *params["translate"])
            return x

        return t, params

    def loss_grad(self, model: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Gradient of the loss towards "real", averaged over ``samples`` fresh transformations."""
        grad = torch.zeros_like(delta)
        for _ in range(self.samples):
            t, _ = self.sample_transform()
            d = delta.detach().requires_grad_(True)
            z = model(t(torch.clamp(x + d, 0.0, 1.0))).reshape(-1)
            (g,) = torch.autograd.grad(F.softplus(z).sum() / self.samples, d)
            grad += g
        return grad

    def _run(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        e = self.eps / 255.0
        alpha = self.rel_step_size * e
        if self.random_start:
            delta = (torch.rand_like(x) * 2 - 1) * e
        else:
            delta = torch.zeros_like(x)
        delta = valid_delta(x, delta)
        for _ in range(self.steps):
            delta = valid_delta(x, sign_step(delta, self.loss_grad(model, x, delta), alpha, -e, e))
        return x + delta
