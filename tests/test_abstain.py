"""Abstention: a blink verdict carries the face duration it rests on, and below
``detectors.min_face_s`` the verdict is ``insufficient`` (in `detect`, `analyze --json`, the
evaluation metrics with their coverage, and the report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blinkbench.spine import blinks
from blinkbench.core import config, io
from blinkbench.experiments import protocol

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("face_s, sufficient", [(6.99, False), (7.0, True), (30.0, True), (float("nan"), False),
                                                (None, False)])
def test_evidence_threshold(face_s, sufficient):
    ev = blinks.evidence({"face_duration_s": face_s}, 7.0)
    assert ev["sufficient"] is sufficient and ev["min_face_s"] == 7.0
    assert blinks.verdict(0.9, ev) == ("fake" if sufficient else "insufficient")
    assert blinks.verdict(0.1, ev) == ("real" if sufficient else "insufficient")
    assert blinks.verdict(None, ev) == "unknown"


def test_min_face_default_and_bounds():
    p = config.validate({"datasets": {}})
    assert p["detectors"]["min_face_s"] == 7.0
    with pytest.raises(config.ParamsError, match="min_face_s"):
        config.validate({"datasets": {}, "detectors": {"min_face_s": -1}})


def test_evaluation_leaves_abstained_videos_out_of_the_metrics(tmp_path):
    table = pd.DataFrame({"video_id": ["a", "b", "c", "d", "e"], "label": ["real", "fake", "real", "fake", "fake"],
                          "split": "test", "status": ["ok", "ok", "ok", "ok", "no_face"]})
    # "d" is a fake scored as real, but on 3 s of face: it must not count against the detector
    scores = {"a": 0.1, "b": 0.9, "c": 0.2, "d": 0.05}
    ev = {v: blinks.evidence({"face_duration_s": s}, 7.0) for v, s in {"a": 10, "b": 12, "c": 8, "d": 3}.items()}
    outs = [tmp_path / "s.parquet", tmp_path / "m.json", tmp_path / "r.csv"]
    res = protocol._write_evaluation(table, scores, {"detector": "x", "test_dataset": "t", "status": "ok"}, *outs,
                                     evidence=ev)
    assert res["n"] == 3 and res["auc"] == 1.0 and res["acc_0.5"] == 1.0
    assert res["n_abstained"] == 1 and res["abstained"] == [{"video_id": "d", "face_duration_s": 3.0, "min_face_s": 7.0}]
    assert res["coverage"] == pytest.approx(3 / 5)           # e never scored, d abstained
    assert [r["video_id"] for r in res["skipped"]] == ["e"]
    s = pd.read_parquet(outs[0]).set_index("video_id")
    assert s.loc["d", "verdict"] == "insufficient" and s.loc["d", "score"] == pytest.approx(0.05)
    assert s.loc["d", "face_duration_s"] == 3.0 and s.loc["b", "verdict"] == "fake"
    assert json.loads(outs[1].read_text())["coverage"] == pytest.approx(0.6)
    assert res["acc_fake"] == 1.0 and res["acc_real"] == 1.0
    # the reference study's way: every video, abstained (d) and unscored (e) counted as fake
    ref = res["unknown_as_fake"]
    assert ref == {"n": 5, "n_unknown": 2, "acc": 1.0, "acc_fake": 1.0, "acc_real": 1.0}
    # without evidence (frame detectors) nothing abstains and coverage counts scored videos
    res = protocol._write_evaluation(table, scores, {"detector": "x", "test_dataset": "t", "status": "ok"}, *outs)
    assert res["n"] == 4 and res["n_abstained"] == 0 and res["coverage"] == pytest.approx(4 / 5)


@pytest.fixture(scope="module")
def rule_model(tmp_path_factory):
    from blinkbench.detectors.blink import create
    from blinkbench.testing.synthetic import synthetic_videos

    videos, y = synthetic_videos(12, 0, duration_s=(20, 30))
    path = tmp_path_factory.mktemp("rule") / "rule.zip"
    create("blink_rate_rule", seed=0).fit(videos, y).save(path)
    return path


@pytest.mark.shared
def test_detect_abstains_on_a_3_second_clip_and_judges_a_14_second_one(shared, rule_model, params, tmp_path):
    short = shared / "samples/blink/talking_crop_a.mp4"      # 3 s, one annotated blink
    r = protocol.detect_video(rule_model, short, params, tmp_path / "short")
    assert r["status"] == "ok" and r["verdict"] == "insufficient"
    assert r["face_duration_s"] == pytest.approx(3.0, abs=0.2) and r["min_face_s"] == 7.0
    assert 0.0 <= r["probability"] <= 1.0                     # the score is still reported
    long = shared / "samples/blink/selfie_blinks.mp4"        # 14 s, six blinks
    r = protocol.detect_video(rule_model, long, params, tmp_path / "long")
    assert r["verdict"] == "real" and r["face_duration_s"] > 13


@pytest.mark.shared
def test_cli_says_why_it_abstains(shared, rule_model, tmp_path):
    short = str(shared / "samples/blink/talking_crop_a.mp4")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([str(BIN / "blinkbench"), "detect", short, "--model", str(rule_model),
                        "--params", str(root / "params.yaml")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "insufficient" in r.stdout and "a verdict needs 7 s" in r.stdout
    r = subprocess.run([str(BIN / "blinkbench"), "analyze", short, "--json", "--params", str(root / "params.yaml")],
                       capture_output=True, text=True, cwd=tmp_path)
    out = json.loads(r.stdout)
    assert out["evidence"]["sufficient"] is False and out["evidence"]["face_duration_s"] < 7
    assert any("insufficient evidence" in w for w in out["warnings"])


def test_unknown_as_fake_counts_abstentions_against_reals():
    from blinkbench.detectors.evaluation import unknown_as_fake

    # a real video without a verdict is an error in the reference's counting, a fake one a hit
    r = unknown_as_fake([0, 0, 1, 1], ["real", "insufficient", "unknown", "real"])
    assert r == {"n": 4, "n_unknown": 2, "acc": 0.5, "acc_fake": 0.5, "acc_real": 0.5}
