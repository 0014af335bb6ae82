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
    return out, render("sections/defence.html", d=params["defence"],
                       results=None if df.empty else df.set_index(["detector", "algorithm", "variant"]),
                       ref=ref, skipped=skip)
