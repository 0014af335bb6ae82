"""The run report: per-dataset video status, blink statistics by label, ground-truth blink
recovery where a dataset ships annotations, EAR plots; plus DVC metrics.

Outputs (paths in :mod:`blinkbench.core.paths`): ``data/reports/index.html``,
``data/reports/metrics.json`` (read by ``dvc metrics show``), and per dataset
``data/reports/<dataset>/videos.csv`` (one row per video: manifest fields, pipeline status,
blink summary) and ``ear_<video>.png``.

The functions here compute each section's tables and figures; the HTML is in the jinja2
templates under ``report/templates/`` (:mod:`.render`): ``base.html`` and one partial per
section in ``sections/``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from blinkbench.core import io, paths
from blinkbench.core.labels import LABELS
from blinkbench.core.params_types import ReportParams
from blinkbench.spine.blinks import match_events

from .render import render

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


def build(params: ReportParams) -> Path:
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
            plots.append({"src": png.relative_to(out_dir).as_posix(), "video": vid, "label": label,
                          "truth": tr is not None and len(tr) > 0})
        sections.append(_dataset_section(name, ds, table, stats, truth, plots, csv.relative_to(out_dir).as_posix()))
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
    page = render("base.html", sections=sections)
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
    metrics: dict = {}
    for r in df[df["status"] == "ok"].to_dict("records"):
        metrics.setdefault(r["detector"], {}).setdefault(r["train"], {})[r["test"]] = {
            k: int(r[k]) if k == "n" else _num(r[k]) for k in DETECTOR_METRICS}
    ok = df[df["status"] == "ok"]
    matrix = None
    if len(ok):
        mat = ok.pivot_table(index=["detector", "train"], columns="test", values="auc", aggfunc="first")
        order = [d for d in params[section]["enabled"] if d in mat.index.get_level_values(0)]
        matrix = mat.reindex(order, level=0)
    plots = []
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
            plots.append({"src": png.relative_to(out_dir).as_posix(), "train": tr, "test": te})
    return metrics, render("sections/detectors.html", title=title, family=family, results=df, matrix=matrix, plots=plots)


def study_sets(params: dict) -> dict[tuple, dict]:
    """The re-scoring JSONs that exist, read once: ``{(target, method, eps, variant): json}``
    (empty when the study is off). :func:`study_results` and :func:`fooled_results` both take it."""
    from blinkbench.experiments.study import rescored_sets

    if not params["attacks"]["enabled"]:
        return {}
    return {(t, m, e, v): io.read_json(p) for t, m, e, v, p in rescored_sets(params)}


def study_results(params: dict, sets: dict[tuple, dict] | None = None) -> pd.DataFrame:
    """One row per (study set, detector) from the re-scoring JSONs that exist (``sets`` from
    :func:`study_sets`, read here when not given). The summary is recomputed from the stored
    per-video rows with the current ``detectors.min_face_s`` (a change of it shows here
    without re-running the re-scoring); a JSON without rows keeps its stored summary."""
    from blinkbench.experiments.study import summarise

    if not params["attacks"]["enabled"]:
        return pd.DataFrame()
    min_face_s = float(params["detectors"]["min_face_s"])
    rows = []
    for (t, m, e, v), res in (study_sets(params) if sets is None else sets).items():
        summ = summarise(res["videos"], min_face_s) if res.get("videos") else res["summary"]
        base = {"target": t, "method": m, "eps": float(e), "variant": v, **{f"{k}": summ.get("perceptual", {}).get(k)
                for k in ("psnr_mean", "ssim_mean", "linf_max", "l2_mean", "success_rate")},
                "blink_change": summ.get("blink_path", {}).get("mean_blink_change"),
                "ear_median_change": summ.get("blink_path", {}).get("mean_ear_median_change"),
                "queries_per_frame": summ.get("queries_per_frame")}
        for det, d in summ.items():
            if "/" in det:
                rows.append({**base, "detector": det, "n": d["n"], "detection_rate": d["detection_rate"],
                             "mean_score": d["mean_score"], "video_fooled_rate": d.get("video_fooled_rate"),
                             "coverage": d.get("coverage"), "n_insufficient": d.get("n_insufficient")})
    return pd.DataFrame(rows)


def fooled_results(params: dict, sets: dict[tuple, dict] | None = None) -> tuple[pd.DataFrame | None, dict]:
    """Per attacked set, the fakes its target detected clean and the attack fooled, and
    every other detector's detection rate on those fooled videos, clean -> attacked
    (:func:`blinkbench.experiments.study.fooled_subset`, from the stored per-video rows and
    the clean set under the same compression). A table (cells "clean -> attacked", a blink
    detector's abstentions in brackets) and the ``metrics.json`` entry."""
    from blinkbench.experiments.plan import CLEAN, eps_name
    from blinkbench.experiments.study import fooled_subset

    if not params["attacks"]["enabled"]:
        return None, {}
    min_face_s = float(params["detectors"]["min_face_s"])
    if sets is None:
        sets = study_sets(params)
    rows, metrics = [], {}
    for (t, m, e, v), res in sets.items():
        clean = sets.get((CLEAN[0], CLEAN[1], eps_name(CLEAN[2]), v))
        if t == CLEAN[0] or clean is None or not res.get("videos"):
            continue
        f = fooled_subset(res["videos"], clean.get("videos") or [], t, min_face_s)
        metrics.setdefault(t, {}).setdefault(m, {}).setdefault(f"eps{float(e):g}", {})[v] = {
            "n_fakes": f["n_fakes"], "n_detected_clean": f["n_detected_clean"], "n_fooled": f["n_fooled"],
            "fooled_rate": _num(f["fooled_rate"]),
            "detection_rate_on_fooled": {k: {c: _num(d[c]["detection_rate"]) for c in ("clean", "attacked")}
                                         for k, d in f["detectors"].items()}}
        row = {"target": t, "method": m, "eps": float(e), "variant": v, "fakes": f["n_fakes"],
               "detected clean": f["n_detected_clean"], "fooled": f["n_fooled"]}
        for k, d in f["detectors"].items():
            c, a = d["clean"], d["attacked"]
            cell = " -> ".join("-" if x["detection_rate"] is None else f"{x['detection_rate']:.2f}" for x in (c, a))
            if a.get("n_insufficient"):
                cell += f" ({a['n_insufficient']} insufficient)"
            row[k] = cell
        rows.append(row)
    if not rows:
        return None, {}
    table = pd.DataFrame(rows).sort_values(["target", "method", "eps", "variant"])
    return table.set_index(["target", "method", "eps", "variant"]).fillna(""), metrics


def study_section(params: dict, out_dir: Path) -> tuple[dict, str]:
    """The resiliency study: detection rate of attacked fake videos per detector, eps and
    compression (the clean reference is eps 0), perceptual cost, blink-path change; eps-sweep
    plots (frame detectors in one row of panels, blink detectors in another, the attacked one
    emphasised); blink detection rates carry their coverage (``detectors.min_face_s``)."""
    from .plotting import plot_eps_sweep

    sets = study_sets(params)                    # read once for both tables
    df = study_results(params, sets)
    if df.empty:
        return {}, ""
    a = params["attacks"]
    plots = []
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
                           title=f"{m} against {t}: fake videos still detected", target=f"frame/{t}")
            attacked = sub[sub["target"] == t]
            plots.append({"src": png.relative_to(out_dir).as_posix(), "target": t, "method": m,
                          "eps": [f"{e:g}" for e in sorted(attacked["eps"].astype(float).unique())],
                          "variants": list(dict.fromkeys(sub["variant"]))})
    wide = df.pivot_table(index=["target", "method", "eps", "variant"], columns="detector", values="detection_rate",
                          aggfunc="first")
    # blink detectors abstain below detectors.min_face_s: their coverage beside the rates
    coverage, cov_metrics = None, {}
    blink = df[df["detector"].str.startswith("blink/")]
    if len(blink) and "coverage" in blink and blink["coverage"].notna().any():
        blink = blink.assign(coverage=blink["coverage"].astype(float),
                             n_insufficient=blink["n_insufficient"].astype(float))
        coverage = blink.pivot_table(index=["target", "method", "eps", "variant"], columns="detector",
                                     values="coverage", aggfunc="first")
        n_short = blink.groupby(["target", "method", "eps", "variant"])["n_insufficient"].max()  # same for each detector
        coverage["videos_insufficient"] = n_short.map(lambda x: "" if pd.isna(x) else int(x))   # a count, not 1.00
        for r in blink.to_dict("records"):
            cov_metrics.setdefault(r["target"], {}).setdefault(r["method"], {}).setdefault(f"eps{r['eps']:g}", {}
                                                                                          ).setdefault(
                r["variant"], {})[r["detector"]] = _num(r["coverage"])
    cost = df.groupby(["target", "method", "eps", "variant"])[["psnr_mean", "ssim_mean", "linf_max", "l2_mean",
                                                               "success_rate",
                                                               "blink_change", "ear_median_change",
                                                               "queries_per_frame"]].first().astype(float)
    # (float: a column that is None for every white-box row printed "None" instead of a blank)
    fooled_table, fooled_target = fooled_results(params, sets)
    out = {"attack_success_rate_videos": fooled, "detection_rate": metrics}
    if fooled_target:
        out["fooled_target"] = fooled_target
    if cov_metrics:
        out["blink_coverage"] = cov_metrics
    if queries:
        out["queries_per_frame"] = queries
    return out, render("sections/study.html", a=a, plots=plots, detection=wide, cost=cost, coverage=coverage,
                       fooled=fooled_table, min_face_s=float(params["detectors"]["min_face_s"]))


def blink_attack_section(params: dict) -> tuple[dict, str]:
    """EAR attacks (per video and condition: blinks found by the real pipeline, EAR inside the
    targeted frames relative to the open level, blink detectors' fake probability, perceptual
    cost) and Landmark Breaker's tables."""
    b = params["blink_attacks"]
    if not b["enabled"]:
        return {}, ""
    ds = b["dataset"]
    root = Path(paths.PATTERNS["landmark_breaker"].format(dataset=ds)).parent
    rows, budgets = [], set()
    for res_p in sorted(root.glob("*/*/result.json")):
        r = io.read_json(res_p)
        mode, vid = res_p.parent.parent.name, res_p.parent.name
        cost = r.get("perceptual") or {}
        used = r.get("params") if isinstance(r.get("params"), dict) else {}   # as it ran (EarAttackParams)
        if all(isinstance(used.get(k), (int, float)) and not isinstance(used.get(k), bool) for k in ("eps", "steps")):
            budgets.add((float(used["eps"]), int(used["steps"])))
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
    metrics: dict = {}
    results = pd.DataFrame(rows) if rows else None
    if rows:
        for r in rows:
            if r.get("n_blinks") is not None:
                metrics.setdefault(r["mode"], {}).setdefault(r["condition"], []).append(r["n_blinks"])
        metrics = {m: {c: float(np.mean(v)) for c, v in d.items()} for m, d in metrics.items()}
        metrics = {"mean_blinks": metrics}
    lb = root / "landmark_breaker.json"
    lb_tables, lb_run = None, None
    if lb.exists():
        lb_tables = []
        lb_run = io.read_json(lb)
        for name in ("white_box", "transfer", "compression", "ablation"):
            csv = root / f"landmark_breaker_{name}.csv"
            if csv.exists() and csv.stat().st_size > 1:
                try:
                    t = pd.read_csv(csv)
                except pd.errors.EmptyDataError:
                    continue
                lb_tables.append({"name": name.replace("_", " "), "table": t})
                if name == "white_box" and "nme" in t.columns and "attack" in t.columns:
                    metrics["landmark_breaker_white_box_nme"] = {a: _num(v) for a, v in zip(t["attack"], t["nme"])}
                if name == "white_box" and "nme68" in t.columns and "attack" in t.columns:
                    metrics["landmark_breaker_white_box_nme68"] = {a: _num(v) for a, v in zip(t["attack"], t["nme68"])}
    conditions = list(dict.fromkeys(r["condition"] for r in rows if r.get("condition")))
    return metrics, render("sections/blink_attacks.html", b=b, results=results, landmark_breaker=lb_tables,
                           budgets=[{"eps": e, "steps": n} for e, n in sorted(budgets)],
                           compressions=[c for c in conditions if c not in ("clean", "lossless")],
                           lb_run=lb_run if isinstance(lb_run, dict) else {})


def _detectors_sharing_rows(ref: "pd.DataFrame") -> "pd.DataFrame":
    """The train-series jitter table with one row per label and set of detectors whose
    figures are equal (detectors preparing their series alike see the same numbers);
    ``detector`` lists them."""
    figures = [c for c in ref.columns if c not in ("detector", "label")]
    key = ref[["label", *figures]].astype(str).agg("|".join, axis=1)
    out = ref.groupby(key, sort=False, as_index=False).agg({"detector": ", ".join, "label": "first",
                                                            **{c: "first" for c in figures}})
    return out[["detector", "label", *figures]].sort_values(["detector", "label"], ignore_index=True)


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
    cols = ["target", "method", "eps", "variant", "detector", "n", "score_clean", "score_attacked", "score_control",
            "score_change",
            "blink_change", "ear_rms", "ear_max", "level_change", "norm_rms", "norm_max", "jitter_clean",
            "jitter_attacked", "noise_clean", "noise_attacked", "eye_disp_median_px", "eye_disp_max_px", "eye_shape_median_px", "eye_shape_max_px"]
    ref = tables.get("reference")
    found = noise_effect.finding(summary, ref)
    over = noise_effect.overview(found["table"]) if found else None
    page = render("sections/noise_effect.html", files=[p.name for p in files.values()],
                  summary=summary[[c for c in cols if c in summary]],
                  reference=_detectors_sharing_rows(ref) if ref is not None and len(ref) else None, finding=found,
                  overview=over if over is not None and len(over) else None)
    metrics: dict = {}
    for r in summary.to_dict("records"):
        metrics.setdefault(f"{r['target']}/{r['method']}/eps{r['eps']:g}/{r['variant']}", {})[r["detector"]] = {
            k: _num(r.get(k)) for k in ("score_change", "score_control", "ear_rms", "norm_rms", "jitter_clean", "jitter_attacked",
                                        "noise_clean", "noise_attacked", "level_change",
                                        "eye_disp_median_px", "eye_shape_median_px")}
    return metrics, page


def _dataset_section(name, ds, table, stats, truth, plots, csv_rel) -> str:
    """One dataset's part of the page: status counts, videos not processed and why, warnings,
    blinks by label, ground-truth recovery, EAR plots and the video table."""
    counts = table.groupby(["status", "label"]).size().unstack(fill_value=0).reset_index()
    bad = table[table["status"] != "ok"][["video_id", "label", "status", "error"]]
    warn = table[table["warnings"].fillna("") != ""][["video_id", "warnings"]]
    by_label = pd.DataFrame(stats).T.reset_index().rename(columns={"index": "label"}) if stats else None
    cols = ["video_id", "label", "split", "status", "frames", "face_frames", "n_blinks", "n_closures",
            "blink_rate_per_min", "mean_blink_ms", "ear_median"]
    return render("sections/dataset.html", name=name, ds=ds, n_videos=len(table), csv=csv_rel, counts=counts,
                  bad=bad if len(bad) else None, warnings=warn if len(warn) else None, by_label=by_label,
                  truth=truth, plots=plots, videos=table[[c for c in cols if c in table]])
