"""The landmark backend interface and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
import numpy as np

from blinkbench.core.params_types import LandmarksSection
from blinkbench.core.registry import Registry


class LandmarkBackend(ABC):
    """Landmarks on one face crop at a time.

    Subclasses declare ``name``, ``scheme`` (the EAR index scheme in :mod:`blinkbench.spine.ear`),
    ``n_points`` and ``crop_scale_hint`` (the crop side, as a multiple of the face box side,
    the model was trained on; ``None`` to use the params value), build themselves from the
    ``landmarks`` params section in :meth:`from_params`, and are registered as classes
    (``@register("name")``), so what a backend declares is known without building it.
    """

    name: str
    scheme: str
    n_points: int
    crop_scale_hint: float | None = None
    # Batched backends: how many crops :meth:`process_batch` takes at once (1: frame by frame,
    # :meth:`process` is called), and the square input side they want crops resized to.
    batch_size: int = 1
    input_size: int | None = None

    @classmethod
    @abstractmethod
    def from_params(cls, cfg: LandmarksSection) -> "LandmarkBackend":
        """The backend built from the ``landmarks`` params section ``cfg``."""

    @abstractmethod
    def process(self, rgb: np.ndarray) -> np.ndarray | None:
        """(n_points, 3) float32 x, y, z in the crop's pixels (z 0 if the model has none),
        or None when no face is found."""

    def process_batch(self, crops: list) -> list:
        """Landmarks of several crops, in order: ``crops`` holds ``(rgb, w, h, x0, y0)``
        (``rgb`` possibly resized to ``input_size``; ``w, h`` the crop's own size, which the
        points are in; ``x0, y0`` its origin in the frame) or None; each result as
        :meth:`process`. The default runs them one by one."""
        return [self.process(c[0]) if c is not None else None for c in crops]

    def reset(self) -> None:
        """Forget temporal state (start of a new video)."""

    def close(self) -> None:
        """Release native resources."""

    def __enter__(self) -> "LandmarkBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


REGISTRY: Registry = Registry("landmark backend")   # modules: set by the package __init__
register = REGISTRY.register
