"""Landmark Breaker (Sun, Li, Qi and Lyu, WIFS 2020) against MediaPipe Face Mesh.

The paper perturbs a face image so that a heat-map landmark extractor (FAN, HRNet, ...)
misplaces its landmarks: MI-FGSM minimising the cosine similarity between the heat-maps of
the adversarial image and those of the original. Face Mesh regresses coordinates and has no
heat-maps, so here they are *rendered*: one isotropic Gaussian per landmark,

    H_k(u, v) = exp(-((u - x_k)^2 + (v - y_k)^2) / (2 sigma^2)),

on a ``heatmap_size`` x ``heatmap_size`` grid over the 192 x 192 model input (cell centres;
``sigma`` in pixels of that input), for the landmarks predicted on the adversarial input
(differentiable in the coordinates, hence in the pixels: soft rendering) and for the clean
prediction (fixed). The loss is the cosine similarity of the two maps averaged over the
chosen landmarks; the attack minimises it. A Gaussian map is the outer product of two 1-D
profiles, so its cosine similarity with another factorises exactly into the product of the
two 1-D cosines: :func:`heatmap_cosine` computes it that way (O(K G) instead of O(K G^2));
:func:`render_heatmaps` renders the 2-D maps explicitly (tests check both agree).

Landmarks in the loss (``landmarks``):

- ``eyes_outline`` (default): the 16 eye-contour points of each eye that MediaPipe's
  refinement calculators treat as the eye (lid line and corners, which include the six EAR
  points of :mod:`blinkbench.spine.ear`) plus every third point of the 36-point face oval. The eyes
  are what the blink pipeline measures; the outline is what face alignment (the paper's
  target: DeepFake synthesis aligns faces by landmarks) and Face Mesh's own tracking ROI
  depend on. 44 points.
- ``eyes``: the 32 eye-contour points only; ``all``: the 468 mesh points.

The loss is stationary at the clean image (cosine similarity is maximal there, its gradient
is zero), so every attack starts from a seeded random perturbation of ``random_start``
grey levels (integers in [-r, r], inside the budget); without it FGSM would step along
rounding noise.

Attacks (one loop, :class:`HeatmapAttack`; each registered name only changes defaults):

=============  ==========================================================================
``fgsm``       one step of size epsilon
``ifgsm``      T steps of ``step_size``, no momentum
``mifgsm``     the paper's Landmark Breaker: momentum ``decay`` 0.5 (alias ``landmark_breaker``)
``difgsm``     I-FGSM with input diversity (Xie et al., CVPR 2019): at each iteration, with
               probability ``diversity_prob``, the input is shrunk by a random factor in
               [``resize_low``, 1) and zero-padded back to 192 at a random offset; the
               predicted landmarks are mapped back to the original frame of reference
``mdifgsm``    the "mixture": input diversity *and* momentum (M-DI2-FGSM)
``mdifgsm_ens``  the mixture on an ensemble of both Face Mesh models (468-point
               ``face_landmark`` and the 478-point attention model): the loss is averaged
``lbmix``      LBmix: alternates Base2 steps (the plain gradient sign of I-FGSM on the
               heat-map loss) with Landmark Breaker steps (the momentum direction, decay
               0.5); the momentum accumulates on every step (``alternate``)
=============  ==========================================================================

Paper defaults: epsilon 15 (0-255 scale), T = 20, step 1, decay 0.5. Images are handled on
the 1/255 grid (integer start, integer steps), so the adversarial image is exactly the uint8
image that is evaluated and written.

Evaluation (:func:`run_landmark_breaker_eval`): on a list of face crops, per attack, NME of
the landmarks on the adversarial crop against the same extractor's prediction on the clean
crop, normalised by the clean outer-eye-corner distance (Face Mesh 33-263, 68-point 36-45).
``nme68``, the headline as in seed 001's tables, is the NME over the 68 points of the iBUG
layout: for Face Mesh targets the 68-point equivalent of the mesh (:data:`MEDIAPIPE_TO_68`),
for PFLD its own 68 points; ``nme`` is over all the extractor's points. Targets:

- white box: the PyTorch port (attention model) that was attacked;
- transfer: the real MediaPipe runtime (the pipeline's backend, ``mp.solutions.face_mesh``
  in static-image mode, which runs its own face detector and ROI on the crop) and PFLD
  (68 points, ONNX, whole crop) when a model path is given;
- compression: the adversarial crop after JPEG 75 / 50 (OpenCV) and after the video
  variants of :func:`blinkbench.video.compress.compress_video` (a short static clip of
  the crop is written losslessly, compressed, decoded, and its middle frame taken), each
  against the clean prediction, with the compressed *clean* crop as a baseline row;
- perceptual cost: SSIM (scikit-image) inside the face box (the bounding box of the clean
  port landmarks), PSNR over the crop, L-inf;
- ablation (``ablation``): the white-box ``nme68`` and cost of one attack over a grid of
  step sizes alpha (0-255 levels; the paper's 1) and iteration counts T (the paper's 20),
  by default alpha in {0.5, 1, 1.5} x T in {14, 20, 28} for ``mifgsm``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from blinkbench.attacks.linf import sign_step
from blinkbench.attacks.perceptual import face_box, linf, psnr, ssim_in_box
from blinkbench.core.registry import Registry
from blinkbench.mesh_torch import surrogate
from blinkbench.mesh_torch.facemesh import LEFT_EYE_INDICES, MESH_SIZE, RIGHT_EYE_INDICES
from blinkbench.spine.ear import EYE_INDICES, OUTER_CORNERS

log = logging.getLogger(__name__)

# MediaPipe's FACEMESH_FACE_OVAL as a closed loop starting at the forehead.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
EYE_CONTOURS = tuple(LEFT_EYE_INDICES[:16]) + tuple(RIGHT_EYE_INDICES[:16])
SUBSETS: dict[str, tuple[int, ...] | None] = {
    "eyes_outline": EYE_CONTOURS + FACE_OVAL[::3],
    "eyes": EYE_CONTOURS,
    "all": None,
}
EAR_POINTS = tuple(EYE_INDICES["mediapipe"]["left"]) + tuple(EYE_INDICES["mediapipe"]["right"])

# The 68-point (iBUG 300-W / dlib, the PFLD layout) equivalent of the Face Mesh: entry k is
# the mesh index standing for point k (image-left = the subject's right first, as in iBUG).
# Source: the DLIB_TO_MEDIAPIPE table of the CLEESE toolbox v2.0 (CNRS, 2022; the FaceWarp
# engine of github.com/neuro-team-femto/cleese), which has the brows (17-26), eyes (36-47)
# and the mouth corners, top and bottom (48, 51, 54, 57, 60, 62, 64, 66) used here. Its other
# entries were replaced where they disagree with PFLD on real footage: point 1 (its 254 is a
# lower-eyelid point) and 28 (its 187 is on the cheek) and the rest of the jaw line, nose
# and lips by the face-oval, nose-bridge/-base and lip-contour points at the same places
# (jaw 127-234-93-132-58-136-150-176-152 and mirror; nose 168-197-5-4 / 75-97-2-326-305;
# lips 39, 267/269, 405, 181 outer and 82, 312, 317, 87 inner). Checked against PFLD
# (``../shared/models/pfld_68.onnx``) on 12 frames of news_presenter.mp4 and
# talking_crop_a.mp4: mean point distance 0.051 of the outer-eye-corner distance (CLEESE's
# table: 0.078, with 1.20 at point 1 and 0.76 at point 28); eye corners 36/39/42/45 within
# 0.027-0.043; the largest gaps are on the jaw (<= 0.17), whose contour the two models
# define differently. tests/test_seed_attacks.py checks the geometry on a real mesh.
MEDIAPIPE_TO_68: tuple[int, ...] = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,   # 0-16 jaw
    70, 63, 105, 66, 107,                                                                # 17-21 right brow
    336, 296, 334, 293, 300,                                                             # 22-26 left brow
    168, 197, 5, 4,                                                                      # 27-30 nose bridge
    75, 97, 2, 326, 305,                                                                 # 31-35 nose base
    33, 160, 158, 133, 153, 144,                                                         # 36-41 right eye
    362, 385, 387, 263, 373, 380,                                                        # 42-47 left eye
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,                                 # 48-59 outer lips
    78, 82, 13, 312, 308, 317, 14, 87,                                                   # 60-67 inner lips
)


# ---------------------------------------------------------------------- surrogates



# ---------------------------------------------------------------------- heat-maps

def _profiles(coord: torch.Tensor, sigma: float, size: int) -> torch.Tensor:
    """1-D Gaussian profiles (..., size) centred at ``coord`` (pixels of the 192 input) on the
    centres of ``size`` cells spanning [0, 192)."""
    cell = MESH_SIZE / size
    grid = (torch.arange(size, dtype=coord.dtype, device=coord.device) + 0.5) * cell
    return torch.exp(-((grid - coord[..., None]) ** 2) / (2.0 * sigma**2))


def render_heatmaps(points: torch.Tensor, sigma: float, size: int) -> torch.Tensor:
    """Gaussian heat-maps (B, K, size, size) of points (B, K, 2) in 192-input pixels."""
    gx = _profiles(points[..., 0], sigma, size)
    gy = _profiles(points[..., 1], sigma, size)
    return gy[..., :, None] * gx[..., None, :]


def heatmap_cosine(pred: torch.Tensor, ref: torch.Tensor, sigma: float, size: int) -> torch.Tensor:
    """Cosine similarity of the rendered heat-maps of ``pred`` and ``ref`` (B, K, 2), averaged
    over the K landmarks: (B,). Exact via the maps' separability (see the module doc)."""
    out = torch.ones(pred.shape[:-1], dtype=pred.dtype, device=pred.device)
    for axis in (0, 1):
        a = _profiles(pred[..., axis], sigma, size)
        b = _profiles(ref[..., axis], sigma, size)
        out = out * (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)
    return out.mean(-1)


# ---------------------------------------------------------------------- attacks

def _diverse_input(x: torch.Tensor, low: float, gen: torch.Generator) -> tuple[torch.Tensor, float, float, float]:
    """DI transform: shrink to r x r (r uniform in [low * 192, 192)), zero-pad back to 192 at
    a random offset. Returns the image and (scale, dx, dy) that map its pixels back."""
    size = x.shape[-1]
    r = int(torch.randint(max(8, int(round(low * size))), size, (1,), generator=gen))
    top = int(torch.randint(0, size - r + 1, (1,), generator=gen))
    left = int(torch.randint(0, size - r + 1, (1,), generator=gen))
    small = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
    return F.pad(small, (left, size - r - left, top, size - r - top)), size / r, float(left), float(top)


@dataclass(frozen=True, kw_only=True)
class HeatmapAttack:
    """Iterative fast-gradient attack on the rendered heat-map cosine loss.

    ``eps``, ``step_size`` and ``random_start`` are on the 0-255 scale. Per iteration, as in
    the papers' pseudocode: (optionally diversified) input -> landmarks of each surrogate ->
    loss -> gradient -> L1-normalised momentum accumulation (``decay`` 0: plain I-FGSM) ->
    signed step down the loss -> projection on the eps-ball and [0, 1]."""

    name: ClassVar[str] = "heatmap"

    eps: float = 15.0
    steps: int = 20
    step_size: float = 1.0
    decay: float = 0.0
    diversity_prob: float = 0.0
    resize_low: float = 0.9
    random_start: int = 1
    sigma: float = 4.0
    heatmap_size: int = 64
    landmarks: str = "eyes_outline"
    surrogates: tuple[str, ...] = ("attention",)
    alternate: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.eps < 0 or self.steps < 1 or self.step_size <= 0:
            raise ValueError(f"{self.name}: need eps >= 0, steps >= 1, step_size > 0")
        if not 0 <= self.diversity_prob <= 1 or not 0 < self.resize_low < 1:
            raise ValueError(f"{self.name}: diversity_prob in [0, 1] and resize_low in (0, 1)")
        if self.landmarks not in SUBSETS:
            raise ValueError(f"{self.name}: landmarks must be one of {sorted(SUBSETS)}")
        if not self.surrogates:
            raise ValueError(f"{self.name}: at least one surrogate")
        object.__setattr__(self, "surrogates", tuple(self.surrogates))

    def alpha(self) -> float:
        """Step size on the [0, 1] scale."""
        return self.step_size / 255.0

    def direction(self, step: int, grad: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(direction whose sign is stepped down the loss at iteration ``step``, updated
        momentum). With ``decay`` > 0 the momentum is the L1-normalised accumulation of MI-FGSM
        (Landmark Breaker's step); with ``alternate`` (LBmix) even iterations step along the
        plain gradient (Base2, I-FGSM) and odd ones along the momentum."""
        if self.decay <= 0:
            return grad, grad
        g = self.decay * g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-20)
        return (grad if self.alternate and step % 2 == 0 else g), g

    def _points(self, model, x: torch.Tensor) -> torch.Tensor:
        pts = model.landmarks(x).landmarks[..., :2]
        idx = SUBSETS[self.landmarks]
        return pts[:, :468] if idx is None else pts[:, list(idx)]

    def loss(self, x: torch.Tensor, refs: Sequence[torch.Tensor], gen: torch.Generator | None = None) -> torch.Tensor:
        """Per-image heat-map cosine (B,), averaged over the surrogates; ``refs`` are the clean
        subset landmarks per surrogate. With ``gen`` the DI transform may apply."""
        inp, scale, dx, dy = x, 1.0, 0.0, 0.0
        if gen is not None and self.diversity_prob > 0 and float(torch.rand(1, generator=gen)) < self.diversity_prob:
            inp, scale, dx, dy = _diverse_input(x, self.resize_low, gen)
        total = 0.0
        for name, ref in zip(self.surrogates, refs):
            pts = self._points(surrogate(name), inp)
            if scale != 1.0 or dx or dy:
                pts = (pts - pts.new_tensor([dx, dy])) * scale
            total = total + heatmap_cosine(pts, ref, self.sigma, self.heatmap_size)
        return total / len(self.surrogates)

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Adversarial uint8 images (B, 192, 192, 3) from uint8 (B, 192, 192, 3) crops (or a
        (B, 3, 192, 192) float tensor in [0, 1] on the 1/255 grid)."""
        x0 = _as_input(images)
        gen = torch.Generator().manual_seed(int(self.seed))
        with torch.no_grad():
            refs = [self._points(surrogate(n), x0) for n in self.surrogates]
        eps = self.eps / 255.0
        r = min(int(self.random_start), int(math.floor(self.eps)))
        start = torch.randint(-r, r + 1, x0.shape, generator=gen, dtype=torch.int64).to(x0.dtype) / 255.0 if r > 0 else 0.0
        x = (x0 + start).clamp(0, 1)
        g = torch.zeros_like(x0)
        for step in range(self.steps):
            x = x.detach().requires_grad_(True)
            self.loss(x, refs, gen).sum().backward()
            direction, g = self.direction(step, x.grad.detach(), g)
            with torch.no_grad():
                x = sign_step(x, direction, self.alpha(), x0 - eps, x0 + eps).clamp(0, 1)
        return _to_uint8(x.detach())


def _as_input(images) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        x = images.detach().float()
    else:
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"expected uint8 RGB crops (B, H, W, 3), got {arr.dtype} {arr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
    if x.dim() != 4 or x.shape[1:] != (3, MESH_SIZE, MESH_SIZE):
        raise ValueError(f"expected 192x192 crops, got {tuple(x.shape)} (resize with prepare_crop)")
    return x


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


ATTACKS: Registry = Registry("landmark attack")   # name -> class; "landmark_breaker" is MI-FGSM


@ATTACKS.register("fgsm")
@dataclass(frozen=True, kw_only=True)
class FGSM(HeatmapAttack):
    """One step of size epsilon (``step_size`` is ignored)."""

    name: ClassVar[str] = "fgsm"
    steps: int = 1

    def alpha(self) -> float:
        return self.eps / 255.0


@ATTACKS.register("ifgsm")
@dataclass(frozen=True, kw_only=True)
class IFGSM(HeatmapAttack):
    name: ClassVar[str] = "ifgsm"


@ATTACKS.register("mifgsm")
@dataclass(frozen=True, kw_only=True)
class MIFGSM(HeatmapAttack):
    """Landmark Breaker as published: momentum decay 0.5."""

    name: ClassVar[str] = "mifgsm"
    decay: float = 0.5


@ATTACKS.register("difgsm")
@dataclass(frozen=True, kw_only=True)
class DIFGSM(HeatmapAttack):
    name: ClassVar[str] = "difgsm"
    diversity_prob: float = 0.5


@ATTACKS.register("mdifgsm")
@dataclass(frozen=True, kw_only=True)
class MDIFGSM(HeatmapAttack):
    """The mixture: input diversity with momentum."""

    name: ClassVar[str] = "mdifgsm"
    decay: float = 0.5
    diversity_prob: float = 0.5


@ATTACKS.register("mdifgsm_ens")
@dataclass(frozen=True, kw_only=True)
class MDIFGSMEnsemble(MDIFGSM):
    """The mixture on both Face Mesh models (468-point and attention)."""

    name: ClassVar[str] = "mdifgsm_ens"
    surrogates: tuple[str, ...] = ("attention", "mesh")


@ATTACKS.register("lbmix")
@dataclass(frozen=True, kw_only=True)
class LBMix(MIFGSM):
    """LBmix: Base2 (I-FGSM) and Landmark Breaker (momentum) steps in turn."""

    name: ClassVar[str] = "lbmix"
    alternate: bool = True


ATTACKS.alias("landmark_breaker", "mifgsm")   # the paper's name for its attack


def make_attack(name: str, **params: Any) -> HeatmapAttack:
    """The registered attack ``name`` with keyword overrides (unknown keys raise TypeError,
    an unknown name KeyError listing the known ones)."""
    return ATTACKS.create(name, **params)


# ---------------------------------------------------------------------- metrics

def nme(pred: np.ndarray, ref: np.ndarray, scheme: str = "mediapipe", points: Sequence[int] | None = None) -> float:
    """Mean point distance between ``pred`` and ``ref`` (N, 2|3), divided by the distance of
    ``ref``'s outer eye corners (``blinkbench.spine.ear.OUTER_CORNERS``: 33-263 or 36-45)."""
    a, b = OUTER_CORNERS[scheme]
    p, r = np.asarray(pred, np.float64)[:, :2], np.asarray(ref, np.float64)[:, :2]
    if points is not None:
        idx = list(points)
        p, r2 = p[idx], r[idx]
    else:
        r2 = r
    iod = float(np.linalg.norm(r[a] - r[b]))
    return float(np.linalg.norm(p - r2, axis=1).mean() / iod) if iod > 0 else float("nan")


def nme68(pred: np.ndarray, ref: np.ndarray, scheme: str = "mediapipe") -> float:
    """NME over the 68 iBUG points normalised by ``ref``'s outer eye corners (36-45), as seed
    001's tables report it: Face Mesh landmarks (468/478 points) are reduced to their
    68-point equivalent (:data:`MEDIAPIPE_TO_68`) first; 68-point landmarks are used as they
    are."""
    p, r = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if scheme == "mediapipe":
        idx = list(MEDIAPIPE_TO_68)
        p, r = p[idx], r[idx]
    elif scheme != "ibug68":
        raise ValueError(f"nme68: unknown landmark scheme {scheme!r}")
    return nme(p, r, "ibug68")


# ---------------------------------------------------------------------- extractors (targets)

class _PortTarget:
    """The attacked port (attention model), as an extractor on uint8 crops."""

    name, scheme = "port", "mediapipe"

    def __call__(self, crops: np.ndarray) -> list[np.ndarray | None]:
        """Landmarks of every crop (the regression always answers; white-box NME is defined
        even where the presence logit drops)."""
        return list(self.predict(crops)[0])

    @staticmethod
    def predict(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(landmarks (B, 478, 3) in crop pixels, presence logits (B,))."""
        outs, logits = [], []
        for s in range(0, len(crops), 16):
            with torch.no_grad():
                res = surrogate("attention").landmarks(_as_input(crops[s:s + 16]))
            outs.append(res.landmarks.numpy())
            logits.append(res.presence_logit.numpy())
        return np.concatenate(outs), np.concatenate(logits)

    def close(self) -> None:
        pass


class _BackendTarget:
    """A pipeline landmark backend (:mod:`blinkbench.spine.landmarks`) one crop at a time."""

    def __init__(self, name: str, backend):
        self.name, self.backend, self.scheme = name, backend, backend.scheme

    def __call__(self, crops: np.ndarray) -> list[np.ndarray | None]:
        return [self.backend.process(np.ascontiguousarray(c)) for c in crops]

    def close(self) -> None:
        self.backend.close()


def _targets(cfg: "LandmarkBreakerEval") -> tuple[list, list[str]]:
    targets, notes = [_PortTarget()], []
    if cfg.mediapipe:
        try:
            from blinkbench.spine.landmarks.mediapipe_mesh import MediaPipeMesh

            targets.append(_BackendTarget("mediapipe", MediaPipeMesh(0.5, 0.5, static=True)))
        except Exception as exc:  # mediapipe missing or broken: the white-box tables still come
            notes.append(f"mediapipe target unavailable: {type(exc).__name__}: {exc}")
    if cfg.pfld_model:
        try:
            from blinkbench.spine.landmarks.pfld import PFLD

            targets.append(_BackendTarget("pfld", PFLD(cfg.pfld_model)))
        except Exception as exc:
            notes.append(f"pfld target unavailable: {type(exc).__name__}: {exc}")
    return targets, notes


# ---------------------------------------------------------------------- compression of crops

def compress_crop(crop: np.ndarray, condition: str, work: Path | None = None, clip_frames: int = 8,
                  fps: float = 25.0) -> np.ndarray:
    """One uint8 RGB crop after ``condition``: ``none``; ``jpeg<Q>`` (OpenCV JPEG at quality
    Q, :func:`blinkbench.video.compress.jpeg`); or a video variant of
    :func:`blinkbench.video.compress.compress_video` (``h264_crf23``, ``mpeg4_h264``),
    emulated on a ``clip_frames``-frame static clip of the crop (written losslessly,
    compressed, decoded; the middle frame is returned, an inter-coded frame as most frames
    of a video are). ``work`` holds the clips (a temporary folder if None)."""
    from blinkbench.video.compress import compress_video, jpeg

    if condition == "none":
        return crop
    if condition.startswith("jpeg") and condition[4:].isdigit():
        return jpeg(crop, int(condition[4:]))
    from blinkbench.video.lossless import read_frames, write_lossless

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        src, dst = Path(tmp) / "clip.mkv", Path(tmp) / f"clip_{condition}.mkv"
        write_lossless(src, [crop] * clip_frames, fps, verify=False)  # the crop itself is the reference
        rec = compress_video(src, dst, condition)
        if rec.get("status") != "ok":
            raise RuntimeError(f"compress_video {condition}: {rec.get('status')}: {rec.get('error')}")
        frames = read_frames(dst)
    if not frames:
        raise RuntimeError(f"{condition}: no frame decoded")
    return frames[len(frames) // 2]


# ---------------------------------------------------------------------- evaluation

# The ablation grid: Landmark Breaker's step size alpha (0-255 levels) and iterations T
# around the paper's alpha = 1, T = 20.
ABLATION_DEFAULTS: dict[str, Any] = {"attack": "mifgsm", "alpha": (0.5, 1.0, 1.5), "steps": (14, 20, 28)}


@dataclass(frozen=True, kw_only=True)
class LandmarkBreakerEval:
    """What :func:`run_landmark_breaker_eval` runs. ``attacks``: names, or a mapping name ->
    keyword overrides; ``eps`` (if set) overrides every attack's budget; ``conditions``:
    ``none`` first, ``jpeg<Q>``, and ``compress_video`` variants."""

    attacks: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("fgsm", "ifgsm", "mifgsm", "difgsm", "mdifgsm", "mdifgsm_ens")
    eps: float | None = None
    conditions: Sequence[str] = ("none", "jpeg75", "jpeg50", "mpeg4_h264", "h264_crf23")
    mediapipe: bool = True
    pfld_model: str | None = None
    batch: int = 8
    clip_frames: int = 8
    ablation: Mapping[str, Any] | None = None
    seed: int = 0

    def __post_init__(self):
        if self.ablation is not None:
            a = {**ABLATION_DEFAULTS, **dict(self.ablation)}
            if set(a) - set(ABLATION_DEFAULTS):
                raise TypeError(f"ablation: unknown keys {sorted(set(a) - set(ABLATION_DEFAULTS))}; "
                                f"known: {sorted(ABLATION_DEFAULTS)}")
            if a["attack"] not in ATTACKS or not a["alpha"] or not a["steps"]:
                raise ValueError(f"ablation: need a known attack and non-empty alpha and steps, got {a}")
            object.__setattr__(self, "ablation", a)

    @classmethod
    def from_params(cls, params: "LandmarkBreakerEval | Mapping[str, Any] | None") -> "LandmarkBreakerEval":
        if isinstance(params, cls):
            return params
        return cls(**dict(params or {}))

    def attack_objects(self) -> dict[str, HeatmapAttack]:
        spec = self.attacks if isinstance(self.attacks, Mapping) else {a: {} for a in self.attacks}
        out = {}
        for name, kw in spec.items():
            kw = {"seed": self.seed, **dict(kw or {})}
            if self.eps is not None:
                kw["eps"] = self.eps
            out[name] = make_attack(name, **kw)
        return out


def prepare_crop(crop) -> np.ndarray:
    """A face crop as the attacks take it: uint8 RGB 192 x 192 (other sizes resized, INTER_AREA)."""
    import cv2

    arr = np.asarray(crop)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or min(arr.shape[:2]) < 8:
        raise ValueError(f"expected an RGB uint8 crop (H, W, 3), got {arr.dtype} {arr.shape}")
    if arr.shape[:2] != (MESH_SIZE, MESH_SIZE):
        arr = cv2.resize(arr, (MESH_SIZE, MESH_SIZE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def run_landmark_breaker_eval(crops: Sequence[np.ndarray] | Mapping[str, np.ndarray],
                              params: LandmarkBreakerEval | Mapping[str, Any] | None = None,
                              work_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """The paper-form evaluation on face crops; returns DataFrames:

    - ``per_image``: one row per (image, attack, condition, target): ``nme`` (all points),
      ``nme_eyes`` (the 12 EAR points; Face Mesh targets only), ``ear_change`` (|mean EAR
      adv - clean|), ``detected`` (the extractor found a face), ``ssim_face``, ``psnr``,
      ``linf`` of the (compressed) input against the clean crop, ``status``. Attack
      ``clean`` is the unattacked crop under each compression (the compression's own
      effect; it has no ``none`` rows, which would be zero by definition).
    - ``white_box``: per attack, the port's mean NME and the perceptual cost (``none``).
    - ``transfer``: per attack x target, mean NME and detection rate (``none``).
    - ``compression``: per attack x condition x target, mean NME and detection rate.
    - ``images``: per input image, its status (``ok``, ``bad_input``, ``no_face``).
    - ``ablation`` (with ``ablation`` set; else empty): per (alpha, T) of the grid, the
      port's mean ``nme68`` and ``nme`` on the attacked crops (no compression) and the cost.

    Bad crops and crops without a face (the port's presence logit <= 0) are listed in
    ``images`` and skipped; a condition that fails (e.g. the compression module missing)
    gives rows with ``status`` naming the error. Means skip NaN (undetected faces)."""
    cfg = LandmarkBreakerEval.from_params(params)
    items = list(crops.items()) if isinstance(crops, Mapping) else [(str(i), c) for i, c in enumerate(crops)]
    image_rows, good = [], []
    for key, c in items:
        try:
            good.append((key, prepare_crop(c)))
            image_rows.append({"image": key, "status": "ok", "error": ""})
        except Exception as exc:
            image_rows.append({"image": key, "status": "bad_input", "error": f"{type(exc).__name__}: {exc}"})
    attacks = cfg.attack_objects()
    targets, notes = _targets(cfg)
    rows: list[dict] = []
    try:
        clean = np.stack([c for _, c in good]) if good else np.zeros((0, MESH_SIZE, MESH_SIZE, 3), np.uint8)
        presence = _PortTarget.predict(clean)[1] if len(clean) else np.zeros(0)
        keep = [k for k, logit in enumerate(presence) if logit > 0]
        for k, logit in enumerate(presence):
            if logit <= 0:
                row = next(r for r in image_rows if r["image"] == good[k][0])
                row.update(status="no_face", error=f"the port finds no face in the clean crop (presence logit {logit:.2f})")
        keys = [good[k][0] for k in keep]
        clean = clean[keep]
        ref = {t.name: t(clean) for t in targets} if len(clean) else {}
        boxes = [face_box(p, clean.shape[1:3]) for p in ref.get("port", [])]
        adv = {"clean": clean}
        for name, attack in attacks.items():
            outs = [attack(clean[s:s + cfg.batch]) for s in range(0, len(clean), cfg.batch)]
            adv[name] = np.concatenate(outs) if outs else clean[:0]
        ablation = _ablation(cfg, clean, ref.get("port", []), boxes)
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            for cond in cfg.conditions:
                for name, images in adv.items():
                    if cond == "none" and name == "clean":
                        continue
                    try:
                        seen = np.stack([compress_crop(im, cond, Path(tmp), cfg.clip_frames) for im in images]) \
                            if len(images) else images
                        preds = {t.name: t(seen) for t in targets}
                    except Exception as exc:
                        log.warning("condition %s on %s failed: %s", cond, name, exc)
                        err = f"{type(exc).__name__}: {exc}"
                        rows += [dict(image=k, attack=name, condition=cond, target=t.name, status=f"error: {err}")
                                 for k in keys for t in targets]
                        continue
                    for i, key in enumerate(keys):
                        cost = dict(ssim_face=ssim_in_box(seen[i], clean[i], boxes[i]), psnr=psnr(seen[i], clean[i]),
                                    linf=linf(seen[i], clean[i]))
                        for t in targets:
                            rows.append(dict(image=key, attack=name, condition=cond, target=t.name, status="ok",
                                             **_compare(preds[t.name][i], ref[t.name][i], t.scheme), **cost))
    finally:
        for t in targets:
            t.close()
    per_image = pd.DataFrame(rows, columns=["image", "attack", "condition", "target", "status", "nme68", "nme", "nme_eyes",
                                            "ear_change", "detected", "ssim_face", "psnr", "linf"])
    per_image[["ssim_face", "psnr"]] = per_image[["ssim_face", "psnr"]].astype(float)  # None (no value) -> NaN
    tables = summarise_eval(per_image)
    tables["ablation"] = ablation
    tables["images"] = pd.DataFrame(image_rows, columns=["image", "status", "error"])
    tables["per_image"] = per_image
    if notes:
        tables["images"].attrs["notes"] = notes
        for t in tables.values():
            t.attrs["notes"] = notes
    return tables


ABLATION_COLUMNS = ["attack", "alpha", "steps", "nme68", "nme", "ssim_face", "psnr", "linf", "n"]


def _ablation(cfg: LandmarkBreakerEval, clean: np.ndarray, ref: Sequence[np.ndarray], boxes: list) -> pd.DataFrame:
    """The white-box grid over step size alpha x iterations T (see :data:`ABLATION_DEFAULTS`)."""
    if not cfg.ablation or not len(clean):
        return pd.DataFrame(columns=ABLATION_COLUMNS)
    a = cfg.ablation
    rows = []
    for alpha in a["alpha"]:
        for steps in a["steps"]:
            kw = {"seed": cfg.seed, "step_size": float(alpha), "steps": int(steps)}
            if cfg.eps is not None:
                kw["eps"] = cfg.eps
            atk = make_attack(a["attack"], **kw)
            adv = np.concatenate([atk(clean[s:s + cfg.batch]) for s in range(0, len(clean), cfg.batch)])
            pred = _PortTarget()(adv)
            rows.append({"attack": a["attack"], "alpha": float(alpha), "steps": int(steps),
                         "nme68": float(np.mean([nme68(p, r) for p, r in zip(pred, ref)])),
                         "nme": float(np.mean([nme(p, r) for p, r in zip(pred, ref)])),
                         "ssim_face": _nanmean([ssim_in_box(v, c, b) for v, c, b in zip(adv, clean, boxes)]),
                         "psnr": _nanmean([psnr(v, c) for v, c in zip(adv, clean)]),
                         "linf": float(max(linf(v, c) for v, c in zip(adv, clean))), "n": len(clean)})
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def _nanmean(values) -> float:
    v = np.array([np.nan if x is None else x for x in values], float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _compare(pred: np.ndarray | None, ref: np.ndarray | None, scheme: str) -> dict:
    nan = float("nan")
    if ref is None:
        return dict(nme=nan, nme68=nan, nme_eyes=nan, ear_change=nan, detected=pred is not None)
    if pred is None:
        return dict(nme=nan, nme68=nan, nme_eyes=nan, ear_change=nan, detected=False)
    from blinkbench.spine.ear import ear_from_landmarks

    eyes = EAR_POINTS if scheme == "mediapipe" else None
    e_p = np.nanmean(np.stack(ear_from_landmarks(pred[None], scheme)))
    e_r = np.nanmean(np.stack(ear_from_landmarks(ref[None], scheme)))
    return dict(nme=nme(pred, ref, scheme), nme68=nme68(pred, ref, scheme),
                nme_eyes=nme(pred, ref, scheme, eyes) if eyes else nan,
                ear_change=float(abs(e_p - e_r)), detected=True)


def summarise_eval(per_image: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The paper-form tables from the long per-image table."""
    ok = per_image[per_image["status"] == "ok"].copy()
    ok["detected"] = ok["detected"].astype(float)
    none = ok[ok["condition"] == "none"]
    white = (none[none["target"] == "port"].groupby("attack", sort=False)
             .agg(nme68=("nme68", "mean"), nme=("nme", "mean"), nme_eyes=("nme_eyes", "mean"),
                  ear_change=("ear_change", "mean"),
                  ssim_face=("ssim_face", "mean"), psnr=("psnr", "mean"), linf=("linf", "max"), n=("image", "count"))
             .reset_index())
    transfer = (none.groupby(["attack", "target"], sort=False)
                .agg(nme68=("nme68", "mean"), nme=("nme", "mean"), nme_eyes=("nme_eyes", "mean"),
                     detect_rate=("detected", "mean"), n=("image", "count")).reset_index())
    compression = (ok.groupby(["attack", "condition", "target"], sort=False)
                   .agg(nme68=("nme68", "mean"), nme=("nme", "mean"), nme_eyes=("nme_eyes", "mean"),
                        detect_rate=("detected", "mean"), ssim_face=("ssim_face", "mean"),
                        n=("image", "count")).reset_index())
    return {"white_box": white, "transfer": transfer, "compression": compression}
