"""Attacks on the blink path itself, as workflow steps: EAR suppression (real videos keep
their open-eye EAR through their blinks) and injection (fake videos get a natural blink
pattern) on whole videos, and Landmark Breaker on face crops, with the implementations in
:mod:`blinkbench.attacks.blink`. Videos: the test split of ``blink_attacks.dataset``, real
ones for ``suppress`` and fake ones for ``inject``, at most ``max_videos`` per mode."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from blinkbench.core import io, paths
from blinkbench.experiments.plan import blink_attack_videos as videos  # planned in plan.py, re-exported

log = logging.getLogger(__name__)

LB_TABLES = ("white_box", "transfer", "compression", "ablation", "per_image", "images")


def _blink_models(params: dict) -> dict:
    """Paths of the trained blink models scored on every condition (the ones that exist)."""
    from blinkbench.experiments.plan import detector_plan

    on = params["blink_attacks"]["models_trained_on"]
    out = {}
    for name in detector_plan(params)[0]:
        p = paths.path("blink_model", detector=name, train=on)
        if p.exists():
            out[name] = str(p)
    return out


def ear_attack_one(params: dict, mode: str, video_id: str, out_json: str | Path) -> dict:
    from blinkbench.attacks.blink import run_ear_attack

    b = params["blink_attacks"]
    man = pd.read_parquet(paths.path("manifest", dataset=b["dataset"])).set_index("video_id")
    ear = {"seed": int(params["base"]["seed"]), **b["ear"]}
    res = run_ear_attack(man.loc[video_id, "path"], Path(out_json).parent, mode, ear, _blink_models(params),
                         pipeline={k: params[k] for k in ("faces", "landmarks", "blinks")})
    return res


def landmark_breaker(params: dict, out_json: str | Path) -> dict:
    """Landmark Breaker's paper-form tables on face crops of the dataset's test videos
    (``n_crops`` crops, one per video in turn); tables go to CSV beside the JSON."""
    from blinkbench.attacks.blink import run_landmark_breaker_eval

    b = params["blink_attacks"]
    cfg = dict(b["landmark_breaker"])
    n = int(cfg.pop("n_crops", 8))
    man = pd.read_parquet(paths.path("manifest", dataset=b["dataset"]))
    crops: dict[str, np.ndarray] = {}
    for r in man[(man["split"] == "test") & (man["status"] == "ok")].sort_values("video_id").itertuples():
        p = paths.path("crops", dataset=b["dataset"], video=r.video_id)
        if p.exists():
            with np.load(p) as z:
                if len(z["crops"]):
                    crops[r.video_id] = z["crops"][len(z["crops"]) // 2]
        if len(crops) >= n:
            break
    if params["landmarks"].get("pfld_model") and "pfld_model" not in cfg:
        cfg["pfld_model"] = params["landmarks"]["pfld_model"]
    out = Path(out_json)
    tables = run_landmark_breaker_eval(crops, {"seed": int(params["base"]["seed"]), **cfg}) if crops else {}
    result = {"dataset": b["dataset"], "n_crops": len(crops), "status": "ok" if crops else "no_crops", "tables": {}}
    for name in LB_TABLES:  # always all of them (empty without crops): stable DVC outs
        df = tables.get(name, pd.DataFrame())
        csv = out.with_name(f"landmark_breaker_{name}.csv")
        with io.atomic_path(csv) as tmp:
            df.to_csv(tmp, index=False, float_format="%.5g")
        result["tables"][name] = str(csv)
    io.write_json(result, out)
    return result
