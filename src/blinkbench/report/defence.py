"""Report section and metrics of the post-training defence (:mod:`blinkbench.defence.posttrain`):
normal and FGSM-robust accuracy before and after, per detector, algorithm and variant, beside
the seed study's reference figures."""

from __future__ import annotations

import html

import pandas as pd

from blinkbench.core import io, paths
from blinkbench.defence import plan, skipped

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
    e = html.escape
    d = params["defence"]
    parts = ["<h2>Adaptive post-training defence</h2>",
             f"<p>CNN frame detectors trained on <code>{e(d['dataset'])}</code>, post-trained on its training crops "
             f"plus adversarial neighbours (Algorithm 1: PGD anchor, Algorithm 2: DeepFool anchor; neighbours kept "
             f"when their embedding's cosine with the clean crop's is &ge; {d['tau']:g}), SGD lr {d['sgd']['lr']:g}, "
             f"momentum {d['sgd']['momentum']:g}, {d['sgd']['iterations']} steps of {d['sgd']['batch_size']}; "
             "backbone frozen or not. Normal accuracy: clean test crops (and videos, mean frame probability); "
             f"robust accuracy: the same under FGSM at eps {d['evaluate']['fgsm_eps']:g}/255, every crop pushed "
             "towards its wrong class. fgsm_moved_undefended: whether FGSM lowered the undefended model's accuracy "
             "at all (a robust gain means nothing otherwise).</p>"]
    metrics: dict = {}
    if not df.empty:
        ok = df[df["status"] == "ok"]
        for r in ok.to_dict("records"):
            metrics.setdefault(r["detector"], {}).setdefault(r["algorithm"], {})[r["variant"]] = {
                **{f"{k}_{w}": _num(r[f"{k}_{w}"]) for k in COLUMNS for w in ("before", "after")},
                "neighbours_kept": int(r["neighbours_kept"]), "fgsm_moved_undefended": bool(r["fgsm_moved_undefended"])}
        show = df.set_index(["detector", "algorithm", "variant"])
        parts.append(show.to_html(na_rep="", float_format=lambda x: f"{x:.3f}", border=0, classes="t"))
    if ref:
        parts.append(f"<p>Reference ({e(ref.get('note', 'seed study'))}): {e(ref['detector'])} normal "
                     f"{100 * ref['normal_before']:.2f} % and robust {100 * ref['robust_before']:.2f} % before; after "
                     f"post-training normal {100 * ref['normal_after'][0]:.0f}-{100 * ref['normal_after'][1]:.0f} % "
                     f"and robust {100 * ref['robust_after'][0]:.1f}-{100 * ref['robust_after'][1]:.1f} %.</p>")
    if skip:
        parts.append("<p>Not post-trained: " + e("; ".join(f"{k}: {v}" for k, v in skip.items())) + "</p>")
    out = {"results": metrics, "reference": ref} if metrics else {}
    return out, "\n".join(parts)
