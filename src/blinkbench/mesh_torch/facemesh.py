"""Differentiable MediaPipe Face Mesh, iris and BlazeFace models in PyTorch.

Built from the ``.tflite`` files inside the installed mediapipe wheel (or any given path)
by :mod:`.tflite_reader` and :mod:`.graph`; nothing but torch and numpy is needed at run
time (mediapipe is only located, never imported).

Input normalisation, as MediaPipe's own graphs feed these models: face mesh and iris take
RGB in [0, 1] (``ImageToTensorCalculator`` float range 0..1; the iris converter has
``zero_center: false``); BlazeFace takes RGB in [-1, 1]. All models here take NCHW float
tensors in [0, 1] and rescale internally where the model wants [-1, 1].

Coordinates: landmarks are in pixels of the model input (x right, y down, the continuous
convention where pixel i spans [i, i+1), which is how MediaPipe normalises them by the
input size); z is relative depth on the x scale. MediaPipe's eye names are kept: its
"left" eye is the one on the image's left (the subject's right eye, mesh points 33/133).

- :class:`TorchFaceMesh`: ``face_landmark.tflite``, 468 points + face-presence logit.
- :class:`TorchFaceMeshAttention`: ``face_landmark_with_attention.tflite``, the model
  behind ``mp.solutions.face_mesh`` with ``refine_landmarks=True``: mesh, lips, eyes and
  irises, combined into 478 points by :func:`refined_landmarks` exactly as MediaPipe's
  ``LandmarksRefinementCalculator``.
- :class:`TorchIris`: ``iris_landmark.tflite`` on 64x64 eye crops (71 eye-contour + 5 iris
  points); :func:`iris_refined_landmarks` runs it on eye crops taken from a 468-point mesh
  (MediaPipe's iris-tracking ROI) and combines the result into 478 points.
- :class:`TorchBlazeFace`: ``face_detection_short_range.tflite`` raw outputs and decoded
  boxes.
- :func:`landmarks_in_frame`: crop a frame around a face box as the pipeline does, run a
  mesh model, return landmarks in frame pixels; :func:`ear_torch`: differentiable EAR with
  :data:`blinkbench.spine.ear.EYE_INDICES`.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from blinkbench.spine.ear import EYE_INDICES
from .graph import TFLiteGraph
from .tflite_reader import read_model

MESH_SIZE = 192
IRIS_SIZE = 64
BLAZEFACE_SIZE = 128

FACE_MESH_MODEL = "face_landmark/face_landmark.tflite"
FACE_MESH_ATTENTION_MODEL = "face_landmark/face_landmark_with_attention.tflite"
IRIS_MODEL = "iris_landmark/iris_landmark.tflite"
BLAZEFACE_MODEL = "face_detection/face_detection_short_range.tflite"

# LandmarksRefinementCalculator index mappings (tensors_to_face_landmarks_with_attention.pbtxt):
# one copy, in the torch-free TFLite backend of the spine (a lower layer), for both runtimes.
# 71 eye-contour points per eye; the same order is the iris model's contour output
# (UpdateFaceLandmarksCalculator uses the same table).
from blinkbench.spine.landmarks.tflite_mesh import (LEFT_EYE_INDICES, LIPS_INDICES,  # noqa: E402
                                                     N_EYE_CONTOUR_FOR_IRIS_Z, RIGHT_EYE_INDICES)

LEFT_IRIS_INDICES = (468, 469, 470, 471, 472)    # centre, then edges
RIGHT_IRIS_INDICES = (473, 474, 475, 476, 477)

# Iris ROI (iris_landmark_landmarks_to_roi): box through the two eye corners, rotated to
# their line, long side x 2.3, square.
EYE_CORNERS = {"left": (33, 133), "right": (362, 263)}
EYE_ROI_SCALE = 2.3


class MeshResult(NamedTuple):
    landmarks: torch.Tensor        # (B, N, 3) pixels of the model input
    presence_logit: torch.Tensor   # (B,) face presence before the sigmoid (MediaPipe: sigmoid > 0.5)


class AttentionResult(NamedTuple):
    mesh: torch.Tensor             # (B, 468, 3)
    lips: torch.Tensor             # (B, 80, 2)
    left_eye: torch.Tensor         # (B, 71, 2)
    right_eye: torch.Tensor        # (B, 71, 2)
    left_iris: torch.Tensor        # (B, 5, 2)
    right_iris: torch.Tensor       # (B, 5, 2)
    presence_logit: torch.Tensor   # (B,)


class IrisResult(NamedTuple):
    contour: torch.Tensor          # (B, 71, 3) eye contour and brow, pixels of the 64x64 crop
    iris: torch.Tensor             # (B, 5, 3) iris centre and edges


# ---------------------------------------------------------------------- model files

def mediapipe_models_dir() -> Path:
    """``mediapipe/modules`` of the installed wheel, found without importing mediapipe."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mediapipe is not installed: pass the .tflite path explicitly")
    return Path(list(spec.submodule_search_locations)[0]) / "modules"


def model_file(relative: str) -> Path:
    path = mediapipe_models_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (mediapipe 0.10.21 ships it)")
    return path


def _load_graph(path: str | Path | None, default: str) -> tuple[TFLiteGraph, list[str]]:
    """The model at ``path`` (default: ``default`` in the mediapipe wheel) as a torch graph,
    and its output tensors' names in output order."""
    model = read_model(path or model_file(default))
    return TFLiteGraph(model), [model.tensors[i].name for i in model.outputs]


def _check_image(x: torch.Tensor, size: int) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (size, size):
        raise ValueError(f"expected (B, 3, {size}, {size}) RGB in [0, 1], got {tuple(x.shape)}")


# ---------------------------------------------------------------------- models

class TorchFaceMesh(nn.Module):
    """``face_landmark.tflite``: (B, 3, 192, 192) RGB in [0, 1] -> 468 points + presence logit."""

    n_points = 468
    input_size = MESH_SIZE

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self.graph, _ = _load_graph(path, FACE_MESH_MODEL)

    def forward(self, image: torch.Tensor) -> MeshResult:
        _check_image(image, MESH_SIZE)
        mesh, flag = self.graph(image)
        return MeshResult(mesh.reshape(-1, 468, 3), flag.reshape(-1))

    def landmarks(self, image: torch.Tensor) -> MeshResult:
        return self(image)


class TorchFaceMeshAttention(nn.Module):
    """``face_landmark_with_attention.tflite`` (MediaPipe's refined Face Mesh).

    ``forward`` gives the model's seven outputs; :meth:`landmarks` the 478 refined points."""

    n_points = 478
    input_size = MESH_SIZE

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self.graph, names = _load_graph(path, FACE_MESH_ATTENTION_MODEL)
        want = ["output_mesh_identity", "output_lips", "output_left_eye", "output_right_eye",
                "output_left_iris", "output_right_iris", "conv_faceflag"]
        if sorted(names) != sorted(want):
            raise ValueError(f"unexpected attention-model outputs {names}")
        self._order = [names.index(n) for n in want]

    def forward(self, image: torch.Tensor) -> AttentionResult:
        _check_image(image, MESH_SIZE)
        outs = self.graph(image)
        mesh, lips, le, re, li, ri, flag = (outs[k] for k in self._order)
        b = image.shape[0]
        return AttentionResult(mesh.reshape(b, 468, 3), lips.reshape(b, 80, 2), le.reshape(b, 71, 2),
                               re.reshape(b, 71, 2), li.reshape(b, 5, 2), ri.reshape(b, 5, 2), flag.reshape(b))

    def landmarks(self, image: torch.Tensor) -> MeshResult:
        r = self(image)
        return MeshResult(refined_landmarks(r.mesh, lips=r.lips, left_eye=r.left_eye, right_eye=r.right_eye,
                                            left_iris=r.left_iris, right_iris=r.right_iris), r.presence_logit)


class TorchIris(nn.Module):
    """``iris_landmark.tflite``: (B, 3, 64, 64) RGB in [0, 1] eye crop (a left eye, i.e. the
    image-left eye; MediaPipe flips right-eye crops) -> 71 contour + 5 iris points."""

    input_size = IRIS_SIZE

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self.graph, names = _load_graph(path, IRIS_MODEL)
        self._contour = names.index("output_eyes_contours_and_brows")
        self._iris = names.index("output_iris")

    def forward(self, eye: torch.Tensor) -> IrisResult:
        _check_image(eye, IRIS_SIZE)
        outs = self.graph(eye)
        return IrisResult(outs[self._contour].reshape(-1, 71, 3), outs[self._iris].reshape(-1, 5, 3))


class TorchBlazeFace(nn.Module):
    """``face_detection_short_range.tflite`` (BlazeFace, 128x128, 896 anchors).

    ``forward`` takes RGB in [0, 1] (rescaled to the model's [-1, 1]) and returns the raw
    ``(regressors (B, 896, 16), logits (B, 896))``; :meth:`decode` turns them into boxes
    and 6 keypoints in input pixels, as MediaPipe's ``TensorsToDetectionsCalculator``
    (scale 128, no exp on sizes)."""

    input_size = BLAZEFACE_SIZE

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self.graph, names = _load_graph(path, BLAZEFACE_MODEL)
        self._reg, self._cls = names.index("regressors"), names.index("classificators")
        self.register_buffer("anchors", torch.as_tensor(ssd_anchors_short_range()), persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_image(image, BLAZEFACE_SIZE)
        outs = self.graph(image * 2.0 - 1.0)
        return outs[self._reg], outs[self._cls][..., 0]

    def decode(self, regressors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes (B, 896, 4) x0 y0 x1 y1, keypoints (B, 896, 6, 2)) in input pixels."""
        s = float(BLAZEFACE_SIZE)
        a = self.anchors * s  # anchor centres in pixels (anchor w = h = 1)
        cx = regressors[..., 0] + a[:, 0]
        cy = regressors[..., 1] + a[:, 1]
        w, h = regressors[..., 2], regressors[..., 3]
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        kp = regressors[..., 4:16].reshape(*regressors.shape[:-1], 6, 2) + a[:, None, :]
        return boxes, kp


def ssd_anchors_short_range() -> np.ndarray:
    """Anchor centres (896, 2), normalised, of MediaPipe's short-range face detector
    (SsdAnchorsCalculator: 4 layers, strides 8, 16, 16, 16, 128x128, offset 0.5, fixed size;
    2 anchors per cell on the stride-8 grid, 6 on the stride-16 grid)."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = BLAZEFACE_SIZE // stride
        for y in range(n):
            for x in range(n):
                out.extend([((x + 0.5) / n, (y + 0.5) / n)] * per_cell)
    return np.asarray(out, np.float32)


# ---------------------------------------------------------------------- refinement

def _replace_xy(points: torch.Tensor, indices, xy: torch.Tensor) -> torch.Tensor:
    idx = torch.as_tensor(indices, dtype=torch.long, device=points.device)
    new_xy = points[..., :2].index_copy(1, idx, xy[..., :2].to(points.dtype))
    return torch.cat([new_xy, points[..., 2:]], -1)


def refined_landmarks(mesh: torch.Tensor, *, lips: torch.Tensor | None = None,
                      left_eye: torch.Tensor | None = None, right_eye: torch.Tensor | None = None,
                      left_iris: torch.Tensor, right_iris: torch.Tensor) -> torch.Tensor:
    """478 points from a 468-point mesh and the refinement outputs, as MediaPipe's
    ``LandmarksRefinementCalculator``: lips and eye contours replace x, y of their mesh
    points (z kept), the irises become points 468-477 with z the mean z of the first 16
    contour points of their eye. Out-of-place, so it is differentiable in every input."""
    pts = mesh
    for idx, part in ((LIPS_INDICES, lips), (LEFT_EYE_INDICES, left_eye), (RIGHT_EYE_INDICES, right_eye)):
        if part is not None:
            pts = _replace_xy(pts, idx, part)
    irises = []
    for eye_idx, iris in ((LEFT_EYE_INDICES, left_iris), (RIGHT_EYE_INDICES, right_iris)):
        z = pts[:, list(eye_idx[:N_EYE_CONTOUR_FOR_IRIS_Z]), 2].mean(1, keepdim=True)
        irises.append(torch.cat([iris[..., :2].to(pts.dtype), z[:, :, None].expand(-1, iris.shape[1], 1)], -1))
    return torch.cat([pts] + irises, 1)


def eye_rois(points: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Iris ROIs from mesh points (B, N>=468, 2|3): per eye, (centre (B, 2), side (B,),
    angle (B,)), in the points' pixel space, as MediaPipe's iris-tracking graph: the box of
    the two eye corners, rotated to their line, its longer side x 2.3, square."""
    out = {}
    for eye, (a, b) in EYE_CORNERS.items():
        p0, p1 = points[:, a, :2], points[:, b, :2]
        centre = (torch.minimum(p0, p1) + torch.maximum(p0, p1)) / 2
        d = p1 - p0
        angle = -torch.atan2(-d[:, 1], d[:, 0])
        side = torch.maximum(d[:, 0].abs(), d[:, 1].abs()) * EYE_ROI_SCALE
        out[eye] = (centre, side, angle)
    return out


def _roi_affine(centre, side, angle, size: int, flip: bool) -> torch.Tensor:
    """(B, 2, 3) map from crop pixels (u, v, 1) to image pixels for a rotated square ROI."""
    c, s = torch.cos(angle), torch.sin(angle)
    k = side / size
    sx = -k if flip else k
    # image = centre + R(angle) @ ((u - size/2) * sx, (v - size/2) * k)
    a00, a01 = c * sx, -s * k
    a10, a11 = s * sx, c * k
    t0 = centre[:, 0] - (a00 + a01) * size / 2
    t1 = centre[:, 1] - (a10 + a11) * size / 2
    return torch.stack([torch.stack([a00, a01, t0], -1), torch.stack([a10, a11, t1], -1)], 1)


def crop_affine(image: torch.Tensor, affine: torch.Tensor, size: int) -> torch.Tensor:
    """Sample a (B, 3, size, size) crop: crop pixel (u, v) centre -> ``affine`` @ (u+.5, v+.5, 1),
    bilinear, edge pixels replicated (MediaPipe crops with BORDER_REPLICATE)."""
    h, w = image.shape[2:]
    r = torch.arange(size, dtype=image.dtype, device=image.device) + 0.5
    v, u = torch.meshgrid(r, r, indexing="ij")
    x = affine[:, 0, 0, None, None] * u + affine[:, 0, 1, None, None] * v + affine[:, 0, 2, None, None]
    y = affine[:, 1, 0, None, None] * u + affine[:, 1, 1, None, None] * v + affine[:, 1, 2, None, None]
    grid = torch.stack([x / w * 2 - 1, y / h * 2 - 1], -1)  # align_corners=False: pixel i spans [i, i+1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _apply_affine(affine: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    x = affine[:, 0, 0, None] * pts[..., 0] + affine[:, 0, 1, None] * pts[..., 1] + affine[:, 0, 2, None]
    y = affine[:, 1, 0, None] * pts[..., 0] + affine[:, 1, 1, None] * pts[..., 1] + affine[:, 1, 2, None]
    return torch.stack([x, y], -1)


def iris_refined_landmarks(image: torch.Tensor, mesh: torch.Tensor, iris_model: TorchIris) -> torch.Tensor:
    """478 points from a 468-point ``mesh`` and the iris model run on eye crops of ``image``
    (both in the same pixel space, e.g. the 192x192 mesh input or a whole frame).

    Eye ROIs as MediaPipe's iris tracking (:func:`eye_rois`), the right eye's crop flipped
    so the model sees a left eye; the 71 contour points replace x, y of the mesh's eye
    points and the irises are appended, with :func:`refined_landmarks`' z rule. This is
    the iris-model route to 478 points; ``mp.solutions.face_mesh`` itself uses the
    attention model (:class:`TorchFaceMeshAttention`)."""
    rois = eye_rois(mesh)
    parts = {}
    for eye, flip in (("left", False), ("right", True)):
        aff = _roi_affine(*rois[eye], IRIS_SIZE, flip)
        out = iris_model(crop_affine(image, aff, IRIS_SIZE))
        parts[eye] = (_apply_affine(aff, out.contour), _apply_affine(aff, out.iris))
    return refined_landmarks(mesh, left_eye=parts["left"][0], right_eye=parts["right"][0],
                             left_iris=parts["left"][1], right_iris=parts["right"][1])


# ---------------------------------------------------------------------- frames

def pipeline_crop_box(face_box, width: int, height: int, crop_scale: float = 2.0) -> tuple[int, int, int, int]:
    """The crop :mod:`blinkbench.spine.landmarks.extract` hands the landmark backend for a face box:
    a square of ``crop_scale`` x the box's longer side, clipped to the frame, snapped to even
    coordinates as ``Frame.rgb_crop`` does (before its hysteresis, which only keeps an older box)."""
    from blinkbench.spine.faces import square_box  # the pipeline's own geometry (imported here: it pulls in OpenCV/PyAV)
    from blinkbench.video.codec import _clip_box

    return _clip_box(square_box(np.asarray(face_box, np.float64), crop_scale, width, height), width, height, even=True)


def crop_resize(frame: torch.Tensor, box, size: int = MESH_SIZE, antialias: bool = True) -> torch.Tensor:
    """Pixels ``[y0:y1, x0:x1]`` of ``frame`` (B, 3, H, W) resized to (B, 3, size, size),
    differentiable w.r.t. the frame. ``box`` is one integer (x0, y0, x1, y1) for the batch
    or one per item; parts outside the frame replicate the edge. Antialiased bilinear
    resampling, so a large crop is not aliased on the way down (like cv2.INTER_AREA)."""
    boxes = np.asarray(box, dtype=np.int64).reshape(-1, 4)
    if len(boxes) == 1 and frame.shape[0] > 1:
        boxes = np.repeat(boxes, frame.shape[0], 0)
    if len(boxes) != frame.shape[0]:
        raise ValueError(f"{len(boxes)} boxes for a batch of {frame.shape[0]}")
    h, w = frame.shape[2:]
    out = []
    for k, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty box {(x0, y0, x1, y1)}")
        region = frame[k : k + 1, :, max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
        pad = (max(0, -x0), max(0, x1 - w), max(0, -y0), max(0, y1 - h))
        if any(pad):
            region = F.pad(region, pad, mode="replicate")
        out.append(F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=antialias))
    return torch.cat(out, 0)


def landmarks_in_frame(model: nn.Module, frame: torch.Tensor, box, antialias: bool = True) -> MeshResult:
    """Run a mesh model (``TorchFaceMesh`` or ``TorchFaceMeshAttention``) on the ``box`` crop
    of ``frame`` (B, 3, H, W) RGB in [0, 1]; landmarks (B, N, 3) in frame pixels (z on the x
    scale), differentiable w.r.t. the frame. Use :func:`pipeline_crop_box` for the box the
    pipeline would crop around a face-track box."""
    size = model.input_size
    boxes = np.asarray(box, dtype=np.float64).reshape(-1, 4)
    res = model.landmarks(crop_resize(frame, box, size, antialias))
    b = torch.as_tensor(boxes, dtype=res.landmarks.dtype, device=res.landmarks.device)
    sx = ((b[:, 2] - b[:, 0]) / size)[:, None]
    sy = ((b[:, 3] - b[:, 1]) / size)[:, None]
    lm = res.landmarks
    pts = torch.stack([b[:, 0, None] + lm[..., 0] * sx, b[:, 1, None] + lm[..., 1] * sy, lm[..., 2] * sx], -1)
    return MeshResult(pts, res.presence_logit)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) or (B, H, W, 3) uint8 RGB -> (B, 3, H, W) float in [0, 1]."""
    x = torch.as_tensor(np.asarray(rgb))
    if x.dim() == 3:
        x = x[None]
    return x.permute(0, 3, 1, 2).float().div(255.0)


# ---------------------------------------------------------------------- EAR

def ear_torch(landmarks: torch.Tensor, scheme: str = "mediapipe") -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right eye aspect ratio of (..., N, 2|3) landmarks, differentiable.

    Same indices and formula as :func:`blinkbench.spine.ear.ear_from_landmarks` ("left"/"right"
    are the subject's eyes there); NaN where the eye width is zero, with a zero gradient."""
    out = []
    for eye in ("left", "right"):
        p = landmarks[..., list(EYE_INDICES[scheme][eye]), :2]

        def d(a: int, b: int) -> torch.Tensor:
            return torch.linalg.vector_norm(p[..., a, :] - p[..., b, :], dim=-1)

        width = d(0, 3)
        ok = width > 0
        ear = (d(1, 5) + d(2, 4)) / (2.0 * torch.where(ok, width, torch.ones_like(width)))
        out.append(torch.where(ok, ear, torch.full_like(ear, math.nan)))
    return out[0], out[1]
