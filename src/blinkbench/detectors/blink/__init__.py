"""Blink-based deepfake detectors on EAR series: one interface, registered by name.

    from blinkbench.detectors.blink import create, available
    det = create("minirocket", series=SeriesConfig(), seed=42)
    det.fit(train_videos, y_train)
    p_fake = det.predict_proba(test_videos)
    det.save("model.zip"); Detector.load("model.zip")   # data only (blinkbench.detectors.modelfile)

Families: ``rule`` (blink rate against the human range), ``classical`` (tslearn, sktime,
scikit-learn; and, in ``reference``, the blink-resiliency reference study's pyts classifiers),
``neural`` (PyTorch networks trained with Lightning).
"""

from __future__ import annotations

from typing import Any

from blinkbench.detectors.blink.series import SeriesConfig
from .base import REGISTRY, Detector, FeatureDetector, WindowDetector, register

# Modules that register detectors when imported (heavy imports stay inside them).
_MODULES = ("blinkbench.detectors.blink.rule", "blinkbench.detectors.blink.classical",
            "blinkbench.detectors.blink.neural", "blinkbench.detectors.blink.reference")
REGISTRY.modules = _MODULES
available = REGISTRY.available
get = REGISTRY.get


def create(name: str, series: SeriesConfig | dict | None = None, seed: int = 0, **hyper: Any) -> Detector:
    if isinstance(series, dict) or series is None:
        series = SeriesConfig.from_params(series)
    return get(name)(series=series, seed=seed, **hyper)


__all__ = ["Detector", "WindowDetector", "FeatureDetector", "register", "available", "get", "create",
           "REGISTRY", "SeriesConfig"]
