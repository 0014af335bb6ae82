"""The evaluation protocol shared by every detector family (blink and frame detectors).

Scores are fake probabilities; labels are 1 = fake, 0 = real (positive class: fake).

- ``auc``: area under the ROC curve.
- ``eer``: equal error rate, where the false-positive rate equals the false-negative rate
  (linear interpolation between ROC points); ``eer_threshold`` the score threshold there.
- ``acc_0.5``: accuracy when a score >= 0.5 means fake.
- ``acc_eer``: accuracy at ``eer_threshold``. This threshold is read off the evaluated set's
  own ROC, so it describes the curve (as papers report it) rather than a deployable
  operating point; ``acc_0.5`` is the deployable one.
- ``ap``: average precision for the fake class.
- ``acc_fake``, ``acc_real``: accuracy on the fake and on the real videos alone at 0.5 (the
  blink-resiliency reference study reports accuracy on fakes at a fixed threshold).

Metrics are undefined (None, never a made-up number) when a set holds only one class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from blinkbench.core.labels import LABELS


def _check(y: Sequence[int], s: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=int)
    s = np.asarray(s, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    return y, s


def roc(y: Sequence[int], s: Sequence[float]) -> pd.DataFrame:
    """ROC points (fpr, tpr, threshold), from (0,0) to (1,1)."""
    from sklearn.metrics import roc_curve

    y, s = _check(y, s)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    thr = np.where(np.isinf(thr), np.nan, thr)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


def eer(y: Sequence[int], s: Sequence[float]) -> tuple[float, float]:
    """Equal error rate and its threshold."""
    r = roc(y, s)
    fpr, fnr, thr = r["fpr"].to_numpy(), 1 - r["tpr"].to_numpy(), r["threshold"].to_numpy()
    d = fpr - fnr                        # rises from -1 to +1 along the curve
    i = int(np.flatnonzero(d >= 0)[0])
    if i == 0 or d[i] == 0:
        e, th = (fpr[i] + fnr[i]) / 2, thr[i]
    else:
        w = -d[i - 1] / (d[i] - d[i - 1])
        e = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
        a, b = thr[i - 1], thr[i]
        th = b if np.isnan(a) else a + w * (b - a)
    if np.isnan(th):
        th = float(np.max(s)) + 1e-12 if len(s := np.asarray(s, float)) else 0.5
    return float(e), float(th)


def metrics(y: Sequence[int], s: Sequence[float]) -> dict:
    """The protocol's metrics for one detector on one evaluation set."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _check(y, s)
    pred = (s >= 0.5).astype(int)
    out: dict = {"n": int(len(y)), "n_fake": int(y.sum()), "n_real": int((1 - y).sum()),
                 "acc_0.5": float((pred == y).mean()) if len(y) else None,
                 "acc_fake": float(pred[y == 1].mean()) if (y == 1).any() else None,
                 "acc_real": float(1 - pred[y == 0].mean()) if (y == 0).any() else None}
    if len(np.unique(y)) < 2:
        out.update(auc=None, eer=None, eer_threshold=None, acc_eer=None, ap=None)
        return out
    e, th = eer(y, s)
    out.update(auc=float(roc_auc_score(y, s)), eer=e, eer_threshold=th,
               acc_eer=float(((s >= th).astype(int) == y).mean()), ap=float(average_precision_score(y, s)))
    return out


def frame_to_video(frame_scores: pd.DataFrame, video_col: str = "video_id", score_col: str = "score") -> pd.DataFrame:
    """Video-level scores from frame-level ones, grouped by the video id (never by a folder):
    ``mean_prob`` (mean frame probability) and ``frac_fake`` (share of frames >= 0.5)."""
    g = frame_scores.groupby(video_col, sort=True)[score_col]
    return pd.DataFrame({"mean_prob": g.mean(), "frac_fake": g.apply(lambda x: float((x >= 0.5).mean())),
                         "n_frames": g.size()}).reset_index()


def unknown_as_fake(labels: Sequence[int], verdicts: Sequence[str]) -> dict:
    """Accuracy as the blink-resiliency reference study counts it: every video of the set,
    and a video without a real/fake verdict (``insufficient`` evidence, or ``unknown``: the
    pipeline found no usable face) counted as called fake. ``n_unknown`` says how many."""
    y = np.asarray(labels, dtype=int)
    v = np.asarray(verdicts, dtype=object)
    pred = (v != "real").astype(int)
    return {"n": int(len(y)), "n_unknown": int(np.isin(v, list(LABELS), invert=True).sum()),
            "acc": float((pred == y).mean()) if len(y) else None,
            "acc_fake": float(pred[y == 1].mean()) if (y == 1).any() else None,
            "acc_real": float(1 - pred[y == 0].mean()) if (y == 0).any() else None}
