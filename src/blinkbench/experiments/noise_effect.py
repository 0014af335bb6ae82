"""What per-frame adversarial noise does to the blink path, measured: for every study set
and every blink detector, the change in the detector's score, the EAR series difference and
the landmark displacement around the eyes, clean vs attacked.

The study (:mod:`blinkbench.experiments.study`) attacks fake videos against a *frame* detector and
re-runs the whole blink path (MediaPipe landmarks, EAR, blinks) on each attacked and
compressed video, keeping the artifacts under
``data/study/{dataset}/{target}/{method}/eps{eps}/work/{variant}/{video}/``. The clean
reference here is the source video's own artifacts (``data/landmarks/{dataset}/{video}.parquet``,
``data/ear/{dataset}/{video}.parquet``, ``data/blinks/{dataset}/{video}.json``), so the clean
study sets (``clean/none/eps0/{variant}``) measure what decoding and compression alone do, and
the attacked sets what the attack adds.

Per (set, video, detector), on frames aligned by index (both with a face):

- ``score_clean`` (the detector on the source EAR), ``score_attacked`` (the study's score),
  ``score_change``;
- ``ear_rms``, ``ear_max``: RMS and max of |EAR_attacked - EAR_clean| (raw EAR units);
- ``norm_rms``, ``norm_max``: the same after the detector's own series preparation
  (:func:`blinkbench.detectors.blink.series.prepare`: resampling, gap filling, normalisation), on the common
  grid;
- ``level_change``: relative change of the normalisation level (median EAR);
- ``jitter_clean``, ``jitter_attacked``: RMS of the frame-to-frame difference of the
  normalised series (its high-frequency content, blinks included); ``noise_clean``,
  ``noise_attacked``: the median |frame-to-frame difference| (the noise floor between
  events), the quantity per-frame noise moves most;
- ``eye_disp_median_px``, ``eye_disp_max_px``: displacement of the eye landmarks (frame
  pixels, both eyes' contours: :data:`EYE_POINTS`), median and max over points and frames;
  ``eye_shape_median_px``/``eye_shape_max_px``: the same after removing each eye's mean shift
  per frame (EAR is translation invariant: this part is what changes it);
- ``blink_change``: blinks found after the attack minus before;
- ``score_control``: the causal check. The detector on the *clean* EAR series plus the
  attack's own per-frame EAR residual (attacked - clean, on aligned frames) drawn in a seeded
  random order (:func:`noise_control`): the same amplitude of per-frame noise, with no tie to
  time, blinks or the video. Where ``score_control`` moves like ``score_attacked``, per-frame
  noise of that size is enough to move the detector, whatever the attack aimed at.

:func:`compute` returns the per-video table and a per (set, detector) summary (means over
videos; maxima for the ``*_max*`` columns); :func:`write` stores both as CSV and JSON.
A reference row set (``reference``) gives the same jitter statistic on the clean train
videos by label, so a moved score can be read against what the detector learned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from blinkbench.core import io, paths
from blinkbench.core.labels import LABELS
from blinkbench.detectors.blink.series import SeriesConfig, VideoSeries, prepare

log = logging.getLogger(__name__)

# Eye contours, corner to corner over the upper and then the lower lid (the EAR points are
# among them); "right"/"left" are the subject's own eyes.
EYE_CONTOURS: dict[str, dict[str, tuple[int, ...]]] = {
    "mediapipe": {
        "right": (33, 246, 161, 160, 159, 158, 157, 173, 133, 7, 163, 144, 145, 153, 154, 155),
        "left": (263, 466, 388, 387, 386, 385, 384, 398, 362, 249, 390, 373, 374, 380, 381, 382),
    },
    "ibug68": {"right": tuple(range(36, 42)), "left": tuple(range(42, 48))},
}
EYE_POINTS = {k: tuple(sorted(v["right"] + v["left"])) for k, v in EYE_CONTOURS.items()}

VIDEO_KEYS = ("ear_rms", "ear_max", "level_change", "eye_disp_median_px", "eye_disp_max_px",
              "eye_shape_median_px", "eye_shape_max_px", "frames_aligned", "blink_change")
DETECTOR_KEYS = ("score_clean", "score_attacked", "score_control", "score_change", "norm_rms", "norm_max",
                 "jitter_clean", "jitter_attacked", "noise_clean", "noise_attacked")


def scheme_of(n_points: int) -> str:
    """Landmark scheme from the number of points (Face Mesh 468/478, iBUG 68)."""
    if n_points in (468, 478):
        return "mediapipe"
    if n_points == 68:
        return "ibug68"
    raise ValueError(f"no eye points known for {n_points}-point landmarks")


# ---------------------------------------------------------------------- measures

def eye_displacement(clean: np.ndarray, attacked: np.ndarray, scheme: str) -> dict:
    """Displacement of the eye landmarks between two aligned (T, N, 2|3) frame-pixel arrays:
    median and max over eye points and frames where both have all eye points, raw and after
    removing each eye's mean shift per frame (the shape change, what EAR sees)."""
    a = np.asarray(clean, np.float64)[..., :2]
    b = np.asarray(attacked, np.float64)[..., :2]
    if a.shape != b.shape:
        raise ValueError(f"landmark arrays differ in shape: {a.shape} vs {b.shape}")
    eyes = EYE_CONTOURS[scheme]
    pts = list(EYE_POINTS[scheme])
    ok = np.isfinite(a[:, pts]).all((1, 2)) & np.isfinite(b[:, pts]).all((1, 2))
    out = {"frames_aligned": int(ok.sum())}
    if not ok.any():
        return {**out, "eye_disp_median_px": None, "eye_disp_max_px": None, "eye_shape_median_px": None,
                "eye_shape_max_px": None}
    d = (b - a)[ok]                                             # (F, N, 2)
    raw = np.linalg.norm(d[:, pts], axis=-1)
    shape = np.concatenate([np.linalg.norm(d[:, list(ix)] - d[:, list(ix)].mean(1, keepdims=True), axis=-1)
                            for ix in eyes.values()], 1)
    return {**out, "eye_disp_median_px": float(np.median(raw)), "eye_disp_max_px": float(raw.max()),
            "eye_shape_median_px": float(np.median(shape)), "eye_shape_max_px": float(shape.max())}


def _rms(x: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else None


def jitter(values: np.ndarray, mask: np.ndarray) -> float | None:
    """RMS of the frame-to-frame difference over consecutive observed samples."""
    v, m = np.asarray(values, np.float64), np.asarray(mask, bool)
    both = m[1:] & m[:-1]
    return _rms(np.diff(v)[both])


def noise_level(values: np.ndarray, mask: np.ndarray) -> float | None:
    """Median |frame-to-frame difference| over consecutive observed samples: the noise floor
    between events (blinks and closures, a few large steps, do not move a median)."""
    v, m = np.asarray(values, np.float64), np.asarray(mask, bool)
    d = np.abs(np.diff(v))[m[1:] & m[:-1]]
    return float(np.median(d)) if len(d) else None


def ear_difference(clean: pd.DataFrame, attacked: pd.DataFrame) -> dict:
    """Raw EAR difference on frames aligned by index (``frame``, ``ear_mean``), both finite."""
    m = clean[["frame", "ear_mean"]].merge(attacked[["frame", "ear_mean"]], on="frame", suffixes=("_c", "_a"))
    c, a = m["ear_mean_c"].to_numpy(float), m["ear_mean_a"].to_numpy(float)
    ok = np.isfinite(c) & np.isfinite(a)
    d = np.abs(a - c)[ok]
    lc, la = np.nanmedian(c) if np.isfinite(c).any() else np.nan, np.nanmedian(a) if np.isfinite(a).any() else np.nan
    return {"ear_rms": _rms(d), "ear_max": float(d.max()) if len(d) else None,
            "level_change": float(la / lc - 1) if lc > 0 and np.isfinite(la) else None}


def normalised_difference(clean: VideoSeries, attacked: VideoSeries, cfg: SeriesConfig) -> dict:
    """RMS and max difference of the two series after ``cfg``'s preparation (common grid
    length, samples observed in both), and each series' jitter."""
    pc, pa = prepare(clean, cfg), prepare(attacked, cfg)
    n = min(len(pc.values), len(pa.values))
    ok = pc.mask[:n] & pa.mask[:n]
    d = np.abs(pa.values[:n].astype(np.float64) - pc.values[:n])[ok]
    return {"norm_rms": _rms(d), "norm_max": float(d.max()) if len(d) else None,
            "jitter_clean": jitter(pc.values, pc.mask), "jitter_attacked": jitter(pa.values, pa.mask),
            "noise_clean": noise_level(pc.values, pc.mask), "noise_attacked": noise_level(pa.values, pa.mask)}


def read_landmark_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices (T,), landmarks (T, N, 3) frame pixels, NaN without a face)."""
    from blinkbench.spine.landmarks import read_landmarks

    parts = list(read_landmarks(path))
    if not parts:
        return np.zeros(0, int), np.zeros((0, 0, 3))
    frames = np.concatenate([p[0] for p in parts]).astype(int)
    xyz = np.concatenate([p[3] for p in parts]).astype(np.float64)
    present = np.concatenate([p[2] for p in parts]).astype(bool)
    xyz[~present] = np.nan
    return frames, xyz


def aligned_landmarks(clean_path: str | Path, attacked_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    fc, c = read_landmark_array(clean_path)
    fa, a = read_landmark_array(attacked_path)
    common, ic, ia = np.intersect1d(fc, fa, return_indices=True)
    return c[ic], a[ia]


# ---------------------------------------------------------------------- one video

@dataclass
class VideoArtifacts:
    """Paths of one video's blink-path artifacts."""

    ear: Path
    landmarks: Path
    summary: Path

    def series(self, video_id: str) -> VideoSeries:
        return VideoSeries.from_artifacts(video_id, self.ear, self.summary)


def video_effect(video_id: str, clean: VideoArtifacts, attacked: VideoArtifacts) -> dict:
    """The detector-independent measures of one video (EAR and landmarks)."""
    ec, ea = pd.read_parquet(clean.ear), pd.read_parquet(attacked.ear)
    out = ear_difference(ec, ea)
    lc, la = aligned_landmarks(clean.landmarks, attacked.landmarks)
    out.update(eye_displacement(lc, la, scheme_of(lc.shape[1])) if lc.size and la.size else
               {"frames_aligned": 0})
    sc = io.read_json(clean.summary) if clean.summary.exists() else {}
    sa = io.read_json(attacked.summary) if attacked.summary.exists() else {}
    if sc.get("n_blinks") is not None and sa.get("n_blinks") is not None:
        out["blink_change"] = int(sa["n_blinks"]) - int(sc["n_blinks"])
    return out


# ---------------------------------------------------------------------- the study

def _blink_models(params: dict) -> dict:
    from blinkbench.detectors.blink import Detector
    from blinkbench.experiments.plan import detector_plan

    on = params["attacks"]["models_trained_on"]
    out = {}
    for name in detector_plan(params)[0]:
        try:
            out[name] = Detector.load(paths.path("blink_model", detector=name, train=on))
        except (FileNotFoundError, ValueError) as exc:  # missing, failed training, or refused file
            log.warning("blink detector %s not available: %s", name, exc)
    return out


def _series_cfg(det, params: dict) -> SeriesConfig:
    cfg = getattr(det, "series", None)
    return cfg if isinstance(cfg, SeriesConfig) else SeriesConfig.from_params(params["detectors"]["series"])


def compute(params: dict, models: Mapping | None = None) -> dict[str, pd.DataFrame]:
    """Per-video and summary tables over every study set whose re-scoring exists.

    ``models``: name -> fitted blink detector (default: the trained ones of
    ``attacks.models_trained_on``). A video whose artifacts are missing or unreadable gets a
    row with ``status`` and ``error`` and no figures; the others go on."""
    from blinkbench.experiments.study import rescored_sets

    if not params["attacks"]["enabled"]:
        return {"videos": pd.DataFrame(), "summary": pd.DataFrame(), "reference": pd.DataFrame()}
    ds = params["attacks"]["dataset"]
    models = dict(_blink_models(params) if models is None else models)
    clean_scores: dict[tuple[str, str], float | None] = {}
    rows = []
    for target, method, eps, variant, sp in rescored_sets(params):
        study = io.read_json(sp)
        work = paths.path("study_work", dataset=ds, target=target, method=method, eps=eps, variant=variant)
        for v in study.get("videos", []):
            vid = v["video_id"]
            base = {"target": target, "method": method, "eps": float(eps), "variant": variant, "video_id": vid}
            src = VideoArtifacts(paths.path("ear", dataset=ds, video=vid), paths.path("landmarks", dataset=ds, video=vid),
                                 paths.path("blink_summary", dataset=ds, video=vid))
            adv = VideoArtifacts(work / vid / "ear.parquet", work / vid / "landmarks.parquet", work / vid / "summary.json")
            try:
                if v.get("status") != "ok":
                    raise RuntimeError(f"attacked video not scored: {v.get('status')}: {v.get('error', '')}")
                common = video_effect(vid, src, adv)
                cs, as_ = src.series(vid), adv.series(vid)
                control = noise_control(cs, as_, seed=int(params["base"]["seed"]))
            except Exception as exc:  # a bad or missing artifact: a row that says so
                log.warning("noise effect of %s on %s: %s", sp, vid, exc)
                rows.append({**base, "detector": None, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
                continue
            for name, det in models.items():
                key = (vid, name)
                if key not in clean_scores:
                    clean_scores[key] = _score(det, cs)
                row = {**base, "detector": name, "status": "ok", "error": "", **common,
                       **normalised_difference(cs, as_, _series_cfg(det, params)),
                       "score_clean": clean_scores[key], "score_attacked": v.get("scores", {}).get(f"blink/{name}"),
                       "score_control": _score(det, control) if control is not None else None}
                row["score_change"] = (row["score_attacked"] - row["score_clean"]
                                       if row["score_attacked"] is not None and row["score_clean"] is not None else None)
                rows.append(row)
    videos = pd.DataFrame(rows)
    return {"videos": videos, "summary": summarise(videos), "reference": reference_jitter(params, models)}


def noise_control(clean: VideoSeries, attacked: VideoSeries, seed: int = 0) -> VideoSeries | None:
    """The clean series plus the attack's EAR residual, resampled in a seeded random order
    (None when the two share no frame with a face). Frames without a face stay without one."""
    n = min(len(clean.ear), len(attacked.ear))
    r = np.asarray(attacked.ear[:n], float) - np.asarray(clean.ear[:n], float)
    r = r[np.isfinite(r)]
    if not len(r):
        return None
    noise = np.random.default_rng(seed).choice(r, size=len(clean.ear), replace=True)
    return VideoSeries(clean.video_id, clean.t, np.asarray(clean.ear, float) + noise, dict(clean.summary), clean.label)


def _score(det, video: VideoSeries) -> float | None:
    try:
        return float(det.predict_proba([video])[0])
    except Exception as exc:
        log.warning("scoring the clean %s failed: %s", video.video_id, exc)
        return None


def summarise(videos: pd.DataFrame) -> pd.DataFrame:
    """Per (set, detector): means over videos, maxima for the max columns, detection rates."""
    if videos.empty or "detector" not in videos:
        return pd.DataFrame()
    ok = videos[(videos["status"] == "ok") & videos["detector"].notna()]
    keys = ["target", "method", "eps", "variant", "detector"]
    out = []
    for k, g in ok.groupby(keys, sort=False):
        row = dict(zip(keys, k))
        row["n"] = int(len(g))
        for c in VIDEO_KEYS + DETECTOR_KEYS:
            if c not in g:
                continue
            x = pd.to_numeric(g[c], errors="coerce").to_numpy(float)
            x = x[np.isfinite(x)]
            row[c] = (float(x.max()) if c.endswith("_max") or c.endswith("_max_px") else float(x.mean())) if len(x) else None
        for c in ("score_clean", "score_attacked", "score_control"):
            x = pd.to_numeric(g[c], errors="coerce").to_numpy(float)
            x = x[np.isfinite(x)]
            row[f"detected_{c.split('_')[1]}"] = float((x >= 0.5).mean()) if len(x) else None
        out.append(row)
    return pd.DataFrame(out)


def reference_jitter(params: dict, models: Mapping) -> pd.DataFrame:
    """Jitter of the clean series after each detector's preparation, over the train videos
    of the models' training dataset, by label: what the detectors saw when they learned."""
    on = params["attacks"]["models_trained_on"]
    mp = paths.path("manifest", dataset=on)
    if not mp.exists():
        return pd.DataFrame()
    man = pd.read_parquet(mp)
    man = man[man["split"].isin(["train", "val"]) & (man["status"] == "ok")]
    rows = []
    cfgs = {name: _series_cfg(det, params) for name, det in models.items()}
    for r in man.itertuples(index=False):
        ep = paths.path("ear", dataset=on, video=r.video_id)
        if not ep.exists():
            continue
        video = VideoSeries.from_artifacts(r.video_id, ep)
        for name, cfg in cfgs.items():
            p = prepare(video, cfg)
            rows.append({"detector": name, "label": r.label, "video_id": r.video_id, "jitter": jitter(p.values, p.mask),
                         "noise": noise_level(p.values, p.mask)})
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    return df.groupby(["detector", "label"], as_index=False).agg(
        jitter_median=("jitter", "median"), noise_median=("noise", "median"), noise_min=("noise", "min"),
        noise_max=("noise", "max"), count=("video_id", "count"))


def write(tables: Mapping[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """``noise_effect.csv`` (summary), ``noise_effect_videos.csv``, ``noise_effect_reference.csv``
    and ``noise_effect.json`` (all three) in ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    names = {"summary": "noise_effect.csv", "videos": "noise_effect_videos.csv",
             "reference": "noise_effect_reference.csv"}
    out = {}
    for key, name in names.items():
        df = tables.get(key, pd.DataFrame())
        with io.atomic_path(out_dir / name) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
        out[key] = out_dir / name
    io.write_json(io.finite({k: tables.get(k, pd.DataFrame()).to_dict("records") for k in names}),
                  out_dir / "noise_effect.json")
    out["json"] = out_dir / "noise_effect.json"
    return out


FINDING_COLUMNS = {          # summary column -> the finding table's column
    "score_clean": "score clean", "score_attacked": "score attacked", "score_change": "score change",
    "control_change": "control change", "ear_rms": "EAR RMS diff", "ear_max": "EAR max diff",
    "compression_ear_rms": "EAR RMS diff, compression alone", "eye_disp_median_px": "eye landmarks moved (px, median)",
    "eye_shape_median_px": "eye shape moved (px, median)", "noise_attacked": "noise floor attacked"}


def finding(summary: pd.DataFrame, reference: pd.DataFrame | None = None) -> dict:
    """What moved in the attacked sets against the source, as a compact table and one or two
    sentences computed from it; ``{}`` when there is no summary.

    ``table``: one row per attacked set, compression and blink detector (``set`` names
    method, eps and target): the detector's mean score on the source and the attacked
    videos and its change; ``control change``: the change the control (clean EAR plus the
    attack's residual in random order) makes; the EAR difference (RMS and max), beside the
    EAR RMS the clean set of the same compression shows (decoding and compression alone);
    eye-landmark displacement and shape change; the noise floor of the attacked series.
    ``conclusion``: sentences stating the size of the score change against the EAR change,
    and whether the control reproduces it (and, with ``reference``, where the attacked
    noise floor lies against the clean train videos')."""
    if summary.empty or "target" not in summary:
        return {}
    clean = summary[summary["target"] == "clean"].set_index(["variant", "detector"])
    attacked = summary[summary["target"] != "clean"]
    if attacked.empty:
        return {}
    rows = []
    attacked = attacked.assign(_eps=pd.to_numeric(attacked["eps"], errors="coerce")).sort_values(
        ["detector", "variant", "target", "method", "_eps"], kind="stable")    # detector x compression, eps rising
    for r in attacked.to_dict("records"):
        c = clean.loc[(r["variant"], r["detector"])] if (r["variant"], r["detector"]) in clean.index else None
        sc, sa, ctl = (_num(r.get(k)) for k in ("score_clean", "score_attacked", "score_control"))
        row = {"set": f"{r['method']} eps {float(r['eps']):g} on {r['target']}", "compression": r["variant"],
               "detector": r["detector"], "score_clean": sc, "score_attacked": sa, "score_change": _num(r.get("score_change")),
               "control_change": ctl - sc if ctl is not None and sc is not None else None,
               "ear_rms": _num(r.get("ear_rms")), "ear_max": _num(r.get("ear_max")),
               "compression_ear_rms": _num(c.get("ear_rms")) if c is not None else None,
               "eye_disp_median_px": _num(r.get("eye_disp_median_px")),
               "eye_shape_median_px": _num(r.get("eye_shape_median_px")), "noise_attacked": _num(r.get("noise_attacked"))}
        rows.append(row)
    t = pd.DataFrame(rows)
    table = t.rename(columns=FINDING_COLUMNS)
    for col in FINDING_COLUMNS.values():       # all-missing columns stay numeric (blank, not "None")
        table[col] = table[col].astype(float)
    return {"table": table, "conclusion": _conclusion(t, reference)}


# what overview() gives per attacked set and compression: column -> the finding table's column
# (the EAR and landmark columns do not depend on the detector: their median over detectors)
OVERVIEW_MEDIANS = {"score change, median": "score change", "control change, median": "control change",
                    "EAR RMS diff": "EAR RMS diff", "EAR RMS diff, compression alone": "EAR RMS diff, compression alone",
                    "eye shape moved (px)": "eye shape moved (px, median)"}


def overview(table: pd.DataFrame) -> pd.DataFrame:
    """The finding table (one row per attacked set, compression and blink detector) in one
    row per attacked set and compression: how many detectors, the median and the largest
    score change (signed, with its detector), and the medians of :data:`OVERVIEW_MEDIANS`
    (columns the table lacks are left out). Rows in the finding table's order."""
    if table is None or table.empty or not {"set", "compression", "detector"} <= set(table.columns):
        return pd.DataFrame()
    rows = []
    for (set_, comp), g in table.groupby(["set", "compression"], sort=False):
        row: dict = {"set": set_, "compression": comp, "detectors": int(g["detector"].nunique())}
        if "score change" in g:
            change = pd.to_numeric(g["score change"], errors="coerce")
            row["score change, median"] = float(change.median()) if change.notna().any() else np.nan
            if change.notna().any():
                i = change.abs().idxmax()
                row["score change, largest"], row["largest for"] = float(change[i]), str(g.loc[i, "detector"])
            else:
                row["score change, largest"], row["largest for"] = np.nan, ""
        for name, col in OVERVIEW_MEDIANS.items():
            if col in g and name not in row:
                v = pd.to_numeric(g[col], errors="coerce")
                row[name] = float(v.median()) if v.notna().any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _conclusion(t: pd.DataFrame, reference: pd.DataFrame | None) -> list[str]:
    """One or two sentences from the finding table (``t``: the table's summary names)."""
    out = []
    change = t["score_change"].astype(float)
    ok = change.notna()
    if ok.any():
        i = change[ok].abs().idxmax()
        big = t.loc[i]
        rms = t["ear_rms"].astype(float)
        comp = t["compression_ear_rms"].astype(float)
        ear = (f"; the attacked EAR differs from the source by an RMS of {_f(rms.median(), '.4f')} (median over rows)"
               if rms.notna().any() else "")
        lossy = rms.notna() & (comp > 0)
        if lossy.any():      # against the clean set of the same compression, row by row
            ear += (f", {_f((rms[lossy] / comp[lossy]).median(), '.1f')} times what compression alone does "
                    f"(median over {int(lossy.sum())} rows with a compression that changes the EAR)")
        elif rms.notna().any() and (comp == 0).any():
            ear += ", where compression alone leaves it unchanged (EAR RMS 0 in the clean set)"
        out.append(f"Across {int(ok.sum())} attacked set and blink detector rows the blink detectors' mean score moved by "
                   f"{_f(change[ok].abs().median(), '.3f')} (median absolute change), most for {big['detector']} under "
                   f"{big['set']}, {big['compression']} ({_f(big['score_change'], '+.3f')}){ear}.")
    ctl = t["control_change"].astype(float)
    both = ok & ctl.notna() & (change.abs() > 0)
    if both.any():
        same = int(((ctl[both] * change[both] > 0) & (ctl[both].abs() >= 0.5 * change[both].abs())).sum())
        n = int(both.sum())
        verdict = ("per-frame noise of that size alone moves the detectors as much" if same == n else
                   "per-frame noise of that size alone does not explain the change" if same == 0 else
                   "per-frame noise of that size alone explains part of it")
        line = (f"The control (the clean EAR plus the attack's own residual in random order) moves the score the same "
                f"way by at least half as much in {same} of {n} rows: {verdict}")
        ref_floor = _reference_floor(reference)
        noise = t["noise_attacked"].astype(float)
        if ref_floor is not None and noise.notna().any():
            line += (f"; the attacked series' noise floor (median {_f(noise.median(), '.4f')}) against the clean train "
                     f"videos' (real {_f(ref_floor[0], '.4f')}, fake {_f(ref_floor[1], '.4f')})")
        out.append(line + ".")
    return out


def _reference_floor(reference: pd.DataFrame | None) -> tuple[float, float] | None:
    """Median noise floor of the clean train videos, real and fake (over detectors)."""
    if reference is None or not len(reference) or "noise_median" not in reference:
        return None
    by = reference.groupby("label")["noise_median"].median()
    return (float(by["real"]), float(by["fake"])) if set(LABELS) <= set(by.index) else None


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _f(x, fmt: str = ".2f") -> str:
    try:
        return format(float(x), fmt) if x is not None and np.isfinite(float(x)) else "n/a"
    except (TypeError, ValueError):
        return "n/a"
