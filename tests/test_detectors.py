"""One table-driven test over every registered blink detector (rule, classical, neural).

Each detector, built with its own ``test_params``, must learn a separable synthetic EAR task
(AUC > 0.9 on held-out videos), give one score in [0, 1] per video, survive bad input (no
video, a video with no face) and round-trip through ``save``/``Detector.load`` with identical
scores. New detectors are picked up from the registry, so adding one adds its rows here.

The synthetic task is :mod:`blinkbench.testing.synthetic` (also used by
``benchmarks/bench_detectors.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from blinkbench.detectors.blink import Detector, available, create, get
from blinkbench.detectors.evaluation import metrics
from blinkbench.detectors.blink.series import VideoSeries
from blinkbench.testing.synthetic import FAKE_KINDS, synthetic_task, synthetic_videos  # noqa: F401

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

    det.save(tmp_path / f"{name}.zip")
    back = Detector.load(tmp_path / f"{name}.zip")
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
        create(name).save(tmp_path / "x.zip")


def test_fit_needs_both_classes(task):
    train, y_train, _, _ = task
    real = [v for v, y in zip(train, y_train) if y == 0]
    with pytest.raises(ValueError, match="both"):
        create("tsf", **get("tsf").test_params).fit(real, np.zeros(len(real), int))


def test_load_refuses_a_foreign_pickle(tmp_path):
    import pickle

    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"something": "else"}))
    with pytest.raises(ValueError, match="pickle.*refuses"):
        Detector.load(path)
    path.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a blinkbench model file"):
        Detector.load(path)


def test_ridge_calibration_needs_two_videos_per_class(task):
    train, y_train, _, _ = task
    three = train[:3]                        # 2 real, 1 fake: no video-grouped folds possible
    with pytest.raises(ValueError, match="at least 2 real and 2 fake videos"):
        create("rocket", **get("rocket").test_params).fit(three, y_train[:3])



@pytest.mark.parametrize("name,library", [("learning_shapelets", "pyts.classification"),
                                          ("knn_dtw", "tslearn.neighbors")])
def test_loading_a_model_file_imports_its_numba_library_through_the_cache(name, library, tmp_path, monkeypatch):
    """skops imports a saved estimator's library while reading the file; for pyts and tslearn
    the detector imports it first through ``import_cached`` (numba's cache on), else every job
    loading such a file would compile the library again."""
    from blinkbench.detectors.blink import classical

    videos, y = synthetic_videos(2, 2, duration_s=(8, 8))
    det = create(name, seed=0, **get(name).test_params).fit(videos, y)
    det.save(tmp_path / name)
    seen = []
    real = classical.import_cached
    monkeypatch.setattr(classical, "import_cached", lambda mod: seen.append(mod) or real(mod))
    loaded = Detector.load(tmp_path / name)
    assert seen == [library]
    assert np.array_equal(loaded.predict_proba(videos), det.predict_proba(videos))

def test_paa_averages_blocks_including_a_short_tail():
    from blinkbench.detectors.blink.classical import _paa

    X = np.arange(10.0)[None]
    np.testing.assert_allclose(_paa(X, 3), [[1.0, 4.0, 7.0, 9.0]])
    np.testing.assert_allclose(_paa(X, 2), [[0.5, 2.5, 4.5, 6.5, 8.5]])
    assert _paa(X, 1) is X


_HASH_ALL = """
import hashlib, json, os, sys
from blinkbench.detectors.blink import available, create, get
from blinkbench.testing.synthetic import synthetic_videos
videos, y = synthetic_videos(8, 3, duration_s=(8, 8))
out = {}
for name in available():
    path = os.path.join(sys.argv[1], name)
    create(name, seed=0, **get(name).test_params).fit(videos, y).save(path)
    with open(path, "rb") as fh:
        out[name] = hashlib.sha256(fh.read()).hexdigest()
print(json.dumps(out))
"""


def test_every_model_file_is_byte_identical_across_processes(tmp_path):
    """DVC hashes the model files, so a rerun must write the same bytes, not just the same
    scores: fit every registered detector in two fresh processes and compare the files.
    (catch22 used to fail this: sktime's transformer pickled numba dispatchers whose UUIDs
    are new in every process; TSF and WEASEL kept a wall-clock ``fit_time_``.)"""
    import json
    import subprocess
    import sys

    procs = []
    for i in range(2):
        d = tmp_path / f"run{i}"
        d.mkdir()
        log = open(d / "stderr.log", "w+")  # a file, not a pipe: the two runs never wait on us
        procs.append((subprocess.Popen([sys.executable, "-c", _HASH_ALL, str(d)], stdout=subprocess.PIPE,
                                       stderr=log, text=True), log))
    runs = []
    for p, log in procs:
        out, _ = p.communicate(timeout=900)
        log.seek(0)
        err = log.read()
        log.close()
        assert p.returncode == 0, err[-3000:]
        runs.append(json.loads(out.strip().splitlines()[-1]))
    assert set(runs[0]) == set(DETECTORS)
    differ = sorted(n for n in DETECTORS if runs[0][n] != runs[1][n])
    assert not differ, f"model files differ between two identical fits: {differ}"
