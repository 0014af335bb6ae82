"""The study's shape on a small version of the demo run: the demo's own Meso-4 (its
``frame_detectors.hyper.meso4`` from params.yaml, trained by the real detector class) is a
real detector of fake-looking faces, and white-box FGSM on the video, written losslessly as
the study does and re-cropped as the ``faces`` step crops for the detectors, lowers its
detection rate as eps grows: 0 -> 2 -> 8, at most 0.2 at eps 8.

Before precise batch-norm re-estimation (``frames.cnn.PreciseBatchNorm``) the demo Meso-4
scored every crop the same in eval mode and no attack moved it; this test failed then. It
failed too while the study attacked a 16-px-padded box at its native size: the attack
"succeeded" on its own crops, yet at eps 2 every re-scored crop was still called fake.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from blinkbench.detectors.frame import create
from blinkbench.detectors.frame.base import CropSet

from test_attacks import crop_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def meso4(request):
    from blinkbench.core import config
    from conftest import ROOT

    p = config.load(ROOT / "params.yaml")
    hyper = dict(p["frame_detectors"]["hyper"].get("meso4", {}))
    x, y = crop_set(256, seed=0, size=96)
    vid = np.array([f"v{i % 16}_{y[i]}" for i in range(len(y))], object)   # 32 "videos"
    train = CropSet(x, vid, y, np.arange(len(y)))
    val_ids = sorted({v for v in vid if v.startswith(("v0_", "v1_"))})
    det = create("meso4", seed=int(p["base"]["seed"]), **hyper)
    det.fit(train.subset(sorted(set(vid) - set(val_ids))), train.subset(val_ids))
    return det, p


def test_demo_meso4_is_a_real_detector(meso4):
    det, _ = meso4
    x, y = crop_set(128, seed=3, size=96)
    s = det.predict_frames(x)
    assert roc_auc_score(y, s) >= 0.9, f"clean AUC {roc_auc_score(y, s):.2f}"
    assert float(np.std(det.predict_logits(x))) > 0.1      # not one constant logit for every crop


@pytest.fixture(scope="module")
def small_demo_study(tmp_path_factory):
    """A small version of the demo's own run: the demo generator, the per-video steps, the
    demo's Meso4 settings from params.yaml, then the study's attack and re-scoring functions
    (study.attack_one: the faces step's box, written losslessly; study.rescore_set: the faces
    step on the written video, every crop scored)."""
    from blinkbench.core import config, paths
    from blinkbench.experiments import protocol, study
    from conftest import ROOT
    from demo_workdir import demo_workdir

    base = config.load(ROOT / "params.yaml")
    cfg = {"n_real": 4, "n_fake": 4, "duration_s": 6.0, "fps": [25, 30], "size": 192}
    work = tmp_path_factory.mktemp("study_demo")
    with demo_workdir(work, cfg, {
            "faces": {"crops": {"n_per_video": 8}},
            "detectors": {"enabled": ["blink_rate_rule"], "min_face_s": 5.0},
            "frame_detectors": {"enabled": ["meso4"], "hyper": {"meso4": base["frame_detectors"]["hyper"]["meso4"]}},
            "attacks": {"targets": ["meso4"], "methods": ["fgsm", "pgd"], "eps": [2, 8], "compressions": []},
            "blink_attacks": {"enabled": False}}, run=("faces", "landmarks", "ear", "blinks")) as params:
        w = {"detector": "meso4", "train": "demo"}
        protocol.train_frame(params, "meso4", "demo", paths.path("frame_model", **w), paths.path("frame_model_info", **w))
        clean = protocol.evaluate_frame(params, paths.path("frame_model", **w), "demo", work / "s.parquet",
                                        work / "m.json", work / "r.csv")
        vids = study.selected_videos(params)["video_id"].tolist()
        out: dict = {}
        for t, m, e, v in study.plan(params):
            recs = [study.attack_one(params, t, m, e, vid, study.adv_path(params, t, m, e, "none", vid)) for vid in vids]
            res = study.rescore_set(params, t, m, e, v, paths.path("study", dataset="demo", target=t, method=m, eps=e,
                                                                    variant=v))
            out[(m, float(e))] = (recs, res)
        yield clean, vids, out


def test_detection_of_demo_fakes_falls_with_eps(small_demo_study):
    clean, vids, out = small_demo_study
    assert clean["auc"] == 1.0 and clean["frame"]["auc"] >= 0.9, clean   # a real detector of the demo fakes
    assert vids, "the small demo has no fake test video"
    ref_recs, ref = out[("none", 0.0)]
    frac = lambda res: float(np.mean([r["scores"]["frame_frac/meso4"] for r in res["videos"]]))  # noqa: E731
    for method in ("fgsm", "pgd"):
        rates = {0.0: ref["summary"]["frame/meso4"]["detection_rate"]}
        crops = {0.0: frac(ref)}
        for eps in (2.0, 8.0):
            recs, res = out[(method, eps)]
            assert all(r["status"] == "ok" and r["linf_max"] <= eps for r in recs)
            rates[eps] = res["summary"]["frame/meso4"]["detection_rate"]
            crops[eps] = frac(res)
            assert np.mean([r["success_rate"] for r in recs]) >= 0.8 if eps == 8.0 else True
        print(f"\n{method}: video detection rate {rates}, share of re-scored crops called fake {crops}")
        assert rates[0.0] == 1.0 and crops[0.0] >= 0.8
        # the attack moved its own target on what re-scoring sees: crops and videos
        assert crops[0.0] > crops[2.0] > crops[8.0] and crops[8.0] <= 0.2, crops
        assert rates[0.0] >= rates[2.0] >= rates[8.0] and rates[8.0] <= 0.2, rates
