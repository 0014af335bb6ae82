"""The per-frame-noise analysis (blinkbench.experiments.noise_effect): exact figures on synthetic
landmarks and series with a known displacement, and one small end-to-end run over a study
layout built with the pipeline's own EAR and blink steps."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blinkbench.core import io, paths
from blinkbench.detectors.blink.series import SeriesConfig, VideoSeries
from blinkbench.experiments import noise_effect as ne
from blinkbench.spine import steps
from blinkbench.spine.landmarks.extract import landmark_schema

FPS = 25.0
EYE_W = 40.0          # corner-to-corner width of each synthetic eye, px


def eye_landmarks(opening: np.ndarray, n_points: int = 478) -> np.ndarray:
    """(T, n_points, 3) Face Mesh landmarks: both eyes' contours on ellipses of width EYE_W
    and half-height ``opening`` (px), everything else at fixed spread-out positions."""
    rng = np.random.default_rng(0)
    base = np.concatenate([rng.uniform(50, 250, (n_points, 2)), np.zeros((n_points, 1))], 1)
    T = len(opening)
    out = np.repeat(base[None], T, 0)
    for eye, cx in (("right", 100.0), ("left", 200.0)):
        idx = ne.EYE_CONTOURS["mediapipe"][eye]
        upper, lower = idx[:9], (idx[0], *idx[9:], idx[8])      # corner .. corner along each lid
        for lid, sign in ((upper, -1), (lower, 1)):
            th = np.linspace(np.pi, 0, len(lid))
            for k, p in enumerate(lid):
                out[:, p, 0] = cx + EYE_W / 2 * np.cos(th[k])
                out[:, p, 1] = 120 + sign * opening * np.sin(th[k])
    return out


def test_translation_of_the_eyes_moves_landmarks_not_ear():
    lm = eye_landmarks(np.full(30, 6.0))
    adv = lm.copy()
    pts = list(ne.EYE_POINTS["mediapipe"])
    adv[:, pts, 0] += 3.0
    adv[:, pts, 1] += 4.0
    adv[5, 159, 1] += 6.0          # one upper-lid point of the right eye, one frame
    adv[7] = np.nan                # a frame without a face in the attacked video
    d = ne.eye_displacement(lm, adv, "mediapipe")
    assert d["frames_aligned"] == 29
    assert d["eye_disp_median_px"] == pytest.approx(5.0)
    assert d["eye_disp_max_px"] == pytest.approx(math.hypot(3, 10))
    # shape change: the moved point against its eye's mean shift (6/16 of it)
    assert d["eye_shape_max_px"] == pytest.approx(6.0 * 15 / 16)
    assert d["eye_shape_median_px"] == pytest.approx(0.0, abs=1e-12)
    from blinkbench.spine.ear import ear_from_landmarks

    lc, rc = ear_from_landmarks(lm, "mediapipe")
    la, ra = ear_from_landmarks(adv, "mediapipe")
    keep = np.r_[0:5, 6, 8:30]
    np.testing.assert_allclose((la + ra)[keep], (lc + rc)[keep])   # translation: EAR unchanged


def _ear_frame(ear: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"frame": np.arange(len(ear)), "ear_mean": ear})


def test_ear_difference_and_normalised_series_are_exact():
    n, level, delta = 100, 0.3, 0.006
    clean = np.full(n, level)
    noisy = clean + delta * (-1.0) ** np.arange(n)           # per-frame jitter +-delta
    noisy[40] = level + 0.05                                   # one larger excursion
    d = ne.ear_difference(_ear_frame(clean), _ear_frame(noisy))
    expect_rms = math.sqrt(((n - 1) * delta**2 + 0.05**2) / n)
    assert d["ear_rms"] == pytest.approx(expect_rms)
    assert d["ear_max"] == pytest.approx(0.05)
    assert d["level_change"] == pytest.approx(0.0, abs=1e-12)  # the median stays 0.3
    # after median normalisation on a 25 Hz grid (the samples themselves): differences / 0.3
    t = np.arange(n) / FPS
    cfg = SeriesConfig(rate_hz=FPS, normalise="median")
    nd = ne.normalised_difference(VideoSeries("c", t, clean), VideoSeries("a", t, noisy), cfg)
    assert nd["norm_rms"] == pytest.approx(expect_rms / level, rel=1e-5)
    assert nd["norm_max"] == pytest.approx(0.05 / level, rel=1e-5)
    assert nd["jitter_clean"] == pytest.approx(0.0, abs=1e-7)
    steps_ = np.diff(noisy) / level
    assert nd["jitter_attacked"] == pytest.approx(math.sqrt(np.mean(steps_**2)), rel=1e-5)
    assert nd["noise_clean"] == pytest.approx(0.0, abs=1e-7)
    assert nd["noise_attacked"] == pytest.approx(2 * delta / level, rel=1e-5)   # the excursion does not move it
    # a uniform scale change is undone by median normalisation but not by none
    scaled = VideoSeries("s", t, clean * 1.1)
    assert ne.normalised_difference(VideoSeries("c", t, clean), scaled, cfg)["norm_rms"] == pytest.approx(0, abs=1e-6)
    raw = ne.normalised_difference(VideoSeries("c", t, clean), scaled, SeriesConfig(rate_hz=FPS, normalise="none"))
    assert raw["norm_rms"] == pytest.approx(0.03, rel=1e-5)


def test_lid_displacement_gives_the_ear_change_it_implies():
    """Upper lid points moved up by d px change each eye's EAR by d / width exactly."""
    T, d = 20, 0.8
    lm = eye_landmarks(np.full(T, 6.0))
    adv = lm.copy()
    sign = (-1.0) ** np.arange(T)
    for eye in ("right", "left"):
        for p in ne.EYE_CONTOURS["mediapipe"][eye][1:8]:      # the upper lid between the corners
            adv[:, p, 1] -= d * sign
    from blinkbench.spine.ear import ear_from_landmarks

    ec = np.mean(ear_from_landmarks(lm, "mediapipe"), 0)
    ea = np.mean(ear_from_landmarks(adv, "mediapipe"), 0)
    diff = ne.ear_difference(_ear_frame(ec), _ear_frame(ea))
    assert diff["ear_rms"] == pytest.approx(d / EYE_W)
    assert diff["ear_max"] == pytest.approx(d / EYE_W)
    disp = ne.eye_displacement(lm, adv, "mediapipe")
    assert disp["eye_disp_max_px"] == pytest.approx(d)
    assert disp["eye_disp_median_px"] == pytest.approx(0.0)    # 14 of the 32 eye points move
    # each eye: 7 of 16 points move by d, so its mean shift is 7d/16
    assert disp["eye_shape_max_px"] == pytest.approx(9 * d / 16)
    assert disp["eye_shape_median_px"] == pytest.approx(7 * d / 16)


# ---------------------------------------------------------------------- end to end

def _write_video_artifacts(folder_or_paths, lm: np.ndarray, params: dict) -> None:
    """Landmarks parquet as the landmarks step writes it, then the real EAR and blink steps."""
    import pyarrow as pa

    lm_p, ear_p, ev_p, sum_p = folder_or_paths
    T, N = lm.shape[:2]
    f32 = lambda k: pa.array(list(lm[:, :, k].astype(np.float32)), pa.list_(pa.float32(), N))  # noqa: E731
    table = pa.table({"frame": pa.array(np.arange(T, dtype=np.int32)), "timestamp_s": np.arange(T) / FPS,
                      "face_present": np.isfinite(lm[:, 0, 0]), "x": f32(0), "y": f32(1), "z": f32(2)},
                     schema=landmark_schema(N))
    io.write_parquet(table, lm_p, {"status": "ok", "scheme": "mediapipe", "stamp": "test", "n_frames": T,
                                   "face_frames": T, "fps": FPS})
    steps.ear_one(lm_p, ear_p)
    steps.blinks_one(ear_p, ev_p, sum_p, params)


def _opening(T: int, blinks_at=(40, 130)) -> np.ndarray:
    o = np.full(T, 6.0)
    for s in blinks_at:
        o[s : s + 6] = [4, 2, 0.5, 0.5, 2, 4]
    return o


def test_study_layout_end_to_end(tmp_path, monkeypatch, params):
    """Source and study artifacts through the pipeline's EAR and blink steps; a trained
    detector; the clean set measures zero, the attacked one the known jitter; a video with
    missing artifacts is an error row, not a crash; the tables are written."""
    from blinkbench.detectors.blink import create, get
    from blinkbench.testing.synthetic import synthetic_task

    monkeypatch.chdir(tmp_path)
    p = copy.deepcopy(params)
    p["attacks"].update(enabled=True, dataset="demo", models_trained_on="demo", targets=["meso4"],
                        methods=["fgsm"], eps=[8], compressions=[])
    T, d = 200, 0.8
    man = pd.DataFrame({"video_id": ["fake_a", "fake_b", "real_t", "fake_t"], "label": ["fake", "fake", "real", "fake"],
                        "split": ["test", "test", "train", "train"], "status": "ok"})
    paths.path("manifest", dataset="demo").parent.mkdir(parents=True)
    man.to_parquet(paths.path("manifest", dataset="demo"))

    def src(vid):
        return [paths.path(k, dataset="demo", video=vid) for k in ("landmarks", "ear", "blinks", "blink_summary")]

    for vid in man["video_id"]:
        for q in src(vid):
            q.parent.mkdir(parents=True, exist_ok=True)
        _write_video_artifacts(src(vid), eye_landmarks(_opening(T) if vid != "fake_t" else np.full(T, 6.0)), p)
    clean_lm = eye_landmarks(_opening(T))
    attacked_lm = clean_lm.copy()
    for eye in ("right", "left"):
        for q in ne.EYE_CONTOURS["mediapipe"][eye][1:8]:
            attacked_lm[:, q, 1] -= d * (-1.0) ** np.arange(T)
    train, y, _, _ = synthetic_task(12, 0, seed=0)
    det = create("tsf", series=p["detectors"]["series"], seed=0, **get("tsf").test_params).fit(train, y)
    for (t, m, e, v), lm in (((*"clean none 0".split(), "none"), clean_lm), (("meso4", "fgsm", "8", "none"), attacked_lm)):
        work = paths.path("study_work", dataset="demo", target=t, method=m, eps=e, variant=v) / "fake_a"
        work.mkdir(parents=True)
        files = [work / "landmarks.parquet", work / "ear.parquet", work / "blinks.parquet", work / "summary.json"]
        _write_video_artifacts(files, lm, p)
        score = float(det.predict_proba([VideoSeries.from_artifacts("fake_a", files[1], files[3])])[0])
        io.write_json({"videos": [{"video_id": "fake_a", "status": "ok", "scores": {"blink/tsf": score}},
                                  {"video_id": "fake_b", "status": "ok", "scores": {}}]},   # no work dir: error row
                      paths.path("study", dataset="demo", target=t, method=m, eps=e, variant=v))

    tables = ne.compute(p, {"tsf": det})
    vids = tables["videos"]
    assert set(vids.loc[vids["video_id"] == "fake_b", "status"]) == {"error"}
    s = tables["summary"].set_index("target")
    assert s.loc["clean", "ear_rms"] == pytest.approx(0, abs=1e-7)
    assert s.loc["clean", "eye_disp_max_px"] == pytest.approx(0, abs=1e-6)
    assert s.loc["clean", "score_change"] == pytest.approx(0, abs=1e-9)
    # no residual, no control noise: the control is the clean score itself
    assert s.loc["clean", "score_control"] == pytest.approx(s.loc["clean", "score_clean"], abs=1e-9)
    a = s.loc["meso4"]
    assert a["ear_rms"] == pytest.approx(d / EYE_W, rel=1e-3)     # float32 landmarks
    assert a["eye_disp_max_px"] == pytest.approx(d, rel=1e-4)
    assert a["eye_shape_max_px"] == pytest.approx(9 * d / 16, rel=1e-3)
    assert a["jitter_attacked"] > 2 * a["jitter_clean"] and a["blink_change"] == 0
    src_score = float(det.predict_proba([VideoSeries.from_artifacts("fake_a", src("fake_a")[1], src("fake_a")[3])])[0])
    assert a["score_clean"] == pytest.approx(src_score)
    ref = tables["reference"].set_index("label")
    assert set(ref.index) == {"real", "fake"} and (ref["count"] == 1).all()
    assert ref.loc["real", "noise_median"] >= 0
    out = ne.write(tables, tmp_path / "out")
    back = pd.read_csv(out["summary"])
    assert len(back) == 2 and back["ear_rms"].notna().all()
    assert io.read_json(out["json"])["summary"][1]["target"] == "meso4"
    found = ne.finding(tables["summary"], tables["reference"])
    row = found["table"].iloc[0]
    assert len(found["table"]) == 1 and row["set"] == "fgsm eps 8 on meso4" and row["detector"] == "tsf"
    assert row["EAR RMS diff"] == pytest.approx(d / EYE_W, rel=1e-3)
    assert row["EAR RMS diff, compression alone"] == pytest.approx(0, abs=1e-7)
    assert "compression alone leaves it unchanged" in found["conclusion"][0]
    assert any("noise floor" in line for line in found["conclusion"]) == (found["table"]["score change"].abs() > 0).all()
    from blinkbench.report import build as report

    (tmp_path / "rep").mkdir()
    p["detectors"]["enabled"] = ["tsf"]
    det.save(paths.path("blink_model", detector="tsf", train="demo"))     # what the report loads
    metrics, page = report.noise_effect_section(p, tmp_path / "rep")
    assert "What per-frame noise does" in page and "fgsm eps 8 on meso4" in page
    assert (tmp_path / "rep" / "noise_effect.csv").exists()
    assert metrics["meso4/fgsm/eps8/none"]["tsf"]["ear_rms"] == pytest.approx(d / EYE_W, rel=1e-3)


def test_noise_control_adds_the_attacks_own_residual_in_random_order():
    t = np.arange(100) / 25.0
    clean = np.full(100, 0.30)
    clean[40:43] = 0.10                       # a blink
    clean[90:] = np.nan                       # no face at the end
    attacked = clean + np.where(np.arange(100) % 2, 0.02, -0.02)
    c = ne.noise_control(VideoSeries("v", t, clean, {"n_blinks": 1}, 1), VideoSeries("v", t, attacked), seed=3)
    added = c.ear - clean
    face = np.isfinite(clean)
    assert np.isnan(c.ear[~face]).all()                               # no face stays no face
    assert set(np.round(added[face], 6)) <= {0.02, -0.02}             # only the attack's own residual values
    assert 0 < (added[face] > 0).sum() < face.sum()                   # drawn, not copied in order
    again = ne.noise_control(VideoSeries("v", t, clean, {}, 1), VideoSeries("v", t, attacked), seed=3)
    assert np.array_equal(again.ear, c.ear, equal_nan=True) and c.label == 1 and c.summary == {"n_blinks": 1}
    assert ne.noise_control(VideoSeries("v", t, clean), VideoSeries("v", t, np.full(100, np.nan))) is None


def _ne_summary(changes, controls, ear_rms=0.02, clean_rms=0.005):
    """A noise-effect summary: the clean set and one attacked row per (detector, change, control)."""
    rows = []
    for i, (ch, ctl) in enumerate(zip(changes, controls)):
        det = f"d{i}"
        common = {"method": "pgd", "variant": "h264_crf23", "detector": det, "n": 3, "score_clean": 0.4}
        rows.append({**common, "target": "clean", "eps": 0.0, "score_attacked": 0.4, "score_change": 0.0,
                     "score_control": 0.4, "ear_rms": clean_rms, "noise_attacked": 0.01})
        rows.append({**common, "target": "meso4", "eps": 4.0, "score_attacked": 0.4 + ch, "score_change": ch,
                     "score_control": 0.4 + ctl, "ear_rms": ear_rms, "ear_max": 0.1, "eye_disp_median_px": 0.3,
                     "eye_shape_median_px": 0.1, "noise_attacked": 0.03})
    return pd.DataFrame(rows)


def test_finding_is_a_table_with_a_conclusion_computed_from_it():
    ref = pd.DataFrame([{"detector": "d0", "label": "real", "noise_median": 0.011, "jitter_median": 0.02},
                        {"detector": "d0", "label": "fake", "noise_median": 0.013, "jitter_median": 0.02}])
    found = ne.finding(_ne_summary([0.3, -0.1], [0.25, 0.0]), ref)
    t = found["table"].set_index("detector")
    assert list(t.index) == ["d0", "d1"] and set(t["set"]) == {"pgd eps 4 on meso4"}
    assert t.loc["d0", "score change"] == pytest.approx(0.3) and t.loc["d0", "control change"] == pytest.approx(0.25)
    assert t.loc["d1", "EAR RMS diff, compression alone"] == pytest.approx(0.005)
    first, second = found["conclusion"]
    assert "moved by 0.200 (median absolute change), most for d0 under pgd eps 4 on meso4, h264_crf23 (+0.300)" in first
    assert "4.0 times what compression alone does (median over 2 rows" in first
    assert "in 1 of 2 rows: per-frame noise of that size alone explains part of it" in second
    assert "noise floor (median 0.0300) against the clean train videos' (real 0.0110, fake 0.0130)" in second
    # the verdict follows the data, not a fixed claim
    assert "moves the detectors as much" in ne.finding(_ne_summary([0.3, -0.2], [0.3, -0.15]))["conclusion"][1]
    assert "does not explain" in ne.finding(_ne_summary([0.3, -0.2], [0.0, 0.05]))["conclusion"][1]


def test_finding_is_empty_without_attacked_sets():
    s = _ne_summary([0.3], [0.3])
    assert ne.finding(s[s["target"] == "clean"]) == {} and ne.finding(pd.DataFrame()) == {}


def test_finding_compares_the_ear_change_with_compression_alone_row_by_row():
    """Lossless rows (compression alone changes nothing: EAR RMS 0) do not enter the ratio;
    the table is ordered detector x compression with eps rising."""
    lossy = _ne_summary([0.3], [0.3], ear_rms=0.02, clean_rms=0.005)
    lossless = _ne_summary([0.3], [0.3], ear_rms=0.01, clean_rms=0.0).assign(variant="none")
    eps16 = lossy[lossy["target"] != "clean"].assign(eps=16.0, ear_rms=0.04)
    found = ne.finding(pd.concat([eps16, lossy, lossless], ignore_index=True))
    t = found["table"]
    assert list(zip(t["compression"], t["set"])) == [("h264_crf23", "pgd eps 4 on meso4"),
                                                     ("h264_crf23", "pgd eps 16 on meso4"),
                                                     ("none", "pgd eps 4 on meso4")]
    assert "6.0 times what compression alone does (median over 2 rows" in found["conclusion"][0]   # 4 and 8
    only_lossless = ne.finding(lossless)["conclusion"][0]
    assert "compression alone leaves it unchanged" in only_lossless


def test_cli_prints_the_finding_table_and_conclusion(tmp_path, monkeypatch, capsys):
    from blinkbench import cli

    monkeypatch.chdir(tmp_path)
    summary = _ne_summary([0.3, -0.1], [0.25, 0.0])
    monkeypatch.setattr(ne, "compute", lambda params, models=None: {"summary": summary, "reference": pd.DataFrame()})
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    assert cli.main(["noise_effect", "--params", str(params), "--out", "rep"]) == 0
    out = capsys.readouterr().out
    assert "pgd eps 4 on meso4" in out and "EAR RMS diff, compression alone" in out
    assert "in 1 of 2 rows: per-frame noise of that size alone explains part of it" in out
