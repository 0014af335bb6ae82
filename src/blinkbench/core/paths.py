"""Where every artifact lives: one definition, used by the CLI, Snakemake rules and DVC.

Per-video artifacts are ``data/<step>/<dataset>/<video>.<ext>``; logs and job timings sit
beside them under ``logs/<step>/<dataset>/<video>.{log,tsv}``.
"""

from __future__ import annotations

from pathlib import Path

DATA = "data"

PATTERNS = {
    "manifest": DATA + "/manifests/{dataset}.parquet",
    "faces": DATA + "/faces/{dataset}/{video}.parquet",
    "crops": DATA + "/crops/{dataset}/{video}.npz",
    # uncompressed copy of a crop file, read lazily by the frame detectors (detectors/frame/cropstore.py);
    # a cache, not an artifact: outside the DVC-tracked crops folder, rewritten when the crop file is newer
    "crop_cache": DATA + "/cache/crops/{dataset}/{video}.npy",
    "landmarks": DATA + "/landmarks/{dataset}/{video}.parquet",
    "ear": DATA + "/ear/{dataset}/{video}.parquet",
    "blinks": DATA + "/blinks/{dataset}/{video}.parquet",
    "blink_summary": DATA + "/blinks/{dataset}/{video}.json",
    "dataset_summary": DATA + "/reports/{dataset}/videos.csv",
    # blink detectors: one model per (detector, training dataset), one evaluation per test dataset
    "blink_model": DATA + "/models/blink/{detector}/{train}.zip",
    "blink_model_info": DATA + "/models/blink/{detector}/{train}.json",
    "blink_scores": DATA + "/evaluations/blink/{detector}/{train}/{test}.parquet",
    "blink_eval": DATA + "/evaluations/blink/{detector}/{train}/{test}.json",
    "blink_roc": DATA + "/evaluations/blink/{detector}/{train}/{test}.roc.csv",
    # best-of selection per training dataset (detectors.best_of; blinkbench.experiments.selection)
    "blink_selection": DATA + "/selection/blink/{train}.json",
    # frame detectors: the same layout under models/frame and evaluations/frame
    "frame_model": DATA + "/models/frame/{detector}/{train}.zip",
    "frame_model_info": DATA + "/models/frame/{detector}/{train}.json",
    "frame_scores": DATA + "/evaluations/frame/{detector}/{train}/{test}.parquet",
    "frame_eval": DATA + "/evaluations/frame/{detector}/{train}/{test}.json",
    "frame_roc": DATA + "/evaluations/frame/{detector}/{train}/{test}.roc.csv",
    # resiliency study (see blinkbench.experiments.study)
    "adversarial": DATA + "/adversarial/{dataset}/{target}/{method}/eps{eps}/{variant}/{video}.mkv",
    "study": DATA + "/study/{dataset}/{target}/{method}/eps{eps}/{variant}.json",
    "study_work": DATA + "/study/{dataset}/{target}/{method}/eps{eps}/work/{variant}",
    # attacks on the blink path (see blinkbench.experiments.blink_study)
    "ear_attack": DATA + "/blink_attacks/{dataset}/{mode}/{video}/result.json",
    "landmark_breaker": DATA + "/blink_attacks/{dataset}/landmark_breaker.json",
    # post-training defence (blinkbench.defence.posttrain); the defended model itself is a
    # frame_model named <detector>-pt-<algorithm>-<variant>
    # under evaluations: the report depends on data/evaluations, so DVC orders every posttrain
    # stage before it, and an empty defence matrix leaves no missing dependency behind
    "defence": DATA + "/evaluations/defence/{dataset}/{detector}/{algorithm}-{variant}.json",
    "report": DATA + "/reports/index.html",
    "metrics": DATA + "/reports/metrics.json",
}

# Per-dataset folders holding one step's per-video artifacts (the DVC outs).
STEP_DIRS = {
    "faces": DATA + "/faces/{dataset}",
    "crops": DATA + "/crops/{dataset}",
    "landmarks": DATA + "/landmarks/{dataset}",
    "ear": DATA + "/ear/{dataset}",
    "blinks": DATA + "/blinks/{dataset}",
}


def path(kind: str, **wildcards: str) -> Path:
    return Path(PATTERNS[kind].format(**wildcards))


def log(step: str, ext: str = "log", **wildcards: str) -> str:
    parts = [wildcards[k] for k in ("dataset", "video") if k in wildcards]
    return "/".join(["logs", step, *parts]) + f".{ext}"
