"""The report's best-of part (``detectors.best_of``, :mod:`blinkbench.experiments.selection`):
which blink detector was chosen per (landmark backend, training dataset), on what
validation data and score, every candidate's validation score, and the chosen detector's
test metrics from the ordinary evaluations. Empty when the selection is disabled."""

from __future__ import annotations

import pandas as pd

from blinkbench.core import io, paths

from .render import render

TEST_KEYS = ("auc", "acc_0.5", "acc_fake", "acc_real")


def _num(x):
    return None if x is None or x != x else float(x)


def best_of_section(params: dict) -> tuple[dict, str]:
    """(metrics for ``metrics.json``, HTML) of the best-of selections that ran."""
    from blinkbench.experiments.plan import detector_plan

    _, train_on, test_on = detector_plan(params)
    metrics: dict = {}
    rows, cand_rows = [], []
    for tr in train_on:
        p = paths.path("blink_selection", train=tr)
        if not p.exists():
            continue
        r = io.read_json(p)
        if r.get("status") == "disabled":
            continue
        metric, chosen = r.get("metric"), r.get("chosen")
        val = r.get("validation") or {}
        test = {}
        for te in test_on:
            e = paths.path("blink_eval", detector=chosen, train=tr, test=te) if chosen else None
            if e is not None and e.exists():
                ev = io.read_json(e)
                test[te] = {k: _num(ev.get(k)) for k in TEST_KEYS}
        cands = r.get("candidates", {})
        metrics[tr] = {"landmark_backend": r.get("landmark_backend"), "metric": metric, "chosen": chosen,
                       "chosen_validation_score": _num(r.get("chosen_score")), "status": r.get("status"),
                       "validation_source": val.get("source"), "n_val": val.get("n_val"),
                       "validation": {n: _num(c.get(metric)) if c.get("status") == "ok" else None
                                      for n, c in cands.items()},
                       "chosen_test": test}
        rows.append({"train": tr, "landmark backend": r.get("landmark_backend"), "metric": metric,
                     "chosen": chosen or f"none ({r.get('error', '')})", "validation score": _num(r.get("chosen_score")),
                     "validation videos": f"{val.get('n_val')} ({val.get('source')})",
                     **{f"test {k} on {te}": v for te, m in test.items() for k, v in m.items()}})
        for n, c in cands.items():
            cand_rows.append({"train": tr, "detector": n, "status": c.get("status"),
                              metric: _num(c.get(metric)) if c.get("status") == "ok" else None,
                              "error": c.get("error", "")})
    if not rows:
        return {}, ""
    return metrics, render("sections/best_of.html", metric=str(rows[0]["metric"]), chosen=pd.DataFrame(rows),
                           candidates=pd.DataFrame(cand_rows))
