"""Which device the torch parts (training, attacks, post-training, the Face Mesh port) run
on: CUDA when there is one, else the CPU.

``BLINKBENCH_DEVICE`` overrides the choice: ``cpu`` forces the CPU (on a GPU machine, to get
the CPU results bit for bit: the CPU path is deterministic, a GPU's reductions need not be),
``cuda`` insists on a GPU (an error without one), ``auto`` (the default) picks. torch is
imported only when a device is asked for, so this module costs nothing to import."""

from __future__ import annotations

import os

ENV = "BLINKBENCH_DEVICE"
CHOICES = ("auto", "cpu", "cuda")


def requested(value: str | None = None) -> str:
    """``value``, else ``$BLINKBENCH_DEVICE``, else ``auto`` (checked, lower case)."""
    req = (value or os.environ.get(ENV) or "auto").strip().lower()
    if req not in CHOICES:
        raise ValueError(f"device must be one of {CHOICES} (argument or ${ENV}), got {req!r}")
    return req


def name(value: str | None = None) -> str:
    """The torch device to use: ``"cuda"`` or ``"cpu"``."""
    req = requested(value)
    if req == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if req == "cuda":
        raise RuntimeError(f"{ENV}=cuda but torch sees no CUDA device")
    return "cpu"


def accelerator(value: str | None = None) -> str:
    """Lightning's ``accelerator``: ``"auto"`` (a GPU when there is one), ``"cpu"`` when
    forced, ``"gpu"`` when a GPU is required."""
    req = requested(value)
    return {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}[req]


def of(module, default: str = "cpu"):
    """The device of ``module``'s first parameter (or buffer); ``default`` for a module
    with neither (a stand-in that follows its input)."""
    import torch

    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device(default)
