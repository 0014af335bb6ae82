"""Video probing and decoding (PyAV: the FFmpeg libraries ship inside the wheel).

``probe`` never raises: it returns a :class:`VideoInfo` whose ``status`` says what is wrong
with a file (missing, unreadable, no video stream, zero frames, corrupt). ``FrameReader``
decodes on a background thread into a bounded queue, so decoding overlaps with whatever
the consumer does (face detection, landmarks) and memory does not grow with video length.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

# Statuses a video can have before any face work. "ok" is the only one that is processed.
OK = "ok"
MISSING = "missing"
UNREADABLE = "unreadable"
NO_VIDEO = "no_video_stream"
ZERO_FRAMES = "zero_frames"
CORRUPT = "corrupt"

VFR_TOLERANCE = 0.10  # relative spread of frame intervals above which a video counts as VFR


@dataclass
class VideoInfo:
    status: str
    error: str = ""
    fps: float = float("nan")
    n_frames: int = 0
    duration_s: float = float("nan")
    width: int = 0
    height: int = 0
    codec: str = ""
    vfr: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def probe(path: str | os.PathLike, count_frames: bool = True) -> VideoInfo:
    """Inspect a video without decoding pixels: demux every packet to count frames and read
    timestamps (cheap), so truncation and variable frame rate are caught up front."""
    path = Path(path)
    if not path.exists():
        return VideoInfo(MISSING, f"file not found: {path}")
    if not os.access(path, os.R_OK):
        return VideoInfo(UNREADABLE, f"permission denied: {path}")
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises many FFmpeg error subclasses
        return VideoInfo(UNREADABLE, f"cannot open: {type(exc).__name__}: {exc}")
    with container:
        if not container.streams.video:
            return VideoInfo(NO_VIDEO, "no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        info = VideoInfo(
            OK,
            fps=float(rate) if rate else float("nan"),
            width=int(ctx.width or 0),
            height=int(ctx.height or 0),
            codec=str(ctx.name or ""),
        )
        if not count_frames:
            info.n_frames = int(stream.frames or 0)
            return info
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    pts.append(packet.pts)
                elif packet.size:
                    pts.append(len(pts))
        except Exception as exc:
            info.status, info.error = CORRUPT, f"demux failed after {len(pts)} packets: {exc}"
        info.n_frames = len(pts)
        if not pts and info.status == OK:
            info.status, info.error = ZERO_FRAMES, "no video frames"
        if len(pts) >= 2 and stream.time_base:
            ts = np.sort(np.asarray(pts, dtype=np.float64)) * float(stream.time_base)
            d = np.diff(ts)
            d = d[d > 0]
            if d.size:
                info.duration_s = float(ts[-1] - ts[0] + np.median(d))
                if not np.isfinite(info.fps) or info.fps <= 0:
                    info.fps = float(1.0 / np.median(d))
                spread = (np.percentile(d, 95) - np.percentile(d, 5)) / np.median(d)
                info.vfr = bool(spread > VFR_TOLERANCE)
        elif len(pts) == 1 and np.isfinite(info.fps) and info.fps > 0:
            info.duration_s = 1.0 / info.fps
        return info


@dataclass
class Frame:
    """One decoded frame. Pixel access is lazy so consumers pay only for what they use."""

    index: int
    timestamp_s: float
    av_frame: av.VideoFrame
    data: object = None  # what FrameReader's ``prepare`` returned for this frame

    @property
    def width(self) -> int:
        return self.av_frame.width

    @property
    def height(self) -> int:
        return self.av_frame.height

    def rgb(self, max_side: int | None = None) -> np.ndarray:
        """Whole frame as RGB uint8, optionally downscaled so its longer side <= max_side."""
        f = self.av_frame
        if max_side and max(f.width, f.height) > max_side:
            s = max_side / max(f.width, f.height)
            return f.to_ndarray(
                format="rgb24", width=max(2, round(f.width * s)), height=max(2, round(f.height * s))
            )
        return f.to_ndarray(format="rgb24")

    def rgb_crop(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """RGB pixels of the box (x0, y0, x1, y1), clipped to the frame and snapped to even
        coordinates (origin ``(x0 & ~1, y0 & ~1)`` whatever the pixel format), converting
        only that region from the decoder's planar YUV (a 720p frame costs ~5 ms to convert
        whole; a face crop a fraction of that). Falls back to whole-frame conversion for
        pixel formats other than 8-bit 4:2:0."""
        f = self.av_frame
        x0, y0, x1, y1 = _clip_box(box, f.width, f.height, even=True)
        fmt = f.format.name
        if fmt == "yuv420p" and x1 > x0 and y1 > y0:
            y = _plane(f, 0)[y0:y1, x0:x1]
            u = _plane(f, 1)[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
            v = _plane(f, 2)[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
            h, w = y.shape
            i420 = np.empty((h * 3 // 2, w), dtype=np.uint8)
            i420[:h] = y
            i420[h:].reshape(-1)[: u.size] = u.reshape(-1)
            i420[h:].reshape(-1)[u.size :] = v.reshape(-1)
            return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
        if fmt == "yuv444p" and x1 > x0 and y1 > y0:
            return _bt601_limited_to_rgb_cv(cv2.merge([_plane(f, i, full=True)[y0:y1, x0:x1] for i in range(3)]))
        return f.to_ndarray(format="rgb24")[y0:y1, x0:x1]


def _plane(frame: av.VideoFrame, i: int, full: bool = False) -> np.ndarray:
    p = frame.planes[i]
    h = frame.height if (i == 0 or full) else (frame.height + 1) // 2
    w = frame.width if (i == 0 or full) else (frame.width + 1) // 2
    return np.frombuffer(p, dtype=np.uint8).reshape(-1, p.line_size)[:h, :w]


_YUV2RGB = np.array(  # ITU-R BT.601, limited range (what swscale assumes for SD/untagged)
    [[1.164383, 0.0, 1.596027], [1.164383, -0.391762, -0.812968], [1.164383, 2.017232, 0.0]],
    dtype=np.float32,
)


# The same conversion as one 3x4 affine map (offsets folded in), for cv2.transform.
_YUV2RGB_AFFINE = np.hstack(
    [_YUV2RGB, -(_YUV2RGB @ np.array([16.0, 128.0, 128.0], dtype=np.float32))[:, None]]
).astype(np.float32)


def _bt601_limited_to_rgb_cv(yuv: np.ndarray) -> np.ndarray:
    """:func:`_bt601_limited_to_rgb` in OpenCV (SIMD, releases the GIL): ~0.3 ms for a 430 px
    crop instead of ~2-3 ms; rounding differs by 1 level in a tiny share of values."""
    return cv2.convertScaleAbs(cv2.max(cv2.transform(np.float32(yuv), _YUV2RGB_AFFINE), 0.0))


def _bt601_limited_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """Reference conversion (NumPy), kept for the test of the OpenCV path."""
    x = yuv.astype(np.float32) - np.array([16.0, 128.0, 128.0], dtype=np.float32)
    return np.clip(x @ _YUV2RGB.T + 0.5, 0, 255).astype(np.uint8)


def _clip_box(box, width: int, height: int, even: bool = False) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(width, x1), min(height, y1)
    if even:  # chroma is subsampled by 2: keep the crop on even coordinates and sizes
        x0, y0 = x0 & ~1, y0 & ~1
        x1, y1 = x0 + ((x1 - x0) & ~1), y0 + ((y1 - y0) & ~1)
    return x0, y0, x1, y1


class DecodeError(RuntimeError):
    pass


_END = object()


class FrameReader:
    """Iterate a video's frames in decode order, decoding on a background thread.

    ``queue_size`` bounds memory (frames in flight). ``prepare(frame)``, if given, runs on the
    decode thread, in frame order, and its result is ``frame.data``: per-frame work such as
    cropping then overlaps with the consumer (an exception in it is re-raised to the
    consumer). Timestamps come from the stream's
    presentation times, so variable-frame-rate videos get true times; if the stream has no
    timestamps they are ``index / fps``. A decode error after some frames ends the iteration
    and is kept in ``self.error`` (the frames before it are still delivered).
    """

    def __init__(self, path: str | os.PathLike, queue_size: int = 32, threads: bool = True,
                 prepare: "Callable[[Frame], object] | None" = None):
        self.path = str(path)
        self.queue_size = queue_size
        self.threads = threads
        self.prepare = prepare
        self.error: str = ""
        self.fps: float = float("nan")
        self.n_frames_hint: int = 0

    def __iter__(self) -> Iterator[Frame]:
        try:
            container = av.open(self.path)
        except Exception as exc:
            raise DecodeError(f"cannot open {self.path}: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise DecodeError(f"no video stream in {self.path}")
        stream = container.streams.video[0]
        if self.threads:
            stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else float("nan")
        self.n_frames_hint = int(stream.frames or 0)
        tb = float(stream.time_base) if stream.time_base else None
        q: queue.Queue = queue.Queue(maxsize=self.queue_size)
        stop = threading.Event()
        failed: list[BaseException] = []

        def produce() -> None:
            t0 = None
            try:
                for i, fr in enumerate(container.decode(stream)):
                    if stop.is_set():
                        break
                    if fr.pts is not None and tb:
                        t0 = fr.pts if t0 is None else t0
                        ts = (fr.pts - t0) * tb
                    else:
                        ts = i / self.fps if self.fps == self.fps and self.fps > 0 else float(i)
                    frame = Frame(i, float(ts), fr)
                    if self.prepare is not None:
                        try:
                            frame.data = self.prepare(frame)
                        except BaseException as exc:  # a bug in the consumer's code, not the video
                            failed.append(exc)
                            break
                    _put(q, frame, stop)
            except Exception as exc:  # truncated/corrupt: keep what decoded, record why
                self.error = f"decode stopped: {type(exc).__name__}: {exc}"
            finally:
                _put(q, _END, stop)

        worker = threading.Thread(target=produce, name="blinkbench-decode", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    if failed:
                        raise failed[0]
                    break
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # drain so the producer can observe stop
                try:
                    q.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)
            container.close()


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def write_video(
    path: str | os.PathLike,
    frames: "Iterator[np.ndarray]",
    fps: float | Fraction,
    codec: str = "libx264",
    options: dict | None = None,
    pix_fmt: str = "yuv420p",
    bitexact: bool = False,
) -> int:
    """Encode RGB uint8 frames to ``path`` atomically; returns the number of frames.

    ``bitexact``: single-threaded encoding and no muxer/encoder version or time stamps in
    the file. For libx264 that is not enough: its adaptive quantisation and macroblock tree
    gave different bitstreams for identical frames from run to run here; pass
    ``{"aq-mode": "0", "mbtree": "0"}`` too (as the demo does) for byte-identical output."""
    from .io import atomic_path

    n = 0
    with atomic_path(path) as tmp:
        container_opts = {"fflags": "+bitexact"} if bitexact else {}
        with av.open(str(tmp), mode="w", format=_format_for(Path(path)), options=container_opts) as out:
            rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
            stream = out.add_stream(codec, rate=rate)
            stream.pix_fmt = pix_fmt
            opts = {k: str(v) for k, v in (options or {}).items()}
            if bitexact:
                stream.codec_context.thread_count = 1
                stream.codec_context.thread_type = "NONE"
                opts.setdefault("flags", "+bitexact")
                opts.setdefault("threads", "1")
            if opts:
                stream.options = opts
            for arr in frames:
                if n == 0:
                    stream.height, stream.width = arr.shape[:2]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
                n += 1
            for packet in stream.encode():
                out.mux(packet)
    return n


def _format_for(path: Path) -> str | None:
    return {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov"}.get(path.suffix.lower())
