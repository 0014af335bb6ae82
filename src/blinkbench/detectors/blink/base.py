"""The one interface every blink-based detector implements, and the registry.

A detector

- is registered by name (``@register("minirocket")``) and built with
  :func:`blinkbench.detectors.blink.create` from its params: the series preparation
  (:class:`blinkbench.detectors.blink.series.SeriesConfig`), the seed and its own hyper-parameters;
- ``fit(videos, y)`` on a list of :class:`~blinkbench.detectors.blink.series.VideoSeries` with labels
  (1 = fake, 0 = real);
- ``predict_proba(videos)`` gives one fake probability per *video*;
- ``save(path)`` and ``Detector.load(path)`` round-trip it exactly (same scores), through a
  data-only model file (:mod:`blinkbench.detectors.modelfile`: JSON, safetensors, skops with an
  allow-list; never a pickle).

As in scikit-learn, ``__init__`` only stores parameters; the work happens in ``fit``.
Capabilities are class attributes: ``view`` says which input it uses (``"windows"``: fixed
length EAR windows whose scores are aggregated per video; ``"features"``: the per-video blink
statistics), ``family`` groups it in reports (``rule``, ``classical``, ``neural``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from blinkbench.core.registry import HyperParams, Registry
from blinkbench.detectors import modelfile
from blinkbench.detectors.blink.series import SeriesConfig, VideoSeries, aggregate, feature_matrix, window_batch
from blinkbench.detectors.modelfile import ModelFileError, UntrainedModel  # noqa: F401  (re-exported)

REGISTRY: Registry = Registry("detector")   # modules: set by the package __init__
modelfile.REGISTRIES["blink"] = REGISTRY      # where a blink model file's class comes from


def _drop_fit_timings(obj, depth: int = 6, seen: set | None = None) -> None:
    """Zero the wall-clock ``fit_time_`` that sktime estimators keep (anywhere inside a
    detector): it is the only thing that made two identical fits save to different bytes,
    and so change DVC hashes on a rerun."""
    seen = set() if seen is None else seen
    if depth < 0 or id(obj) in seen or isinstance(obj, (np.ndarray, str, bytes, int, float)):
        return
    seen.add(id(obj))
    if isinstance(getattr(obj, "fit_time_", None), (int, float)):
        obj.fit_time_ = 0
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    else:
        children = list(getattr(obj, "__dict__", {}).values())
    for c in children:
        _drop_fit_timings(c, depth - 1, seen)


def save_failure(path: str | Path, name: str, error: str, kind: str = "blink") -> None:
    """Write a model file that records a failed training, so the run goes on and the
    evaluation and report show why (loading it raises :class:`UntrainedModel`)."""
    modelfile.save_failure(path, name, error, kind)


register = REGISTRY.register
"""Class decorator: make a detector available under ``name``."""


class Detector(HyperParams, ABC):
    family: ClassVar[str] = "classical"
    view: ClassVar[str] = "windows"

    def __init__(self, series: SeriesConfig | None = None, seed: int = 0, **hyper: Any):
        self.series = series or SeriesConfig()
        self._set_hyper(seed, hyper)

    # -- the interface ------------------------------------------------------------
    @abstractmethod
    def fit(self, videos: Sequence[VideoSeries], y: Sequence[int]) -> "Detector":
        ...

    @abstractmethod
    def predict_proba(self, videos: Sequence[VideoSeries]) -> np.ndarray:
        """Fake probability per video, shape (len(videos),), in [0, 1]."""

    def save(self, path: str | Path) -> None:
        """Write the fitted detector atomically as a data-only model file."""
        if not self.fitted_:
            raise RuntimeError(f"{self.name}: save() before fit()")
        _drop_fit_timings(self)
        modelfile.save(self, path, "blink")

    @staticmethod
    def load(path: str | Path) -> "Detector":
        """The detector in a blink model file; :class:`ModelFileError` for anything else
        (a pickle, a frame model, a type outside the allow-list), :class:`UntrainedModel`
        for a recorded training failure. Nothing in the file is executed."""
        return modelfile.load(path, "blink")

    @classmethod
    def _before_load(cls) -> None:
        """Hook run before a model file's estimators are read (e.g. to import their library
        a particular way)."""

    def _after_load(self) -> None:
        """Hook for detectors that must restore state after loading (e.g. eval mode)."""

    def describe(self) -> dict:
        return {"name": self.name, "family": self.family, "view": self.view, "seed": self.seed,
                "hyper": self.hyper, "series": self.series.as_dict()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, hyper={self.hyper})"


def _labels(y: Sequence[int], n: int) -> np.ndarray:
    y = np.asarray(y, dtype=int)
    if y.shape != (n,):
        raise ValueError(f"expected {n} labels, got shape {y.shape}")
    if set(np.unique(y)) - {0, 1}:
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return y


class WindowDetector(Detector):
    """A detector on fixed-length EAR windows: each window inherits its video's label for
    training; a video's score aggregates its windows' scores (``series.aggregate``).
    Subclasses implement ``_fit_windows`` and ``_predict_windows``."""

    view = "windows"

    def fit(self, videos, y):
        y = _labels(y, len(videos))
        X, M, g = window_batch(videos, self.series)
        if len(np.unique(y[g])) < 2:
            raise ValueError(f"{self.name}: training data need both real and fake windows")
        self._fit_windows(X, M, y[g], g)
        self.fitted_ = True
        return self

    def predict_proba(self, videos):
        if not self.fitted_:
            raise RuntimeError(f"{self.name}: predict before fit")
        X, M, g = window_batch(videos, self.series)
        p = self._predict_windows(X, M) if len(X) else np.zeros(0)
        return aggregate(np.clip(p, 0.0, 1.0), g, len(videos), self.series.aggregate)

    @abstractmethod
    def _fit_windows(self, X: np.ndarray, M: np.ndarray, y: np.ndarray, groups: np.ndarray) -> None:
        """X (n, L) float32 windows, M (n, L) bool observed-mask, y (n,) labels, groups (n,)
        video index (for grouped validation splits: never split one video's windows)."""

    @abstractmethod
    def _predict_windows(self, X: np.ndarray, M: np.ndarray) -> np.ndarray:
        """Fake probability per window, shape (n,)."""


class FeatureDetector(Detector):
    """A detector on the per-video feature view (``series.feature_matrix``)."""

    view = "features"

    def fit(self, videos, y):
        y = _labels(y, len(videos))
        if len(np.unique(y)) < 2:
            raise ValueError(f"{self.name}: training data need both real and fake videos")
        self._fit_features(feature_matrix(videos), y)
        self.fitted_ = True
        return self

    def predict_proba(self, videos):
        if not self.fitted_:
            raise RuntimeError(f"{self.name}: predict before fit")
        if not len(videos):
            return np.zeros(0)
        return np.clip(self._predict_features(feature_matrix(videos)), 0.0, 1.0)

    @abstractmethod
    def _fit_features(self, F: np.ndarray, y: np.ndarray) -> None: ...

    @abstractmethod
    def _predict_features(self, F: np.ndarray) -> np.ndarray: ...
