"""One table-driven test over every registered blink detector (rule, classical, neural).

Each detector, built with its own ``test_params``, must learn a separable synthetic EAR task
(AUC > 0.9 on held-out videos), give one score in [0, 1] per video, survive bad input (no
video, a video with no face) and round-trip through ``save``/``Detector.load`` with identical
scores. New detectors are picked up from the registry, so adding one adds its rows here.

The synthetic task (also used by ``benchmarks/bench_detectors.py``): real videos have an
open-eye EAR near 0.3 with noise and slow drift, and 15-20 blinks a minute, each a 100-400 ms
dip to about 0.1; fake videos cycle through three kinds: no blinks, very rare blinks
(1-3 a minute) and too-long closures (0.8-1.5 s). Videos are 20-30 s at 25 or 30 fps and
some have a short no-face gap, so resampling and gap handling are exercised too.
"""

from __future__ import annotations

import numpy as np
import pytest

from blinkbench.detectors import Detector, available, create, get
from blinkbench.evaluation import metrics
from blinkbench.series import VideoSeries

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


@pytest.fixture(scope="module")
def task():
    return synthetic_task()


DETECTORS = available()


def test_classical_and_rule_detectors_are_registered():
    for name in ("blink_rate_rule", "knn_dtw", "ts_svc_gak", "rocket", "minirocket", "tsf", "weasel",
                 "catch22"):
        assert name in DETECTORS
        assert create(name).family == ("rule" if name == "blink_rate_rule" else "classical")


def test_synthetic_task_is_what_it_claims(task):
    train, y_train, test, y_test = task
    assert len(train) == 24 and len(test) == 16
    assert y_train.sum() == 12 and y_test.sum() == 8
    fps = {round(1 / np.median(np.diff(v.t))) for v in train}
    assert fps == {25, 30}
    durations = np.array([v.t[-1] for v in train + test])
    assert durations.min() >= 19.9 and durations.max() <= 30.0


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_learns_scores_and_round_trips(name, task, tmp_path):
    train, y_train, test, y_test = task
    det = create(name, seed=0, **get(name).test_params)
    with pytest.raises(RuntimeError):
        det.predict_proba(test)
    det.fit(train, y_train)

    p = det.predict_proba(test)
    assert p.shape == (len(test),)
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    m = metrics(y_test, p)
    assert m["auc"] > 0.9, f"{name}: AUC {m['auc']:.3f} on a separable task ({m})"

    det.save(tmp_path / f"{name}.pkl")
    back = Detector.load(tmp_path / f"{name}.pkl")
    assert type(back) is type(det) and back.hyper == det.hyper
    assert np.array_equal(back.predict_proba(test), p)

    # Bad input gives scores, not a crash: no video at all, and a video with no face.
    assert det.predict_proba([]).shape == (0,)
    t = np.arange(500) / 25.0
    faceless = VideoSeries("noface", t, np.full(len(t), np.nan))
    q = det.predict_proba([faceless, test[0]])
    assert q.shape == (2,) and np.isfinite(q).all() and ((q >= 0) & (q <= 1)).all()


@pytest.mark.parametrize("name", [n for n in DETECTORS if get(n).family in ("rule", "classical")])
def test_same_seed_gives_the_same_scores(name, task):
    train, y_train, test, _ = task          # half the training set keeps this cheap
    a, b = (create(name, seed=3, **get(name).test_params).fit(train[:12], y_train[:12]) for _ in range(2))
    assert np.array_equal(a.predict_proba(test[:6]), b.predict_proba(test[:6]))


@pytest.mark.parametrize("name", DETECTORS)
def test_unknown_hyper_parameter_is_rejected(name):
    with pytest.raises(TypeError, match="unknown hyper-parameter"):
        create(name, not_a_hyper_parameter=1)
    # Every test parameter is a real hyper-parameter with a documented default.
    cls = get(name)
    assert set(cls.test_params) <= set(cls.default_hyper())


@pytest.mark.parametrize("name", DETECTORS)
def test_save_before_fit_is_refused(name, tmp_path):
    with pytest.raises(RuntimeError):
        create(name).save(tmp_path / "x.pkl")


def test_fit_needs_both_classes(task):
    train, y_train, _, _ = task
    real = [v for v, y in zip(train, y_train) if y == 0]
    with pytest.raises(ValueError, match="both"):
        create("tsf", **get("tsf").test_params).fit(real, np.zeros(len(real), int))


def test_load_refuses_a_foreign_pickle(tmp_path):
    import pickle

    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"something": "else"}))
    with pytest.raises(ValueError, match="not a blinkbench detector"):
        Detector.load(path)


def test_ridge_calibration_needs_two_videos_per_class(task):
    train, y_train, _, _ = task
    three = train[:3]                        # 2 real, 1 fake: no video-grouped folds possible
    with pytest.raises(ValueError, match="at least 2 real and 2 fake videos"):
        create("rocket", **get("rocket").test_params).fit(three, y_train[:3])


def test_paa_averages_blocks_including_a_short_tail():
    from blinkbench.detectors.classical import _paa

    X = np.arange(10.0)[None]
    np.testing.assert_allclose(_paa(X, 3), [[1.0, 4.0, 7.0, 9.0]])
    np.testing.assert_allclose(_paa(X, 2), [[0.5, 2.5, 4.5, 6.5, 8.5]])
    assert _paa(X, 1) is X
