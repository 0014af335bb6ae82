"""The pipeline's steps, one function per step and video: what Snakemake rules (one job per
video) and DVC stages (one batch per dataset) both run, through the ``blinkbench`` CLI.

Every per-video function

- never raises for a bad video: it writes its outputs anyway, empty, with ``status`` and
  ``error`` in their metadata, so a run goes on and the report lists what went wrong;
- writes atomically (temporary file, then rename), so an interrupted run leaves no
  half-written artifact and resumes where it stopped;
- stamps its outputs with a hash of its inputs' stamps, its params section and its version
  (:func:`blinkbench.core.io.stamp`), which lets batch mode skip videos that are up to date.

Status propagates: a video whose face track has status ``no_face`` gets landmarks, EAR and
blink outputs with that status.
"""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import blinks as blinks_mod
from blinkbench.core import io, paths, steps_table
from blinkbench.core.params_types import BlinksParams, FacesParams, LandmarksParams
from .ear import ear_from_landmarks
from blinkbench.video.codec import OK, UNREADABLE, VideoInfo, probe

log = logging.getLogger(__name__)

# Bump a step's version when its output for the same inputs and params changes.
# landmarks 2: OpenCV yuv444p conversion. Stamps hash exactly the step's table sections
# (steps_table.section_values; landmarks: the active backend's options only).
VERSION = {"faces": 1, "landmarks": 2, "ear": 1, "blinks": 1}


# The step table (what each step reads and writes; Snakemake, DVC and the stamps derive from
# it) lives in blinkbench.core.steps_table; re-exported here for the rules and the tests.
STEPS, StepSpec, model_files, step_view = steps_table.STEPS, steps_table.StepSpec, steps_table.model_files, steps_table.step_view


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _meta_of(path) -> dict:
    meta = io.read_meta(path)
    if not meta:
        return {"status": "error", "error": f"missing or unreadable input artifact: {path}", "stamp": None}
    return meta


# Counts carried from step to step, so a video that stops early still reports its size.
_COUNTS = ("n_frames", "face_frames", "fps")


# ---------------------------------------------------------------------------- stamps
# One definition of each step's stamp, used by the per-video functions (to stamp what they
# write) and by run_batch (to skip videos that are up to date): the two can never disagree.

def _model_sha(cfg: Mapping[str, Any]) -> str:
    model = cfg.get("pfld_model")
    if cfg["backend"] != "pfld" or not model or not Path(model).is_file():
        return ""
    try:
        return io.sha256_file(model)
    except OSError as exc:  # unreadable: the backend fails on it too, as a status row
        log.warning("cannot hash %s: %s", model, exc)
        return ""


def _video_sha(video: str | Path) -> tuple[str, str]:
    """(sha256, "") of a video file, or ("", error) when it cannot be read: the manifest
    schedules every file it lists, and an unreadable one must become a status row."""
    try:
        return (io.sha256_file(video) if Path(video).is_file() else ""), ""
    except OSError as exc:
        return "", _error_text(exc)


def faces_stamp(video_sha: str | None, params: FacesParams) -> str:
    return io.stamp("faces", VERSION["faces"], video_sha, steps_table.section_values(params, "faces"))


def landmarks_stamp(track_stamp: str | None, params: LandmarksParams) -> str:
    return io.stamp("landmarks", VERSION["landmarks"], track_stamp, steps_table.section_values(params, "landmarks"),
                    _model_sha(params["landmarks"]))


def ear_stamp(landmarks_stamp_: str | None) -> str:
    return io.stamp("ear", VERSION["ear"], landmarks_stamp_)


def blinks_stamp(ear_stamp_: str | None, params: BlinksParams) -> str:
    return io.stamp("blinks", VERSION["blinks"], ear_stamp_, steps_table.section_values(params, "blinks"))


# ---------------------------------------------------------------------------- faces

def faces_one(video: str | Path, out_track: str | Path, out_crops: str | Path, params: FacesParams,
              video_sha: str | None = None, progress=None) -> dict:
    from .faces import track_video

    params = step_view(params, "faces")
    cfg = params["faces"]
    sha, read_error = (video_sha, "") if video_sha else _video_sha(video)
    st = faces_stamp(sha, params)
    meta: dict = {"stamp": st, "video": str(video), "video_sha256": sha, "warnings": []}
    table = pd.DataFrame({c: pd.Series(dtype=d) for c, d in _TRACK_DTYPES.items()})
    crops = np.zeros((0, cfg["crops"]["size"], cfg["crops"]["size"], 3), np.uint8)
    crop_frames = np.zeros(0, np.int32)
    try:
        info = probe(video)
    except Exception as exc:  # probe reports bad files as statuses; anything else lands here
        info = VideoInfo(UNREADABLE, _error_text(exc))
    if read_error and info.status == OK:
        info.status, info.error = UNREADABLE, f"cannot read: {read_error}"
    meta["video_info"] = info.as_dict()
    if info.status != OK:
        meta.update(status=info.status, error=info.error)
    else:
        try:
            res = track_video(str(video), cfg, progress=progress)
            table, crops, crop_frames = res.table, res.crops, res.crop_frames
            meta.update(res.meta)
            if info.vfr:
                meta["warnings"].append("variable frame rate: per-frame timestamps are used for all durations")
        except Exception as exc:  # bad input must not stop the run
            log.error("faces failed on %s: %s\n%s", video, exc, traceback.format_exc())
            meta.update(status="error", error=_error_text(exc))
    meta.setdefault("error", "")
    with io.atomic_path(out_crops, suffix=".npz") as tmp:
        np.savez_compressed(tmp, crops=crops, frames=crop_frames)
    io.write_parquet(table.astype(_TRACK_DTYPES), out_track, meta)
    return meta


_TRACK_DTYPES = {"frame": "int32", "timestamp_s": "float64", "face_present": "bool", "detected": "bool",
                 "x0": "float32", "y0": "float32", "x1": "float32", "y1": "float32", "score": "float32"}


# ---------------------------------------------------------------------------- landmarks

def landmarks_one(video: str | Path, track_path: str | Path, out: str | Path, params: LandmarksParams,
                  progress=None) -> dict:
    from .landmarks import backend_class, extract, make_backend
    from .landmarks.extract import landmark_schema

    params = step_view(params, "landmarks")
    cfg = params["landmarks"]
    tmeta = _meta_of(track_path)
    st = landmarks_stamp(tmeta.get("stamp"), params)
    meta = {"stamp": st, "status": tmeta.get("status", "error"), "error": tmeta.get("error", ""),
            "warnings": list(tmeta.get("warnings", [])), "backend": cfg["backend"],
            **{k: tmeta[k] for k in _COUNTS if k in tmeta}}
    if meta["status"] == "ok":
        try:
            track = pd.read_parquet(track_path)
            with make_backend(cfg) as backend:
                return extract(str(video), track, backend, out, cfg["crop_scale"], meta, progress=progress)
        except Exception as exc:
            log.error("landmarks failed on %s: %s\n%s", video, exc, traceback.format_exc())
            meta.update(status="error", error=_error_text(exc))
    with io.ParquetStream(out, landmark_schema(backend_class(cfg["backend"]).n_points), meta):
        pass
    return meta


# ---------------------------------------------------------------------------- ear

EAR_SCHEMA = pa.schema([("frame", pa.int32()), ("timestamp_s", pa.float64()), ("ear_left", pa.float64()),
                        ("ear_right", pa.float64()), ("ear_mean", pa.float64()), ("face_present", pa.bool_())])


def ear_one(landmarks_path: str | Path, out: str | Path) -> dict:
    """EAR per frame (NaN where no face) from a landmarks artifact, streamed in batches."""
    from .landmarks import read_landmarks

    lmeta = _meta_of(landmarks_path)
    st = ear_stamp(lmeta.get("stamp"))
    meta = {"stamp": st, "status": lmeta.get("status", "error"), "error": lmeta.get("error", ""),
            "warnings": lmeta.get("warnings", []), "scheme": lmeta.get("scheme"), "backend": lmeta.get("backend"),
            **{k: lmeta[k] for k in _COUNTS if k in lmeta}}
    parts = []
    if meta["status"] == "ok":
        try:
            for frame, ts, present, xyz in read_landmarks(landmarks_path):
                left, right = ear_from_landmarks(xyz, lmeta["scheme"])
                left[~present] = np.nan
                right[~present] = np.nan
                parts.append(pa.table({"frame": frame.astype(np.int32), "timestamp_s": ts, "ear_left": left,
                                       "ear_right": right, "ear_mean": (left + right) / 2,
                                       "face_present": present.astype(bool)}, schema=EAR_SCHEMA))
        except Exception as exc:
            log.error("ear failed on %s: %s", landmarks_path, exc)
            meta.update(status="error", error=_error_text(exc))
            parts = []
    table = pa.concat_tables(parts) if parts else EAR_SCHEMA.empty_table()
    io.write_parquet(table, out, meta)
    return meta


# ---------------------------------------------------------------------------- blinks

def blinks_one(ear_path: str | Path, out_events: str | Path, out_summary: str | Path, params: BlinksParams) -> dict:
    params = step_view(params, "blinks")
    cfg = params["blinks"]
    emeta = _meta_of(ear_path)
    st = blinks_stamp(emeta.get("stamp"), params)
    meta = {"stamp": st, "status": emeta.get("status", "error"), "error": emeta.get("error", ""),
            "warnings": emeta.get("warnings", [])}
    counts = {"frames": emeta.get("n_frames", 0), "face_frames": emeta.get("face_frames", 0)}
    events = blinks_mod.detect(np.zeros(0), np.zeros(0), cfg)
    summary: dict = dict(counts)
    if Path(ear_path).exists():
        try:
            ear = pq.read_table(ear_path).to_pandas()
            t, e, face = ear["timestamp_s"].to_numpy(), ear["ear_mean"].to_numpy(), ear["face_present"].to_numpy(bool)
            if meta["status"] == "ok":
                events = blinks_mod.detect(t, e, cfg)
            summary = blinks_mod.summarize(t, e, face, events) if len(t) else counts
            if len(t) > 1:
                summary["fps"] = float(1.0 / np.median(np.diff(t)))
        except Exception as exc:
            log.error("blinks failed on %s: %s", ear_path, exc)
            meta.update(status="error", error=_error_text(exc))
    # The summary goes first (removed), then the events, then the new summary: a kill at any
    # point leaves no summary rather than one that disagrees with the events beside it, and
    # no summary (or one with another stamp) means the video is redone.
    Path(out_summary).unlink(missing_ok=True)
    io.write_parquet(events, out_events, meta)
    io.write_json({**summary, **meta}, out_summary)
    return {**summary, **meta}


def _summary_stamp(path: Path) -> str | None:
    try:
        s = io.read_json(path)
    except (OSError, ValueError):
        return None
    return s.get("stamp") if isinstance(s, dict) else None


# ---------------------------------------------------------------------------- batch (DVC)

# The per-video chain, written once: each step's expected stamp (from the outputs of the steps
# before it) and how it runs. run_batch runs one of them over a dataset, skipping videos whose
# outputs carry that stamp; run_chain runs all of them, in order, on one video.

@dataclass(frozen=True)
class Runner:
    """One per-video step: ``stamp(outs, params, video_sha)`` is the stamp its outputs must
    carry to be up to date; ``run(video, outs, params, video_sha, progress)`` makes them and
    returns their metadata. ``outs`` maps output keys (:func:`video_outputs`) to paths."""

    # params: the whole params or the step's own view (the batch form's CLI passes its view);
    # each step narrows it with step_view to its <Step>Params
    stamp: Callable[[dict, Any, str | None], str]
    run: Callable[..., dict]


def _stamp_of(path) -> str | None:
    return io.read_meta(path).get("stamp")


RUNNERS: dict[str, Runner] = {
    "faces": Runner(lambda o, p, sha: faces_stamp(sha, p),
                    lambda v, o, p, sha, bar: faces_one(v, o["faces"], o["crops"], p, video_sha=sha, progress=bar)),
    "landmarks": Runner(lambda o, p, sha: landmarks_stamp(_stamp_of(o["faces"]), p),
                        lambda v, o, p, sha, bar: landmarks_one(v, o["faces"], o["landmarks"], p, progress=bar)),
    "ear": Runner(lambda o, p, sha: ear_stamp(_stamp_of(o["landmarks"])),
                  lambda v, o, p, sha, bar: ear_one(o["landmarks"], o["ear"])),
    "blinks": Runner(lambda o, p, sha: blinks_stamp(_stamp_of(o["ear"]), p),
                     lambda v, o, p, sha, bar: blinks_one(o["ear"], o["blinks"], o["blink_summary"], p)),
}

# Output keys of each per-video step (STEPS is their one definition).
_KINDS = {name: STEPS[name].outputs for name in RUNNERS}

# File names of run_chain's outputs in its work folder, by output key.
CHAIN_FILES = {"faces": "faces.parquet", "crops": "crops.npz", "landmarks": "landmarks.parquet",
               "ear": "ear.parquet", "blinks": "blinks.parquet", "blink_summary": "summary.json"}


def _up_to_date(step: str, outs: dict, stamp: str) -> bool:
    """Every output of ``step`` exists and carries ``stamp`` (parquet metadata, the JSON
    summary's ``stamp``; the crops file has none and only has to exist)."""
    def current(f: Path) -> bool:
        if f.suffix == ".parquet":
            return io.is_current(f, stamp)
        return _summary_stamp(f) == stamp if f.suffix == ".json" else f.exists()

    return all(current(Path(outs[kind])) for kind in _KINDS[step])


def run_steps(video: str | Path, outs: dict, params: dict, progress=None, start_at: str = "faces") -> dict[str, dict]:
    """Every step of :data:`RUNNERS` in order on one video (no skipping), into the paths
    ``outs`` names by output key; returns each step's metadata by step name. ``progress``, a
    tqdm bar or None, counts decoded frames.

    ``start_at`` names the first step to run: the steps before it are not run, and ``outs``
    must name their existing outputs, which the first step reads (e.g. ``start_at="landmarks"``
    with ``outs["faces"]`` a face track made earlier: landmark_compare re-uses one track for
    every backend). A missing one becomes a status row, as in a batch."""
    names = list(RUNNERS)
    if start_at not in RUNNERS:
        raise ValueError(f"start_at must be one of {names}, not {start_at!r}")
    return {name: RUNNERS[name].run(video, outs, params, None, progress) for name in names[names.index(start_at):]}


def run_chain(video: str | Path, params: dict, workdir: str | Path, progress: bool = False, crops: bool = False,
              files: dict | None = None, steps_meta: bool = False, start_at: str = "faces") -> dict:
    """faces -> landmarks -> EAR -> blinks for one video into ``workdir`` (file names
    :data:`CHAIN_FILES`, or ``files`` by output key: a name, or a path relative to
    ``workdir``, or an absolute path); returns the summary plus the event lists.
    Used by ``blinkbench analyze`` and ``detect``, the study's re-scoring, the EAR attack and
    landmark_compare. ``start_at`` (see :func:`run_steps`) skips the steps before it: their
    outputs must already be where ``files`` says (e.g. ``files={"faces": track}``).

    No face crops are kept unless ``crops`` (then ``faces.crops`` of params decides). With
    ``steps_meta`` it returns :func:`run_steps`' per-step metadata instead (the blink step's
    with its stamp, as it wrote it), plus ``paths``."""
    from tqdm import tqdm

    w = Path(workdir)
    w.mkdir(parents=True, exist_ok=True)
    outs = {k: w / name for k, name in {**CHAIN_FILES, **(files or {})}.items()}
    if not crops:
        params = {**params, "faces": {**params["faces"], "crops": {**params["faces"]["crops"], "n_per_video": 0}}}
    n_hint = probe(video).n_frames if progress else 0
    decodes = {"faces": 2, "landmarks": 1}.get(start_at, 0)   # the steps that decode the video
    with tqdm(total=decodes * n_hint or None, desc="analyze", unit="frame", disable=not progress, leave=False) as bar:
        metas = run_steps(video, outs, params, progress=bar if progress else None, start_at=start_at)
    if steps_meta:
        return {**metas, "paths": outs}
    events = pd.read_parquet(outs["blinks"])
    ev = lambda kind: [  # noqa: E731
        {"start_frame": int(r.start_frame), "end_frame": int(r.end_frame), "start_s": round(float(r.start_s), 4),
         "end_s": round(float(r.end_s), 4), "duration_ms": round(float(r.duration_ms), 1), "min_ear": round(float(r.min_ear), 4)}
        for r in events[events["kind"] == kind].itertuples()
    ]
    out = {"video": str(video), **metas["blinks"], "blinks": ev("blink"), "closures": ev("closure")}
    out.pop("stamp", None)
    return out


def video_outputs(dataset: str, video_id: str) -> dict[str, Path]:
    return {k: paths.path(k, dataset=dataset, video=video_id)
            for k in ("faces", "crops", "landmarks", "ear", "blinks", "blink_summary")}


def run_batch(step: str, dataset: str, params: dict, progress: bool = False) -> dict[str, int]:
    """Run one per-video step over every video of a dataset's manifest (what a DVC stage
    does), skipping videos whose output stamp shows it is up to date, and parking outputs
    of videos not scheduled now (:func:`_prune`). Returns counts of done/skipped/not-ok videos.

    Temporaries a killed run left in the step's folders are deleted first. A video whose
    step raises anyway (the per-video functions turn bad input into statuses; this is the
    last resort, e.g. a full disk) is logged and counted as done and not ok; the batch goes
    on, and the next steps record the missing artifact as a status row, so the report is
    built from what exists."""
    from tqdm import tqdm

    if step not in _KINDS:
        raise ValueError(f"{step} is not a per-video step")
    for kind in _KINDS[step]:
        io.clean_temporaries(_folder(kind, step, dataset))
    manifest = pd.read_parquet(paths.path("manifest", dataset=dataset))
    todo = manifest[manifest["status"] != "missing"]
    counts = {"done": 0, "up_to_date": 0, "not_ok": 0}
    rows = list(todo.itertuples(index=False))
    _unpark(step, dataset, set(todo["video_id"]))
    for row in tqdm(rows, desc=f"{step} {dataset}", unit="video", disable=not progress):
        try:
            meta = _batch_one(step, dataset, row, params)
        except Exception as exc:
            log.error("%s failed on %s/%s: %s\n%s", step, dataset, row.video_id, exc, traceback.format_exc())
            meta = {"status": "error"}
        if meta is None:
            counts["up_to_date"] += 1
            continue
        counts["done"] += 1
        counts["not_ok"] += meta.get("status") != "ok"
    _prune(step, dataset, set(todo["video_id"]))
    return counts


def _folder(kind: str, step: str, dataset: str) -> Path:
    return Path(paths.STEP_DIRS["crops" if kind == "crops" else step].format(dataset=dataset))


def _batch_one(step: str, dataset: str, row, params: dict) -> dict | None:
    """One video of :func:`run_batch`: its outputs' metadata, or None when up to date."""
    runner, outs = RUNNERS[step], video_outputs(dataset, row.video_id)
    # only the faces step reads the video (path, sha256); the later steps' batches also run
    # over manifests without those columns
    path, sha = getattr(row, "path", None), getattr(row, "sha256", None)
    if _up_to_date(step, outs, runner.stamp(outs, params, sha)):
        return None
    return runner.run(path, outs, params, sha, None)


def _parked(folder: Path) -> Path:
    """Where :func:`_prune` keeps a step folder's outputs of videos not scheduled now."""
    return Path(paths.DATA) / ".parked" / folder.relative_to(paths.DATA)


def _prune(step: str, dataset: str, keep: set[str]) -> None:
    """Move per-video outputs of videos not scheduled now out of the step's folder (DVC keeps
    outs persistent, and its out must hold exactly the scheduled videos) into
    ``data/.parked/...``. A video that is only ``missing`` for a while (an unmounted disk) or
    cut by ``max_videos`` gets them back from there (:func:`_unpark`), so its work is not
    redone when it returns; the stamps still decide whether they are current."""
    for kind in _KINDS[step]:
        folder = _folder(kind, step, dataset)
        suffix = Path(paths.PATTERNS[kind]).suffix
        for f in folder.glob(f"*{suffix}"):
            if f.name.startswith("."):
                continue
            if f.name[: -len(suffix)] not in keep:
                parked = _parked(folder) / f.name
                parked.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, parked)


def _unpark(step: str, dataset: str, video_ids: set[str]) -> None:
    """Put parked outputs of scheduled videos back where a previous output is absent."""
    for kind in _KINDS[step]:
        folder = _folder(kind, step, dataset)
        parked_dir = _parked(folder)
        if not parked_dir.is_dir():
            continue
        suffix = Path(paths.PATTERNS[kind]).suffix
        for f in parked_dir.glob(f"*{suffix}"):
            if f.name[: -len(suffix)] in video_ids:
                if (folder / f.name).exists():
                    f.unlink()
                else:
                    folder.mkdir(parents=True, exist_ok=True)
                    os.replace(f, folder / f.name)

