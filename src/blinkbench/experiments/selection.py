"""Best-of selection of the blink detectors (``detectors.best_of``), as the blink-resiliency
reference study does it: per (landmark backend, training dataset), the enabled detector
with the best *validation* score is chosen and reported.

What ``select_blink`` runs for one training dataset D:

- the validation videos are D's ``val`` split when it holds real and fake videos with
  status ok; otherwise a seeded, label-stratified ``best_of.val_fraction`` of D's train
  videos is held out (whole videos, at least one per class, never a whole class);
- every detector in ``detectors.enabled`` (its own series, seed and hyper-parameters, as
  ``train_blink`` builds it) is fitted on the remaining videos and scores the validation
  ones; the protocol's metrics (:func:`blinkbench.detectors.evaluation.metrics`) are
  recorded per detector, a failure is recorded and the others go on;
- the chosen detector has the best ``best_of.metric`` (``eer``: the lowest); ties go to the
  one listed first in ``detectors.enabled``; detectors whose metric is undefined or that
  failed are not eligible.

The selection never sees a test video. The models used for the test evaluations are still
those of ``train_blink`` (fitted on train and val); the selection names which one the
reference protocol would carry forward, and the report shows its test metrics.
(The reference's own code, ``ear_analysis.py``, picks the classifier by accuracy on its
test set; here the pick is on validation data only.)

The landmark backend is a run-wide setting (``landmarks.backend``), so one run selects per
training dataset and records the backend beside the choice; a run on another backend writes
its own selection.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from blinkbench.core import io
from blinkbench.detectors.evaluation import metrics as compute_metrics
from .protocol import _videos, detector_settings

log = logging.getLogger(__name__)

# metric -> True when higher is better
METRICS = {"auc": True, "ap": True, "acc_0.5": True, "eer": False}


def holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of the videos held out for validation: per class ``round(fraction x n)``
    drawn with ``default_rng(seed)``, at least one when the class has two or more videos,
    never all of a class (so fitting keeps both classes). Sorted."""
    labels = np.asarray(labels, dtype=int)
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for c in (0, 1):
        idx = np.flatnonzero(labels == c)
        n = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            n = max(n, 1)
        n = min(n, len(idx) - 1)
        if n > 0:
            held.extend(rng.permutation(idx)[:n].tolist())
    return np.array(sorted(held), dtype=int)


def choose(candidates: dict[str, dict], metric: str, order: list[str]) -> str | None:
    """The best eligible candidate by ``metric`` (see the module docstring), or None."""
    higher = METRICS[metric]
    best, best_v = None, None
    for name in order:
        c = candidates.get(name) or {}
        v = c.get(metric)
        if c.get("status") != "ok" or v is None or not np.isfinite(v):
            continue
        if best is None or (v > best_v if higher else v < best_v):
            best, best_v = name, v
    return best


def _split(dataset: str, cfg: dict, seed: int) -> tuple[list, list, str]:
    train, _ = _videos(dataset, ("train",))
    val, _ = _videos(dataset, ("val",))
    if {v.label for v in val} == {0, 1}:
        return train, val, "val split"
    pool = train + val
    held = set(holdout(np.array([v.label for v in pool]), float(cfg["val_fraction"]), seed).tolist())
    return ([v for i, v in enumerate(pool) if i not in held], [v for i, v in enumerate(pool) if i in held],
            f"held-out train videos (best_of.val_fraction {cfg['val_fraction']:g})")


def select_blink(params: dict, dataset: str, out: str | Path) -> dict:
    """Run the selection for one training dataset and write its JSON (see the module
    docstring); with ``best_of.enabled`` false, write a record saying so and fit nothing."""
    from blinkbench.detectors.blink import create

    d = params["detectors"]
    cfg = d["best_of"]
    seed = int(params["base"]["seed"])
    result = {"train_dataset": dataset, "landmark_backend": params["landmarks"]["backend"],
              "enabled": bool(cfg["enabled"]), "metric": cfg["metric"], "chosen": None, "chosen_score": None,
              "validation": None, "candidates": {}, "status": "ok", "error": ""}
    if not cfg["enabled"]:
        result["status"] = "disabled"
        io.write_json(result, out)
        return result
    fit_videos, val_videos, source = _split(dataset, cfg, seed)
    y_fit = np.array([v.label for v in fit_videos], dtype=int)
    y_val = np.array([v.label for v in val_videos], dtype=int)
    result["validation"] = {"source": source, "n_fit": len(fit_videos), "n_val": len(val_videos),
                            "n_val_fake": int(y_val.sum()), "n_val_real": int(len(y_val) - y_val.sum()),
                            "val_videos": [v.video_id for v in val_videos]}
    if len(set(y_fit.tolist())) < 2 or len(set(y_val.tolist())) < 2:
        result.update(status="error", error=f"{dataset}: selection needs real and fake videos on both sides; "
                                            f"fit {len(y_fit)} ({int(y_fit.sum())} fake), val {len(y_val)} "
                                            f"({int(y_val.sum())} fake)")
        io.write_json(result, out)
        return result
    for name in d["enabled"]:
        s = detector_settings(params, name)
        try:
            t0 = time.perf_counter()
            det = create(name, series=s["series"], seed=s["seed"], **s["hyper"]).fit(fit_videos, y_fit)
            p = det.predict_proba(val_videos)
            log.info("best-of %s on %s: fit and scored in %.1f s", name, dataset, time.perf_counter() - t0)
            result["candidates"][name] = {"status": "ok", "error": "", **compute_metrics(y_val, p)}
        except Exception as exc:  # one detector's failure is recorded; the others go on
            log.error("best-of %s on %s failed: %s", name, dataset, exc, exc_info=True)
            result["candidates"][name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    chosen = choose(result["candidates"], cfg["metric"], list(d["enabled"]))
    result["chosen"] = chosen
    result["chosen_score"] = result["candidates"][chosen][cfg["metric"]] if chosen else None
    if chosen is None:
        result.update(status="error", error=f"no detector has a defined validation {cfg['metric']}")
    io.write_json(result, out)
    return result
