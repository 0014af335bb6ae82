"""One convention per metric (attacks/perceptual.py), shared by the frame and blink attacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blinkbench.attacks import perceptual as pc


def _pair(h=32, w=40, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_is_the_textbook_formula_and_none_for_identical_images():
    a, b = _pair()
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    assert pc.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)
    assert pc.psnr(a, a.copy()) is None


def test_ssim_uses_the_7px_window_and_has_no_value_below_it():
    a, b = _pair()
    assert pc.ssim(a, a.copy()) == 1.0          # skimage's own value for identical images, to the bit
    from skimage.metrics import structural_similarity
    assert structural_similarity(a, a.copy(), channel_axis=2, data_range=255) == 1.0
    assert 0 < pc.ssim(a, b) < 1
    assert pc.ssim(a[:6], b[:6]) is None and pc.ssim(a[:, :6], b[:, :6]) is None
    assert pc.ssim(a[:7, :7], b[:7, :7]) is not None
    assert pc.ssim_in_box(a, b, (0, 0, 6, 20)) is None
    assert pc.ssim_in_box(a, b, (3, 4, 30, 25)) == pytest.approx(pc.ssim(a[4:25, 3:30], b[4:25, 3:30]))


def test_frame_attack_metrics_follow_the_same_rules_as_the_blink_attacks():
    a, b = _pair()
    m = pc.crop_metrics(a, b)
    assert (m["psnr"], m["ssim"], m["linf"]) == (pc.psnr(a, b), pc.ssim(a, b), pc.linf(a, b))
    assert m["linf"] <= 6 and m["l2"] == pytest.approx(np.linalg.norm((b.astype(float) - a) / 255.0))
    same = pc.crop_metrics(a, a)
    assert same["psnr"] is None and same["ssim"] == pytest.approx(1.0) and same["linf"] == 0 and same["l2"] == 0
    tiny = pc.crop_metrics(a[:5, :5], b[:5, :5])
    assert tiny["ssim"] is None and tiny["psnr"] == pc.psnr(a[:5, :5], b[:5, :5])


def test_face_box_is_clipped_to_the_image():
    pts = np.array([[-5.0, 3.2], [50.0, 10.7], [20.0, 40.0]])
    assert pc.face_box(pts, (32, 40)) == (0, 3, 40, 32)
