"""The blink-resiliency reference study's attack table, from this project's study results.

The reference (Mole1424/3rd-year-project, ``final-code/main.py`` and the dissertation's
evaluation chapter) attacks the fake test videos with FGSM at eps 0.05 and 0.1 of the pixel
range against each CNN in turn and re-scores the same adversarial videos with every other
CNN and the blink detector. Its table has one row per attacked CNN (the target) and, for
each detector, the accuracy on fakes clean and under each eps. This module builds that table
from the study's re-scoring JSONs (``data/study/...``, :mod:`blinkbench.experiments.study`)
when ``attacks.preset`` is ``reference`` (:data:`blinkbench.core.config.STUDY_PRESETS`).

Counting as the reference counts (so the numbers line up row by row):

- a frame detector calls a video fake when at least half of its scored crops are called
  fake (the reference: "real if more than 50 % of frames are classified real"), not by the
  mean probability the study's own detection rate uses;
- a blink detector calls a video fake when its score is >= 0.5;
- a video a detector could not score (no face, no EAR series, a failed step), and for a
  blink detector a video with less than ``detectors.min_face_s`` of face (its
  ``insufficient`` verdict), counts as called fake: the reference's "unknown" verdict (no
  landmarks -> fake). How many there were is reported beside the table (``unknown``).

Accuracy on fakes is then the share of the set's fake videos called fake. The clean column
is the study's clean reference (the same videos decoded and written losslessly, eps 0), the
same for every row, as in the reference. Only the lossless variant is used (``none``: the
reference classifies the perturbed frames directly, with no compression).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from blinkbench.core import io
from blinkbench.core.config import STUDY_PRESETS
from blinkbench.experiments.study import insufficient

from .render import render

CLEAN = "clean"
VARIANT = "none"


def eps_label(eps: float) -> str:
    """Column name of one budget: 0-255 levels and the reference's [0, 1] units."""
    return f"eps {float(eps):g} ({float(eps) / 255:.3g})"


def called_fake(row: dict, detector: str, min_face_s: float = 0.0) -> bool | None:
    """One video's verdict by one detector (``frame/<name>`` or ``blink/<name>``) as the
    reference counts it; None when the detector has no score for it (unknown), or, for a
    blink detector, when the video shows less than ``min_face_s`` of face (the
    ``insufficient`` verdict of ``detectors.min_face_s``, where the set records it)."""
    scores = row.get("scores") or {}
    if detector.startswith("frame/"):
        frac = scores.get("frame_frac/" + detector[len("frame/"):])
        return None if frac is None or not np.isfinite(frac) else bool(frac >= 0.5)
    s = scores.get(detector)
    if insufficient(row, min_face_s):
        return None
    return None if s is None or not np.isfinite(s) else bool(s >= 0.5)


def accuracy_on_fakes(result: dict, detector: str, min_face_s: float = 0.0) -> tuple[float | None, int, int]:
    """(accuracy on the set's fake videos with unknown counted as fake, fakes, unknown)."""
    fakes = [r for r in result.get("videos", []) if r.get("label") == "fake"]
    if not fakes:
        return None, 0, 0
    verdicts = [called_fake(r, detector, min_face_s) for r in fakes]
    unknown = sum(v is None for v in verdicts)
    return float(np.mean([v is None or v for v in verdicts])), len(fakes), unknown


def _detectors(results: list[dict]) -> list[str]:
    """Every detector scored in any set: frame detectors first, then blink detectors."""
    names = {k if not k.startswith("frame_frac/") else "frame/" + k[len("frame_frac/"):]
             for res in results for r in res.get("videos", []) for k in (r.get("scores") or {})}
    return sorted(n for n in names if n.startswith("frame/")) + sorted(n for n in names if n.startswith("blink/"))


def reference_table(sets: dict[tuple[str, float], dict], targets: list[str], eps: list[float],
                    min_face_s: float = 0.0) -> tuple[pd.DataFrame, dict]:
    """The reference's table from study results.

    ``sets``: ``(target, eps) -> re-scoring JSON`` of the lossless sets of one method, with
    the clean reference under ``("clean", 0.0)``. Returns the table (index: target; columns:
    (detector, condition) with condition ``clean`` then :func:`eps_label` of each eps; values:
    accuracy on fakes, NaN where a set is missing) and its metrics (``rows``: target ->
    detector -> condition -> accuracy; ``n_fake`` and ``unknown`` per set)."""
    clean = sets.get((CLEAN, 0.0))
    eps = [float(e) for e in eps]
    conditions = [CLEAN, *[eps_label(e) for e in eps]]
    present = [r for r in [clean, *[sets.get((t, e)) for t in targets for e in eps]] if r is not None]
    dets = _detectors(present)
    rows, metrics, counts = [], {}, {}
    for t in targets:
        row, m = {}, {}
        cells = [(CLEAN, clean, CLEAN), *[(eps_label(e), sets.get((t, e)), f"{t}/eps{e:g}") for e in eps]]
        for cond, res, key in cells:
            for d in dets:
                acc, n, unk = accuracy_on_fakes(res, d, min_face_s) if res is not None else (None, 0, 0)
                row[(d, cond)] = np.nan if acc is None else acc
                m.setdefault(d, {})[cond] = acc
                if res is not None:
                    counts.setdefault(key, {"n_fake": n, "unknown": {}})["unknown"][d] = unk
        rows.append(row)
        metrics[t] = m
    cols = pd.MultiIndex.from_tuples([(d, c) for d in dets for c in conditions], names=["detector", "condition"])
    table = pd.DataFrame(rows, index=pd.Index(list(targets), name="target"), columns=cols)
    return table, {"rows": metrics, "sets": counts}


def load_sets(params: dict, method: str = "fgsm", variant: str = VARIANT) -> dict[tuple[str, float], dict]:
    """The lossless re-scoring JSONs of ``method`` (and the clean reference) that exist."""
    from blinkbench.experiments.study import rescored_sets

    a = params["attacks"]
    out = {}
    for t, m, e, v, p in rescored_sets(params):
        if v != variant or not (t == CLEAN or (t in a["targets"] and m == method)):
            continue
        out[(t, float(e))] = io.read_json(p)
    return out


def reference_section(params: dict, out_dir: Path) -> tuple[dict, str]:
    """Report section and metrics (``metrics.json: reference_attack``) when
    ``attacks.preset`` is ``reference`` and the study has results; else ``({}, "")``."""
    a = params["attacks"]
    if not a["enabled"] or a.get("preset") != "reference":
        return {}, ""
    pre = STUDY_PRESETS["reference"]
    method, eps = pre["methods"][0], pre["eps"]
    targets = [t for t in a["targets"] if t in pre["targets"]]
    sets = load_sets(params, method)
    if not sets:
        return {}, ""
    table, metrics = reference_table(sets, targets, eps, float(params["detectors"]["min_face_s"]))
    csv = Path(out_dir) / "reference_attack.csv"
    flat = table.copy()
    flat.columns = [f"{d} | {c}" for d, c in flat.columns]
    with io.atomic_path(csv) as tmp:
        flat.to_csv(tmp, float_format="%.4f")
    n_fake = sorted({s["n_fake"] for s in metrics["sets"].values()})
    unknown = {k: {d: n for d, n in v["unknown"].items() if n} for k, v in metrics["sets"].items()}
    unknown = {k: v for k, v in unknown.items() if v}
    page = render("sections/reference_attack.html", method=method, eps_labels=[eps_label(x) for x in eps],
                  dataset=a["dataset"], n_fake=n_fake, unknown=unknown, table=table)
    return {"method": method, "variant": VARIANT, "eps": eps, **metrics}, page


def landmark_section(params: dict, out_dir: Path) -> tuple[dict, str]:
    """The landmark backends compared (:mod:`blinkbench.experiments.landmark_compare`), for
    every configured dataset whose ``results.json`` exists: rows detector, columns backend x
    metric (AUC, acc, acc_fake). Metrics: dataset -> backend -> detector -> metric."""
    from blinkbench.experiments import landmark_compare as lc

    metrics, shown = {}, []
    for ds in params["datasets"]:
        p = lc.out_dir(ds) / "results.json"
        if not p.exists():
            continue
        res = io.read_json(p)
        df = pd.DataFrame(res["rows"])
        for r in res["rows"]:
            metrics.setdefault(ds, {}).setdefault(r["backend"], {})[r["detector"]] = (
                {k: r.get(k) for k in lc.METRICS} if r["status"] == "ok" else {"error": r["error"]})
        errors = df[df["status"] != "ok"]
        shown.append({"name": ds, "table": lc.wide(df), "video_status": res.get("video_status", {}),
                      "errors": errors[["backend", "detector", "error"]].to_dict("records") if len(errors) else []})
    if not shown:
        return {}, ""
    return metrics, render("sections/landmark_compare.html", datasets=shown)


def reference_sections(params: dict, out_dir: Path) -> list[tuple[str, dict, str]]:
    """(metrics.json key, metrics, HTML) of each section beside the reference study."""
    return [("reference_attack", *reference_section(params, out_dir)),
            ("landmark_compare", *landmark_section(params, out_dir))]
