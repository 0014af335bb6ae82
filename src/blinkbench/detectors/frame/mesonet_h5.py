"""MesoNet weights from the authors' Keras ``.h5`` files (read with h5py; no TensorFlow).

The authors (Afchar et al., WIFS 2018; github DariusAf/MesoNet) saved ``Meso4_DF.h5``,
``MesoInception_DF.h5`` etc. with Keras 2.1.5 ``save_weights``: one HDF5 group per layer,
listed in the file's ``layer_names`` attribute, each holding its weights. Conversion to the
PyTorch modules of :mod:`.nets`:

- conv kernels HWIO -> OIHW; dense kernels (in, out) -> (out, in);
- Flatten: Keras flattens channels-last tensors (h, w, c order); our MesoNets flatten in
  the same NHWC order (``_FlattenNHWC``), so the first dense kernel needs no row permutation;
- batch norm: gamma -> weight, beta -> bias, moving mean/variance -> running stats; epsilon
  is Keras' 1e-3 (set in the modules);
- layers are matched by type and by their creation index (the number in ``conv2d_7``),
  which follows the order of the authors' code; the file's ``layer_names`` order is
  topological and interleaves the inception branches, so it is not used for matching.

**Polarity.** The authors trained with Keras ``flow_from_directory`` over class folders
``df`` and ``real`` (sorted, so ``df`` = 0 and ``real`` = 1): their sigmoid output is the
probability of REAL. Our networks output a *fake* logit, so the last dense layer is negated
on loading (``sigmoid(-z) = 1 - sigmoid(z)``, exact). The tests print the per-video scores
of these weights on real FF++/DFDC clips (they were trained on the authors' own Deepfake
face set, so agreement there is an observation, not a guarantee).

``Meso4_realA_fakeC.pt`` is a different, third-party PyTorch Meso-4 layout (Honggu Liu's
port: bias-free convs, one batch-norm layer shared by conv1/conv2 and one by conv3/conv4,
two-way softmax, 224 px input). :func:`load_meso4_pt` maps it exactly (in eval mode) onto
our ``Meso4`` at input 224, but its file records neither the class order nor the input
normalisation, so both must be given by the caller.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .nets import Inception, Meso4, MesoInception4, _ConvBlock


MAX_H5_BYTES = 64 << 20      # both MesoNets hold well under 1 MB of weights
MAX_H5_NAMES = 10_000        # layer and weight names per attribute


def _names(attrs, key: str, path) -> list[str]:
    """A ``layer_names``/``weight_names`` attribute as strings, its size checked first."""
    if key not in attrs:
        return []
    n = attrs.get_id(key).shape
    if len(n) > 1 or (n and n[0] > MAX_H5_NAMES):
        raise ValueError(f"{path}: attribute {key} has shape {n}, not a list of at most {MAX_H5_NAMES} names")
    return [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(attrs[key])]


def _h5_datasets(h, path) -> dict[str, dict[str, "h5py.Dataset"]]:
    """``{layer: {weight: dataset}}`` of an open file, no array read yet. Each weight must be
    a float dataset in this file (no links or external storage to other files), and their declared sizes must add up to at most :data:`MAX_H5_BYTES`
    (a few-KB file can declare gigabytes of unwritten data)."""
    import h5py

    root = h["model_weights"] if "model_weights" in h else h      # full-model saves nest weights
    out: dict[str, dict[str, h5py.Dataset]] = {}
    total = 0
    for name in _names(root.attrs, "layer_names", path):
        g = root.get(name) if isinstance(root.get(name, getlink=True), h5py.HardLink) else None
        if not isinstance(g, h5py.Group):
            raise ValueError(f"{path}: layer {name!r} is not an HDF5 group")
        names = _names(g.attrs, "weight_names", path)
        if not names:
            continue
        layer = {}
        for n in names:
            ds = g.get(n) if isinstance(g.get(n, getlink=True), h5py.HardLink) else None   # no external links
            if not isinstance(ds, h5py.Dataset) or ds.external or ds.dtype.kind != "f" or ds.ndim > 4:
                raise ValueError(f"{path}: weight {name}/{n} is not a float array of at most 4 dimensions")
            total += int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize
            if total > MAX_H5_BYTES:
                raise ValueError(f"{path}: weights declare more than {MAX_H5_BYTES} bytes (at {name}/{n}, "
                                 f"shape {ds.shape}): not a MesoNet file")
            layer[n.split("/")[-1].split(":")[0]] = ds
        out[name] = layer
    return out


def read_h5(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {weight: array}}`` for the layers that hold weights, in file order; weight
    names lose their ``layer/`` prefix and ``:0`` suffix (``kernel``, ``moving_mean``...).
    Sizes are checked before any array is read (at most :data:`MAX_H5_BYTES` in all)."""
    import h5py

    with h5py.File(path, "r") as h:
        return {layer: {k: np.asarray(ds) for k, ds in ws.items()} for layer, ws in _h5_datasets(h, path).items()}


def _index(name: str) -> int:
    m = re.search(r"_(\d+)$", name)
    return int(m.group(1)) if m else 0


def _by_type(weights: dict[str, dict[str, np.ndarray]], kind: str) -> list[dict[str, np.ndarray]]:
    names = [n for n in weights if n.rsplit("_", 1)[0] == kind]
    return [weights[n] for n in sorted(names, key=_index)]


def _set(param: torch.Tensor, ds, what: str, perm: tuple[int, ...] | None = None, sign: float = 1.0) -> None:
    """Copy Keras weight ``ds`` (an h5py dataset or array), transposed by ``perm``, into
    ``param``; its shape is checked before it is read."""
    shape = tuple(ds.shape)
    ours = shape if perm is None else tuple(shape[i] for i in perm) if len(shape) == len(perm) else None
    if ours != tuple(param.shape):
        raise ValueError(f"{what}: Keras shape {shape} does not fit {tuple(param.shape)}")
    value = np.asarray(ds, dtype=np.float32)
    if perm is not None:
        value = value.transpose(perm)
    value = torch.from_numpy(np.ascontiguousarray(sign * value, dtype=np.float32))
    with torch.no_grad():
        param.copy_(value)


def _weight(w: dict, key: str, what: str):
    if key not in w:
        raise ValueError(f"{what}: no {key!r} weight (has {sorted(w)})")
    return w[key]


def _conv(m: nn.Conv2d, w: dict, what: str) -> None:
    _set(m.weight, _weight(w, "kernel", what), what + ".kernel", (3, 2, 0, 1))       # HWIO -> OIHW
    _set(m.bias, _weight(w, "bias", what), what + ".bias")


def _bn(m: nn.BatchNorm2d, w: dict, what: str) -> None:
    _set(m.weight, _weight(w, "gamma", what), what + ".gamma")
    _set(m.bias, _weight(w, "beta", what), what + ".beta")
    _set(m.running_mean, _weight(w, "moving_mean", what), what + ".moving_mean")
    _set(m.running_var, _weight(w, "moving_variance", what), what + ".moving_variance")


def _dense(m: nn.Linear, w: dict, what: str, sign: float = 1.0) -> None:
    _set(m.weight, _weight(w, "kernel", what), what + ".kernel", (1, 0), sign)
    _set(m.bias, _weight(w, "bias", what), what + ".bias", None, sign)


def _inception_convs(block: Inception) -> list[nn.Conv2d]:
    """Convs of one inception block in the authors' creation order (x1, x2a, x2b, x3a, ...)."""
    return [m for br in (block.b1, block.b2, block.b3, block.b4) for m in br if isinstance(m, nn.Conv2d)]


def load_keras_weights(net: Meso4 | MesoInception4, path: str | Path) -> dict:
    """Copy the authors' Keras weights into ``net`` (which must use input_size 256).

    Every weight in the file is consumed and every parameter and batch-norm statistic of
    ``net`` is set; otherwise ``ValueError``. Layer counts and every array's shape are
    checked against ``net`` before that array is read. Returns counts for the record."""
    import h5py

    if net.input_size != 256:
        raise ValueError(f"the authors' MesoNet weights need input_size 256, got {net.input_size}")
    with h5py.File(path, "r") as h:
        return _load_keras(net, _h5_datasets(h, path), path)


def _load_keras(net: Meso4 | MesoInception4, weights: dict, path) -> dict:
    convs, bns, denses = _by_type(weights, "conv2d"), _by_type(weights, "batch_normalization"), _by_type(weights, "dense")
    if isinstance(net, MesoInception4):
        inc1, inc2 = net.backbone[0][0], net.backbone[1][0]
        our_convs = _inception_convs(inc1) + _inception_convs(inc2) + [net.backbone[2][0], net.backbone[3][0]]
        our_bns = [net.backbone[0][1], net.backbone[1][1], net.backbone[2][2], net.backbone[3][2]]
    else:
        blocks = list(net.backbone)
        assert all(isinstance(b, _ConvBlock) for b in blocks)
        our_convs = [b[0] for b in blocks]
        our_bns = [b[2] for b in blocks]
    our_denses = [net.head[2], net.head[5]]
    found = (len(convs), len(bns), len(denses))
    wanted = (len(our_convs), len(our_bns), len(our_denses))
    if found != wanted or sum(found) != len(weights):
        raise ValueError(f"{path}: {found} conv/bn/dense layers (+{len(weights) - sum(found)} others) "
                         f"do not match {type(net).__name__} {wanted}")
    for i, (m, w) in enumerate(zip(our_convs, convs)):
        _conv(m, w, f"conv{i}")
    for i, (m, w) in enumerate(zip(our_bns, bns)):
        _bn(m, w, f"bn{i}")
    _dense(our_denses[0], denses[0], "dense0")
    _dense(our_denses[1], denses[1], "dense1", sign=-1.0)          # P(real) logit -> fake logit
    n_arrays = sum(len(w) for w in weights.values())
    n_set = 2 * len(our_convs) + 4 * len(our_bns) + 2 * len(our_denses)
    n_tensors = sum(1 for part in (net.backbone, net.head) for k in part.state_dict()
                    if not k.endswith("num_batches_tracked"))
    if n_arrays != n_set or n_set != n_tensors:
        raise ValueError(f"{path}: {n_arrays} Keras arrays, {n_set} copied, {n_tensors} network tensors")
    return {"layers": len(weights), "arrays": n_arrays, "parameters": sum(p.numel() for p in net.parameters())}


def meso4_from_h5(path: str | Path) -> Meso4:
    """``Meso4`` (input 256, eval mode) with the authors' Keras weights."""
    net = Meso4(256)
    load_keras_weights(net, path)
    return net.eval()


def mesoinception4_from_h5(path: str | Path) -> MesoInception4:
    """``MesoInception4`` (input 256, eval mode) with the authors' Keras weights."""
    net = MesoInception4(256)
    load_keras_weights(net, path)
    return net.eval()


def load_meso4_pt(path: str | Path, *, fake_index: int, mean: Sequence[float] = (0.0, 0.0, 0.0),
                  std: Sequence[float] = (1.0, 1.0, 1.0)) -> Meso4:
    """Our ``Meso4`` equal, in eval mode, to a Honggu-Liu-layout PyTorch Meso-4 state dict
    (``conv1-4`` without bias, shared ``bn1`` (8) / ``bn2`` (16), ``fc1``, ``fc2`` with 2 classes).

    The shared batch norms are copied into both of our per-layer ones (identical in eval
    mode), conv biases are zero, ``fc1``'s columns are reordered from NCHW to our NHWC
    flatten, and the fake logit is ``z[fake_index] - z[1 - fake_index]`` (a two-way softmax
    is the sigmoid of that difference). The input size follows from ``fc1`` (784 = 16*7*7:
    224 px). ``fake_index`` and the input ``mean``/``std`` the model was trained with are
    not in the file: the caller must know them."""
    if fake_index not in (0, 1):
        raise ValueError(f"fake_index must be 0 or 1, got {fake_index}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    sd = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    need = {"conv1.weight", "conv2.weight", "conv3.weight", "conv4.weight", "bn1.weight", "bn2.weight",
            "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    if not isinstance(sd, dict) or not need <= set(sd):
        raise ValueError(f"{path}: not a Meso4 state dict with keys {sorted(need)}")
    extra = {k for k in sd if not k.startswith(("conv", "bn", "fc"))}
    if extra or any(f"conv{i}.bias" in sd for i in range(1, 5)) or sd["fc2.weight"].shape[0] != 2:
        raise ValueError(f"{path}: layout differs from the shared-BN, bias-free, 2-class Meso-4")
    grid2 = sd["fc1.weight"].shape[1] // 16
    grid = int(round(grid2 ** 0.5))
    if grid * grid != grid2:
        raise ValueError(f"{path}: fc1 input {sd['fc1.weight'].shape[1]} is not 16 x a square")
    net = Meso4(grid * 32)
    net.mean.copy_(torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
    net.std.copy_(torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
    # their layers stay in NCHW with floor pooling; at a multiple of 32 px that equals ours
    shared_bn = {0: "bn1", 1: "bn1", 2: "bn2", 3: "bn2"}
    with torch.no_grad():
        for i, block in enumerate(net.backbone):
            block[0].weight.copy_(sd[f"conv{i + 1}.weight"])
            block[0].bias.zero_()
            bn, src = block[2], shared_bn[i]
            bn.weight.copy_(sd[f"{src}.weight"])
            bn.bias.copy_(sd[f"{src}.bias"])
            bn.running_mean.copy_(sd[f"{src}.running_mean"])
            bn.running_var.copy_(sd[f"{src}.running_var"])
            bn.eps = 1e-5                                            # PyTorch default, theirs
        w1 = sd["fc1.weight"].view(16, 16, grid, grid).permute(0, 2, 3, 1).reshape(16, -1)   # (c,h,w) -> (h,w,c)
        net.head[2].weight.copy_(w1)
        net.head[2].bias.copy_(sd["fc1.bias"])
        w2, b2 = sd["fc2.weight"], sd["fc2.bias"]
        net.head[5].weight.copy_((w2[fake_index] - w2[1 - fake_index]).view(1, 16))
        net.head[5].bias.copy_((b2[fake_index] - b2[1 - fake_index]).view(1))
    return net.eval()
