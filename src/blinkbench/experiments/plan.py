"""What the experiments run on: the detectors enabled and the datasets they train and test
on, the study's attacked sets, the videos each attack takes, the defended models.

Light on purpose: the workflow's parse step plans every job from here, so nothing at the top
imports PyAV, pandas or the spine (``snakemake -n`` paid a second for them); the two
functions that read a manifest import pandas when called."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkbench.core import paths
from blinkbench.core.config import ParamsError

if TYPE_CHECKING:
    import pandas as pd

CLEAN = ("clean", "none", 0)     # (target, method, eps) of the clean reference
MODE_LABEL = {"suppress": "real", "inject": "fake"}   # blink attack -> label of the videos it takes


def detector_plan(params: dict, check_registry: bool = False, section: str = "detectors") -> tuple[list[str], list[str], list[str]]:
    """(enabled detectors, training datasets, test datasets) of ``section`` (``detectors``:
    blink-based, ``frame_detectors``: frame-level) with ``null`` resolved to every configured
    dataset. Raises ParamsError for a dataset that is not configured and, with
    ``check_registry``, for an unknown detector name or hyper-parameter (this imports the
    detector modules, so only the workflow's parse step asks for it)."""
    d = params[section]
    names = sorted(params["datasets"])
    train = list(d["train_on"]) if d.get("train_on") is not None else names
    test = list(d["test_on"]) if d.get("test_on") is not None else names
    for key, lst in (("train_on", train), ("test_on", test)):
        bad = [x for x in lst if x not in params["datasets"]]
        if bad:
            raise ParamsError(f"invalid parameter at '{section}.{key}': {bad} not in datasets ({names})")
    if check_registry:
        if section == "detectors":
            from blinkbench.detectors.blink import available, create

            make = lambda name, hyper: create(name, series=d["series"], **hyper)  # noqa: E731
        else:
            from blinkbench.detectors.frame import available, create

            make = lambda name, hyper: create(name, **hyper)  # noqa: E731
        known = available()
        for key, lst in (("enabled", d["enabled"]), ("hyper", list(d.get("hyper", {})))):
            bad = [x for x in lst if x not in known]
            if bad:
                raise ParamsError(f"invalid parameter at '{section}.{key}': unknown detector(s) {bad}; known: {known}")
        for name, hyper in d.get("hyper", {}).items():
            try:
                make(name, hyper)
            except (TypeError, ValueError) as exc:
                raise ParamsError(f"invalid parameter at '{section}.hyper.{name}': {exc}") from None
    return list(d["enabled"]), train, test


def eps_name(eps) -> str:
    """eps as it is spelled in set names and paths: ``2``, ``0.5``."""
    e = float(eps)
    return str(int(e)) if e.is_integer() else str(e)


def set_name(target: str, method: str, eps: float | int, variant: str) -> str:
    return f"{target}/{method}/eps{eps_name(eps)}/{variant}"


def study_sets(params: dict) -> list[tuple[str, str, str, str]]:
    """Every (target, method, eps, variant) set of the study, the clean reference first."""
    a = params["attacks"]
    variants = ["none", *a["compressions"]]
    sets = [(*CLEAN[:2], eps_name(0), v) for v in variants]
    for t in a["targets"]:
        for m in a["methods"]:
            for e in a["eps"]:
                sets += [(t, m, eps_name(e), v) for v in variants]
    return sets


def _usable_test_rows(dataset: str, labels) -> "pd.DataFrame":
    """Rows of ``dataset``'s manifest in the test split, with a label in ``labels`` and
    status ok, by video id (the videos an attack may take)."""
    import pandas as pd

    man = pd.read_parquet(paths.path("manifest", dataset=dataset))
    sel = man[(man["split"] == "test") & man["label"].isin(list(labels)) & (man["status"] == "ok")]
    return sel.sort_values("video_id")


def selected_videos(params: dict) -> "pd.DataFrame":
    """Rows of the source manifest the study attacks: test split, labels from params, ok."""
    a = params["attacks"]
    return _usable_test_rows(a["dataset"], a["labels"]).reset_index(drop=True)


def blink_attack_videos(params: dict, mode: str) -> "pd.DataFrame":
    """Rows of the manifest a blink attack (``suppress``: real videos, ``inject``: fakes) takes."""
    b = params["blink_attacks"]
    sel = _usable_test_rows(b["dataset"], [MODE_LABEL[mode]])
    return sel.head(b["max_videos"]) if b["max_videos"] else sel


def defended_models(params: dict) -> list[str]:
    """Post-trained models (blinkbench.defence) made from models trained on
    ``attacks.models_trained_on``: they re-score every set too (transfer from the undefended
    detector's attacks), and may be attack targets themselves."""
    from blinkbench.defence import defended_name, plan

    if params["defence"]["dataset"] != params["attacks"]["models_trained_on"]:
        return []
    return [defended_name(*k) for k in plan(params)]
