"""Attacks on a tiny frame CNN trained here, adversarial videos, compression variants.

The tiny CNN follows the detectors' contract (RGB crops (B, 3, H, W) in [0, 1] of any size
-> one fake logit; resize inside) and is trained, seeded, on synthetic crops where "fake"
means a local colour mismatch (a red/blue blob, as a blended face region), until it is
accurate; every attack must then lower its accuracy on fake crops at eps 8/255.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blinkbench.core import io
from blinkbench.attacks.frame import (FGSM, PGD, FakeRetouch, attack_box, attack_video, available, create, defaults,
    stats_path)
from blinkbench.video.compress import compress_video
from blinkbench.video.codec import FrameReader, write_video
from conftest import fit_tiny_detector

EPS = 8.0  # 0-255 levels: visible on close inspection, small


# ------------------------------------------------------------------ the tiny detector

class TinyCNN(nn.Module):
    """Any-size [0, 1] RGB crops -> fake logit; resizes to 32 px inside, like the frame CNNs."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        x = F.max_pool2d(F.relu(self.c1(x * 2 - 1)), 2)
        return self.fc(F.relu(self.c2(x)).mean((2, 3))).squeeze(1)


def synthetic_crop(rng: np.random.Generator, h: int, w: int, fake: bool) -> np.ndarray:
    """A shaded grey crop with noise; fake ones carry a red/blue blob near the centre."""
    yy, xx = np.mgrid[:h, :w]
    g = rng.uniform(70, 180) + rng.uniform(-30, 30) * np.sin(xx / w * np.pi * rng.uniform(0.5, 2) + rng.uniform(0, 6))
    img = g[..., None] + rng.normal(0, 2, 3) + rng.normal(0, 4, (h, w, 3))
    if fake:
        cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (min(h, w) / 5) ** 2))
        img += 20 * blob[..., None] * np.array([1.0, 0.0, -1.0])
    return np.clip(img, 0, 255).astype(np.uint8)


def crop_set(n: int, seed: int, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return np.stack([synthetic_crop(rng, size, size, bool(v)) for v in y]), y


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    x, y = crop_set(512, seed=0)
    xt, yt = crop_set(64, seed=1)
    return fit_tiny_detector(TinyCNN(), to_tensor(x), torch.from_numpy(y).float(), lr=1e-2, epochs=40, batch=64,
                             test=(to_tensor(xt), torch.from_numpy(yt)))


@pytest.fixture(scope="module")
def fake_crops() -> torch.Tensor:
    x, y = crop_set(64, seed=1)
    return to_tensor(x[y == 1])


def fake_accuracy(net: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x) > 0).float().mean())


# ------------------------------------------------------------------ the attack table

class Case(NamedTuple):
    name: str
    params: dict[str, Any]
    max_fake_acc: float          # accuracy on fake crops after the attack, at most


CASES = [
    Case("fgsm", {}, 0.1),
    Case("pgd", {"steps": 5}, 0.1),
    # the minimal-norm attacks are unbounded by default (their papers); the table checks the
    # budget, so it runs them with the explicit projection (unprojected: test_minimal_norm_*)
    Case("cw_l2", {"steps": 20, "binary_search_steps": 3, "initial_const": 1.0, "project": True}, 0.1),
    # DeepFool stops just past the boundary (overshoot 0.02); the L-inf projection undoes
    # part of it on this model, hence the looser bound.
    Case("deepfool", {"steps": 10, "project": True}, 0.5),
    Case("fakeretouch", {"steps": 30, "sigma": 1.0}, 0.1),
    Case("eot_pgd", {"steps": 5, "samples": 2}, 0.1),
    # black box: a query budget per crop instead of gradients (tests/test_attacks_eot_nes.py)
    Case("nes", {"max_queries": 300, "samples": 10}, 0.5),
]


def test_every_registered_attack_has_a_row():
    assert sorted(c.name for c in CASES) == sorted(available())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_attack_lowers_accuracy_within_budget(case: Case, model, fake_crops):
    assert fake_accuracy(model, fake_crops) >= 0.95
    atk = create(case.name, eps=EPS, **case.params)
    adv = atk(model, fake_crops, seed=3)
    assert adv.shape == fake_crops.shape
    assert float((adv - fake_crops).abs().max()) <= EPS / 255 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert fake_accuracy(model, adv) <= case.max_fake_acc
    assert torch.equal(adv, atk(model, fake_crops, seed=3)), "same seed, same result"
    assert torch.equal(create(case.name, eps=0, **case.params)(model, fake_crops), fake_crops)
    assert not model.training


def test_fgsm_is_pgd_with_one_step(model, fake_crops):
    a = FGSM(eps=EPS)(model, fake_crops)
    b = PGD(eps=EPS, steps=1, rel_step_size=1.0, random_start=False)(model, fake_crops)
    assert torch.equal(a, b)
    assert np.allclose((a - fake_crops).abs().numpy()[(a > 0).numpy() & (a < 1).numpy()].max() * 255, EPS, atol=1e-3)


def test_parameters_are_typed_keyword_only_with_defaults():
    assert defaults("pgd") == {"eps": 4.0, "steps": 10, "rel_step_size": 0.25, "random_start": True}
    assert set(defaults("fakeretouch")) == {"eps", "steps", "lr", "lam", "sigma", "noise", "noise_std", "noise_mode",
                                            "a_init", "confidence", "project"}
    assert defaults("cw_l2")["project"] is False and defaults("deepfool")["project"] is False
    with pytest.raises(ValueError, match="noise"):
        create("fakeretouch", noise="laplace")
    with pytest.raises(TypeError, match="unexpected keyword"):
        create("pgd", epsilon=8)
    with pytest.raises(TypeError, match="steps"):
        create("pgd", steps=2.5)
    with pytest.raises(TypeError, match="random_start"):
        create("pgd", random_start="yes")
    with pytest.raises(ValueError, match="eps"):
        create("fgsm", eps=-1)
    with pytest.raises(KeyError, match="unknown attack"):
        create("nope")
    with pytest.raises(TypeError):
        PGD(8.0)  # keyword-only
    assert create("fgsm", eps=8).eps == 8.0 and isinstance(create("fgsm", eps=8).eps, float)


def test_fakeretouch_retouches_where_pgd_adds_noise(model, fake_crops):
    """The kernel smooths the whole sum I + A (.) N: FakeRetouch's crops are smoother than the
    clean ones (their pixel noise is retouched away), PGD's sign noise makes them rougher."""
    def roughness(img: torch.Tensor) -> float:
        return float((img[..., 1:] - img[..., :-1]).abs().mean() + (img[..., 1:, :] - img[..., :-1, :]).abs().mean())

    x = fake_crops[:8]
    fr = FakeRetouch(eps=EPS, steps=15, sigma=1.0)(model, x)
    pgd = PGD(eps=EPS, steps=5)(model, x)
    assert roughness(fr) < 0.8 * roughness(x) < 0.8 * roughness(pgd)


@pytest.mark.parametrize("name,params", [("deepfool", {"steps": 10}),
                                         ("cw_l2", {"steps": 10, "binary_search_steps": 2, "initial_const": 1.0})])
def test_minimal_norm_attacks_are_unprojected_and_smaller_than_fgsm(name, params, model, fake_crops):
    """CW-L2 and DeepFool as in their papers: by default no L-inf projection, and at equal
    success (every crop called real) a smaller L2 than FGSM needs; ``project=True`` bounds
    the L-inf by eps."""
    x = fake_crops[:8]
    fgsm = FGSM(eps=EPS)(model, x)
    atk = create(name, eps=EPS, **params)
    assert not atk.bounded() and create(name, project=True).bounded()
    adv = atk(model, x, seed=3)
    assert fake_accuracy(model, fgsm) == 0 and fake_accuracy(model, adv) == 0, "equal success: all crops fooled"
    l2 = lambda a: float((a - x).flatten(1).norm(dim=1).mean())  # noqa: E731
    assert l2(adv) < 0.7 * l2(fgsm)
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    # the budget is not what bounds it: with a tiny eps the unprojected result is the same
    assert torch.equal(create(name, eps=0.5, **params)(model, x, seed=3), adv)
    small = create(name, eps=2.0, project=True, **params)(model, x, seed=3)
    assert float((adv - x).abs().max()) * 255 > 2.0 + 1e-3, "unprojected result reaches beyond 2 levels here"
    assert float((small - x).abs().max()) * 255 <= 2.0 + 1e-4


def test_fakeretouch_is_smoothed_noise_with_l1_penalty(model, fake_crops):
    """FakeRetouch as in the seeds: I' = K * (I + A (.) N), objective = hinge + lam |A|_1."""
    from scipy.ndimage import gaussian_filter

    x = fake_crops[:4]
    g = torch.Generator().manual_seed(1)
    a, n = torch.rand(x.shape, generator=g), torch.randn(x.shape, generator=g) * 8 / 255
    atk = FakeRetouch(eps=EPS, sigma=1.5, project=False)
    ref = gaussian_filter((x + a * n).numpy().astype(np.float64), sigma=(0, 0, 1.5, 1.5), mode="nearest", truncate=3.0)
    assert np.allclose(atk.retouch(x, a, n).numpy(), ref, atol=1e-5)
    assert torch.allclose(atk.adversarial(x, a, n), atk.retouch(x, a, n).clamp(0, 1))
    proj = FakeRetouch(eps=2.0, sigma=1.5).adversarial(x, a, n)
    assert float((proj - x).abs().max()) <= 2 / 255 + 1e-6
    z = torch.tensor([0.5, -3.0, 2.0, -0.5])
    hinge = float(torch.clamp(z + 1.0, min=0).sum())
    for lam in (0.0, 0.3):
        got = float(FakeRetouch(lam=lam).objective(z, a))
        assert got == pytest.approx(hinge + lam * float(a.abs().flatten(1).mean(1).sum()), rel=1e-6)
    # the noise: Gaussian of std noise_std or uniform in +-noise_std (levels), seeded
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ng = FakeRetouch(noise_std=8.0).draw_noise(torch.zeros(4, 3, 64, 64)) * 255
        nu = FakeRetouch(noise="uniform", noise_std=8.0).draw_noise(torch.zeros(4, 3, 64, 64)) * 255
    assert float(ng.std()) == pytest.approx(8.0, rel=0.05) and float(ng.abs().max()) > 16
    assert float(nu.abs().max()) <= 8.0 and float(nu.std()) == pytest.approx(8.0 / 3**0.5, rel=0.05)


@pytest.mark.parametrize("params", [{"noise_mode": "random"}, {"noise_mode": "adversarial"},
                                    {"noise": "uniform"}, {"noise_mode": "adversarial", "noise": "uniform"}],
                         ids=["random", "adversarial", "uniform", "adversarial-uniform"])
def test_fakeretouch_variants_move_the_target(params, model, fake_crops):
    x = fake_crops[:6]
    adv = FakeRetouch(eps=EPS, steps=30, **params)(model, x, seed=2)
    assert fake_accuracy(model, x) >= 0.95 and fake_accuracy(model, adv) <= 0.25
    assert float((adv - x).abs().max()) <= EPS / 255 + 1e-6


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    from blinkbench.attacks.frame.fakeretouch import gaussian_blur

    x = torch.rand(2, 3, 20, 17, generator=torch.Generator().manual_seed(0))
    ref = gaussian_filter(x.numpy().astype(np.float64), sigma=(0, 0, 1.5, 1.5), mode="nearest", truncate=3.0)
    assert np.allclose(gaussian_blur(x, 1.5).numpy(), ref, atol=1e-5)
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_attack_restores_training_mode_and_rejects_bad_crops(model, fake_crops):
    model.train()
    try:
        create("fgsm", eps=EPS)(model, fake_crops[:2])
        assert model.training
    finally:
        model.eval()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        create("fgsm")(model, fake_crops * 255)
    with pytest.raises(ValueError, match="shape"):
        create("fgsm")(model, fake_crops[0])


# ------------------------------------------------------------------ videos

H, W, N = 96, 128, 14
NO_FACE = {0, 1, 9}


def _boxes() -> list[tuple[float, float, float, float] | None]:
    """A box drifting right and growing slowly, absent on NO_FACE frames."""
    out = []
    for i in range(N):
        if i in NO_FACE:
            out.append(None)
        else:
            x0, y0 = 30.3 + 2 * i, 20.6 + i
            out.append((x0, y0, x0 + 44.2 + 0.7 * i, y0 + 46.1 + 0.5 * i))
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A lossy (H.264) source video with a fake-looking face region, and its face track."""
    d = tmp_path_factory.mktemp("clip")
    rng = np.random.default_rng(5)
    frames = []
    for b in _boxes():
        f = np.clip(np.linspace(60, 200, W)[None, :, None] + rng.normal(0, 5, (H, W, 3)), 0, 255).astype(np.uint8)
        if b is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in b)
            f[y0:y1, x0:x1] = synthetic_crop(rng, y1 - y0, x1 - x0, fake=True)
        frames.append(f)
    video = d / "src.mp4"
    write_video(video, iter(frames), fps=25, options={"crf": 18})
    boxes = _boxes()
    nan = float("nan")
    track = pd.DataFrame({
        "frame": np.arange(N, dtype=np.int32), "timestamp_s": np.arange(N) / 25.0,
        "face_present": [b is not None for b in boxes], "detected": [b is not None for b in boxes],
        **{k: np.array([nan if b is None else b[j] for b in boxes], np.float32)
           for j, k in enumerate(["x0", "y0", "x1", "y1"])},
        "score": np.float32(0.9)})
    io.write_parquet(track, d / "track.parquet", {"status": "ok", "stamp": "t"})
    return video, d / "track.parquet"


def decoded(path) -> list[np.ndarray]:
    return [f.rgb() for f in FrameReader(path)]


def box_mask(i: int, margin=0.0, size_step=16) -> np.ndarray:
    m = np.zeros((H, W), bool)
    b = _boxes()[i]
    if b is not None:
        x0, y0, x1, y1 = attack_box(b, W, H, margin, size_step)
        m[y0:y1, x0:x1] = True
    return m


def test_a_video_that_fails_the_lossless_check_is_an_error_record(clip, model, tmp_path, monkeypatch):
    """A writer that is not lossless (H.264 4:2:0 standing in for FFV1) is caught by the
    check: the stats say which frames differ, the video is left empty, nothing crashes."""
    import blinkbench.attacks.frame.video as attack_module

    monkeypatch.setattr(attack_module, "LOSSLESS", {"codec": "libx264", "pix_fmt": "yuv420p"})
    video, track = clip
    out = tmp_path / "adv.mkv"
    stats = attack_video(video, track, model, "pgd", {"eps": 0, "steps": 2}, out)
    assert stats["status"] == "error" and not stats["verified_lossless"]
    assert f"lossless check failed: {N} of {N} frames differ" in stats["error"]
    assert out.exists() and out.stat().st_size == 0


def test_eps_zero_video_is_bit_identical(clip, model, tmp_path):
    video, track = clip
    out = tmp_path / "adv.mkv"
    stats = attack_video(video, track, model, "pgd", {"eps": 0, "steps": 2}, out)
    assert stats["status"] == "ok" and stats["verified_lossless"]
    assert stats["frames_attacked"] == N - len(NO_FACE)
    src, adv = decoded(video), decoded(out)
    assert len(adv) == N and all(np.array_equal(a, b) for a, b in zip(src, adv))
    assert stats["linf_max"] == 0 and stats["psnr_mean"] is None and stats["ssim_mean"] == 1.0
    # the clean reference skips the repeated forward passes: every probability is the clean one
    recs = stats["frames"]
    assert recs and all(r["p_fake_after"] == r["p_fake_float"] == r["p_fake_before"] for r in recs)
    assert all(r["ssim"] == 1.0 and r["psnr"] is None and r["success"] == (r["p_fake_before"] < 0.5) for r in recs)
    r = recs[len(recs) // 2]                      # and that clean one is the model's on the crop
    x0, y0, x1, y1 = r["box"]
    crop = torch.from_numpy(src[r["frame"]][y0:y1, x0:x1]).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        assert float(torch.sigmoid(model(crop).reshape(-1))[0]) == pytest.approx(r["p_fake_before"], abs=1e-6)


@pytest.mark.parametrize("name,params", [("fgsm", {}), ("fakeretouch", {"steps": 10, "sigma": 1.0})])
def test_adversarial_video_budget_box_and_stats(clip, model, tmp_path, name, params):
    video, track = clip
    out = tmp_path / f"{name}.mkv"
    stats = attack_video(video, track, model, name, {"eps": EPS, **params}, out, batch_size=4, margin=0.1)
    assert stats["status"] == "ok" and stats["verified_lossless"]
    src, adv = decoded(video), decoded(out)
    assert len(adv) == len(src) == N
    changed = 0
    for i, (s, a) in enumerate(zip(src, adv)):
        diff = np.abs(s.astype(int) - a.astype(int)).max(axis=2)
        m = box_mask(i, margin=0.1)
        assert (diff[~m] == 0).all(), f"frame {i}: pixels outside the face box changed"
        assert diff.max() <= EPS, f"frame {i}: L-inf {diff.max()} > {EPS}"
        changed += bool(diff.any())
    assert changed == N - len(NO_FACE)
    on_disk = json.loads(stats_path(out).read_text())
    assert on_disk["frames_attacked"] == N - len(NO_FACE) == len(on_disk["frames"])
    assert 0 < on_disk["linf_max"] <= EPS
    assert on_disk["p_fake_before_mean"] > 0.5 > on_disk["p_fake_after_mean"]
    assert on_disk["success_rate"] >= 0.8 and on_disk["video_fooled"] is True      # seed 003's per-video verdict
    assert 30 < on_disk["psnr_mean"] < 60 and 0.5 < on_disk["ssim_mean"] < 1
    assert on_disk["mean_batch_size"] > 1          # equal-size boxes were batched
    assert {r["frame"] for r in on_disk["frames"]} == set(range(N)) - NO_FACE


def test_unprojected_deepfool_video_reports_the_norms_it_reaches(clip, model, tmp_path):
    video, track = clip
    out = tmp_path / "deepfool.mkv"
    stats = attack_video(video, track, model, "deepfool", {"eps": 1, "steps": 10}, out, batch_size=4)
    assert stats["status"] == "ok" and stats["verified_lossless"] and stats["attack_params"]["project"] is False
    on_disk = json.loads(stats_path(out).read_text())
    assert on_disk["success_rate"] >= 0.8 and on_disk["video_fooled"] is True
    assert on_disk["l2_float_mean"] > 0 and on_disk["l2_mean"] > 0 and on_disk["linf_float_max"] > 0
    # eps 1 does not bound it: rounding and the rescue keep what the attack needs
    assert on_disk["linf_max"] > 1


def test_video_attack_is_deterministic(clip, model, tmp_path):
    video, track = clip
    a = attack_video(video, track, model, "pgd", {"eps": EPS, "steps": 2}, tmp_path / "a.mkv", seed=1)
    b = attack_video(video, track, model, "pgd", {"eps": EPS, "steps": 2}, tmp_path / "b.mkv", seed=1)
    assert a["status"] == b["status"] == "ok"
    assert all(np.array_equal(x, y) for x, y in zip(decoded(tmp_path / "a.mkv"), decoded(tmp_path / "b.mkv")))


def test_bad_inputs_give_a_status_not_a_crash(clip, model, tmp_path):
    video, track = clip
    missing = attack_video(tmp_path / "nope.mp4", track, model, "fgsm", {}, tmp_path / "m.mkv")
    assert missing["status"] == "missing" and (tmp_path / "m.mkv").stat().st_size == 0
    assert json.loads((tmp_path / "m.json").read_text())["status"] == "missing"

    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    bad = attack_video(video, tmp_path / "bad.parquet", model, "fgsm", {}, tmp_path / "b.mkv")
    assert bad["status"] == "error" and bad["error"] and (tmp_path / "b.mkv").stat().st_size == 0

    none = pd.read_parquet(track).assign(face_present=False)
    io.write_parquet(none, tmp_path / "none.parquet", {"status": "no_face", "stamp": "n"})
    nf = attack_video(video, tmp_path / "none.parquet", model, "fgsm", {}, tmp_path / "n.mkv")
    assert nf["status"] == "no_face" and nf["frames_attacked"] == 0
    assert all(np.array_equal(a, b) for a, b in zip(decoded(video), decoded(tmp_path / "n.mkv")))

    with pytest.raises(ValueError, match=".mkv"):
        attack_video(video, track, model, "fgsm", {}, tmp_path / "x.mp4")


def test_rounding_rescue_scales_sub_level_perturbations():
    """A perturbation of 0.3 levels rounds away; scaled x2 it rounds to +1 and fools a model
    that calls a crop fake unless its mean rose by half a level. With a 0-level budget,
    nothing can move and the crop stays as it was."""
    from blinkbench.attacks.frame.video import _rescue, quantise

    clean = np.full((2, 8, 8, 3), 100, np.uint8)
    delta = np.full(clean.shape, 0.3)
    delta[1] = 0.0                                   # nothing to scale: left alone

    def prob(u8):
        return (u8.reshape(len(u8), -1).mean(1) < 100.5).astype(float)

    for levels, want_scale in [(4, 2.0), (0, 1.0)]:
        q = quantise(clean, delta, levels)
        assert np.array_equal(q, clean)
        scale = np.ones(2)
        p = _rescue(clean, delta, q, prob(q), scale, levels, prob)
        assert scale[0] == want_scale and scale[1] == 1.0 and p[1] == 1.0
        assert (p[0] == 0.0) == (levels > 0)
        assert np.abs(q.astype(int) - clean).max() <= levels


def test_attack_box_margin_snapping_and_clipping():
    assert attack_box((10.2, 20.7, 50.1, 60.0), 200, 100) == (10, 20, 51, 60)
    x0, y0, x1, y1 = attack_box((10.2, 20.7, 50.1, 60.0), 200, 100, size_step=16)
    assert (x1 - x0, y1 - y0) == (48, 48) and x0 <= 10 and x1 >= 51
    assert attack_box((0, 0, 40, 40), 200, 100, margin=0.25) == (0, 0, 50, 50)
    assert attack_box((180, 80, 220, 120), 200, 100) == (180, 80, 200, 100)
    # square=True frames the box as the faces step frames the detectors' crops
    from blinkbench.spine.faces import square_box

    box = np.array([40.3, 30.8, 90.6, 100.2])
    sq = square_box(box, 1.6, 300, 200)
    got = attack_box(box, 300, 200, margin=0.3, square=True)
    assert all(abs(a - b) <= 1 for a, b in zip(got, sq)) and got[0] <= sq[0] and got[2] >= sq[2]


# ------------------------------------------------------------------ compression

@pytest.fixture(scope="module")
def lossless_clip(tmp_path_factory) -> tuple:
    d = tmp_path_factory.mktemp("comp")
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:H, :W]
    frames = [np.clip(128 + 60 * np.sin((xx + 3 * i) / 9)[..., None] * np.array([1, 0.5, -0.5])
                      + 40 * np.cos(yy / 7)[..., None] + rng.normal(0, 8, (H, W, 3)), 0, 255).astype(np.uint8)
              for i in range(8)]
    path = d / "src.mkv"
    write_video(path, iter(frames), fps=25, codec="ffv1", pix_fmt="bgr0")
    return path, frames


def test_compression_variants(lossless_clip, tmp_path):
    src, frames = lossless_clip
    assert all(np.array_equal(a, b) for a, b in zip(frames, decoded(src)))   # FFV1 bgr0 round-trips
    err = {}
    for variant, suffix in [("none", ".mkv"), ("jpeg75", ".mkv"), ("jpeg50", ".mkv"), ("h264_crf23", ".mp4"),
                            ("mpeg4_h264", ".mp4")]:
        rec = compress_video(src, tmp_path / f"{variant}{suffix}", variant)
        assert rec["status"] == "ok" and rec["n_frames"] == len(frames), rec
        out = decoded(tmp_path / f"{variant}{suffix}")
        assert len(out) == len(frames) and all(o.shape == f.shape for o, f in zip(out, frames))
        err[variant] = float(np.mean([np.abs(o.astype(int) - f).mean() for o, f in zip(out, frames)]))
    assert err["none"] == 0
    assert 0 < err["jpeg75"] < err["jpeg50"]
    assert 0 < err["h264_crf23"] < err["mpeg4_h264"]


def test_compression_bad_input(tmp_path):
    rec = compress_video(tmp_path / "missing.mkv", tmp_path / "o.mkv", "jpeg50")
    assert rec["status"] == "missing" and (tmp_path / "o.mkv").stat().st_size == 0
    with pytest.raises(ValueError, match="variant"):
        compress_video(tmp_path / "missing.mkv", tmp_path / "o.mkv", "webp")
    with pytest.raises(ValueError, match=".mkv"):
        compress_video(tmp_path / "missing.mkv", tmp_path / "o.mp4", "jpeg75")
