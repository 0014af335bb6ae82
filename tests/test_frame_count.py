"""One frame count for every container, and face crops spread over the whole video.

Matroska and WebM carry no frame count (``stream.frames == 0``), and AVI's header may count
time-base ticks instead of frames; ``video.frame_count`` must still give the number of
frames a decoder delivers. The faces step spreads its crop targets over that count, so an
adversarial ``.mkv`` written as the study writes it must give crops from the whole video,
not from its first frames.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import av
import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata
from torch import nn

from blinkbench.spine import steps
from blinkbench.video import codec as video
from blinkbench.attacks.frame import attack_video
from conftest import make_video

N = 37  # not a multiple of the detection stride, nor of anything else


def _frames(n: int = N, h: int = 48, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _decoded(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def _has_encoder(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
        return True
    except Exception:  # PyAV raises its own not-found error subclass
        return False


class Container(NamedTuple):
    suffix: str
    codec: str
    pix_fmt: str = "yuv420p"
    options: dict | None = None


CONTAINERS = {
    "mp4-h264": Container(".mp4", "libx264"),
    "mov-h264": Container(".mov", "libx264"),
    "mkv-h264": Container(".mkv", "libx264"),                 # B-frames: decode order != presentation
    "mkv-ffv1": Container(".mkv", "ffv1", "bgr0"),            # what the attacks and compressions write
    "webm-vp8": Container(".webm", "libvpx", options={"auto-alt-ref": "1", "lag-in-frames": "16"}),
    "webm-vp9": Container(".webm", "libvpx-vp9", options={"deadline": "realtime", "cpu-used": "8"}),
    "avi-mpeg4": Container(".avi", "mpeg4"),
    "avi-mjpeg": Container(".avi", "mjpeg", "yuvj420p"),
}


@pytest.mark.parametrize("case", CONTAINERS.values(), ids=CONTAINERS.keys())
def test_frame_count_matches_decoding(tmp_path, case: Container):
    if not _has_encoder(case.codec):
        pytest.skip(f"PyAV's bundled FFmpeg has no {case.codec} encoder: {case.suffix} not tested")
    p = make_video(tmp_path / f"v{case.suffix}", _frames(), fps=25, codec=case.codec, pix_fmt=case.pix_fmt,
                   options=case.options)
    assert _decoded(p) == N
    assert video.frame_count(p) == N
    assert video.frame_count(p, decode=True) == N
    assert video.probe(p).n_frames == N
    # Without counting, probe states the header's count only where it is right, else 0.
    assert video.probe(p, count_frames=False).n_frames in (0, N)


def test_matroska_has_no_header_count(tmp_path):
    """The case the count exists for: an FFV1 .mkv states 0 frames."""
    p = make_video(tmp_path / "v.mkv", _frames(), codec="ffv1", pix_fmt="bgr0")
    with av.open(str(p)) as c:
        assert c.streams.video[0].frames == 0
    assert video.frame_count(p) == N


def _tick_avi(path, n: int = N, ticks: int = 20, tb: Fraction = Fraction(1, 600)) -> None:
    """MPEG-4 in AVI with a 1/600 time base and one frame every 20 ticks (30 fps), as a remux
    of an MP4 with that time base writes it: the header states ticks, not frames."""
    with av.open(str(path), "w", format="avi") as out:
        s = out.add_stream("mpeg4", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = s.codec_context.time_base = tb
        for i, arr in enumerate(_frames(n)):
            f = av.VideoFrame.from_ndarray(arr, format="rgb24")
            f.pts, f.time_base = i * ticks, tb
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


def test_avi_header_counting_ticks_is_not_believed(tmp_path):
    p = tmp_path / "tick.avi"
    _tick_avi(p)
    with av.open(str(p)) as c:
        st = c.streams.video[0]
        assert st.frames == 20 * N and float(st.average_rate) == 600  # the header is wrong
    assert _decoded(p) == N
    assert video.frame_count(p) == N
    info = video.probe(p)
    assert info.n_frames == N
    assert info.fps == pytest.approx(30, rel=1e-6)  # what the writers of attacked copies use
    assert info.duration_s == pytest.approx(N / 30, abs=1e-6)
    reader = video.FrameReader(p)
    ts = [f.timestamp_s for f in reader]
    assert reader.fps == pytest.approx(30) and reader.n_frames_hint == 0  # the faces step's max gap uses it
    np.testing.assert_allclose(ts, np.arange(N) / 30, atol=1e-6)


def test_frame_count_of_a_broken_file(tmp_path):
    with pytest.raises(video.DecodeError):
        video.frame_count(tmp_path / "absent.mkv")
    (tmp_path / "junk.mkv").write_bytes(b"\x1aE\xdf\xa3" + bytes(500))
    with pytest.raises(video.DecodeError):
        video.frame_count(tmp_path / "junk.mkv")
    full = make_video(tmp_path / "full.mkv", _frames(60, 96, 128))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    assert 0 < video.frame_count(cut) < 60
    assert video.frame_count(cut) >= _decoded(cut)


@pytest.mark.parametrize("n", [1, 4, 5, 6, 37, 192, 193, 194, 100_003])
def test_crop_targets_cover_the_video(n):
    from blinkbench.spine.faces import _crop_targets

    every, k = 5, 16
    t = sorted(_crop_targets(n, every, k))
    assert t[0] == 0
    assert all(x % every == 0 and x < n for x in t), "every target is a detection frame inside the video"
    assert t[-1] == (n - 1) // every * every, "the last target is the last detection frame"
    assert len(t) == min(2 * k, (n - 1) // every + 1)
    assert _crop_targets(0, every, k) == set() and _crop_targets(n, every, 0) == set()


# --------------------------------------------------------------------- attacked, then re-scored

class _TinyCNN(nn.Module):
    """Any-size [0, 1] RGB crops -> one logit (the detectors' contract); seeded weights are
    enough here: the attack only needs gradients, the test looks at where crops come from."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x * 2 - 1)).mean((2, 3))).squeeze(1)


def _face_clip(path, n: int) -> None:
    """The astronaut (public domain, in scikit-image) swaying a little: a face MediaPipe sees."""
    face = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    frames = [np.roll(face, int(round(6 * np.sin(i / 6))), axis=1) for i in range(n)]
    make_video(path, frames, fps=25, options={"crf": 18})


def test_attacked_mkv_is_rescored_from_frames_spread_over_the_video(tmp_path, params):
    """Attack a short clip, write it as ``study.attack_one`` does (lossless FFV1 .mkv, the
    crop box of the faces step), run the faces step on the result: its crops must come from
    the whole video (before the fix: one crop, from frame 0)."""
    n = 90
    src = tmp_path / "src.mp4"
    _face_clip(src, n)
    clean = steps.faces_one(src, tmp_path / "src.parquet", tmp_path / "src.npz", params)
    assert clean["status"] == "ok" and clean["face_frames"] == n

    torch.manual_seed(0)
    a = params["attacks"]
    out = tmp_path / "adv.mkv"
    stats = attack_video(src, tmp_path / "src.parquet", _TinyCNN().eval(), "fgsm",
                         {**a.get("params", {}).get("fgsm", {}), "eps": 8.0}, out,
                         batch_size=a["batch_size"], seed=int(params["base"]["seed"]), square=True,
                         margin=float(params["faces"]["crops"]["margin"]))
    assert stats["status"] == "ok" and stats["verified_lossless"]
    assert stats["frames_attacked"] == n and stats["linf_max"] > 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"
        assert c.streams.video[0].frames == 0  # no count in the header: the case under test

    meta = steps.faces_one(out, tmp_path / "adv.parquet", tmp_path / "adv.npz", params)
    assert meta["status"] == "ok" and meta["n_frames"] == n
    got = np.load(tmp_path / "adv.npz")["frames"]
    k = params["faces"]["crops"]["n_per_video"]
    assert len(got) == len(set(got.tolist())) == k, f"crops from frames {got.tolist()}"
    assert got.min() < n / 4 and got.max() >= 3 * n / 4, f"crops from frames {got.tolist()}"
    assert np.all(np.diff(got) <= 2 * n / k), f"a gap in the crops: {got.tolist()}"
    # The attacked copy is re-scored from the frames the clean video was scored from.
    assert got.tolist() == np.load(tmp_path / "src.npz")["frames"].tolist()
