"""Issue 12, point 7: the seeds' forms of Landmark Breaker's evaluation and conditions.

The 478 -> 68 map of the Face Mesh, NME over 68 points normalised by the outer eye corners,
LBmix's alternation, MPEG-4 alone as a compression condition, and the alpha x T ablation.
Real-face checks use ``../shared`` (a frame of news_presenter.mp4, MediaPipe and PFLD) and
skip without it. Frame-attack checks (CW, DeepFool, FakeRetouch) are in test_attacks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blinkbench.attacks.blink import landmark_breaker as lb
from blinkbench.spine.ear import EYE_INDICES, OUTER_CORNERS
from blinkbench.video.codec import FrameReader, probe, write_video
from blinkbench.video.compress import compress_video


# torch at one thread for the whole module (deterministic, and fair to other jobs): conftest
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------- the 478 -> 68 map

def test_map_has_68_unique_mesh_points_and_the_ear_eyes():
    m = lb.MEDIAPIPE_TO_68
    assert len(m) == 68 and len(set(m)) == 68 and all(0 <= i < 468 for i in m)   # in both mesh models
    # the six EAR points per eye of the pipeline are the 68-point eyes 36-41 / 42-47, and the
    # outer corners used to normalise are the same in both schemes
    right, left = EYE_INDICES["mediapipe"]["right"], EYE_INDICES["mediapipe"]["left"]
    assert {m[k] for k in range(36, 48)} == set(right) | set(left)
    a, b = OUTER_CORNERS["ibug68"]
    assert (m[a], m[b]) == OUTER_CORNERS["mediapipe"]


@pytest.fixture(scope="module")
def real_face(shared):
    """A frame of news_presenter.mp4: MediaPipe's 478 points (frame pixels), PFLD's 68 on a
    square crop around them (frame pixels) and the 192 x 192 crop."""
    from blinkbench.spine.landmarks.mediapipe_mesh import MediaPipeMesh
    from blinkbench.spine.landmarks.pfld import PFLD

    reader = FrameReader(shared / "samples" / "blink" / "news_presenter.mp4")
    rgb = next(f.rgb() for f in reader if f.index == 10)
    mesh = MediaPipeMesh(0.5, 0.5, static=True)
    try:
        mp = mesh.process(rgb)
    finally:
        mesh.close()
    assert mp is not None and mp.shape[0] >= 468
    (x0, y0), (x1, y1) = mp[:, :2].min(0), mp[:, :2].max(0)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.625
    X0, Y0 = int(max(0, cx - r)), int(max(0, cy - r))
    X1, Y1 = int(min(rgb.shape[1], cx + r)), int(min(rgb.shape[0], cy + r))
    crop = np.ascontiguousarray(rgb[Y0:Y1, X0:X1])
    pf = PFLD(shared / "models" / "pfld_68.onnx").process(crop)[:, :2] + [X0, Y0]
    return {"mp": mp[:, :2], "pfld": pf, "crop": lb.prepare_crop(crop)}


@pytest.mark.shared
def test_map_geometry_on_a_real_mesh_matches_pfld(real_face):
    p = real_face["mp"][list(lb.MEDIAPIPE_TO_68)]
    x, y = p[:, 0], p[:, 1]
    eyes = np.r_[36:48]
    assert x[36] == x[eyes].min() and x[45] == x[eyes].max()          # outer corners: the extremes
    assert x[36] < x[39] < x[42] < x[45]                               # right eye, then left eye, left to right
    assert x[:8].max() < x[8] < x[9:17].min() and y[8] == y[:17].max()   # jaw: left half, chin, right half
    assert y[27] < y[30] < y[33] < y[51] < y[57] < y[8]                 # bridge, tip, base, lips, chin downwards
    assert x[48] < x[51] < x[54] and x[17] < x[21] < x[22] < x[26]
    iod = np.linalg.norm(real_face["pfld"][36] - real_face["pfld"][45])
    err = np.linalg.norm(p - real_face["pfld"], axis=1) / iod
    print(f"\nmap vs PFLD (fraction of the outer-eye-corner distance): mean {err.mean():.3f}, "
          f"eye corners {np.round(err[[36, 39, 42, 45]], 3).tolist()}, max {err.max():.3f} at {err.argmax()}")
    assert err[[36, 39, 42, 45]].max() < 0.08 and err.mean() < 0.08 and err.max() < 0.3


# ---------------------------------------------------------------------- NME over 68 points

def test_nme68_uses_the_68_points_and_the_outer_eye_corners():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 100, (478, 3))
    ref[33, :2], ref[263, :2] = (10, 50), (90, 50)                     # outer corners 80 px apart
    pred = ref.copy()
    pred[:, :2] += (3.0, 4.0)                                          # every point moved by 5 px
    assert lb.nme68(pred, ref) == pytest.approx(5 / 80)
    # points outside the 68 do not count; points inside do, divided over 68
    other = [i for i in range(478) if i not in lb.MEDIAPIPE_TO_68]
    moved = ref.copy()
    moved[other, :2] += 50
    assert lb.nme68(moved, ref) == 0 and lb.nme(moved, ref) > 0
    moved = ref.copy()
    moved[lb.MEDIAPIPE_TO_68[8], 0] += 68 * 0.8                        # the chin by 0.8 x 68 px
    assert lb.nme68(moved, ref) == pytest.approx(0.8 / 80)
    # 68-point landmarks (PFLD) are used as they are, normalised by 36-45
    r68 = rng.uniform(0, 100, (68, 2))
    assert lb.nme68(r68 + (0, 2.0), r68, "ibug68") == pytest.approx(2 / np.linalg.norm(r68[36] - r68[45]))
    with pytest.raises(ValueError, match="scheme"):
        lb.nme68(r68, r68, "dlib5")


# ---------------------------------------------------------------------- LBmix

def test_lbmix_alternates_base2_and_landmark_breaker_steps():
    gen = torch.Generator().manual_seed(0)
    mix, mi, base2 = lb.make_attack("lbmix"), lb.make_attack("mifgsm"), lb.make_attack("ifgsm")
    assert mix.alternate and mix.decay == mi.decay == 0.5 and not mi.alternate
    g_mix = g_mi = torch.zeros(1, 3, 4, 4)
    for step in range(6):
        grad = torch.randn(1, 3, 4, 4, generator=gen)
        d_mix, g_mix = mix.direction(step, grad, g_mix)
        d_mi, g_mi = mi.direction(step, grad, g_mi)
        d_b2, _ = base2.direction(step, grad, torch.zeros_like(grad))
        assert torch.equal(g_mix, g_mi)                                # the momentum accumulates on every step
        assert torch.equal(d_mi, g_mi) and torch.equal(d_b2, grad)
        if step % 2 == 0:
            assert torch.equal(d_mix, grad), f"step {step}: Base2 (plain gradient)"
        else:
            assert torch.equal(d_mix, g_mix), f"step {step}: Landmark Breaker (momentum)"
        if step > 0:
            assert not torch.equal(g_mix.sign(), grad.sign())          # the two directions do differ


@pytest.mark.shared
def test_lbmix_moves_the_landmarks_of_a_real_face(real_face):
    crops = real_face["crop"][None]
    ref = lb._PortTarget.predict(crops)[0][0]
    adv = lb.make_attack("lbmix", steps=8)(crops)
    got = lb._PortTarget.predict(adv)[0][0]
    assert np.abs(adv.astype(int) - crops).max() <= 15
    assert lb.nme68(got, ref) > 0.01, "LBmix left the white-box landmarks in place"


# ---------------------------------------------------------------------- MPEG-4 alone

def test_mpeg4_alone_is_a_condition_that_writes_a_decodable_mpeg4_video(tmp_path):
    rng = np.random.default_rng(0)
    xx = np.mgrid[:48, :64][1]
    frames = [np.clip(100 + 60 * np.sin(xx / 9 + i / 3)[..., None] + rng.normal(0, 8, (48, 64, 3)), 0, 255)
              .astype(np.uint8) for i in range(6)]
    src = tmp_path / "src.mkv"
    write_video(src, iter(frames), fps=25, codec="ffv1", pix_fmt="bgr0")
    sizes, err = {}, {}
    for q in (2, 5, 20):
        dst = tmp_path / f"q{q}.mp4"
        rec = compress_video(src, dst, "mpeg4", mpeg4_qscale=q)
        assert rec["status"] == "ok" and rec["n_frames"] == len(frames), rec
        assert probe(dst).as_dict()["codec"] == "mpeg4"
        out = [f.rgb() for f in FrameReader(dst)]
        assert len(out) == len(frames) and out[0].shape == frames[0].shape
        sizes[q], err[q] = dst.stat().st_size, np.mean([np.abs(o.astype(int) - f).mean() for o, f in zip(out, frames)])
    assert sizes[2] > sizes[5] > sizes[20] and 0 < err[2] < err[20]   # the quantiser is applied
    crop = lb.compress_crop(frames[0], "mpeg4", tmp_path, clip_frames=4)   # Landmark Breaker's condition
    assert crop.shape == frames[0].shape and 0 < np.abs(crop.astype(int) - frames[0]).mean() < 20


# ---------------------------------------------------------------------- the alpha x T ablation

def test_ablation_grid_defaults_and_bad_keys():
    cfg = lb.LandmarkBreakerEval(ablation={})
    assert cfg.ablation == {"attack": "mifgsm", "alpha": (0.5, 1.0, 1.5), "steps": (14, 20, 28)}
    assert lb.LandmarkBreakerEval().ablation is None
    with pytest.raises(TypeError, match="unknown"):
        lb.LandmarkBreakerEval(ablation={"gamma": [1]})
    with pytest.raises(ValueError):
        lb.LandmarkBreakerEval(ablation={"attack": "nope"})


@pytest.mark.shared
def test_ablation_produces_the_alpha_by_t_table(real_face):
    tables = lb.run_landmark_breaker_eval(
        {"news": real_face["crop"]}, {"attacks": ["fgsm"], "conditions": ["none"], "mediapipe": False,
                                      "ablation": {"alpha": [0.5, 1.5], "steps": [2, 6]}})
    ab = tables["ablation"]
    print("\n" + ab.round(4).to_string())
    assert list(ab.columns) == lb.ABLATION_COLUMNS and len(ab) == 4
    assert sorted(zip(ab["alpha"], ab["steps"])) == [(0.5, 2), (0.5, 6), (1.5, 2), (1.5, 6)]
    assert (ab["n"] == 1).all() and (ab["nme68"] > 0).all() and (ab["linf"] <= 15).all()
    cell = ab.set_index(["alpha", "steps"])["nme68"]
    assert cell[(1.5, 6)] > cell[(0.5, 2)]                             # more budget spent, landmarks moved more
    assert "nme68" in tables["white_box"].columns
