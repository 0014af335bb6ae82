"""The spine on real footage from ../shared: blinks against human annotations, both landmark
backends, the 1080p DFDC clip, and `blinkbench analyze`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from blinkbench.spine import blinks, steps
from blinkbench.cli import analyze

pytestmark = pytest.mark.shared
BLINK_CLIPS = ["selfie_blinks.mp4", "news_presenter.mp4", "talking_crop_a.mp4", "talking_crop_b.mp4"]


@pytest.fixture(scope="module")
def analyzed(shared, tmp_path_factory, request):
    from conftest import _params

    params = _params()
    out = {}
    for clip in BLINK_CLIPS:
        w = tmp_path_factory.mktemp(clip.split(".")[0])
        out[clip] = analyze(str(shared / "samples" / "blink" / clip), params, w)
        out[clip]["events"] = pd.read_parquet(w / "blinks.parquet")
    return out


def test_annotated_blinks_found_within_two_frames(shared, analyzed):
    ann = pd.read_csv(shared / "samples" / "blink" / "annotations.csv")
    tp = n_truth = n_det = 0
    for clip in BLINK_CLIPS:
        truth = ann[ann["video"] == clip]
        m = blinks.match_events(analyzed[clip]["events"], truth, tol_frames=2)
        missed = sorted(set(range(len(truth))) - {p[0] for p in m["pairs"]})
        assert not missed, f"{clip}: annotated events {truth.iloc[missed].to_dict('records')} not found"
        tp, n_truth, n_det = tp + m["tp"], n_truth + m["n_truth"], n_det + m["n_detected"]
    print(f"\nblink events vs annotations (+-2 frames, kind must agree): precision {tp / n_det:.3f} "
          f"recall {tp / n_truth:.3f} ({tp}/{n_truth} found, {n_det} detected)")
    assert tp == n_truth
    assert tp / n_det >= 0.9


def test_closures_reported_as_closures(analyzed):
    s = analyzed["selfie_blinks.mp4"]
    assert s["n_closures"] == 2 and s["n_blinks"] == 6
    assert all(c["duration_ms"] > 2000 for c in s["closures"])
    assert all(100 <= b["duration_ms"] <= 400 for b in s["blinks"])


def test_pfld_backend_sees_the_blink(shared, tmp_path, params):
    params["landmarks"].update(backend="pfld", pfld_model=str(shared / "models" / "pfld_68.onnx"))
    clip = shared / "samples" / "blink" / "news_presenter.mp4"
    steps.faces_one(clip, tmp_path / "f.parquet", tmp_path / "c.npz", params)
    meta = steps.landmarks_one(clip, tmp_path / "f.parquet", tmp_path / "l.parquet", params)
    assert meta["status"] == "ok" and meta["n_points"] == 68 and meta["scheme"] == "ibug68"
    steps.ear_one(tmp_path / "l.parquet", tmp_path / "e.parquet")
    ear = pd.read_parquet(tmp_path / "e.parquet")
    assert ear["face_present"].all()
    low = int(np.nanargmin(ear["ear_mean"]))
    assert 71 <= low <= 79, f"PFLD EAR minimum at frame {low}, annotated blink 73-77"
    open_med = ear["ear_mean"].median()
    assert ear["ear_mean"].iloc[73:78].min() < 0.8 * open_med


def test_pfld_missing_model_is_a_status_not_a_crash(shared, tmp_path, params):
    params["landmarks"].update(backend="pfld", pfld_model=str(tmp_path / "nope.onnx"))
    clip = shared / "samples" / "blink" / "talking_crop_a.mp4"
    steps.faces_one(clip, tmp_path / "f.parquet", tmp_path / "c.npz", params)
    meta = steps.landmarks_one(clip, tmp_path / "f.parquet", tmp_path / "l.parquet", params)
    assert meta["status"] == "error" and "nope.onnx" in meta["error"]


def test_dfdc_1080p_face_track_and_crops(shared, tmp_path, params):
    clip = shared / "samples" / "dfdc" / "dfdc_train_part_49" / "lynaeydofd.mp4"
    meta = steps.faces_one(clip, tmp_path / "f.parquet", tmp_path / "c.npz", params)
    assert meta["status"] == "ok" and meta["n_frames"] == 300
    assert meta["face_frames"] >= 290
    assert meta["detections"] <= 300 // params["faces"]["detect_every"] + 1  # not every frame
    crops = np.load(tmp_path / "c.npz")
    assert crops["crops"].shape == (16, 256, 256, 3)
    assert np.all(np.diff(crops["frames"]) > 0)


def test_cli_analyze_json_and_plot(shared, tmp_path):
    clip = shared / "samples" / "blink" / "talking_crop_a.mp4"
    png = tmp_path / "ear.png"
    r = subprocess.run([sys.executable, "-m", "blinkbench", "analyze", str(clip), "--json", "--plot", str(png)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("frames", "fps", "duration_s", "face_frames", "blinks", "blink_rate_per_min", "ear_median"):
        assert key in out
    assert out["frames"] == 75 and out["fps"] == pytest.approx(25, abs=0.1)
    assert out["face_frames"] == 75
    assert [(b["start_frame"], b["end_frame"]) for b in out["blinks"]] == [(14, 17)]
    assert set(out["blinks"][0]) >= {"start_frame", "end_frame", "duration_ms"}
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_analyze_text_on_bad_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    r = subprocess.run([sys.executable, "-m", "blinkbench", "analyze", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1
    assert "status       unreadable" in r.stdout
