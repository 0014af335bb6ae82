"""Defences of the frame detectors. :mod:`.posttrain`: adaptive post-training (Algorithm 1,
PGD anchor; Algorithm 2, DeepFool anchor) of a trained CNN detector on its training crops
plus their adversarial neighbourhood.

    from blinkbench.defence import plan, posttrain
    for detector, algorithm, variant in plan(params):
        posttrain.run_one(params, detector, algorithm, variant)

This module holds only names and the plan (no torch), so Snakemake can plan at parse time.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

ALGORITHMS = {"pgd": "Algorithm 1 (PGD anchor)", "deepfool": "Algorithm 2 (DeepFool anchor)"}
VARIANTS = {"frozen": "backbone frozen", "full": "backbone not frozen"}
CNN_DETECTORS = ("resnet50", "vgg19", "xception", "efficientnet_b4", "meso4", "mesoinception4")


def defended_name(detector: str, algorithm: str, variant: str) -> str:
    """The defended model's name: its folder under ``data/models/frame/``."""
    if algorithm not in ALGORITHMS or variant not in VARIANTS:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)} and variant one of {sorted(VARIANTS)}; "
                         f"got {algorithm!r}, {variant!r}")
    return f"{detector}-pt-{algorithm}-{variant}"


def skipped(params: dict) -> dict[str, str]:
    """``defence.detectors`` that :func:`plan` leaves out, and why: no model of them is
    trained on ``defence.dataset`` in this configuration (not enabled, or that dataset not
    in ``frame_detectors.train_on``), or not a CNN."""
    d, fd = params["defence"], params["frame_detectors"]
    train_on = fd.get("train_on")
    train_on = sorted(params["datasets"]) if train_on is None else train_on
    out = {}
    for det in d["detectors"]:
        if det not in CNN_DETECTORS:
            out[det] = "not a CNN detector"
        elif det not in fd["enabled"]:
            out[det] = "not in frame_detectors.enabled"
        elif d["dataset"] not in train_on:
            out[det] = f"frame detectors are not trained on {d['dataset']!r}"
    return out


def plan(params: dict) -> list[tuple[str, str, str]]:
    """Every (detector, algorithm, variant) of the ``defence`` section whose model the
    configuration trains (none when disabled); the others are in :func:`skipped`. DVC's
    matrix reads ``defence.detectors`` literally: list only trained CNN detectors there."""
    d = params["defence"]
    if not d["enabled"]:
        return []
    skip = skipped(params)
    return [(det, a, v) for det in d["detectors"] if det not in skip for a in d["algorithms"] for v in d["variants"]]
