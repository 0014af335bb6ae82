"""Per-video landmark extraction: crop around the face track, run a backend, stream out.

The crop is a square of ``crop_scale`` x the face box side around the track's box. It is
kept fixed while the face stays inside a tolerance (centre moves < 10 % of the crop side,
size changes < 15 %) so a tracking backend such as Face Mesh sees a stable image and its
frame-to-frame tracking stays valid; it is re-centred only when the face moves on.

Decoding runs on a background thread (:class:`~blinkbench.video.FrameReader`), only the crop
is converted to RGB, and rows are written in batches (:class:`~blinkbench.io.ParquetStream`),
so throughput is bounded by the backend and memory does not grow with video length.

Output columns: ``frame`` (decode order, 0-based), ``timestamp_s``, ``face_present``, and
``x``, ``y``, ``z``: fixed-size lists of ``n_points`` float32 frame pixels (NaN without a
face; MediaPipe's z is relative depth on the x scale, PFLD's is 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..faces import square_box
from ..io import ParquetStream
from ..video import FrameReader
from .base import LandmarkBackend

LANDMARK_COLUMNS = ["frame", "timestamp_s", "face_present", "x", "y", "z"]
BATCH = 256
RECENTRE_SHIFT = 0.10
RESIZE_TOLERANCE = 0.15


def landmark_schema(n_points: int) -> pa.Schema:
    pts = pa.list_(pa.float32(), n_points)
    return pa.schema(
        [("frame", pa.int32()), ("timestamp_s", pa.float64()), ("face_present", pa.bool_()),
         ("x", pts), ("y", pts), ("z", pts)]
    )


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
    boxes = track[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
    has_face = track["face_present"].to_numpy(bool)
    n_track = len(track)
    scale = backend.crop_scale_hint or crop_scale
    crop = StableCrop(scale)
    p = backend.n_points
    nan_pts = np.full(p, np.nan, np.float32)
    reader = FrameReader(video_path)
    cols: dict[str, list] = {k: [] for k in LANDMARK_COLUMNS}
    face_frames = n = 0
    backend.reset()
    with ParquetStream(out_path, landmark_schema(p), meta) as sink:
        for fr in reader:
            n += 1
            pts = None
            if fr.index < n_track and has_face[fr.index]:
                x0, y0, x1, y1 = crop.update(boxes[fr.index], fr.width, fr.height)
                # rgb_crop keeps chroma-aligned (even) edges; use the box it really cut.
                rgb = fr.rgb_crop((x0, y0, x1, y1))
                ox, oy = x0 & ~1, y0 & ~1
                if rgb.size:
                    pts = backend.process(rgb)
                if pts is not None:
                    pts = pts.copy()
                    pts[:, 0] += ox
                    pts[:, 1] += oy
            cols["frame"].append(fr.index)
            cols["timestamp_s"].append(fr.timestamp_s)
            cols["face_present"].append(pts is not None)
            for k, j in (("x", 0), ("y", 1), ("z", 2)):
                cols[k].append(pts[:, j] if pts is not None else nan_pts)
            face_frames += pts is not None
            if len(cols["frame"]) >= BATCH:
                sink.write(cols)
                cols = {k: [] for k in LANDMARK_COLUMNS}
            if progress is not None:
                progress.update(1)
        if cols["frame"]:
            sink.write(cols)
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
