"""Facial landmark backends and per-video landmark extraction.

A backend turns an RGB face crop into landmarks in that crop's pixel coordinates; the
extraction loop (:func:`extract`) crops each frame around the face track, calls the
backend, maps points back to frame pixels and streams them to parquet.

Backends (``landmarks.backend`` in params):

- ``mediapipe``: MediaPipe Face Mesh, 478 points with refined eyes and irises
  (``refine_landmarks=True``), run in video mode so it tracks between frames. EAR scheme
  ``mediapipe``. Models ship inside the mediapipe wheel.
- ``mediapipe_tflite``: the same Face Mesh model (``face_landmark_with_attention.tflite``
  from the wheel) run by the TFLite runtime (``ai_edge_litert``, XNNPACK) in batches of
  ``landmarks.tflite.batch_size`` on the pipeline's stable face crop, without MediaPipe's
  graph (no detector, no ROI tracking). EAR scheme ``mediapipe``.
- ``pfld``: PFLD 68-point model (dlib/iBUG order) from an ONNX file at a user-given path
  (``landmarks.pfld_model``); never bundled or downloaded. EAR scheme ``ibug68``.
"""

from blinkbench.core.params_types import LandmarksSection

from .base import REGISTRY, LandmarkBackend
from .extract import LANDMARK_COLUMNS, extract, read_landmarks

# The built-in backends register themselves when imported (make_backend imports them).
REGISTRY.modules = ("blinkbench.spine.landmarks.mediapipe_mesh", "blinkbench.spine.landmarks.pfld",
                    "blinkbench.spine.landmarks.tflite_mesh")

__all__ = ["REGISTRY", "LandmarkBackend", "backend_class", "make_backend", "extract", "read_landmarks", "LANDMARK_COLUMNS"]


def backend_class(name: str) -> type[LandmarkBackend]:
    """The backend class registered as ``name``, not built: its ``n_points``, ``scheme``...
    (ValueError naming the known backends for an unknown name)."""
    if name not in REGISTRY.available():
        raise ValueError(f"unknown landmark backend {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY.get(name)


def make_backend(cfg: LandmarksSection) -> LandmarkBackend:
    """Build the backend named by ``cfg['backend']`` (the ``landmarks`` params section)."""
    return backend_class(cfg["backend"]).from_params(cfg)
