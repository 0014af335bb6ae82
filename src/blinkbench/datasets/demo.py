"""The embedded demo dataset: short synthetic videos generated from a public-domain photo.

Nothing is downloaded. The source is ``skimage.data.astronaut()`` (NASA portrait of Eileen
Collins, public domain, shipped inside the scikit-image wheel). MediaPipe Face Mesh finds
her eye landmarks once per :func:`generate` call; every frame is then rendered by warping
the photograph:

- **Blinks.** For a lid closure ``c`` in [0, 1] the upper lid is moved down toward the lower
  lid by a per-column vertical remap of the eyelid skin: the band between a line above the
  upper lid and the new lid edge samples the skin between that line and the original lid
  (stretched), the lid margin with its lashes is carried down intact, and the eyeball below
  the new edge is left where it is (the lid slides over it). A faint extra shadow marks the
  lash line. Face Mesh sees these eyes as closed: mean EAR ~0.32 open, < ~0.12 closed.
- **Head motion.** Each video has its own small static pose offset plus smooth drift of
  in-plane rotation, translation and scale (sums of slow sinusoids).
- **Lighting.** Slow brightness, contrast and colour-balance drift, a soft moving gradient
  (light direction) and small sensor noise.
- **Real videos** blink like people at rest: intervals between blink onsets are
  ``1 s + Gamma`` with mean 3.5 s (~17 blinks/min), each blink lasts 100-400 ms with a fast
  closing (~1/3) and slower reopening, and no blink starts in the first or ends in the last
  0.3 s. Every real video has at least one blink.
- **Fake videos** have an altered inner face blended into the frame with a feathered mask
  (slightly warped, recoloured and smoothed: colour and sharpness seams like a face swap)
  and absent or abnormal blinking, cycling over :data:`FAKE_BEHAVIOURS`:
  ``none`` (no blink at all), ``long`` (closures of 600-1000 ms), ``one_eye`` (human-like
  blinks of one eye only) and ``rare`` (one blink per 20 s, at least one).

Ground truth goes to ``blinks.csv`` (one row per event) and ``demo.json`` (parameters and
per-video plan); ``splits.csv`` fixes a label-stratified train/test split (:func:`splits`). Frames are 0-based in decode order; ``start_frame``/``end_frame`` are the
first and last frame whose lid closure is at least :data:`LOWERED` (inclusive); ``start_s``
and ``end_s`` are the planned onset and end of the lid movement in seconds (so
``end_s - start_s`` is the blink duration, and ``start_s <= start_frame / fps``,
``end_frame / fps <= end_s``). ``kind`` is ``blink`` (<= 500 ms), ``closure`` (longer) or
``blink_one_eye`` (the eye is named in ``demo.json``).

Everything is deterministic given ``(demo_cfg, seed)``: blinks.csv and demo.json do not depend
on the landmark detector at all, and the videos are encoded single-threaded so that reruns on
the same machine are byte-identical.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from blinkbench.core.io import atomic_path, write_json
from blinkbench.core.labels import LABELS
from blinkbench.core.params_types import DemoSection

GENERATOR_VERSION = 1
SOURCE_IMAGE = "skimage.data.astronaut"

FAKE_BEHAVIOURS = ("none", "long", "one_eye", "rare")

EDGE_MARGIN_S = 0.3  # no event starts before this or ends after duration - this
BLINK_MIN_S, BLINK_MAX_S = 0.10, 0.40  # human blink durations
MAX_BLINK_S = 0.5  # events longer than this are labelled "closure"
LONG_MIN_S, LONG_MAX_S = 0.6, 1.0  # abnormal closures of the "long" fakes
IBI_MIN_S, IBI_MEAN_S, IBI_SHAPE = 1.0, 3.5, 2.0  # inter-blink interval: min + Gamma
RARE_PERIOD_S = 20.0  # "rare" fakes: one blink per this many seconds (at least one)
MIN_GAP_S = 1.0  # between events placed at random (rare, long, fallback)
LOWERED = 0.15  # closure from which a frame counts as "lid noticeably lowered"
MIN_DURATION_S = 2.0  # shortest demo video that fits a long closure inside the margins

# Byte-identical reruns (stable DVC hashes): single thread, and x264's adaptive quantisation
# and macroblock tree off; with them on, identical frames gave different bitstreams here.
# "veryfast" encodes ~2.7x faster than "medium" at the same crf (files ~15% larger).
ENCODE_OPTIONS = {"crf": "18", "preset": "veryfast", "threads": "1", "aq-mode": "0", "mbtree": "0"}

# Face Mesh contour indices, corner to corner. "right"/"left" are the subject's own eyes.
_EYE_CONTOURS = {
    "right": ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    "left": ((263, 466, 388, 387, 386, 385, 384, 398, 362), (263, 249, 390, 373, 374, 380, 381, 382, 362)),
}
_FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176,
              234, 251, 284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)

# Eyelid warp geometry, in units of the eye's corner-to-corner width.
_LID_BAND = 0.35  # skin band above the upper lid that is stretched over the eye
_LID_MARGIN = 0.08  # lid margin (lashes) carried down unstretched
_LID_OVERLAP = 0.03  # a closed lid reaches this far past the lower-lid landmarks
_LASH_SIGMA = 0.045  # extra lash shadow: vertical Gaussian width ...
_LASH_DARKEN = 0.15  # ... and strength at full closure


# --------------------------------------------------------------------------- naming


def _width(n: int) -> int:
    return max(2, len(str(max(n - 1, 0))))


def _entries(demo_cfg: dict) -> list[tuple[str, int, str]]:
    """(label, index, stem) for every video, reals first."""
    out = []
    for label in LABELS:
        n = int(demo_cfg[f"n_{label}"])
        out += [(label, i, f"demo_{label}_{i:0{_width(n)}d}") for i in range(n)]
    return out


def video_ids(demo_cfg: dict) -> list[str]:
    """Ids as the folder adapter gives them: ``{label}_{stem}``, e.g. ``real_demo_real_00``."""
    return [f"{label}_{stem}" for label, _, stem in _entries(demo_cfg)]


def video_paths(root, demo_cfg: dict) -> dict[str, str]:
    """video_id -> path of every demo video, known without generating (Snakemake inputs)."""
    root = Path(root)
    return {f"{label}_{stem}": str(root / label / f"{stem}.mp4") for label, _, stem in _entries(demo_cfg)}


def expected_files(root, demo_cfg: dict) -> list[Path]:
    """Every file :func:`generate` writes, known without generating (Snakemake outputs)."""
    root = Path(root)
    videos = [root / label / f"{stem}.mp4" for label, _, stem in _entries(demo_cfg)]
    return videos + [root / "blinks.csv", root / "demo.json", root / "splits.csv"]


def splits(demo_cfg: dict) -> dict[str, str]:
    """video_id -> split, stratified by label: every third video of each label (index 1, 4,
    7, ...) is test, the rest train, so both splits hold real and fake videos whatever the
    counts (the folder adapter's random split could leave a tiny demo one-sided)."""
    return {f"{label}_{stem}": "test" if i % 3 == 1 else "train" for label, i, stem in _entries(demo_cfg)}


# --------------------------------------------------------------------------- planning


@dataclass
class Event:
    start_s: float
    duration_s: float
    close_s: float  # closing phase
    hold_s: float  # fully closed
    depth: float  # peak closure
    eyes: tuple[str, ...] = ("right", "left")
    kind: str = "blink"
    start_frame: int = -1
    end_frame: int = -1

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def closure(self, t: np.ndarray) -> np.ndarray:
        """Lid closure at times t: cosine-eased closing, hold, slower cosine reopening."""
        tau = np.asarray(t, dtype=np.float64) - self.start_s
        reopen_s = self.duration_s - self.close_s - self.hold_s
        c = np.zeros_like(tau)
        closing = (tau > 0) & (tau < self.close_s)
        c[closing] = 0.5 - 0.5 * np.cos(np.pi * tau[closing] / self.close_s)
        c[(tau >= self.close_s) & (tau <= self.close_s + self.hold_s)] = 1.0
        opening = (tau > self.close_s + self.hold_s) & (tau < self.duration_s)
        c[opening] = 0.5 + 0.5 * np.cos(np.pi * (tau[opening] - self.close_s - self.hold_s) / reopen_s)
        return self.depth * c


@dataclass
class VideoPlan:
    video_id: str
    label: str
    index: int
    rel_path: str
    fps: float
    n_frames: int
    behaviour: str
    events: list[Event]
    eye: str | None  # the blinking eye of a one_eye fake
    motion: dict
    lighting: dict
    alteration: dict | None
    render_seed: list[int] = field(default_factory=list)

    def closures(self) -> dict[str, np.ndarray]:
        """Per-eye closure for every frame."""
        t = np.arange(self.n_frames) / self.fps
        out = {eye: np.zeros(self.n_frames) for eye in _EYE_CONTOURS}
        for ev in self.events:
            c = ev.closure(t)
            for eye in ev.eyes:
                out[eye] = np.maximum(out[eye], c)
        return out


def _blink(rng: np.random.Generator, start_s: float, eyes=("right", "left")) -> Event:
    d = float(np.clip(rng.lognormal(math.log(0.22), 0.3), BLINK_MIN_S + 0.01, BLINK_MAX_S - 0.01))
    close = d * float(rng.uniform(0.27, 0.36))
    hold = d * float(rng.uniform(0.0, 0.08))
    kind = "blink" if len(eyes) == 2 else "blink_one_eye"
    return Event(start_s, d, close, hold, float(rng.uniform(0.95, 1.0)), tuple(eyes), kind)


def _closure_event(rng: np.random.Generator, start_s: float) -> Event:
    d = float(rng.uniform(LONG_MIN_S, LONG_MAX_S))
    close = float(rng.uniform(0.09, 0.13))
    reopen = float(rng.uniform(0.18, 0.28))
    return Event(start_s, d, close, d - close - reopen, float(rng.uniform(0.97, 1.0)), kind="closure")


def _human_schedule(rng: np.random.Generator, duration: float, eyes=("right", "left")) -> list[Event]:
    """Blink onsets as a renewal process (min + Gamma intervals) entered at a random phase."""
    scale = (IBI_MEAN_S - IBI_MIN_S) / IBI_SHAPE
    interval = lambda: IBI_MIN_S + float(rng.gamma(IBI_SHAPE, scale))  # noqa: E731
    t = EDGE_MARGIN_S + float(rng.uniform(0, 1)) * interval()
    events = []
    while True:
        ev = _blink(rng, t, eyes)
        if ev.end_s > duration - EDGE_MARGIN_S:
            break
        events.append(ev)
        t += interval()
    if not events:  # a short clip can fall between blinks: people still blink in it
        events = _place(rng, duration, [_blink(rng, 0.0, eyes)])
    return events


def _place(rng: np.random.Generator, duration: float, events: list[Event]) -> list[Event]:
    """Put events at random, in order, inside the margins with MIN_GAP_S between them."""
    span = duration - 2 * EDGE_MARGIN_S
    while events and sum(e.duration_s for e in events) + MIN_GAP_S * (len(events) - 1) > span:
        events = events[:-1]
    slack = span - sum(e.duration_s for e in events) - MIN_GAP_S * (len(events) - 1)
    offsets = np.sort(rng.uniform(0, slack, size=len(events)))
    t = EDGE_MARGIN_S
    for ev, off in zip(events, offsets):
        ev.start_s = round(t + float(off), 6)
        t += ev.duration_s + MIN_GAP_S
    return events


def _smooth_drift(rng: np.random.Generator, amplitude: float, n: int = 3) -> list[list[float]]:
    """Sinusoid terms [amplitude, frequency Hz, phase] summing to at most ``amplitude``."""
    w = rng.dirichlet(np.ones(n))
    return [[_r(amplitude * wi), _r(rng.uniform(0.04, 0.35)), _r(rng.uniform(0, 2 * np.pi))] for wi in w]


def _r(x: float, nd: int = 6) -> float:
    return round(float(x), nd)


def _plan_video(label: str, index: int, stem: str, demo_cfg: dict, seed: int) -> VideoPlan:
    duration = float(demo_cfg["duration_s"])
    fps_list = list(demo_cfg["fps"])
    fps = float(fps_list[index % len(fps_list)])  # cycled per label: fps is not a label cue
    n_frames = int(round(duration * fps))
    code = LABELS[label]
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(GENERATOR_VERSION, code, index))
    plan_ss, render_ss = ss.spawn(2)
    rng = np.random.default_rng(plan_ss)

    eye = None
    alteration = None
    if label == "real":
        behaviour = "human"
        events = _human_schedule(rng, duration)
    else:
        behaviour = FAKE_BEHAVIOURS[index % len(FAKE_BEHAVIOURS)]
        if behaviour == "none":
            events = []
        elif behaviour == "long":
            n = max(1, int(round(duration / 5.0)))
            events = _place(rng, duration, [_closure_event(rng, 0.0) for _ in range(n)])
        elif behaviour == "one_eye":
            eye = ("right", "left")[int(rng.integers(2))]
            events = _human_schedule(rng, duration, eyes=(eye,))
        else:  # rare
            n = max(1, int(duration // RARE_PERIOD_S))
            events = _place(rng, duration, [_blink(rng, 0.0) for _ in range(n)])
        alteration = {
            "kind": "blended_inner_face",
            "warp_scale": _r(rng.uniform(1.02, 1.05)),
            "warp_rotation_deg": _r(rng.uniform(-2.0, 2.0)),
            "warp_shift_px": [_r(rng.uniform(-1.5, 1.5)), _r(rng.uniform(-1.5, 1.5))],
            "lab_shift": [_r(rng.uniform(-7, 7)), _r(rng.uniform(-6, 6)), _r(rng.uniform(-6, 6))],
            "smooth_sigma_px": _r(rng.uniform(0.4, 0.8)),  # skin detail gone, features kept
            "mask_shrink": _r(rng.uniform(0.84, 0.9)),
            "feather_frac": _r(rng.uniform(0.04, 0.08)),
        }

    motion = {
        "pose": [_r(rng.uniform(-2.5, 2.5)), _r(rng.uniform(-0.02, 0.02)), _r(rng.uniform(-0.02, 0.02)),
                 _r(rng.uniform(-0.04, 0.04))],  # rotation deg, shift x/y (frame fraction), log scale
        "rotation_deg": _smooth_drift(rng, 3.0),
        "shift_x": _smooth_drift(rng, 0.03),
        "shift_y": _smooth_drift(rng, 0.025),
        "log_scale": _smooth_drift(rng, 0.04),
    }
    lighting = {
        "gain": _smooth_drift(rng, 0.12, 2),
        "contrast": _smooth_drift(rng, 0.10, 2),
        "offset": _smooth_drift(rng, 8.0, 2),
        "gradient": _smooth_drift(rng, 0.14, 2),
        "gradient_base": _r(rng.uniform(0.0, 0.1)),
        "gradient_angle": [_r(rng.uniform(0, 2 * np.pi)), _r(rng.uniform(-0.4, 0.4))],  # rad, rad/s
        "channel_gain": [[_r(rng.uniform(-0.03, 0.03)), _r(rng.uniform(0.02, 0.15)),
                          _r(rng.uniform(0, 2 * np.pi))] for _ in range(3)],
        "noise_sigma": _r(rng.uniform(1.2, 2.4)),
    }

    for ev in events:
        c = ev.closure(np.arange(n_frames) / fps)
        idx = np.flatnonzero(c >= LOWERED)
        if idx.size == 0:  # cannot happen for >= 100 ms events; guard the invariant anyway
            raise AssertionError(f"event at {ev.start_s:.3f}s of {stem} covers no frame")
        ev.start_frame, ev.end_frame = int(idx[0]), int(idx[-1])
        if ev.kind != "blink_one_eye":
            ev.kind = "blink" if ev.duration_s <= MAX_BLINK_S else "closure"

    return VideoPlan(
        video_id=f"{label}_{stem}", label=label, index=index, rel_path=f"{label}/{stem}.mp4",
        fps=fps, n_frames=n_frames, behaviour=behaviour, events=events, eye=eye,
        motion=motion, lighting=lighting, alteration=alteration,
        render_seed=[int(x) for x in render_ss.generate_state(2)],
    )


def plan(demo_cfg: dict, seed: int) -> list[VideoPlan]:
    """The full dataset plan (timings, motion, lighting, alterations), without rendering."""
    duration = float(demo_cfg["duration_s"])
    if duration < MIN_DURATION_S:
        raise ValueError(f"demo.duration_s must be >= {MIN_DURATION_S} s, got {duration}")
    return [_plan_video(label, i, stem, demo_cfg, seed) for label, i, stem in _entries(demo_cfg)]


# --------------------------------------------------------------------------- source face


@dataclass
class _Eye:
    ux: np.ndarray
    uy: np.ndarray
    lx: np.ndarray
    ly: np.ndarray
    width: float

    @property
    def x0(self) -> float:
        return float(self.ux[0])

    @property
    def x1(self) -> float:
        return float(self.ux[-1])

    def bbox(self) -> tuple[float, float, float, float]:
        return (self.x0 - 1, float(self.uy.min()) - _LID_BAND * self.width - 1,
                self.x1 + 1, float(self.ly.max()) + _LID_OVERLAP * self.width + 2)


@dataclass
class _Face:
    image: np.ndarray  # RGB uint8 source
    landmarks: np.ndarray  # (478, 2) pixels
    center: np.ndarray
    height: float

    def eye(self, name: str, affine: np.ndarray | None = None) -> _Eye:
        curves = []
        for idx in _EYE_CONTOURS[name]:
            p = self.landmarks[list(idx)]
            if affine is not None:
                p = p @ affine[:, :2].T + affine[:, 2]
            p = p[np.argsort(p[:, 0], kind="stable")]
            curves.append(p)
        (up, lo) = curves
        # share the corners so the lids meet there (closure displacement -> 0)
        x0, x1 = min(up[0, 0], lo[0, 0]), max(up[-1, 0], lo[-1, 0])
        up[0, 0] = lo[0, 0] = x0
        up[-1, 0] = lo[-1, 0] = x1
        lo[0, 1] = up[0, 1]
        lo[-1, 1] = up[-1, 1]
        return _Eye(up[:, 0], up[:, 1], lo[:, 0], lo[:, 1], float(x1 - x0))


def _astronaut_face() -> _Face:
    """The source photo and its Face Mesh landmarks (detected once, static image mode)."""
    import mediapipe as mp
    from skimage import data

    image = np.ascontiguousarray(data.astronaut()[..., :3])
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
    ) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise RuntimeError("MediaPipe Face Mesh found no face in skimage.data.astronaut()")
    h, w = image.shape[:2]
    lm = np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark])
    lm = np.round(lm * 64) / 64  # absorb last-bit float noise between runs
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    return _Face(image, lm, (lo + hi) / 2, float(hi[1] - lo[1]))


def _similarity(center, scale: float, rotation_deg: float, shift) -> np.ndarray:
    """2x3 matrix: rotate/scale about ``center`` then shift (source -> destination)."""
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), rotation_deg, scale)
    m[:, 2] += np.asarray(shift, dtype=np.float64)
    return m


def _altered_face(face: _Face, alt: dict) -> tuple[np.ndarray, np.ndarray]:
    """Blend a warped, recoloured, smoothed copy of the inner face into the photo.

    Returns the new image and the affine that moved the inner face (for the eye geometry).
    """
    img = face.image
    h, w = img.shape[:2]
    m = _similarity(face.center, alt["warp_scale"], alt["warp_rotation_deg"], alt["warp_shift_px"])
    warped = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    lab = cv2.cvtColor(warped.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lab += np.asarray(alt["lab_shift"], dtype=np.float32)
    recol = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255.0, 0, 255)
    smooth = cv2.GaussianBlur(recol, (0, 0), alt["smooth_sigma_px"])

    oval = face.landmarks[list(_FACE_OVAL)] @ m[:, :2].T + m[:, 2]
    centroid = oval.mean(axis=0)
    hull = cv2.convexHull(((oval - centroid) * alt["mask_shrink"] + centroid).astype(np.float32))
    mask = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 1.0, cv2.LINE_AA, 4)
    mask = cv2.GaussianBlur(mask, (0, 0), alt["feather_frac"] * face.height)[..., None]
    out = mask * smooth + (1.0 - mask) * img.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), m


# --------------------------------------------------------------------------- rendering


def _drift(terms, t: float) -> float:
    return float(sum(a * math.sin(2 * math.pi * f * t + p) for a, f, p in terms))


class _Renderer:
    def __init__(self, face: _Face, vp: VideoPlan, size: int):
        self.vp = vp
        self.size = size
        if vp.alteration is not None:
            self.src, m = _altered_face(face, vp.alteration)
        else:
            self.src, m = face.image, None
        self.eyes = {name: face.eye(name, m) for name in _EYE_CONTOURS}
        self.center = face.center
        self.base_scale = 0.5 * size / face.height  # the face spans about half the frame
        g = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size
        self.gx, self.gy = g[None, :], g[:, None]
        rng = np.random.default_rng(vp.render_seed)
        # sensor noise: each frame takes a random window of one larger noise field (no copy)
        sigma = vp.lighting["noise_sigma"]
        self.noise = (rng.standard_normal((2 * size, 2 * size, 3)) * sigma).astype(np.float32)
        self.rng = rng

    def _affine(self, t: float) -> np.ndarray:
        """2x3 matrix mapping source pixels to output pixels at time t."""
        mo = self.vp.motion
        rot0, sx0, sy0, ls0 = mo["pose"]
        rot = rot0 + _drift(mo["rotation_deg"], t)
        scale = self.base_scale * math.exp(ls0 + _drift(mo["log_scale"], t))
        shift = np.array([sx0 + _drift(mo["shift_x"], t), sy0 + _drift(mo["shift_y"], t)]) * self.size
        m = cv2.getRotationMatrix2D((float(self.center[0]), float(self.center[1])), rot, scale)
        m[:, 2] += (self.size - 1) / 2 - self.center + shift
        return m

    def frame(self, i: int, closure: dict[str, float]) -> np.ndarray:
        t = i / self.vp.fps
        size = self.size
        m = self._affine(t)
        out = cv2.warpAffine(self.src, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        inv = cv2.invertAffineTransform(m)
        shade = None
        for name, c in closure.items():
            if c > 1e-3:
                shade = self._close_eye(out, m, inv, self.eyes[name], c, shade)
        return self._light(out, t, shade)

    def _close_eye(self, out, m, inv, eye: _Eye, c: float, shade):
        """Re-render the eye's neighbourhood with the upper lid lowered by closure c."""
        size = self.size
        x0, y0, x1, y1 = eye.bbox()
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ m[:, :2].T + m[:, 2]
        u0, v0 = np.floor(corners.min(axis=0)).astype(int) - 2
        u1, v1 = np.ceil(corners.max(axis=0)).astype(int) + 3
        u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, size), min(v1, size)
        if u1 <= u0 or v1 <= v0:
            return shade
        u, v = np.meshgrid(np.arange(u0, u1, dtype=np.float64), np.arange(v0, v1, dtype=np.float64))
        sx = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
        sy = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]

        w = eye.width
        up = np.interp(sx, eye.ux, eye.uy)
        span = np.clip((sx - eye.x0) * (eye.x1 - sx) / (0.25 * w * w), 0.0, 1.0)  # 0 at corners
        lo = np.interp(sx, eye.lx, eye.ly) + _LID_OVERLAP * w * span
        inside = (sx > eye.x0) & (sx < eye.x1)
        new = up + c * np.maximum(lo - up, 0.0)  # new lid edge
        top = up - _LID_BAND * w
        mg = _LID_MARGIN * w
        # skin band [top, new - mg] <- [top, up - mg] (stretched); margin [new - mg, new] <- shifted
        stretched = top + (sy - top) * (up - mg - top) / np.maximum(new - mg - top, 1e-6)
        ys = np.where(sy > new - mg, sy - (new - up), stretched)
        ys = np.where(inside & (sy >= top) & (sy <= new), ys, sy)
        patch = cv2.remap(self.src, sx.astype(np.float32), ys.astype(np.float32), cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)
        out[v0:v1, u0:u1] = patch
        dark = _LASH_DARKEN * c * inside * np.clip((lo - up) / (0.15 * w), 0, 1) * np.exp(
            -(((sy - new + 0.5 * mg) / (_LASH_SIGMA * w)) ** 2))
        if shade is None:
            shade = np.zeros((size, size), np.float32)
        region = shade[v0:v1, u0:u1]
        np.maximum(region, dark.astype(np.float32), out=region)
        return shade

    def _light(self, img: np.ndarray, t: float, shade) -> np.ndarray:
        li = self.vp.lighting
        gain = 1.0 + _drift(li["gain"], t)
        contrast = 1.0 + _drift(li["contrast"], t)
        offset = _drift(li["offset"], t)
        a0, da = li["gradient_angle"]
        ang = a0 + da * t
        g = li["gradient_base"] + _drift(li["gradient"], t)
        mult = 1.0 + g * (math.cos(ang) * self.gx + math.sin(ang) * self.gy)  # soft light falloff
        if shade is not None:
            mult = mult * (1.0 - shade)
        ch = np.array([1.0 + a * math.sin(2 * math.pi * f * t + p) for a, f, p in li["channel_gain"]])
        # ((x - 128) * contrast + 128 + offset) * gain * channel gain, then the gradient/shade
        # (OpenCV arithmetic: ~5x faster than NumPy here, and it rounds and saturates to uint8)
        scale = contrast * gain * ch
        bias = (128.0 * (1.0 - contrast) + offset) * gain * ch
        mult = mult.astype(np.float32, copy=False)
        x = cv2.multiply(img, cv2.merge([mult * float(k) for k in scale]), dtype=cv2.CV_32F)
        x = cv2.add(x, cv2.merge([mult * float(b) for b in bias]))
        dy, dx = (int(v) for v in self.rng.integers(0, self.size, size=2))
        return cv2.add(x, self.noise[dy : dy + self.size, dx : dx + self.size], dtype=cv2.CV_8U)

    def frames(self):
        closures = self.vp.closures()
        for i in range(self.vp.n_frames):
            yield self.frame(i, {eye: float(c[i]) for eye, c in closures.items()})


# --------------------------------------------------------------------------- outputs


def _even(size: int) -> int:
    return int(size) + (int(size) % 2)  # yuv420p needs even sides


CSV_COLUMNS = ("video_id", "label", "start_frame", "end_frame", "kind", "start_s", "end_s")


def _blinks_csv(plans: list[VideoPlan]) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(CSV_COLUMNS)
    for vp in plans:
        for ev in vp.events:
            wr.writerow([vp.video_id, vp.label, ev.start_frame, ev.end_frame, ev.kind,
                         f"{ev.start_s:.4f}", f"{ev.end_s:.4f}"])
    return buf.getvalue()


def _manifest(plans: list[VideoPlan], demo_cfg: dict, seed: int) -> dict:
    videos = []
    for vp in plans:
        kinds = [ev.kind for ev in vp.events]
        videos.append({
            "video_id": vp.video_id,
            "label": vp.label,
            "path": vp.rel_path,
            "fps": vp.fps,
            "n_frames": vp.n_frames,
            "duration_s": _r(vp.n_frames / vp.fps, 4),
            "blink_behaviour": vp.behaviour,
            "n_events": len(vp.events),
            "n_blinks_planned": sum(k in ("blink", "blink_one_eye") for k in kinds),
            "n_closures_planned": kinds.count("closure"),
            "blinking_eyes": sorted({e for ev in vp.events for e in ev.eyes}),
            "one_eye": vp.eye,
            "face_alteration": vp.alteration,
            "motion": vp.motion,
            "lighting": vp.lighting,
            "events": [
                {"start_s": _r(ev.start_s, 4), "end_s": _r(ev.end_s, 4), "start_frame": ev.start_frame,
                 "end_frame": ev.end_frame, "kind": ev.kind, "eyes": list(ev.eyes),
                 "close_s": _r(ev.close_s, 4), "hold_s": _r(ev.hold_s, 4), "depth": _r(ev.depth, 4)}
                for ev in vp.events
            ],
        })
    return {
        "generator": "blinkbench.demo",
        "generator_version": GENERATOR_VERSION,
        "source_image": SOURCE_IMAGE,
        "source_license": "public domain (NASA)",
        "seed": int(seed),
        "demo": {k: demo_cfg[k] for k in sorted(demo_cfg)},
        "frame_size": _even(demo_cfg["size"]),
        "encoder": {"codec": "libx264", "pix_fmt": "yuv420p", **ENCODE_OPTIONS},
        "truth": {
            "frames": "0-based, decode order; start_frame/end_frame = first/last frame with lid "
                      f"closure >= {LOWERED} (inclusive)",
            "seconds": "start_s/end_s = planned onset/end of the lid movement",
            "kinds": {"blink": f"both eyes, <= {MAX_BLINK_S} s", "closure": f"both eyes, > {MAX_BLINK_S} s",
                      "blink_one_eye": "one eye only (see one_eye)"},
            "eyes": "subject's own right/left",
        },
        "fake_behaviours": list(FAKE_BEHAVIOURS),
        "real_blinking": {"ibi_min_s": IBI_MIN_S, "ibi_mean_s": IBI_MEAN_S, "ibi_gamma_shape": IBI_SHAPE,
                          "blink_s": [BLINK_MIN_S, BLINK_MAX_S], "edge_margin_s": EDGE_MARGIN_S},
        "videos": videos,
    }


def generate(root, demo_cfg: DemoSection, seed: int) -> None:
    """Render the demo dataset under ``root`` (see the module docstring)."""
    from blinkbench.video.codec import write_video  # PyAV: only when writing, not when the workflow lists files

    root = Path(root)
    plans = plan(demo_cfg, seed)
    size = _even(demo_cfg["size"])
    face = _astronaut_face()
    for vp in plans:
        renderer = _Renderer(face, vp, size)
        n = write_video(root / vp.rel_path, renderer.frames(), vp.fps, codec="libx264", options=ENCODE_OPTIONS,
                        bitexact=True)
        if n != vp.n_frames:
            raise RuntimeError(f"{vp.video_id}: rendered {n} frames, planned {vp.n_frames}")
    with atomic_path(root / "blinks.csv") as tmp:
        tmp.write_text(_blinks_csv(plans))
    with atomic_path(root / "splits.csv") as tmp:
        tmp.write_text("video_id,split\n" + "".join(f"{k},{v}\n" for k, v in splits(demo_cfg).items()))
    write_json(_manifest(plans, demo_cfg, seed), root / "demo.json")
