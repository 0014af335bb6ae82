"""The blink-resiliency reference study's classical EAR classifiers (pyts), under this
project's protocol.

The reference (``Mole1424/3rd-year-project``, ``final-code/ear_analysis.py``) trains seven
pyts classifiers on one EAR series per video and keeps the best. Here they are
:class:`~blinkbench.detectors.blink.base.WindowDetector`\\ s like every other classical
detector (:mod:`.classical`): trained on the EAR windows of
:func:`blinkbench.detectors.blink.series.window_batch`, each window inheriting its video's
label, a video's score aggregating its windows' fake probabilities. Defaults are the
reference's (pyts' own defaults); ``test_params`` shrink them for the unit tests.

- ``learning_shapelets``: pyts ``LearningShapelets`` (Grabocka et al. 2014): shapelets and a
  logistic regression on the shapelet distances learnt together by gradient descent; its
  ``predict_proba``. The reference found it the best EAR classifier in 3 of 4 settings.
- ``tsbf``: pyts ``TSBF`` (Baydogan et al. 2013), time series bag of features: interval
  features of random subsequences -> a random forest's out-of-bag class probabilities ->
  histograms -> a second random forest; its vote share.
- ``knn_dtw_classic``, ``knn_dtw_sakoechiba``, ``knn_dtw_itakura``, ``knn_dtw_fast``: k-NN
  under the four DTW variants of pyts (:func:`pyts.metrics.dtw`: unconstrained; in a
  Sakoe-Chiba band; in an Itakura parallelogram; FastDTW, Salvador & Chan 2004), as the
  reference's ``KNeighborsClassifier(metric="dtw"|"dtw_sakoechiba"|"dtw_itakura"|"dtw_fast")``
  with its ``n_neighbors=1``. Probability as :class:`.classical.KnnDtw`: the neighbours'
  vote weighted by inverse distance, add-one smoothed, ``(k * share + 1) / (k + 2)`` (1/3 or
  2/3 for the reference's 1-NN), so windows keep an ordering when averaged per video.
  (``knn_dtw`` of :mod:`.classical` is this project's own tslearn variant: 5 neighbours,
  a band of 0.4 s.)

Model files hold data only: the k-NN detectors keep their training windows and labels as
NumPy arrays (no estimator object: pyts' k-NN would store the DTW *function* as its metric);
LearningShapelets and TSBF are saved with skops and loaded against the allow-list
:data:`blinkbench.detectors.modelfile.TRUSTED` (their classes hold arrays and scikit-learn
trees, nothing callable).

Cost (measured on a 2-core machine under heavy load, 150-sample windows; see the issue-17
report): pyts computes one DTW at a time, about 1-4 ms per pair for the three exact
variants and about 30 ms for FastDTW (pure Python recursion), and k-NN prediction costs
(test windows x training windows) pairs, so these detectors suit the demo and small sets;
``knn_dtw`` (tslearn, compiled in bulk) is the one for large ones. LearningShapelets' fit
grows with ``max_iter`` x windows x shapelets.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import WindowDetector, register
from .classical import _Classical, _fake_proba
from .numba_cache import import_cached


# ----------------------------------------------------------------------------- k-NN under DTW

DTW_METHODS = ("classic", "sakoechiba", "itakura", "fast")


def dtw_matrix(A: np.ndarray, B: np.ndarray, method: str, options: dict | None = None) -> np.ndarray:
    """DTW distances ``(len(A), len(B))`` between the rows of ``A`` and ``B`` with
    :func:`pyts.metrics.dtw` (``method``: classic, sakoechiba, itakura or fast; ``options``
    as pyts takes them), one pair at a time as pyts' own k-NN computes them."""
    if method not in DTW_METHODS:
        raise ValueError(f"unknown DTW method {method!r}; one of {DTW_METHODS}")
    A = np.ascontiguousarray(A, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    if method != "fast" and len(A) and len(B):
        # The three exact variants through tslearn's compiled, batched DTW: the same distances
        # as pyts' (equal to 0.0 on 150-sample windows for classic, a Sakoe-Chiba band of
        # ceil(window_size x length) and an Itakura parallelogram; tests/test_reference_dtw.py),
        # at ~0.3 ms per pair against pyts' 3.5-4.4 ms and its per-process compile.
        cdist_dtw = import_cached("tslearn.metrics").cdist_dtw
        kw = {}
        if method == "sakoechiba":
            ws = float((options or {}).get("window_size", 0.1))
            radius = int(np.ceil(ws * A.shape[1])) if ws < 1 else int(ws)
            kw = {"global_constraint": "sakoe_chiba", "sakoe_chiba_radius": radius}
        elif method == "itakura":
            kw = {"global_constraint": "itakura", "itakura_max_slope": float((options or {}).get("max_slope", 2.0))}
        return cdist_dtw(A[..., None], B[..., None], **kw)
    dtw = import_cached("pyts.metrics").dtw
    options = dict(options or {}) or None
    out = np.zeros((len(A), len(B)))
    for i, a in enumerate(A):
        for j, b in enumerate(B):
            out[i, j] = dtw(a, b, dist="square", method=method, options=options)
    return out


class _KnnDtwRef(WindowDetector):
    """k-NN on EAR windows under one pyts DTW variant (``method``, ``options`` from the
    hyper-parameters named in ``option_defaults``, which also gives their defaults). The
    fitted model is the training windows and their labels, as arrays."""

    family = "classical"
    method: ClassVar[str] = "classic"
    option_defaults: ClassVar[dict[str, float]] = {}
    test_params = {"n_neighbors": 3}

    @classmethod
    def default_hyper(cls):
        return {"n_neighbors": 1,        # the reference's pyts default
                "max_reference": None,   # cap on the reference windows (None: all)
                **cls.option_defaults}

    def _options(self) -> dict:
        return {k: self.hyper[k] for k in self.option_defaults}

    def _fit_windows(self, X, M, y, groups):
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        cap = self.hyper.get("max_reference")
        if cap is not None and len(X) > int(cap):
            # a seeded, class-stratified subset of the training windows as the reference set
            # (None, the default, keeps them all as the reference does; FastDTW in pyts costs
            # ~30 ms per pair, so a capped set keeps scoring affordable)
            rng = np.random.default_rng(self.seed)
            keep = []
            for c in (0, 1):
                idx = np.flatnonzero(y == c)
                n = max(1, round(int(cap) * len(idx) / len(y)))
                keep.append(np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False)))
            keep = np.sort(np.concatenate(keep))
            X, y = X[keep], y[keep]
        self.train_x_ = X
        self.train_y_ = y
        self.k_ = int(min(int(self.hyper["n_neighbors"]), len(self.train_x_)))

    def _predict_windows(self, X, M):
        D = dtw_matrix(X, self.train_x_, self.method, self._options())
        idx = np.argsort(D, axis=1, kind="stable")[:, :self.k_]
        d = np.take_along_axis(D, idx, axis=1)
        fake = self.train_y_[idx] == 1
        exact = d == 0
        # inverse-distance weights; where a neighbour matches exactly, the exact matches alone
        w = np.where(exact.any(axis=1, keepdims=True), exact.astype(float), 1.0 / np.where(exact, 1.0, d))
        share = (w * fake).sum(axis=1) / w.sum(axis=1)
        return (self.k_ * share + 1.0) / (self.k_ + 2.0)


@register("knn_dtw_classic")
class KnnDtwClassic(_KnnDtwRef):
    """k-NN under unconstrained DTW (the reference's ``metric="dtw"``)."""

    method = "classic"


@register("knn_dtw_sakoechiba")
class KnnDtwSakoeChiba(_KnnDtwRef):
    """k-NN under DTW in a Sakoe-Chiba band of half-width ``window_size`` (a fraction of the
    window length, pyts' default 0.1: 0.6 s of a 6 s window)."""

    method = "sakoechiba"
    option_defaults = {"window_size": 0.1}


@register("knn_dtw_itakura")
class KnnDtwItakura(_KnnDtwRef):
    """k-NN under DTW in an Itakura parallelogram of slope ``max_slope`` (pyts' default 2)."""

    method = "itakura"
    option_defaults = {"max_slope": 2.0}


@register("knn_dtw_fast")
class KnnDtwFast(_KnnDtwRef):
    """k-NN under FastDTW with ``radius`` (pyts' default 0): the warping path found on
    coarser copies of the windows, refined level by level."""

    method = "fast"
    option_defaults = {"radius": 0}
    test_params = {"n_neighbors": 3, "max_reference": 24}


# ----------------------------------------------------------------------------- pyts estimators

@register("learning_shapelets")
class LearningShapeletsDetector(_Classical):
    """pyts ``LearningShapelets`` with the reference's settings (pyts' defaults): shapelets
    of ``shapelet_scale`` lengths from ``min_shapelet_length`` x L, ``n_shapelets_per_size``
    x L of each, learnt with a logistic regression (``C``, ``penalty``) by gradient descent
    (``learning_rate``, at most ``max_iter`` epochs). Probability: its ``predict_proba``."""

    test_params = {"max_iter": 20, "n_shapelets_per_size": 0.05, "shapelet_scale": 1}
    cached_modules = ("pyts.classification",)

    @classmethod
    def default_hyper(cls):
        return {"n_shapelets_per_size": 0.2, "min_shapelet_length": 0.1, "shapelet_scale": 3,
                "penalty": "l2", "C": 1000.0, "learning_rate": 1.0, "max_iter": 1000, "tol": 0.001,
                "alpha": -100.0}

    def _fit_model(self, X, y, groups):
        LearningShapelets = import_cached("pyts.classification").LearningShapelets
        h = self.hyper
        est = LearningShapelets(n_shapelets_per_size=h["n_shapelets_per_size"],
                                min_shapelet_length=h["min_shapelet_length"],
                                shapelet_scale=int(h["shapelet_scale"]), penalty=h["penalty"], C=float(h["C"]),
                                learning_rate=float(h["learning_rate"]), max_iter=int(h["max_iter"]),
                                tol=float(h["tol"]), alpha=float(h["alpha"]), random_state=self.seed, n_jobs=1)
        return est.fit(X, y)

    def _proba(self, X):
        return _fake_proba(self.model_, self.model_.predict_proba(X))


@register("tsbf")
class TsbfDetector(_Classical):
    """pyts ``TSBF`` with the reference's settings (pyts' defaults: 500 trees, subsequences
    of at least half the window, intervals of at least a tenth of it, 10 histogram bins).
    Probability: the final forest's vote share."""

    test_params = {"n_estimators": 50}
    cached_modules = ("pyts.classification",)

    @classmethod
    def default_hyper(cls):
        return {"n_estimators": 500, "min_subsequence_size": 0.5, "min_interval_size": 0.1, "bins": 10}

    def _fit_model(self, X, y, groups):
        TSBF = import_cached("pyts.classification").TSBF
        h = self.hyper
        est = TSBF(n_estimators=int(h["n_estimators"]), min_subsequence_size=h["min_subsequence_size"],
                   min_interval_size=h["min_interval_size"], bins=int(h["bins"]), random_state=self.seed, n_jobs=1)
        return est.fit(X, y)

    def _proba(self, X):
        return _fake_proba(self.model_, self.model_.predict_proba(X))
