"""Per-video face track: detect every N frames, link detections into tracks, keep one subject.

Detection uses MediaPipe's BlazeFace (short- or full-range model, shipped in the mediapipe
wheel) on a downscaled frame every ``detect_every`` frames. Detections are linked into
tracks by IoU (greedy, highest overlap first); a track survives ``max_gap_s`` without a
detection. The subject is the most persistent track (most detections; larger face on ties).
Between two of its detections the box is interpolated linearly (tracking by detection at a
stride, which is what lets the step run faster than per-frame detection); beyond a gap
longer than ``max_gap_s`` the frames are marked ``face_present = False``.

Face crops for the frame-level detectors are sampled evenly over the subject's detections
(``crops.n_per_video``, square, ``crops.size`` pixels, box enlarged by ``crops.margin``),
at targets spread over the whole video by its frame count (``video.frame_count``: the same
for ``.mp4``, ``.mkv``, ``.webm`` and ``.avi``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from blinkbench.core.params_types import FacesSection
from blinkbench.video.codec import FrameReader, frame_count

log = logging.getLogger(__name__)

# Second track counts as a real second person when it has at least this share of the
# subject's detections (a few stray false detections do not).
MULTI_FACE_SHARE = 0.3

# Frames decoded ahead of detection. They carry the downscaled detection image only, except
# at crop targets, which keep the full frame until the crop is cut: a few in flight at most.
QUEUE_FRAMES = 8


@dataclass
class Track:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    @property
    def mean_area(self) -> float:
        b = np.asarray(self.boxes)
        return float(np.mean((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))


@dataclass
class FaceTrackResult:
    table: pd.DataFrame          # one row per decoded frame
    crops: np.ndarray            # (n, size, size, 3) uint8
    crop_frames: np.ndarray      # (n,) frame index of each crop
    meta: dict                   # status, warnings, counts


class MediaPipeFaceDetector:
    """BlazeFace via ``mp.solutions.face_detection``; boxes in pixels of the given image."""

    def __init__(self, model_selection: int = 1, min_confidence: float = 0.5):
        import mediapipe as mp

        self._det = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min_confidence
        )

    def __call__(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        h, w = rgb.shape[:2]
        res = self._det.process(rgb)
        out = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            box = np.array([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h])
            box = np.clip(box, 0, [w, h, w, h])
            if box[2] - box[0] > 1 and box[3] - box[1] > 1:
                out.append((box, float(d.score[0])))
        return out

    def close(self) -> None:
        self._det.close()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def link(tracks: list[Track], frame: int, dets: list[tuple[np.ndarray, float]], iou_min: float, max_gap: int,
         live: list[int] | None = None) -> list[int]:
    """Attach detections to live tracks (greedy by IoU) or start new tracks.

    ``live``, kept by the caller from frame to frame, holds the indices of the tracks that
    may still be joined: one whose gap has passed ``max_gap`` leaves it for good (frames only
    increase), so a frame costs live tracks x detections, not every track the video has had
    (scanning them all was quadratic in video length when stray detections start tracks).
    Without it every track is looked at.

    Returns, for each detection, the index of the track it joined."""
    if live is None:
        live = list(range(len(tracks)))
    live[:] = [i for i in live if frame - tracks[i].last_frame <= max_gap]
    pairs = sorted(
        ((iou(tracks[i].boxes[-1], box), i, j) for i in live for j, (box, _) in enumerate(dets)),
        reverse=True,
    )
    assigned: dict[int, int] = {}
    used_tracks: set[int] = set()
    for ov, i, j in pairs:
        if ov < iou_min or i in used_tracks or j in assigned:
            continue
        assigned[j] = i
        used_tracks.add(i)
    for j, (box, score) in enumerate(dets):
        if j not in assigned:
            tracks.append(Track())
            assigned[j] = len(tracks) - 1
            live.append(assigned[j])
        t = tracks[assigned[j]]
        t.frames.append(frame)
        t.boxes.append(box)
        t.scores.append(score)
    return [assigned[j] for j in range(len(dets))]


def choose_subject(tracks: list[Track]) -> int | None:
    if not tracks:
        return None
    return max(range(len(tracks)), key=lambda i: (len(tracks[i].frames), tracks[i].mean_area))


def densify(track: Track, n_frames: int, max_gap: int, hold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame boxes from a track's detections: linear interpolation across gaps of at most
    ``max_gap`` frames, boxes held ``hold`` frames past the first/last detection of a run."""
    boxes = np.full((n_frames, 4), np.nan)
    scores = np.full(n_frames, np.nan)
    detected = np.zeros(n_frames, dtype=bool)
    f = np.asarray(track.frames)
    b = np.asarray(track.boxes)
    s = np.asarray(track.scores)
    detected[f] = True
    boxes[f] = b
    scores[f] = s
    for k in range(len(f) - 1):
        a, z = f[k], f[k + 1]
        if 1 < z - a <= max_gap:
            w = ((np.arange(a + 1, z) - a) / (z - a))[:, None]
            boxes[a + 1 : z] = (1 - w) * b[k] + w * b[k + 1]
            scores[a + 1 : z] = np.minimum(s[k], s[k + 1])
    # Hold at the ends of each run (frames between a detection and the next detection stride).
    present = ~np.isnan(boxes[:, 0])
    for idx in np.flatnonzero(present):
        for j in range(idx + 1, min(n_frames, idx + hold + 1)):
            if present[j]:
                break
            if np.isnan(boxes[j, 0]):
                boxes[j] = boxes[idx]
                scores[j] = scores[idx]
        for j in range(idx - 1, max(-1, idx - hold - 1), -1):
            if present[j]:
                break
            if np.isnan(boxes[j, 0]):
                boxes[j] = boxes[idx]
                scores[j] = scores[idx]
    present = ~np.isnan(boxes[:, 0])
    return boxes, scores, detected, present


def square_box(box: np.ndarray, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Square box of side ``scale`` x the longer side of ``box``, same centre, clipped."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = scale * max(box[2] - box[0], box[3] - box[1])
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = int(round(cx + side / 2)), int(round(cy + side / 2))
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def track_video(path: str, cfg: FacesSection, progress=None) -> FaceTrackResult:
    """Run detection + tracking over a video. ``cfg`` is the ``faces`` params section.

    Raises ``video.DecodeError`` when the file cannot be opened at all; a stream that breaks
    midway yields the frames decoded so far with a warning in ``meta``."""
    every = int(cfg["detect_every"])
    ccfg = cfg["crops"]
    n_crops, crop_size, margin = int(ccfg["n_per_video"]), int(ccfg["size"]), float(ccfg["margin"])
    # Crop candidates: at detection frames near 2N targets spread evenly over the whole video
    # (its frame count from video.frame_count, whatever the container), crops of every
    # detection there; the subject's are kept.
    targets = _crop_targets(frame_count(path), every, n_crops) if n_crops > 0 else set()
    cand: dict[tuple[int, int], np.ndarray] = {}
    detector = MediaPipeFaceDetector(cfg["model_selection"], cfg["min_confidence"])
    reader = FrameReader(path, queue_size=QUEUE_FRAMES, prepare=_Downscale(every, int(cfg["detect_max_side"]), targets))
    tracks: list[Track] = []
    live: list[int] = []  # indices of the tracks link() may still extend
    timestamps: list[float] = []
    fps = float("nan")
    started = False
    try:
        for fr in reader:
            if not started:
                fps, started = reader.fps, True
            timestamps.append(fr.timestamp_s)
            if progress is not None:
                progress.update(1)
            if fr.index % every:
                continue
            small = fr.data
            scale = fr.width / small.shape[1]
            dets = [(box * scale, score) for box, score in detector(small)]
            max_gap = max(every, int(round(float(cfg["max_gap_s"]) * (fps if fps == fps else 25))))
            joined = link(tracks, fr.index, dets, float(cfg["iou_match"]), max_gap, live)
            if targets and fr.index in targets and dets:
                for (box, _), ti in zip(dets, joined):
                    cand[(fr.index, ti)] = _crop(fr, box, margin, crop_size)
    finally:
        detector.close()
    n = len(timestamps)
    if not fps == fps or fps <= 0:
        fps = 25.0
    max_gap = max(every, int(round(float(cfg["max_gap_s"]) * fps)))
    warnings = [reader.error] if reader.error else []
    subject = choose_subject(tracks)
    if subject is None:
        boxes = np.full((n, 4), np.nan)
        scores = np.full(n, np.nan)
        detected = np.zeros(n, bool)
        present = np.zeros(n, bool)
    else:
        boxes, scores, detected, present = densify(tracks[subject], n, max_gap, hold=every - 1)
        others = [t for i, t in enumerate(tracks) if i != subject]
        if others and max(len(t.frames) for t in others) >= MULTI_FACE_SHARE * len(tracks[subject].frames):
            warnings.append(
                f"multiple_faces: {1 + sum(len(t.frames) >= MULTI_FACE_SHARE * len(tracks[subject].frames) for t in others)} "
                "persistent tracks; kept the most persistent"
            )
    table = pd.DataFrame(
        {
            "frame": np.arange(n, dtype=np.int32),
            "timestamp_s": np.asarray(timestamps, dtype=np.float64),
            "face_present": present,
            "detected": detected,
            "x0": boxes[:, 0].astype(np.float32),
            "y0": boxes[:, 1].astype(np.float32),
            "x1": boxes[:, 2].astype(np.float32),
            "y1": boxes[:, 3].astype(np.float32),
            "score": scores.astype(np.float32),
        }
    )
    keys = sorted(k for k in cand if k[1] == subject)
    if len(keys) > n_crops:
        keep = np.linspace(0, len(keys) - 1, n_crops).round().astype(int)
        keys = [keys[i] for i in keep]
    crops = np.stack([cand[k] for k in keys]) if keys else np.zeros((0, crop_size, crop_size, 3), np.uint8)
    crop_frames = np.array([k[0] for k in keys], dtype=np.int32)
    status = "ok" if n == 0 or present.any() else "no_face"
    if n == 0:
        status = "zero_frames"
    meta = {
        "status": status,
        "warnings": warnings,
        "n_frames": n,
        "face_frames": int(present.sum()),
        "detections": int(detected.sum()),
        "n_tracks": len(tracks),
        "fps": fps,
    }
    return FaceTrackResult(table, crops, crop_frames, meta)


class _Downscale:
    """FrameReader's ``prepare`` for the faces step, run on the decode thread: the detection
    image (downscaled to ``max_side``) of every ``every``-th frame, and the decoded frame
    itself dropped unless a crop may be cut from it (``targets``). The reader's queue of
    frames in flight then holds small images instead of full frames: 32 frames of 8K held
    1.4 GiB, and memory no longer grows with the video's resolution."""

    def __init__(self, every: int, max_side: int, targets: set[int]):
        self.every, self.max_side, self.targets = every, max_side, targets

    def __call__(self, fr) -> np.ndarray | None:
        small = None if fr.index % self.every else fr.rgb(max_side=self.max_side)
        if fr.index not in self.targets:
            fr.size, fr.av_frame = (fr.width, fr.height), None
        return small


def _crop_targets(n_frames: int, every: int, n_crops: int) -> set[int]:
    """2 x ``n_crops`` detection frames (multiples of ``every``) spread evenly over frames
    0 .. n_frames - 1; none for an empty video. The last target is the last detection frame
    inside the video, so a crop from the end exists whenever a face is seen there."""
    if n_crops <= 0 or n_frames <= 0:
        return set()
    last = (n_frames - 1) // every * every
    pos = np.linspace(0, last, 2 * n_crops)
    return {int(round(p / every)) * every for p in pos}


def _crop(fr, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    sq = square_box(box, 1 + 2 * margin, fr.width, fr.height)
    rgb = fr.rgb_crop(sq)
    if rgb.size == 0:
        return np.zeros((size, size, 3), np.uint8)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
