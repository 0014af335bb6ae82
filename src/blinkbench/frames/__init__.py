"""Frame-level deepfake detectors on face crops: CNNs (timm ResNet50, VGG19, Xception,
EfficientNet-B4; MesoNet) and forensic baselines (block DCT, error level analysis).

    from blinkbench.frames import create, available, CropSet
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import REGISTRY, CropSet, FrameDetector, register

_MODULES = ("blinkbench.frames.forensic", "blinkbench.frames.cnn")


def available() -> list[str]:
    for m in _MODULES:
        importlib.import_module(m)
    return list(REGISTRY)


def get(name: str) -> type[FrameDetector]:
    for m in _MODULES:  # import family modules until the name is found (forensic needs no torch)
        if name in REGISTRY:
            break
        importlib.import_module(m)
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown frame detector {name!r}; available: {', '.join(REGISTRY)}") from None


def create(name: str, seed: int = 0, **hyper: Any) -> FrameDetector:
    return get(name)(seed=seed, **hyper)


__all__ = ["CropSet", "FrameDetector", "register", "available", "get", "create", "REGISTRY"]
