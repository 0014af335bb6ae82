"""Eye aspect ratio (EAR) from facial landmarks.

Soukupova and Cech (CVWW 2016): with six eye points p1..p6 (p1, p4 the corners, p2, p3 on
the upper lid, p6, p5 the lower lid points facing them),

    EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)

about 0.25-0.35 for an open eye, falling toward 0 as the lid closes. It is scale invariant
and, being a ratio of distances in the image plane, insensitive to translation.

Landmark indices per backend, in p1..p6 order. "Left"/"right" are the subject's own eyes
(the subject's right eye appears on the left of an unmirrored image).

- ``mediapipe`` (Face Mesh, 478 points with refined eyes; indices from the canonical mesh):
    right eye: 33 (outer corner), 160, 158, 133 (inner corner), 153, 144
    left eye:  362 (inner corner), 385, 387, 263 (outer corner), 373, 380
- ``ibug68`` (dlib/iBUG 300-W 68-point order, used by PFLD):
    right eye: 36, 37, 38, 39, 40, 41
    left eye:  42, 43, 44, 45, 46, 47
"""

from __future__ import annotations

import numpy as np

EYE_INDICES: dict[str, dict[str, tuple[int, ...]]] = {
    "mediapipe": {"right": (33, 160, 158, 133, 153, 144), "left": (362, 385, 387, 263, 373, 380)},
    "ibug68": {"right": (36, 37, 38, 39, 40, 41), "left": (42, 43, 44, 45, 46, 47)},
}

# Outer eye corners per scheme (for inter-ocular normalisation, e.g. NME).
OUTER_CORNERS: dict[str, tuple[int, int]] = {"mediapipe": (33, 263), "ibug68": (36, 45)}


def eye_aspect_ratio(points: np.ndarray) -> np.ndarray:
    """EAR of eyes given as (..., 6, 2|3) arrays in p1..p6 order; uses x, y only."""
    p = np.asarray(points, dtype=np.float64)[..., :2]
    d = lambda a, b: np.linalg.norm(p[..., a, :] - p[..., b, :], axis=-1)  # noqa: E731
    width = d(0, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        ear = (d(1, 5) + d(2, 4)) / (2.0 * width)
    return np.where(width > 0, ear, np.nan)


def ear_from_landmarks(xy: np.ndarray, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """Left and right EAR for landmarks of shape (frames, points, 2|3) (NaN rows stay NaN)."""
    idx = EYE_INDICES[scheme]
    xy = np.asarray(xy)
    left = eye_aspect_ratio(xy[:, list(idx["left"]), :])
    right = eye_aspect_ratio(xy[:, list(idx["right"]), :])
    return left, right
