"""The detector protocol on demo data: train on train+val, evaluate on test, metrics and ROC
files, failures recorded rather than raised, determinism, and `blinkbench detect`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blinkbench.core import io, paths
from blinkbench.experiments import protocol
from demo_workdir import demo_workdir

DEMO = {"n_real": 3, "n_fake": 3, "duration_s": 6.0, "fps": [25, 30], "size": 192}
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory):
    """A working directory with the demo generated and run through the per-video steps."""
    work = tmp_path_factory.mktemp("proto")
    with demo_workdir(work, DEMO, {"faces": {"crops": {"n_per_video": 6, "size": 64}},
                                   # 6 s clips: below the default verdict minimum of 7 s of face
                                   "detectors": {"enabled": ["blink_rate_rule", "minirocket"], "min_face_s": 5.0,
                                                 "hyper": {"minirocket": {"num_kernels": 840}}},
                                   "frame_detectors": {"enabled": ["block_dct", "meso4"],
                                                       "hyper": {"meso4": {"epochs": 2, "input_size": 64}}}},
                      run=("faces", "landmarks", "ear", "blinks")) as params:
        yield work, params


def _sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _files(detector: str, train="demo", test="demo", family="blink") -> dict[str, Path]:
    """The protocol's files of a ``family`` (``blink`` or ``frame``) detector: ``{family}_model``,
    ``_model_info``, ``_scores``, ``_eval`` and ``_roc``."""
    w = {"detector": detector, "train": train, "test": test}
    return {k: paths.path(k, **w) for k in (f"{family}_{f}" for f in ("model", "model_info", "scores", "eval", "roc"))}


@pytest.mark.parametrize("detector", ["blink_rate_rule", "minirocket"])
def test_train_then_evaluate_on_demo(demo_project, detector):
    work, params = demo_project
    f = _files(detector)
    info = protocol.train_blink(params, detector, "demo", f["blink_model"], f["blink_model_info"])
    man = pd.read_parquet(paths.path("manifest", dataset="demo"))
    train_ids = set(man.loc[man["split"].isin(["train", "val"]), "video_id"])
    assert info["status"] == "ok" and info["n_videos"] == len(train_ids) == 4
    res = protocol.evaluate_blink(params, f["blink_model"], "demo", f["blink_scores"], f["blink_eval"], f["blink_roc"],
                                  train_dataset="demo")
    scores = pd.read_parquet(f["blink_scores"])
    # only test videos are scored: the model never saw them, and no training video is evaluated
    assert set(scores["video_id"]) == set(man.loc[man["split"] == "test", "video_id"])
    assert not (set(scores["video_id"]) & train_ids)
    assert res["n"] == 2 and res["n_fake"] == 1 and res["status"] == "ok"
    assert scores["score"].between(0, 1).all()
    assert json.loads(f["blink_eval"].read_text())["auc"] == res["auc"]
    roc = pd.read_csv(f["blink_roc"])
    assert roc["fpr"].iloc[0] == 0 and roc["tpr"].iloc[-1] == 1
    print(f"\n{detector} on the demo test pair: {res}")
    if detector == "blink_rate_rule":  # demo fakes blink abnormally: the rule sees it
        assert res["auc"] == 1.0


def test_training_is_deterministic(demo_project, tmp_path):
    _, params = demo_project
    f = _files("minirocket")
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    protocol.train_blink(params, "minirocket", "demo", a, tmp_path / "a.json")
    protocol.train_blink(params, "minirocket", "demo", b, tmp_path / "b.json")
    assert _sha(a) == _sha(b)
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_failed_training_is_recorded_and_evaluation_goes_on(demo_project, tmp_path):
    """A training set without fakes: no exception, the reason in the info, model and
    evaluation files, and the report lists it."""
    _, params = demo_project
    man_path = paths.path("manifest", dataset="demo")
    man = pd.read_parquet(man_path)
    only_real = man.assign(split=np.where(man["label"] == "fake", "test", man["split"]))
    alt = "demo_onlyreal"
    io.write_parquet(only_real, paths.path("manifest", dataset=alt), {"status": "ok"})
    for kind in ("ear", "blink_summary"):
        for vid in man["video_id"]:
            src = paths.path(kind, dataset="demo", video=vid)
            dst = paths.path(kind, dataset=alt, video=vid)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    f = _files("blink_rate_rule", train=alt, test="demo")
    info = protocol.train_blink(params, "blink_rate_rule", alt, f["blink_model"], f["blink_model_info"])
    assert info["status"] == "error" and "real and fake" in info["error"]
    res = protocol.evaluate_blink(params, f["blink_model"], "demo", f["blink_scores"], f["blink_eval"], f["blink_roc"],
                                  train_dataset=alt)
    assert res["status"] == "error" and "not trained" in res["error"] and res["auc"] is None
    assert pd.read_parquet(f["blink_scores"])["score"].isna().all()


def test_unknown_hyper_parameter_fails_at_once(demo_project, tmp_path):
    _, params = demo_project
    bad = {**params, "detectors": {**params["detectors"], "hyper": {"minirocket": {"n_kernels": 5}}}}
    with pytest.raises(TypeError, match="n_kernels"):
        protocol.train_blink(bad, "minirocket", "demo", tmp_path / "m.zip", tmp_path / "m.json")
    assert not (tmp_path / "m.zip").exists()


def test_report_has_detector_metrics_matrix_and_roc(demo_project):
    from blinkbench.report import build as report

    work, params = demo_project
    for det in ("blink_rate_rule", "minirocket"):
        f = _files(det)
        if not f["blink_eval"].exists():
            protocol.train_blink(params, det, "demo", f["blink_model"], f["blink_model_info"])
            protocol.evaluate_blink(params, f["blink_model"], "demo", f["blink_scores"], f["blink_eval"], f["blink_roc"],
                                    train_dataset="demo")
    report.build(params)
    metrics = io.read_json(paths.PATTERNS["metrics"])
    assert set(metrics["blink_detectors"]) == {"blink_rate_rule", "minirocket"}
    assert metrics["blink_detectors"]["blink_rate_rule"]["demo"]["demo"]["auc"] == 1.0
    page = Path(paths.PATTERNS["report"]).read_text()
    assert "Cross-dataset matrix" in page and "roc_blink__demo__demo.png" in page
    assert (Path(paths.PATTERNS["report"]).parent / "roc" / "blink__minirocket__demo__demo.csv").exists()
    # frame detectors not trained in this module's run: listed as missing, never invented
    assert "Frame-level detectors" in page and "frame_detectors" not in metrics


@pytest.mark.parametrize("detector", ["block_dct", "meso4"])
def test_frame_detector_protocol_on_demo(demo_project, detector):
    _, params = demo_project
    f = _files(detector, family="frame")
    info = protocol.train_frame(params, detector, "demo", f["frame_model"], f["frame_model_info"])
    assert info["status"] == "ok", info["error"]
    man = pd.read_parquet(paths.path("manifest", dataset="demo"))
    assert info["n_train_videos"] + info["n_val_videos"] == int((man["split"] != "test").sum())
    res = protocol.evaluate_frame(params, f["frame_model"], "demo", f["frame_scores"], f["frame_eval"], f["frame_roc"],
                                  train_dataset="demo")
    print(f"\n{detector} on the demo test pair: video AUC {res['auc']}, frame AUC {res['frame']['auc']}")
    assert res["status"] == "ok" and res["n"] == 2 and res["frame"]["n"] == 2 * 6
    scores = pd.read_parquet(f["frame_scores"])
    assert set(scores["video_id"]) == set(man.loc[man["split"] == "test", "video_id"])
    assert scores["score"].between(0, 1).all()


@pytest.mark.shared
def test_cli_detect_on_a_real_clip(demo_project, shared):
    work, params = demo_project
    f = _files("blink_rate_rule")
    if not f["blink_model"].exists():
        protocol.train_blink(params, "blink_rate_rule", "demo", f["blink_model"], f["blink_model_info"])
    clip = shared / "samples/blink/selfie_blinks.mp4"
    r = subprocess.run([str(BIN / "blinkbench"), "detect", str(clip), "--model", str(work / f["blink_model"]), "--json"],
                       capture_output=True, text=True, cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["detector"] == "blink_rate_rule" and out["status"] == "ok"
    assert 0.0 <= out["probability"] <= 1.0 and out["verdict"] in ("real", "fake")
    print(f"\nselfie_blinks.mp4 (real, 6 blinks + 2 closures): {out}")
    # a real person blinking at a human rate: the rule calls it real
    assert out["n_blinks"] >= 5 and out["verdict"] == "real"
    text = subprocess.run([str(BIN / "blinkbench"), "detect", str(clip), "--model", str(work / f["blink_model"])],
                          capture_output=True, text=True, cwd=work)
    assert text.returncode == 0 and "fake probability" in text.stdout


def test_study_attack_compress_rescore_and_report(demo_project):
    """The resiliency study on one demo fake video: FGSM against the trained Meso4, the clean
    reference, an H.264 variant, re-scoring by the blink path and every trained model, and
    the report's study section."""
    from blinkbench.report import build as report
    from blinkbench.experiments import study

    _, params = demo_project
    f = _files("meso4", family="frame")
    if not f["frame_model"].exists():
        protocol.train_frame(params, "meso4", "demo", f["frame_model"], f["frame_model_info"])
    b = _files("blink_rate_rule")
    if not b["blink_model"].exists():
        protocol.train_blink(params, "blink_rate_rule", "demo", b["blink_model"], b["blink_model_info"])
    params = {**params, "attacks": {**params["attacks"], "targets": ["meso4"], "methods": ["fgsm"], "eps": [8],
                                    "compressions": ["h264_crf23"]}}
    vids = study.selected_videos(params)
    assert list(vids["label"]) == ["fake"] and (vids["video_id"].str.startswith("fake_")).all()
    for t, m, e, v in study.plan(params):
        for vid in vids["video_id"]:
            lossless = study.adv_path(params, t, m, e, "none", vid)
            if v == "none":
                rec = study.attack_one(params, t, m, e, vid, lossless)
                assert rec["status"] == "ok", rec["error"]
                if t == "meso4":
                    assert rec["linf_max"] <= 8 and rec["frames_attacked"] > 0
            else:
                assert study.compress_one(lossless, study.adv_path(params, t, m, e, v, vid), v)["status"] == "ok"
        out = paths.path("study", dataset="demo", target=t, method=m, eps=e, variant=v)
        res = study.rescore_set(params, t, m, e, v, out)
        assert [r["video_id"] for r in res["videos"]] == list(vids["video_id"])
        summ = res["summary"]
        assert "blink/blink_rate_rule" in summ and "frame/meso4" in summ and "blink_path" in summ
        if t == "clean" and v == "none":
            # the clean lossless copy re-scores like the source: same blink count
            assert summ["blink_path"]["mean_blink_change"] == 0
    report.build(params)
    page = Path(paths.PATTERNS["report"]).read_text()
    assert "Resiliency study" in page and "study_meso4__fgsm.png" in page
    sweep = Path(paths.PATTERNS["report"]).parent / "study_sweep" / "meso4__fgsm__none__frame_meso4.csv"
    assert list(pd.read_csv(sweep)["eps"]) == [0.0, 8.0]  # the clean reference, then the attack
    det = io.read_json(paths.PATTERNS["metrics"])["study"]["detection_rate"]
    assert set(det) == {"clean", "meso4"} and "frame/meso4" in det["meso4"]["fgsm"]["eps8"]["none"]


def test_blink_path_attacks_wired_and_reported(demo_project):
    """The workflow's blink-path attack steps on the demo: EAR suppression of a real test
    video (re-scored by the real pipeline), Landmark Breaker tables, and the report section.
    The attacks' own behaviour is tested in test_blink_attacks.py on real clips."""
    from blinkbench.experiments import blink_study
    from blinkbench.report import build as report

    _, params = demo_project
    b = _files("blink_rate_rule")
    if not b["blink_model"].exists():
        protocol.train_blink(params, "blink_rate_rule", "demo", b["blink_model"], b["blink_model_info"])
    params = {**params, "blink_attacks": {**params["blink_attacks"], "max_videos": 1, "modes": ["suppress"],
                                          "ear": {"eps": 8, "steps": 5, "compressions": []},
                                          "landmark_breaker": {"n_crops": 1, "attacks": ["mifgsm"],
                                                               "conditions": ["none"]}}}
    vid = blink_study.videos(params, "suppress")["video_id"].iloc[0]
    assert vid.startswith("real_")
    out = paths.path("ear_attack", dataset="demo", mode="suppress", video=vid)
    res = blink_study.ear_attack_one(params, "suppress", vid, out)
    assert res["status"] == "ok", res.get("error")
    assert set(res["conditions"]) == {"clean", "lossless"}
    assert res["conditions"]["clean"]["detector_p_fake"]["blink_rate_rule"] is not None
    assert res["perceptual"]["linf"] <= 8
    lb = blink_study.landmark_breaker(params, paths.path("landmark_breaker", dataset="demo"))
    assert lb["status"] == "ok" and lb["n_crops"] == 1
    wb = pd.read_csv(lb["tables"]["white_box"])
    assert "mifgsm" in set(wb["attack"])
    report.build(params)
    page = Path(paths.PATTERNS["report"]).read_text()
    assert "Attacks on the blink path" in page and "Landmark Breaker" in page
    assert "suppress" in io.read_json(paths.PATTERNS["metrics"])["blink_attacks"]["mean_blinks"]
