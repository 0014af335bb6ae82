"""Probing and decoding: every kind of bad file gets a status, VFR is seen, crops are exact."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from blinkbench import video
from conftest import make_video


def _frames(n, h=64, w=96):
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_probe_good_video(tmp_path):
    p = make_video(tmp_path / "ok.mp4", _frames(30), fps=30)
    info = video.probe(p)
    assert info.status == video.OK
    assert info.n_frames == 30
    assert info.fps == pytest.approx(30)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)
    assert (info.width, info.height) == (96, 64)
    assert not info.vfr


def test_probe_bad_files(tmp_path):
    good = make_video(tmp_path / "ok.mp4", _frames(30))
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(os.urandom(5000))
    data = good.read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "dir.mp4").mkdir()  # a path that exists but is no readable file
    names = ("zero.mp4", "noise.mp4", "trunc.mp4", "absent.mp4", "dir.mp4")
    statuses = {n: video.probe(tmp_path / n).status for n in names}
    assert statuses["dir.mp4"] == video.UNREADABLE
    assert statuses["absent.mp4"] == video.MISSING
    assert statuses["zero.mp4"] == video.UNREADABLE
    assert statuses["noise.mp4"] == video.UNREADABLE
    # An mp4 cut in half has its index at the end or start; either way it is not "ok" with 30 frames.
    t = video.probe(tmp_path / "trunc.mp4")
    assert t.status != video.OK or t.n_frames < 30


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_probe_unreadable(tmp_path):
    p = make_video(tmp_path / "ok.mp4", _frames(5))
    p.chmod(0)
    assert video.probe(p).status == video.UNREADABLE


def _write_vfr(path, intervals_ms):
    with av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.time_base = Fraction(1, 1000)
        pts = 0
        for i, d in enumerate(intervals_ms):
            f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 5 % 255, np.uint8), format="rgb24")
            f.pts, f.time_base = pts, Fraction(1, 1000)
            for pkt in s.encode(f):
                out.mux(pkt)
            pts += d
        for pkt in s.encode():
            out.mux(pkt)


def test_variable_frame_rate_detected_and_timestamps_true(tmp_path):
    intervals = [33] * 20 + [66] * 20 + [33] * 20
    p = tmp_path / "vfr.mkv"
    _write_vfr(p, intervals)
    info = video.probe(p)
    assert info.status == video.OK and info.vfr
    ts = [f.timestamp_s for f in video.FrameReader(p)]
    assert len(ts) == 60
    # The encoder keeps pts on its 1/30 s grid: true times to within one tick.
    np.testing.assert_allclose(ts, np.cumsum([0] + intervals[:-1]) / 1000, atol=1 / 30 + 1e-3)
    cfr = make_video(tmp_path / "cfr.mp4", _frames(30))
    assert not video.probe(cfr).vfr


def test_reader_on_truncated_file_keeps_decoded_frames(tmp_path):
    p = make_video(tmp_path / "ok.mkv", _frames(60))  # matroska: playable when cut
    data = p.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    frames = [f.index for f in video.FrameReader(cut)]
    assert 0 < len(frames) < 60
    assert frames == list(range(len(frames)))


@pytest.mark.parametrize("pix_fmt, tol", [("yuv420p", 3), ("yuv444p", 1)])
def test_rgb_crop_matches_full_conversion(tmp_path, pix_fmt, tol):
    rng = np.random.default_rng(3)
    base = np.kron(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    p = make_video(tmp_path / f"{pix_fmt}.mp4", [base] * 3, pix_fmt=pix_fmt, options={"crf": "0"})
    fr = next(iter(video.FrameReader(p)))
    assert fr.av_frame.format.name == pix_fmt
    full = fr.rgb().astype(int)
    crop = fr.rgb_crop((17, 9, 101, 77)).astype(int)  # odd edges: snapped to even
    x0, y0 = 16, 8
    ref = full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]
    assert crop.shape[0] >= 66 and crop.shape[1] >= 82
    assert np.percentile(np.abs(crop - ref), 99) <= tol


def test_write_video_atomic_on_error(tmp_path):
    def boom():
        yield np.zeros((32, 32, 3), np.uint8)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        video.write_video(tmp_path / "x.mp4", boom(), fps=25)
    assert list(tmp_path.iterdir()) == []


def test_yuv444_opencv_path_matches_numpy_reference():
    """rgb_crop's OpenCV affine conversion equals the plain NumPy BT.601 formula (to 1 level)."""
    rng = np.random.default_rng(5)
    yuv = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ref = video._bt601_limited_to_rgb(yuv).astype(int)
    fast = video._bt601_limited_to_rgb_cv(yuv).astype(int)
    assert fast.shape == ref.shape
    assert np.abs(fast - ref).max() <= 1
    assert (fast != ref).mean() < 1e-3


def test_reader_prepare_runs_in_order_and_errors_reach_consumer(tmp_path):
    p = make_video(tmp_path / "v.mp4", _frames(20))
    seen = [f.data for f in video.FrameReader(p, prepare=lambda f: f.index * 10)]
    assert seen == [i * 10 for i in range(20)]

    def bad(f):
        if f.index == 5:
            raise ZeroDivisionError("bug in prepare")
        return f.index

    got = []
    with pytest.raises(ZeroDivisionError, match="bug in prepare"):
        for f in video.FrameReader(p, prepare=bad, queue_size=2):
            got.append(f.data)
    assert got == [0, 1, 2, 3, 4]
