"""The embedded demo dataset: files as declared, deterministic, human-like ground truth in
real videos, abnormal in fakes, and blinks that MediaPipe really sees."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blinkbench.spine import blinks
from blinkbench import datasets
from blinkbench.datasets import demo
from blinkbench.cli import analyze
from blinkbench.core.io import read_json
from blinkbench.video.codec import probe

CFG = {"n_real": 3, "n_fake": 4, "duration_s": 4.0, "fps": [25, 30], "size": 192}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    demo.generate(root, CFG, seed=7)
    return root


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_expected_files_and_ids_match_what_is_written(generated):
    written = {p for p in generated.rglob("*") if p.is_file()}
    assert written == set(demo.expected_files(generated, CFG))
    # Snakemake knows demo videos before they exist; the folder adapter must agree on ids.
    entries = datasets.discover("demo", {"adapter": "folder", "root": str(generated)},
                                {"base": {"seed": 1}, "splits": {"val_fraction": 0.15}})
    assert {e.video_id: str(e.path) for e in entries} == demo.video_paths(generated, CFG)
    assert list(demo.video_paths(generated, CFG)) == demo.video_ids(CFG)
    # The written splits.csv is what the adapter applies: both labels in train and in test.
    split = {e.video_id: e.split for e in entries}
    assert split == demo.splits(CFG)
    for s in ("train", "test"):
        assert {vid.split("_")[0] for vid, v in split.items() if v == s} == {"real", "fake"}, s


def test_deterministic(generated, tmp_path):
    demo.generate(tmp_path, CFG, seed=7)
    assert _digest(tmp_path) == _digest(generated)
    other = tmp_path / "other"
    demo.generate(other, CFG, seed=8)
    assert (other / "blinks.csv").read_text() != (generated / "blinks.csv").read_text()


def test_ground_truth_statistics(tmp_path):
    # Statistics over a larger plan (planning renders nothing, so this is cheap).
    cfg = {**CFG, "n_real": 40, "n_fake": 8, "duration_s": 30.0}
    plans = demo.plan(cfg, seed=3)
    real = [p for p in plans if p.label == "real"]
    durations = np.array([e.end_s - e.start_s for p in real for e in p.events])
    assert {e.kind for p in real for e in p.events} == {"blink"}
    assert durations.min() >= 0.1 - 1e-9 and durations.max() <= 0.4 + 1e-9
    rate = sum(len(p.events) for p in real) / (len(real) * cfg["duration_s"] / 60)
    assert 12 <= rate <= 22, f"real blink rate {rate:.1f}/min is not human-like"
    assert all(len(p.events) >= 1 for p in real)
    fakes = [p for p in plans if p.label == "fake"]
    assert {p.behaviour for p in fakes} == set(demo.FAKE_BEHAVIOURS)
    for p in fakes:
        kinds = [e.kind for e in p.events]
        if p.behaviour == "none":
            assert kinds == []
        elif p.behaviour == "long":
            assert kinds and set(kinds) == {"closure"}
            assert all(0.6 <= e.end_s - e.start_s <= 1.0 + 1e-9 for e in p.events)
        elif p.behaviour == "one_eye":
            assert kinds and set(kinds) == {"blink_one_eye"}
        elif p.behaviour == "rare":
            assert 1 <= len(kinds) <= max(1, round(cfg["duration_s"] / demo.RARE_PERIOD_S)) + 1


def test_written_truth_is_consistent(generated):
    """blinks.csv and demo.json agree with each other, with the videos and with the rules."""
    truth = pd.read_csv(generated / "blinks.csv")
    assert tuple(truth.columns) == demo.CSV_COLUMNS
    man = read_json(generated / "demo.json")
    videos = {v["video_id"]: v for v in man["videos"]}
    assert list(videos) == demo.video_ids(CFG)
    assert set(truth["video_id"]) <= set(videos)
    for vid, v in videos.items():
        info = probe(generated / v["path"])
        assert info.status == "ok" and info.n_frames == v["n_frames"] == round(CFG["duration_s"] * v["fps"])
        assert (info.width, info.height) == (CFG["size"], CFG["size"]) and info.fps == pytest.approx(v["fps"])
        rows = truth[truth["video_id"] == vid]
        assert (rows["label"] == v["label"]).all() and len(rows) == v["n_events"]
        fps = v["fps"]
        for r in rows.itertuples():
            # frames are where the lid is lowered, inside the planned movement, away from the ends
            assert 0 <= r.start_frame <= r.end_frame < v["n_frames"]
            assert r.start_s - 1e-4 <= r.start_frame / fps <= r.end_frame / fps <= r.end_s + 1e-4
            assert r.start_s >= demo.EDGE_MARGIN_S - 1e-4 and r.end_s <= CFG["duration_s"] - demo.EDGE_MARGIN_S + 1e-4
            d = r.end_s - r.start_s
            if r.kind == "closure":
                assert demo.LONG_MIN_S - 1e-3 <= d <= demo.LONG_MAX_S + 1e-3
            else:
                assert demo.BLINK_MIN_S - 1e-3 <= d <= demo.BLINK_MAX_S + 1e-3
        kinds = set(rows["kind"])
        if v["label"] == "real":
            assert kinds == {"blink"} and v["face_alteration"] is None
        else:
            assert v["face_alteration"]["kind"] == "blended_inner_face"
            expected = {"none": set(), "long": {"closure"}, "one_eye": {"blink_one_eye"}, "rare": {"blink"}}
            assert kinds == expected[v["blink_behaviour"]], vid
            assert (v["one_eye"] in ("left", "right")) == (v["blink_behaviour"] == "one_eye")
    assert {v["blink_behaviour"] for v in videos.values() if v["label"] == "fake"} == set(demo.FAKE_BEHAVIOURS)
    real = truth[truth["label"] == "real"]
    n_real = sum(v["label"] == "real" for v in videos.values())
    assert real["video_id"].nunique() == n_real, "every real video blinks"
    rate = len(real) / (n_real * CFG["duration_s"] / 60)
    assert 6 <= rate <= 45, f"{rate:.1f} blinks/min in the generated real videos"


def test_mediapipe_sees_the_planted_blinks(generated, params):
    """The key property: the real pipeline recovers every planted blink within 2 frames."""
    truth = pd.read_csv(generated / "blinks.csv")
    tp = n_truth = n_det = 0
    for vid, path in demo.video_paths(generated, CFG).items():
        with tempfile.TemporaryDirectory() as w:
            res = analyze(path, params, w)
            ev = pd.read_parquet(Path(w) / "blinks.parquet")
            ear = pd.read_parquet(Path(w) / "ear.parquet")
        assert res["status"] == "ok" and res["face_frames"] == res["frames"]
        t = truth[(truth["video_id"] == vid) & truth["kind"].isin(["blink", "closure"])]
        m = blinks.match_events(ev, t, tol_frames=2)
        tp, n_truth, n_det = tp + m["tp"], n_truth + m["n_truth"], n_det + m["n_detected"]
        e = ear["ear_mean"].to_numpy()
        inside = np.zeros(len(e), bool)
        for r in truth[truth["video_id"] == vid].itertuples():
            inside[max(0, r.start_frame - 2): r.end_frame + 3] = True
        open_med = np.median(e[~inside])
        for r in t.itertuples():
            assert e[r.start_frame: r.end_frame + 1].min() < 0.5 * open_med, f"{vid}: planted blink not closed"
        assert np.percentile(e[~inside], 1) > 0.75 * open_med, f"{vid}: EAR dips outside planted blinks"
        for r in truth[(truth["video_id"] == vid) & (truth["kind"] == "blink_one_eye")].itertuples():
            shut = demo.plan(CFG, seed=7)[demo.video_ids(CFG).index(vid)].eye
            other = {"left": "right", "right": "left"}[shut]
            sl = slice(r.start_frame, r.end_frame + 1)
            ear_shut, ear_other = ear[f"ear_{shut}"].to_numpy(), ear[f"ear_{other}"].to_numpy()
            assert ear_shut[sl].min() < 0.5 * np.median(ear_shut[~inside]), f"{vid}: the {shut} eye did not close"
            assert ear_other[sl].min() > 0.8 * np.median(ear_other[~inside]), f"{vid}: the {other} eye closed too"
    assert n_truth >= 5
    assert tp == n_truth, f"{tp}/{n_truth} planted events recovered"
    assert tp == n_det, f"{n_det - tp} spurious events"
