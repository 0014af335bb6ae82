"""Frame-level deepfake detectors on face crops: CNNs (timm ResNet50, VGG19, Xception,
EfficientNet-B4; MesoNet) and forensic baselines (block DCT, error level analysis).

    from blinkbench.detectors.frame import create, available, CropSet
"""

from __future__ import annotations

from typing import Any

from .base import REGISTRY, CropSet, FrameDetector, register

_MODULES = ("blinkbench.detectors.frame.forensic", "blinkbench.detectors.frame.cnn")
REGISTRY.modules = _MODULES
available = REGISTRY.available
get = REGISTRY.get


def create(name: str, seed: int = 0, **hyper: Any) -> FrameDetector:
    return get(name)(seed=seed, **hyper)


__all__ = ["CropSet", "FrameDetector", "register", "available", "get", "create", "REGISTRY"]
