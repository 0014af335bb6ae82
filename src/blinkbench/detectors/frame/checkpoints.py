"""Frame networks by name, with their weights: :func:`build` and :func:`load_checkpoint`.

Apart from :mod:`.nets` (the architectures) so that the Keras ``.h5`` reader
(:mod:`.mesonet_h5`), which needs the MesoNet classes, sits between the two without an
import circle: nets <- mesonet_h5 <- checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .nets import (_CLASSIFIER_PREFIXES, MESO_INPUT, PAPER_INPUT_SIZE, TIMM_ARCHS, FrameNet, Meso4, MesoInception4,
                   TimmNet)


def build(arch: str, input_size: int | None = None, hidden: int = 256, dropout: float = 0.5,
          checkpoint: str | Path | None = None) -> FrameNet:
    """The network called ``arch`` (a key of :data:`PAPER_INPUT_SIZE`); ``input_size`` None
    means the paper's size."""
    if arch in TIMM_ARCHS:
        net = TimmNet(arch, input_size, hidden=hidden, dropout=dropout)
    else:
        cls = {"meso4": Meso4, "mesoinception4": MesoInception4}.get(arch)
        if cls is None:
            raise ValueError(f"unknown architecture {arch!r}; known: {sorted(PAPER_INPUT_SIZE)}")
        net = cls(MESO_INPUT if input_size is None else input_size, dropout=dropout)
    if checkpoint is not None:
        load_checkpoint(net, checkpoint)
    return net


def load_checkpoint(net: FrameNet, path: str | Path) -> dict[str, Any]:
    """Load weights from ``path`` into ``net`` (see the module docstring for the formats).

    Returns a short report: ``kind`` (``keras_h5``, ``blinkbench`` or ``backbone``) and the
    ignored keys. Raises ``ValueError`` when the file does not cover the network."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix.lower() in (".h5", ".hdf5"):
        if not isinstance(net, (Meso4, MesoInception4)):
            raise ValueError(f"{path}: Keras .h5 weights are supported for MesoNet only, not {net.arch}")
        from .mesonet_h5 import load_keras_weights

        load_keras_weights(net, path)
        return {"kind": "keras_h5", "ignored": []}
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not sd:
        raise ValueError(f"{path}: no state dict found")
    sd = {k.removeprefix("module.").removeprefix("net."): v for k, v in sd.items()}
    own = net.state_dict()
    if any(k.startswith(("backbone.", "head.")) for k in sd):
        missing, unexpected = set(own) - set(sd), set(sd) - set(own)
        resized = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
        if missing or unexpected or resized:
            raise ValueError(f"{path}: not a state dict of this {net.arch} network (input_size "
                             f"{net.input_size}): missing {sorted(missing)[:5]}, unexpected "
                             f"{sorted(unexpected)[:5]}, other shapes {resized[:5]}")
        net.load_state_dict(sd, strict=True)
        return {"kind": "blinkbench", "ignored": []}
    if not isinstance(net, TimmNet):
        raise ValueError(f"{path}: a {net.arch} checkpoint must be the authors' .h5 or a blinkbench state dict")
    ignored = sorted(k for k in sd if k.startswith(_CLASSIFIER_PREFIXES))
    body = {k: v for k, v in sd.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    target = {k for k in net.backbone.state_dict() if not k.startswith(_CLASSIFIER_PREFIXES)}
    missing, unexpected = target - set(body), set(body) - target
    own = net.backbone.state_dict()
    unexpected |= {k for k in target & set(body) if tuple(own[k].shape) != tuple(body[k].shape)}
    if missing or unexpected:
        raise ValueError(f"{path}: does not match the {net.arch} backbone "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    net.backbone.load_state_dict(body, strict=False)
    return {"kind": "backbone", "ignored": ignored}
