"""Training and evaluation of the blink-based detectors: what the ``train_blink`` and
``evaluate_blink`` rules/stages run.

Protocol
- A detector trained "on dataset D" fits on D's ``train`` and ``val`` videos (neural
  detectors carve their early-stopping validation from these, by video); it never sees any
  ``test`` video, so model selection never looks at the test split.
- It is evaluated on the ``test`` split of every dataset in ``detectors.test_on``: rows of
  the cross-dataset matrix are training datasets, columns test datasets.
- Only videos whose pipeline status is ``ok`` (a face track, landmarks and EAR) enter
  training and metrics; the others are listed in the evaluation's ``skipped`` with their
  status, never silently dropped, and still get a score row (with ``status``) in the scores
  file.
- Outputs are deterministic for a fixed seed and params (no timings inside DVC-tracked
  files: those go to the job log), so reruns give identical metrics and DVC hashes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, paths
from .evaluation import metrics as compute_metrics
from .evaluation import roc
from .series import SeriesConfig, VideoSeries

log = logging.getLogger(__name__)

LABELS = {"real": 0, "fake": 1}
TRAIN_SPLITS = ("train", "val")
TEST_SPLITS = ("test",)


def _videos(dataset: str, splits: tuple[str, ...]) -> tuple[list[VideoSeries], pd.DataFrame]:
    """Loadable videos of these splits, and a table of every row with its pipeline status."""
    man = pd.read_parquet(paths.path("manifest", dataset=dataset))
    man = man[man["split"].isin(splits)]
    videos, rows = [], []
    for r in man.itertuples(index=False):
        ear_p = paths.path("ear", dataset=dataset, video=r.video_id)
        sum_p = paths.path("blink_summary", dataset=dataset, video=r.video_id)
        status = r.status if r.status != "ok" else (io.read_meta(ear_p).get("status", "missing output") if ear_p.exists() else "missing output")
        if status == "ok" and r.label in LABELS:
            v = VideoSeries.from_artifacts(r.video_id, ear_p, sum_p, LABELS[r.label])
            if np.isfinite(v.ear).any():
                videos.append(v)
            else:
                status = "no_face"
        rows.append({"video_id": r.video_id, "label": r.label, "split": r.split, "status": status})
    return videos, pd.DataFrame(rows, columns=["video_id", "label", "split", "status"])


def detector_settings(params: dict, name: str) -> dict:
    d = params["detectors"]
    return {"series": SeriesConfig.from_params(d["series"]), "seed": int(params["base"]["seed"]),
            "hyper": dict(d.get("hyper", {}).get(name, {}))}


def train_blink(params: dict, detector: str, dataset: str, out_model: str | Path, out_info: str | Path) -> dict:
    """Fit one detector on one dataset's train+val videos; write the model and an info JSON."""
    from .detectors import create
    from .detectors.base import save_failure

    s = detector_settings(params, detector)
    videos, table = _videos(dataset, TRAIN_SPLITS)
    y = np.array([v.label for v in videos], dtype=int)
    det = create(detector, series=s["series"], seed=s["seed"], **s["hyper"])  # bad params: fail loudly
    info = {"detector": det.describe(), "train_dataset": dataset, "splits": list(TRAIN_SPLITS),
            "n_videos": len(videos), "n_fake": int(y.sum()), "n_real": int(len(y) - y.sum()),
            "skipped": table[table["status"] != "ok"].to_dict("records"), "status": "ok", "error": ""}
    try:
        if len(set(y.tolist())) < 2:
            raise ValueError(f"{dataset}: training needs real and fake videos with status ok in splits "
                             f"{list(TRAIN_SPLITS)}; have {info['n_real']} real, {info['n_fake']} fake")
        t0 = time.perf_counter()
        det.fit(videos, y)
        log.info("fit %s on %s: %d videos in %.1f s", detector, dataset, len(videos), time.perf_counter() - t0)
        info["train_metrics"] = compute_metrics(y, det.predict_proba(videos))  # fit quality only, not a result
        det.save(out_model)
    except Exception as exc:  # the data, not the code: record it, let the run go on
        log.error("training %s on %s failed: %s", detector, dataset, exc, exc_info=True)
        info.update(status="error", error=f"{type(exc).__name__}: {exc}")
        save_failure(out_model, detector, info["error"])
    io.write_json(info, out_info)
    return info


def score_videos(det, videos: list[VideoSeries]) -> np.ndarray:
    return det.predict_proba(videos) if videos else np.zeros(0)


def evaluate_blink(params: dict, model_path: str | Path, dataset: str, out_scores: str | Path,
                   out_metrics: str | Path, out_roc: str | Path, train_dataset: str | None = None) -> dict:
    """Score a trained detector on a dataset's test split; write scores, metrics and ROC."""
    from .detectors import Detector

    from .detectors.base import UntrainedModel

    videos, table = _videos(dataset, TEST_SPLITS)
    try:
        det = Detector.load(model_path)
    except UntrainedModel as exc:
        io.write_parquet(table.assign(score=np.nan, verdict=""), out_scores, {"status": "error", "error": str(exc)})
        result = {"detector": Path(model_path).parent.name, "train_dataset": train_dataset, "test_dataset": dataset,
                  "status": "error", "error": str(exc), **compute_metrics([], []), "skipped": []}
        io.write_json(result, out_metrics)
        with io.atomic_path(out_roc) as tmp:
            tmp.write_text("fpr,tpr,threshold\n")
        return result
    t0 = time.perf_counter()
    p = score_videos(det, videos)
    log.info("scored %d videos of %s with %s in %.2f s", len(videos), dataset, det.name, time.perf_counter() - t0)
    y = np.array([v.label for v in videos], dtype=int)
    scores = table.copy()
    by_id = dict(zip([v.video_id for v in videos], p))
    scores["score"] = scores["video_id"].map(by_id).astype(float)
    scores["verdict"] = np.where(scores["score"].isna(), "", np.where(scores["score"] >= 0.5, "fake", "real"))
    io.write_parquet(scores, out_scores, {"status": "ok", "detector": det.name, "test_dataset": dataset})
    m = compute_metrics(y, p)
    result = {"detector": det.name, "family": det.family, "train_dataset": train_dataset, "test_dataset": dataset,
              "split": "test", "status": "ok", "error": "", **m, "skipped": table[table["status"] != "ok"].to_dict("records")}
    io.write_json(result, out_metrics)
    r = roc(y, p) if m["auc"] is not None else pd.DataFrame({"fpr": [], "tpr": [], "threshold": []})
    with io.atomic_path(out_roc) as tmp:
        r.to_csv(tmp, index=False, float_format="%.6g")
    return result


def detect_video(model_path: str | Path, video: str | Path, params: dict, workdir: str | Path) -> dict:
    """``blinkbench detect``: EAR of one video through ``analyze``, then the detector's score."""
    from .cli import analyze
    from .detectors import Detector

    det = Detector.load(model_path)
    summary = analyze(str(video), params, workdir)
    ear_p = Path(workdir) / "ear.parquet"
    out = {"video": str(video), "detector": det.name, "status": summary.get("status", "error")}
    if out["status"] != "ok":
        out.update(probability=None, verdict="unknown", error=summary.get("error", ""))
        return out
    v = VideoSeries.from_artifacts(Path(video).stem, ear_p)
    v.summary = {k: summary.get(k) for k in summary}
    p = float(det.predict_proba([v])[0])
    out.update(probability=p, verdict="fake" if p >= 0.5 else "real", blink_rate_per_min=summary.get("blink_rate_per_min"),
               n_blinks=len(summary.get("blinks", [])))
    return out
