"""EAR series preparation for the blink-based detectors, all from ``params.yaml``
(``detectors.series``).

A video's EAR artifact (``timestamp_s``, ``ear_mean``; NaN where no face) becomes:

1. **resampled** to ``rate_hz`` on a uniform grid by linear interpolation in time, so 25 and
   30 fps videos (and variable frame rate ones) mix;
2. **gap-handled**: runs without a face up to ``interpolate_gap_s`` are interpolated; longer
   runs stay *masked* (``mask`` is False there) and are filled with the neutral value (the
   video's open-eye level) so that classifiers that cannot take NaN still can be fed;
3. **normalised** per series: ``none``, ``median`` (divide by the video's open-eye level,
   its median EAR, so open eyes sit near 1 whatever the face shape or landmark scheme),
   ``zscore`` or ``minmax``;
4. cut into **fixed-length windows** of ``window_s`` seconds every ``stride_s`` seconds
   (a video shorter than one window gives one window, padded with the neutral value and
   masked there); windows more than ``max_masked_fraction`` masked are dropped unless that
   would leave the video with none.

Window scores become a video score by ``aggregate`` (mean, median or max).
The **feature view** (:func:`features`) gives per-video blink statistics: rate, durations,
inter-blink intervals, closures and EAR level/variability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

NORMALISATIONS = ("none", "median", "zscore", "minmax")
AGGREGATES = ("mean", "median", "max")


@dataclass(frozen=True)
class SeriesConfig:
    rate_hz: float = 25.0
    interpolate_gap_s: float = 0.25
    normalise: str = "median"
    window_s: float = 6.0
    stride_s: float = 2.0
    max_masked_fraction: float = 0.3
    aggregate: str = "mean"

    def __post_init__(self):
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, not {self.normalise!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, not {self.aggregate!r}")
        if self.rate_hz <= 0 or self.window_s <= 0 or self.stride_s <= 0:
            raise ValueError("rate_hz, window_s and stride_s must be positive")

    @property
    def window_len(self) -> int:
        return max(1, int(round(self.window_s * self.rate_hz)))

    @property
    def stride_len(self) -> int:
        return max(1, int(round(self.stride_s * self.rate_hz)))

    @classmethod
    def from_params(cls, cfg: dict | None) -> "SeriesConfig":
        return cls(**(cfg or {}))

    def as_dict(self) -> dict:
        return asdict(self)


# Keys of the blink summary (blinks.summarize) used as the feature view, in this order.
FEATURE_KEYS = ("blink_rate_per_min", "n_blinks", "mean_blink_ms", "median_blink_ms", "ibi_mean_s",
                "ibi_median_s", "ibi_cv", "n_closures", "closure_total_s", "ear_median")
# Extra features computed from the series itself.
SERIES_FEATURE_KEYS = ("ear_std", "ear_p05_ratio", "face_fraction")


@dataclass
class VideoSeries:
    """One video as the blink detectors see it: raw EAR over time plus its blink summary."""

    video_id: str
    t: np.ndarray                       # timestamps, seconds
    ear: np.ndarray                     # ear_mean, NaN where no face
    summary: dict = field(default_factory=dict)   # blinks.summarize() output (may be empty)
    label: int | None = None            # 1 fake, 0 real, None unknown

    @classmethod
    def from_artifacts(cls, video_id: str, ear_path: str | Path, summary_path: str | Path | None = None,
                       label: int | None = None) -> "VideoSeries":
        import pandas as pd  # here, not at the top: the workflow's parse imports this module

        from blinkbench.core import io

        df = pd.read_parquet(ear_path, columns=["timestamp_s", "ear_mean"])
        summary = io.read_json(summary_path) if summary_path and Path(summary_path).exists() else {}
        return cls(video_id, df["timestamp_s"].to_numpy(float), df["ear_mean"].to_numpy(float), summary, label)


@dataclass
class Prepared:
    values: np.ndarray   # uniform-rate, gap-handled, normalised series
    mask: np.ndarray     # True where observed or interpolated over a short gap


def resample(t: np.ndarray, x: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation onto a uniform grid; grid points inside a NaN run stay NaN."""
    t = np.asarray(t, float)
    x = np.asarray(x, float)
    if len(t) == 0:
        return np.zeros(0), np.zeros(0)
    grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * rate_hz + 1e-9)) + 1) / rate_hz
    ok = np.isfinite(x)
    if ok.sum() == 0:
        return grid, np.full(len(grid), np.nan)
    y = np.interp(grid, t[ok], x[ok])
    # A grid point is unobserved when its nearest source sample is NaN.
    idx = np.clip(np.searchsorted(t, grid), 1, max(len(t) - 1, 1)) if len(t) > 1 else np.zeros(len(grid), int)
    if len(t) > 1:
        left = idx - 1
        nearest = np.where(np.abs(t[left] - grid) <= np.abs(t[idx] - grid), left, idx)
    else:
        nearest = idx
    y[~ok[nearest]] = np.nan
    return grid, y


def _fill_short_runs(y: np.ndarray, max_len: int) -> np.ndarray:
    """Interpolate NaN runs of at most ``max_len`` samples that have data on both sides."""
    y = y.copy()
    nan = ~np.isfinite(y)
    if not nan.any() or nan.all():
        return y
    edges = np.diff(np.concatenate([[0], nan.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    idx = np.arange(len(y))
    good = ~nan
    for s, e in zip(starts, ends):
        if e - s <= max_len and s > 0 and e < len(y):
            y[s:e] = np.interp(idx[s:e], idx[good], y[good])
    return y


def prepare(video: VideoSeries, cfg: SeriesConfig) -> Prepared:
    _, y = resample(video.t, video.ear, cfg.rate_hz)
    y = _fill_short_runs(y, int(round(cfg.interpolate_gap_s * cfg.rate_hz)))
    mask = np.isfinite(y)
    if not mask.any():
        return Prepared(np.ones(len(y)) if cfg.normalise == "median" else np.zeros(len(y)), mask)
    obs = y[mask]
    level = float(np.median(obs))
    if cfg.normalise == "median":
        # a non-positive median (no usable open-eye level) leaves the series unscaled
        y, neutral = (y / level, 1.0) if level > 0 else (y, level)
    elif cfg.normalise == "zscore":
        sd = float(obs.std())
        y = (y - obs.mean()) / (sd if sd > 1e-9 else 1.0)
        neutral = (level - obs.mean()) / (sd if sd > 1e-9 else 1.0)
    elif cfg.normalise == "minmax":
        lo, hi = float(obs.min()), float(obs.max())
        span = hi - lo if hi - lo > 1e-9 else 1.0
        y = (y - lo) / span
        neutral = (level - lo) / span
    else:
        neutral = level
    y = np.where(mask, y, neutral)
    return Prepared(y.astype(np.float32), mask)


def windows(prep: Prepared, cfg: SeriesConfig) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-length windows ``(n, window_len)`` and their masks (same shape)."""
    L, S = cfg.window_len, cfg.stride_len
    v, m = prep.values, prep.mask
    if len(v) < L:
        neutral = float(np.median(v[m])) if m.any() else (1.0 if cfg.normalise == "median" else 0.0)
        pad = L - len(v)
        v = np.concatenate([v, np.full(pad, neutral, np.float32)])
        m = np.concatenate([m, np.zeros(pad, bool)])
    starts = np.arange(0, len(v) - L + 1, S)
    if starts[-1] != len(v) - L:           # cover the tail too
        starts = np.append(starts, len(v) - L)
    W = np.stack([v[s:s + L] for s in starts]).astype(np.float32)
    M = np.stack([m[s:s + L] for s in starts])
    keep = (1 - M.mean(axis=1)) <= cfg.max_masked_fraction
    if keep.any():
        W, M = W[keep], M[keep]
    return W, M


def window_batch(videos: Sequence[VideoSeries], cfg: SeriesConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of many videos stacked: ``X (n, L)``, masks ``(n, L)``, ``group`` (n,) = video index."""
    Xs, Ms, gs = [], [], []
    for i, v in enumerate(videos):
        W, M = windows(prepare(v, cfg), cfg)
        Xs.append(W)
        Ms.append(M)
        gs.append(np.full(len(W), i))
    if not Xs:
        L = cfg.window_len
        return np.zeros((0, L), np.float32), np.zeros((0, L), bool), np.zeros(0, int)
    return np.concatenate(Xs), np.concatenate(Ms), np.concatenate(gs)


def aggregate(window_scores: np.ndarray, group: np.ndarray, n_videos: int, how: str = "mean") -> np.ndarray:
    """Video-level scores from window scores; a video without windows gets 0.5 (no evidence)."""
    fn = {"mean": np.mean, "median": np.median, "max": np.max}[how]
    out = np.full(n_videos, 0.5)
    for i in range(n_videos):
        s = window_scores[group == i]
        if len(s):
            out[i] = float(fn(s))
    return out


def ensure_summary(video: VideoSeries, blink_params: dict | None = None) -> VideoSeries:
    """Fill ``video.summary`` from its EAR with the blink detector when it is empty (series
    built in memory, e.g. in tests); artifacts from the pipeline already carry one."""
    from blinkbench.spine import blinks
    from blinkbench.core import config

    if not video.summary and len(video.t):
        cfg = {**config.defaults("blinks"), **(blink_params or {})}
        events = blinks.detect(video.t, video.ear, cfg)
        video.summary = blinks.summarize(video.t, video.ear, np.isfinite(video.ear), events)
    return video


def features(video: VideoSeries) -> np.ndarray:
    """The feature view: blink statistics from the summary, plus EAR level/variability.
    Undefined statistics (no blink, so no interval) become documented fill values:
    durations and intervals 0, ``ibi_cv`` 0."""
    s = ensure_summary(video).summary or {}
    vals = []
    for k in FEATURE_KEYS:
        x = s.get(k)
        vals.append(float(x) if x is not None and np.isfinite(float(x)) else 0.0)
    e = np.asarray(video.ear, float)
    ok = np.isfinite(e)
    if ok.any():
        med = float(np.median(e[ok]))
        vals += [float(e[ok].std() / med) if med > 0 else 0.0,
                 float(np.percentile(e[ok], 5) / med) if med > 0 else 0.0,
                 float(ok.mean())]
    else:
        vals += [0.0, 0.0, 0.0]
    return np.asarray(vals, np.float64)


def feature_names() -> list[str]:
    return list(FEATURE_KEYS + SERIES_FEATURE_KEYS)


def feature_matrix(videos: Sequence[VideoSeries]) -> np.ndarray:
    if not videos:
        return np.zeros((0, len(feature_names())))
    return np.stack([features(v) for v in videos])
