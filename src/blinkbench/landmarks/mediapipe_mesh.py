"""MediaPipe Face Mesh backend: 478 points (468 mesh + 10 iris) with refined eye contours."""

from __future__ import annotations

import numpy as np

from .base import LandmarkBackend, register


class MediaPipeMesh(LandmarkBackend):
    name = "mediapipe"
    scheme = "mediapipe"
    n_points = 478

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5, static: bool = False):
        self._args = dict(
            static_image_mode=static,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self._mesh = None  # the graph is built by reset() (extract calls it once per video)

    def reset(self) -> None:
        import mediapipe as mp

        self.close()
        self._mesh = mp.solutions.face_mesh.FaceMesh(**self._args)

    def process(self, rgb: np.ndarray) -> np.ndarray | None:
        if self._mesh is None:
            self.reset()
        res = self._mesh.process(np.ascontiguousarray(rgb))
        if not res.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        lm = res.multi_face_landmarks[0].landmark
        pts = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float32)
        # Normalised x by width, y by height; z is on the same scale as x.
        pts *= np.array([w, h, w], dtype=np.float32)
        return pts

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


@register("mediapipe")
def _factory(cfg: dict) -> MediaPipeMesh:
    return MediaPipeMesh(cfg["min_detection_confidence"], cfg["min_tracking_confidence"])
