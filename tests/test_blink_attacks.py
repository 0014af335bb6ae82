"""Attacks on the blink path: Landmark Breaker on the Face Mesh port and EAR attacks on videos.

Fast tests check the pieces on synthetic inputs (heat-map rendering, the perturbation's
exact crop, the detector's series preparation in torch, the blink schedule, bad input).
``shared`` tests run on real faces from ``../shared/samples/blink``: the first 2.5 s of
``selfie_blinks.mp4`` (two annotated blinks), written losslessly so the clean and the
attacked videos go through the same decoding.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch

from blinkbench.detectors.blink import series
from blinkbench.attacks.blink import ear_attack as ea
from blinkbench.attacks.blink import landmark_breaker as lb
from blinkbench.mesh_torch import crop_affine
from blinkbench.video.lossless import read_frames, write_lossless

SHORT_FRAMES = 60


# torch at one thread for the whole module (deterministic, and fair to other jobs): conftest
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------- heat-maps and registry

def test_separable_heatmap_cosine_equals_the_rendered_maps():
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 5, 2, generator=gen, dtype=torch.float64) * 150 + 20
    pred = ref + torch.randn(2, 5, 2, generator=gen, dtype=torch.float64) * 4
    for sigma, size in ((4.0, 64), (2.0, 192)):
        a, b = lb.render_heatmaps(pred, sigma, size), lb.render_heatmaps(ref, sigma, size)
        explicit = ((a * b).sum((-1, -2)) / (a.norm(dim=(-1, -2)) * b.norm(dim=(-1, -2)))).mean(-1)
        torch.testing.assert_close(lb.heatmap_cosine(pred, ref, sigma, size), explicit, rtol=1e-10, atol=1e-12)
    assert torch.allclose(lb.heatmap_cosine(ref, ref, 4.0, 64), torch.ones(2, dtype=torch.float64))
    # similarity falls as the points move away, and the gradient reaches the coordinates
    shifts = [lb.heatmap_cosine(ref + d, ref, 4.0, 64).mean().item() for d in (1.0, 4.0, 12.0)]
    assert shifts[0] > shifts[1] > shifts[2] > 0
    p = pred.clone().requires_grad_(True)
    lb.heatmap_cosine(p, ref, 4.0, 64).sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


class AttackCase(NamedTuple):
    name: str
    steps: int
    decay: float
    diversity: float
    surrogates: tuple[str, ...]


ATTACK_TABLE = [
    AttackCase("fgsm", 1, 0.0, 0.0, ("attention",)),
    AttackCase("ifgsm", 20, 0.0, 0.0, ("attention",)),
    AttackCase("mifgsm", 20, 0.5, 0.0, ("attention",)),
    AttackCase("landmark_breaker", 20, 0.5, 0.0, ("attention",)),
    AttackCase("difgsm", 20, 0.0, 0.5, ("attention",)),
    AttackCase("mdifgsm", 20, 0.5, 0.5, ("attention",)),
    AttackCase("mdifgsm_ens", 20, 0.5, 0.5, ("attention", "mesh")),
    AttackCase("lbmix", 20, 0.5, 0.0, ("attention",)),
]


@pytest.mark.parametrize("case", ATTACK_TABLE, ids=[c.name for c in ATTACK_TABLE])
def test_registered_attacks_have_the_papers_defaults(case):
    atk = lb.make_attack(case.name)
    assert (atk.steps, atk.decay, atk.diversity_prob, atk.surrogates) == (case.steps, case.decay, case.diversity,
                                                                          case.surrogates)
    assert atk.eps == 15.0 and (atk.step_size == 1.0 or case.name == "fgsm")
    assert atk.alpha() == pytest.approx((15.0 if case.name == "fgsm" else 1.0) / 255)
    assert lb.make_attack(case.name, eps=4).eps == 4
    with pytest.raises(TypeError):
        lb.make_attack(case.name, epsilon=4)          # keyword-only, unknown keys rejected
    with pytest.raises(TypeError):
        lb.ATTACKS[case.name](15.0)


def test_bad_attack_settings_are_rejected():
    with pytest.raises(KeyError, match="unknown landmark attack"):
        lb.make_attack("pgd_l2")
    with pytest.raises(ValueError):
        lb.make_attack("mifgsm", landmarks="lips")
    with pytest.raises(ValueError):
        lb.make_attack("difgsm", diversity_prob=1.5)
    with pytest.raises(ValueError, match="192x192"):
        lb.make_attack("fgsm")(np.zeros((1, 64, 64, 3), np.uint8))


def test_nme_uses_the_outer_eye_corners():
    ref = np.zeros((478, 2))
    ref[33], ref[263] = (0, 0), (10, 0)
    pred = ref + [3.0, 4.0]                                    # every point moved by 5 px
    assert lb.nme(pred, ref) == pytest.approx(0.5)
    ref68 = np.zeros((68, 2))
    ref68[36], ref68[45] = (0, 0), (0, 20)
    assert lb.nme(ref68 + [0, 1.0], ref68, "ibug68") == pytest.approx(0.05)


# ---------------------------------------------------------------------- EAR attack pieces

def _random_affines(rng, n, side_range, size, h, w):
    centre = np.stack([rng.uniform(0.3 * w, 0.7 * w, n), rng.uniform(0.3 * h, 0.7 * h, n)], 1)
    return centre, rng.uniform(*side_range, n), rng.uniform(-0.3, 0.3, n)


def test_perturbation_crop_is_the_crop_of_the_rendered_frame():
    """The optimisation's shortcut equals rendering the perturbation into the frame and
    cropping it as the model's input is cropped (including off-frame ROIs)."""
    rng = np.random.default_rng(0)
    h, w, d = 90, 120, 24
    centre, side, angle = _random_affines(rng, 3, (40, 160), d, h, w)
    centre[2] = (5, 8)                                          # a ROI hanging off the frame
    daff = ea.roi_affine(centre, side, angle, d)
    caff = ea.roi_affine(centre + rng.normal(0, 2, (3, 2)), side * 1.02, angle + 0.01, 32)
    delta = torch.as_tensor(rng.uniform(-1, 1, (3, 3, d, d)), dtype=torch.float64)
    fast = ea.perturbation_crop(delta, torch.as_tensor(daff), torch.as_tensor(caff), h, w, size=32)
    for k in range(3):
        patch, (x0, y0) = ea.render_frame_perturbation(delta[k], daff[k], h, w)
        frame = np.zeros((h, w, 3), np.float64)
        frame[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
        ref = crop_affine(torch.as_tensor(frame).permute(2, 0, 1)[None], torch.as_tensor(caff[k : k + 1]), 32)
        torch.testing.assert_close(fast[k : k + 1], ref, rtol=0, atol=2e-6)
        assert np.abs(patch).max() <= 1.0 + 1e-6            # bilinear warping never exceeds the budget


@pytest.mark.parametrize("kind", ea.PERTURBATIONS)
def test_perturbation_weights_are_convex(kind):
    t = np.arange(50) / 25.0
    env = np.clip(np.sin(t * 3), 0, 1)
    pert = ea.Perturbation(kind, 50, t, 16, n_keys=4, envelope=env)
    w = pert.weights.numpy()
    assert (w >= 0).all() and np.allclose(w.sum(1), 1)
    pert.params.uniform_(-1, 1).clamp_(-0.5, 0.5)
    assert pert.frames(np.arange(50)).abs().max() <= 0.5 + 1e-6
    if kind == "shared":
        assert torch.equal(pert.frames(np.array([0]))[0], pert.frames(np.array([49]))[0])
    else:
        assert not torch.equal(pert.frames(np.array([0]))[0], pert.frames(np.array([20]))[0])


@pytest.mark.parametrize("normalise", series.NORMALISATIONS)
def test_series_operator_reproduces_the_detectors_windows(normalise):
    rng = np.random.default_rng(1)
    t = np.sort(np.cumsum(rng.uniform(0.03, 0.05, 400)))     # ~25 fps, slightly irregular
    ear = 0.3 + 0.01 * rng.normal(size=len(t))
    valid = np.ones(len(t), bool)
    valid[50:53] = False                                     # a short gap: interpolated
    valid[200:240] = False                                   # a long gap: masked
    cfg = series.SeriesConfig(normalise=normalise, window_s=4.0, stride_s=1.5)
    W, M = series.windows(series.prepare(series.VideoSeries("v", t, np.where(valid, ear, np.nan)), cfg), cfg)
    op = ea.SeriesOperator(t, valid, cfg)
    e = torch.tensor(np.where(valid, ear, 0.0), requires_grad=True)
    Wt, Mt = op.windows(e)
    np.testing.assert_allclose(Wt.detach().numpy(), W, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(Mt.numpy(), M)
    Wt.sum().backward()
    assert torch.isfinite(e.grad).all() and e.grad[valid].abs().sum() > 0
    assert (e.grad[~valid] == 0).all()


def test_injected_blinks_look_natural():
    p = ea.EarAttackParams(seed=3)
    blinks = ea.draw_blinks(600.0, p)
    starts = np.array([s for s, _ in blinks])
    durs = np.array([d for _, d in blinks])
    assert 12 <= len(blinks) / 10 <= 22                         # ~17 per minute
    assert durs.min() >= 100 and durs.max() <= 400
    ibi = np.diff(starts)
    assert ibi.min() >= p.inject_min_ibi_s and 0.2 < ibi.std() / ibi.mean() < 1.0
    assert ea.draw_blinks(600.0, p) == blinks                  # seeded
    t = np.linspace(0, 0.3, 301)
    prof = ea.blink_profile(t, 0.0, 0.3)
    assert prof.max() == pytest.approx(1.0) and prof[0] == 0 and prof[-1] == pytest.approx(0, abs=1e-12)
    assert t[prof.argmax()] == pytest.approx(ea.CLOSING_SHARE * 0.3, abs=2e-3)   # fast closing, slow opening
    # blinks avoid the video's own events, and those keep their clean EAR in the target
    tt = np.arange(250) / 25
    clean = np.full(250, 0.3)
    clean[100:104] = 0.05
    events = pd.DataFrame({"start_s": [4.0], "end_s": [4.16], "kind": ["blink"]})
    target = ea.make_target("inject", tt, clean, ea.EarAttackParams(seed=1),
                            {"baseline_window_s": 8.0, "baseline_quantile": 0.8}, events)
    assert all(s + d / 1000 + 0.3 < 4.0 or s - 0.3 > 4.16 for s, d in target.blinks)
    np.testing.assert_allclose(target.ear[100:104], 0.05)
    injected = target.weight > 0
    assert injected.any() and not injected[100:104].any()
    assert target.ratio[injected].min() == pytest.approx(0.2, abs=0.05)   # dips to ~0.2 x open


def test_short_clips_get_the_blinks_their_rate_asks_for():
    """An 8 s demo clip at 17/min wants round(8 / 3.53) = 2 blinks: every seed gives 2 (one
    draw of the renewal process alone gave 1 for some seeds), natural durations, apart."""
    for seed in range(40):
        p = ea.EarAttackParams(seed=seed)
        blinks = ea.draw_blinks(7.96, p)
        assert len(blinks) == 2, (seed, blinks)
        (s0, d0), (s1, d1) = blinks
        assert s1 - (s0 + d0 / 1000) >= p.inject_min_ibi_s - 1e-9 and s1 + d1 / 1000 < 7.96 - 0.1
    assert ea.EarAttackParams().perturbation_for("inject") == "envelope"
    assert ea.EarAttackParams().perturbation_for("suppress") == "shared"
    assert ea.EarAttackParams(perturbation="keyframes").perturbation_for("inject") == "keyframes"


def test_params_are_keyword_only_and_checked():
    with pytest.raises(TypeError):
        ea.EarAttackParams(8.0)
    with pytest.raises(TypeError):
        ea.EarAttackParams.from_params({"epsilon": 8})
    with pytest.raises(ValueError):
        ea.EarAttackParams(perturbation="per_frame")
    p = ea.EarAttackParams.from_params({"inject_duration_ms": [150, 300], "compressions": ["jpeg75"]})
    assert p.inject_duration_ms == (150.0, 300.0) and p.compressions == ("jpeg75",)


# ---------------------------------------------------------------------- bad input

def test_bad_videos_give_a_status_never_a_crash(tmp_path, flat_video):
    res = ea.run_ear_attack(tmp_path / "missing.mp4", tmp_path / "missing", "suppress")
    assert res["status"] == "missing"
    assert json.loads((tmp_path / "missing" / "result.json").read_text())["status"] == "missing"
    res = ea.run_ear_attack(flat_video, tmp_path / "flat", "inject", {"compressions": []})
    assert res["status"] == "no_face" and (tmp_path / "flat" / "result.json").exists()
    res = ea.run_ear_attack(flat_video, tmp_path / "mode", "blink_harder")
    assert res["status"] == "error" and "mode" in res["error"]
    res = ea.run_ear_attack(flat_video, tmp_path / "params", "inject", {"eps": -1})
    assert res["status"] == "error" and (tmp_path / "params" / "result.json").exists()


def test_bad_crops_are_listed_not_fatal():
    gray = np.full((192, 192, 3), 128, np.uint8)
    tables = lb.run_landmark_breaker_eval({"gray": gray, "bad": np.zeros((5, 5), np.uint8)},
                                          {"attacks": ["fgsm"], "conditions": ["none"], "mediapipe": False})
    status = dict(zip(tables["images"]["image"], tables["images"]["status"]))
    assert status == {"gray": "no_face", "bad": "bad_input"}
    assert tables["per_image"].empty and tables["white_box"].empty


# ---------------------------------------------------------------------- real faces

@pytest.fixture(scope="module")
def short_clip(shared, tmp_path_factory):
    """The first 2.5 s of selfie_blinks.mp4 as a lossless clip, its clean pipeline run, and
    the annotated blinks inside it."""
    from conftest import _params

    folder = tmp_path_factory.mktemp("blink_attacks")
    frames = read_frames(shared / "samples" / "blink" / "selfie_blinks.mp4", SHORT_FRAMES)
    path = folder / "selfie_short.mkv"
    write_lossless(path, frames, 24.0)
    run = ea.run_pipeline(path, folder / "clean", ea.pipeline_params(_params()))
    assert run["status"] == "ok", run
    ann = pd.read_csv(shared / "samples" / "blink" / "annotations.csv")
    ann = ann[(ann.video == "selfie_blinks.mp4") & (ann.end_frame < SHORT_FRAMES)]
    assert len(ann) == 2
    return {"path": path, "frames": frames, "run": run, "blinks": ann, "params": _params()}


@pytest.fixture(scope="module")
def real_crops(short_clip):
    """192x192 model inputs at open-eye frames, cut from MediaPipe's own tracking ROI."""
    from blinkbench.spine.landmarks import read_landmarks

    lms = np.concatenate([x[3] for x in read_landmarks(short_clip["run"]["paths"]["landmarks"])])
    idx = [0, 25, 33, 55]
    aff = ea.roi_affine(*ea.face_rois(lms[idx]), 192)
    x = torch.cat([crop_affine(torch.from_numpy(short_clip["frames"][i]).permute(2, 0, 1)[None].float() / 255,
                               torch.as_tensor(aff[k : k + 1], dtype=torch.float32), 192) for k, i in enumerate(idx)])
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def _white_box_nme(crops, adv):
    ref, _ = lb._PortTarget.predict(crops)
    got, _ = lb._PortTarget.predict(adv)
    return float(np.mean([lb.nme(got[k], ref[k]) for k in range(len(crops))]))


@pytest.mark.shared
def test_nme_rises_with_epsilon_on_real_faces(real_crops):
    nmes = {}
    for eps in (0, 4, 8, 15):
        adv = lb.make_attack("mifgsm", eps=eps)(real_crops)
        assert np.abs(adv.astype(int) - real_crops).max() <= eps
        nmes[eps] = _white_box_nme(real_crops, adv)
    print(f"\nwhite-box NME (MI-FGSM, T=20) by eps: {nmes}")
    assert nmes[0] < 1e-3
    assert nmes[0] < nmes[4] < nmes[8] < nmes[15]
    assert nmes[4] > 0.02 and nmes[15] > 2 * nmes[4]


@pytest.mark.shared
def test_landmark_breaker_evaluation_on_real_faces(real_crops, shared):
    """Paper defaults: MI-FGSM beats FGSM in the white box; the tables cover MediaPipe's
    runtime, PFLD and the compressions; the compressed clean crops are the baseline."""
    tables = lb.run_landmark_breaker_eval(
        list(real_crops), {"attacks": ["fgsm", "mifgsm", "mdifgsm"], "conditions": ["none", "jpeg75", "h264_crf23"],
                           "pfld_model": str(shared / "models" / "pfld_68.onnx")})
    wb = tables["white_box"].set_index("attack")
    tr = tables["transfer"].set_index(["attack", "target"])
    comp = tables["compression"].set_index(["attack", "condition", "target"])
    print("\n" + wb.round(4).to_string() + "\n" + tr.round(4).to_string() + "\n" + comp.round(4).to_string())
    assert (tables["per_image"]["status"] == "ok").all()
    assert wb.loc["mifgsm", "nme"] > 2 * wb.loc["fgsm", "nme"]
    assert (wb["linf"] <= 15).all() and (wb["ssim_face"] > 0.5).all() and (wb["ssim_face"] < 1).all()
    assert {"port", "mediapipe", "pfld"} <= set(tables["transfer"]["target"])
    for cond in ("jpeg75", "h264_crf23"):
        for target in ("port", "mediapipe", "pfld"):
            baseline = comp.loc[("clean", cond, target), "nme"]
            assert baseline < 0.02                                   # compression alone barely moves landmarks
            assert comp.loc[("mifgsm", cond, target), "nme"] > baseline
    # transfer to the real runtime: clearly above what compression alone does
    assert tr.loc[("mifgsm", "mediapipe"), "nme"] > 5 * comp.loc[("clean", "jpeg75", "mediapipe"), "nme"]


@pytest.mark.shared
def test_blink_suppression_survives_real_mediapipe(short_clip, tmp_path):
    """A shared perturbation (eps 8) keeps the eyes open through the annotated blinks after
    the pipeline re-extracts the landmarks with MediaPipe; the budget holds in the decoded
    video; a blink detector is attacked end to end and scored on every condition."""
    from blinkbench.detectors.blink import create, get
    from blinkbench.testing.synthetic import synthetic_task

    train, y, _, _ = synthetic_task(16, 0, seed=0)
    det = create("fcn", seed=0, **get("fcn").test_params).fit(train, y)
    res = ea.run_ear_attack(short_clip["path"], tmp_path, "suppress",
                            {"steps": 40, "eps": 8, "compressions": ["h264_crf23"], "detector_weight": 0.5},
                            {"fcn": det}, pipeline=short_clip["params"])
    assert res["status"] == "ok", res["error"]
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "ok"
    clean = pd.read_parquet(res["conditions"]["clean"]["paths"]["ear"])["ear_mean"].to_numpy()
    adv = pd.read_parquet(res["conditions"]["lossless"]["paths"]["ear"])["ear_mean"].to_numpy()
    open_level = np.nanquantile(clean, 0.8)
    for _, b in short_clip["blinks"].iterrows():
        sl = slice(int(b.start_frame), int(b.end_frame) + 1)
        before, after = np.nanmin(clean[sl]) / open_level, np.nanmin(adv[sl]) / open_level
        print(f"\nblink {b.start_frame}-{b.end_frame}: min EAR / open level {before:.2f} -> {after:.2f}")
        assert before < 0.3 and after > 0.6
    lossless = res["conditions"]["lossless"]
    assert lossless["n_blinks"] < res["conditions"]["clean"]["n_blinks"]
    # the L-inf budget in the decoded adversarial video, measured here independently
    got = read_frames(tmp_path / "adversarial.mkv")
    diff = max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(got, short_clip["frames"]))
    assert len(got) == SHORT_FRAMES and 0 < diff <= 8 and res["perceptual"]["linf"] == diff
    assert res["perceptual"]["ssim_face_mean"] > 0.8 and res["perceptual"]["psnr_mean"] > 30
    h264 = res["conditions"]["h264_crf23"]
    assert h264["status"] == "ok" and h264["focus_mean_ratio"] is not None
    for cond in ("clean", "lossless", "h264_crf23"):
        assert 0 <= res["conditions"][cond]["detector_p_fake"]["fcn"] <= 1
    print(f"focus ratio clean {res['conditions']['clean']['focus_mean_ratio']:.2f}, lossless "
          f"{lossless['focus_mean_ratio']:.2f}, h264 {h264['focus_mean_ratio']:.2f}; p_fake "
          + str({c: round(v["detector_p_fake"]["fcn"], 3) for c, v in res["conditions"].items()}))


@pytest.mark.shared
def test_blink_injection_with_a_smooth_perturbation(short_clip, tmp_path):
    """The default (envelope) parameterisation puts a blink where the clip has none, and
    MediaPipe's blink detector finds it: the dip gets below the detector's line."""
    res = ea.run_ear_attack(short_clip["path"], tmp_path, "inject",
                            {"steps": 40, "blink_times": [[0.9, 250.0]], "compressions": []},
                            pipeline=short_clip["params"])
    assert res["status"] == "ok", res["error"]
    clean, lossless = res["conditions"]["clean"], res["conditions"]["lossless"]
    print(f"\ninjected dip, EAR / open level: clean {clean['focus_mean_ratio']:.2f} -> {lossless['focus_mean_ratio']:.2f} "
          f"(min {lossless['focus_min_ratio']:.2f}); blinks {clean['n_blinks']} -> {lossless['n_blinks']}")
    assert clean["focus_mean_ratio"] > 0.9
    assert lossless["focus_mean_ratio"] < clean["focus_mean_ratio"] - 0.25
    assert res["port"]["adv_target_ratio_error"] < 0.5 * res["port"]["clean_target_ratio_error"]
    assert lossless["injected_detected"] == 1 and lossless["n_blinks"] == clean["n_blinks"] + 1
    assert lossless["injected_min_ratio"][0] < lossless["needed_ratio"] == 0.5
    target = pd.read_parquet(tmp_path / "target.parquet")
    assert math.isclose(float(target["weight"].max()), 1.0, abs_tol=0.05)
