"""The reference study's attack protocol (issue 17, point 4): ``attacks.preset: reference``
(configs/reference.yaml) validates and is enforced, fractional eps in 0-255 levels run through
the study's paths and the video writer, and the reference's table (rows: attacked CNN;
columns: each detector's accuracy on fakes, clean and attacked) is built from study results
exactly as the reference counts (frame detectors by majority of crops, unknown = fake)."""

from __future__ import annotations

import copy
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from blinkbench.core import config, io, paths
from conftest import ROOT
from test_attacks import clip, model  # noqa: F401  (fixtures: a small face video, a trained tiny CNN)

PRESET = config.STUDY_PRESETS["reference"]


def merged(base: dict, over: dict) -> dict:
    """Snakemake's --configfile semantics: nested mappings update, other values replace."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


@pytest.fixture
def reference_params() -> dict:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = yaml.safe_load((ROOT / "configs" / "reference.yaml").read_text())
    return config.validate(merged(base, over))


# ------------------------------------------------------------------ the preset in params

def test_reference_config_validates_and_is_the_preset(reference_params):
    a = reference_params["attacks"]
    assert a["preset"] == "reference"
    assert a["methods"] == PRESET["methods"] == ["fgsm"]
    assert a["eps"] == [12.75, 25.5] and [e / 255 for e in a["eps"]] == pytest.approx([0.05, 0.1])
    # each of the reference's CNNs (plus Meso4) the demo trains, in turn; no compression
    assert sorted(a["targets"]) == sorted(["vgg19", "resnet50", "xception", "efficientnet_b4", "meso4"])
    assert a["compressions"] == []
    # the same schema Snakemake validates against at parse time
    from snakemake.utils import validate

    validate(copy.deepcopy(reference_params), schema=str(config.SCHEMA_PATH), set_default=True)


@pytest.mark.parametrize("patch, where, what", [
    ({"eps": [12.75]}, "attacks.eps", "25.5"),
    ({"methods": ["pgd"]}, "attacks.methods", "fgsm"),
    ({"targets": ["meso4"]}, "attacks.targets", "expected"),                       # not each CNN in turn
    ({"targets": [*PRESET["targets"], "mesoinception4"]}, "attacks.targets", "expected"),  # not a reference CNN
])
def test_preset_refuses_a_section_that_departs_from_it(reference_params, patch, where, what):
    p = copy.deepcopy(reference_params)
    p["attacks"].update(patch)
    with pytest.raises(config.ParamsError, match=where) as exc:
        config.validate(p)
    assert what in str(exc.value)


def test_preset_targets_follow_the_enabled_cnns(reference_params):
    """'where trained': with only Meso4 and ResNet-50 enabled, those two are the targets."""
    p = copy.deepcopy(reference_params)
    p["frame_detectors"]["enabled"] = ["meso4", "resnet50", "ela"]
    p["attacks"]["targets"] = ["resnet50", "meso4"]
    config.validate(p)
    p["frame_detectors"]["enabled"] = ["ela"]
    p["attacks"]["targets"] = []
    with pytest.raises(config.ParamsError, match="attacks.targets"):
        config.validate(p)


def test_fractional_eps_is_allowed_and_bounded():
    config.validate({"datasets": {}, "attacks": {"eps": [0.5, 12.75, 255]}})
    for bad in ([0], [-1.5], [255.5]):
        with pytest.raises(config.ParamsError, match="attacks.eps"):
            config.validate({"datasets": {}, "attacks": {"eps": bad}})


def test_study_plan_and_paths_spell_fractional_eps(reference_params):
    from blinkbench.experiments import study

    sets = study.plan(reference_params)
    assert ("clean", "none", "0", "none") == sets[0]
    assert len(sets) == 1 + 5 * 2                      # clean + 5 targets x 2 eps, lossless only
    assert {e for _, m, e, _ in sets if m == "fgsm"} == {"12.75", "25.5"}
    p = paths.path("study", dataset="demo", target="vgg19", method="fgsm", eps="25.5", variant="none")
    assert p.as_posix() == "data/study/demo/vgg19/fgsm/eps25.5/none.json"


def test_fgsm_at_12_75_levels_writes_12(clip, model, tmp_path):
    """FGSM at 12.75 levels moves pixels by 12.75 in float; the 8-bit video keeps 12 (the
    reference's uint8 cast truncates too), never 13."""
    from blinkbench.attacks.frame import attack_video
    from test_attacks import N, NO_FACE, decoded

    video, track = clip
    out = tmp_path / "adv.mkv"
    stats = attack_video(video, track, model, "fgsm", {"eps": 12.75}, out, batch_size=4, margin=0.1)
    assert stats["status"] == "ok" and stats["verified_lossless"]
    diffs = [np.abs(s.astype(int) - a.astype(int)).max() for s, a in zip(decoded(video), decoded(out))]
    assert max(diffs) == 12 and stats["linf_max"] == 12
    assert sum(d > 0 for d in diffs) == N - len(NO_FACE)


# ------------------------------------------------------------------ the reference's table

def _video(vid, label, **scores):
    return {"video_id": vid, "label": label, "scores": scores}


def _set(videos):
    return {"videos": videos}


def synthetic_sets() -> dict:
    """Clean reference and two targets at two eps, four fake videos and one real (the real
    one must not count). Scores chosen so mean probability and majority of crops disagree on
    one video, and one blink score is missing (unknown)."""
    real = _video("r0", "real", **{"frame/meso4": 0.9, "frame_frac/meso4": 1.0, "blink/tsf": 0.9})

    def fakes(meso_frac, meso_mean, res_frac, tsf):
        return [_video(f"f{i}", "fake", **{"frame/meso4": meso_mean[i], "frame_frac/meso4": meso_frac[i],
                                            "frame/resnet50": 0.5, "frame_frac/resnet50": res_frac[i],
                                            **({} if tsf[i] is None else {"blink/tsf": tsf[i]})})
                for i in range(4)]

    return {
        ("clean", 0.0): _set([real, *fakes([1, 1, 1, 0.5], [0.9, 0.9, 0.9, 0.4], [1, 1, 0, 0], [0.9, 0.9, 0.1, None])]),
        ("meso4", 12.75): _set([real, *fakes([0, 0, 0.5, 1], [0.1, 0.1, 0.6, 0.6], [1, 1, 0, 0], [0.9, 0.1, 0.1, None])]),
        ("meso4", 25.5): _set([real, *fakes([0, 0, 0, 0], [0.1] * 4, [1, 0, 0, 0], [0.9, 0.9, 0.1, 0.1])]),
        ("resnet50", 12.75): _set([real, *fakes([1, 1, 1, 1], [0.9] * 4, [0, 0, 0, 0], [0.9, 0.9, 0.9, 0.9])]),
        # resnet50 at 25.5: not run (missing set -> empty cells)
    }


def test_reference_table_rows_columns_and_numbers():
    from blinkbench.report.reference import eps_label, reference_table

    table, m = reference_table(synthetic_sets(), ["meso4", "resnet50"], [12.75, 25.5])
    assert list(table.index) == ["meso4", "resnet50"] and table.index.name == "target"
    conds = ["clean", eps_label(12.75), eps_label(25.5)]
    assert conds == ["clean", "eps 12.75 (0.05)", "eps 25.5 (0.1)"]
    assert list(table.columns) == [(d, c) for d in ["frame/meso4", "frame/resnet50", "blink/tsf"] for c in conds]
    t = table
    # clean: majority of crops (0.5 counts as fake), not mean probability (0.4 would say real)
    assert t.loc["meso4", ("frame/meso4", "clean")] == 1.0
    assert t.loc["resnet50", ("frame/meso4", "clean")] == 1.0          # the same clean column on every row
    assert t.loc["meso4", ("frame/resnet50", "clean")] == 0.5
    # a missing blink score is an unknown verdict, counted as fake: 3 of 4
    assert t.loc["meso4", ("blink/tsf", "clean")] == 0.75
    # attacked meso4: its own accuracy falls, the transfer to resnet50 and the blink detector
    assert t.loc["meso4", ("frame/meso4", eps_label(12.75))] == 0.5      # fracs 0, 0, 0.5, 1
    assert t.loc["meso4", ("frame/meso4", eps_label(25.5))] == 0.0
    assert t.loc["meso4", ("frame/resnet50", eps_label(25.5))] == 0.25
    assert t.loc["meso4", ("blink/tsf", eps_label(12.75))] == 0.5       # 0.9, 0.1, 0.1, unknown
    assert t.loc["meso4", ("blink/tsf", eps_label(25.5))] == 0.5
    assert t.loc["resnet50", ("frame/resnet50", eps_label(12.75))] == 0.0
    assert t.loc["resnet50", ("frame/meso4", eps_label(12.75))] == 1.0
    assert np.isnan(t.loc["resnet50", ("frame/meso4", eps_label(25.5))])  # set not run
    # metrics.json view of the same numbers, and the unknown verdicts per set
    assert m["rows"]["meso4"]["blink/tsf"]["clean"] == 0.75
    assert m["rows"]["resnet50"]["frame/meso4"][eps_label(25.5)] is None
    assert m["sets"]["clean"] == {"n_fake": 4, "unknown": {"frame/meso4": 0, "frame/resnet50": 0, "blink/tsf": 1}}
    assert m["sets"]["meso4/eps12.75"]["unknown"]["blink/tsf"] == 1
    assert m["sets"]["meso4/eps25.5"]["unknown"]["blink/tsf"] == 0


def test_blink_verdict_without_enough_face_is_unknown_counted_as_fake():
    """A blink detector's 'insufficient' verdict (less than detectors.min_face_s of face) is
    an unknown verdict, counted as fake as the reference counts it; frame detectors are not
    affected."""
    from blinkbench.report.reference import eps_label, reference_table

    sets = synthetic_sets()
    row = sets[("meso4", 25.5)]["videos"][3]          # fake f2: tsf 0.1 (called real), meso4 frac 0
    row["face_duration_s"] = 3.0
    before, _ = reference_table(synthetic_sets(), ["meso4"], [12.75, 25.5], min_face_s=5.0)
    after, m = reference_table(sets, ["meso4"], [12.75, 25.5], min_face_s=5.0)
    col = ("blink/tsf", eps_label(25.5))
    assert before.loc["meso4", col] == 0.5 and after.loc["meso4", col] == 0.75
    assert after.loc["meso4", ("frame/meso4", eps_label(25.5))] == 0.0
    assert m["sets"]["meso4/eps25.5"]["unknown"] == {"frame/meso4": 0, "frame/resnet50": 0, "blink/tsf": 1}
    lenient, _ = reference_table(sets, ["meso4"], [12.75, 25.5], min_face_s=2.0)
    assert lenient.loc["meso4", col] == 0.5


def test_report_section_reads_study_files_and_writes_csv(reference_params, tmp_path):
    from blinkbench.report.reference import reference_section

    p = copy.deepcopy(reference_params)
    p["frame_detectors"]["enabled"] = ["meso4", "resnet50"]
    p["attacks"]["targets"] = ["meso4", "resnet50"]
    config.validate(p)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert reference_section(p, tmp_path / "reports") == ({}, "")          # no study results yet
        for (t, e), res in synthetic_sets().items():
            m = "none" if t == "clean" else "fgsm"
            io.write_json(res, paths.path("study", dataset="demo", target=t, method=m, eps=f"{e:g}", variant="none"))
        metrics, page = reference_section(p, tmp_path / "reports")
        assert metrics["method"] == "fgsm" and metrics["eps"] == [12.75, 25.5]
        assert metrics["rows"]["meso4"]["frame/meso4"]["eps 25.5 (0.1)"] == 0.0
        assert "reference study's attack table" in page and "<table" in page
        csv = pd.read_csv(tmp_path / "reports" / "reference_attack.csv", index_col=0)
        assert list(csv.index) == ["meso4", "resnet50"]
        assert csv.loc["meso4", "blink/tsf | clean"] == 0.75
        p["attacks"]["preset"] = None                       # without the preset: no section
        assert reference_section(p, tmp_path / "reports") == ({}, "")
    finally:
        os.chdir(old)
