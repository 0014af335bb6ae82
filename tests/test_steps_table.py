"""The step table (blinkbench.core.steps_table): a step's entry point sees only the params
sections its entry declares, stamps hash exactly those sections (landmarks: the active
backend's options), and the study / blink-attack / defence entry points run under their
views (they read far more than the table used to say: issue 11's drift)."""

from __future__ import annotations

import copy
import pickle

import pandas as pd
import pytest
import yaml

from blinkbench import cli
from blinkbench.core import io, paths
from blinkbench.core.steps_table import (STEPS, ParamsView, ReadOnlyParams, UndeclaredParams, section_values,
                                         sections, step_view)
from blinkbench.spine import steps


def test_view_holds_only_the_declared_sections(params):
    v = step_view(params, "select_blink")
    assert set(v) == {"detectors", "landmarks", "base"}
    assert set(v["detectors"]) == {"best_of", "enabled", "series", "hyper"}
    assert v["landmarks"]["backend"] == params["landmarks"]["backend"]
    assert v["detectors"]["series"] == params["detectors"]["series"]
    for read in (lambda: v["faces"], lambda: v.get("faces"), lambda: "faces" in v,
                 lambda: v["detectors"]["min_face_s"], lambda: v["landmarks"].get("crop_scale")):
        with pytest.raises(UndeclaredParams, match="step 'select_blink' read params section"):
            read()
    with pytest.raises(UndeclaredParams, match="'detectors.min_face_s'|detectors.'min_face_s'"):
        v["detectors"]["min_face_s"]
    # a copy or a pickle is the plain dict it holds; the view never writes through
    assert type(copy.deepcopy(v)) is dict and pickle.loads(pickle.dumps(v)) == dict(v)
    assert type(copy.deepcopy(v)["base"]) is dict and type(pickle.loads(pickle.dumps(v))["detectors"]) is dict
    with pytest.raises(ReadOnlyParams):  # nor can a step change it (tests/test_params_types.py)
        v["base"]["seed"] = -1
    assert v["base"]["seed"] == params["base"]["seed"] != -1


def test_dataset_bound_sections(params):
    v = step_view(params, "manifest", "demo")
    assert set(v["datasets"]) == {"demo"} and "demo" in v["datasets"]
    with pytest.raises(UndeclaredParams):
        v["datasets"]["other"]
    assert sections("manifest") == ("splits", "base")  # unbound: the rule's wildcard


def test_ear_reads_no_params_and_a_step_without_a_section_fails_loudly(params, tmp_path):
    assert STEPS["ear"].params == ()
    view = step_view(params, "ear")
    assert dict(view) == {}
    with pytest.raises(UndeclaredParams, match="'blinks'"):
        steps.blinks_one(tmp_path / "e.parquet", tmp_path / "b.parquet", tmp_path / "s.json", view)


def test_landmark_stamp_hashes_only_the_active_backends_options(params):
    params["landmarks"]["backend"] = "mediapipe"
    base = steps.landmarks_stamp("t", params)
    other = copy.deepcopy(params)
    other["landmarks"]["tflite"] = {**other["landmarks"]["tflite"], "num_threads": 4, "roi": "crop"}
    assert steps.landmarks_stamp("t", other) == base                  # another backend's option: no rerun
    assert section_values(other, "landmarks") == section_values(params, "landmarks")  # Snakemake's trigger too
    other["landmarks"]["min_detection_confidence"] = 0.7
    assert steps.landmarks_stamp("t", other) != base                  # its own option: rerun
    tfl = copy.deepcopy(params)
    tfl["landmarks"]["backend"] = "mediapipe_tflite"
    t0 = steps.landmarks_stamp("t", tfl)
    tfl["landmarks"]["min_detection_confidence"] = 0.7                  # the TFLite graph does not read it
    assert steps.landmarks_stamp("t", tfl) == t0
    tfl["landmarks"]["tflite"] = {**tfl["landmarks"]["tflite"], "roi": "crop"}
    assert steps.landmarks_stamp("t", tfl) != t0


def test_stamps_hash_the_declared_sections(params):
    for step, stamp in (("faces", lambda p: steps.faces_stamp("v", p)), ("blinks", lambda p: steps.blinks_stamp("e", p))):
        changed = copy.deepcopy(params)
        changed["report"] = {"ear_plots": 9}                           # undeclared: nothing moves
        assert stamp(changed) == stamp(params)
        changed[step] = {**changed[step], "_probe": 1}
        assert stamp(changed) != stamp(params), step
        assert stamp(step_view(params, step)) == stamp(params)         # a view stamps like the full params


@pytest.fixture
def study_repo(tmp_path, monkeypatch):
    """A project folder with the project's params and an empty demo manifest: the study,
    blink-attack and defence commands run their planning and bookkeeping with no video."""
    from blinkbench.core import config
    from conftest import ROOT

    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["datasets"] = {"demo": cfg["datasets"]["demo"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    man = paths.path("manifest", dataset="demo")
    man.parent.mkdir(parents=True, exist_ok=True)
    # one selected video that is not there: the commands go through their loops, which write
    # status records for it (the DVC failure this table once had: `attack --all` reads
    # attacks.compressions, which only the DVC form's entry declared)
    pd.DataFrame({"video_id": ["fake_gone"], "path": [str(tmp_path / "gone.mp4")], "label": ["fake"],
                  "split": ["test"], "status": ["ok"]}).to_parquet(man)
    io.write_json({"n_blinks": 0, "ear_median": 0.3}, paths.path("blink_summary", dataset="demo", video="fake_gone"))
    return config.load(tmp_path / "params.yaml")


@pytest.mark.parametrize("argv", [
    ["attack", "--target", "clean", "--method", "none", "--eps", "0", "--all"],
    ["rescore", "--target", "clean", "--method", "none", "--eps", "0"],
    ["ear_attack", "--mode", "suppress", "--all"],
    ["landmark_breaker"],
])
def test_study_and_blink_attack_commands_run_under_their_views(study_repo, argv):
    """These read attacks.*, detectors.*, frame_detectors.*, defence.* and datasets besides
    the sections the table listed before (issue 11): each now runs under its own view."""
    assert cli.main([*argv, "--params", "params.yaml"]) == 0


def test_posttrain_runs_under_its_view(study_repo):
    """No trained model here: a failure record, and not one caused by an undeclared section
    (run_one turns any exception into a record, so the record is what to check)."""
    import json

    det = study_repo["defence"]["detectors"][0]
    assert cli.main(["posttrain", "--params", "params.yaml", "--detector", det, "--algorithm", "pgd",
                     "--variant", "frozen"]) == 0
    rec = json.loads(paths.path("defence", dataset="demo", detector=det, algorithm="pgd", variant="frozen").read_text())
    assert rec["status"] == "error" and "UndeclaredParams" not in rec["error"], rec["error"]
    assert "FileNotFoundError" in rec["error"] or "not" in rec["error"]


def test_rescore_reads_the_plan_sections(study_repo):
    from blinkbench.experiments import study

    v = step_view(study_repo, "rescore")
    out = study.rescore_set(v, "clean", "none", 0, "none", "out.json")
    assert [r["video_id"] for r in out["videos"]] == ["fake_gone"] and out["videos"][0]["status"] != "ok"
    assert "UndeclaredParams" not in out["videos"][0]["error"], out["videos"][0]["error"]
    assert out["trained_on"] == study_repo["attacks"]["models_trained_on"]
    assert isinstance(study.defended_models(v), list)


def test_params_view_is_a_dict_for_json_and_stamps(params):
    import json

    v = step_view(params, "report")
    assert isinstance(v, dict) and isinstance(v, ParamsView)
    json.dumps(v)
