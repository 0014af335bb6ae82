"""Probing and decoding: every kind of bad file gets a status, VFR is seen, crops are exact."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from blinkbench.video import codec as video
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
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))  # seeded: a few random blobs probe as audio
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


# ----------------------------------------------------------------------------- reader workers
# Process-mode prepares must be picklable: module-level functions and objects.

def _crop_and_index(f):
    return f.rgb_crop((8, 8, 40, 40)), f.index


def _fail_at_5(f):
    if f.index == 5:
        raise ZeroDivisionError("bug in prepare")
    return f.index


class _TwoArgError(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args
        super().__init__(f"{a}/{b}")


def _unpicklable_fail(f):
    if f.index == 2:
        raise _TwoArgError("x", "y")
    return f.index


def _die_at_4(f):
    if f.index == 4:
        os._exit(3)  # a decoder crash, as far as the parent can tell
    return f.index


class _Log:
    """Records each prepared frame index in a file (visible across processes)."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self, f):
        with open(self.path, "a") as fh:
            fh.write(f"{f.index}\n")
        return np.full((16, 16, 3), f.index, np.uint8)

    def count(self) -> int:
        with open(self.path) as fh:
            return len(fh.read().split())


WORKERS = pytest.mark.parametrize("worker", video.WORKERS)


@pytest.fixture(scope="module")
def clip40(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip40") / "v.mp4", _frames(40))


def test_process_reader_delivers_the_thread_readers_frames(clip40):
    ref = video.FrameReader(clip40, prepare=_crop_and_index)
    want = [(f.index, f.timestamp_s, f.data[0], f.data[1]) for f in ref]
    r = video.FrameReader(clip40, prepare=_crop_and_index, worker="process", queue_size=2)
    got = list(r)
    # Arrays kept past later frames are intact: they were copied out of the 2-slot ring.
    assert [f.index for f in got] == list(range(40))
    assert [f.timestamp_s for f in got] == [w[1] for w in want]
    for f, (_, _, rgb, idx) in zip(got, want):
        assert f.data[1] == idx
        np.testing.assert_array_equal(f.data[0], rgb)
    assert (got[0].width, got[0].height, got[0].av_frame) == (96, 64, None)
    assert (r.fps, r.n_frames_hint, r.error) == (ref.fps, ref.n_frames_hint, "")
    with pytest.raises(ValueError, match="decoder process"):
        got[0].rgb()


@WORKERS
def test_reader_queue_bounds_frames_in_flight(tmp_path, clip40, worker):
    log = _Log(tmp_path / "prepared.txt")
    it = iter(video.FrameReader(clip40, prepare=log, worker=worker, queue_size=2))
    next(it)
    deadline = time.monotonic() + 20
    while log.count() < 4 and time.monotonic() < deadline:  # 1 consumed + 2 queued + 1 waiting
        time.sleep(0.02)
    time.sleep(0.3)  # an unbounded producer would prepare all 40 frames meanwhile
    assert log.count() == 4
    rest = [f.data[0, 0, 0] for f in it]
    assert rest == list(range(1, 40))


@WORKERS
def test_reader_on_truncated_file_keeps_frames_and_records_error(tmp_path, worker):
    p = make_video(tmp_path / "ok.mkv", _frames(60))
    data = p.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    r = video.FrameReader(cut, worker=worker, prepare=_crop_and_index)
    frames = [f.data[1] for f in r]
    assert 0 < len(frames) < 60
    assert frames == list(range(len(frames)))
    ref = video.FrameReader(cut)
    assert len(list(ref)) == len(frames) and r.error == ref.error


def test_process_reader_reraises_prepare_errors_after_earlier_frames(clip40):
    got = []
    with pytest.raises(ZeroDivisionError, match="bug in prepare") as ei:
        for f in video.FrameReader(clip40, prepare=_fail_at_5, worker="process", queue_size=2):
            got.append(f.data)
    assert got == [0, 1, 2, 3, 4]
    assert any("_fail_at_5" in n for n in ei.value.__notes__)  # the child's traceback
    got = []
    with pytest.raises(RuntimeError, match="_TwoArgError: x/y"):
        for f in video.FrameReader(clip40, prepare=_unpicklable_fail, worker="process"):
            got.append(f.data)
    assert got == [0, 1]


def test_process_reader_survives_a_dying_decoder(clip40):
    r = video.FrameReader(clip40, prepare=_die_at_4, worker="process")
    got = [f.data for f in r]
    assert got == list(range(len(got))) and len(got) <= 4
    assert "exit code 3" in r.error


@WORKERS
def test_reader_cleans_up_when_the_consumer_stops_early(monkeypatch, clip40, worker):
    made = []
    real = video.shared_memory.SharedMemory

    def recording(*a, **kw):
        shm = real(*a, **kw)
        made.append(shm.name)
        return shm

    monkeypatch.setattr(video.shared_memory, "SharedMemory", recording)
    before = {t.ident for t in threading.enumerate()}
    for i, _ in enumerate(video.FrameReader(clip40, prepare=_crop_and_index, worker=worker, queue_size=2)):
        if i == 3:
            break
    assert not [p for p in multiprocessing.active_children() if p.name == "blinkbench-decode"]
    assert not [t for t in threading.enumerate() if t.ident not in before and t.name == "blinkbench-decode"]
    assert len(made) == (worker == "process")
    for name in made:  # the ring is unlinked
        with pytest.raises(FileNotFoundError):
            real(name=name)


@pytest.mark.parametrize("threads", [False, 1, 2])
def test_decoder_thread_settings_decode_the_same_pixels(clip40, threads):
    ref = [f.rgb() for f in video.FrameReader(clip40)]
    got = [f.rgb() for f in video.FrameReader(clip40, threads=threads)]
    assert len(got) == len(ref) and all(np.array_equal(a, b) for a, b in zip(got, ref))


def test_reader_rejects_bad_settings(clip40):
    with pytest.raises(ValueError, match="worker"):
        video.FrameReader(clip40, worker="fiber")
    with pytest.raises(ValueError, match="queue_size"):
        video.FrameReader(clip40, queue_size=0)
    with pytest.raises(ValueError, match="threads"):
        list(video.FrameReader(clip40, threads=0))


def _textured(n=60, h=160, w=160):
    """Moving blocks, a travelling wave and noise: enough for x264's lookahead to work."""
    rng = np.random.default_rng(0)
    xx = np.mgrid[0:h, 0:w][1]
    base = rng.integers(0, 255, (h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1)
    for t in range(n):
        f = np.roll(base, t, axis=1).astype(np.int16)
        f += (np.sin((xx + 3 * t) / 9.0) * 40)[..., None].astype(np.int16)
        f += rng.integers(-6, 7, f.shape, dtype=np.int16)
        yield np.clip(f, 0, 255).astype(np.uint8)


def test_bitexact_h264_gives_the_same_bytes_every_time(tmp_path):
    """The study's h264_crf23 condition must give the same pixels on every run: uncapped,
    this Xeon's AVX-512 x264 code gave a different file on each of 4 encodes of this clip."""
    from blinkbench.video.compress import H264

    digests = set()
    for i in range(3):
        out = tmp_path / f"{i}.mp4"
        assert video.write_video(out, _textured(), 25, bitexact=True, **H264) == 60
        digests.add(out.read_bytes())
    assert len(digests) == 1


@pytest.mark.parametrize("flags, want", [
    ("fpu sse sse2 pni ssse3 sse4_1 sse4_2 avx avx2 fma bmi1 bmi2 abm", None),  # no AVX-512: x264 as is
    ("fpu sse sse2 pni ssse3 sse4_1 sse4_2 avx avx2 fma bmi1 bmi2 abm avx512f avx512bw", "AVX2"),
    ("fpu sse sse2 pni ssse3 sse4_1 sse4_2 avx avx512f", "AVX"),  # never a level the CPU lacks
    ("", None),
])
def test_x264_cap_keeps_every_level_but_avx512(flags, want):
    cpuinfo = f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n"
    assert video.x264_cpu_cap(cpuinfo) == want


def test_lossless_check_counts_what_differs_and_catches_a_lossy_path(tmp_path, monkeypatch):
    """The lossless check (every adversarial video goes through it): frames written and
    decoded compare equal; a changed, a missing and an extra frame each count once; a write
    that is not lossless (H.264 4:2:0 standing in for FFV1) fails the check, named in the
    error, and leaves no file behind."""
    from blinkbench.video import lossless

    frames = _frames(6)
    out = tmp_path / "a.mkv"
    assert lossless.write_lossless(out, iter(frames), 25) == 6
    digests = [lossless.frame_digest(f) for f in frames]
    assert lossless.differing_frames(out, digests) == 0
    changed = frames[2].copy()
    changed[10, 20, 1] ^= 1                                   # one bit of one pixel
    assert lossless.differing_frames(out, digests[:2] + [lossless.frame_digest(changed)] + digests[3:]) == 1
    assert lossless.differing_frames(out, digests[:5]) == 1   # the file has one frame more
    assert lossless.differing_frames(out, digests + [digests[0]]) == 1   # ... one frame less
    assert lossless.frame_digest(frames[0]) != lossless.frame_digest(frames[0].reshape(96, 64, 3))  # same bytes
    monkeypatch.setattr(lossless, "LOSSLESS", {"codec": "libx264", "pix_fmt": "yuv420p"})
    with pytest.raises(RuntimeError, match="lossless check failed for .*b.mkv"):
        lossless.write_lossless(tmp_path / "b.mkv", iter(frames), 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mkv"]
