"""Per-video landmark extraction: crop around the face track, run a backend, stream out.

The crop is a square of ``crop_scale`` x the face box side around the track's box. It is
kept fixed while the face stays inside a tolerance (centre moves < 10 % of the crop side,
size changes < 15 %) so a tracking backend such as Face Mesh sees a stable image and its
frame-to-frame tracking stays valid; it is re-centred only when the face moves on.

Decoding, the crop choice and the crop's conversion to RGB run on a background thread
(:class:`~blinkbench.video.codec.FrameReader` with ``prepare``; a child process with ``WORKER =
"process"``), so the calling thread only runs the backend; rows are collected in
preallocated arrays and written in batches (:class:`~blinkbench.core.io.ParquetStream`), so memory
does not grow with video length. Throughput is bounded by the backend only with a core to
spare: decoding and cropping a 720p frame take ~2.6 ms CPU beside Face Mesh's ~3.3 ms, so
on one core (what a busy shared machine gives a session) the step runs at ~half the mesh's
rate whatever overlaps.

Output columns: ``frame`` (decode order, 0-based), ``timestamp_s``, ``face_present``, and
``x``, ``y``, ``z``: fixed-size lists of ``n_points`` float32 frame pixels (NaN without a
face; MediaPipe's z is relative depth on the x scale, PFLD's is 0).
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from blinkbench.spine.faces import square_box
from blinkbench.core.io import ParquetStream
from blinkbench.video.codec import FrameReader, probe
from .base import LandmarkBackend

LANDMARK_COLUMNS = ["frame", "timestamp_s", "face_present", "x", "y", "z"]
BATCH = 256
QUEUE = 8  # decoded frames in flight
# FrameReader settings. Decoder threads: None = one thread up to 720p, FFmpeg's frame threads
# above. One thread decodes and crops a 720p FF++ frame in ~2.6 ms CPU, under Face Mesh's
# ~3.3 ms, and frame threading costs ~15 % more CPU, which is what the step is short of on
# a shared machine; a 1080p frame takes ~5 ms, more than the mesh, so there threads pay.
DECODER_THREADS: bool | int | None = None
ONE_THREAD_MAX_PIXELS = 1280 * 720
WORKER = "thread"  # "process" moves decoding off this process's GIL but not its CPU cost
RECENTRE_SHIFT = 0.10
RESIZE_TOLERANCE = 0.15


def landmark_schema(n_points: int) -> pa.Schema:
    pts = pa.list_(pa.float32(), n_points)
    return pa.schema(
        [("frame", pa.int32()), ("timestamp_s", pa.float64()), ("face_present", pa.bool_()),
         ("x", pts), ("y", pts), ("z", pts)]
    )


class CropPrepare:
    """FrameReader ``prepare`` for :func:`extract`: the frame's face crop as RGB with its
    (even) origin and its size, ``(rgb, x0, y0, w, h)``, or None without a face. With
    ``size``, ``rgb`` is the crop stretched to ``size`` x ``size`` (a backend's fixed input,
    resized here beside the decoder rather than on the inference thread). Runs beside the
    decoder, in frame order (``StableCrop`` is stateful); a plain object so a decoder
    process can take it."""

    def __init__(self, track: pd.DataFrame, scale: float, size: int | None = None):
        self.boxes = track[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
        self.has_face = track["face_present"].to_numpy(bool)
        self.crop = StableCrop(scale)
        self.size = size

    def __call__(self, fr):
        if fr.index < len(self.has_face) and self.has_face[fr.index]:
            x0, y0, x1, y1 = self.crop.update(self.boxes[fr.index], fr.width, fr.height)
            # rgb_crop keeps chroma-aligned (even) edges; use the box it really cut.
            rgb = fr.rgb_crop((x0, y0, x1, y1))
            if rgb.size:
                h, w = rgb.shape[:2]
                if self.size and (w, h) != (self.size, self.size):
                    rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
                return rgb, x0 & ~1, y0 & ~1, w, h
        return None


class StableCrop:
    """Square crop that follows a box with hysteresis."""

    def __init__(self, scale: float):
        self.scale = scale
        self.box: tuple[int, int, int, int] | None = None

    def update(self, face: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
        cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
        side = self.scale * max(face[2] - face[0], face[3] - face[1])
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            cur_side = max(x1 - x0, y1 - y0)
            ccx, ccy = (x0 + x1) / 2, (y0 + y1) / 2
            if (
                abs(cx - ccx) < RECENTRE_SHIFT * cur_side
                and abs(cy - ccy) < RECENTRE_SHIFT * cur_side
                and abs(side / cur_side - 1) < RESIZE_TOLERANCE
            ):
                return self.box
        self.box = square_box(face, self.scale, width, height)
        return self.box


def decoder_threads(video_path: str) -> bool | int:
    """FrameReader ``threads`` for a video by its frame size (see ``DECODER_THREADS``)."""
    info = probe(video_path, count_frames=False)
    return 1 if 0 < info.width * info.height <= ONE_THREAD_MAX_PIXELS else True


def extract(
    video_path: str,
    track: pd.DataFrame,
    backend: LandmarkBackend,
    out_path,
    crop_scale: float,
    meta: dict,
    progress=None,
) -> dict:
    """Landmarks for every frame of ``video_path`` into ``out_path`` (atomic).

    ``track`` is the face-track table (frame, face_present, x0, y0, x1, y1). ``meta`` is
    stored in the parquet metadata, completed with counts and status. Returns it."""
    scale = backend.crop_scale_hint or crop_scale
    p = backend.n_points
    # A few frames of slack are enough to overlap decoding with inference; each queued 1080p
    # frame holds ~3 MB, so 32 (the reader's default) would add ~100 MB for nothing.
    threads = DECODER_THREADS if DECODER_THREADS is not None else decoder_threads(video_path)
    # A batched backend (batch_size > 1) takes its fixed-size input, resized beside the decoder.
    in_batch = max(1, int(getattr(backend, "batch_size", 1)))
    size = getattr(backend, "input_size", None) if in_batch > 1 else None
    reader = FrameReader(video_path, queue_size=max(QUEUE, in_batch), threads=threads, worker=WORKER,
                         prepare=CropPrepare(track, scale, size))
    n_track = len(track)
    batch = _Batch(BATCH, p)
    face_frames = n = 0
    pending: list = []  # (frame, timestamp, crop data or None) waiting for a backend batch

    def run_pending() -> int:
        crops = [(d[0], d[3], d[4], d[1], d[2]) if d is not None else None for _, _, d in pending]
        found = backend.process_batch(crops)
        k = 0
        for (index, ts, d), pts in zip(pending, found):
            ox, oy = (d[1], d[2]) if d is not None else (0, 0)
            batch.add(index, ts, pts, ox, oy)
            k += pts is not None
            if batch.full:
                sink.write(batch.flush())
        pending.clear()
        return k

    backend.reset()
    with ParquetStream(out_path, landmark_schema(p), meta) as sink:
        for fr in reader:
            n += 1
            if in_batch > 1:
                pending.append((fr.index, fr.timestamp_s, fr.data))
                if len(pending) >= in_batch:
                    face_frames += run_pending()
            else:
                pts, ox, oy = None, 0, 0
                if fr.data is not None:
                    rgb, ox, oy = fr.data[:3]
                    pts = backend.process(rgb)
                batch.add(fr.index, fr.timestamp_s, pts, ox, oy)
                face_frames += pts is not None
                if batch.full:
                    sink.write(batch.flush())
            if progress is not None:
                progress.update(1)
        if pending:
            face_frames += run_pending()
        if batch.k:
            sink.write(batch.flush())
        warnings = list(meta.get("warnings", []))
        if reader.error:
            warnings.append(reader.error)
        if n != n_track:
            warnings.append(f"decoded {n} frames but the face track has {n_track}")
        meta = {**meta, "n_frames": n, "face_frames": face_frames, "warnings": warnings,
                "n_points": p, "scheme": backend.scheme, "backend": backend.name}
        meta.setdefault("status", "ok")
        if n and not face_frames and meta["status"] == "ok":
            meta["status"] = "no_face"
        sink.set_meta(meta)
    return meta


class _Batch:
    """Rows for one parquet batch in preallocated arrays (no per-frame Python lists)."""

    def __init__(self, size: int, n_points: int):
        self.size, self.p, self.k = size, n_points, 0
        self.frame = np.zeros(size, np.int32)
        self.ts = np.zeros(size, np.float64)
        self.present = np.zeros(size, bool)
        self.xyz = np.full((3, size, n_points), np.nan, np.float32)

    @property
    def full(self) -> bool:
        return self.k >= self.size

    def add(self, frame: int, ts: float, pts: np.ndarray | None, ox: int, oy: int) -> None:
        k = self.k
        self.frame[k], self.ts[k], self.present[k] = frame, ts, pts is not None
        if pts is None:
            self.xyz[:, k] = np.nan
        else:  # backend points are in crop pixels: shift x, y to frame pixels
            self.xyz[:, k] = pts.T
            self.xyz[0, k] += ox
            self.xyz[1, k] += oy
        self.k += 1

    def flush(self) -> dict:
        k, self.k = self.k, 0
        lists = {c: pa.FixedSizeListArray.from_arrays(pa.array(self.xyz[j, :k].reshape(-1)), self.p)
                 for j, c in enumerate(("x", "y", "z"))}
        return {"frame": self.frame[:k].copy(), "timestamp_s": self.ts[:k].copy(),
                "face_present": self.present[:k].copy(), **lists}


def read_landmarks(path, columns: list[str] | None = None, batch_size: int = 4096):
    """Yield (frame, timestamp_s, face_present, xyz) numpy batches; xyz is (n, points, 3)."""
    pf = pq.ParquetFile(path)
    p = pf.schema_arrow.field("x").type.list_size
    for batch in pf.iter_batches(batch_size=batch_size):
        xyz = np.stack(
            [batch.column(k).flatten().to_numpy(zero_copy_only=False).reshape(-1, p) for k in ("x", "y", "z")],
            axis=-1,
        )
        yield (
            batch.column("frame").to_numpy(),
            batch.column("timestamp_s").to_numpy(),
            batch.column("face_present").to_numpy(zero_copy_only=False),
            xyz,
        )
