"""Video probing and decoding (PyAV: the FFmpeg libraries ship inside the wheel).

``probe`` never raises: it returns a :class:`VideoInfo` whose ``status`` says what is wrong
with a file (missing, unreadable, no video stream, zero frames, corrupt). ``FrameReader``
decodes on a background thread (or, with ``worker="process"``, in a child process that hands
over ``prepare``'s arrays through a shared-memory ring) into a bounded queue, so decoding
overlaps with whatever the consumer does (face detection, landmarks) and memory does not
grow with video length.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import queue
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from fractions import Fraction
from multiprocessing import shared_memory
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

# Statuses a video can have before any face work. "ok" is the only one that is processed.
OK = "ok"
MISSING = "missing"
UNREADABLE = "unreadable"
NO_VIDEO = "no_video_stream"
ZERO_FRAMES = "zero_frames"
CORRUPT = "corrupt"

VFR_TOLERANCE = 0.10  # relative spread of frame intervals above which a video counts as VFR
FPS_TOLERANCE = 0.10  # relative gap between the header's rate and frames/duration above which
                      # probe reports frames/duration


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
    timestamps (cheap), so truncation and variable frame rate are caught up front.

    With ``count_frames`` the count is the packet count :func:`frame_count` falls back on;
    without it, ``n_frames`` is the container's count only where it is trustworthy
    (:func:`header_frame_count`), else 0 (unknown: Matroska and WebM carry none)."""
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
            info.n_frames = header_frame_count(container, stream)
            return info
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if not _is_frame(packet):
                    continue
                pts.append(packet.pts if packet.pts is not None else len(pts))
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
                measured = len(pts) / info.duration_s
                # The header's rate can be the time base's (an AVI remux of a 1/600 time-base
                # MP4 states 600 fps for a 30 fps video): trust the frames actually timed.
                if not np.isfinite(info.fps) or info.fps <= 0 or abs(info.fps / measured - 1) > FPS_TOLERANCE:
                    info.fps = float(measured)
                spread = (np.percentile(d, 95) - np.percentile(d, 5)) / np.median(d)
                info.vfr = bool(spread > VFR_TOLERANCE)
        elif len(pts) == 1 and np.isfinite(info.fps) and info.fps > 0:
            info.duration_s = 1.0 / info.fps
        return info


# Containers whose header frame count is the number of entries of a per-frame sample table
# (MP4/MOV), so it can be trusted when it agrees with the stream's duration. Matroska and
# WebM store no count at all (``stream.frames == 0``). AVI's count is in time-base ticks, not
# frames: news_presenter.mp4 (MPEG-4, time base 1/600) remuxed to .avi states 3840 frames,
# and a 600 fps average rate, for its 192 frames.
_INDEXED_FORMATS = ("mov", "mp4")


def _is_frame(packet) -> bool:
    """A demuxed packet that carries a coded frame (flush packets, empty drop-frame chunks and
    packets the demuxer marks to discard, e.g. outside an MP4 edit list, do not)."""
    return bool(packet.size) and not packet.is_discard


def header_frame_count(container, stream) -> int:
    """The frame count the container's header states, if trustworthy, else 0.

    Trusted only for MP4/MOV when the count is positive and agrees with the stream's
    duration times its average rate (within 2 frames + 2 %) where both are known: a count
    that disagrees is treated as unknown rather than believed."""
    n = int(stream.frames or 0)
    names = set(str(container.format.name or "").split(","))
    if n <= 0 or not names & set(_INDEXED_FORMATS):
        return 0
    rate, tb = stream.average_rate, stream.time_base
    if stream.duration and rate and tb:
        expected = float(stream.duration * tb * rate)
        if abs(n - expected) > 2 + 0.02 * expected:
            return 0
    return n


def frame_count(path: str | os.PathLike, *, decode: bool = False) -> int:
    """Number of frames of the first video stream of ``path``, for every container.

    The one place the pipeline gets a frame count from. It is the header's count where that
    is trustworthy (:func:`header_frame_count`: MP4/MOV), otherwise the number of demuxed
    packets that carry a frame (no decoding; Matroska/WebM, including the FFV1 ``.mkv``
    files the attacks write, whose header has no count, and AVI, whose header may count
    time-base ticks). ``decode=True`` decodes every frame and counts them instead: exact
    whatever the codec, and as slow as decoding. Demuxing and header counts agreed with
    decoding on all 27 sample clips of ../shared (MP4, H.264 and MPEG-4) and on H.264/FFV1
    in Matroska, VP8/VP9 in WebM and MPEG-4/MJPEG/H.264/FFV1 in AVI.

    Raises :class:`DecodeError` when the file cannot be opened or has no video stream. A
    stream that breaks midway counts the frames before the break."""
    container, stream = _open_stream(str(path), False)
    with container:
        n = 0 if decode else header_frame_count(container, stream)
        if n:
            return n
        try:
            if decode:
                for _ in container.decode(stream):
                    n += 1
            else:
                for packet in container.demux(stream):
                    n += _is_frame(packet)
        except Exception as exc:  # truncated/corrupt: what came before the break counts
            log.warning("frame count of %s stopped after %d frames: %s", path, n, exc)
        return n


@dataclass
class Frame:
    """One decoded frame. Pixel access is lazy so consumers pay only for what they use.

    From a ``worker="process"`` reader the pixels stay in the decoder process: ``av_frame``
    is None and only ``index``, ``timestamp_s``, ``width``, ``height`` and ``data`` are set."""

    index: int
    timestamp_s: float
    av_frame: av.VideoFrame | None
    data: object = None  # what FrameReader's ``prepare`` returned for this frame
    size: tuple[int, int] = (0, 0)  # (width, height) when there is no av_frame

    @property
    def width(self) -> int:
        return self.av_frame.width if self.av_frame is not None else self.size[0]

    @property
    def height(self) -> int:
        return self.av_frame.height if self.av_frame is not None else self.size[1]

    def _pixels(self) -> av.VideoFrame:
        if self.av_frame is None:
            raise ValueError("this frame's pixels stayed in the decoder process; "
                             "convert them in FrameReader's prepare")
        return self.av_frame

    def rgb(self, max_side: int | None = None) -> np.ndarray:
        """Whole frame as RGB uint8, optionally downscaled so its longer side <= max_side."""
        f = self._pixels()
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
        pixel formats other than 8-bit 4:2:0 and 4:4:4."""
        f = self._pixels()
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


_scratch = threading.local()  # per-thread float32 buffer for the conversion below


def _bt601_limited_to_rgb_cv(yuv: np.ndarray) -> np.ndarray:
    """:func:`_bt601_limited_to_rgb` in OpenCV (SIMD, releases the GIL): ~0.25 ms for a 430 px
    crop instead of ~2-3 ms; rounding differs by 1 level in a tiny share of values.

    The float32 intermediate lives in a per-thread buffer that only grows, worked on in
    place: fresh 2 MB temporaries cost ~1000 page faults (~1.8 ms) per call on the main
    thread, where glibc returns freed large blocks to the kernel. The result is bit-identical
    to the allocating form (checked on all 2^24 YUV triples)."""
    n = yuv.size
    flat = getattr(_scratch, "f32", None)
    if flat is None or flat.size < n:
        flat = _scratch.f32 = np.empty(n, np.float32)
    f = flat[:n].reshape(yuv.shape)
    np.copyto(f, yuv, casting="unsafe")
    cv2.transform(f, _YUV2RGB_AFFINE, dst=f)
    cv2.max(f, 0.0, dst=f)
    return cv2.convertScaleAbs(f)


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
WORKERS = ("thread", "process")


class FrameReader:
    """Iterate a video's frames in decode order, decoding in the background.

    ``queue_size`` bounds memory (frames in flight). ``prepare(frame)``, if given, runs beside
    the decoder, in frame order, and its result is ``frame.data``: per-frame work such as
    cropping then overlaps with the consumer (an exception in it is re-raised to the
    consumer). Timestamps come from the stream's presentation times, so variable-frame-rate
    videos get true times; if the stream has no timestamps they are ``index / fps``. A decode
    error after some frames ends the iteration and is kept in ``self.error`` (the frames
    before it are still delivered). Leaving the loop early stops and cleans up the worker.
    Once iteration starts, ``fps`` and ``n_frames_hint`` are set; the hint is the header's
    count where trustworthy and 0 otherwise (Matroska, WebM): for a count in every
    container use :func:`frame_count`.

    ``threads`` sets FFmpeg's decoder threads: True = frame and slice threads, as many as
    FFmpeg picks (lowest latency; ~15 % more CPU per frame than one thread); False = FFmpeg's
    default (slice threads only: one thread for the usual one-slice H.264); an int n = at
    most n threads (1 = none).

    ``worker="thread"`` decodes on a background thread of this process. ``worker="process"``
    decodes and runs ``prepare`` in a child process (forkserver start, spawn where there is
    none), so the two never contend for this process's GIL. Then ``prepare`` must be
    picklable (a module-level function or object), frames carry no pixels (``av_frame`` is
    None; ``width``/``height`` are set), and ``data`` comes back pickled, except an ndarray
    result (or the ndarray first element of a tuple result), which travels through a
    shared-memory ring of ``queue_size`` slots of one RGB frame each and is copied out, so the
    consumer may keep it. A child that dies (e.g. a decoder crash) ends the iteration with
    ``self.error`` set, like a decode error.
    """

    def __init__(self, path: str | os.PathLike, queue_size: int = 32, threads: bool | int = True,
                 prepare: "Callable[[Frame], object] | None" = None, worker: str = "thread"):
        if worker not in WORKERS:
            raise ValueError(f"worker must be one of {WORKERS}, not {worker!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, not {queue_size}")
        self.path = str(path)
        self.queue_size = queue_size
        self.threads = threads
        self.prepare = prepare
        self.worker = worker
        self.error: str = ""
        self.fps: float = float("nan")
        self.n_frames_hint: int = 0

    def __iter__(self) -> Iterator[Frame]:
        return self._iter_process() if self.worker == "process" else self._iter_thread()

    def _iter_thread(self) -> Iterator[Frame]:
        container, stream = _open_stream(self.path, self.threads)
        self.fps, self.n_frames_hint = _stream_info(stream)
        q: queue.Queue = queue.Queue(maxsize=self.queue_size)
        stop = threading.Event()
        failed: list[BaseException] = []

        def produce() -> None:
            try:
                for frame in _decoded(container, stream, self.fps):
                    if stop.is_set():
                        break
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

    def _iter_process(self) -> Iterator[Frame]:
        container, stream = _open_stream(self.path, False)  # headers only: frame size, fps
        with container:
            self.fps, self.n_frames_hint = _stream_info(stream)
            slot = max(1, int(stream.codec_context.width or 1) * int(stream.codec_context.height or 1) * 3)
        n_slots = self.queue_size
        ctx = _mp_context(self.prepare)
        shm = shared_memory.SharedMemory(create=True, size=slot * n_slots)
        try:
            free, stop = ctx.Semaphore(n_slots), ctx.Event()
            out = ctx.Queue(maxsize=n_slots)
            proc = ctx.Process(target=_decode_in_child, name="blinkbench-decode", daemon=True,
                               args=(self.path, self.threads, self.prepare, shm.name, slot, n_slots, out, free, stop))
            proc.start()
            try:
                while True:
                    msg = _get(out, proc)
                    if msg is None:
                        self.error = f"decoder process died (exit code {proc.exitcode})"
                        break
                    if msg[0] == "frame":
                        _, index, ts, size, payload = msg
                        yield Frame(index, ts, None, _unpack(payload, shm, slot, free), size)
                    elif msg[0] == "end":
                        self.error = msg[1]
                        break
                    else:  # "raise": prepare failed in the child
                        raise _exception_from(msg[1])
            finally:
                stop.set()
                _stop_child(proc, out)
        finally:
            shm.close()
            shm.unlink()


def _open_stream(path: str, threads: bool | int):
    try:
        container = av.open(path)
    except Exception as exc:
        raise DecodeError(f"cannot open {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise DecodeError(f"no video stream in {path}")
    stream = container.streams.video[0]
    if threads is True:
        stream.thread_type = "AUTO"
    elif threads is not False:
        n = int(threads)
        if n < 1:
            container.close()
            raise ValueError(f"threads must be a bool or an int >= 1, not {threads!r}")
        stream.thread_type = "AUTO" if n > 1 else "NONE"
        stream.codec_context.thread_count = n
    return container, stream


def _stream_info(stream) -> tuple[float, int]:
    """(fps, trustworthy frame count from the header, 0 if unknown: see header_frame_count).

    The average rate, unless it is more than twice the rate FFmpeg guesses from the stream's
    timing: an AVI whose time base is finer than its frame interval (a remux of an MP4 with
    time base 1/600) states a 600 fps average for 30 fps video. A variable-rate MP4's
    average lies below its guessed (base) rate, so it keeps its average."""
    avg, guess = stream.average_rate, stream.guessed_rate
    rate = guess if (avg and guess and avg > 2 * guess) else (avg or guess)
    return (float(rate) if rate else float("nan")), header_frame_count(stream.container, stream)


def _decoded(container, stream, fps: float) -> Iterator[Frame]:
    """Frames in decode order with their timestamps (see FrameReader)."""
    tb = float(stream.time_base) if stream.time_base else None
    t0 = None
    for i, fr in enumerate(container.decode(stream)):
        if fr.pts is not None and tb:
            t0 = fr.pts if t0 is None else t0
            ts = (fr.pts - t0) * tb
        else:
            ts = i / fps if fps == fps and fps > 0 else float(i)
        yield Frame(i, float(ts), fr)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


# ----------------------------------------------------------------------------- process worker

_mp_ctx = None


def _mp_context(prepare):
    """forkserver (spawn where unavailable): never fork a process that runs inference threads.
    The server is started once, with this module and ``prepare``'s module preloaded, so each
    reader's child is a cheap fork of it instead of a fresh interpreter importing PyAV."""
    global _mp_ctx
    if _mp_ctx is None:
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            mods = [__name__, getattr(prepare, "__module__", None) or type(prepare).__module__]
            ctx.set_forkserver_preload([m for m in dict.fromkeys(mods) if m and m not in ("__main__", "builtins")])
        else:
            ctx = mp.get_context("spawn")
        _mp_ctx = ctx
    return _mp_ctx


def _decode_in_child(path, threads, prepare, shm_name, slot, n_slots, out, free, stop) -> None:
    """The child of ``FrameReader(worker="process")``: decode, prepare, hand over in order.

    Messages: ("frame", index, ts, (w, h), payload), then one ("end", error) or
    ("raise", exception). An array payload is written to ring slot ``k % n_slots`` once a
    slot is free (the parent releases ``free`` after copying a slot out; both sides go in
    frame order, so the k-th array always finds its slot read)."""
    shm = shared_memory.SharedMemory(name=shm_name)
    try:
        try:
            container, stream = _open_stream(path, threads)
        except Exception as exc:
            _put(out, ("end", f"decode stopped: {type(exc).__name__}: {exc}"), stop)
            return
        error, k = "", 0
        with container:
            fps, _ = _stream_info(stream)
            try:
                for frame in _decoded(container, stream, fps):
                    if stop.is_set():
                        return
                    payload = ("obj", None)
                    if prepare is not None:
                        try:
                            data = prepare(frame)
                        except BaseException as exc:  # the consumer's bug: re-raised there
                            _put(out, ("raise", _exception_blob(exc)), stop)
                            return
                        payload, k = _pack(data, shm, slot, n_slots, k, free, stop)
                        if payload is None:  # stopped while waiting for a slot
                            return
                    if not _put(out, ("frame", frame.index, frame.timestamp_s, (frame.width, frame.height), payload), stop):
                        return
            except Exception as exc:  # truncated/corrupt: keep what decoded, record why
                error = f"decode stopped: {type(exc).__name__}: {exc}"
        _put(out, ("end", error), stop)
    finally:
        if stop.is_set():
            out.cancel_join_thread()  # the parent has gone: do not block exit on unread messages
        shm.close()


def _pack(data, shm, slot: int, n_slots: int, k: int, free, stop):
    """(payload, next k): an ndarray (or a tuple starting with one) goes into the ring."""
    arr, rest = None, None
    if isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, tuple) and data and isinstance(data[0], np.ndarray):
        arr, rest = data[0], data[1:]
    if arr is None or arr.dtype.hasobject or arr.nbytes > slot:
        return ("obj", data), k
    while not free.acquire(timeout=0.1):
        if stop.is_set():
            return None, k
    j = k % n_slots
    np.ndarray(arr.shape, arr.dtype, buffer=shm.buf, offset=j * slot)[...] = arr
    return ("ring", j, arr.shape, arr.dtype, rest), k + 1


def _unpack(payload, shm, slot: int, free):
    if payload[0] == "obj":
        return payload[1]
    _, j, shape, dtype, rest = payload
    arr = np.ndarray(shape, dtype, buffer=shm.buf, offset=j * slot).copy()
    free.release()
    return arr if rest is None else (arr, *rest)


def _get(out, proc):
    """Next message from the child, or None if it died without saying goodbye."""
    while True:
        try:
            return out.get(timeout=0.2)
        except queue.Empty:
            if proc.is_alive():
                continue
        try:  # it may have sent its last message just before exiting
            return out.get(timeout=0.2)
        except queue.Empty:
            return None


def _stop_child(proc, out, timeout: float = 10.0) -> None:
    """After ``stop`` is set: drain until the child exits (it may be blocked on a full queue),
    terminate it if it does not."""
    deadline = time.monotonic() + timeout
    while proc.is_alive() and time.monotonic() < deadline:
        try:
            out.get(timeout=0.05)
        except queue.Empty:
            pass
    if proc.is_alive():
        proc.terminate()
    proc.join()
    out.close()


def _exception_blob(exc: BaseException) -> tuple:
    tb = traceback.format_exc()
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
        return ("pickle", blob, tb)
    except Exception:
        return ("text", f"{type(exc).__name__}: {exc}", tb)


def _exception_from(info: tuple) -> BaseException:
    kind, body, tb = info
    exc = pickle.loads(body) if kind == "pickle" else RuntimeError(body)
    exc.add_note("raised in FrameReader's decoder process:\n" + tb)
    return exc


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
    the file. For libx264 that was not enough: on an AVX-512 CPU (Intel Xeon, PyAV's bundled
    x264) CRF 23 / preset medium gave a different bitstream, and different decoded pixels,
    for identical frames on every run, from the same process, with one thread. Its AVX-512
    code is the cause: with x264's CPU flags capped below AVX-512 (:func:`x264_cpu_cap`) the
    output is identical from run to run and the encode as fast. So ``bitexact`` libx264
    also caps the flags, where the CPU's flags can be read and it has AVX-512."""
    from blinkbench.core.io import atomic_path

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
                cap = x264_cpu_cap() if codec == "libx264" else None
                if cap and "asm=" not in opts.get("x264-params", ""):
                    opts["x264-params"] = ":".join(filter(None, [opts.get("x264-params", ""), f"asm={cap}"]))
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


# x264's cumulative CPU-flag names (common/cpu.c), best first, with the /proc/cpuinfo flags
# each needs; "AVX2" implies everything below it and nothing of AVX-512.
_X264_LEVELS = (
    ("AVX2", {"avx2", "avx", "fma", "bmi1", "bmi2", "abm", "sse4_2", "sse4_1", "ssse3", "pni", "sse2"}),
    ("AVX", {"avx", "sse4_2", "sse4_1", "ssse3", "pni", "sse2"}),
    ("SSE4.2", {"sse4_2", "sse4_1", "ssse3", "pni", "sse2"}),
    ("SSSE3", {"ssse3", "pni", "sse2"}),
    ("SSE2", {"sse2"}),
)


def x264_cpu_cap(cpuinfo: str | None = None) -> str | None:
    """The x264 ``asm=`` value that keeps every SIMD level this CPU has except AVX-512, or
    None where no cap is needed or possible (no AVX-512, not x86, flags unreadable).

    Never names a level the CPU lacks: forcing one would be an illegal instruction."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    if not any(f.startswith("avx512") for f in flags):
        return None
    return next((name for name, needs in _X264_LEVELS if needs <= flags), None)


def _format_for(path: Path) -> str | None:
    return {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov"}.get(path.suffix.lower())
