"""Report section and metrics of the post-training defence (:mod:`blinkbench.defence.posttrain`):
normal and FGSM-robust accuracy before and after, per detector, algorithm and variant, beside
the seed study's reference figures."""

from __future__ import annotations

import pandas as pd

from blinkbench.core import io, paths
from blinkbench.defence import plan, skipped

from .render import render

COLUMNS = ["normal_acc_crops", "normal_acc_videos", "robust_acc_crops", "robust_acc_videos"]


def defence_results(params: dict) -> tuple[pd.DataFrame, dict | None]:
    """One row per (detector, algorithm, variant) record that exists, and the reference."""
    ds = params["defence"]["dataset"]
    rows, reference = [], None
    for det, alg, var in plan(params):
        p = paths.path("defence", dataset=ds, detector=det, algorithm=alg, variant=var)
        if not p.exists():
            continue
        r = io.read_json(p)
        reference = r.get("reference", reference)
        row = {"detector": det, "algorithm": alg, "variant": var, "status": r.get("status"), "error": r.get("error", "")}
        if r.get("status") == "ok":
            for when in ("before", "after"):
                row.update({f"{k}_{when}": r[when].get(k) for k in COLUMNS})
            nb = r["neighbourhood"]
            row.update(neighbours_kept=nb["n_kept"], candidates=nb["n_candidates"], steps=r["fit"]["steps"],
                       fgsm_moved_undefended=r["fgsm_check"]["moved"], crops_per_s=r.get("posttrain_crops_per_s"))
        rows.append(row)
    return pd.DataFrame(rows), reference


def _num(x):
    return None if x is None or x != x else float(x)


RUN_KEYS = ["detector", "algorithm", "variant"]


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """The post-trained runs with status ok, two rows each (``normal``, ``robust`` accuracy),
    columns (crops | videos) x (before | after | change): the page's width, not 18 columns."""
    ok = df[df["status"] == "ok"] if "status" in df else df.iloc[:0]
    rows = []
    for r in ok.to_dict("records"):
        for kind in ("normal", "robust"):
            row = {**{k: r[k] for k in RUN_KEYS}, "accuracy": kind}
            for unit in ("crops", "videos"):
                before, after = _num(r.get(f"{kind}_acc_{unit}_before")), _num(r.get(f"{kind}_acc_{unit}_after"))
                row[(unit, "before")], row[(unit, "after")] = before, after
                row[(unit, "change")] = after - before if before is not None and after is not None else None
            rows.append(row)
    cols = pd.MultiIndex.from_product([["crops", "videos"], ["before", "after", "change"]])
    if not rows:
        return pd.DataFrame(columns=cols, index=pd.MultiIndex.from_tuples([], names=[*RUN_KEYS, "accuracy"]))
    out = pd.DataFrame(rows).set_index([*RUN_KEYS, "accuracy"])
    return out[list(cols)].set_axis(cols, axis=1).astype(float)


RUN_COLUMNS = {"status": "status", "neighbours_kept": "kept", "candidates": "candidates", "steps": "steps",
               "fgsm_moved_undefended": "FGSM moved", "crops_per_s": "crops/s", "error": "error"}


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every post-training run (errors included): status, neighbours kept of the candidates,
    SGD steps, whether FGSM moved the undefended model (yes/no), post-training speed, error;
    headers short (the section's text explains them)."""
    t = df.reindex(columns=[*RUN_KEYS, *RUN_COLUMNS]).set_index(RUN_KEYS)
    for c in ("neighbours_kept", "candidates", "steps"):    # counts as text: blank, never <NA> or 12.000
        t[c] = pd.to_numeric(t[c], errors="coerce").map(lambda v: "" if v != v else str(int(round(v))))
    t["fgsm_moved_undefended"] = t["fgsm_moved_undefended"].map(
        lambda v: "" if v is None or v != v else ("yes" if v else "no"))
    t["crops_per_s"] = pd.to_numeric(t["crops_per_s"], errors="coerce")
    t["status"] = t["status"].fillna("")
    t["error"] = t["error"].fillna("")
    return t.rename(columns=RUN_COLUMNS)


def defence_section(params: dict) -> tuple[dict, str]:
    """(metrics, HTML) of the defence; empty when nothing was post-trained."""
    if not params["defence"]["enabled"]:
        return {}, ""
    df, ref = defence_results(params)
    skip = skipped(params)
    if df.empty and not skip:
        return {}, ""
    metrics: dict = {}
    if not df.empty:
        ok = df[df["status"] == "ok"]
        for r in ok.to_dict("records"):
            metrics.setdefault(r["detector"], {}).setdefault(r["algorithm"], {})[r["variant"]] = {
                **{f"{k}_{w}": _num(r[f"{k}_{w}"]) for k in COLUMNS for w in ("before", "after")},
                "neighbours_kept": int(r["neighbours_kept"]), "fgsm_moved_undefended": bool(r["fgsm_moved_undefended"])}
    out = {"results": metrics, "reference": ref} if metrics else {}
    acc = None if df.empty else accuracy_table(df)
    return out, render("sections/defence.html", d=params["defence"], accuracy=acc if acc is not None and len(acc) else None,
                       runs=None if df.empty else runs_table(df), ref=ref, skipped=skip)
