"""Forensic frame-level baselines: block DCT statistics and error level analysis (ELA).

Both are hand-made features plus a scikit-learn classifier, the pre-CNN way of spotting a
pasted face: the swapped region went through a different resampling/blur/JPEG history from
the rest of the frame, which shows in its frequency content and in how it reacts to one more
JPEG compression.

- ``block_dct``: each crop's luma is cut into ``block`` x ``block`` tiles (grid anchored at
  the top-left pixel, so the 8x8 JPEG grid of a crop saved as JPEG stays aligned; a
  remainder narrower than a tile is dropped, a crop smaller than one tile is edge-padded up
  to it). Per tile (:func:`block_features`): log-magnitudes of the first ``k_dct`` zig-zag
  coefficients of its 2-D DCT and of ``n_bands`` frequency bands; over its 8x8 JPEG-style
  sub-block DCTs, the mean log-magnitude and the share of zeros per AC frequency; and for
  the first ``hist_freqs`` AC frequencies the histogram of the rounded coefficients followed
  by the magnitude of its FFT, where double quantisation leaves periodic peaks and gaps (the
  "DCT of the block histogram" features of the double-JPEG literature). Tiles are
  classified one by one. Training keeps the tiles that are mostly skin in YCrCb (Cr 133-173,
  Cb 77-127, share >= ``min_skin``), so the classifier learns from the face and not from
  background or hair; a crop's probability is the mean over its skin tiles, or over all of
  them when none is skin.
- ``ela``: the crop is re-saved as JPEG at ``quality`` (default 90, OpenCV ``imencode``),
  and the absolute difference to the crop, scaled to [0, 1], is summarised
  (:func:`ela_features`): per-channel mean, std, percentiles and max, the means over a
  ``grid`` x ``grid`` partition (absolute and relative to the crop's mean, so "the centre
  reacts differently from the border" survives changes of overall level), and the histogram
  of the integer error levels. The same features at ``extra_qualities`` (default 75) are
  appended: at the quality the crop was last saved with, ELA is near zero everywhere and
  shows little (on the synthetic validation set, frame AUC 0.85 with q90 alone against 0.97
  with q90 + q75; set ``extra_qualities=()`` for single-quality ELA).

Probabilities are calibrated: logistic regression natively, the others (linear SVM, random
forest, gradient boosting) through ``CalibratedClassifierCV`` whose folds group rows by
video, so the calibrator never sees scores of a video its model was trained on. Training
rows are weighted so each crop counts once (a crop's tiles share its weight) and the two
classes weigh the same, so 0.5 is the equal-prior threshold whatever the class balance.

The default classifier of both (logistic regression) is the one with the best frame-level
AUC on a synthetic validation set (:func:`synthetic_task`, seeds the tests never use), see
``benchmarks/bench_frame_forensic.py --select``.

:func:`synthetic_task` builds a small seeded real/fake CropSet with known forensic cues
(real: textured skin-coloured crops saved once as JPEG q90; fake: a feathered face region
resampled and JPEG-compressed at another quality on a shifted grid before the final q90
save), for tests and benchmarks.
"""

from __future__ import annotations

import warnings
from typing import Any

import cv2
import numpy as np

from .base import CropSet, FrameDetector, register
from .cropstore import CropStore

# YCrCb skin range (Chai & Ngan 1999), on OpenCV's 8-bit YCrCb (channel order Y, Cr, Cb).
SKIN_CR = (133, 173)
SKIN_CB = (77, 127)
_CHUNK = 64          # crops per feature batch (bounds memory: a few 64 x 256 x 256 float arrays)
_CLASSIFIERS = {"block_dct": ("lr", "svm", "rf"), "ela": ("lr", "rf", "gb")}


# ----------------------------------------------------------------------------- input

def as_uint8_rgb(crops: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB from uint8 or float-in-[0, 1] crops; (n, H, W) grey is
    repeated over three channels, a fourth (alpha) channel is dropped, NaN becomes 0.
    Refused: a single (H, W, 3) crop (pass ``crop[None]``) and floats beyond [0, 1] (likely
    0-255 values in a float array, which would otherwise turn white)."""
    if isinstance(crops, CropStore) and crops.crop_shape[-1] == 3:
        return crops            # uint8 RGB (n, H, W, 3) on disk; callers read it _CHUNK crops at a time
    a = np.asarray(crops)
    if a.ndim == 3:
        if a.shape[-1] in (3, 4):
            raise ValueError(f"crops of shape {a.shape} look like one colour crop; pass a batch (crop[None])")
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"crops must be (n, H, W, 3) (or grey (n, H, W)), got shape {a.shape}")
    if a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"crops have an empty side: shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == bool:
        return np.ascontiguousarray(a.astype(np.uint8) * 255)
    if np.issubdtype(a.dtype, np.integer):
        return np.ascontiguousarray(np.clip(a, 0, 255).astype(np.uint8))
    f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    if f.size and (f.max() > 1.0 + 1e-6 or f.min() < -1e-6):
        raise ValueError(f"float crops must lie in [0, 1], got [{f.min():.3g}, {f.max():.3g}]")
    return np.ascontiguousarray(np.rint(np.clip(f, 0.0, 1.0) * 255).astype(np.uint8))


def luma(rgb: np.ndarray) -> np.ndarray:
    """JPEG (BT.601 full-range) luma of (n, H, W, 3) uint8 RGB, float32 (n, H, W) in [0, 255]
    (single precision is ample for 8-bit input and halves the DCT work)."""
    w = np.array([0.299, 0.587, 0.114], np.float32)
    return rgb.astype(np.float32) @ w


def _pad_to(a: np.ndarray, block: int) -> np.ndarray:
    """Edge-pad the two spatial axes (1, 2) of ``a`` up to at least ``block``."""
    ph, pw = max(0, block - a.shape[1]), max(0, block - a.shape[2])
    if ph or pw:
        pad = [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 3)
        a = np.pad(a, pad, mode="edge")
    return a


def to_blocks(img: np.ndarray, block: int) -> np.ndarray:
    """(n, H, W[, C]) -> (n, n_blocks, block, block[, C]): non-overlapping tiles in row-major
    order from the top-left pixel; a remainder narrower than a tile is dropped, a side
    shorter than a tile is edge-padded to one tile."""
    img = _pad_to(img, block)
    n, H, W = img.shape[:3]
    by, bx = H // block, W // block
    img = img[:, :by * block, :bx * block]
    rest = img.shape[3:]
    t = img.reshape(n, by, block, bx, block, *rest)
    t = np.moveaxis(t, 3, 2)                       # (n, by, bx, block, block, ...)
    return t.reshape(n, by * bx, block, block, *rest)


def zigzag(n: int) -> np.ndarray:
    """Flat indices of an n x n matrix in JPEG zig-zag order ((0,0), (0,1), (1,0), (2,0), ...)."""
    i, j = np.divmod(np.arange(n * n), n)
    s = i + j
    order = np.lexsort((np.where(s % 2 == 1, i, -i), s))
    return order


# ----------------------------------------------------------------------------- block DCT

def block_dct_coeffs(y_blocks: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DCT-II of level-shifted luma tiles (..., B, B) -> (..., B, B). A
    constant tile of value v has only its DC coefficient, B * (v - 128)."""
    import scipy.fft  # here, not at import: the registry (workflow parse) imports this module

    return scipy.fft.dctn(y_blocks - np.float32(128), type=2, norm="ortho", axes=(-2, -1))


def jpeg_dct(y_blocks: np.ndarray) -> np.ndarray:
    """(n, m, B, B) luma tiles -> (n, m, (B/8)**2, 64): the JPEG forward DCT of each tile's
    8x8 sub-blocks (orthonormal DCT-II of the level-shifted pixels, the same scaling as
    libjpeg's F(u, v)), frequencies in row-major order (u * 8 + v)."""
    import scipy.fft  # here, not at import: the registry (workflow parse) imports this module

    n, m, B, _ = y_blocks.shape
    if B % 8:
        raise ValueError(f"block size {B} is not a multiple of 8")
    s = B // 8
    sub = y_blocks.reshape(n, m, s, 8, s, 8).transpose(0, 1, 2, 4, 3, 5)
    return scipy.fft.dctn(sub - np.float32(128), type=2, norm="ortho", axes=(-2, -1)).reshape(n, m, s * s, 64)


def dct_histogram_features(coeffs: np.ndarray, hist_freqs: int = 9, hist_range: int = 15) -> np.ndarray:
    """(n, m, k, 64) 8x8 DCT coefficients of k sub-blocks per tile -> (n, m, hist_freqs *
    (hist_range + 1)).

    For each of the first ``hist_freqs`` AC frequencies in zig-zag order the rounded
    coefficients of the tile's sub-blocks are counted in integer bins over
    ``[-hist_range, hist_range]`` (values outside are not counted), the counts divided by k,
    and the magnitude of the histogram's real FFT kept: a quantisation step q shows up as
    energy at frequency 1/q, a double quantisation as extra periodic peaks and gaps.
    """
    import scipy.fft  # here, not at import: the registry (workflow parse) imports this module

    n, m, k, _ = coeffs.shape
    freqs = zigzag(8)[1:1 + hist_freqs]
    v = np.rint(coeffs[..., freqs]).astype(np.int64) + hist_range                 # (n, m, k, F)
    nb = 2 * hist_range + 1
    ok = (v >= 0) & (v < nb)
    cell = np.arange(n * m).reshape(n, m, 1, 1) * hist_freqs + np.arange(hist_freqs)
    flat = (np.broadcast_to(cell, v.shape) * nb + v)[ok]
    hist = np.bincount(flat, minlength=n * m * hist_freqs * nb).reshape(n, m, hist_freqs, nb).astype(np.float32) / k
    return np.abs(scipy.fft.rfft(hist, axis=-1)).reshape(n, m, -1)


def _band_matrix(block: int, n_bands: int) -> np.ndarray:
    """(block*block, n_bands) averaging matrix over the AC coefficients of a tile's DCT,
    grouped by anti-diagonal (u + v = 1 .. 2 * block - 2) into ``n_bands`` equal bands."""
    i, j = np.divmod(np.arange(block * block), block)
    d = i + j
    band = np.minimum((d - 1) * n_bands // (2 * block - 2), n_bands - 1)
    M = np.zeros((block * block, n_bands), np.float32)
    M[d >= 1, band[d >= 1]] = 1.0
    return M / M.sum(0)


def block_feature_names(block: int = 32, k_dct: int = 32, n_bands: int = 8, hist_freqs: int = 9,
                        hist_range: int = 15) -> list[str]:
    """Column names of :func:`block_features`, in order."""
    return ([f"dct_zz{i}" for i in range(k_dct)] + [f"dct_band{b}" for b in range(n_bands)]
            + [f"jpeg_logmag{u}_{v}" for u in range(8) for v in range(8) if u or v]
            + [f"jpeg_zero{u}_{v}" for u in range(8) for v in range(8) if u or v]
            + [f"hist{f}_fft{k}" for f in range(hist_freqs) for k in range(hist_range + 1)])


def skin_fraction(rgb: np.ndarray, block: int = 32) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB -> (n, n_blocks): share of each tile's pixels whose YCrCb
    chroma lies in the skin range (tiles as in :func:`to_blocks`)."""
    n, H, W, _ = rgb.shape
    ycc = cv2.cvtColor(rgb.reshape(n * H, W, 3), cv2.COLOR_RGB2YCrCb).reshape(n, H, W, 3)
    cr, cb = ycc[..., 1], ycc[..., 2]
    skin = (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])
    return to_blocks(skin.astype(np.float32), block).mean(axis=(2, 3))


def block_features(crops: np.ndarray, block: int = 32, k_dct: int = 32, n_bands: int = 8, hist_freqs: int = 9,
                   hist_range: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile features and skin fractions of a batch of crops.

    Returns ``F`` (n, n_blocks, d) float32 and ``skin`` (n, n_blocks) float32, tiles as in
    :func:`to_blocks`. Columns (names in :func:`block_feature_names`): ``log1p(|c|)`` of the
    tile's first ``k_dct`` zig-zag DCT coefficients; the mean ``log1p(|c|)`` of its AC
    coefficients in ``n_bands`` anti-diagonal frequency bands (blur and resampling remove
    the upper bands); over its 8x8 sub-blocks, the mean ``log1p(|c|)`` and the share of
    coefficients that round to 0 at each of the 63 AC frequencies (what JPEG quantisation
    removed); and :func:`dct_histogram_features`.
    """
    rgb = as_uint8_rgb(crops)
    if block < 8 or block % 8:
        raise ValueError(f"block must be a positive multiple of 8, got {block}")
    if not 0 <= k_dct <= block * block:
        raise ValueError(f"k_dct={k_dct} outside 0..{block * block}, the coefficients of a tile")
    if not 0 <= hist_freqs <= 63 or hist_range < 1 or n_bands < 1:
        raise ValueError(f"need 0 <= hist_freqs <= 63, hist_range >= 1, n_bands >= 1; got {hist_freqs}, "
                         f"{hist_range}, {n_bands}")
    d = len(block_feature_names(block, k_dct, n_bands, hist_freqs, hist_range))
    n, H, W = rgb.shape[:3]
    m = (max(H, block) // block) * (max(W, block) // block)
    F, skin = np.empty((n, m, d), np.float32), np.empty((n, m), np.float32)
    zz, bands = zigzag(block)[:k_dct], _band_matrix(block, n_bands)
    for i in range(0, n, _CHUNK):
        part = rgb[i:i + _CHUNK]
        yb = to_blocks(luma(part), block)                                      # (c, m, B, B)
        la = np.log1p(np.abs(block_dct_coeffs(yb).reshape(*yb.shape[:2], -1)))
        jc = jpeg_dct(yb)
        F[i:i + len(part)] = np.concatenate([
            la[..., zz], la @ bands,
            np.log1p(np.abs(jc[..., 1:])).mean(2), (np.abs(jc[..., 1:]) < 0.5).mean(2),
            dct_histogram_features(jc, hist_freqs, hist_range)], axis=-1)
        skin[i:i + len(part)] = skin_fraction(part, block)
    return F, skin


# ----------------------------------------------------------------------------- ELA

def jpeg_roundtrip(rgb: np.ndarray, quality: int, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """One (H, W, 3) uint8 RGB image saved as JPEG at ``quality`` by OpenCV and decoded.
    ``offset`` (dy, dx) shifts the 8x8 grid: the image is edge-padded by it on the top/left
    before encoding and cropped back after."""
    dy, dx = offset
    img = np.pad(rgb, ((dy, 0), (dx, 0), (0, 0)), mode="edge") if dy or dx else rgb
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode an image of shape {rgb.shape}")
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(out[dy:, dx:]) if dy or dx else out


def ela_levels(crops: np.ndarray, quality: int = 90) -> np.ndarray:
    """Integer error levels |crop - JPEG(crop, quality)|, (n, H, W, 3) uint8."""
    rgb = as_uint8_rgb(crops)
    out = np.empty(rgb.shape, np.uint8)
    for i, img in enumerate(rgb):
        out[i] = cv2.absdiff(img, jpeg_roundtrip(img, quality))
    return out


def ela_map(crops: np.ndarray, quality: int = 90) -> np.ndarray:
    """Error level analysis: |crop - JPEG(crop, quality)| / 255, (n, H, W, 3) float32 in [0, 1]."""
    return ela_levels(crops, quality).astype(np.float32) / np.float32(255.0)


_PCTS = (50, 90, 99)


def ela_feature_names(qualities=(90,), grid: int = 4, hist_bins: int = 16) -> list[str]:
    """Column names of :func:`ela_features`, in order."""
    names = []
    for q in qualities:
        names += [f"q{q}_{s}_{ch}" for ch in "rgb" for s in ("mean", "std", *(f"p{p}" for p in _PCTS), "max")]
        names += [f"q{q}_grid{i}_{j}" for i in range(grid) for j in range(grid)]
        names += [f"q{q}_rel{i}_{j}" for i in range(grid) for j in range(grid)]
        names += [f"q{q}_level{k}" for k in range(hist_bins - 1)] + [f"q{q}_level{hist_bins - 1}+"]
    return names


def _ela_stats(rgb: np.ndarray, quality: int, grid: int, hist_bins: int) -> np.ndarray:
    """ELA features of a chunk of (c, H, W, 3) uint8 crops at one quality, on the [0, 1]
    scale. Per crop only OpenCV calls (JPEG round trip, absdiff, per-channel 256-bin
    histogram, integral image); the statistics are then computed for the chunk at once
    from the exact integer-level histograms."""
    c, H, W, _ = rgb.shape
    gh, gw = max(H, grid), max(W, grid)
    h = np.empty((c, 3, 256), np.float64)
    ey, ex = (np.arange(grid + 1) * gh) // grid, (np.arange(grid + 1) * gw) // grid
    y0, y1, x0, x1 = ey[:-1, None], ey[1:, None], ex[None, :-1], ex[None, 1:]
    gsum = np.empty((c, grid, grid), np.float64)
    for i, img in enumerate(rgb):
        lev = cv2.absdiff(img, jpeg_roundtrip(img, quality))
        for ch in range(3):
            h[i, ch] = cv2.calcHist([lev], [ch], None, [256], [0, 256])[:, 0]
        if gh != H or gw != W:      # sides shorter than the grid: repeat pixels up to it
            lev = np.repeat(np.repeat(lev, -(-gh // H), 0)[:gh], -(-gw // W), 1)[:, :gw]
        S = cv2.integral(np.ascontiguousarray(lev), sdepth=cv2.CV_64F)          # (gh+1, gw+1, 3)
        gsum[i] = (S[y1, x1] - S[y0, x1] - S[y1, x0] + S[y0, x0]).sum(-1)
    N = H * W
    k = np.arange(256.0)
    mean = h @ k / N
    std = np.sqrt(np.maximum(h @ (k * k) / N - mean ** 2, 0.0))
    cdf = np.cumsum(h, axis=-1)
    pct = [np.argmax(cdf >= p / 100 * N, axis=-1) for p in _PCTS]                        # inverted CDF
    mx = 255 - np.argmax(h[..., ::-1] > 0, axis=-1)
    per_ch = np.stack([mean, std, *pct, mx], axis=-1).reshape(c, -1) / 255.0            # (c, 3 * 6)
    gm = (gsum / ((y1 - y0) * (x1 - x0))).reshape(c, -1) / (3 * 255.0)
    rel = gm / (gm.mean(1, keepdims=True) + 1e-4)
    hs = h.sum(1)
    hist = np.concatenate([hs[:, :hist_bins - 1], hs[:, hist_bins - 1:].sum(1, keepdims=True)], 1) / (3 * N)
    return np.concatenate([per_ch, gm, rel, hist], axis=1)


def ela_features(crops: np.ndarray, qualities=(90,), grid: int = 4, hist_bins: int = 16) -> np.ndarray:
    """(n, H, W, 3) crops -> (n, len(qualities) * (18 + 2 * grid**2 + hist_bins)) float32.

    Per JPEG quality, statistics of the ELA map on the [0, 1] scale: per RGB channel mean,
    std, 50/90/99th percentile (inverted CDF) and max; the grid means of the channel-summed
    map and the same divided by their mean; the share of channel values at each integer
    error level 0 .. hist_bins - 2, and at hist_bins - 1 or above. Names in
    :func:`ela_feature_names`."""
    rgb = as_uint8_rgb(crops)
    if not 2 <= hist_bins <= 256 or grid < 1:
        raise ValueError(f"need 2 <= hist_bins <= 256 and grid >= 1, got {hist_bins}, {grid}")
    d = len(ela_feature_names(qualities, grid, hist_bins))
    out = np.zeros((len(rgb), d), np.float32)
    for i in range(0, len(rgb), _CHUNK):
        part = rgb[i:i + _CHUNK]
        out[i:i + len(part)] = np.concatenate([_ela_stats(part, q, grid, hist_bins) for q in qualities], axis=1)
    return out


# ----------------------------------------------------------------------------- classifiers

def _sample_weights(y: np.ndarray, per_row: np.ndarray) -> np.ndarray:
    """Row weights: ``per_row`` (e.g. 1 / tiles of the row's crop), then rescaled so both
    classes carry the same total and the mean weight is 1."""
    w = per_row.astype(np.float64).copy()
    for c in (0, 1):
        w[y == c] /= w[y == c].sum()
    return w * len(w) / w.sum()


def _cv_splits(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list:
    """Calibration folds that keep each video's rows together (StratifiedGroupKFold); where
    there are too few videos per class for that, row-level stratified folds with a warning."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    per_class = min(len(np.unique(groups[y == c])) for c in (0, 1))
    k = min(folds, per_class)
    if k >= 2:
        splits = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y, groups))
        if all(len(np.unique(y[tr])) == 2 and len(np.unique(y[te])) >= 1 for tr, te in splits):
            return splits
    warnings.warn(f"calibration: {per_class} video(s) in the smaller class, too few for {folds} grouped "
                  "folds; calibrating on row-level folds (optimistic)", stacklevel=3)
    k = max(2, min(folds, int(np.bincount(y).min())))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y))


def _build_classifier(kind: str, h: dict, seed: int, y: np.ndarray, groups: np.ndarray):
    """A scikit-learn pipeline for ``kind``; probabilistic, calibrated per ``h['calibration']``."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    scale = kind in ("lr", "svm")
    if kind == "lr":
        est = LogisticRegression(C=h["C"], max_iter=2000, random_state=seed)
    elif kind == "svm":
        est = LinearSVC(C=h["C"], max_iter=20000, random_state=seed)
    elif kind == "rf":
        est = RandomForestClassifier(n_estimators=h["n_estimators"], max_depth=h["max_depth"],
                                     min_samples_leaf=h["min_samples_leaf"], max_features="sqrt",
                                     n_jobs=1, random_state=seed)
    elif kind == "gb":
        est = HistGradientBoostingClassifier(learning_rate=h["learning_rate"], max_iter=h["n_estimators"],
                                             max_depth=h["max_depth"], min_samples_leaf=h["min_samples_leaf"],
                                             early_stopping=False, random_state=seed)
    else:
        raise ValueError(f"unknown classifier {kind!r}")
    cal = h["calibration"]
    if cal == "auto":
        cal = "none" if kind == "lr" else "sigmoid"
    if cal not in ("none", "sigmoid", "isotonic"):
        raise ValueError(f"calibration must be auto, none, sigmoid or isotonic, got {cal!r}")
    if cal == "none" and kind == "svm":
        raise ValueError("a linear SVM has no probabilities: calibration cannot be 'none'")
    if cal != "none":
        est = CalibratedClassifierCV(est, method=cal, cv=_cv_splits(y, groups, h["cv_folds"], seed))
    steps = ([("scale", StandardScaler())] if scale else []) + [("clf", est)]
    return Pipeline(steps)


def _fit_rows(kind: str, h: dict, seed: int, X: np.ndarray, y: np.ndarray, groups: np.ndarray, per_row: np.ndarray):
    if len(np.unique(y)) < 2:
        raise ValueError("training data need both real (0) and fake (1) crops")
    pipe = _build_classifier(kind, h, seed, y, groups)
    pipe.fit(X, y, clf__sample_weight=_sample_weights(y, per_row))
    return pipe


def _fake_proba(pipe, X: np.ndarray) -> np.ndarray:
    classes = list(pipe.classes_)
    return np.clip(pipe.predict_proba(X)[:, classes.index(1)], 0.0, 1.0)


class _ForensicDetector(FrameDetector):
    family = "forensic"

    def _labelled(self, train: CropSet) -> CropSet:
        keep = np.asarray(train.label) >= 0
        if not keep.all():
            train = CropSet(train.crops[keep], train.video_id[keep], train.label[keep], train.frame[keep])
        return train

    def _check_classifier(self) -> str:
        kind = self.hyper["classifier"]
        if kind not in _CLASSIFIERS[self.name]:
            raise ValueError(f"{self.name}: classifier must be one of {_CLASSIFIERS[self.name]}, got {kind!r}")
        return kind

    def _validate(self, val: CropSet | None) -> None:
        """Video-level metrics on ``val`` (not used for fitting), kept in ``val_metrics_``."""
        self.val_metrics_ = None
        if val is not None and len(val):
            from blinkbench.detectors.evaluation import metrics

            v = self.predict_videos(self._labelled(val))
            self.val_metrics_ = metrics(v["label"], v["mean_prob"])

    def predict_frames(self, crops: np.ndarray) -> np.ndarray:
        if not self.fitted_:
            raise RuntimeError(f"{self.name}: predict before fit")
        if len(crops) == 0:
            return np.zeros(0)
        return self._predict(crops)


@register("block_dct")
class BlockDCT(_ForensicDetector):
    """Block DCT + DCT-histogram features per luma tile, skin tiles, mean tile probability."""

    test_params = {"n_estimators": 30, "max_train_blocks": 4000, "cv_folds": 2}

    @classmethod
    def default_hyper(cls) -> dict[str, Any]:
        return {"block": 32, "k_dct": 32, "n_bands": 8, "hist_freqs": 9, "hist_range": 15,
                "skin_filter": True, "min_skin": 0.5,
                "classifier": "lr", "C": 0.1, "n_estimators": 200, "max_depth": None, "min_samples_leaf": 5,
                "calibration": "auto", "cv_folds": 3, "max_train_blocks": 200_000}

    def features(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = self.hyper
        return block_features(crops, h["block"], h["k_dct"], h["n_bands"], h["hist_freqs"], h["hist_range"])

    def feature_names(self) -> list[str]:
        h = self.hyper
        return block_feature_names(h["block"], h["k_dct"], h["n_bands"], h["hist_freqs"], h["hist_range"])

    def _keep(self, skin: np.ndarray) -> np.ndarray:
        """(n, m) bool: the tiles a crop is judged on (its skin tiles, or all without any)."""
        if not self.hyper["skin_filter"]:
            return np.ones(skin.shape, bool)
        keep = skin >= self.hyper["min_skin"]
        keep[~keep.any(axis=1)] = True
        return keep

    def fit(self, train: CropSet, val: CropSet | None = None) -> "BlockDCT":
        """Fit on the (skin) tiles of the labelled crops; at most ``max_train_blocks`` tiles,
        drawn with the seed, whose features are computed chunk by chunk (never all at once)."""
        kind = self._check_classifier()
        train = self._labelled(train)
        crops = as_uint8_rgb(train.crops) if len(train) else np.zeros((0, 1, 1, 3), np.uint8)
        skin = np.concatenate([skin_fraction(crops[i:i + _CHUNK], self.hyper["block"])
                               for i in range(0, len(crops), _CHUNK)] or [np.zeros((0, 1), np.float32)])
        crop_i, blk_i = np.nonzero(self._keep(skin))
        if len(crop_i) > self.hyper["max_train_blocks"]:
            rng = np.random.default_rng(self.seed)
            sel = np.sort(rng.choice(len(crop_i), self.hyper["max_train_blocks"], replace=False))
            crop_i, blk_i = crop_i[sel], blk_i[sel]
        X = np.empty((len(crop_i), len(self.feature_names())), np.float32)
        for i in range(0, len(crops), _CHUNK):
            rows = np.flatnonzero((crop_i >= i) & (crop_i < i + _CHUNK))
            if len(rows):
                F, _ = self.features(crops[i:i + _CHUNK])
                X[rows] = F[crop_i[rows] - i, blk_i[rows]]
        per_crop = np.bincount(crop_i, minlength=len(train))
        y = np.asarray(train.label, int)[crop_i]
        self.pipeline_ = _fit_rows(kind, self.hyper, self.seed, X, y, np.asarray(train.video_id)[crop_i],
                                   1.0 / np.maximum(per_crop[crop_i], 1))
        self.n_train_blocks_ = int(len(X))
        self.fitted_ = True
        self._validate(val)
        return self

    def predict_blocks(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-tile fake probabilities (n, m) and the mask of the tiles that count (n, m)."""
        F, skin = self.features(crops)
        n, m, d = F.shape
        p = _fake_proba(self.pipeline_, F.reshape(n * m, d)).reshape(n, m)
        return p, self._keep(skin)

    def _predict(self, crops):
        crops = as_uint8_rgb(crops)
        out = np.empty(len(crops))
        for i in range(0, len(crops), _CHUNK):
            p, keep = self.predict_blocks(crops[i:i + _CHUNK])
            out[i:i + len(p)] = (p * keep).sum(1) / keep.sum(1)
        return out


@register("ela")
class ELA(_ForensicDetector):
    """Error level analysis statistics per crop -> classifier."""

    test_params = {"n_estimators": 50, "cv_folds": 2}

    @classmethod
    def default_hyper(cls) -> dict[str, Any]:
        return {"quality": 90, "extra_qualities": (75,), "grid": 4, "hist_bins": 16,
                "classifier": "lr", "C": 1.0, "n_estimators": 200, "max_depth": None, "min_samples_leaf": 2,
                "learning_rate": 0.1, "calibration": "auto", "cv_folds": 3}

    def features(self, crops: np.ndarray) -> np.ndarray:
        h = self.hyper
        return ela_features(crops, self.qualities(), h["grid"], h["hist_bins"])

    def qualities(self) -> tuple[int, ...]:
        """The re-save qualities: ``quality`` first, then ``extra_qualities`` (duplicates dropped)."""
        qs = [int(self.hyper["quality"]), *map(int, self.hyper["extra_qualities"] or ())]
        bad = [q for q in qs if not 1 <= q <= 100]
        if bad:
            raise ValueError(f"ela: JPEG qualities must be in 1..100, got {bad}")
        return tuple(dict.fromkeys(qs))

    def feature_names(self) -> list[str]:
        return ela_feature_names(self.qualities(), self.hyper["grid"], self.hyper["hist_bins"])

    def fit(self, train: CropSet, val: CropSet | None = None) -> "ELA":
        kind = self._check_classifier()
        train = self._labelled(train)
        X = self.features(train.crops)
        y = np.asarray(train.label, int)
        self.pipeline_ = _fit_rows(kind, self.hyper, self.seed, X, y, np.asarray(train.video_id), np.ones(len(y)))
        self.fitted_ = True
        self._validate(val)
        return self

    def _predict(self, crops):
        return _fake_proba(self.pipeline_, self.features(crops))


# ----------------------------------------------------------------------------- synthetic task

def _smooth_noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    g = rng.standard_normal((size // cell + 2, size // cell + 2)).astype(np.float32)
    big = cv2.resize(g, (size + 2 * cell, size + 2 * cell), interpolation=cv2.INTER_CUBIC)
    return big[cell:cell + size, cell:cell + size]


def _face_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A face-like float32 RGB image: textured skin-coloured ellipse with dark features, hair
    band and a non-skin background; and the face ellipse's mask."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    bg = rng.uniform([20, 60, 110], [90, 140, 200]) if rng.random() < 0.5 else rng.uniform([30, 90, 40], [90, 160, 110])
    img = np.empty((size, size, 3), np.float32)
    img[:] = bg
    img += 12 * _smooth_noise(rng, size, max(4, size // 4))[..., None]
    cy, cx = 0.55 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03)
    ry, rx = rng.uniform(0.36, 0.42), rng.uniform(0.28, 0.33)
    face = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    skin = np.array([205, 150, 125], np.float32) + rng.uniform(-12, 12, 3)
    tex = sum(a * _smooth_noise(rng, size, max(2, size // c)) for a, c in ((10, 4), (6, 16), (4, 48)))
    img[face] = (skin + tex[..., None])[face]
    hair = face & (yy < cy - 0.6 * ry)
    img[hair] = rng.uniform(20, 60, 3)
    for fy, fx, sy, sx in ((-0.15, -0.13, 0.03, 0.06), (-0.15, 0.13, 0.03, 0.06), (0.2, 0.0, 0.03, 0.1)):
        e = ((yy - cy - fy) / sy) ** 2 + ((xx - cx - fx) / sx) ** 2 <= 1
        img[e] = img[e] * 0.4
    return img, face.astype(np.float32)


def synthetic_task(n_videos: int = 24, crops_per_video: int = 4, size: int = 128, seed: int = 0) -> CropSet:
    """A seeded real/fake CropSet with forensic cues only (no semantic difference).

    Videos alternate real/fake. Each video has its own scene; its crops differ by a small
    shift, brightness and fresh sensor noise, and a random camera blur. Real crops are saved
    once as JPEG q90. Fake crops replace the face ellipse (feathered) by a copy of the crop
    that was resampled (down by 0.7-0.95 and back) and JPEG-compressed at q 70-90 on a grid
    shifted by 0-7 pixels, then the whole crop is saved as JPEG q90.
    """
    crops, vids, labels, frames = [], [], [], []
    for v in range(n_videos):
        rng = np.random.default_rng([seed, v])
        label = v % 2
        scene, face = _face_scene(rng, size + 8)
        cam_sigma = rng.uniform(0.0, 0.7)
        for f in range(crops_per_video):
            dy, dx = rng.integers(0, 9, 2)
            img = scene[dy:dy + size, dx:dx + size] * rng.uniform(0.93, 1.07)
            if cam_sigma > 0.05:
                img = cv2.GaussianBlur(img, (0, 0), cam_sigma)
            img = np.clip(img + rng.normal(0, 2.5, img.shape), 0, 255).astype(np.uint8)
            if label:
                s = rng.uniform(0.7, 0.95)
                small = cv2.resize(img, (max(8, int(size * s)),) * 2, interpolation=cv2.INTER_AREA)
                region = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
                region = jpeg_roundtrip(region, int(rng.integers(70, 91)), tuple(rng.integers(0, 8, 2)))
                alpha = cv2.GaussianBlur(face[dy:dy + size, dx:dx + size], (0, 0), size / 40)[..., None]
                img = np.clip(alpha * region + (1 - alpha) * img + 0.5, 0, 255).astype(np.uint8)
            crops.append(jpeg_roundtrip(img, 90))
            vids.append(f"syn{seed}_{v:03d}")
            labels.append(label)
            frames.append(f)
    return CropSet(np.stack(crops), np.array(vids, object), np.array(labels), np.array(frames))
