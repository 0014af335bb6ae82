"""EAR attacks on whole videos through the differentiable Face Mesh, scored by the real pipeline.

Two goals (``mode``):

- ``suppress``: a REAL video keeps its open-eye EAR through its blinks and closures (target
  per frame: the video's open-eye level), so a blink-rate detector sees a blinkless face;
- ``inject``: a FAKE video gets a natural blink pattern (``inject_rate_per_min`` ~17/min,
  durations drawn in ``inject_duration_ms`` = 100-400 ms, gamma-distributed intervals no
  shorter than ``inject_min_ibi_s``, placed away from its own blinks); the target EAR dips to
  ``inject_depth`` (0.2) x the open level with an asymmetric lid profile (closing over the
  first ``CLOSING_SHARE`` of the blink, reopening more slowly, half-cosine edges). The blink
  detector calls a dip a blink below ``blinks.close_ratio`` (0.5) x the open level: a target
  of 0.4 left one or two frames 0.1 under that line, which the port-to-MediaPipe gap and
  compression take back, so the target is a near-closure, as a real blink is.

How a perturbation reaches the model (what :class:`ClipGeometry` precomputes):

1. The clean video goes through the pipeline (``steps.faces_one``, ``landmarks_one``,
   ``ear_one``, ``blinks_one``: ``mp.solutions.face_mesh`` in video mode).
2. Per frame, the face ROI MediaPipe's landmark model itself samples in tracking mode is
   rebuilt from those landmarks (``FaceLandmarksToRoi``: landmark bounding box, centre,
   long side x ``roi_scale`` = 1.5, rotated to the 33-263 eye line). The port fed this ROI
   reproduces the pipeline's landmarks closely (on the selfie clip: NME 0.6 % of the
   inter-ocular distance, EAR error 0.003, against 0.9 % / 0.014 without the rotation).
3. The perturbation lives in that face-ROI frame of reference on a ``delta_size`` grid (192
   = the model's input; coarser is smoother), so one shared perturbation follows the face:
   for frame t it is warped into frame pixels (bilinear, zero outside the ROI), added,
   rounded and clipped to 0-255 when the video is written. In the optimisation the frame is
   never materialised: cropping is linear, so the model input is the clean ROI crop
   (precomputed once) plus the crop of the warped perturbation, computed exactly as two
   chained bilinear resamplings (:func:`perturbation_crop`); only the final clip to [0, 1]
   is taken on the crop rather than the frame.
4. Expectation over the ROI placement (EOT): MediaPipe re-extracting the *attacked* video
   places its ROI from the attacked landmarks, 1-3 px away from the clean ROI; fitted on the
   clean ROI alone, the perturbation lost much of its effect there (an injected dip the port
   saw at 0.51 x open level, MediaPipe at 0.67). Each step therefore draws a random
   similarity of the model's crop (shift std ``eot_shift`` crop pixels, scale and rotation
   jitter), cropping the clean content from a slightly larger precomputed region; with it
   the runtime's EAR follows the port's (0.53 vs 0.51 on the same dip).

Perturbation parameterisations (``perturbation``), all convex combinations of K parameter
tensors, so projecting each on the L-inf ball keeps every frame's perturbation within
``eps`` (0-255 scale); the written frame adds it rounded and clipped to +-floor(eps) levels,
so the budget holds exactly in the decoded video:

- ``shared``: one perturbation for the whole video (K = 1);
- ``keyframes``: ``n_keys`` perturbations at evenly spaced times, linearly interpolated;
- ``envelope``: two perturbations (eyes "as is" and "at the target dip") mixed per frame by a
  smooth weight known in advance: the target's dip depth for ``inject``, the clean closure
  depth for ``suppress`` (1 - EAR / open level, smoothed over 3 frames, saturating at 1 from
  half closure on).

Loss per frame: ((EAR_port - target) / open)^2 with EAR_port the mean of both eyes' EAR of
the port's attention model (478 points, :func:`blinkbench.mesh_torch.ear_torch`, what
``ear_one`` computes). Optionally a blink detector term, end to end: the port's EAR series
(frames not in the current batch from a cache of their latest values) goes through the
detector's own series preparation, re-expressed in torch (:class:`SeriesOperator`), and its
``window_logits``; ``inject`` pushes the fake logit down (softplus(logit)), ``suppress``
pushes it up (a real video made to look fake), weighted by ``detector_weight``.

CPU cost: each step runs the model on ``frames_per_step`` frames (default 8, a batch),
half of them drawn from the "active" frames (where the clean EAR is far from the target:
blinks for ``suppress``, injected dips for ``inject``) and the rest uniformly, seeded; the
update is a signed step with L1-normalised momentum (``decay``), step size decaying linearly
from ``step_size`` to a tenth of it, then projection. Measured on one core (14 s selfie clip,
``benchmarks/bench_blink_attacks.py``): 5 steps/s, i.e. 41 frames/s forward + backward with
the EOT crops, so the default 100 steps take ~20 s whatever the video length. Scoring costs
more than the optimisation: FFV1 encodes at ~35 and decodes at ~60 frames/s (480x854), and
each condition decodes its video twice in the pipeline (~1.7 s per video second per
condition there).

Scoring (:func:`run_ear_attack`): the adversarial video is written losslessly (FFV1, RGB),
then re-extracted by the real pipeline, and again after each ``compressions`` variant of
:func:`blinkbench.video.compress.compress_video`. Reported per condition: blink count and
rate, closures, EAR change against the clean video, the EAR ratio to the clean open level
inside the clean blinks (``suppress``) or the injected dips (``inject``), how many injected
blinks the pipeline detects, each given blink detector's fake probability; perceptual cost
of the lossless video (PSNR over the frame, SSIM in the face box, L-inf measured on the
decoded video).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from blinkbench.core import io
from blinkbench.mesh_torch.facemesh import MESH_SIZE, crop_affine, ear_torch
from blinkbench.video.lossless import write_lossless

log = logging.getLogger(__name__)

MODES = ("suppress", "inject")
PERTURBATIONS = ("shared", "keyframes", "envelope")   # and "auto" in params: chosen per mode
CLOSING_SHARE = 0.4       # share of a blink spent closing (the lid reopens more slowly)
SUPPRESS_FULL_WEIGHT_DEPTH = 0.5   # suppress envelope: full weight from half closure on
ACTIVE_RATIO = 0.15       # a frame is "active" when |clean - target| / open exceeds this


@dataclass(frozen=True, kw_only=True)
class EarAttackParams:
    """Every knob of the EAR attack (keyword-only; unknown keys raise TypeError)."""

    eps: float = 8.0                     # L-inf budget, 0-255 scale
    steps: int = 100
    step_size: float = 1.0               # first step, 0-255 scale; decays linearly to a tenth
    decay: float = 0.5                   # momentum (0: plain signed gradient)
    perturbation: str = "auto"           # auto (inject: envelope, suppress: shared) | shared | keyframes | envelope
    n_keys: int = 4                      # keyframes only
    delta_size: int = 192                # side of the perturbation grid over the face ROI
    roi_scale: float = 1.5               # MediaPipe's face ROI: landmark box x 1.5
    eot_shift: float = 1.0               # EOT over the ROI: shift std, pixels of the 192 crop
    eot_scale: float = 0.005             # scale std
    eot_angle: float = 0.3               # rotation std, degrees
    eot_pad: int = 8                     # clean context kept around the ROI (bounds the shift)
    frames_per_step: int = 8
    active_fraction: float = 0.5
    surrogate: str = "attention"         # attention (478, the pipeline's model) | mesh (468)
    # injection pattern
    inject_rate_per_min: float = 17.0
    inject_duration_ms: tuple[float, float] = (100.0, 400.0)
    inject_depth: float = 0.2
    inject_min_ibi_s: float = 1.0
    blink_times: tuple[tuple[float, float], ...] | None = None   # explicit (start_s, duration_ms)
    # end to end through a blink detector (needs models with window_logits)
    detector_weight: float = 0.0
    # scoring
    compressions: tuple[str, ...] = ("h264_crf23", "mpeg4_h264", "jpeg75", "jpeg50")
    seed: int = 0

    def __post_init__(self):
        if self.perturbation not in ("auto", *PERTURBATIONS):
            raise ValueError(f"perturbation must be auto or one of {PERTURBATIONS}, not {self.perturbation!r}")
        if self.eps < 0 or self.steps < 0 or self.step_size <= 0 or self.frames_per_step < 1:
            raise ValueError("need eps >= 0, steps >= 0, step_size > 0, frames_per_step >= 1")
        if self.eot_pad < 2 or self.eot_shift < 0 or self.eot_scale < 0 or self.eot_angle < 0:
            raise ValueError("need eot_pad >= 2 and non-negative EOT jitter")
        if self.n_keys < 2 and self.perturbation == "keyframes":
            raise ValueError("keyframes need n_keys >= 2")
        if not 0 < self.inject_depth < 1:
            raise ValueError("inject_depth must be in (0, 1)")
        lo, hi = self.inject_duration_ms
        if not 0 < lo <= hi:
            raise ValueError("inject_duration_ms must be (low, high) with 0 < low <= high")
        object.__setattr__(self, "inject_duration_ms", (float(lo), float(hi)))
        object.__setattr__(self, "compressions", tuple(self.compressions))
        if self.blink_times is not None:
            object.__setattr__(self, "blink_times", tuple((float(s), float(d)) for s, d in self.blink_times))

    def perturbation_for(self, mode: str) -> str:
        """The parameterisation used for ``mode``: ``auto`` is ``envelope`` for ``inject`` (a
        perturbation shared by every frame cannot close the eyes in a few frames only and
        leave them open elsewhere) and ``shared`` for ``suppress``."""
        if self.perturbation != "auto":
            return self.perturbation
        return "envelope" if mode == "inject" else "shared"

    @classmethod
    def from_params(cls, params: "EarAttackParams | Mapping[str, Any] | None") -> "EarAttackParams":
        if isinstance(params, cls):
            return params
        kw = dict(params or {})
        for key in ("inject_duration_ms", "compressions"):
            if key in kw and kw[key] is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


# ---------------------------------------------------------------------- video I/O



# ---------------------------------------------------------------------- geometry

def face_rois(landmarks: np.ndarray, scale: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's tracking ROI from (T, N>=468, 2|3) frame-pixel landmarks: centre (T, 2)
    of the landmark bounding box, side (T,) = ``scale`` x its longer side, angle (T,) of the
    33 -> 263 eye line (radians; NaN rows stay NaN)."""
    xy = np.asarray(landmarks, np.float64)[..., :2]
    lo, hi = xy.min(1), xy.max(1)
    centre = (lo + hi) / 2
    side = scale * (hi - lo).max(1)
    d = xy[:, 263] - xy[:, 33]
    return centre, side, np.arctan2(d[:, 1], d[:, 0])


def roi_affine(centre: np.ndarray, side: np.ndarray, angle: np.ndarray, size: int) -> np.ndarray:
    """(T, 2, 3) maps from ``size`` x ``size`` ROI pixels (u, v, 1) to frame pixels
    (continuous coordinates, pixel i spans [i, i + 1)), as :func:`crop_affine` takes."""
    k = np.asarray(side, np.float64) / size
    c, s = np.cos(angle), np.sin(angle)
    a = np.stack([np.stack([c * k, -s * k], -1), np.stack([s * k, c * k], -1)], -2)   # (T, 2, 2)
    t = np.asarray(centre, np.float64) - a @ np.array([size / 2, size / 2])
    return np.concatenate([a, t[..., None]], -1)


def _invert(affine: torch.Tensor) -> torch.Tensor:
    a, t = affine[:, :, :2], affine[:, :, 2:]
    ai = torch.linalg.inv(a)
    return torch.cat([ai, -ai @ t], -1)


def _sample(delta: torch.Tensor, inv: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """``delta`` (B, 3, D, D) at frame points (B, h, w) given the frame -> delta-grid map ``inv``;
    bilinear, zero outside the grid."""
    d = delta.shape[-1]
    u = inv[:, 0, 0, None, None] * px + inv[:, 0, 1, None, None] * py + inv[:, 0, 2, None, None]
    v = inv[:, 1, 0, None, None] * px + inv[:, 1, 1, None, None] * py + inv[:, 1, 2, None, None]
    grid = torch.stack([u / d * 2 - 1, v / d * 2 - 1], -1)
    return F.grid_sample(delta, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perturbation_crop(delta: torch.Tensor, delta_affine: torch.Tensor, crop_aff: torch.Tensor,
                      height: int, width: int, size: int = MESH_SIZE) -> torch.Tensor:
    """The model-input crop of a perturbation warped into the frame: exactly
    ``crop_affine(warp(delta), crop_aff, size)`` where ``warp`` renders ``delta`` (B, 3, D, D)
    at every frame pixel centre through ``delta_affine`` (delta grid -> frame), zero outside,
    and the crop replicates the frame border, without building the frame."""
    r = torch.arange(size, dtype=delta.dtype) + 0.5
    v, u = torch.meshgrid(r, r, indexing="ij")
    ca = crop_aff.to(delta.dtype)
    x = ca[:, 0, 0, None, None] * u + ca[:, 0, 1, None, None] * v + ca[:, 0, 2, None, None] - 0.5
    y = ca[:, 1, 0, None, None] * u + ca[:, 1, 1, None, None] * v + ca[:, 1, 2, None, None] - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    inv = _invert(delta_affine.to(delta.dtype))
    out = 0.0
    for dx, fx in ((0, 1 - wx), (1, wx)):
        px = (x0 + dx).clamp(0, width - 1) + 0.5
        for dy, fy in ((0, 1 - wy), (1, wy)):
            py = (y0 + dy).clamp(0, height - 1) + 0.5
            out = out + fx * fy * _sample(delta, inv, px, py)
    return out


def render_frame_perturbation(delta: torch.Tensor, delta_affine: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``delta`` (3, D, D) warped into frame pixels: (h, w, 3) float32 values (0-1 scale) on
    the ROI's bounding box and that box's origin (x0, y0)."""
    d = delta.shape[-1]
    corners = np.array([[0, 0, 1], [d, 0, 1], [0, d, 1], [d, d, 1]], np.float64) @ np.asarray(delta_affine).T
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [width, height])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, 3), np.float32), (0, 0)
    py, px = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64) + 0.5,
                            torch.arange(x0, x1, dtype=torch.float64) + 0.5, indexing="ij")
    inv = _invert(torch.as_tensor(np.asarray(delta_affine)[None], dtype=torch.float64))
    out = _sample(delta[None].double(), inv, px[None], py[None])[0]
    return out.permute(1, 2, 0).float().numpy(), (int(x0), int(y0))


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(T, 2, 3) affine ``outer o inner``."""
    a = outer[..., :2] @ inner[..., :2]
    t = outer[..., :2] @ inner[..., 2:] + outer[..., 2:]
    return np.concatenate([a, t], -1)


def jitter_affines(n: int, rng: np.random.Generator, shift: float, scale: float, angle_deg: float,
                   size: int = MESH_SIZE, limit: float | None = None) -> np.ndarray:
    """(n, 2, 3) random similarities of the ``size`` crop about its centre: Gaussian shift
    (std ``shift`` crop pixels, clipped to +-``limit``), scale (std ``scale``) and rotation."""
    dxy = rng.normal(0, shift, (n, 2)) if shift > 0 else np.zeros((n, 2))
    if limit is not None:
        dxy = np.clip(dxy, -limit, limit)
    k = 1 + (rng.normal(0, scale, n) if scale > 0 else np.zeros(n))
    th = np.radians(rng.normal(0, angle_deg, n)) if angle_deg > 0 else np.zeros(n)
    c, s_ = np.cos(th) * k, np.sin(th) * k
    a = np.stack([np.stack([c, -s_], -1), np.stack([s_, c], -1)], -2)
    centre = np.array([size / 2, size / 2])
    t = centre - a @ centre + dxy
    return np.concatenate([a, t[..., None]], -1)


class ContextStore:
    """The clean context crops of a whole video, ``(T, 3, S, S)`` float16, indexed like that
    tensor (``store[idx]`` -> float16 tensor, ``store[i] = crop``).

    ``where="file"`` (the default) keeps them in an unnamed temporary file (deleted when
    closed or collected) written and read with ``pwrite`` / ``pread``: each optimisation step
    gathers only its sampled frames, so resident memory stays flat in the video's length
    (~260 KB per frame otherwise: 1 GB for a 2-minute 30 fps clip). Not a memory map on
    purpose: mapped pages, once touched, stay in the process's resident set until unmapped.
    The bytes are the tensor's own, so every gather is bit for bit what the in-memory tensor
    (``where="memory"``, the former behaviour, kept for comparison) gives. Rows never written
    read as zeros (the file is sparse), as the zero-initialised tensor did."""

    def __init__(self, n: int, size: int, where: str = "file"):
        if where not in ("file", "memory"):
            raise ValueError(f"where must be 'file' or 'memory', not {where!r}")
        self.shape = (int(n), 3, int(size), int(size))
        self._row = 3 * int(size) * int(size) * 2            # bytes of one float16 frame
        self._mem: torch.Tensor | None = None
        self._file = None
        if where == "memory":
            self._mem = torch.zeros(self.shape, dtype=torch.float16)
        else:
            self._file = tempfile.TemporaryFile(prefix="blinkbench-ear-context-")
            os.ftruncate(self._file.fileno(), self.shape[0] * self._row)

    def __len__(self) -> int:
        return self.shape[0]

    def _check(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.shape[0]:
            raise IndexError(f"frame {i} outside 0..{self.shape[0] - 1}")
        return i

    def __setitem__(self, i: int, value: torch.Tensor) -> None:
        i = self._check(i)
        v = value.detach().to(torch.float16).reshape(self.shape[1:])
        if self._mem is not None:
            self._mem[i] = v
            return
        buf = v.contiguous().numpy().tobytes()
        if os.pwrite(self._file.fileno(), buf, i * self._row) != self._row:
            raise OSError(f"short write of context frame {i}")

    def __getitem__(self, idx) -> torch.Tensor:
        scalar = np.ndim(idx) == 0
        rows = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        if self._mem is not None:
            got = self._mem[torch.as_tensor(rows)]
            return got[0] if scalar else got
        out = np.empty((len(rows),) + self.shape[1:], np.float16)
        fd = self._file.fileno()
        for k, i in enumerate(rows):
            i = self._check(i)
            if os.preadv(fd, [memoryview(out[k]).cast("B")], i * self._row) != self._row:
                raise OSError(f"short read of context frame {i}")
        t = torch.from_numpy(out)
        return t[0] if scalar else t

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._mem = None


@dataclass
class ClipGeometry:
    """What the optimisation needs from a video, precomputed once: per frame the ROI maps,
    the clean face region around the ROI and the timestamps; ``valid`` marks frames with
    clean landmarks.

    The clean region is stored as a ``192 + 2 pad`` square crop at the model crop's pixel
    density (float16; in a :class:`ContextStore`, a temporary file, so memory does not grow
    with the video's length), so the unjittered model crop is an exact integer-offset slice of it
    and a jittered one (EOT over MediaPipe's own ROI placement, which follows the attacked
    landmarks by a few pixels) is resampled from it. The perturbation's crop is always
    computed exactly from its frame-level definition (:func:`perturbation_crop`)."""

    t: np.ndarray                # (T,) seconds
    valid: np.ndarray            # (T,) bool
    crop_affine: np.ndarray      # (T, 2, 3) 192-crop -> frame
    delta_affine: np.ndarray     # (T, 2, 3) delta grid -> frame
    context: ContextStore        # (T, 3, 192 + 2 pad, same) float16 clean region (zeros where invalid)
    pad: int
    height: int
    width: int
    fps: float
    clean_ear: dict = dataclasses.field(default_factory=dict)   # surrogate class -> (T,) port EAR

    @classmethod
    def build(cls, video: str | Path, landmarks: np.ndarray, t: np.ndarray, present: np.ndarray,
              roi_scale: float, delta_size: int, pad: int = 8, context: str = "file") -> "ClipGeometry":
        """``context``: where the clean regions live (:class:`ContextStore`; ``memory`` only
        to compare with the former whole-video tensor)."""
        from blinkbench.video.codec import FrameReader

        n = len(t)
        valid = np.asarray(present, bool) & np.isfinite(landmarks[:, :, :2]).all((1, 2))
        centre, side, angle = face_rois(np.nan_to_num(landmarks), roi_scale)
        side = np.where(valid, side, 1.0)
        caff = roi_affine(centre, side, angle, MESH_SIZE)
        daff = roi_affine(centre, side, angle, delta_size)
        size = MESH_SIZE + 2 * pad
        ctx_aff = roi_affine(centre, side * size / MESH_SIZE, angle, size)
        context = ContextStore(n, size, context)
        reader = FrameReader(str(video))
        h = w = 0
        for fr in reader:
            if fr.index >= n:
                break
            h, w = fr.height, fr.width
            if valid[fr.index]:
                x = torch.from_numpy(fr.rgb()).permute(2, 0, 1)[None].float() / 255.0
                a = torch.as_tensor(ctx_aff[fr.index : fr.index + 1], dtype=torch.float32)
                context[fr.index] = crop_affine(x, a, size)[0].half()   # one frame in memory at a time
        fps = reader.fps if reader.fps == reader.fps and reader.fps > 0 else 25.0
        return cls(np.asarray(t, np.float64), valid, caff, daff, context, int(pad), h, w, float(fps))

    def clean_crops(self, idx: np.ndarray, jitter: np.ndarray | None = None) -> torch.Tensor:
        """Clean model inputs (B, 3, 192, 192); ``jitter`` (B, 2, 3) crop-pixel similarities."""
        ctx = self.context[idx].float()
        if jitter is None:
            p = self.pad
            return ctx[..., p : p + MESH_SIZE, p : p + MESH_SIZE]
        shift = np.array([[0, 0, self.pad], [0, 0, self.pad]], np.float64)
        m = jitter.copy()
        m[..., :, 2] += shift[:, 2]
        return crop_affine(ctx, torch.as_tensor(m, dtype=torch.float32), MESH_SIZE)

    def adversarial_crops(self, idx: np.ndarray, delta: torch.Tensor, jitter: np.ndarray | None = None) -> torch.Tensor:
        """Model inputs (B, 3, 192, 192) of frames ``idx`` with per-frame perturbations
        ``delta`` (B, 3, D, D); with ``jitter``, the model's crop is moved by those maps."""
        caff = self.crop_affine[idx] if jitter is None else _compose(self.crop_affine[idx], jitter)
        d = perturbation_crop(delta, torch.as_tensor(self.delta_affine[idx], dtype=torch.float32),
                              torch.as_tensor(caff, dtype=torch.float32), self.height, self.width)
        return (self.clean_crops(idx, jitter) + d).clamp(0, 1)


# ---------------------------------------------------------------------- targets

def blink_profile(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """Closure depth in [0, 1] at times ``t`` of a blink starting at ``start`` (s) lasting
    ``duration`` (s): half-cosine closing over ``CLOSING_SHARE`` of it, slower reopening."""
    tau = (np.asarray(t, np.float64) - start) / duration
    out = np.zeros_like(tau)
    c = CLOSING_SHARE
    closing = (tau >= 0) & (tau < c)
    opening = (tau >= c) & (tau <= 1)
    out[closing] = 0.5 - 0.5 * np.cos(np.pi * tau[closing] / c)
    out[opening] = 0.5 + 0.5 * np.cos(np.pi * (tau[opening] - c) / (1 - c))
    return out


def draw_blinks(duration_s: float, p: EarAttackParams, avoid: Sequence[tuple[float, float]] = (),
                existing: int = 0) -> list[tuple[float, float]]:
    """Seeded natural blink schedule [(start_s, duration_ms)] over ``duration_s``: gamma
    intervals (shape 3, mean 60 / rate) no shorter than ``inject_min_ibi_s``, durations
    uniform in ``inject_duration_ms``; blinks overlapping ``avoid`` intervals (with a 0.3 s
    margin) are dropped, and ``existing`` blinks count toward the rate."""
    if p.blink_times is not None:
        return list(p.blink_times)
    rng = np.random.default_rng(p.seed)
    mean_ibi = 60.0 / p.inject_rate_per_min
    want = max(0, int(round(duration_s / mean_ibi)) - existing)
    want = max(want, 1 if duration_s >= 1.0 and existing == 0 else 0)
    best: list[tuple[float, float]] = []
    # One draw of the renewal process can leave the end of a short clip empty (an 8 s clip at
    # 17/min wants 2 blinks, a late first onset plus one long interval gives 1): redraw,
    # seeded, and keep the first schedule with the wanted count (else the fullest one).
    for _ in range(64):
        out: list[tuple[float, float]] = []
        t = rng.uniform(0.3, min(max(0.31, duration_s / 2), 0.3 + mean_ibi))
        while t < duration_s and len(out) < want:
            dur = rng.uniform(*p.inject_duration_ms)
            end = t + dur / 1000
            if end < duration_s - 0.1 and all(end + 0.3 < a or t - 0.3 > b for a, b in avoid):
                out.append((float(t), float(dur)))
            t = end + max(p.inject_min_ibi_s, rng.gamma(3.0, mean_ibi / 3.0))
        if len(out) > len(best):
            best = out
        if len(best) >= want:
            break
    return best


def smooth3(x: np.ndarray) -> np.ndarray:
    """Centred 3-frame moving average (edges use the available neighbours)."""
    pad = np.pad(x, 1, mode="edge")
    return (pad[:-2] + pad[1:-1] + pad[2:]) / 3


@dataclass
class Target:
    ear: np.ndarray              # (T,) target EAR on the port's scale (NaN where invalid)
    open: np.ndarray             # (T,) open-eye level of the port's clean EAR
    weight: np.ndarray           # (T,) envelope weight in [0, 1]
    blinks: list[tuple[float, float]]

    @property
    def ratio(self) -> np.ndarray:
        return self.ear / self.open


def make_target(mode: str, t: np.ndarray, clean_ear: np.ndarray, p: EarAttackParams, blink_cfg: dict,
                clean_events: pd.DataFrame | None = None) -> Target:
    """Per-frame target EAR: the open level (``suppress``) or the open level with injected
    dips (``inject``; the video's own blink frames keep their clean EAR)."""
    from blinkbench.spine.blinks import open_level

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    level = open_level(t, clean_ear, blink_cfg["baseline_window_s"], blink_cfg["baseline_quantile"])
    if mode == "suppress":
        depth = np.clip(1 - clean_ear / level, 0, 1)
        weight = np.clip(smooth3(np.nan_to_num(depth)) / SUPPRESS_FULL_WEIGHT_DEPTH, 0, 1)
        return Target(level.copy(), level, weight, [])
    events = clean_events if clean_events is not None else pd.DataFrame(columns=["start_s", "end_s", "kind"])
    avoid = [(float(a), float(b)) for a, b in zip(events.get("start_s", []), events.get("end_s", []))]
    n_own = int((events["kind"] == "blink").sum()) if len(events) else 0
    duration = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    blinks = draw_blinks(duration, p, avoid, n_own)
    depth = np.zeros_like(t)
    for start, dur_ms in blinks:
        depth = np.maximum(depth, blink_profile(t - t[0], start, dur_ms / 1000))
    target = level * (1 - (1 - p.inject_depth) * depth)
    own = np.zeros(len(t), bool)
    for a, b in avoid:
        own |= (t >= a) & (t < b)
    target = np.where(own, clean_ear, target)
    return Target(target, level, depth, blinks)


# ---------------------------------------------------------------------- perturbations

class Perturbation:
    """K parameter perturbations (K, 3, D, D) and per-frame convex weights (T, K)."""

    def __init__(self, kind: str, n_frames: int, t: np.ndarray, delta_size: int, n_keys: int = 4,
                 envelope: np.ndarray | None = None):
        if kind == "shared":
            w = np.ones((n_frames, 1))
        elif kind == "keyframes":
            keys = np.linspace(t[0], t[-1], n_keys) if len(t) > 1 else np.zeros(n_keys)
            w = np.stack([np.interp(t, keys, np.eye(n_keys)[k]) for k in range(n_keys)], 1)
        elif kind == "envelope":
            e = np.clip(np.nan_to_num(np.asarray(envelope, np.float64)), 0, 1)
            w = np.stack([1 - e, e], 1)
        else:
            raise ValueError(f"unknown perturbation {kind!r}")
        self.kind = kind
        self.weights = torch.as_tensor(w, dtype=torch.float32)
        self.params = torch.zeros(w.shape[1], 3, delta_size, delta_size)

    def frames(self, idx: np.ndarray, params: torch.Tensor | None = None) -> torch.Tensor:
        p = self.params if params is None else params
        w = self.weights[torch.as_tensor(idx, dtype=torch.long)]
        return torch.einsum("bk,kchw->bchw", w, p)


# ---------------------------------------------------------------------- detector term

class SeriesOperator:
    """A detector's EAR-series preparation (:mod:`blinkbench.detectors.blink.series`: resampling, short-gap
    filling, normalisation, windows) as a differentiable map from per-frame EAR (T,) to the
    windows the detector scores. Resampling and gap filling are linear in the valid frames'
    values, so they are captured once as a matrix by running the numpy code on basis vectors;
    normalisation and windowing are redone in torch with the same rules."""

    def __init__(self, t: np.ndarray, valid: np.ndarray, cfg):
        from blinkbench.detectors.blink import series

        self.cfg = cfg
        t = np.asarray(t, np.float64)
        valid = np.asarray(valid, bool)
        cols = []
        for j in range(len(t)):
            e = np.where(valid, 0.0, np.nan)
            if valid[j]:
                e[j] = 1.0
            _, y = series.resample(t, e, cfg.rate_hz)
            cols.append(series._fill_short_runs(y, int(round(cfg.interpolate_gap_s * cfg.rate_hz))))
        y = np.stack(cols, 1) if cols else np.zeros((0, 0))
        self.mask = np.isfinite(y).all(1) if y.size else np.zeros(0, bool)
        self.matrix = torch.as_tensor(np.nan_to_num(y), dtype=torch.float32)

    def windows(self, ear: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(windows (n, L), masks (n, L)) exactly as ``series.windows(series.prepare(...))``."""
        cfg = self.cfg
        y = self.matrix @ torch.nan_to_num(ear.float())
        m = torch.as_tensor(self.mask)
        if not m.any():
            v = torch.full_like(y, 1.0 if cfg.normalise == "median" else 0.0)
        else:
            obs = y[m]
            level = torch.quantile(obs, 0.5)
            if cfg.normalise == "median":
                y, neutral = (y / level, torch.ones(())) if level > 0 else (y, level)
            elif cfg.normalise == "zscore":
                sd = obs.std(unbiased=False)
                sd = sd if sd > 1e-9 else torch.ones(())
                y, neutral = (y - obs.mean()) / sd, (level - obs.mean()) / sd
            elif cfg.normalise == "minmax":
                lo, hi = obs.min(), obs.max()
                span = hi - lo if hi - lo > 1e-9 else torch.ones(())
                y, neutral = (y - lo) / span, (level - lo) / span
            else:
                neutral = level
            v = torch.where(m, y, neutral)
        L, S = cfg.window_len, cfg.stride_len
        if len(v) < L:
            fill = torch.quantile(v[m], 0.5) if m.any() else torch.tensor(1.0 if cfg.normalise == "median" else 0.0)
            v = torch.cat([v, fill.expand(L - len(v))])
            m = torch.cat([m, torch.zeros(L - len(m), dtype=torch.bool)])
        starts = list(range(0, len(v) - L + 1, S))
        if starts[-1] != len(v) - L:
            starts.append(len(v) - L)
        W = torch.stack([v[s : s + L] for s in starts])
        M = torch.stack([m[s : s + L] for s in starts])
        keep = (1 - M.float().mean(1)) <= cfg.max_masked_fraction
        if keep.any():
            W, M = W[keep], M[keep]
        return W, M


# ---------------------------------------------------------------------- the optimisation

def _surrogate(name: str):
    from blinkbench.mesh_torch import surrogate

    return surrogate(name)


def port_ear(model, crops: torch.Tensor) -> torch.Tensor:
    """Mean of both eyes' EAR (B,) of the port on model-input crops, differentiable."""
    left, right = ear_torch(model.landmarks(crops).landmarks)
    return (left + right) / 2


def clean_port_ear(model, geo: ClipGeometry, batch: int = 16) -> np.ndarray:
    out = np.full(len(geo.t), np.nan)
    idx = np.flatnonzero(geo.valid)
    for s in range(0, len(idx), batch):
        b = idx[s : s + batch]
        with torch.no_grad():
            out[b] = port_ear(model, geo.clean_crops(b)).double().numpy()
    return out


def adversarial_port_ear(model, geo: ClipGeometry, pert: Perturbation, batch: int = 16) -> np.ndarray:
    out = np.full(len(geo.t), np.nan)
    idx = np.flatnonzero(geo.valid)
    for s in range(0, len(idx), batch):
        b = idx[s : s + batch]
        with torch.no_grad():
            out[b] = port_ear(model, geo.adversarial_crops(b, pert.frames(b))).double().numpy()
    return out


def optimise(geo: ClipGeometry, target: Target, pert: Perturbation, p: EarAttackParams, mode: str,
             detectors: Sequence = ()) -> dict:
    """Fit ``pert.params`` (in place). Returns a log: per-step loss, seconds, frames seen."""
    model = _surrogate(p.surrogate)
    rng = np.random.default_rng(p.seed)
    valid = np.flatnonzero(geo.valid & np.isfinite(target.ear))
    if not len(valid):
        raise ValueError("no frame with a face and a target")
    err = np.abs(np.nan_to_num(target.ear - _clean_cache(geo, model)) / target.open)
    active = valid[err[valid] > ACTIVE_RATIO]
    eps = p.eps / 255.0
    tgt = torch.as_tensor(np.nan_to_num(target.ear), dtype=torch.float32)
    opn = torch.as_tensor(np.nan_to_num(target.open, nan=1.0), dtype=torch.float32)
    ops = [(d, SeriesOperator(geo.t, geo.valid, d.series)) for d in detectors] if p.detector_weight > 0 else []
    cache = torch.as_tensor(np.nan_to_num(_clean_cache(geo, model)), dtype=torch.float32)
    params = pert.params
    g = torch.zeros_like(params)
    history, t0 = [], time.perf_counter()
    b = min(p.frames_per_step, len(valid))
    for step in range(p.steps):
        n_act = min(len(active), int(round(b * p.active_fraction)))
        pick = rng.choice(active, n_act, replace=False) if n_act else np.zeros(0, int)
        rest = np.setdiff1d(valid, pick)
        idx = np.sort(np.concatenate([pick, rng.choice(rest, min(b - n_act, len(rest)), replace=False)]))
        x = params.detach().requires_grad_(True)
        jitter = None
        if p.eot_shift > 0 or p.eot_scale > 0 or p.eot_angle > 0:
            jitter = jitter_affines(len(idx), rng, p.eot_shift, p.eot_scale, p.eot_angle, limit=geo.pad - 1)
        ear = port_ear(model, geo.adversarial_crops(idx, pert.frames(idx, x), jitter))
        ti = torch.as_tensor(idx, dtype=torch.long)
        loss = (((ear - tgt[ti]) / opn[ti]) ** 2).mean()
        total = loss
        if ops:
            series = cache.clone().index_put((ti,), ear.float())
            det_loss = 0.0
            for det, op in ops:
                W, M = op.windows(series)
                logits = det.window_logits(W, M)
                det_loss = det_loss + F.softplus(logits if mode == "inject" else -logits).mean()
            total = total + p.detector_weight * det_loss / len(ops)
        total.backward()
        cache[ti] = ear.detach().float()
        grad = x.grad.detach()
        norm = grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-20)
        g = p.decay * g + grad / norm
        alpha = p.step_size / 255.0 * (1 - 0.9 * step / max(1, p.steps - 1))
        with torch.no_grad():
            params.sub_(alpha * g.sign()).clamp_(-eps, eps)
        history.append(float(loss.detach()))
    return {"loss": history, "seconds": time.perf_counter() - t0, "frames_per_step": b,
            "n_active": int(len(active)), "n_valid": int(len(valid))}


def _clean_cache(geo: ClipGeometry, model) -> np.ndarray:
    """The port's clean EAR per frame, computed once per model."""
    key = type(model).__name__
    if key not in geo.clean_ear:
        geo.clean_ear[key] = clean_port_ear(model, geo)
    return geo.clean_ear[key]


def write_adversarial(src: str | Path, dst: str | Path, geo: ClipGeometry, pert: Perturbation, eps: float) -> dict:
    """The adversarial video, losslessly: each valid frame plus its warped perturbation,
    rounded to integer levels, clipped to +-floor(eps) (the budget of an 8-bit video) and to
    0-255, so the decoded video keeps |adv - clean| <= eps exactly."""
    from blinkbench.video.codec import FrameReader

    levels = math.floor(eps + 1e-9)

    def frames():
        for fr in FrameReader(str(src)):
            rgb = fr.rgb()
            if fr.index < len(geo.t) and geo.valid[fr.index]:
                d = pert.frames(np.array([fr.index]))[0]
                patch, (x0, y0) = render_frame_perturbation(d, geo.delta_affine[fr.index], fr.height, fr.width)
                h, w = patch.shape[:2]
                step = np.clip(np.round(patch * 255), -levels, levels).astype(np.int16)
                region = rgb[y0 : y0 + h, x0 : x0 + w].astype(np.int16) + step
                rgb = rgb.copy()
                rgb[y0 : y0 + h, x0 : x0 + w] = np.clip(region, 0, 255).astype(np.uint8)
            yield rgb

    rate = Fraction(geo.fps).limit_denominator(1001)
    n = write_lossless(dst, frames(), rate)
    return {"frames_written": n, "fps": float(rate)}


# ---------------------------------------------------------------------- scoring

def pipeline_params(params: Mapping | None) -> dict:
    """The ``faces``, ``landmarks`` and ``blinks`` sections of the project params, validated
    against the schema (its defaults fill what is absent, nested ones included)."""
    import copy

    from blinkbench.core import config

    params = dict(params or {})
    sections = {k: copy.deepcopy(dict(params.get(k) or {})) for k in ("faces", "landmarks", "blinks")}
    return {k: v for k, v in config.validate({"datasets": {}, **sections}).items() if k in sections}


def run_pipeline(video: str | Path, work: Path, params: dict) -> dict:
    """faces -> landmarks -> EAR -> blinks on ``video`` into ``work``; the blink summary
    (with status) plus the artifacts' paths."""
    from blinkbench.spine import steps

    run = steps.run_chain(video, params, work, crops=True, steps_meta=True,
                          files={"faces": "track.parquet", "blink_summary": "blink_summary.json"})
    keys = {"faces": "track", "blink_summary": "summary"}   # the names its results have always used
    return {**run["blinks"], "paths": {keys.get(k, k): str(v) for k, v in run["paths"].items()}}


def _ear_table(res: dict) -> pd.DataFrame:
    return pd.read_parquet(res["paths"]["ear"])


def _detector_scores(models: Mapping[str, Any], res: dict) -> dict:
    from blinkbench.detectors.blink.series import VideoSeries

    out = {}
    if res.get("status") != "ok":
        return {name: None for name in models}
    video = VideoSeries.from_artifacts("video", res["paths"]["ear"], res["paths"]["summary"])
    for name, det in models.items():
        try:
            out[name] = float(det.predict_proba([video])[0])
        except Exception as exc:
            out[name] = None
            log.warning("detector %s failed: %s", name, exc)
    return out


def condition_metrics(res: dict, clean: dict, target: Target, mode: str, models: Mapping[str, Any]) -> dict:
    """What an attacked (or clean) video's pipeline output says, against the clean run."""
    from blinkbench.spine.blinks import open_level

    keys = ("status", "error", "n_blinks", "n_closures", "blink_rate_per_min", "mean_blink_ms", "ear_median",
            "face_frames", "frames")
    out = {k: res.get(k) for k in keys}
    out["paths"] = res.get("paths", {})
    out["detector_p_fake"] = _detector_scores(models, res)
    if res.get("status") != "ok" or clean.get("status") != "ok":
        return out
    e_adv, e_clean = _ear_table(res), _ear_table(clean)
    n = min(len(e_adv), len(e_clean), len(target.ear))
    a = e_adv["ear_mean"].to_numpy()[:n]
    c = e_clean["ear_mean"].to_numpy()[:n]
    t = e_clean["timestamp_s"].to_numpy()[:n]
    cfg = clean["blink_cfg"]
    level = open_level(t, c, cfg["baseline_window_s"], cfg["baseline_quantile"])
    both = np.isfinite(a) & np.isfinite(c)
    ratio_t = target.ratio[:n]
    out["ear_mae_vs_clean"] = float(np.mean(np.abs(a - c)[both])) if both.any() else None
    ok = both & np.isfinite(ratio_t)
    out["target_ratio_error"] = float(np.mean(np.abs(a / level - ratio_t)[ok])) if ok.any() else None
    focus = _focus_frames(mode, clean, target, n)
    f = focus & np.isfinite(a)
    out["focus_frames"] = int(focus.sum())
    out["focus_mean_ratio"] = float(np.mean(a[f] / level[f])) if f.any() else None
    out["focus_min_ratio"] = float(np.min(a[f] / level[f])) if f.any() else None
    if mode == "inject":
        events = pd.read_parquet(res["paths"]["blinks"])
        blinks = events[events["kind"] == "blink"]
        hits = 0
        reached = []
        for start, dur in target.blinks:
            hits += bool(((blinks["start_s"] < start + dur / 1000 + 0.05) & (blinks["end_s"] > start - 0.05)).any())
            inside = (t - t[0] >= start) & (t - t[0] <= start + dur / 1000) & np.isfinite(a)
            reached.append(float(np.min(a[inside] / level[inside])) if inside.any() else None)
        out["injected_detected"] = int(hits)
        # how deep each injected dip got (min EAR / open level) against the detector's line
        out["injected_min_ratio"] = reached
        out["needed_ratio"] = float(cfg["close_ratio"])
    return out


def _focus_frames(mode: str, clean: dict, target: Target, n: int) -> np.ndarray:
    focus = np.zeros(n, bool)
    if mode == "suppress":
        events = pd.read_parquet(clean["paths"]["blinks"])
        for a, b in zip(events["start_frame"], events["end_frame"]):
            focus[int(a) : min(n, int(b) + 1)] = True
    else:
        focus = np.nan_to_num(target.weight[:n]) > 0.5
    return focus


def perceptual_cost(clean_video: str | Path, adv_video: str | Path, landmarks: np.ndarray, valid: np.ndarray) -> dict:
    """PSNR over whole frames, SSIM in the face box (clean landmarks' bounding box), and the
    L-inf distance, all on decoded frames (PyAV rgb24), by :mod:`blinkbench.attacks.perceptual`'s
    rules (means over the frames that changed; None when there are none)."""
    import av

    from blinkbench.attacks.perceptual import face_box, psnr, ssim_in_box

    ps, ss, worst, n = [], [], 0, 0
    with av.open(str(clean_video)) as ca, av.open(str(adv_video)) as cb:
        for i, (fa, fb) in enumerate(zip(ca.decode(video=0), cb.decode(video=0))):
            a, b = fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24")
            n += 1
            if a.shape != b.shape:
                return {"error": f"frame {i}: shape {a.shape} vs {b.shape}"}
            worst = max(worst, int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()))
            ps.append(psnr(a, b))
            if i < len(valid) and valid[i]:
                ss.append(ssim_in_box(a, b, face_box(landmarks[i], a.shape[:2])))
    changed = [x for x in ps if x is not None]      # identical frames have no PSNR
    ss = [x for x in ss if x is not None]            # nor faces under 7 px an SSIM
    return {"frames": n, "linf": worst, "psnr_mean": float(np.mean(changed)) if changed else None,
            "psnr_min": float(np.min(changed)) if changed else None,
            "ssim_face_mean": float(np.mean(ss)) if ss else None,
            "ssim_face_min": float(np.min(ss)) if ss else None}


def _load_models(models) -> dict:
    from blinkbench.detectors.blink import Detector

    out = {}
    for name, m in dict(models or {}).items():
        out[name] = Detector.load(m) if isinstance(m, (str, Path)) else m
    return out


def run_ear_attack(video_path: str | Path, out_dir: str | Path, mode: str,
                   params: EarAttackParams | Mapping[str, Any] | None = None, models: Mapping[str, Any] | None = None,
                   *, pipeline: Mapping | None = None) -> dict:
    """Attack one video's EAR series and score it through the real pipeline.

    ``mode``: ``suppress`` or ``inject``; ``params``: :class:`EarAttackParams` or a mapping of
    its fields; ``models``: blink detectors (name -> fitted ``Detector`` or a model path),
    scored on every condition, and, with ``detector_weight > 0``, attacked end to end when
    they have ``window_logits``; ``pipeline``: the project params (``faces``, ``landmarks``,
    ``blinks`` sections; schema defaults otherwise). The landmark backend must be
    ``mediapipe`` (the port is Face Mesh).

    Writes to ``out_dir``: ``adversarial.mkv`` (lossless), ``target.parquet`` (per frame:
    clean and final port EAR, target), ``perturbation.npz`` (parameters and per-frame
    weights), ``work/<condition>/`` (the pipeline's artifacts for ``clean``, ``lossless``
    and each compression), and ``result.json`` (atomically, always, with ``status`` ``ok``,
    ``no_face``, ``unreadable``/``missing``/..., or ``error``). Returns the result dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"video": str(video_path), "mode": mode, "status": "error", "error": ""}
    try:
        p = EarAttackParams.from_params(params)
        result["params"] = dataclasses.asdict(p)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        result.update(_run(Path(video_path), out_dir, mode, p, _load_models(models), pipeline_params(pipeline)))
    except Exception as exc:  # bad input or a bug: recorded, never raised
        log.error("EAR attack on %s failed: %s\n%s", video_path, exc, traceback.format_exc())
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
    result = io.finite(result)
    io.write_json(result, out_dir / "result.json")
    return result


def _run(video: Path, out: Path, mode: str, p: EarAttackParams, models: dict, pp: dict) -> dict:
    from blinkbench.spine.landmarks import read_landmarks
    from blinkbench.video.codec import OK, probe

    info = probe(video)
    if info.status != OK:
        return {"status": info.status, "error": info.error}
    if pp["landmarks"]["backend"] != "mediapipe":
        raise ValueError("the EAR attack needs landmarks.backend = mediapipe (the port is Face Mesh)")
    torch.manual_seed(p.seed)
    timing: dict[str, float] = {}
    mark = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timing[name] = timing.get(name, 0.0) + now - mark[0]
        mark[0] = now

    clean = run_pipeline(video, out / "work" / "clean", pp)
    lap("clean_pipeline_s")
    clean["blink_cfg"] = pp["blinks"]
    if clean.get("status") != "ok":
        return {"status": clean.get("status", "error"), "error": clean.get("error", ""), "clean": _public(clean)}
    parts = list(read_landmarks(clean["paths"]["landmarks"]))
    lms = np.concatenate([x[3] for x in parts])
    t = np.concatenate([x[1] for x in parts])
    present = np.concatenate([x[2] for x in parts])
    geo = ClipGeometry.build(video, lms, t, present, p.roi_scale, p.delta_size, p.eot_pad)
    if not geo.valid.any():
        return {"status": "no_face", "error": "no frame with clean landmarks", "clean": _public(clean)}
    model = _surrogate(p.surrogate)
    clean_ear = _clean_cache(geo, model)
    lap("precompute_s")
    events = pd.read_parquet(clean["paths"]["blinks"])
    target = make_target(mode, geo.t, clean_ear, p, pp["blinks"], events)
    pert = Perturbation(p.perturbation_for(mode), len(geo.t), geo.t, p.delta_size, p.n_keys, target.weight)
    detectors = [d for d in models.values() if hasattr(d, "window_logits")]
    opt = optimise(geo, target, pert, p, mode, detectors)
    lap("optimise_s")
    final_ear = adversarial_port_ear(model, geo, pert)
    io.write_parquet(pd.DataFrame({"frame": np.arange(len(geo.t), dtype=np.int32), "timestamp_s": geo.t,
                                   "valid": geo.valid, "port_clean_ear": clean_ear, "port_adv_ear": final_ear,
                                   "target_ear": target.ear, "open_level": target.open, "weight": target.weight}),
                     out / "target.parquet", {"status": "ok", "mode": mode})
    with io.atomic_path(out / "perturbation.npz", suffix=".npz") as tmp:
        np.savez_compressed(tmp, params=pert.params.numpy(), weights=pert.weights.numpy(),
                            delta_affine=geo.delta_affine, valid=geo.valid)
    adv = out / "adversarial.mkv"
    written = write_adversarial(video, adv, geo, pert, p.eps)
    lap("write_s")
    cost = perceptual_cost(video, adv, lms, geo.valid)
    lap("perceptual_s")
    conditions = {"clean": condition_metrics(clean, clean, target, mode, models)}
    lossless = run_pipeline(adv, out / "work" / "lossless", pp)
    conditions["lossless"] = condition_metrics(lossless, clean, target, mode, models)
    lap("score_lossless_s")
    for variant in p.compressions:
        try:
            from blinkbench.video.compress import compress_video

            dst = out / "work" / variant / "video.mkv"
            dst.parent.mkdir(parents=True, exist_ok=True)
            rec = compress_video(adv, dst, variant)
            if rec.get("status") != "ok":
                raise RuntimeError(f"compress_video: {rec.get('status')}: {rec.get('error')}")
            conditions[variant] = condition_metrics(run_pipeline(dst, out / "work" / variant, pp), clean, target, mode, models)
        except Exception as exc:
            log.warning("compression %s failed: %s", variant, exc)
            conditions[variant] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        lap(f"score_{variant}_s")
    ok = geo.valid & np.isfinite(target.ear)
    port = {"clean_target_ratio_error": float(np.mean(np.abs(clean_ear - target.ear)[ok] / target.open[ok])),
            "adv_target_ratio_error": float(np.mean(np.abs(final_ear - target.ear)[ok] / target.open[ok]))}
    opt_log = {**opt, "loss_first": opt["loss"][0] if opt["loss"] else None,
               "loss_last": opt["loss"][-1] if opt["loss"] else None, "loss": opt["loss"][:: max(1, len(opt["loss"]) // 50)]}
    return {"status": "ok", "error": "", "n_frames": int(len(geo.t)), "valid_frames": int(geo.valid.sum()),
            "injected_blinks": [{"start_s": s, "duration_ms": d} for s, d in target.blinks],
            "port": port, "optimisation": opt_log, "written": written, "perceptual": cost,
            "conditions": conditions, "timing": timing, "video_duration_s": float(info.duration_s),
            "outputs": {"adversarial": str(adv), "target": str(out / "target.parquet"),
                        "perturbation": str(out / "perturbation.npz")}}


def _public(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != "blink_cfg"}
