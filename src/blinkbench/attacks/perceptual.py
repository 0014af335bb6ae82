"""Perceptual cost of an attack: one module, one convention per metric.

Used by the frame-detector attacks (:mod:`blinkbench.attacks.frame.video`, the resiliency study)
and the blink-path attacks (:mod:`blinkbench.attacks.blink`), so their tables compare.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def face_box(points: np.ndarray, shape: tuple[int, int], margin: float = 0.0) -> tuple[int, int, int, int]:
    """Integer bounding box (x0, y0, x1, y1) of landmarks, grown by ``margin`` x its size, clipped."""
    xy = np.asarray(points, np.float64)[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    pad = (hi - lo) * margin
    h, w = shape
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int)
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def ssim_in_box(a: np.ndarray, b: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """SSIM (scikit-image, RGB, 0-255) of two uint8 images inside ``box``."""
    from skimage.metrics import structural_similarity

    x0, y0, x1, y1 = box
    pa, pb = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
    if min(pa.shape[:2]) < 7:
        return float("nan")
    return float(structural_similarity(pa, pb, channel_axis=2, data_range=255))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def linf(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def crop_metrics(clean: np.ndarray, adv: np.ndarray) -> dict[str, Any]:
    """Distortion inside the box, both uint8 (h, w, 3): L-inf (0-255 levels), L2 (of the
    [0, 1] difference over the crop), PSNR in dB (None when identical), SSIM (skimage,
    colour, data range 255; window shrunk for crops under 7 px, None under 3 px)."""
    from skimage.metrics import structural_similarity

    d = adv.astype(np.float64) - clean.astype(np.float64)
    mse = float(np.mean(d * d))
    side = min(clean.shape[:2])
    win = 7 if side >= 7 else (side if side % 2 else side - 1)
    ssim = (float(structural_similarity(clean, adv, channel_axis=2, data_range=255, win_size=win))
            if win >= 3 else None)
    return {"linf": int(np.abs(d).max()) if d.size else 0, "l2": float(np.sqrt(np.sum(d * d)) / 255.0),
            "psnr": 10 * math.log10(255.0**2 / mse) if mse > 0 else None, "ssim": ssim}
