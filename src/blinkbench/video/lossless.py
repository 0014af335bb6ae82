"""Lossless video I/O shared by the attacks: FFV1 in Matroska, bit-exact, verified on request.

Adversarial videos must reach the detectors exactly as optimised (any lossy step is a separate,
named compression variant), so every attack writes them through these helpers.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from blinkbench.core.io import atomic_path
from blinkbench.video.codec import FrameReader, write_video

LOSSLESS = {"codec": "ffv1", "pix_fmt": "bgr0"}


def read_frames(path: str | Path, max_frames: int | None = None) -> list[np.ndarray]:
    """Decoded RGB uint8 frames (PyAV's rgb24 conversion) in decode order."""
    import av

    out = []
    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            out.append(fr.to_ndarray(format="rgb24"))
            if max_frames is not None and len(out) >= max_frames:
                break
    return out


def frame_digest(frame: np.ndarray) -> tuple[tuple[int, ...], int]:
    """What the lossless check compares for one frame: its shape and the CRC-32 of its
    pixels. CRC-32 is made to catch accidental changes, which is what this check is for:
    a path that is not lossless changes nearly every frame, and each changed frame escapes
    with odds 2^-32. It runs at ~4 GB/s here, where the 128-bit BLAKE2b digest it replaced
    ran at ~0.9 GB/s: 1.5 against 7.3 ms per 1080p frame, on each side of the check."""
    a = np.ascontiguousarray(frame)
    return a.shape, zlib.crc32(a)


def digesting(frames, digests: list):
    """``frames`` passed through, each one's :func:`frame_digest` appended to ``digests``
    on the way (for :func:`differing_frames` once they are written)."""
    for f in frames:
        digests.append(frame_digest(f))
        yield f


def differing_frames(path: str | Path, digests: list) -> int:
    """How many frames of ``path`` decode differently from ``digests`` (:func:`frame_digest`
    of each frame written, in order), a missing or extra frame counting as one."""
    k = bad = 0
    for f in FrameReader(path):
        bad += k >= len(digests) or frame_digest(f.rgb()) != digests[k]
        k += 1
    return bad + max(0, len(digests) - k)


def write_lossless(path: str | Path, frames, fps: float, verify: bool = True) -> int:
    """RGB frames to a lossless ``.mkv`` as :mod:`blinkbench.attacks.frame.video` writes adversarial
    videos (FFV1, pixel format bgr0, bit-exact flags, atomic); with ``verify`` the file is
    decoded again and compared frame by frame (:func:`frame_digest`), so "lossless" is checked;
    a file that fails the check is not left at ``path``."""
    if Path(path).suffix.lower() != ".mkv":
        raise ValueError(f"lossless output is FFV1 in Matroska: {path} must end in .mkv")
    digests: list = []
    with atomic_path(path) as tmp:      # ``path`` appears only once the check has passed
        n = write_video(tmp, digesting(frames, digests), fps=fps, bitexact=True, **LOSSLESS)
        if verify and n and differing_frames(tmp, digests):
            raise RuntimeError(f"lossless check failed for {path}: decoded frames differ from the written ones")
    return n
