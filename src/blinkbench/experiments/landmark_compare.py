"""Landmark backends compared: the same blink detectors trained and tested on the EAR series
of each backend (issue 17; the reference study compared PFLD with HRNet and kept PFLD).

    blinkbench landmark_compare --params params.yaml --dataset demo \\
        --backends mediapipe pfld --pfld-model ../shared/models/pfld_68.onnx

What it runs. The dataset's manifest and face tracks (``data/manifests``, ``data/faces``:
the pipeline's own ``manifest`` and ``faces`` steps, which do not depend on the landmark
backend) are shared; per backend, the ``landmarks``, ``ear`` and ``blinks`` steps
(:func:`blinkbench.spine.steps.run_chain` from ``landmarks`` on, the same chain the pipeline
and ``analyze`` run, with ``landmarks.backend`` set to that backend) write under
``data/landmark_compare/{dataset}/{backend}/{video}/``, skipping videos whose landmark stamp
is current. Then each detector of ``detectors.enabled`` (or ``--detectors``) is fitted on the
backend's ``train`` + ``val`` videos and scored on its ``test`` videos under the protocol of
:mod:`blinkbench.experiments.protocol`: metrics over the videos with a verdict (status ok and
at least ``detectors.min_face_s`` of face), ``coverage`` the share of test videos with one,
and the reference's accuracy with every missing verdict counted as fake
(``acc_unknown_as_fake``). Any registered backend may be listed
(:data:`blinkbench.spine.landmarks.REGISTRY`); one that cannot run (e.g. PFLD without its
model file) gives error rows naming why, and the others go on.

Outputs (atomic): ``data/landmark_compare/{dataset}/results.csv`` (one row per backend and
detector) and ``results.json`` (the same rows, plus the per-backend status counts). The
report shows the table (rows: detector; columns: backend x metric) when the JSON exists
(:mod:`blinkbench.report.reference`).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from blinkbench.core import io, paths
from blinkbench.core.labels import LABELS

log = logging.getLogger(__name__)

ROOT = paths.DATA + "/landmark_compare/{dataset}"
METRICS = ["auc", "acc_0.5", "acc_fake", "acc_real", "coverage", "acc_unknown_as_fake"]
TABLE_METRICS = {"auc": "AUC", "acc_0.5": "acc", "acc_fake": "acc_fake"}


def out_dir(dataset: str) -> Path:
    return Path(ROOT.format(dataset=dataset))


def backend_params(params: dict, backend: str, pfld_model: str | None = None) -> dict:
    """``params`` with ``landmarks.backend`` set (and the PFLD model path, when given)."""
    p = copy.deepcopy(params)
    p["landmarks"]["backend"] = backend
    if pfld_model:
        p["landmarks"]["pfld_model"] = str(pfld_model)
    return p


def extract_backend(params: dict, dataset: str, backend: str) -> pd.DataFrame:
    """Landmarks, EAR and blinks of every ok video of ``dataset`` with ``params``' backend;
    returns ``video_id, label, split, status, ear, summary`` (paths) per manifest row."""
    from blinkbench.spine import steps

    man = pd.read_parquet(paths.path("manifest", dataset=dataset))
    root = out_dir(dataset) / backend
    rows = []
    for r in man.sort_values("video_id").itertuples(index=False):
        w = root / r.video_id
        lm, ear, summ = (w / steps.CHAIN_FILES[k] for k in ("landmarks", "ear", "blink_summary"))
        status = r.status
        if status == "ok":
            track = paths.path("faces", dataset=dataset, video=r.video_id)
            stamp = steps.landmarks_stamp(io.read_meta(track).get("stamp") if track.exists() else None, params)
            current = lm.exists() and io.read_meta(lm).get("stamp") == stamp and ear.exists() and summ.exists()
            if not current:   # the pipeline's chain after its faces step, on the shared track
                steps.run_chain(r.path, params, w, files={"faces": Path(track).absolute()}, start_at="landmarks",
                                steps_meta=True)
            status = io.read_meta(ear).get("status", "error")
        rows.append({"video_id": r.video_id, "label": r.label, "split": r.split, "status": status,
                     "error": io.read_meta(ear).get("error", "") if ear.exists() else "", "ear": ear, "summary": summ})
    return pd.DataFrame(rows)


def _series(table: pd.DataFrame):
    from blinkbench.detectors.blink.series import VideoSeries

    out = []
    for r in table.itertuples(index=False):
        if r.status == "ok" and r.label in LABELS:
            v = VideoSeries.from_artifacts(r.video_id, r.ear, r.summary, LABELS[r.label])
            if np.isfinite(v.ear).any():
                out.append(v)
    return out


def evaluate_backend(params: dict, table: pd.DataFrame, detectors: list[str], backend: str) -> list[dict]:
    """Fit each detector on the backend's train+val series, score its test series."""
    from blinkbench.detectors.blink import create
    from blinkbench.detectors.evaluation import metrics as compute_metrics
    from blinkbench.detectors.evaluation import unknown_as_fake
    from blinkbench.experiments.protocol import TEST_SPLITS, TRAIN_SPLITS, detector_settings
    from blinkbench.spine.blinks import evidence

    train = _series(table[table["split"].isin(TRAIN_SPLITS)])
    test_rows = table[table["split"].isin(TEST_SPLITS) & table["label"].isin(list(LABELS))]
    test = _series(test_rows)
    min_face_s = float(params["detectors"]["min_face_s"])
    ev = {v.video_id: evidence(v.summary, min_face_s) for v in test}
    y_train = np.array([v.label for v in train], int)
    out = []
    for name in detectors:
        row = {"backend": backend, "detector": name, "n_train": len(train), "n_test": len(test_rows),
               "status": "ok", "error": ""}
        try:
            if len(set(y_train.tolist())) < 2:
                raise ValueError(f"training needs real and fake videos with status ok; have {len(train)} "
                                 f"({int(y_train.sum())} fake)")
            s = detector_settings(params, name)
            det = create(name, series=s["series"], seed=s["seed"], **s["hyper"])
            det.fit(train, y_train)
            p = det.predict_proba(test) if test else np.zeros(0)
            scores = dict(zip([v.video_id for v in test], p.tolist()))
            judged = {v: s_ for v, s_ in scores.items() if ev[v]["sufficient"]}
            lab = test_rows.set_index("video_id")["label"].map(LABELS)
            m = compute_metrics(lab[list(judged)].to_numpy(int), np.array(list(judged.values()), float))
            verdicts = [("fake" if judged[v] >= 0.5 else "real") if v in judged else "unknown" for v in lab.index]
            ref = unknown_as_fake(lab.to_numpy(int), np.array(verdicts, object))
            row.update({k: m.get(k) for k in ("auc", "acc_0.5", "acc_fake", "acc_real")},
                       coverage=len(judged) / len(test_rows) if len(test_rows) else None,
                       acc_unknown_as_fake=ref["acc"], n_judged=len(judged))
        except Exception as exc:  # one detector or backend failing must not stop the comparison
            log.error("%s on %s failed: %s", name, backend, exc, exc_info=True)
            row.update(status="error", error=f"{type(exc).__name__}: {exc}")
        out.append(row)
    return out


def compare(params: dict, dataset: str, backends: list[str], detectors: list[str] | None = None,
            pfld_model: str | None = None) -> pd.DataFrame:
    """One row per (backend, detector): the metrics of :data:`METRICS`, or an error row."""
    from blinkbench.spine.landmarks import REGISTRY

    detectors = list(detectors or params["detectors"]["enabled"])
    known = REGISTRY.available()
    rows, status = [], {}
    for b in backends:
        try:
            if b not in known:
                raise ValueError(f"unknown landmark backend {b!r}; known: {sorted(known)}")
            p = backend_params(params, b, pfld_model)
            table = extract_backend(p, dataset, b)
            status[b] = {k: int(v) for k, v in table["status"].value_counts().sort_index().items()}
            if not (table["status"] == "ok").any():
                errs = sorted(set(table["error"]) - {""})
                raise RuntimeError(f"no video has an EAR series with {b}: {errs[:3]}")
            rows += evaluate_backend(p, table, detectors, b)
        except Exception as exc:
            log.error("backend %s failed: %s", b, exc, exc_info=True)
            status.setdefault(b, {})
            rows += [{"backend": b, "detector": d, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
                     for d in detectors]
    df = pd.DataFrame(rows)
    for k in ["n_train", "n_test", "n_judged", *METRICS]:
        if k not in df:
            df[k] = np.nan
    df.attrs["video_status"] = status
    return df


def wide(df: pd.DataFrame) -> pd.DataFrame:
    """Rows: detector; columns: (backend, metric) for AUC, acc, acc_fake."""
    ok = df[df["status"] == "ok"]
    backends = list(dict.fromkeys(df["backend"]))
    cols = pd.MultiIndex.from_tuples([(b, TABLE_METRICS[m]) for b in backends for m in TABLE_METRICS],
                                     names=["backend", "metric"])
    dets = list(dict.fromkeys(df["detector"]))
    out = pd.DataFrame(np.nan, index=pd.Index(dets, name="detector"), columns=cols)
    for r in ok.to_dict("records"):
        for m, label in TABLE_METRICS.items():
            v = r.get(m)
            out.loc[r["detector"], (r["backend"], label)] = np.nan if v is None else v
    return out


def write(df: pd.DataFrame, dataset: str) -> Path:
    d = out_dir(dataset)
    cols = ["backend", "detector", "status", "error", "n_train", "n_test", "n_judged", *METRICS]
    with io.atomic_path(d / "results.csv") as tmp:
        df[cols].to_csv(tmp, index=False, float_format="%.4f")
    rows = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in df[cols].to_dict("records")]
    io.write_json({"dataset": dataset, "backends": list(dict.fromkeys(df["backend"])), "rows": rows,
                   "video_status": df.attrs.get("video_status", {})}, d / "results.json")
    return d / "results.json"
