"""Forensic frame detectors (block DCT, ELA): feature values, skin filter, separation of a
synthetic forensic task at video level, save/load, robustness to degenerate crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from blinkbench.detectors.evaluation import metrics
from blinkbench.detectors.frame import forensic as fz
from blinkbench.detectors.frame.base import REGISTRY, CropSet, FrameDetector

DETECTORS = [fz.BlockDCT, fz.ELA]
SKIN_RGB = (205, 150, 125)       # Cr ~157, Cb ~106: inside the skin range
BLUE_RGB = (40, 80, 200)


@pytest.fixture(scope="module")
def task() -> tuple[CropSet, CropSet]:
    """Separate seeded train and test sets (24 videos x 4 crops each, 128x128)."""
    return fz.synthetic_task(24, 4, 128, seed=10), fz.synthetic_task(24, 4, 128, seed=11)


@pytest.fixture(scope="module")
def fitted(task) -> dict[str, FrameDetector]:
    train, _ = task
    return {cls.name: cls(seed=0, **cls.test_params).fit(train) for cls in DETECTORS}


def _gray_texture(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = cv2.resize(rng.normal(128, 40, (size // 4, size // 4)), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(g + rng.normal(0, 3, (size, size)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- block DCT features

def test_registered_as_forensic():
    assert REGISTRY["block_dct"] is fz.BlockDCT and REGISTRY["ela"] is fz.ELA
    for cls in DETECTORS:
        assert cls.family == "forensic"
        assert set(cls.test_params) <= set(cls.default_hyper())


def test_zigzag_and_tiles():
    assert fz.zigzag(8)[:10].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
    assert sorted(fz.zigzag(32).tolist()) == list(range(1024))
    img = np.arange(70 * 100, dtype=float).reshape(1, 70, 100)
    t = fz.to_blocks(img, 32)
    assert t.shape == (1, 6, 32, 32)                         # 2 x 3 tiles, remainder dropped
    np.testing.assert_array_equal(t[0, 4], img[0, 32:64, 32:64])
    small = fz.to_blocks(np.ones((2, 5, 7)), 32)             # smaller than a tile: padded to one
    assert small.shape == (2, 1, 32, 32) and (small == 1).all()


def test_constant_block_has_only_dc():
    tile = np.full((1, 1, 32, 32), 200.0)
    c = fz.block_dct_coeffs(tile)[0, 0]
    assert c[0, 0] == pytest.approx(32 * (200 - 128))
    ac = c.copy()
    ac[0, 0] = 0
    assert np.abs(ac).max() < 1e-9
    F, skin = fz.block_features(np.full((1, 32, 32, 3), 200, np.uint8))
    names = fz.block_feature_names()
    assert F.shape == (1, 1, len(names)) == (1, 1, 32 + 8 + 63 + 63 + 9 * 16)
    f = dict(zip(names, F[0, 0]))
    assert f["dct_zz0"] == pytest.approx(np.log1p(32 * 72), rel=1e-5)
    assert all(f[f"dct_zz{i}"] < 1e-6 for i in range(1, 32)) and all(f[f"dct_band{b}"] < 1e-6 for b in range(8))
    assert all(f[n] == 1.0 for n in names if n.startswith("jpeg_zero"))      # every AC coefficient is 0
    # every sub-block's AC coefficient falls in the zero bin: a unit spike, flat |FFT| of 1
    assert all(f[n] == pytest.approx(1.0) for n in names if n.startswith("hist"))


def test_jpeg_dct_sees_the_quantisation_step():
    """A grey JPEG at q50 has (0,1) coefficients on multiples of libjpeg's step 11 and
    (1,0) on multiples of 12: jpeg_dct uses JPEG's own scaling and grid."""
    g = _gray_texture(128, 0)
    ok, buf = cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, 50])
    dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(float)
    c = fz.jpeg_dct(fz.to_blocks(dec[None], 32))
    for freq, q in ((1, 11), (8, 12)):
        v = c[..., freq].ravel()
        assert np.mean(np.abs(v - q * np.rint(v / q)) < 1.5) > 0.9
        assert np.mean(np.abs(v) > 5) > 0.3                   # not trivially all zero
    # the histogram features put periodic energy at the step: |FFT| at bin ~31/11 beats its neighbours
    h = fz.dct_histogram_features(c, hist_freqs=1, hist_range=15).mean(axis=(0, 1))
    k = int(round(31 / 11))
    assert h[k] > h[k - 1] and h[k] > h[k + 1]


def test_skin_filter_keeps_skin_drops_blue():
    img = np.zeros((1, 64, 32, 3), np.uint8)
    img[0, :32] = SKIN_RGB
    img[0, 32:] = BLUE_RGB
    np.testing.assert_allclose(fz.skin_fraction(img, 32), [[1.0, 0.0]])
    det = fz.BlockDCT()
    np.testing.assert_array_equal(det._keep(fz.skin_fraction(img, 32)), [[True, False]])
    blue = np.broadcast_to(np.array(BLUE_RGB, np.uint8), (1, 64, 64, 3))
    assert det._keep(fz.skin_fraction(blue, 32)).all()          # no skin tile: judged on all tiles


# ----------------------------------------------------------------------------- ELA features

def test_ela_near_zero_after_same_quality_recompression():
    yy, xx = np.mgrid[0:128, 0:128]
    smooth = np.stack([60 + xx, 90 + yy // 2, 140 + 0 * xx], -1).astype(np.uint8)
    once = fz.jpeg_roundtrip(smooth, 90)
    e_same = fz.ela_map(once[None], 90)[0] * 255
    assert e_same[8:-8, 8:-8].mean() < 0.5
    noisy = np.clip(smooth + np.random.default_rng(0).normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
    assert fz.ela_map(noisy[None], 90).mean() * 255 > 2.0        # never compressed: large error
    assert fz.ela_map(once[None], 70).mean() > fz.ela_map(once[None], 90).mean()


def test_ela_features_known_values():
    rng = np.random.default_rng(3)
    x = np.clip(rng.normal(120, 30, (2, 64, 48, 3)), 0, 255).astype(np.uint8)
    f = fz.ela_features(x, (90,), grid=4, hist_bins=16)
    names = fz.ela_feature_names((90,), 4, 16)
    assert f.shape == (2, len(names)) == (2, 18 + 32 + 16)
    e = fz.ela_map(x, 90).astype(np.float64)
    col = {n: i for i, n in enumerate(names)}
    for ch, name in enumerate("rgb"):
        v = e[..., ch].reshape(2, -1)
        np.testing.assert_allclose(f[:, col[f"q90_mean_{name}"]], v.mean(1), rtol=1e-5)
        np.testing.assert_allclose(f[:, col[f"q90_std_{name}"]], v.std(1), rtol=1e-4)
        np.testing.assert_allclose(f[:, col[f"q90_p90_{name}"]], np.percentile(v, 90, axis=1, method="inverted_cdf"),
                                   rtol=1e-6)
        np.testing.assert_allclose(f[:, col[f"q90_max_{name}"]], v.max(1), rtol=1e-6)
    grid = e.mean(-1).reshape(2, 4, 16, 4, 12).mean(axis=(2, 4)).reshape(2, -1)
    np.testing.assert_allclose(f[:, col["q90_grid0_0"]:col["q90_grid3_3"] + 1], grid, rtol=1e-5)
    lev = np.rint(e * 255).reshape(2, -1)
    np.testing.assert_allclose(f[:, col["q90_level0"]], (lev == 0).mean(1), rtol=1e-6)
    np.testing.assert_allclose(f[:, col["q90_level15+"]], (lev >= 15).mean(1), rtol=1e-6)
    assert fz.ela_features(x, (90, 75)).shape == (2, 2 * 66)


# ----------------------------------------------------------------------------- detectors

@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_separates_synthetic_task_at_video_level(cls, task, fitted):
    _, test = task
    v = fitted[cls.name].predict_videos(test)
    assert len(v) == 24 and set(v["label"]) == {0, 1}
    m = metrics(v["label"], v["mean_prob"])
    assert m["auc"] > 0.9, m
    assert m["acc_0.5"] >= 0.75, m                     # calibrated: 0.5 is a usable threshold


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_save_load_identical(cls, task, fitted, tmp_path):
    det = fitted[cls.name]
    det.save(tmp_path / "det.zip")
    back = FrameDetector.load(tmp_path / "det.zip")
    assert type(back) is cls and back.describe() == det.describe()
    crops = task[1].crops[:12]
    np.testing.assert_array_equal(back.predict_frames(crops), det.predict_frames(crops))


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_degenerate_crops_give_probabilities(cls, fitted):
    det = fitted[cls.name]
    rng = np.random.default_rng(0)
    floats = rng.random((2, 40, 40, 3))
    floats[0, 0, 0] = np.nan
    cases = {"zeros": np.zeros((3, 256, 256, 3), np.uint8), "1x1": np.full((2, 1, 1, 3), 180, np.uint8),
             "smaller than a block": rng.integers(0, 256, (2, 20, 20, 3), dtype=np.uint8),
             "odd size": rng.integers(0, 256, (1, 45, 77, 3), dtype=np.uint8),
             "grey": rng.integers(0, 256, (2, 64, 64), dtype=np.uint8), "float with NaN": floats}
    for name, crops in cases.items():
        p = det.predict_frames(crops)
        assert p.shape == (len(crops),) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all(), name
    assert det.predict_frames(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0,)
    with pytest.raises(ValueError, match="one colour crop"):
        det.predict_frames(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        det.predict_frames(np.full((1, 64, 64, 3), 200.0))


@pytest.mark.parametrize("cls,kind", [(c, k) for c in DETECTORS for k in fz._CLASSIFIERS[c.name]],
                         ids=lambda x: getattr(x, "name", x))
def test_every_classifier_is_seeded_and_probabilistic(cls, kind):
    train = fz.synthetic_task(8, 2, 64, seed=20)
    a = cls(seed=3, classifier=kind, **cls.test_params).fit(train)
    b = cls(seed=3, classifier=kind, **cls.test_params).fit(train)
    pa = a.predict_frames(train.crops)
    np.testing.assert_array_equal(pa, b.predict_frames(train.crops))
    assert ((pa >= 0) & (pa <= 1)).all() and pa.std() > 0


def test_bad_usage_is_refused(task):
    train, _ = task
    with pytest.raises(TypeError, match="unknown hyper"):
        fz.ELA(qualty=80)
    with pytest.raises(ValueError, match="classifier"):
        fz.BlockDCT(classifier="gb").fit(train)
    with pytest.raises(RuntimeError, match="before fit"):
        fz.ELA().predict_frames(train.crops[:2])
    one_class = train.subset(train.video_id[train.label == 0])
    with pytest.raises(ValueError, match="both real"):
        fz.ELA(**fz.ELA.test_params).fit(one_class)


def test_unlabelled_crops_are_ignored_and_val_is_reported(task):
    train, test = task
    unlabelled = CropSet(test.crops[:8], np.array(["u"] * 8, object), np.full(8, -1), np.arange(8))
    mixed = CropSet.concat([train, unlabelled])
    a = fz.ELA(**fz.ELA.test_params).fit(train)
    b = fz.ELA(**fz.ELA.test_params).fit(mixed, val=test)
    np.testing.assert_array_equal(a.predict_frames(test.crops), b.predict_frames(test.crops))
    assert a.val_metrics_ is None and b.val_metrics_["n"] == 24 and b.val_metrics_["auc"] > 0.5


def test_block_dct_trains_on_at_most_max_train_blocks(task):
    train, _ = task
    det = fz.BlockDCT(skin_filter=False, max_train_blocks=300).fit(train)
    assert det.n_train_blocks_ == 300
    skin_only = fz.BlockDCT().fit(train)
    assert skin_only.n_train_blocks_ < len(train) * 16          # background/hair tiles left out
