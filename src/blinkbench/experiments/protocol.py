"""Training and evaluation of the detectors, blink-based (EAR series) and frame-level (face
crops): what the ``train_blink``/``evaluate_blink`` and ``train_frame``/``evaluate_frame``
rules and stages run, and ``blinkbench detect``.

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

from blinkbench.core import io, paths
from blinkbench.core.labels import LABELS
from blinkbench.detectors.blink.series import SeriesConfig, VideoSeries
from blinkbench.detectors.evaluation import metrics as compute_metrics
from blinkbench.detectors.evaluation import roc, unknown_as_fake
from blinkbench.spine.blinks import evidence
from blinkbench.spine.blinks import verdict as blink_verdict

log = logging.getLogger(__name__)

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
    from blinkbench.detectors.blink import create
    from blinkbench.detectors.blink.base import save_failure

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


def _write_evaluation(table: pd.DataFrame, scores: dict[str, float], head: dict, out_scores, out_metrics, out_roc,
                      extra: dict | None = None, evidence: dict[str, dict] | None = None) -> dict:
    """Scores parquet (every test row, NaN score where not scored), metrics JSON and ROC CSV.
    Metrics are over the scored videos with status ok and sufficient evidence; the rest are
    listed as skipped (no score) or abstained (``evidence``: video -> :func:`blinks.evidence`,
    verdict ``insufficient``). ``coverage`` is the share of test videos that got a verdict."""
    evidence = evidence or {}
    abstained = sorted(v for v in scores if v in evidence and not evidence[v]["sufficient"])
    judged = {v: p for v, p in scores.items() if v not in abstained}
    scored = table[table["video_id"].isin(list(judged))]
    y = scored["label"].map(LABELS).to_numpy(int)
    p = scored["video_id"].map(judged).to_numpy(float)
    out = table.copy()
    out["score"] = out["video_id"].map(scores).astype(float)
    out["verdict"] = np.where(out["score"].isna(), "", np.where(out["score"] >= 0.5, "fake", "real"))
    out.loc[out["video_id"].isin(abstained), "verdict"] = "insufficient"
    if evidence:
        out["face_duration_s"] = out["video_id"].map({v: e["face_duration_s"] for v, e in evidence.items()}).astype(float)
    io.write_parquet(out, out_scores, {"status": head.get("status", "ok"), **{k: head[k] for k in ("detector", "test_dataset")}})
    m = compute_metrics(y, p)
    labelled = out[out["label"].isin(list(LABELS))]
    reference = unknown_as_fake(labelled["label"].map(LABELS).to_numpy(int),
                                labelled["verdict"].replace("", "unknown").to_numpy(object))
    result = {**head, "split": "test", **m, "coverage": len(judged) / len(table) if len(table) else None,
              "n_abstained": len(abstained), "unknown_as_fake": reference, **(extra or {}),
              "abstained": [{"video_id": v, "face_duration_s": evidence[v]["face_duration_s"],
                             "min_face_s": evidence[v]["min_face_s"]} for v in abstained],
              "skipped": table[~table["video_id"].isin(list(scores))].to_dict("records")}
    io.write_json(result, out_metrics)
    r = roc(y, p) if m["auc"] is not None else pd.DataFrame({"fpr": [], "tpr": [], "threshold": []})
    with io.atomic_path(out_roc) as tmp:
        r.to_csv(tmp, index=False, float_format="%.6g")
    return result


def _load_or_record(loader, model_path, table, head, outs) -> object | None:
    """Load a model; a model file that records a failed training, or one that is refused
    (a pickle, a damaged or foreign file), yields an error evaluation."""
    from blinkbench.detectors.modelfile import ModelFileError, UntrainedModel

    try:
        return loader(model_path)
    except (UntrainedModel, ModelFileError) as exc:
        _write_evaluation(table, {}, {**head, "status": "error", "error": str(exc)}, *outs)
        return None


def evaluate_blink(params: dict, model_path: str | Path, dataset: str, out_scores: str | Path,
                   out_metrics: str | Path, out_roc: str | Path, train_dataset: str | None = None) -> dict:
    """Score a trained blink detector on a dataset's test split; write scores, metrics, ROC."""
    from blinkbench.detectors.blink import Detector

    videos, table = _videos(dataset, TEST_SPLITS)
    head = {"detector": Path(model_path).parent.name, "family": None, "train_dataset": train_dataset,
            "test_dataset": dataset, "status": "ok", "error": ""}
    outs = (out_scores, out_metrics, out_roc)
    det = _load_or_record(Detector.load, model_path, table, head, outs)
    if det is None:
        return io.read_json(out_metrics)
    t0 = time.perf_counter()
    p = score_videos(det, videos)
    log.info("scored %d videos of %s with %s in %.2f s", len(videos), dataset, det.name, time.perf_counter() - t0)
    head.update(detector=det.name, family=det.family)
    min_face_s = float(params["detectors"]["min_face_s"])
    ev = {v.video_id: evidence(v.summary, min_face_s) for v in videos}
    return _write_evaluation(table, dict(zip([v.video_id for v in videos], p.tolist())), head, *outs, evidence=ev)


# ---------------------------------------------------------------------------- frame detectors

def _crops(dataset: str, splits: tuple[str, ...]):
    """CropSet of these splits and a per-video status table (videos without crops are listed)."""
    from blinkbench.detectors.frame import CropSet

    man = pd.read_parquet(paths.path("manifest", dataset=dataset))
    man = man[man["split"].isin(splits) & man["label"].isin(list(LABELS))]
    cs = CropSet.from_manifest(dataset, man)
    have = set(cs.video_id.tolist())
    table = man[["video_id", "label", "split"]].copy()
    table["status"] = np.where(table["video_id"].isin(have), "ok",
                               np.where(man["status"] != "ok", man["status"], "no_crops"))
    return cs, table.reset_index(drop=True)


def _val_videos(video_ids: list[str], fraction: float, seed: int) -> list[str]:
    """A seeded choice of whole videos for validation (never one video's crops on both sides)."""
    ids = sorted(video_ids)
    rng = np.random.default_rng(seed)
    n = int(round(fraction * len(ids)))
    return sorted(rng.choice(ids, size=n, replace=False).tolist()) if n else []


def train_frame(params: dict, detector: str, dataset: str, out_model: str | Path, out_info: str | Path) -> dict:
    """Fit one frame detector on a dataset's train crops; early stopping / model selection on
    its val split (or, without one, on a seeded ``frame_detectors.val_fraction`` of the train
    videos, chosen by video). Test crops are never read."""
    from blinkbench.detectors.blink.base import save_failure
    from blinkbench.detectors.frame import create

    fcfg = params["frame_detectors"]
    seed = int(params["base"]["seed"])
    hyper = dict(fcfg.get("hyper", {}).get(detector, {}))
    det = create(detector, seed=seed, **hyper)
    if hyper.get("checkpoint") and int(hyper.get("epochs", -1)) == 0:
        return _pretrained_frame(det, hyper["checkpoint"], dataset, out_model, out_info)
    train, ttable = _crops(dataset, ("train",))
    val, vtable = _crops(dataset, ("val",))
    if not len(val) and len(train):
        held = _val_videos(sorted(set(train.video_id.tolist())), fcfg["val_fraction"], seed)
        val, train = train.subset(held), train.subset(sorted(set(train.video_id.tolist()) - set(held)))
    info = {"detector": det.describe(), "train_dataset": dataset, "n_train_crops": len(train), "n_val_crops": len(val),
            "n_train_videos": int(len(set(train.video_id.tolist()))), "n_val_videos": int(len(set(val.video_id.tolist()))),
            "skipped": pd.concat([ttable, vtable])[lambda t: t["status"] != "ok"].to_dict("records"),
            "status": "ok", "error": ""}
    try:
        if len(set(train.label.tolist())) < 2:
            raise ValueError(f"{dataset}: training needs real and fake crops; have labels {sorted(set(train.label.tolist()))}")
        t0 = time.perf_counter()
        det.fit(train, val if len(val) else None)
        log.info("fit %s on %s: %d crops in %.1f s", detector, dataset, len(train), time.perf_counter() - t0)
        det.save(out_model)
    except Exception as exc:
        log.error("training %s on %s failed: %s", detector, dataset, exc, exc_info=True)
        info.update(status="error", error=f"{type(exc).__name__}: {exc}")
        save_failure(out_model, detector, info["error"], kind="frame")
    io.write_json(info, out_info)
    return info


def _pretrained_frame(det, checkpoint: str, dataset: str, out_model, out_info) -> dict:
    """A frame detector used with given weights as they are (``checkpoint`` and ``epochs: 0``,
    e.g. the MesoNet authors' ``.h5``): nothing of ``dataset`` is read; the info records the
    checkpoint and its sha256, so the model is known to come from there, not from training."""
    from blinkbench.detectors.blink.base import save_failure
    from blinkbench.detectors.frame import CropSet

    info = {"detector": det.describe(), "train_dataset": dataset, "pretrained": True, "checkpoint": str(checkpoint),
            "n_train_crops": 0, "n_val_crops": 0, "skipped": [], "status": "ok", "error": ""}
    try:
        info["checkpoint_sha256"] = io.sha256_file(checkpoint)
        det.fit(CropSet.empty())
        det.save(out_model)
        log.info("%s: pretrained weights %s, no training", det.name, checkpoint)
    except Exception as exc:
        log.error("pretrained %s from %s failed: %s", det.name, checkpoint, exc, exc_info=True)
        info.update(status="error", error=f"{type(exc).__name__}: {exc}")
        save_failure(out_model, det.name, info["error"])
    io.write_json(info, out_info)
    return info


def _load_frame(path):
    from blinkbench.detectors.frame import FrameDetector

    return FrameDetector.load(path)


def evaluate_frame(params: dict, model_path: str | Path, dataset: str, out_scores: str | Path,
                   out_metrics: str | Path, out_roc: str | Path, train_dataset: str | None = None) -> dict:
    """Frame detector on a dataset's test crops: video-level metrics from the mean frame
    probability (top level, comparable with the blink detectors), plus frame-level metrics
    and the video-level metrics of the fraction of frames called fake."""
    cs, table = _crops(dataset, TEST_SPLITS)
    head = {"detector": Path(model_path).parent.name, "family": None, "train_dataset": train_dataset,
            "test_dataset": dataset, "status": "ok", "error": ""}
    outs = (out_scores, out_metrics, out_roc)
    det = _load_or_record(_load_frame, model_path, table, head, outs)
    if det is None:
        return io.read_json(out_metrics)
    head.update(detector=det.name, family=det.family)
    t0 = time.perf_counter()
    frame_p = det.predict_frames(cs.crops) if len(cs) else np.zeros(0)
    log.info("scored %d crops of %s with %s in %.2f s", len(cs), dataset, det.name, time.perf_counter() - t0)
    frames = pd.DataFrame({"video_id": cs.video_id, "score": frame_p})
    from blinkbench.detectors.evaluation import frame_to_video

    vids = frame_to_video(frames) if len(frames) else pd.DataFrame(columns=["video_id", "mean_prob", "frac_fake"])
    y_frame = cs.label.astype(int)
    y_vid = vids["video_id"].map(dict(zip(table["video_id"], table["label"]))).map(LABELS).to_numpy(int)
    extra = {"frame": compute_metrics(y_frame, frame_p),
             "video_frac_fake": compute_metrics(y_vid, vids["frac_fake"].to_numpy(float))}
    return _write_evaluation(table, dict(zip(vids["video_id"], vids["mean_prob"].astype(float))), head, *outs, extra=extra)


def detect_video(model_path: str | Path, video: str | Path, params: dict, workdir: str | Path) -> dict:
    """``blinkbench detect``: one video through a trained blink detector (EAR via
    :func:`~blinkbench.spine.steps.run_chain`) or frame detector (face crops via the faces step,
    mean frame probability). The model file is read once; one that is refused (a pickle, a
    damaged or foreign file, a failed training) gives an error record without touching the video."""
    from blinkbench.detectors import modelfile
    from blinkbench.detectors.frame import FrameDetector

    try:
        det = modelfile.load(model_path)
    except (modelfile.ModelFileError, modelfile.UntrainedModel, OSError) as exc:
        return {"video": str(video), "detector": None, "family": None, "status": "error", "probability": None,
                "verdict": "unknown", "error": f"model {model_path}: {exc}"}
    return (_detect_frame if isinstance(det, FrameDetector) else _detect_blink)(det, video, params, workdir)


def _detect_blink(det, video, params, workdir) -> dict:
    from blinkbench.spine.steps import run_chain

    summary = run_chain(str(video), params, workdir)
    ear_p = Path(workdir) / "ear.parquet"
    out = {"video": str(video), "detector": det.name, "family": det.family, "status": summary.get("status", "error")}
    if out["status"] != "ok":
        out.update(probability=None, verdict="unknown", error=summary.get("error", ""))
        return out
    v = VideoSeries.from_artifacts(Path(video).stem, ear_p)
    v.summary = {k: summary.get(k) for k in summary}
    p = float(det.predict_proba([v])[0])
    ev = evidence(summary, float(params["detectors"]["min_face_s"]))
    out.update(probability=p, verdict=blink_verdict(p, ev), face_duration_s=ev["face_duration_s"],
               min_face_s=ev["min_face_s"], blink_rate_per_min=summary.get("blink_rate_per_min"),
               n_blinks=len(summary.get("blinks", [])))
    return out


def _detect_frame(det, video, params, workdir) -> dict:
    from blinkbench.spine import steps

    w = Path(workdir)
    meta = steps.faces_one(video, w / "faces.parquet", w / "crops.npz", params)
    out = {"video": str(video), "detector": det.name, "family": det.family, "status": meta.get("status", "error")}
    with np.load(w / "crops.npz") as z:
        crops = z["crops"]
    if out["status"] != "ok" or not len(crops):
        out.update(probability=None, verdict="unknown", error=meta.get("error") or "no face crops")
        out["status"] = out["status"] if out["status"] != "ok" else "no_face"
        return out
    fp = det.predict_frames(crops)
    p = float(np.mean(fp))
    out.update(probability=p, verdict="fake" if p >= 0.5 else "real", n_crops=int(len(crops)),
               frac_frames_fake=float(np.mean(fp >= 0.5)))
    return out
