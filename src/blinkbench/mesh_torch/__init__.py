"""Differentiable PyTorch port of MediaPipe Face Mesh (and its iris and BlazeFace models).

The attacks need gradients through the landmark extractor; MediaPipe runs its models in
TFLite, which has none. This package reads the wheel's ``.tflite`` files itself
(:mod:`.tflite_reader`), executes their graphs as torch modules (:mod:`.graph`) and wraps
them with MediaPipe's pre- and post-processing (:mod:`.facemesh`). Run time needs torch and
numpy only; outputs equal the TFLite runtime's to ~1e-4 px (``tests/test_mesh_torch.py``).

Typical use (frame: (B, 3, H, W) RGB in [0, 1], requires_grad for an attack)::

    model = TorchFaceMeshAttention()            # what mp.solutions uses with refined landmarks
    box = pipeline_crop_box(face_box, W, H)     # the crop the landmark step takes
    pts = landmarks_in_frame(model, frame, box).landmarks   # (B, 478, 3) frame pixels
    left, right = ear_torch(pts)                # blinkbench.spine.ear's indices and formula
"""

import functools

import torch

from .facemesh import (
    AttentionResult, IrisResult, MeshResult, TorchBlazeFace, TorchFaceMesh, TorchFaceMeshAttention, TorchIris,
    crop_affine, crop_resize, ear_torch, eye_rois, iris_refined_landmarks, landmarks_in_frame, model_file,
    pipeline_crop_box, refined_landmarks, to_tensor,
)
from .graph import TFLiteGraph, UnsupportedOp
from .tflite_reader import Model, read_model

__all__ = [
    "TorchFaceMesh", "TorchFaceMeshAttention", "TorchIris", "TorchBlazeFace",
    "MeshResult", "AttentionResult", "IrisResult",
    "refined_landmarks", "iris_refined_landmarks", "eye_rois", "crop_affine", "crop_resize",
    "landmarks_in_frame", "pipeline_crop_box", "ear_torch", "to_tensor", "model_file",
    "TFLiteGraph", "UnsupportedOp", "Model", "read_model", "surrogate",
]


def surrogate(name: str, device: str = "cpu") -> torch.nn.Module:
    """The port's models by name (built once per process and device, eval mode):
    ``attention`` (478 points, what the pipeline's ``mp.solutions`` runs) or ``mesh`` (468
    points), on ``device`` (``cpu``, ``cuda``, or ``auto``: :mod:`blinkbench.core.devices`).
    The EAR attack asks for the CPU one; inputs must be on the model's device."""
    from blinkbench.core import devices

    return _surrogate(name, devices.name(device))


@functools.lru_cache(maxsize=None)
def _surrogate(name: str, device: str) -> torch.nn.Module:
    builders = {"attention": TorchFaceMeshAttention, "mesh": TorchFaceMesh}
    if name not in builders:
        raise ValueError(f"unknown surrogate {name!r}; known: {sorted(builders)}")
    model = builders[name]().eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
