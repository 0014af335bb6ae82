"""Perceptual cost of an attack: one module, one convention per metric.

Used by the frame-detector attacks (:mod:`blinkbench.attacks.frame.video`, hence the resiliency
study's tables) and by the blink-path attacks (:mod:`blinkbench.attacks.blink`: EAR attack and
Landmark Breaker), so their figures compare; nothing else in the package computes a PSNR or
an SSIM (``tests/test_conventions.py``). All inputs are uint8 RGB images (h, w, 3), 0-255.

The conventions:

- **PSNR** is :func:`skimage.metrics.peak_signal_noise_ratio` with ``data_range=255``. Two
  identical images have no PSNR (infinite): the value is ``None`` (written as ``null`` in JSON,
  an empty cell in CSV), and means are taken over the images that changed. Not ``inf``:
  that is not valid JSON and would make every mean it enters infinite, so tables of attacks
  that leave some frames untouched would not compare.
- **SSIM** is :func:`skimage.metrics.structural_similarity` on the colour image
  (``channel_axis=2``, ``data_range=255``) with its default 7 x 7 window. An image or box with a
  side under :data:`MIN_SSIM_SIDE` (7 px) has no SSIM: ``None``, never a value from a shrunk
  window (that would be another statistic).
- **L-inf** is the largest absolute difference in 0-255 levels; **L2** (frame attacks) the
  Euclidean norm of the [0, 1] difference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_SSIM_SIDE = 7   # skimage's default window: smaller images have no SSIM (None)


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR in dB of two uint8 images; None when they are identical (see the module docstring)."""
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(a, b):
        return None
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """SSIM of two uint8 RGB images; None when a side is under :data:`MIN_SSIM_SIDE`.
    Identical images give 1.0 without filtering: skimage's value there is exactly 1.0 (each
    pixel's numerator and denominator are the same floating-point products), and an attack
    leaves many crops untouched (the clean reference all of them)."""
    from skimage.metrics import structural_similarity

    if min(a.shape[:2]) < MIN_SSIM_SIDE:
        return None
    if a.shape == b.shape and np.array_equal(a, b):
        return 1.0
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def ssim_in_box(a: np.ndarray, b: np.ndarray, box: tuple[int, int, int, int]) -> float | None:
    """:func:`ssim` of two uint8 images inside ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    return ssim(a[y0:y1, x0:x1], b[y0:y1, x0:x1])


def face_box(points: np.ndarray, shape: tuple[int, int], margin: float = 0.0) -> tuple[int, int, int, int]:
    """Integer bounding box (x0, y0, x1, y1) of landmarks, grown by ``margin`` x its size, clipped."""
    xy = np.asarray(points, np.float64)[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    pad = (hi - lo) * margin
    h, w = shape
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int)
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def linf(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def crop_metrics(clean: np.ndarray, adv: np.ndarray) -> dict[str, Any]:
    """Distortion inside an attacked box, both uint8 (h, w, 3): ``linf`` (0-255 levels), ``l2``
    (of the [0, 1] difference over the crop), ``psnr`` and ``ssim`` by this module's rules."""
    d = adv.astype(np.float64) - clean.astype(np.float64)
    return {"linf": int(np.abs(d).max()) if d.size else 0, "l2": float(np.sqrt(np.sum(d * d)) / 255.0),
            "psnr": psnr(clean, adv), "ssim": ssim(clean, adv)}
