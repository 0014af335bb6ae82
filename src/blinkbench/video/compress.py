"""Compression variants of a (lossless) adversarial video: does the attack survive delivery?

``compress_video(src, dst, variant)``, variants:

=============== ============================================================= ==========
variant         what                                                          dst file
=============== ============================================================= ==========
``none``        the decoded frames, re-written losslessly (FFV1 bgr0)         ``.mkv``
``jpeg75``      each frame JPEG-coded at quality 75 (OpenCV/libjpeg, 4:2:0    ``.mkv``
                chroma, OpenCV's default) and decoded, written losslessly:
                only the JPEG loss remains
``jpeg50``      the same at quality 50                                        ``.mkv``
``h264_crf23``  libx264, yuv420p, CRF 23, preset medium (x264's and FFmpeg's  ``.mp4``
                defaults; about FaceForensics++ "c23")                        or ``.mkv``
``mpeg4``       MPEG-4 Part 2 alone (PyAV ``mpeg4``, yuv420p, fixed quantiser  ``.mp4``
                ``qscale`` 5, as ``ffmpeg -c:v mpeg4 -q:v 5``), the file itself   or ``.mkv``
                (Landmark Breaker's MPEG-4 condition; seed 001)
``mpeg4_h264``  double compression: MPEG-4 Part 2 (PyAV ``mpeg4``, yuv420p,   ``.mp4``
                fixed quantiser ``qscale`` 5, as ``ffmpeg -c:v mpeg4 -q:v 5``:  or ``.mkv``
                a constant quality where a bitrate would depend on the
                content), decoded, then H.264 CRF 23 as above
=============== ============================================================= ==========

The MPEG-4 stage runs encoder and decoder back to back in memory (no B-frames, one packet
per frame), so no intermediate file is written. Encoders run single-threaded with
bit-exact flags: the same input gives the same file. H.264 and MPEG-4 need even frame
sizes at 4:2:0; an odd-sized input is padded by one replicated row/column (a warning
says so) and the output is then one pixel larger. Bad input (missing, unreadable, no
frames, decode failure) never raises: the returned dict has the ``status`` and ``error``,
and ``dst`` is an empty (0-byte) file. Writes are atomic.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from blinkbench.core import io
from blinkbench.video.codec import OK, FrameReader, probe, write_video

log = logging.getLogger(__name__)

VARIANTS = ("none", "jpeg75", "jpeg50", "h264_crf23", "mpeg4", "mpeg4_h264")
JPEG_QUALITY = {"jpeg75": 75, "jpeg50": 50}
H264 = {"codec": "libx264", "pix_fmt": "yuv420p", "options": {"crf": 23, "preset": "medium"}}
MPEG4_QSCALE = 5
FF_QP2LAMBDA = 118          # FFmpeg's quantiser -> lambda factor (global_quality = q * 118)


def compress_video(src: str | Path, dst: str | Path, variant: str, *, mpeg4_qscale: int = MPEG4_QSCALE) -> dict:
    """Write the ``variant`` of ``src`` to ``dst`` (see the module docstring); returns a
    record: status, error, warnings, n_frames, width, height, wall_s."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown compression variant {variant!r}; known: {', '.join(VARIANTS)}")
    dst = Path(dst)
    lossless_out = variant in ("none", "jpeg75", "jpeg50")
    allowed = (".mkv",) if lossless_out else (".mp4", ".mkv")
    if dst.suffix.lower() not in allowed:
        raise ValueError(f"{variant}: dst must end in {' or '.join(allowed)}, got {dst}")
    rec = {"variant": variant, "src": str(src), "dst": str(dst), "status": OK, "error": "", "warnings": [],
           "n_frames": 0, "width": 0, "height": 0}
    t0 = time.perf_counter()
    info = probe(src)
    if info.status != OK:
        rec.update(status=info.status, error=info.error)
    else:
        fps = info.fps if info.fps == info.fps and info.fps > 0 else 25.0
        reader = FrameReader(src)
        frames = _even(_decoded(reader), rec) if not lossless_out else _decoded(reader)
        try:
            if variant == "none":
                n = write_video(dst, frames, fps, codec="ffv1", pix_fmt="bgr0", bitexact=True)
            elif lossless_out:
                n = write_video(dst, (jpeg(f, JPEG_QUALITY[variant]) for f in frames), fps, codec="ffv1",
                                pix_fmt="bgr0", bitexact=True)
            elif variant == "h264_crf23":
                n = write_video(dst, frames, fps, bitexact=True, **H264)
            elif variant == "mpeg4":
                n = write_video(dst, frames, fps, bitexact=True, **mpeg4_codec(mpeg4_qscale))
            else:
                n = write_video(dst, mpeg4_roundtrip(frames, fps, mpeg4_qscale), fps, bitexact=True, **H264)
            rec["n_frames"] = n
            if reader.error:
                rec["warnings"].append(reader.error)
        except Exception as exc:  # a broken source must not stop a run
            log.error("compress %s of %s failed: %s", variant, src, exc)
            rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
    if rec["status"] != OK:
        with io.atomic_path(dst) as tmp:
            tmp.write_bytes(b"")
    else:
        rec["width"], rec["height"] = rec.get("width") or info.width, rec.get("height") or info.height
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def _decoded(reader: FrameReader) -> Iterator[np.ndarray]:
    for fr in reader:
        yield fr.rgb()


def _even(frames: Iterator[np.ndarray], rec: dict) -> Iterator[np.ndarray]:
    """Pad odd-sized frames by one replicated row/column (4:2:0 codecs need even sizes)."""
    for f in frames:
        h, w = f.shape[:2]
        if h % 2 or w % 2:
            if not rec["warnings"] or "padded" not in rec["warnings"][-1]:
                rec["warnings"].append(f"odd size {w}x{h} padded to {w + w % 2}x{h + h % 2} for 4:2:0")
            f = np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        rec["width"], rec["height"] = f.shape[1], f.shape[0]
        yield f


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` (uint8) through a JPEG encode/decode at ``quality`` (OpenCV, libjpeg)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def mpeg4_codec(qscale: int) -> dict:
    """:func:`write_video` arguments for MPEG-4 Part 2 at a fixed quantiser ``qscale``, as
    ``qmin = qmax = qscale`` (through PyAV's stream options the qscale flag and
    global_quality of ``ffmpeg -q:v`` had no effect here: the same file for q 2, 5 and 20)."""
    return {"codec": "mpeg4", "pix_fmt": "yuv420p", "options": {"qmin": int(qscale), "qmax": int(qscale)}}


def mpeg4_roundtrip(frames: Iterator[np.ndarray], fps: float, qscale: int) -> Iterator[np.ndarray]:
    """Frames through MPEG-4 Part 2 at a fixed quantiser and back (encoder and decoder in
    memory, in order); frame sizes must be even."""
    enc = dec = None
    i = 0
    for f in frames:
        if enc is None:
            enc = av.CodecContext.create("mpeg4", "w")
            enc.height, enc.width = f.shape[:2]
            enc.pix_fmt = "yuv420p"
            rate = Fraction(fps).limit_denominator(1001)
            enc.time_base, enc.framerate = 1 / rate, rate
            enc.qscale = True
            enc.global_quality = int(qscale) * FF_QP2LAMBDA
            enc.thread_count, enc.thread_type = 1, "NONE"
            # qmin = qmax fixes the quantiser (qscale/global_quality alone left it at the default)
            enc.options = {"flags": "+bitexact", "qmin": str(int(qscale)), "qmax": str(int(qscale))}
            dec = av.CodecContext.create("mpeg4", "r")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        i += 1
        for pkt in enc.encode(vf):
            for out in dec.decode(pkt):
                yield out.to_ndarray(format="rgb24")
    if enc is None:
        return
    for pkt in enc.encode(None):
        for out in dec.decode(pkt):
            yield out.to_ndarray(format="rgb24")
    for out in dec.decode(None):
        yield out.to_ndarray(format="rgb24")
