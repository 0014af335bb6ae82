"""Lossless video I/O shared by the attacks: FFV1 in Matroska, bit-exact, verified on request.

Adversarial videos must reach the detectors exactly as optimised (any lossy step is a separate,
named compression variant), so every attack writes them through these helpers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def write_lossless(path: str | Path, frames, fps: float, verify: bool = True) -> int:
    """RGB frames to a lossless ``.mkv`` as :mod:`blinkbench.attacks.frame.video` writes adversarial
    videos (FFV1, pixel format bgr0, bit-exact flags, atomic); with ``verify`` the file is
    decoded again and compared frame by frame (hashes), so "lossless" is checked."""
    import hashlib

    if Path(path).suffix.lower() != ".mkv":
        raise ValueError(f"lossless output is FFV1 in Matroska: {path} must end in .mkv")
    digests: list[bytes] = []

    def hashed():
        for f in frames:
            digests.append(hashlib.blake2b(np.ascontiguousarray(f).tobytes(), digest_size=16).digest())
            yield f

    n = write_video(path, hashed(), fps=fps, bitexact=True, **LOSSLESS)
    if verify and n:
        got = [hashlib.blake2b(np.ascontiguousarray(f.rgb()).tobytes(), digest_size=16).digest()
               for f in FrameReader(path)]
        if got != digests:
            raise RuntimeError(f"lossless check failed for {path}: decoded frames differ from the written ones")
    return n
