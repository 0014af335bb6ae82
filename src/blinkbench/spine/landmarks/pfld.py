"""PFLD 68-point landmarks (dlib/iBUG order) from an ONNX file the user provides.

Model contract (the common PFLD export, e.g. ``pfld_68.onnx``): input ``1x3x112x112`` RGB
in [0, 1] on a square face crop; output 136 values, normalised (x, y) pairs in crop
coordinates. The model is never bundled or downloaded: set ``landmarks.pfld_model``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from blinkbench.core.params_types import LandmarksSection

from .base import LandmarkBackend, register

INPUT_SIZE = 112


@register("pfld")
class PFLD(LandmarkBackend):
    name = "pfld"
    scheme = "ibug68"
    n_points = 68
    # PFLD is trained on tight face boxes enlarged ~1.2x; BlazeFace boxes are tight too.
    crop_scale_hint = 1.25

    @classmethod
    def from_params(cls, cfg: LandmarksSection) -> "PFLD":
        if not cfg.get("pfld_model"):
            raise ValueError("landmarks.backend is 'pfld' but landmarks.pfld_model (path to the ONNX file) is not set")
        return cls(cfg["pfld_model"])

    def __init__(self, model_path: str | Path, threads: int = 1):
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"PFLD model not found at {model_path} (landmarks.pfld_model)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._sess.get_inputs()[0].name
        out = self._sess.get_outputs()[0]
        if out.shape[-1] != 2 * self.n_points:
            raise ValueError(f"{model_path}: expected {2 * self.n_points} outputs, model gives {out.shape}")

    def process(self, rgb: np.ndarray) -> np.ndarray | None:
        if rgb.size == 0:
            return None
        h, w = rgb.shape[:2]
        x = cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        x = (x.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self._sess.run(None, {self._input: x})[0].reshape(-1, 2)
        pts = np.zeros((self.n_points, 3), dtype=np.float32)
        pts[:, 0] = out[:, 0] * w
        pts[:, 1] = out[:, 1] * h
        return pts
