"""A seeded synthetic EAR task for the blink detectors (tests and benchmarks).

Real videos have an open-eye EAR near 0.3 with noise and slow drift, and 15-20 blinks a
minute, each a 100-400 ms dip to about 0.1; fake videos cycle through three kinds: no
blinks, very rare blinks (1-3 a minute) and too-long closures (0.8-1.5 s). Videos are 20-30 s
at 25 or 30 fps and some have a short no-face gap, so resampling and gap handling are
exercised too. Separable on purpose: it catches broken or inverted detectors, not small
accuracy regressions.
"""

from __future__ import annotations

import numpy as np

from blinkbench.detectors.blink.series import VideoSeries

FAKE_KINDS = ("none", "rare", "long")


def _dip(t: np.ndarray, t0: float, dur: float, depth: float) -> np.ndarray:
    """A raised-cosine dip of ``depth`` centred at ``t0``, ``dur`` seconds wide at its base."""
    x = (t - t0) / dur
    return np.where(np.abs(x) < 0.5, depth * 0.5 * (1 + np.cos(2 * np.pi * x)), 0.0)


def synthetic_video(rng: np.random.Generator, kind: str, fps: float, duration_s: float,
                    video_id: str) -> VideoSeries:
    """One EAR series: ``kind`` is ``real`` or one of :data:`FAKE_KINDS`."""
    n = int(round(duration_s * fps))
    t = np.arange(n) / fps
    level = rng.uniform(0.26, 0.34)
    drift = 0.015 * np.sin(2 * np.pi * t / rng.uniform(8, 20) + rng.uniform(0, 2 * np.pi))
    ear = level + drift + rng.normal(0, 0.008, n)
    rate, durations = {"real": (rng.uniform(15, 20), (0.10, 0.40)),
                       "rare": (rng.uniform(1, 3), (0.10, 0.40)),
                       "long": (rng.uniform(4, 8), (0.8, 1.5)),
                       "none": (0.0, None)}[kind]
    if rate > 0:
        start = rng.uniform(0, 60 / rate)
        while start < duration_s:
            d = rng.uniform(*durations)
            ear = ear - _dip(t, start, d, level - rng.uniform(0.08, 0.12))
            start += max(d + 0.5, rng.gamma(4.0, 60 / rate / 4.0))   # fairly regular intervals
    if rng.random() < 0.3:                                           # a short no-face gap
        g = rng.integers(0, n - 10)
        ear[g:g + int(rng.integers(2, 6))] = np.nan
    return VideoSeries(video_id, t, ear, label=int(kind != "real"))


def synthetic_videos(n: int, seed: int, duration_s: tuple[float, float] = (20.0, 30.0),
                     prefix: str = "v") -> tuple[list[VideoSeries], np.ndarray]:
    """``n`` videos, real and fake alternating, fake kinds and 25/30 fps cycling; seeded."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(n):
        kind = "real" if i % 2 == 0 else FAKE_KINDS[(i // 2) % len(FAKE_KINDS)]
        fps = 25.0 if (i // 2) % 2 == 0 else 30.0
        videos.append(synthetic_video(rng, kind, fps, rng.uniform(*duration_s), f"{prefix}{seed}_{i}"))
    return videos, np.array([v.label for v in videos])


def synthetic_task(n_train: int = 24, n_test: int = 16, seed: int = 0):
    """Train and test videos drawn independently: ``(train, y_train, test, y_test)``."""
    train, y_train = synthetic_videos(n_train, seed, prefix="train")
    test, y_test = synthetic_videos(n_test, seed + 1000, prefix="test")
    return train, y_train, test, y_test
