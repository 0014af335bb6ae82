"""A small synthetic run for the HTML report: every section of the page has data, in seconds.

The pipeline steps' outputs are either written as tiny files at their real paths (the
best-of selection, the landmark comparison, the blink-path attacks, EAR and blink events)
or, where a section would need a trained model or a re-scored study, the section's data
function is replaced by one returning a small table of the same shape. The plotting
functions are replaced by ones writing a stub file (the report only links the PNGs).

A video and a dataset name carry ``<`` and ``&`` so tests can check the page escapes them.
Used by tests/test_report_templates.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from blinkbench.core import io, paths

DATASET = "demo"
NASTY_VIDEO = "fake_<b>1</b>&x"
OK_VIDEOS = ["real_1", NASTY_VIDEO]
NOISE_COMPRESSIONS = ["none <lossless>", "h264_crf23"]
SECTION_HEADINGS = [
    "blinkbench report", DATASET, "Status", "Blinks by label", "Ground-truth blinks recovered", "Videos",
    "Blink-based detectors (EAR series)", "Metrics", "Cross-dataset matrix (AUC; rows: trained on, columns: tested on)",
    "Best-of selection (validation data only)", "Frame-level detectors (face crops)", "Resiliency study",
    "Detection rate of fake videos", "Coverage of the blink detectors", "When the attack fools its target",
    "Perceptual cost and blink-path change", "The reference study's attack table",
    "Landmark backends compared", "What per-frame noise does to the blink path", "Finding",
    "Attacks on the blink path", "Landmark Breaker (NME by the outer eye corners; SSIM in the face box)",
    "white box", "transfer", "Adaptive post-training defence",
]


def _stub_png(out_png) -> None:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"\x89PNG stub")


def _plot_two(curves_or_df, out_png, title="", **kw):
    _stub_png(out_png)


def make(work: Path, mp, params: dict) -> dict:
    """Write the run under ``work`` (made the working directory) with ``mp`` (a pytest
    MonkeyPatch) and return the params of the report over it."""
    from blinkbench.experiments import landmark_compare as lc
    from blinkbench.experiments import noise_effect
    from blinkbench.report import build, defence, plotting, reference

    mp.chdir(work)
    root = work / "raw"
    root.mkdir(parents=True, exist_ok=True)
    params["datasets"] = {DATASET: {"adapter": "folder", "root": str(root)}}
    params["report"]["ear_plots"] = 2
    for sec in ("detectors", "frame_detectors"):
        params[sec].update(train_on=[DATASET], test_on=[DATASET])
    params["detectors"]["enabled"] = ["blink_rate_rule", "minirocket"]
    params["frame_detectors"]["enabled"] = ["meso4"]
    params["attacks"].update(enabled=True, dataset=DATASET, targets=["meso4"], methods=["fgsm", "nes"],
                             eps=[12.75, 25.5], preset="reference")
    params["blink_attacks"].update(enabled=True, dataset=DATASET)
    params["defence"].update(enabled=True, dataset=DATASET)

    mp.setattr(plotting, "plot_ear", lambda ear, ev, out_png, title="", truth=None: _stub_png(out_png))
    mp.setattr(plotting, "plot_roc", _plot_two)
    mp.setattr(plotting, "plot_eps_sweep", _plot_two)

    # --- per-dataset part: the video table, ground truth, EAR plots
    summ = {"frames": 200, "face_frames": 198, "duration_s": 8.0, "n_blinks": 3, "n_closures": 1,
            "blink_rate_per_min": 22.5, "mean_blink_ms": 180.0, "ibi_mean_s": 2.1, "ibi_cv": 0.3, "ear_median": 0.29}
    rows = [
        {"video_id": "real_1", "label": "real", "split": "test", "method": "", "input_status": "ok", "status": "ok",
         "error": "", "warnings": "", **summ},
        {"video_id": NASTY_VIDEO, "label": "fake", "split": "test", "method": "swap & <merge>", "input_status": "ok",
         "status": "ok", "error": "", "warnings": "low fps <10> & jitter", **{**summ, "n_blinks": 0, "n_closures": 0}},
        {"video_id": "fake_2", "label": "fake", "split": "train", "method": "swap", "input_status": "error",
         "status": "error", "error": "ValueError: cannot decode <moov> atom", "warnings": ""},
    ]
    mp.setattr(build, "dataset_table", lambda name: pd.DataFrame(rows))
    mp.setattr(build, "truth_recovery", lambda name, r, table: {
        "tolerance_frames": 2, "true_positives": 3, "truth_events": 4, "detected_events": 5,
        "precision": 0.6, "recall": 0.75})
    pd.DataFrame({"video_id": ["real_1"], "start_frame": [10], "end_frame": [14], "kind": ["blink"]}).to_csv(
        root / "blinks.csv", index=False)
    for vid in OK_VIDEOS:
        for kind, df in (("ear", pd.DataFrame({"timestamp_s": [0.0, 0.04], "ear_mean": [0.3, 0.1]})),
                         ("blinks", pd.DataFrame({"kind": ["blink"], "start_s": [0.0], "end_s": [0.04]}))):
            p = paths.path(kind, dataset=DATASET, video=vid)
            p.parent.mkdir(parents=True, exist_ok=True)
            df.to_parquet(p)

    # --- detectors of both families
    def detector_results(params, family="blink"):
        base = {"train": DATASET, "test": DATASET, "error": "", "skipped": 0}
        m = {"n": 4, "coverage": 1.0, "auc": 0.875, "eer": 0.25, "acc_0.5": 0.75, "acc_fake": 0.5, "acc_real": 1.0,
             "acc_eer": 0.75, "ap": 0.9, "acc_unknown_as_fake": 0.75}
        if family == "blink":
            return pd.DataFrame([{"detector": "blink_rate_rule", **base, "family": "blink", "status": "ok", **m},
                                 {"detector": "minirocket", "train": DATASET, "test": DATASET, "status": "missing"}])
        return pd.DataFrame([{"detector": "meso4", **base, "family": "frame", "status": "ok", **m,
                              "auc": 0.625, "frame_auc": 0.6}])

    mp.setattr(build, "detector_results", detector_results)
    for family, det in (("blink", "blink_rate_rule"), ("frame", "meso4")):
        p = paths.path(f"{family}_roc", detector=det, train=DATASET, test=DATASET)
        p.parent.mkdir(parents=True, exist_ok=True)
        roc = pd.DataFrame({"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 1.0, 1.0], "threshold": [1.0, 0.5, 0.0]})
        roc.to_csv(p, index=False)

    # --- best-of selection (real files)
    io.write_json({"train_dataset": DATASET, "landmark_backend": "mediapipe", "enabled": True, "metric": "auc",
                   "chosen": "blink_rate_rule", "chosen_score": 0.875, "status": "ok", "error": "",
                   "validation": {"source": "val split", "n_val": 6},
                   "candidates": {"blink_rate_rule": {"status": "ok", "auc": 0.875},
                                  "minirocket": {"status": "error", "error": "RuntimeError: <boom> & bust"}}},
                  paths.path("blink_selection", train=DATASET))
    io.write_json({"auc": 0.875, "acc_0.5": 0.75, "acc_fake": 0.5, "acc_real": 1.0},
                  paths.path("blink_eval", detector="blink_rate_rule", train=DATASET, test=DATASET))

    # --- resiliency study
    srows = []
    for t, m, eps, v, q in (("clean", "none", 0.0, "none", None), ("clean", "none", 0.0, "h264_crf23", None),
                            ("meso4", "fgsm", 12.75, "none", None), ("meso4", "fgsm", 25.5, "h264_crf23", None),
                            ("meso4", "nes", 12.75, "none", 180.5)):
        for det, rate in (("frame/meso4", 0.5 if eps else 1.0), ("blink/blink_rate_rule", 0.75)):
            srows.append({"target": t, "method": m, "eps": eps, "variant": v, "psnr_mean": 41.2 - eps / 10,
                          "ssim_mean": 0.98, "linf_max": eps, "l2_mean": eps * 3, "success_rate": 0.5 if eps else None,
                          "blink_change": 0.5, "ear_median_change": 0.01, "queries_per_frame": q, "detector": det,
                          "n": 2, "detection_rate": rate, "mean_score": 0.6, "video_fooled_rate": 0.5 if eps else 0.0,
                          "coverage": 1.0 if det.startswith("frame/") else 0.5,
                          "n_insufficient": None if det.startswith("frame/") else 2})
    mp.setattr(build, "study_sets", lambda params: {})
    mp.setattr(build, "study_results", lambda params, sets=None: pd.DataFrame(srows))
    fooled = pd.DataFrame([{"target": "meso4", "method": "fgsm", "eps": 12.75, "variant": "none", "fakes": 2,
                            "detected clean": 2, "fooled": 1, "blink/blink_rate_rule": "1.00 -> 0.00 (1 insufficient)"}])
    mp.setattr(build, "fooled_results",
               lambda params, sets=None: (fooled.set_index(["target", "method", "eps", "variant"]), {}))

    # --- the reference study's table and the landmark comparison
    def res(frac, blink):
        return {"videos": [{"video_id": v, "label": "fake", "face_duration_s": 6.0,
                            "scores": {"frame_frac/meso4": frac, "blink/blink_rate_rule": blink}}
                           for v in ("fake_a", "fake_b")]}

    sets = {("clean", 0.0): res(1.0, 0.7), ("meso4", 12.75): res(0.25, 0.7), ("meso4", 25.5): res(0.0, None)}
    mp.setattr(reference, "load_sets", lambda params, method="fgsm", variant="none": sets)
    lc_rows = [{"backend": "mediapipe", "detector": "blink_rate_rule", "status": "ok", "error": "", "auc": 0.875,
                "acc_0.5": 0.75, "acc_fake": 0.5, "acc_real": 1.0, "coverage": 1.0, "acc_unknown_as_fake": 0.75},
               {"backend": "pfld", "detector": "blink_rate_rule", "status": "error", "error": "no model <path> & co"}]
    io.write_json({"rows": lc_rows, "video_status": {"mediapipe": {"ok": 4}, "pfld": {"error": 4}}},
                  lc.out_dir(DATASET) / "results.json")

    # --- noise effect: 3 study sets (one clean) x 2 compressions x 2 blink detectors; the
    # finding is the real one over these rows, with conclusion lines carrying markup
    ne_rows = []
    for i, (target, method, eps) in enumerate((("clean", "none", 0.0), ("meso4", "fgsm", 12.75), ("meso4", "fgsm", 25.5))):
        for j, variant in enumerate(NOISE_COMPRESSIONS):
            for k, det in enumerate(("blink_rate_rule", "minirocket")):
                change = 0.1 * i + 0.05 * j - 0.2 * k * (i > 0)
                ne_rows.append({"target": target, "method": method, "eps": eps, "variant": variant,
                                "detector": det, "n": 2, "score_clean": 0.3, "score_attacked": 0.3 + change,
                                "score_control": 0.3 + change / 2, "score_change": change, "blink_change": float(i),
                                "ear_rms": 0.01 * j + 0.02 * i, "ear_max": 0.08, "level_change": 0.01, "norm_rms": 0.05,
                                "norm_max": 0.2, "jitter_clean": 0.01, "jitter_attacked": 0.01 + 0.03 * i,
                                "noise_clean": 0.005, "noise_attacked": 0.005 + 0.01 * i, "eye_disp_median_px": 0.4 * i,
                                "eye_disp_max_px": 1.5, "eye_shape_median_px": 0.2 * i, "eye_shape_max_px": 0.9})
    ne = pd.DataFrame(ne_rows)
    ne_ref = pd.DataFrame([{"detector": d, "label": lab, "jitter_median": j, "count": 3}
                           for d in ("blink_rate_rule", "tsf") for lab, j in (("real", 0.011), ("fake", 0.012))])
    real_finding = noise_effect.finding
    mp.setattr(noise_effect, "compute", lambda params, models=None: {"summary": ne, "reference": ne_ref})
    mp.setattr(noise_effect, "write", lambda tables, out_dir: {
        "summary": Path(out_dir) / "noise_effect.csv", "reference": Path(out_dir) / "noise_effect_reference.csv"})
    mp.setattr(noise_effect, "finding", lambda summary, ref=None: {
        "table": real_finding(summary, ref)["table"],
        "conclusion": ["score rises by 0.3 under noise < the clean jitter & more", "the control moves it as much"]})

    # --- blink-path attacks (real files)
    bdir = Path(paths.PATTERNS["landmark_breaker"].format(dataset=DATASET)).parent
    cond = {"n_blinks": 3, "mean_blink_ms": 150.0, "injected_detected": None, "injected_min_ratio": [0.3, None],
            "needed_ratio": 0.6, "focus_mean_ratio": 0.9, "detector_p_fake": {"blink_rate_rule": 0.4, "tsf": None}}
    used = {"eps": 8.0, "steps": 60, "step_size": 1.0}     # the EAR attack's params as it ran
    io.write_json({"status": "ok", "perceptual": {"psnr_mean": 44.0, "linf": 8.0}, "params": used,
                   "conditions": {"clean": cond, "lossless": {**cond, "n_blinks": 1},
                                  "h264_crf23": {**cond, "n_blinks": 2}}},
                  paths.path("ear_attack", dataset=DATASET, mode="suppress", video="real_1"))
    io.write_json({"status": "ok", "perceptual": {"psnr_mean": 43.0, "linf": 8.0}, "injected_blinks": [1, 2], "params": used,
                   "conditions": {"lossless": {**cond, "injected_detected": 2}}},
                  paths.path("ear_attack", dataset=DATASET, mode="inject", video=NASTY_VIDEO))
    io.write_json({"status": "error", "error": "RuntimeError: no face <here> & there"},
                  paths.path("ear_attack", dataset=DATASET, mode="inject", video="fake_2"))
    io.write_json({"status": "ok", "dataset": DATASET, "n_crops": 4}, bdir / "landmark_breaker.json")
    pd.DataFrame({"attack": ["mifgsm", "pgd"], "nme": [0.12, 0.2], "nme68": [0.1, 0.18], "ssim": [0.9, 0.85]}).to_csv(
        bdir / "landmark_breaker_white_box.csv", index=False)
    pd.DataFrame({"attack": ["mifgsm"], "target": ["pfld"], "nme": [0.05]}).to_csv(
        bdir / "landmark_breaker_transfer.csv", index=False)

    # --- defence
    drow = {"detector": "meso4", "algorithm": "pgd", "variant": "frozen", "status": "ok", "error": "",
            **{f"{k}_{w}": v for k in defence.COLUMNS for w, v in (("before", 0.75), ("after", 0.8125))},
            "neighbours_kept": 12, "candidates": 16, "steps": 20, "fgsm_moved_undefended": True, "crops_per_s": 33.3}
    derr = {"detector": "meso4", "algorithm": "deepfool", "variant": "full", "status": "error",
            "error": "ValueError: <nan> & inf"}
    ref = {"note": "seed study, Table 3", "detector": "Xception", "normal_before": 0.9523, "robust_before": 0.0812,
           "normal_after": [0.91, 0.94], "robust_after": [0.556, 0.701]}
    mp.setattr(defence, "defence_results", lambda params: (pd.DataFrame([drow, derr]), ref))
    mp.setattr(defence, "skipped", lambda params: {"meso4/deepfool": "no crops & <none>"})
    return params
