"""The resiliency study: adversarial videos against the frame detectors, compressed, then
re-scored by the attacked detector, the other frame detectors (transfer) and the whole blink
path (real MediaPipe landmarks, EAR, every blink detector).

Sets. An *adversarial set* is ``(target, method, eps, variant)``: the ``attacks.labels``
videos (default: fake, targeted at "real") of the ``attacks.dataset`` test split, attacked
against the frame detector ``target`` (trained on ``attacks.models_trained_on``) with
``method`` at L-inf budget ``eps`` (0-255 levels), then compressed by ``variant`` (``none``:
the lossless video itself). The clean reference is the set ``(clean, none, 0, variant)``: the
same videos decoded and written losslessly, then compressed the same way, so every eps curve
starts from the clean detection rate under the same compression.

Files (:mod:`blinkbench.core.paths`):
``data/adversarial/{dataset}/{target}/{method}/eps{eps}/{variant}/{video}.mkv`` (+ ``.json``
attack or compression record), and ``data/study/{dataset}/{target}/{method}/eps{eps}/{variant}.json``
(the set's re-scoring: per video and per detector, with the blink path's intermediate
artifacts under ``.../eps{eps}/work/{variant}/``).

Scores. For each detector a video counts as *detected* when its score (blink detectors: the
fake probability; frame detectors: mean frame probability) is >= 0.5. For fake videos
the detection rate is the robust accuracy; the attack success rate is 1 - detection rate.
For frame detectors a video is also *fooled* when fewer than half its crops are called fake
(``frac_fake < 0.5``), as the issue defines video-level success. A blink detector gives no
verdict on a video with less than ``detectors.min_face_s`` of face (``insufficient``): such
videos are left out of its detection rate, which carries ``coverage`` (share of the set's
videos with a verdict) and ``n_insufficient`` beside it (:func:`summarise`; the report
recomputes the summary from the stored rows with the current params).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from blinkbench.core import io, paths
from blinkbench.spine import steps
from blinkbench.core.labels import LABELS
# Planning (which sets, which videos, which models) lives in experiments.plan, which the
# workflow's parse step imports without PyAV, pandas or the spine; re-exported here.
from blinkbench.experiments.plan import (
    CLEAN, defended_models, eps_name as _eps, selected_videos, set_name, study_sets as plan,
)  # fmt: skip

log = logging.getLogger(__name__)


def adv_path(params: dict, target: str, method: str, eps, variant: str, video: str) -> Path:
    return paths.path("adversarial", dataset=params["attacks"]["dataset"], target=target, method=method,
                      eps=_eps(eps), variant=variant, video=video)


def rescored_sets(params: dict) -> Iterator[tuple[str, str, str, str, Path]]:
    """``(target, method, eps, variant, path)`` of each planned set (:func:`plan`) whose
    re-scoring JSON (``path``, left to the caller to read) exists."""
    ds = params["attacks"]["dataset"]
    for t, m, e, v in plan(params):
        p = paths.path("study", dataset=ds, target=t, method=m, eps=e, variant=v)
        if p.exists():
            yield t, m, e, v, p


def attack_one(params: dict, target: str, method: str, eps, video_id: str, out: str | Path) -> dict:
    """One video of one set, lossless (variant ``none``). The attacked region is the square
    box the ``faces`` step crops for the frame detectors (``faces.crops.margin``), so the
    detector is attacked on what it sees. The clean reference (target ``clean``) is the
    decoded source written losslessly (an eps-0 attack is exactly that)."""
    from blinkbench.attacks.frame import attack_video

    a = params["attacks"]
    ds = a["dataset"]
    man = pd.read_parquet(paths.path("manifest", dataset=ds)).set_index("video_id")
    video = man.loc[video_id, "path"]
    track = paths.path("faces", dataset=ds, video=video_id)
    if target == CLEAN[0]:
        model, name, atk_params = _no_model(), "pgd", {"eps": 0.0}
    else:
        from blinkbench.detectors.frame import FrameDetector

        det = FrameDetector.load(paths.path("frame_model", detector=target, train=a["models_trained_on"]))
        model, name = det.network(), method
        atk_params = {**a.get("params", {}).get(method, {}), "eps": float(eps)}
    crops = params["faces"]["crops"]
    return attack_video(video, track, model, name, atk_params, out, batch_size=a["batch_size"],
                        seed=int(params["base"]["seed"]), square=True, size_step=1, margin=float(crops["margin"]),
                        crop_size=int(crops["size"]))


def _no_model():
    """A stand-in detector for the clean reference (eps 0: nothing is attacked): one
    constant logit 0 per crop, so the attack statistics stay well-formed."""
    import torch

    class NoModel(torch.nn.Module):
        def forward(self, x):
            return x.new_zeros(len(x))

    return NoModel()


def compress_one(src: str | Path, dst: str | Path, variant: str) -> dict:
    from blinkbench.video.compress import compress_video

    rec = compress_video(src, dst, variant)
    io.write_json(rec, Path(dst).with_suffix(".json"))
    return rec


def _models(params: dict) -> tuple[dict, dict]:
    """Trained blink and frame models the study re-scores with (missing ones are skipped)."""
    from blinkbench.detectors.blink import Detector
    from blinkbench.detectors.frame import FrameDetector
    from blinkbench.experiments.plan import detector_plan

    on = params["attacks"]["models_trained_on"]
    blink, frame = {}, {}
    for name in detector_plan(params)[0]:
        p = paths.path("blink_model", detector=name, train=on)
        try:
            blink[name] = Detector.load(p)
        except (FileNotFoundError, ValueError) as exc:  # missing, failed training, or refused file
            log.warning("blink detector %s not available: %s", name, exc)
    names = list(detector_plan(params, section="frame_detectors")[0]) + defended_models(params)
    for name in names:
        p = paths.path("frame_model", detector=name, train=on)
        try:
            frame[name] = FrameDetector.load(p)
        except (FileNotFoundError, ValueError) as exc:
            log.warning("frame detector %s not available: %s", name, exc)
    return blink, frame


def rescore_set(params: dict, target: str, method: str, eps, variant: str, out_json: str | Path) -> dict:
    """Run the blink path on every video of a set and score it with every trained model."""
    from blinkbench.detectors.blink.series import VideoSeries

    a = params["attacks"]
    ds = a["dataset"]
    sel = selected_videos(params)
    blink_models, frame_models = _models(params)
    work = paths.path("study_work", dataset=ds, target=target, method=method, eps=_eps(eps), variant=variant)
    t0 = time.perf_counter()
    rows = []
    for r in sel.itertuples(index=False):
        vid = r.video_id
        src = adv_path(params, target, method, eps, variant, vid)
        w = work / vid
        row: dict = {"video_id": vid, "label": r.label}
        run = steps.run_chain(src, params, w, crops=True, steps_meta=True)   # crops: the frame detectors'
        meta, summ = run["faces"], run["blinks"]
        clean = io.read_json(paths.path("blink_summary", dataset=ds, video=vid))
        row.update(status=summ.get("status", "error"), error=summ.get("error", ""), n_blinks=summ.get("n_blinks"),
                   blink_rate_per_min=summ.get("blink_rate_per_min"), ear_median=summ.get("ear_median"),
                   face_duration_s=summ.get("face_duration_s"),   # the blink verdict's evidence (min_face_s)
                   clean_n_blinks=clean.get("n_blinks"), clean_ear_median=clean.get("ear_median"))
        rec_p = src.with_suffix(".json")
        if rec_p.exists():
            rec = io.read_json(rec_p)
            for k in ("success_rate", "psnr_mean", "ssim_mean", "linf_max", "l2_mean", "l2_float_mean",
                      "linf_float_max", "queries_per_frame_mean"):
                if k in rec:
                    row[f"attack_{k}"] = rec[k]
        scores: dict = {}
        if row["status"] == "ok":
            v = VideoSeries.from_artifacts(vid, w / "ear.parquet", w / "summary.json", LABELS[r.label])
            for name, det in blink_models.items():
                scores[f"blink/{name}"] = float(det.predict_proba([v])[0])
        with np.load(w / "crops.npz") as z:
            crops = z["crops"]
        if meta.get("status") == "ok" and len(crops):
            for name, det in frame_models.items():
                fp = det.predict_frames(crops)
                scores[f"frame/{name}"] = float(np.mean(fp))
                scores[f"frame_frac/{name}"] = float(np.mean(fp >= 0.5))
        row["scores"] = scores
        rows.append(row)
    result = {"dataset": ds, "target": target, "method": method, "eps": float(eps), "variant": variant,
              "trained_on": a["models_trained_on"], "videos": rows,
              "summary": summarise(rows, float(params["detectors"]["min_face_s"]))}
    log.info("rescored %s (%d videos) in %.1f s", set_name(target, method, eps, variant), len(rows),
             time.perf_counter() - t0)
    io.write_json(result, out_json)
    return result


def insufficient(row: dict, min_face_s: float) -> bool:
    """True when a video shows less than ``min_face_s`` seconds of face (the blink
    detectors' ``insufficient`` verdict, ``detectors.min_face_s``). A row without a finite
    ``face_duration_s`` is not called insufficient here: it has a blink score only when the
    blink path ran, and an older study JSON may not record the duration."""
    face = row.get("face_duration_s")
    try:
        face = float(face)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(face) and face < float(min_face_s))


def summarise(rows: list[dict], min_face_s: float = 0.0) -> dict:
    """Per detector: videos scored, detection rate (score >= 0.5) and mean score; for frame
    detectors also the share of videos fooled at video level (frac of fake frames < 0.5);
    blink path: mean change in blink count and EAR median against the clean source.

    Blink detectors abstain on a video with less than ``min_face_s`` of face
    (``detectors.min_face_s``): its score is left out of ``n``, the detection rate and the
    mean score, and counted in ``n_insufficient``; ``coverage`` is the share of the set's
    videos with a verdict (``n / len(rows)``). Frame detectors do not abstain on face
    duration: every scored video counts (their ``coverage`` is the share scored)."""
    out: dict = {}
    keys = sorted({k for r in rows for k in r["scores"] if not k.startswith("frame_frac/")})
    for k in keys:
        blink = k.startswith("blink/")
        short = [blink and insufficient(r, min_face_s) for r in rows]
        s = np.array([r["scores"][k] for r, x in zip(rows, short) if k in r["scores"] and not x], float)
        d = {"n": int(len(s)), "detection_rate": float((s >= 0.5).mean()) if len(s) else None,
             "mean_score": float(s.mean()) if len(s) else None,
             "coverage": float(len(s) / len(rows)) if rows else None}
        if blink:
            d["n_insufficient"] = int(sum(short))
            d["min_face_s"] = float(min_face_s)
        if k.startswith("frame/"):
            f = np.array([r["scores"]["frame_frac/" + k[6:]] for r in rows if "frame_frac/" + k[6:] in r["scores"]])
            d["video_fooled_rate"] = float((f < 0.5).mean()) if len(f) else None
        out[k] = d
    ok = [r for r in rows if r.get("n_blinks") is not None and r.get("clean_n_blinks") is not None]
    out["blink_path"] = {
        "n": len(ok),
        "mean_blink_change": float(np.mean([r["n_blinks"] - r["clean_n_blinks"] for r in ok])) if ok else None,
        "mean_ear_median_change": float(np.nanmean([r["ear_median"] - r["clean_ear_median"] for r in ok]))
        if ok else None,
    }
    for k in ("attack_psnr_mean", "attack_ssim_mean", "attack_linf_max", "attack_l2_mean", "attack_success_rate",
              "attack_l2_float_mean", "attack_linf_float_max"):
        v = [r[k] for r in rows if r.get(k) is not None]
        out.setdefault("perceptual", {})[k.replace("attack_", "")] = float(np.mean(v)) if v else None
    # black-box attacks (NES): model queries per attacked frame, mean over the set's videos
    q = [r["attack_queries_per_frame_mean"] for r in rows if r.get("attack_queries_per_frame_mean") is not None]
    out["queries_per_frame"] = float(np.mean(q)) if q else None
    return out


def fooled_subset(attacked: list[dict], clean: list[dict], target: str, min_face_s: float = 0.0) -> dict:
    """The study's question asked where it has an answer: on the fake videos the attack
    actually took from its target, does each other detector still see the fake?

    ``attacked`` and ``clean`` are the per-video rows of an attacked set and of the clean set
    under the same compression. A fake is *detected clean* when the target calls at least
    half its clean crops fake, and *fooled* when, attacked, fewer than half are (seed 003's
    per-video verdict). The attack success rate over all fakes counts a fake the target
    missed before any attack as fooled; ``fooled_rate`` here is over the detected ones only.
    On the fooled videos, every other detector's detection rate (score >= 0.5) clean and
    attacked; blink detectors abstain below ``min_face_s`` of face as in :func:`summarise`
    (``n`` counts the verdicts, ``n_insufficient`` the abstentions)."""
    frac = "frame_frac/" + target
    by_id = {r["video_id"]: r for r in clean}
    fakes = [r for r in attacked if r.get("label", "fake") == "fake"]
    detected = [r for r in fakes if by_id.get(r["video_id"], {}).get("scores", {}).get(frac, -1.0) >= 0.5]
    fooled = [r for r in detected if r["scores"].get(frac, 1.0) < 0.5]
    out: dict = {"n_fakes": len(fakes), "n_detected_clean": len(detected), "n_fooled": len(fooled),
                 "fooled_rate": len(fooled) / len(detected) if detected else None,
                 "fooled_videos": [r["video_id"] for r in fooled], "detectors": {}}
    # each side summarised as any set is (summarise: same detection rule, same abstentions)
    sides = {"clean": summarise([by_id[r["video_id"]] for r in fooled], min_face_s),
             "attacked": summarise(fooled, min_face_s)}
    keys = sorted({k for side in sides.values() for k in side if "/" in k and k != "frame/" + target})
    for k in keys:
        out["detectors"][k] = {
            name: {f: side.get(k, {"n": 0, "detection_rate": None, "n_insufficient": 0})[f]
                   for f in ("n", "detection_rate", "n_insufficient") if k.startswith("blink/") or f != "n_insufficient"}
            for name, side in sides.items()}
    return out
