"""Best-of selection (``detectors.best_of``, blinkbench.experiments.selection) and its part of
the report (blinkbench.report.best_of); and the reference study's k-NN detectors' data-only
model files. Learning, exact save/load and byte-identical refits of every detector are in
tests/test_detectors.py and tests/test_neural.py (they walk the registry)."""

from __future__ import annotations

import numpy as np
import pytest

from blinkbench.core import config, io, paths
from blinkbench.experiments import selection
from blinkbench.testing.synthetic import synthetic_videos


@pytest.fixture()
def params(params):
    """params.yaml (conftest's copy) with three cheap detectors and the selection on."""
    p = params
    d = p["detectors"]
    d.update(enabled=["blink_rate_rule", "tsf", "weasel"], train_on=["demo"], test_on=["demo"],
             hyper={"tsf": {"n_estimators": 20}, "weasel": {"window_inc": 8, "bigrams": False}},
             best_of={"enabled": True, "metric": "auc", "val_fraction": 0.25})
    return p


def test_holdout_is_seeded_stratified_and_never_empties_a_class():
    labels = np.array([0] * 8 + [1] * 6)
    held = selection.holdout(labels, 0.25, seed=1)
    assert list(held) == sorted(held)
    assert (labels[held] == 0).sum() == 2 and (labels[held] == 1).sum() == 2   # round(0.25 x 8), round(0.25 x 6)
    assert np.array_equal(held, selection.holdout(labels, 0.25, seed=1))
    assert len({tuple(selection.holdout(labels, 0.25, seed=s)) for s in range(6)}) > 1
    tiny = np.array([0, 0, 1, 1])
    assert len(selection.holdout(tiny, 0.01, 0)) == 2                           # at least one per class
    assert (tiny[selection.holdout(tiny, 0.99, 0)] == 0).sum() == 1             # never a whole class
    assert len(selection.holdout(np.array([0, 1]), 0.5, 0)) == 0                # one per class: nothing held


def test_choose_follows_the_metric_direction_ties_and_failures():
    c = {"a": {"status": "ok", "auc": 0.8, "eer": 0.2}, "b": {"status": "ok", "auc": 0.9, "eer": 0.3},
         "c": {"status": "ok", "auc": 0.9, "eer": 0.1}, "d": {"status": "error"},
         "e": {"status": "ok", "auc": None, "eer": None}}
    order = ["a", "b", "c", "d", "e"]
    assert selection.choose(c, "auc", order) == "b"              # tie 0.9: the first listed
    assert selection.choose(c, "auc", ["c", "b"]) == "c"
    assert selection.choose(c, "eer", order) == "c"              # eer: lower is better
    assert selection.choose({"d": c["d"], "e": c["e"]}, "auc", ["d", "e"]) is None
    schema_metrics = config.schema()["properties"]["detectors"]["properties"]["best_of"]["properties"]["metric"]
    assert set(selection.METRICS) == set(schema_metrics["enum"])


@pytest.fixture()
def fake_dataset(monkeypatch):
    """``demo`` as 16 synthetic videos (8 real, 8 fake) in the train split and none in val."""
    videos, y = synthetic_videos(16, 11, duration_s=(12, 12))
    for v, lab in zip(videos, y):
        v.label = int(lab)

    def fake(dataset, splits):
        assert dataset == "demo"
        return (list(videos) if "train" in splits else []), None

    monkeypatch.setattr(selection, "_videos", fake)
    return videos


def test_selection_picks_the_best_validation_score_and_records_every_candidate(params, fake_dataset, tmp_path,
                                                                               monkeypatch):
    from blinkbench.detectors.blink.classical import WeaselDetector

    def boom(self, X, y, groups):
        raise RuntimeError("boom")

    monkeypatch.setattr(WeaselDetector, "_fit_model", boom)
    out = tmp_path / "sel.json"
    res = selection.select_blink(params, "demo", out)
    assert io.read_json(out)["chosen"] == res["chosen"] and io.read_json(out)["candidates"].keys() == res["candidates"].keys()
    assert res["status"] == "ok" and res["landmark_backend"] == params["landmarks"]["backend"]
    val = res["validation"]
    assert val["source"].startswith("held-out train videos") and val["n_val"] == 4 and val["n_fit"] == 12
    assert val["n_val_fake"] == 2 and val["n_val_real"] == 2
    cands = res["candidates"]
    assert set(cands) == {"blink_rate_rule", "tsf", "weasel"}
    assert cands["weasel"]["status"] == "error" and "boom" in cands["weasel"]["error"]
    ok = {n: c["auc"] for n, c in cands.items() if c["status"] == "ok"}
    assert res["chosen"] == max(ok, key=lambda n: (ok[n], -params["detectors"]["enabled"].index(n)))
    assert res["chosen_score"] == ok[res["chosen"]]
    again = selection.select_blink(params, "demo", tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == out.read_bytes()       # deterministic
    assert again["chosen"] == res["chosen"]


def test_disabled_selection_fits_nothing(params, tmp_path, monkeypatch):
    params["detectors"]["best_of"]["enabled"] = False
    monkeypatch.setattr(selection, "_videos", lambda *a: pytest.fail("a disabled selection read videos"))
    res = selection.select_blink(params, "demo", tmp_path / "sel.json")
    assert res["status"] == "disabled" and res["chosen"] is None and res["candidates"] == {}


def test_report_shows_the_choice_and_its_test_metrics(params, tmp_path, monkeypatch):
    from blinkbench.report.best_of import best_of_section

    monkeypatch.chdir(tmp_path)
    assert best_of_section(params) == ({}, "")                                # nothing ran
    io.write_json({"train_dataset": "demo", "landmark_backend": "mediapipe", "enabled": True, "metric": "auc",
                   "chosen": "tsf", "chosen_score": 0.875, "status": "ok", "error": "",
                   "validation": {"source": "val split", "n_val": 6},
                   "candidates": {"tsf": {"status": "ok", "auc": 0.875}, "blink_rate_rule": {"status": "ok", "auc": 0.5},
                                  "weasel": {"status": "error", "error": "RuntimeError: boom"}}},
                  paths.path("blink_selection", train="demo"))
    io.write_json({"auc": 0.75, "acc_0.5": 0.5, "acc_fake": 1.0, "acc_real": 0.0},
                  paths.path("blink_eval", detector="tsf", train="demo", test="demo"))
    metrics, page = best_of_section(params)
    m = metrics["demo"]
    assert m["chosen"] == "tsf" and m["chosen_validation_score"] == 0.875 and m["landmark_backend"] == "mediapipe"
    assert m["validation"] == {"tsf": 0.875, "blink_rate_rule": 0.5, "weasel": None}
    assert m["chosen_test"] == {"demo": {"auc": 0.75, "acc_0.5": 0.5, "acc_fake": 1.0, "acc_real": 0.0}}
    assert "Best-of selection" in page and "tsf" in page and "boom" in page and "mediapipe" in page


def test_reference_knn_model_files_hold_arrays_only(tmp_path):
    import zipfile

    import skops.io

    from blinkbench.detectors.blink import Detector, create
    from blinkbench.detectors.blink.reference import DTW_METHODS, dtw_matrix
    from blinkbench.detectors.modelfile import ESTIMATORS

    videos, y = synthetic_videos(2, 5, duration_s=(8, 8))
    rng = np.random.default_rng(0)
    A, B = rng.normal(1, 0.1, (3, 20)), rng.normal(1, 0.1, (2, 20))
    from blinkbench.detectors.blink.numba_cache import import_cached

    dtw = import_cached("pyts.metrics").dtw
    seen = set()
    for name, method in [("knn_dtw_classic", "classic"), ("knn_dtw_sakoechiba", "sakoechiba"),
                         ("knn_dtw_itakura", "itakura"), ("knn_dtw_fast", "fast")]:
        det = create(name, n_neighbors=1).fit(videos, y)
        assert det.method == method
        det.save(tmp_path / name)
        with zipfile.ZipFile(tmp_path / name) as z:
            assert skops.io.get_untrusted_types(data=z.read(ESTIMATORS)) == []   # NumPy arrays, nothing else
        assert np.array_equal(Detector.load(tmp_path / name).predict_proba(videos), det.predict_proba(videos))
        D = dtw_matrix(A, B, method, det._options())
        assert D[2, 1] == dtw(A[2], B[1], method=method, options=det._options() or None)
        seen.add(tuple(np.round(D.ravel(), 9)))
    assert set(DTW_METHODS) == {"classic", "sakoechiba", "itakura", "fast"}
    with pytest.raises(ValueError, match="unknown DTW method"):
        dtw_matrix(A, B, "region")
