"""The resiliency study's numbers (issue 12): blink detectors abstain on a video with less
than ``detectors.min_face_s`` of face, so the study's blink detection rates leave such
videos out and carry coverage beside them; the report recomputes the summary from the
stored per-video rows with the current params; the eps-sweep figure stays readable with
many detectors."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from blinkbench.core import config, io, paths
from blinkbench.experiments.study import insufficient, summarise


def _row(vid, face_s, blink=None, frame=None, status="ok"):
    scores = {}
    if blink is not None:
        scores["blink/tsf"] = blink
    if frame is not None:
        scores.update({"frame/meso4": frame, "frame_frac/meso4": frame})
    return {"video_id": vid, "label": "fake", "status": status, "face_duration_s": face_s, "scores": scores}


# four fakes: two with enough face (one detected by the blink detector), one with 3 s of face
# (its blink score 0.9 must not count), one whose blink path failed (no blink score at all)
ROWS = [_row("a", 10.0, blink=0.8, frame=0.9), _row("b", 12.0, blink=0.1, frame=0.2),
        _row("c", 3.0, blink=0.9, frame=0.7), _row("d", None, frame=0.1, status="error")]


def test_a_video_below_min_face_s_gets_no_blink_verdict_and_coverage_says_so():
    s = summarise(ROWS, min_face_s=5.0)["blink/tsf"]
    assert s["n"] == 2 and s["n_insufficient"] == 1 and s["min_face_s"] == 5.0
    assert s["detection_rate"] == pytest.approx(0.5)          # a (0.8) of a, b; c (0.9) not counted
    assert s["mean_score"] == pytest.approx(0.45)
    assert s["coverage"] == pytest.approx(0.5)                # 2 of the set's 4 videos have a verdict
    # below the threshold nothing is insufficient: c counts, coverage 3 of 4 (d has no blink score)
    lenient = summarise(ROWS, min_face_s=2.0)["blink/tsf"]
    assert (lenient["n"], lenient["n_insufficient"]) == (3, 0)
    assert lenient["detection_rate"] == pytest.approx(2 / 3) and lenient["coverage"] == pytest.approx(0.75)
    # the default (no threshold) is the old count
    assert summarise(ROWS)["blink/tsf"]["detection_rate"] == pytest.approx(2 / 3)


def test_frame_detectors_do_not_abstain_on_face_duration():
    strict, lenient = summarise(ROWS, min_face_s=5.0)["frame/meso4"], summarise(ROWS)["frame/meso4"]
    assert strict == lenient
    assert strict["n"] == 4 and strict["detection_rate"] == pytest.approx(0.5) and strict["coverage"] == 1.0
    assert "n_insufficient" not in strict and strict["video_fooled_rate"] == pytest.approx(0.5)


def test_insufficient_needs_a_finite_duration_below_the_threshold():
    assert insufficient({"face_duration_s": 4.99}, 5.0) and not insufficient({"face_duration_s": 5.0}, 5.0)
    assert not insufficient({"face_duration_s": None}, 5.0) and not insufficient({}, 5.0)
    assert not insufficient({"face_duration_s": float("nan")}, 5.0)


def _study_params(min_face_s: float) -> dict:
    p = config.validate({"datasets": {}, "attacks": {"targets": ["meso4"], "methods": ["fgsm"], "eps": [2],
                                                     "compressions": []}})
    p["detectors"]["min_face_s"] = min_face_s
    return p


def _write_sets(params: dict, stored_min_face_s: float) -> None:
    """Study JSONs of the clean set and one attacked set, their summaries computed at
    ``stored_min_face_s`` (what the re-scoring step wrote)."""
    ds = params["attacks"]["dataset"]
    for t, m, e, rows in [("clean", "none", "0", ROWS),
                          ("meso4", "fgsm", "2", [{**r, "scores": {k: v / 2 for k, v in r["scores"].items()}}
                                                  for r in ROWS])]:
        io.write_json({"videos": rows, "summary": summarise(rows, stored_min_face_s)},
                      paths.path("study", dataset=ds, target=t, method=m, eps=e, variant="none"))


def test_report_recomputes_the_summary_with_the_current_min_face_s(tmp_path, monkeypatch):
    from blinkbench.report import build

    monkeypatch.chdir(tmp_path)
    params = _study_params(5.0)
    _write_sets(params, stored_min_face_s=0.0)        # re-scored before the threshold was raised
    df = build.study_results(params)
    clean = df[(df["target"] == "clean") & (df["detector"] == "blink/tsf")].iloc[0]
    assert clean["detection_rate"] == pytest.approx(0.5) and clean["coverage"] == pytest.approx(0.5)
    assert clean["n_insufficient"] == 1 and clean["n"] == 2
    frame = df[(df["target"] == "clean") & (df["detector"] == "frame/meso4")].iloc[0]
    assert frame["detection_rate"] == pytest.approx(0.5) and frame["n"] == 4

    metrics, page = build.study_section(params, tmp_path / "reports")
    assert metrics["detection_rate"]["clean"]["none"]["eps0"]["none"]["blink/tsf"] == 0.5
    assert metrics["blink_coverage"]["meso4"]["fgsm"]["eps2"]["none"] == {"blink/tsf": 0.5}
    assert "Coverage of the blink detectors" in page and "insufficient" in page
    assert "detectors.min_face_s</code> = 5 s" in page
    cov = page[page.index("Coverage of the blink detectors"):]
    table = cov[cov.index("<table"):cov.index("</table>")]
    cells = re.findall(r"<td>([^<]*)</td>", table)
    assert cells == ["0.50", "1", "0.50", "1"], cells        # coverage, videos_insufficient per set

    # a lower threshold shows without re-scoring: c's blink score counts again
    params["detectors"]["min_face_s"] = 2.0
    df = build.study_results(params)
    clean = df[(df["target"] == "clean") & (df["detector"] == "blink/tsf")].iloc[0]
    assert clean["detection_rate"] == pytest.approx(2 / 3) and clean["coverage"] == pytest.approx(0.75)
    assert clean["n_insufficient"] == 0


def test_a_study_json_without_rows_keeps_its_stored_summary(tmp_path, monkeypatch):
    from blinkbench.report import build

    monkeypatch.chdir(tmp_path)
    params = _study_params(5.0)
    ds = params["attacks"]["dataset"]
    io.write_json({"summary": summarise(ROWS, 0.0)}, paths.path("study", dataset=ds, target="clean", method="none",
                                                                  eps="0", variant="none"))
    df = build.study_results(params).set_index("detector")
    assert df.loc["blink/tsf", "detection_rate"] == pytest.approx(2 / 3)


FRAME = [f"frame/f{i:02d}" for i in range(13)]
BLINK = [f"blink/b{i}" for i in range(8)]


def test_sweep_styles_tell_21_detectors_apart_and_emphasise_the_target():
    from blinkbench.report.plotting import detector_styles

    st = detector_styles(FRAME + BLINK, target="frame/f03")
    assert set(st) == set(FRAME + BLINK)
    others = [d for d in st if d != "frame/f03"]
    looks = {(st[d]["color"], st[d]["marker"], st[d]["ls"]) for d in others}
    assert len(looks) == len(others)                      # no two lines look alike (families: separate panels too)
    for fam in (FRAME, BLINK):                            # within a family: distinct colours outright
        colours = [st[d]["color"] for d in fam if d != "frame/f03"]
        assert len(set(colours)) == len(colours)
    assert {st[d]["ls"] for d in FRAME if d != "frame/f03"} == {"-"} and {st[d]["ls"] for d in BLINK} == {"--"}
    t = st["frame/f03"]
    assert t["lw"] > 2 * max(st[d]["lw"] for d in others) and t["label"] == "f03 (attacked)"
    assert t["zorder"] > max(st[d]["zorder"] for d in others)


def test_sweep_plot_has_a_row_per_family_and_a_legend_outside(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from blinkbench.report import plotting

    rows = [{"variant": v, "eps": e, "detector": d, "detection_rate": 1 - e / 10}
            for v in ("none", "h264_crf23") for d in FRAME + BLINK for e in (0, 2, 4)]
    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **kw):
        seen["axes"] = [ax for ax in fig.axes if ax.lines]
        seen["legends"] = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        return real_savefig(fig, *a, **kw)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    out = tmp_path / "sweep.png"
    plotting.plot_eps_sweep(pd.DataFrame(rows), out, title="t", target="frame/f00")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(seen["axes"]) == 4                          # 2 families x 2 variants
    top = [ax for ax in seen["axes"] if any(ln.get_label().startswith("f0") for ln in ax.lines)]
    assert len(top) == 2 and all(len(ax.lines) == len(FRAME) for ax in top)
    assert len(seen["legends"]) == 2                       # one per family, anchored right of the plot
    labels = [t.get_text() for t in seen["legends"][0].get_texts()]
    assert labels[0] == "f00 (attacked)" and len(labels) == len(FRAME)
    assert all(lg.get_bbox_to_anchor().x0 > lg.axes.bbox.x1 - 1 for lg in seen["legends"])
    thick = [ln for ax in top for ln in ax.lines if ln.get_linewidth() >= 3]
    assert [ln.get_label() for ln in thick] == ["f00 (attacked)"] * 2


# ------------------------------------------------------------- unprojected attacks need one eps

def _with_datasets(attacks: dict | None) -> dict:
    """A params mapping with one dataset (so the attack section's references are checked)."""
    p = {"datasets": {"demo": {"adapter": "folder", "root": "raw"}},
         "frame_detectors": {"enabled": ["meso4"]}}
    if attacks is not None:
        p["attacks"] = {"dataset": "demo", "models_trained_on": "demo", "targets": ["meso4"], **attacks}
    return p


def test_the_default_study_projects_the_minimal_l2_attacks_so_its_eps_sweep_is_one():
    from blinkbench.attacks.frame import create

    p = config.validate(_with_datasets(None))
    a = p["attacks"]
    assert {"cw_l2", "deepfool"} <= set(a["methods"]) and len(a["eps"]) > 1
    assert config.unprojected_methods(a) == []
    for m in ("cw_l2", "deepfool"):      # what study.attack_one hands the attack
        assert create(m, **{**a["params"].get(m, {}), "eps": 4.0}).bounded()


@pytest.mark.parametrize("method,params", [("cw_l2", {"cw_l2": {"steps": 5}}), ("deepfool", {}),
                                           ("fakeretouch", {"fakeretouch": {"project": False}})])
def test_an_unprojected_attack_with_several_eps_is_refused(method, params):
    with pytest.raises(config.ParamsError, match=rf"attacks\.params\.{method}\.project.*ignores eps.*2 identical sets"):
        config.validate(_with_datasets({"methods": ["fgsm", method], "eps": [2, 8], "params": params}))
    ok = config.validate(_with_datasets({"methods": ["fgsm", method], "eps": [8], "params": params}))
    assert config.unprojected_methods(ok["attacks"]) == [method]          # one eps: allowed, and reported
    proj = {**params, method: {**params.get(method, {}), "project": True}}
    ok = config.validate(_with_datasets({"methods": ["fgsm", method], "eps": [2, 8], "params": proj}))
    assert config.unprojected_methods(ok["attacks"]) == []


def _fr(vid, frac, blink=None, face_s=10.0, other=None, label="fake"):
    scores = {"frame/meso4": frac, "frame_frac/meso4": frac}
    if blink is not None:
        scores["blink/tsf"] = blink
    if other is not None:
        scores.update({"frame/resnet50": other, "frame_frac/resnet50": other})
    return {"video_id": vid, "label": label, "status": "ok", "face_duration_s": face_s, "scores": scores}


def test_fooled_subset_asks_the_question_only_where_the_target_was_moved():
    from blinkbench.experiments.study import fooled_subset

    # a, b, c detected clean; d missed clean (0.2): already "fooled" before any attack, so not counted
    clean = [_fr("a", 0.9, 0.8, other=0.9), _fr("b", 0.8, 0.7, other=0.2), _fr("c", 0.7, 0.9), _fr("d", 0.2, 0.9)]
    attacked = [_fr("a", 0.1, 0.6, other=0.7), _fr("b", 0.3, 0.2, face_s=3.0, other=0.1),
                _fr("c", 0.6, 0.1), _fr("d", 0.0, 0.9)]
    f = fooled_subset(attacked, clean, "meso4", min_face_s=5.0)
    assert (f["n_fakes"], f["n_detected_clean"], f["n_fooled"]) == (4, 3, 2)
    assert f["fooled_rate"] == pytest.approx(2 / 3) and f["fooled_videos"] == ["a", "b"]
    assert "frame/meso4" not in f["detectors"]            # the target itself is the condition, not a column
    tsf = f["detectors"]["blink/tsf"]
    assert tsf["clean"] == {"n": 2, "detection_rate": 1.0, "n_insufficient": 0}
    # b has 3 s of face after the attack: an abstention, not a miss
    assert tsf["attacked"] == {"n": 1, "detection_rate": 1.0, "n_insufficient": 1}
    rn = f["detectors"]["frame/resnet50"]
    assert rn["clean"]["detection_rate"] == pytest.approx(0.5) and rn["attacked"]["detection_rate"] == pytest.approx(0.5)
    assert "n_insufficient" not in rn["attacked"]
    # nothing detected clean: no rate, no table to read
    none = fooled_subset(attacked, [_fr(r["video_id"], 0.1) for r in clean], "meso4")
    assert none["n_detected_clean"] == 0 and none["fooled_rate"] is None and none["detectors"] == {}


def test_report_shows_the_fooled_subset_beside_the_success_rate_over_all_fakes(tmp_path, monkeypatch):
    from blinkbench.report import build

    monkeypatch.chdir(tmp_path)
    params = _study_params(5.0)
    ds = params["attacks"]["dataset"]
    clean = [_fr("a", 0.9, 0.8), _fr("b", 0.8, 0.7), _fr("d", 0.2, 0.9)]
    attacked = [_fr("a", 0.1, 0.6), _fr("b", 0.9, 0.2), _fr("d", 0.0, 0.3)]
    for t, m, e, rows in (("clean", "none", "0", clean), ("meso4", "fgsm", "2", attacked)):
        io.write_json({"videos": rows, "summary": summarise(rows, 5.0)},
                      paths.path("study", dataset=ds, target=t, method=m, eps=e, variant="none"))
    metrics, page = build.study_section(params, tmp_path / "reports")
    # over all fakes d counts as fooled (missed before the attack): 2 of 3
    assert metrics["attack_success_rate_videos"]["meso4"]["fgsm"]["eps2"]["none"] == pytest.approx(0.6667)
    f = metrics["fooled_target"]["meso4"]["fgsm"]["eps2"]["none"]
    assert (f["n_detected_clean"], f["n_fooled"], f["fooled_rate"]) == (2, 1, 0.5)
    assert f["detection_rate_on_fooled"] == {"blink/tsf": {"clean": 1.0, "attacked": 1.0}}
    sec = page[page.index("When the attack fools its target"):]
    table = sec[sec.index("<table"):sec.index("</table>")]
    assert re.findall(r"<td>([^<]*)</td>", table) == ["3", "2", "1", "1.00 -&gt; 1.00"]
