"""params.yaml validation: the project file is valid, and bad keys or types fail naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from blinkbench.core import config


def test_project_params_valid_and_defaults_filled(params):
    assert set(params) >= {"base", "datasets", "faces", "landmarks", "blinks", "report"}
    filled = config.validate({"datasets": {}})
    assert filled["blinks"]["close_ratio"] == 0.5
    assert filled["faces"]["crops"]["size"] == 256  # nested defaults too


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"blinks": {"close_ratioo": 0.5}}, "blinks"),
        ({"faces": {"detect_every": "5"}}, "faces.detect_every"),
        ({"faces": {"crops": {"size": 8}}}, "faces.crops.size"),
        ({"landmarks": {"backend": "dlib"}}, "landmarks.backend"),
        ({"datasets": {"x": {"adapter": "youtube", "root": "a"}}}, "datasets.x.adapter"),
        ({"datasets": {"bad name": {"adapter": "folder", "root": "a"}}}, "datasets"),
        ({"unknown_section": 1}, "(top level)"),
    ],
)
def test_bad_params_name_the_key(patch, where):
    p = {"datasets": {}, **patch}
    with pytest.raises(config.ParamsError) as exc:
        config.validate(p)
    assert f"'{where}'" in str(exc.value)


def test_cli_rejects_bad_params_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"datasets": {}, "blinks": {"max_blink_ms": "long"}}))
    r = subprocess.run([sys.executable, "-m", "blinkbench", "validate-params", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "blinks.max_blink_ms" in r.stderr


# ------------------------------------------------------------------ names that reach a shell or a path

INJECTION = "demo; touch /tmp/blinkbench_pwned #"


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"detectors": {"train_on": [INJECTION]}}, "detectors.train_on.0"),
        ({"detectors": {"test_on": ["../demo"]}}, "detectors.test_on.0"),
        ({"detectors": {"enabled": ["tsf; id"]}}, "detectors.enabled.0"),
        ({"detectors": {"enabled": ["no_such_detector"]}}, "detectors.enabled.0"),
        ({"detectors": {"hyper": {"$(id)": {}}}}, "detectors.hyper"),
        ({"frame_detectors": {"enabled": ["meso4 && id"]}}, "frame_detectors.enabled.0"),
        ({"frame_detectors": {"train_on": ["demo`id`"]}}, "frame_detectors.train_on.0"),
        ({"frame_detectors": {"hyper": {"resnet99": {}}}}, "frame_detectors.hyper"),
        ({"attacks": {"targets": ["meso4; id"]}}, "attacks.targets.0"),
        ({"attacks": {"dataset": INJECTION}}, "attacks.dataset"),
        ({"attacks": {"models_trained_on": "../../etc"}}, "attacks.models_trained_on"),
        ({"attacks": {"methods": ["pgd|id"]}}, "attacks.methods.0"),
        ({"attacks": {"compressions": ["h264; id"]}}, "attacks.compressions.0"),
        ({"blink_attacks": {"dataset": "demo\nid"}}, "blink_attacks.dataset"),
        ({"blink_attacks": {"modes": ["suppress;id"]}}, "blink_attacks.modes.0"),
        ({"blink_attacks": {"ear": {"compressions": ["../x"]}}}, "blink_attacks.ear.compressions.0"),
        ({"blink_attacks": {"landmark_breaker": {"conditions": ["none", "jpeg75; id"]}}},
         "blink_attacks.landmark_breaker.conditions.1"),
        ({"datasets": {"f": {"adapter": "ffpp", "root": "r", "methods": ["../../etc"]}}}, "datasets.f.methods.0"),
    ],
)
def test_names_reaching_commands_or_paths_are_registry_entries_or_strict(patch, where):
    p = {"datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"}}, **patch}
    with pytest.raises(config.ParamsError) as exc:
        config.validate(p)
    assert f"'{where}'" in str(exc.value)


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"detectors": {"train_on": ["other"]}}, "detectors.train_on"),
        ({"frame_detectors": {"test_on": ["other"]}}, "frame_detectors.test_on"),
        ({"attacks": {"dataset": "other"}}, "attacks.dataset"),
        ({"blink_attacks": {"models_trained_on": "other"}}, "blink_attacks.models_trained_on"),
        ({"attacks": {"targets": ["resnet50"]}, "frame_detectors": {"enabled": ["meso4"]}}, "attacks.targets"),
    ],
)
def test_references_must_name_what_is_configured(patch, where):
    p = {"datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"}}, **patch}
    with pytest.raises(config.ParamsError) as exc:
        config.validate(p)
    assert f"'{where}'" in str(exc.value)
    p = {"datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"}}, "attacks": {"enabled": False},
         "blink_attacks": {"enabled": False}}
    config.validate(p)  # disabled attack sections are not checked


# ------------------------------------------------------------------ numbers and keys

@pytest.mark.parametrize(
    "patch, where",
    [
        ({"blinks": {"close_ratio": float("nan")}}, "blinks.close_ratio"),
        ({"blinks": {"max_blink_ms": float("inf")}}, "blinks.max_blink_ms"),
        ({"faces": {"min_confidence": float("nan")}}, "faces.min_confidence"),
        ({"demo": {"fps": [25, float("nan")]}}, "demo.fps.1"),
        ({"detectors": {"hyper": {"fcn": {"lr": float("nan")}}}}, "detectors.hyper.fcn.lr"),
        ({"blink_attacks": {"ear": {"eps": float("-inf")}}}, "blink_attacks.ear.eps"),
    ],
)
def test_non_finite_numbers_rejected(patch, where):
    p = {"datasets": {}, **patch}
    with pytest.raises(config.ParamsError) as exc:
        config.validate(p)
    assert f"'{where}'" in str(exc.value) and "not a finite number" in str(exc.value)


def test_yaml_nan_in_a_params_file_is_rejected(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("datasets: {}\nblinks:\n  close_ratio: .nan\n")
    with pytest.raises(config.ParamsError, match="blinks.close_ratio"):
        config.load(f)


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"blink_attacks": {"ear": {"stepz": 10}}}, "blink_attacks.ear"),
        ({"blink_attacks": {"landmark_breaker": {"n_cropz": 4}}}, "blink_attacks.landmark_breaker"),
        ({"blink_attacks": {"landmark_breaker": {"attacks": {"fgsm": {"stepz": 3}}}}},
         "blink_attacks.landmark_breaker.attacks.fgsm"),
        ({"attacks": {"params": {"pgd": {"stepz": 10}}}}, "attacks.params.pgd"),
        ({"attacks": {"params": {"pgd": {"eps": 4}}}}, "attacks.params.pgd"),  # eps comes from attacks.eps
        ({"attacks": {"params": {"bim": {"steps": 10}}}}, "attacks.params"),
        ({"base": {"seed": -1}}, "base.seed"),
        ({"faces": {"crops": {"size": 100000}}}, "faces.crops.size"),
        ({"blink_attacks": {"ear": {"steps": -5}}}, "blink_attacks.ear.steps"),
        ({"blink_attacks": {"ear": {"inject_depth": 1.5}}}, "blink_attacks.ear.inject_depth"),
        ({"attacks": {"batch_size": 10**9}}, "attacks.batch_size"),
    ],
)
def test_unknown_keys_and_out_of_bounds_rejected(patch, where):
    p = {"datasets": {}, **patch}
    with pytest.raises(config.ParamsError) as exc:
        config.validate(p)
    assert f"'{where}'" in str(exc.value), str(exc.value)


def test_project_attack_sections_accepted_by_their_classes(params):
    """What the schema lets through, the attack classes accept (the project's own values)."""
    from blinkbench.attacks.blink.ear_attack import EarAttackParams
    from blinkbench.attacks.blink.landmark_breaker import LandmarkBreakerEval
    from blinkbench.attacks.frame import create

    for method, kw in params["attacks"]["params"].items():
        create(method, eps=4.0, **kw)
    EarAttackParams.from_params(params["blink_attacks"]["ear"])
    lb = dict(params["blink_attacks"]["landmark_breaker"])
    lb.pop("n_crops", None)
    LandmarkBreakerEval.from_params(lb).attack_objects()


def test_schema_names_and_keys_match_the_registries_and_classes():
    """The schema spells out registry names and class fields (importing the registries at
    every validation would load torch): this keeps the two equal."""
    import dataclasses

    from blinkbench.attacks import frame as attacks
    from blinkbench.attacks.blink import ear_attack, landmark_breaker
    from blinkbench.detectors import blink as detectors
    from blinkbench.detectors import frame as frames
    from blinkbench.video.compress import VARIANTS

    s = config.schema()
    defs = s["$defs"]
    # names as sets: available() lists in registration order, which follows import order (a
    # test that imported one detector module first changes it)
    assert sorted(defs["blink_detector"]["enum"]) == sorted(detectors.available())
    assert sorted(defs["frame_detector"]["enum"]) == sorted(frames.available())
    assert sorted(defs["attack_method"]["enum"]) == sorted(attacks.available())
    assert sorted(defs["compression"]["enum"]) == sorted(set(VARIANTS) - {"none"})
    assert sorted(defs["landmark_attack"]["enum"]) == sorted(landmark_breaker.ATTACKS)
    fields = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    per_method = s["properties"]["attacks"]["properties"]["params"]["properties"]
    assert set(per_method) == set(attacks.available())
    for method, sub in per_method.items():
        sub = defs[sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub else sub
        assert set(sub["properties"]) == fields(attacks.get(method)) - {"eps"}, method
    ba = s["properties"]["blink_attacks"]["properties"]
    assert set(ba["ear"]["properties"]) == fields(ear_attack.EarAttackParams)
    assert set(ba["ear"]["properties"]["perturbation"]["enum"]) == set(ear_attack.PERTURBATIONS)
    assert set(ba["landmark_breaker"]["properties"]) == fields(landmark_breaker.LandmarkBreakerEval) | {"n_crops"}
    heat = ba["landmark_breaker"]["properties"]["attacks"]["oneOf"][1]["additionalProperties"]["properties"]
    assert set(heat) == set().union(*(fields(c) for c in landmark_breaker.ATTACKS.values()))
    assert set(heat["landmarks"]["enum"]) == set(landmark_breaker.SUBSETS)


# ------------------------------------------------------------------ the params file of a Snakemake run

def test_frozen_params_file_is_named_by_content_and_never_rewritten(tmp_path):
    a = config.validate({"datasets": {}})
    b = config.validate({"datasets": {}, "blinks": {"close_ratio": 0.3}})
    pa = config.write_frozen(a, tmp_path)
    before = pa.read_bytes()
    assert config.frozen_path(a, tmp_path) == pa and pa.parent == tmp_path
    pb = config.write_frozen(b, tmp_path)
    assert pb != pa and pa.read_bytes() == before  # another config: another file
    assert config.write_frozen(a, tmp_path) == pa and pa.read_bytes() == before
    assert config.load(pa) == a and config.load(pb)["blinks"]["close_ratio"] == 0.3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([pa.name, pb.name])  # no temporaries left
