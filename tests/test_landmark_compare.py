"""Landmark backends compared (issue 17, point 5): the same blink detectors trained and tested
on MediaPipe and on PFLD EAR series of a tiny demo, in one table (rows: detector; columns:
backend x AUC, acc, acc_fake). Skips where ../shared/models/pfld_68.onnx is absent."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED
from demo_workdir import demo_workdir

PFLD = SHARED / "models" / "pfld_68.onnx"
DETECTORS = ["blink_rate_rule", "minirocket"]

# an end-to-end run (demo videos, face tracks, two landmark models over 8 videos): about
# 45 s of CPU, minutes on a loaded machine; the tests of the shared `compared` run carry it
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    if not PFLD.is_file():
        pytest.skip(f"{PFLD} not found: the PFLD model lives in ../shared/models (never in the repository)")
    from blinkbench.experiments import landmark_compare as lc

    cfg = {"n_real": 4, "n_fake": 4, "duration_s": 4.0, "fps": [25], "size": 160}
    work = tmp_path_factory.mktemp("landmark_compare")
    with demo_workdir(work, cfg, {
            "faces": {"crops": {"n_per_video": 0}},
            "detectors": {"enabled": DETECTORS, "min_face_s": 2.0, "series": {"window_s": 2.0, "stride_s": 1.0}},
            "attacks": {"enabled": False}, "blink_attacks": {"enabled": False}}, run=["faces"]) as params:
        df = lc.compare(params, "demo", ["mediapipe", "pfld", "no_such_backend"], pfld_model=str(PFLD))
        out = lc.write(df, "demo")
        yield params, df, out, work


@slow
def test_both_backends_train_and_score_the_same_detectors(compared):
    params, df, _, work = compared
    ok = df[df["status"] == "ok"]
    print("\n" + ok[["backend", "detector", "n_train", "n_test", "n_judged", "auc", "acc_0.5", "acc_fake"]].to_string())
    assert sorted(map(tuple, ok[["backend", "detector"]].to_numpy())) == sorted(
        (b, d) for b in ("mediapipe", "pfld") for d in DETECTORS)
    # the same videos on both sides: only the landmarks differ
    assert ok["n_test"].nunique() == 1 and ok["n_test"].iloc[0] >= 2
    for r in ok.to_dict("records"):
        assert r["n_train"] >= 2 and r["n_judged"] >= 1, r
    for r in ok.to_dict("records"):
        assert 0 <= r["acc_0.5"] <= 1 and 0 <= r["acc_fake"] <= 1
        assert r["auc"] is None or (isinstance(r["auc"], float) and 0 <= r["auc"] <= 1)
    # each backend's EAR comes from its own landmarks (478 Face Mesh points vs 68 PFLD points)
    from blinkbench.core import io

    for backend, scheme in (("mediapipe", "mediapipe"), ("pfld", "ibug68")):
        ears = sorted((work / "data" / "landmark_compare" / "demo" / backend).glob("*/ear.parquet"))
        assert ears and {io.read_meta(p).get("scheme") for p in ears if io.read_meta(p)["status"] == "ok"} == {scheme}
    # same frames, different landmark models: the EAR series differ
    vid = sorted(p.parent.name for p in (work / "data/landmark_compare/demo/mediapipe").glob("*/ear.parquet"))[0]
    mp, pf = (pd.read_parquet(work / "data/landmark_compare/demo" / b / vid / "ear.parquet") for b in ("mediapipe", "pfld"))
    assert len(mp) == len(pf) and mp["ear_mean"].notna().any() and pf["ear_mean"].notna().any()
    assert not np.allclose(mp["ear_mean"].to_numpy(), pf["ear_mean"].to_numpy(), equal_nan=True)


@slow
def test_an_unknown_backend_is_an_error_row_not_a_crash(compared):
    _, df, _, _ = compared
    bad = df[df["backend"] == "no_such_backend"]
    assert len(bad) == len(DETECTORS) and (bad["status"] == "error").all()
    assert bad["error"].str.contains("unknown landmark backend").all()


@slow
def test_one_table_rows_detector_columns_backend_by_metric(compared):
    from blinkbench.experiments import landmark_compare as lc

    _, df, _, _ = compared
    t = lc.wide(df)
    assert list(t.index) == DETECTORS
    assert list(t.columns) == [(b, m) for b in ("mediapipe", "pfld", "no_such_backend") for m in ("AUC", "acc", "acc_fake")]
    ok = df[df["status"] == "ok"].set_index(["backend", "detector"])
    for b in ("mediapipe", "pfld"):
        for d in DETECTORS:
            assert t.loc[d, (b, "acc")] == pytest.approx(ok.loc[(b, d), "acc_0.5"])
            assert t.loc[d, (b, "acc_fake")] == pytest.approx(ok.loc[(b, d), "acc_fake"])
    assert t[("no_such_backend", "acc")].isna().all()


@slow
def test_written_results_and_report_section(compared):
    from blinkbench.core import io
    from blinkbench.report.reference import landmark_section

    params, df, out, work = compared
    res = io.read_json(out)
    assert res["backends"] == ["mediapipe", "pfld", "no_such_backend"] and len(res["rows"]) == 3 * len(DETECTORS)
    assert set(res["video_status"]) >= {"mediapipe", "pfld"}
    old = os.getcwd()
    os.chdir(work)
    try:
        metrics, page = landmark_section(params, work / "reports")
    finally:
        os.chdir(old)
    r = df[(df["backend"] == "pfld") & (df["detector"] == "minirocket")].iloc[0]
    assert metrics["demo"]["pfld"]["minirocket"]["acc_fake"] == pytest.approx(r["acc_fake"])
    assert "error" in metrics["demo"]["no_such_backend"]["minirocket"]
    assert "Landmark backends compared" in page and "<table" in page and "no_such_backend" in page
    assert np.isfinite(r["acc_0.5"])


def _hand_chain(video, track, w, params):
    """What extract_backend ran by hand before it went through run_chain (issue 11.1)."""
    from blinkbench.spine import steps

    w.mkdir(parents=True, exist_ok=True)
    steps.landmarks_one(video, track, w / "landmarks.parquet", params)
    steps.ear_one(w / "landmarks.parquet", w / "ear.parquet")
    steps.blinks_one(w / "ear.parquet", w / "blinks.parquet", w / "summary.json", params)


def test_extract_backend_writes_what_the_steps_by_hand_wrote(tmp_path, monkeypatch, params):
    """One backend (MediaPipe, no model file needed) on one synthetic face video: the run_chain
    path from the shared face track on writes the same bytes as the four steps called by hand,
    and leaves the shared track alone."""
    import cv2
    from skimage import data as skdata

    from blinkbench import datasets
    from blinkbench.core import io, paths
    from blinkbench.experiments import landmark_compare as lc
    from blinkbench.spine import steps
    from conftest import make_video

    img = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    (tmp_path / "raw" / "real").mkdir(parents=True)
    make_video(tmp_path / "raw" / "real" / "face.mkv", [np.roll(img, 2 * i, axis=1) for i in range(16)], fps=25)
    monkeypatch.chdir(tmp_path)
    ds = {"adapter": "folder", "root": str(tmp_path / "raw")}
    params["datasets"] = {"t": ds}
    datasets.write_manifest(datasets.build_manifest("t", ds, params), paths.path("manifest", dataset="t"))
    assert steps.run_batch("faces", "t", params)["done"] == 1
    vid = pd.read_parquet(paths.path("manifest", dataset="t"))["video_id"][0]
    track = paths.path("faces", dataset="t", video=vid)
    track_bytes = track.read_bytes()
    p = lc.backend_params(params, "mediapipe")

    table = lc.extract_backend(p, "t", "mediapipe")
    assert list(table["status"]) == ["ok"] and track.read_bytes() == track_bytes
    _hand_chain(tmp_path / "raw" / "real" / "face.mkv", track, tmp_path / "hand", p)
    chain = lc.out_dir("t") / "mediapipe" / vid
    names = ("landmarks.parquet", "ear.parquet", "blinks.parquet", "summary.json")
    assert sorted(f.name for f in chain.iterdir()) == sorted(names)   # no faces or crops of its own
    for name in names:
        assert (chain / name).read_bytes() == (tmp_path / "hand" / name).read_bytes(), name
    assert io.read_meta(chain / "ear.parquet")["status"] == "ok"
    assert io.read_json(chain / "summary.json")["face_frames"] == 16
