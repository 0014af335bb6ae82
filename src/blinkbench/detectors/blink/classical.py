"""Classical time-series classifiers on fixed-length EAR windows (tslearn, sktime, scikit-learn).

Every detector here is a :class:`~blinkbench.detectors.blink.base.WindowDetector`: it is trained on
the windows of :func:`blinkbench.detectors.blink.series.window_batch` (each window inherits its video's label)
and a video's score aggregates its windows' fake probabilities. The observed-mask is not
used: masked samples already hold the video's neutral (open-eye) value, which these
estimators take as ordinary data.

- ``knn_dtw``: k-NN under DTW in a Sakoe-Chiba band (tslearn); distance-weighted vote,
  add-one smoothed.
- ``ts_svc_gak``: SVC with the global alignment kernel on PAA windows (tslearn); libsvm's
  Platt scaling.
- ``rocket``: Rocket features -> standardised ridge-CV (sktime, scikit-learn); a sigmoid fitted
  on out-of-fold ridge scores (folds by video).
- ``minirocket``: MiniRocket features -> the same head.
- ``tsf``: Time Series Forest (sktime); the forest's vote share.
- ``weasel``: WEASEL bag of SFA words -> logistic regression (sktime); that regression.
- ``catch22``: catch22 (+ mean, std) features -> random forest; the forest's vote share.

The heavy libraries are imported inside the methods, so registering these detectors (and
``blinkbench.detectors.blink.available()``) stays cheap. Each estimator runs single-threaded
(``n_jobs=1``) and is seeded from the detector's ``seed``; a fitted detector's estimators are
saved with skops and loaded against an explicit allow-list of their types
(:data:`blinkbench.detectors.modelfile.TRUSTED`; they keep plain NumPy arrays, no compiled objects),
so ``save``/``load`` give the same scores without unpickling anything. Numba compiles the
kernels on first use, once per environment and CPU (cached on disk): sktime asks for the cache
itself (about two minutes in all for rocket, minirocket, weasel and catch22 on a busy 2-core
machine); tslearn does not, so it is imported through :func:`.numba_cache.import_cached`
(without it, its DTW compiled again at every interpreter start: 10-20 s there).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .base import WindowDetector, register
from .numba_cache import import_cached


# ----------------------------------------------------------------------------- helpers

def _panel(X: np.ndarray) -> np.ndarray:
    """(n, L) windows -> sktime's numpy3D panel (n, 1, L), float64."""
    return np.ascontiguousarray(X, dtype=np.float64)[:, None, :]


def _tslearn(X: np.ndarray) -> np.ndarray:
    """(n, L) windows -> tslearn's dataset layout (n, L, 1), float64."""
    return np.ascontiguousarray(X, dtype=np.float64)[:, :, None]


def _paa(X: np.ndarray, k: int) -> np.ndarray:
    """Piecewise aggregate approximation: the mean of each block of ``k`` samples (a trailing
    block shorter than ``k`` is averaged over what it has)."""
    if k <= 1:
        return X
    starts = np.arange(0, X.shape[1], k)
    counts = np.diff(np.append(starts, X.shape[1]))
    return np.add.reduceat(X, starts, axis=1) / counts


def _fake_proba(est, P: np.ndarray) -> np.ndarray:
    """The fake column of a ``predict_proba`` output, whatever the order of ``classes_``."""
    classes = [int(c) for c in est.classes_]
    return np.asarray(P, dtype=float)[:, classes.index(1)]


def _video_splits(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list:
    """Stratified folds over *videos* (a video's windows never sit on both sides), as a list of
    (train, test) index pairs over windows. The number of folds is capped by the number of
    videos in the smaller class."""
    from sklearn.model_selection import StratifiedGroupKFold

    _, first = np.unique(groups, return_index=True)
    per_class = np.bincount(y[first], minlength=2)
    k = int(min(folds, per_class.min()))
    if k < 2:
        raise ValueError(f"calibration needs at least 2 real and 2 fake videos, got "
                         f"{per_class[0]} real and {per_class[1]} fake")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y, groups))


def _ridge_head(F: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int):
    """The Rocket papers' classifier (standardised features, ``RidgeClassifierCV`` over
    alphas 1e-3..1e3), made probabilistic by Platt scaling fitted on out-of-fold ridge scores
    from video-grouped folds; the ridge used at prediction is refitted on all windows
    (``CalibratedClassifierCV(ensemble=False)``)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ridge = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    cal = CalibratedClassifierCV(ridge, method="sigmoid", cv=_video_splits(y, groups, folds, seed),
                                 ensemble=False)
    return cal.fit(F, y)


class _Classical(WindowDetector):
    """Shared plumbing: ``_fit_model`` returns the fitted model, ``_proba`` scores windows."""

    family = "classical"
    # numba-compiled libraries the fitted model's classes live in: imported through
    # import_cached before a model file is read (skops imports them while reading it)
    cached_modules: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _before_load(cls) -> None:
        for name in cls.cached_modules:
            import_cached(name)

    def _fit_windows(self, X, M, y, groups):
        self.model_ = self._fit_model(np.asarray(X, np.float64), y, groups)

    def _predict_windows(self, X, M):
        return self._proba(np.asarray(X, np.float64))

    def _fit_model(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Any:
        raise NotImplementedError

    def _proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# ----------------------------------------------------------------------------- detectors

@register("knn_dtw")
class KnnDtw(_Classical):
    """k-nearest neighbours under dynamic time warping (tslearn
    ``KNeighborsTimeSeriesClassifier(metric="dtw")``), the classic time-series baseline.

    The warping path is held to a Sakoe-Chiba band of ``radius_s`` seconds: a blink may be
    matched slightly earlier or later, never to one seconds away. (tslearn 0.10 still scans
    the full L x L mask per pair, so the band does not cut the O(L^2) cost per pair.)
    Probability: the neighbours' vote weighted by inverse distance, then add-one smoothed,
    ``(k * share + 1) / (k + 2)``, so a unanimous neighbourhood gives (k+1)/(k+2) rather than
    a hard 0/1 and windows keep an ordering when averaged into a video score.
    Prediction cost grows with (test windows x training windows): the model keeps its
    training set."""

    test_params = {"n_neighbors": 3, "radius_s": 0.2}
    cached_modules = ("tslearn.neighbors",)

    @classmethod
    def default_hyper(cls):
        return {"n_neighbors": 5,        # k
                "radius_s": 0.4}         # Sakoe-Chiba band half-width, seconds

    def _fit_model(self, X, y, groups):
        KNeighborsTimeSeriesClassifier = import_cached("tslearn.neighbors").KNeighborsTimeSeriesClassifier
        radius = max(1, int(round(self.hyper["radius_s"] * self.series.rate_hz)))
        self.k_ = int(min(self.hyper["n_neighbors"], len(X)))
        knn = KNeighborsTimeSeriesClassifier(
            n_neighbors=self.k_, weights="distance", metric="dtw",
            metric_params={"global_constraint": "sakoe_chiba", "sakoe_chiba_radius": radius})
        return knn.fit(_tslearn(X), y)

    def _proba(self, X):
        share = _fake_proba(self.model_, self.model_.predict_proba(_tslearn(X)))
        return (self.k_ * share + 1.0) / (self.k_ + 2.0)


@register("ts_svc_gak")
class TsSvcGak(_Classical):
    """Support vector classifier with the global alignment kernel (tslearn
    ``TimeSeriesSVC(kernel="gak", probability=True)``; Cuturi 2011), a soft-DTW-like kernel
    that sums over all alignments.

    GAK costs O(L^2) per pair and has no band, so windows are first reduced by PAA
    (``paa`` samples averaged into one; 2 at 25 Hz keeps a 100 ms blink at more than half its
    depth). ``gamma="auto"`` sets the kernel bandwidth from a seeded sample of the training
    windows. Probability: libsvm's Platt scaling, fitted by libsvm's internal 5-fold cross
    validation over *windows* (not grouped by video, so it is somewhat optimistic)."""

    test_params = {"paa": 3}
    cached_modules = ("tslearn.svm",)

    @classmethod
    def default_hyper(cls):
        return {"C": 1.0,
                "gamma": "auto",         # GAK bandwidth: gamma = 2 sigma^2; "auto" from the data
                "paa": 2}                # PAA factor applied to the windows before the kernel

    def _fit_model(self, X, y, groups):
        TimeSeriesSVC = import_cached("tslearn.svm").TimeSeriesSVC
        svc = TimeSeriesSVC(kernel="gak", C=self.hyper["C"], gamma=self.hyper["gamma"],
                            probability=True, random_state=self.seed)
        return svc.fit(_tslearn(_paa(X, int(self.hyper["paa"]))), y)

    def _proba(self, X):
        return _fake_proba(self.model_, self.model_.predict_proba(_tslearn(_paa(X, int(self.hyper["paa"])))))


@register("rocket")
class RocketDetector(_Classical):
    """Rocket (Dempster et al. 2020): ``num_kernels`` random dilated convolutions, two
    features each (max and proportion of positive values), sktime ``Rocket``.

    ``normalise`` (Rocket's own per-window z-normalisation) is off by default: the windows are
    already normalised per video (``series.normalise``), and z-normalising each window again
    would blow a blink-free window's noise up to the size of a blink (on the synthetic task
    window AUC 0.956 without it, 0.932 with it).

    Head: the paper's standardised ``RidgeClassifierCV`` (its regularisation chosen by
    efficient leave-one-out over alphas 1e-3..1e3, so it adapts to the number and scale of
    the features without a tuned constant), made probabilistic by Platt scaling fitted on
    out-of-fold ridge scores over ``calibration_folds`` video-grouped folds. A standardised
    logistic regression is the alternative; it needs its C chosen (C=0.01 did about as well
    on the synthetic task, C=1 gave clearly over-confident windows). Needs at least 2 videos
    per class."""

    test_params = {"num_kernels": 500}

    @classmethod
    def default_hyper(cls):
        return {"num_kernels": 10_000,
                "normalise": False,      # Rocket's per-window z-normalisation
                "calibration_folds": 3}  # video-grouped folds for the Platt scaling

    def _fit_model(self, X, y, groups):
        from sktime.transformations.rocket import Rocket

        h = self.hyper
        rocket = Rocket(num_kernels=int(h["num_kernels"]), normalise=bool(h["normalise"]), n_jobs=1,
                        random_state=self.seed)
        F = np.asarray(rocket.fit_transform(_panel(X)))
        return rocket, _ridge_head(F, y, groups, int(h["calibration_folds"]), self.seed)

    def _proba(self, X):
        rocket, head = self.model_
        return _fake_proba(head, head.predict_proba(np.asarray(rocket.transform(_panel(X)))))


@register("minirocket")
class MiniRocketDetector(RocketDetector):
    """MiniRocket (Dempster et al. 2021), univariate sktime ``MiniRocket``: a fixed set of 84
    kernels over dilations, biases taken from quantiles of the training windows' convolution
    outputs, one feature (proportion of positive values) each; ``num_kernels`` is rounded
    down to a multiple of 84. Same ridge-CV + out-of-fold Platt head as ``rocket``."""

    test_params = {"num_kernels": 840}

    @classmethod
    def default_hyper(cls):
        return {"num_kernels": 10_000,
                "max_dilations_per_kernel": 32,
                "calibration_folds": 3}

    def _fit_model(self, X, y, groups):
        from sktime.transformations.rocket import MiniRocket

        mini = MiniRocket(num_kernels=int(self.hyper["num_kernels"]),
                          max_dilations_per_kernel=int(self.hyper["max_dilations_per_kernel"]),
                          n_jobs=1, random_state=self.seed)
        F = np.asarray(mini.fit_transform(_panel(X)))
        return mini, _ridge_head(F, y, groups, int(self.hyper["calibration_folds"]), self.seed)


@register("tsf")
class TsfDetector(_Classical):
    """Time Series Forest (Deng et al. 2013), sktime ``TimeSeriesForestClassifier``: each tree
    sees mean, std and slope over sqrt(L) random intervals. Probability: the share of trees
    voting fake (no further calibration)."""

    test_params = {"n_estimators": 30}

    @classmethod
    def default_hyper(cls):
        return {"n_estimators": 200,
                "min_interval": 3}       # shortest interval, samples

    def _fit_model(self, X, y, groups):
        from sktime.classification.interval_based import TimeSeriesForestClassifier

        tsf = TimeSeriesForestClassifier(n_estimators=int(self.hyper["n_estimators"]),
                                         min_interval=int(self.hyper["min_interval"]),
                                         n_jobs=1, random_state=self.seed)
        return tsf.fit(_panel(X), y)

    def _proba(self, X):
        return _fake_proba(self.model_, self.model_.predict_proba(_panel(X)))


@register("weasel")
class WeaselDetector(_Classical):
    """WEASEL (Schaefer & Leser 2017), sktime ``WEASEL``: SFA words over sliding windows of
    6..100 samples (step ``window_inc``), chi-squared selected, into one bag of patterns.
    Chosen over the BOSS family because it is one linear model rather than an ensemble of
    hundreds of 1-NN members, so it fits in seconds on thousands of windows.
    Probability: sktime's logistic regression head (``support_probabilities=True``; liblinear,
    L2), fitted on the training bags without further calibration."""

    test_params = {"window_inc": 8, "bigrams": False}

    @classmethod
    def default_hyper(cls):
        return {"window_inc": 2,         # step between the SFA window lengths, samples
                "alphabet_size": 2,
                "bigrams": True,
                "p_threshold": 0.05}     # chi-squared feature selection threshold

    def _fit_model(self, X, y, groups):
        from sktime.classification.dictionary_based import WEASEL

        h = self.hyper
        weasel = WEASEL(window_inc=int(h["window_inc"]), alphabet_size=int(h["alphabet_size"]),
                        bigrams=bool(h["bigrams"]), p_threshold=float(h["p_threshold"]),
                        support_probabilities=True, n_jobs=1, random_state=self.seed)
        return weasel.fit(_panel(X), y)

    def _proba(self, X):
        return _fake_proba(self.model_, self.model_.predict_proba(_panel(X)))


@register("catch22")
class Catch22Detector(_Classical):
    """catch22 (Lubba et al. 2019; sktime ``Catch22``), the 22 canonical time-series
    characteristics, plus the window's mean and standard deviation (``catch24``: catch22 is
    built to ignore level and scale, and on median-normalised EAR those carry the blinks),
    into a random forest. NaN features (e.g. a flat window) become 0. Probability: the share
    of trees voting fake."""

    test_params = {"n_estimators": 50}

    @classmethod
    def default_hyper(cls):
        return {"n_estimators": 200,     # trees in the forest
                "catch24": True}         # add mean and std to the 22 features

    def _features(self, X) -> np.ndarray:
        # sktime's Catch22 is stateless (``fit_is_empty``), so it is built afresh here rather
        # than kept in the model: the transformer holds numba dispatchers, which carry a new
        # UUID in every process (two identical fits hashed differently in DVC) and which no
        # data-only format stores.
        from sktime.transformations.catch22 import Catch22

        c22 = Catch22(catch24=bool(self.hyper["catch24"]), replace_nans=True)
        return np.asarray(c22.fit_transform(_panel(X)), dtype=float)

    def _fit_model(self, X, y, groups):
        from sklearn.ensemble import RandomForestClassifier

        forest = RandomForestClassifier(n_estimators=int(self.hyper["n_estimators"]), n_jobs=1,
                                        random_state=self.seed)
        return forest.fit(self._features(X), y)

    def _proba(self, X):
        return _fake_proba(self.model_, self.model_.predict_proba(self._features(X)))
