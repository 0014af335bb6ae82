"""The run report: per-dataset video status, blink statistics by label, ground-truth blink
recovery where a dataset ships annotations, EAR plots; plus DVC metrics.

Outputs (paths in :mod:`blinkbench.core.paths`): ``data/reports/index.html``,
``data/reports/metrics.json`` (read by ``dvc metrics show``), and per dataset
``data/reports/<dataset>/videos.csv`` (one row per video: manifest fields, pipeline status,
blink summary) and ``ear_<video>.png``.
"""

from __future__ import annotations

import html
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from blinkbench.core import io, paths
from blinkbench.core.labels import LABELS
from blinkbench.spine.blinks import match_events

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ["frames", "face_frames", "duration_s", "n_blinks", "n_closures", "blink_rate_per_min",
                  "mean_blink_ms", "ibi_mean_s", "ibi_cv", "ear_median"]
TRUTH_TOLERANCE_FRAMES = 2


def dataset_table(name: str) -> pd.DataFrame:
    """Manifest joined with each video's pipeline status and blink summary."""
    man = pd.read_parquet(paths.path("manifest", dataset=name))
    rows = []
    for r in man.itertuples(index=False):
        row = {"video_id": r.video_id, "label": r.label, "split": r.split, "method": r.method,
               "input_status": r.status, "status": r.status, "error": r.error, "warnings": ""}
        sp = paths.path("blink_summary", dataset=name, video=r.video_id)
        if r.status != "missing" and sp.exists():
            s, damaged = _blink_outputs(name, r.video_id, sp)
            if damaged:
                row.update(status="error", error=damaged)
            else:
                row.update({k: s.get(k) for k in SUMMARY_FIELDS})
                row.update(status=s.get("status", "error"), error=s.get("error", ""),
                           warnings="; ".join(map(str, s.get("warnings") or [])))
        rows.append(row)
    return pd.DataFrame(rows)


def _blink_outputs(name: str, video_id: str, summary_path: Path) -> tuple[dict, str]:
    """A video's blink summary, and "" or why its blink outputs cannot be used: a summary
    that is not a JSON object, or (for an ok video) an events file that does not read. A
    damaged file becomes that video's error row; the report is built from the rest."""
    try:
        s = io.read_json(summary_path)
        if not isinstance(s, dict):
            raise ValueError(f"a JSON {type(s).__name__}, not an object")
        if s.get("status") == "ok":
            pd.read_parquet(paths.path("blinks", dataset=name, video=video_id))
        return s, ""
    except Exception as exc:  # any damage: one row, not the whole report
        return {}, f"unreadable blink output of {video_id} ({summary_path.name}): {type(exc).__name__}: {exc}"


def truth_recovery(name: str, root: str | Path, table: pd.DataFrame) -> dict | None:
    """Precision/recall of blink and closure events against ``root/blinks.csv`` if present."""
    truth_path = Path(root) / "blinks.csv"
    if not truth_path.exists():
        return None
    truth = pd.read_csv(truth_path)
    truth = truth[truth["kind"].isin(["blink", "closure"])]
    tp = n_truth = n_det = 0
    for vid in table.loc[table["status"] == "ok", "video_id"]:
        ev = pd.read_parquet(paths.path("blinks", dataset=name, video=vid))
        m = match_events(ev, truth[truth["video_id"] == vid], TRUTH_TOLERANCE_FRAMES)
        tp, n_truth, n_det = tp + m["tp"], n_truth + m["n_truth"], n_det + m["n_detected"]
    return {"tolerance_frames": TRUTH_TOLERANCE_FRAMES, "true_positives": tp, "truth_events": n_truth,
            "detected_events": n_det, "precision": tp / n_det if n_det else float("nan"),
            "recall": tp / n_truth if n_truth else float("nan")}


def _label_stats(table: pd.DataFrame) -> dict:
    out = {}
    ok = table[table["status"] == "ok"]
    for label, g in ok.groupby("label"):
        out[label] = {
            "videos": int(len(g)),
            "blink_rate_median": _num(g["blink_rate_per_min"].median()),
            "mean_blink_ms_median": _num(g["mean_blink_ms"].median()),
            "closures_total": int(g["n_closures"].fillna(0).sum()),
            "videos_without_blinks": int((g["n_blinks"].fillna(0) == 0).sum()),
        }
    return out


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _plot_choice(table: pd.DataFrame, n: int) -> list[str]:
    ok = table[table["status"] == "ok"]
    by_label = [list(ok.loc[ok["label"] == lab, "video_id"]) for lab in LABELS]
    out = []
    while len(out) < n and any(by_label):
        for lst in by_label:
            if lst and len(out) < n:
                out.append(lst.pop(0))
    return out


def build(params: dict) -> Path:
    from .best_of import best_of_section
    from .plotting import plot_ear

    out_dir = Path(paths.PATTERNS["report"]).parent
    metrics: dict = {}
    sections = []
    for name, ds in params["datasets"].items():
        table = dataset_table(name)
        csv = paths.path("dataset_summary", dataset=name)
        with io.atomic_path(csv) as tmp:
            table.to_csv(tmp, index=False, float_format="%.4f")
        truth = truth_recovery(name, ds["root"], table)
        stats = _label_stats(table)
        status_counts = table["status"].value_counts().sort_index().to_dict()
        metrics[name] = {"videos": int(len(table)), "ok": int((table["status"] == "ok").sum()),
                         "status": {k: int(v) for k, v in status_counts.items()}, "by_label": stats}
        if truth:
            metrics[name]["blink_truth"] = {k: (_num(v) if isinstance(v, float) else v) for k, v in truth.items()}
        plots = []
        truth_df = pd.read_csv(Path(ds["root"]) / "blinks.csv") if truth else None
        for vid in _plot_choice(table, params["report"]["ear_plots"]):
            png = csv.parent / f"ear_{vid}.png"
            try:  # a damaged EAR file costs its plot only
                ear = pd.read_parquet(paths.path("ear", dataset=name, video=vid))
            except Exception as exc:
                log.warning("no EAR plot of %s/%s: %s", name, vid, exc)
                continue
            ev = pd.read_parquet(paths.path("blinks", dataset=name, video=vid))
            label = table.loc[table["video_id"] == vid, "label"].iloc[0]
            tr = truth_df[truth_df["video_id"] == vid] if truth_df is not None else None
            plot_ear(ear, ev, png, title=f"{name} / {vid} ({label})", truth=tr)
            plots.append(png.relative_to(out_dir).as_posix())
        sections.append(_section_html(name, ds, table, stats, truth, plots, csv.relative_to(out_dir).as_posix()))
    for family in FAMILY_SECTIONS:
        det_metrics, det_html = detectors_section(params, out_dir, family)
        if det_metrics:
            metrics[f"{family}_detectors"] = det_metrics
        sections.append(det_html)
        if family == "blink":  # the best-of selection (detectors.best_of), in its own module
            bo_metrics, bo_html = best_of_section(params)
            if bo_metrics:
                metrics["blink_best_of"] = bo_metrics
            sections.append(bo_html)
    study_metrics, study_html = study_section(params, out_dir)
    if study_metrics:
        metrics["study"] = study_metrics
    sections.append(study_html)
    from .reference import reference_sections   # beside the reference study (issue 17)

    for key, ref_metrics, ref_html in reference_sections(params, out_dir):
        if ref_metrics:
            metrics[key] = ref_metrics
        sections.append(ref_html)
    ne_metrics, ne_html = noise_effect_section(params, out_dir)
    if ne_metrics:
        metrics["noise_effect"] = ne_metrics
    sections.append(ne_html)
    ba_metrics, ba_html = blink_attack_section(params)
    if ba_metrics:
        metrics["blink_attacks"] = ba_metrics
    sections.append(ba_html)
    from .defence import defence_section

    def_metrics, def_html = defence_section(params)
    if def_metrics:
        metrics["defence"] = def_metrics
    sections.append(def_html)
    io.write_json(metrics, paths.PATTERNS["metrics"])
    page = _PAGE.format(body="\n".join(sections) or "<p>No datasets configured.</p>")
    report = Path(paths.PATTERNS["report"])
    with io.atomic_path(report) as tmp:
        tmp.write_text(page)
    return report


DETECTOR_METRICS = ["n", "coverage", "auc", "eer", "acc_0.5", "acc_fake", "acc_real", "acc_eer", "ap",
                    "acc_unknown_as_fake"]


FAMILY_SECTIONS = {"blink": ("detectors", "Blink-based detectors (EAR series)"),
                   "frame": ("frame_detectors", "Frame-level detectors (face crops)")}


def detector_results(params: dict, family: str = "blink") -> pd.DataFrame:
    """One row per (detector, training dataset, test dataset) with the protocol's metrics;
    missing evaluations (a failed training) appear with status 'missing'."""
    from blinkbench.experiments.plan import detector_plan

    names, train_on, test_on = detector_plan(params, section=FAMILY_SECTIONS[family][0])
    rows = []
    for det in names:
        for tr in train_on:
            for te in test_on:
                p = paths.path(f"{family}_eval", detector=det, train=tr, test=te)
                row = {"detector": det, "train": tr, "test": te}
                if p.exists():
                    r = io.read_json(p)
                    r["acc_unknown_as_fake"] = (r.get("unknown_as_fake") or {}).get("acc")
                    row.update(family=r.get("family"), status=r.get("status", "ok"), error=r.get("error", ""),
                               skipped=len(r.get("skipped", [])), **{k: r.get(k) for k in DETECTOR_METRICS})
                    if "frame" in r:  # frame detectors: frame-level AUC beside the video-level one
                        row["frame_auc"] = r["frame"].get("auc")
                else:
                    row.update(status="missing")
                rows.append(row)
    return pd.DataFrame(rows)


def detectors_section(params: dict, out_dir: Path, family: str = "blink") -> tuple[dict, str]:
    """Per-detector metrics, the cross-dataset AUC matrix, ROC plots (PNG for the page, CSV
    under ``reports/roc/`` for ``dvc plots``) and DVC metrics for one detector family."""
    from .plotting import plot_roc

    section, title = FAMILY_SECTIONS[family]
    df = detector_results(params, family)
    if df.empty:
        return {}, ""
    e = html.escape
    metrics: dict = {}
    for r in df[df["status"] == "ok"].to_dict("records"):
        metrics.setdefault(r["detector"], {}).setdefault(r["train"], {})[r["test"]] = {
            k: int(r[k]) if k == "n" else _num(r[k]) for k in DETECTOR_METRICS}
    parts = [f"<h2>{e(title)}</h2>",
             "<p>Trained on the train and val splits of the row's dataset, evaluated on the test split of the "
             "column's dataset (video level; fake is the positive class). acc_eer uses the threshold read off the "
             "evaluated set's own ROC (descriptive, as papers report it); acc_0.5 is the deployable one. Videos "
             "without a usable EAR series are left out of metrics and counted in <em>skipped</em>. A blink verdict "
             "needs at least <code>detectors.min_face_s</code> seconds of visible face; shorter videos get the "
             "verdict <em>insufficient</em> and are left out of the metrics, and <em>coverage</em> is the share "
             "of the test videos that got a verdict (AUC is over those only). acc_fake and acc_real are the "
             "accuracies on fakes and on reals at 0.5; acc_unknown_as_fake counts every test video, one "
             "without a verdict (insufficient or unknown) as called fake, as the blink-resiliency reference "
             "study does.</p>"]
    parts += ["<h3>Metrics</h3>", _table_html(df)]
    ok = df[df["status"] == "ok"]
    if len(ok):
        mat = ok.pivot_table(index=["detector", "train"], columns="test", values="auc", aggfunc="first")
        order = [d for d in params[section]["enabled"] if d in mat.index.get_level_values(0)]
        mat = mat.reindex(order, level=0)
        parts += ["<h3>Cross-dataset matrix (AUC; rows: trained on, columns: tested on)</h3>",
                  mat.to_html(na_rep="", float_format=lambda x: f"{x:.3f}", border=0, classes="t")]
    roc_dir = out_dir / "roc"
    for (tr, te), grp in df.groupby(["train", "test"], sort=True):
        curves = {}
        for r in grp.itertuples(index=False):
            p = paths.path(f"{family}_roc", detector=r.detector, train=tr, test=te)
            if r.status != "ok" or not p.exists():
                continue
            c = pd.read_csv(p)
            if len(c):
                auc = f"{r.auc:.3f}" if r.auc is not None and r.auc == r.auc else "n/a"
                curves[f"{r.detector} (AUC {auc})"] = c
                csv = roc_dir / f"{family}__{r.detector}__{tr}__{te}.csv"
                with io.atomic_path(csv) as tmp:
                    c[["fpr", "tpr"]].to_csv(tmp, index=False)
        if curves:
            png = out_dir / f"roc_{family}__{tr}__{te}.png"
            plot_roc(curves, png, title=f"{family} detectors: trained on {tr}, tested on {te}")
            rel = png.relative_to(out_dir).as_posix()
            parts.append(f"<figure><img src='{e(rel)}' alt='ROC'><figcaption>{e(rel)}</figcaption></figure>")
    return metrics, "\n".join(parts)


def study_results(params: dict) -> pd.DataFrame:
    """One row per (study set, detector) from the re-scoring JSONs that exist."""
    from blinkbench.experiments.study import plan

    if not params["attacks"]["enabled"]:
        return pd.DataFrame()
    ds = params["attacks"]["dataset"]
    rows = []
    for t, m, e, v in plan(params):
        p = paths.path("study", dataset=ds, target=t, method=m, eps=e, variant=v)
        if not p.exists():
            continue
        summ = io.read_json(p)["summary"]
        base = {"target": t, "method": m, "eps": float(e), "variant": v, **{f"{k}": summ.get("perceptual", {}).get(k)
                for k in ("psnr_mean", "ssim_mean", "linf_max", "l2_mean", "success_rate")},
                "blink_change": summ.get("blink_path", {}).get("mean_blink_change"),
                "ear_median_change": summ.get("blink_path", {}).get("mean_ear_median_change"),
                "queries_per_frame": summ.get("queries_per_frame")}
        for det, d in summ.items():
            if "/" in det:
                rows.append({**base, "detector": det, "n": d["n"], "detection_rate": d["detection_rate"],
                             "mean_score": d["mean_score"], "video_fooled_rate": d.get("video_fooled_rate")})
    return pd.DataFrame(rows)


def study_section(params: dict, out_dir: Path) -> tuple[dict, str]:
    """The resiliency study: detection rate of attacked fake videos per detector, eps and
    compression (the clean reference is eps 0), perceptual cost, blink-path change; eps-sweep
    plots with frame and blink detectors together."""
    from .plotting import plot_eps_sweep

    df = study_results(params)
    if df.empty:
        return {}, ""
    e = html.escape
    a = params["attacks"]
    parts = ["<h2>Resiliency study</h2>",
             f"<p>Fake test videos of <code>{e(a['dataset'])}</code> attacked against the frame detector(s) "
             f"{e(', '.join(a['targets']))} (white box, targeted at 'real'; models trained on "
             f"<code>{e(a['models_trained_on'])}</code>), compressed, then re-scored by every trained detector: "
             "frame detectors on the adversarial face crops, blink detectors on EAR re-extracted with the real "
             "MediaPipe Face Mesh. eps 0 is the clean reference under the same compression. Detection rate: share "
             "of fake videos scored >= 0.5 (robust accuracy; attack success = 1 - detection rate). "
             "video_fooled_rate (frame detectors): share of videos with fewer than half their crops called fake. "
             "blink_change: mean change in blink count against the clean source; perceptual cost inside the face "
             "box before compression.</p>"]
    metrics: dict = {}
    for r in df.to_dict("records"):
        metrics.setdefault(r["target"], {}).setdefault(r["method"], {}).setdefault(f"eps{r['eps']:g}", {}).setdefault(
            r["variant"], {})[r["detector"]] = _num(r["detection_rate"])
    # Headline (seed 003): per-video attack success against the attacked detector itself, a
    # video being fooled when fewer than half of its re-scored crops are called fake.
    fooled: dict = {}
    for r in df[df["detector"] == "frame/" + df["target"]].to_dict("records"):
        fooled.setdefault(r["target"], {}).setdefault(r["method"], {}).setdefault(f"eps{r['eps']:g}", {})[
            r["variant"]] = _num(r["video_fooled_rate"])
    # black-box attacks (NES): model queries per attacked frame, per set
    queries: dict = {}
    for r in df[df["queries_per_frame"].notna()].drop_duplicates(["target", "method", "eps", "variant"]).to_dict("records"):
        queries.setdefault(r["target"], {}).setdefault(r["method"], {}).setdefault(f"eps{r['eps']:g}", {})[
            r["variant"]] = _num(r["queries_per_frame"])
    clean = df[df["target"] == "clean"]
    sweep_dir = out_dir / "study_sweep"    # for `dvc plots`: one CSV per (target, method, variant, detector)
    for t in a["targets"]:
        for m in a["methods"]:
            sub = pd.concat([clean, df[(df["target"] == t) & (df["method"] == m)]])
            if sub.empty or (sub["target"] == t).sum() == 0:
                continue
            for (v, det), g in sub.groupby(["variant", "detector"], sort=True):
                csv = sweep_dir / f"{t}__{m}__{v}__{det.replace('/', '_')}.csv"
                with io.atomic_path(csv) as tmp:
                    g.sort_values("eps")[["eps", "detection_rate"]].to_csv(tmp, index=False)
            png = out_dir / f"study_{t}__{m}.png"
            plot_eps_sweep(sub[["variant", "eps", "detector", "detection_rate"]], png,
                           title=f"{m} against {t}: fake videos still detected")
            rel = png.relative_to(out_dir).as_posix()
            parts.append(f"<figure><img src='{e(rel)}' alt='eps sweep'><figcaption>{e(rel)}</figcaption></figure>")
    wide = df.pivot_table(index=["target", "method", "eps", "variant"], columns="detector", values="detection_rate",
                          aggfunc="first")
    cost = df.groupby(["target", "method", "eps", "variant"])[["psnr_mean", "ssim_mean", "linf_max", "l2_mean",
                                                               "success_rate",
                                                               "blink_change", "ear_median_change",
                                                               "queries_per_frame"]].first().astype(float)
    # (float: a column that is None for every white-box row printed "None" instead of a blank)
    parts += ["<h3>Detection rate of fake videos</h3>",
              wide.to_html(na_rep="", float_format=lambda x: f"{x:.2f}", border=0, classes="t"),
              "<h3>Perceptual cost and blink-path change</h3>",
              "<p>queries_per_frame: model queries per attacked frame of the black-box attacks (NES), "
              "mean over the set's videos; white-box attacks have none.</p>",
              cost.to_html(na_rep="", float_format=lambda x: f"{x:.3g}", border=0, classes="t")]
    out = {"attack_success_rate_videos": fooled, "detection_rate": metrics}
    if queries:
        out["queries_per_frame"] = queries
    return out, "\n".join(parts)


def blink_attack_section(params: dict) -> tuple[dict, str]:
    """EAR attacks (per video and condition: blinks found by the real pipeline, EAR inside the
    targeted frames relative to the open level, blink detectors' fake probability, perceptual
    cost) and Landmark Breaker's tables."""
    b = params["blink_attacks"]
    if not b["enabled"]:
        return {}, ""
    ds = b["dataset"]
    root = Path(paths.PATTERNS["landmark_breaker"].format(dataset=ds)).parent
    rows = []
    for res_p in sorted(root.glob("*/*/result.json")):
        r = io.read_json(res_p)
        mode, vid = res_p.parent.parent.name, res_p.parent.name
        cost = r.get("perceptual") or {}
        for cond, c in (r.get("conditions") or {}).items():
            scores = [v for v in (c.get("detector_p_fake") or {}).values() if v is not None]
            dips = [x for x in (c.get("injected_min_ratio") or []) if x is not None]
            rows.append({"mode": mode, "video_id": vid, "status": r.get("status"), "condition": cond,
                         "n_blinks": c.get("n_blinks"), "mean_blink_ms": c.get("mean_blink_ms"),
                         "injected": len(r.get("injected_blinks") or []) if mode == "inject" else None,
                         "injected_detected": c.get("injected_detected"),
                         "dip_reached": float(np.mean(dips)) if dips else None, "dip_needed": c.get("needed_ratio"),
                         "focus_mean_ratio": c.get("focus_mean_ratio"),
                         "blink_detectors_mean_p_fake": float(np.mean(scores)) if scores else None,
                         "psnr": cost.get("psnr_mean"), "linf": cost.get("linf")})
        if not r.get("conditions"):
            rows.append({"mode": mode, "video_id": vid, "status": r.get("status"), "condition": "",
                         "error": r.get("error", "")})
    e = html.escape
    parts = ["<h2>Attacks on the blink path</h2>",
             "<p>EAR attacks through the differentiable Face Mesh port: <em>suppress</em> keeps a real video's "
             "open-eye EAR through its blinks, <em>inject</em> gives a fake video a natural blink pattern. Each "
             "adversarial video is re-scored by the real pipeline (MediaPipe Face Mesh, EAR, blink events) losslessly "
             "and after compression. inject: injected blinks scheduled and found by the pipeline; dip_reached: mean over "
             "injected blinks of the lowest EAR / open level inside each, against dip_needed (blinks.close_ratio, "
             "below which the detector starts an event). focus_mean_ratio: EAR over the targeted frames relative to the open-eye level "
             "(suppress: towards 1; inject: towards the dip). blink_detectors_mean_p_fake: mean over the trained "
             "blink detectors.</p>"]
    metrics: dict = {}
    if rows:
        df = pd.DataFrame(rows)
        parts.append(_table_html(df))
        for r in rows:
            if r.get("n_blinks") is not None:
                metrics.setdefault(r["mode"], {}).setdefault(r["condition"], []).append(r["n_blinks"])
        metrics = {m: {c: float(np.mean(v)) for c, v in d.items()} for m, d in metrics.items()}
        metrics = {"mean_blinks": metrics}
    lb = root / "landmark_breaker.json"
    if lb.exists():
        parts.append("<h3>Landmark Breaker (NME by the outer eye corners; SSIM in the face box)</h3>"
                     "<p>nme68: over the 68 iBUG points (Face Mesh reduced to its 68-point equivalent), as seed "
                     "001 reports it; nme: over all the extractor's points. ablation: white box over step size "
                     "alpha x iterations T.</p>")
        for name in ("white_box", "transfer", "compression", "ablation"):
            csv = root / f"landmark_breaker_{name}.csv"
            if csv.exists() and csv.stat().st_size > 1:
                try:
                    t = pd.read_csv(csv)
                except pd.errors.EmptyDataError:
                    continue
                parts += [f"<h4>{e(name.replace('_', ' '))}</h4>", _table_html(t)]
                if name == "white_box" and "nme" in t.columns and "attack" in t.columns:
                    metrics["landmark_breaker_white_box_nme"] = {a: _num(v) for a, v in zip(t["attack"], t["nme"])}
                if name == "white_box" and "nme68" in t.columns and "attack" in t.columns:
                    metrics["landmark_breaker_white_box_nme68"] = {a: _num(v) for a, v in zip(t["attack"], t["nme68"])}
    return metrics, "\n".join(parts)


def noise_effect_section(params: dict, out_dir: Path) -> tuple[dict, str]:
    """Why the blink detectors move under per-frame noise (:mod:`blinkbench.experiments.noise_effect`):
    per study set and blink detector, score change, EAR difference (raw and after the
    detector's normalisation), EAR jitter and eye-landmark displacement against the source
    video; tables in ``noise_effect*.csv``/``.json`` beside the report."""
    from blinkbench.experiments import noise_effect

    if not params["attacks"]["enabled"]:
        return {}, ""
    tables = noise_effect.compute(params)
    summary = tables["summary"]
    if summary.empty:
        return {}, ""
    files = noise_effect.write(tables, out_dir)
    e = html.escape
    cols = ["target", "method", "eps", "variant", "detector", "n", "score_clean", "score_attacked", "score_control",
            "score_change",
            "blink_change", "ear_rms", "ear_max", "level_change", "norm_rms", "norm_max", "jitter_clean",
            "jitter_attacked", "noise_clean", "noise_attacked", "eye_disp_median_px", "eye_disp_max_px", "eye_shape_median_px", "eye_shape_max_px"]
    links = ", ".join(f"<a href='{e(p.name)}'>{e(p.name)}</a>" for p in files.values())
    parts = ["<h2>What per-frame noise does to the blink path</h2>",
             "<p>Each study set against the source video's own artifacts (clean rows: decoding and compression "
             "alone). score: the blink detector's fake probability (mean over videos); score_control: the detector on "
             "the clean EAR plus the attack's own per-frame EAR residual drawn in random order (the causal check: "
             "noise of that size alone, with no tie to time or blinks); ear_rms/ear_max: |EAR attacked - "
             "EAR clean| on frames aligned by index; norm_*: the same after the detector's series preparation "
             "(resampling, normalisation); level_change: relative change of the median EAR; jitter: RMS of the "
             "frame-to-frame difference of the normalised series, noise: its median absolute value (the noise floor between blinks); eye_disp: eye-contour landmark displacement in frame "
             "pixels, eye_shape: the same after removing each eye's mean shift (what EAR sees). Files: "
             f"{links}.</p>", _table_html(summary[[c for c in cols if c in summary]])]
    ref = tables.get("reference")
    if ref is not None and len(ref):
        parts += ["<p>Jitter of the clean train series by label (what the detectors learned from):</p>",
                  _table_html(ref)]
    lines = noise_effect.finding(summary, ref)
    if lines:
        parts += ["<h3>Finding</h3>", "<ul>" + "".join(f"<li>{e(x)}</li>" for x in lines) + "</ul>"]
    metrics: dict = {}
    for r in summary.to_dict("records"):
        metrics.setdefault(f"{r['target']}/{r['method']}/eps{r['eps']:g}/{r['variant']}", {})[r["detector"]] = {
            k: _num(r.get(k)) for k in ("score_change", "score_control", "ear_rms", "norm_rms", "jitter_clean", "jitter_attacked",
                                        "noise_clean", "noise_attacked", "level_change",
                                        "eye_disp_median_px", "eye_shape_median_px")}
    return metrics, "\n".join(parts)


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.3g}", border=0, classes="t", escape=True)


def _section_html(name, ds, table, stats, truth, plots, csv_rel) -> str:
    e = html.escape
    parts = [f"<h2>{e(name)}</h2>",
             f"<p>adapter <code>{e(ds['adapter'])}</code>, root <code>{e(str(ds['root']))}</code>; "
             f"{len(table)} videos; per-video table: <a href='{e(csv_rel)}'>{e(csv_rel)}</a></p>"]
    counts = table.groupby(["status", "label"]).size().unstack(fill_value=0).reset_index()
    parts += ["<h3>Status</h3>", _table_html(counts)]
    bad = table[table["status"] != "ok"][["video_id", "label", "status", "error"]]
    if len(bad):
        parts += ["<p>Videos not processed to the end, and why:</p>", _table_html(bad)]
    warn = table[table["warnings"].fillna("") != ""][["video_id", "warnings"]]
    if len(warn):
        parts += ["<p>Warnings:</p>", _table_html(warn)]
    if stats:
        st = pd.DataFrame(stats).T.reset_index().rename(columns={"index": "label"})
        parts += ["<h3>Blinks by label</h3>",
                  "<p>Human range at rest: about 15-20 blinks per minute, 100-400 ms each.</p>", _table_html(st)]
    if truth:
        parts += ["<h3>Ground-truth blinks recovered</h3>",
                  f"<p>Event found when start and end are each within {truth['tolerance_frames']} frames and the kind "
                  f"(blink/closure) agrees: precision {truth['precision']:.3f}, recall {truth['recall']:.3f} "
                  f"({truth['true_positives']} of {truth['truth_events']} annotated, {truth['detected_events']} detected).</p>"]
    for p in plots:
        parts.append(f"<figure><img src='{e(p)}' alt='EAR plot'><figcaption>{e(p)}</figcaption></figure>")
    cols = ["video_id", "label", "split", "status", "frames", "face_frames", "n_blinks", "n_closures",
            "blink_rate_per_min", "mean_blink_ms", "ear_median"]
    parts += ["<h3>Videos</h3>", _table_html(table[[c for c in cols if c in table]])]
    return "\n".join(parts)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>blinkbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table.t {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }}
table.t th, table.t td {{ padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
table.t th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }} figure {{ margin: 0.5em 0; }} figcaption {{ font-size: 0.75em; color: #777; }}
</style></head><body>
<h1>blinkbench report</h1>
<p>Face tracks, landmarks, eye aspect ratio (EAR) and blink events for every configured dataset.
Metrics for <code>dvc metrics show</code>: <a href="metrics.json">metrics.json</a>.</p>
{body}
</body></html>
"""
