"""Adaptive post-training: make a trained CNN frame detector harder to fool without
retraining it from scratch.

The steps, one function each:

1. **Embedding** (:meth:`CNNFrameDetector.embed`, :meth:`nets.FrameNet.embed`): the
   network's penultimate features, what its head's first dense layer receives (Xception:
   the 2048-d pooled features; MesoNet: the flattened last conv block).
2. **Neighbourhood search** (:func:`neighbourhood`): every training crop ``x`` is attacked
   by an *anchor* attack towards the wrong class (Algorithm 1: PGD, Algorithm 2: DeepFool;
   the attacks of :mod:`blinkbench.attacks.frame`, called as they are), within an L-inf
   budget ``eps``. The candidates are points on the segment from ``x`` to the anchor ``a``,
   ``x + t (a - x)`` for ``t`` in ``fractions`` (``t = 1`` is the anchor itself). A candidate
   is kept, labelled with the clean label, when the cosine similarity of its embedding with
   the clean crop's is at least ``tau`` (:func:`keep_mask`; cosine
   ``<u, v> / (|u| |v| + 1e-8)``): it is adversarial in direction but, for the
   network's own representation, still the same crop.
3. **Post-training** (:func:`posttrain`): SGD (momentum 0.9, lr 1e-4) for exactly
   ``iterations`` steps (20) of ``batch_size`` (16) crops drawn, seeded, from the clean
   training crops plus the kept neighbours; BCE on the fake logit. Variants: ``frozen``
   (the backbone's weights fixed, only the head trains) and ``full`` (every weight trains).
   Batch-norm layers stay in eval mode in both: a 20-step fit cannot re-estimate their
   statistics (see ``cnn.PreciseBatchNorm``), so they keep the ones the model was trained
   with, and the frozen variant leaves the backbone bit-identical.
4. **Evaluation** (:func:`evaluate`): normal accuracy on clean test crops and videos (mean
   frame probability >= 0.5 = fake), and robust accuracy under FGSM at ``fgsm_eps`` (2/255),
   each crop attacked towards its wrong class, before and after. The record also says
   whether FGSM moved the undefended model at all (``fgsm_check``): a robust-accuracy gain
   means nothing if the attack did not work on the model before.

Direction of the attacks. The frame attacks aim at "real" (a negative fake logit). A real
crop is attacked through :class:`TowardsWrong`, which multiplies the logit by -1 for real
crops, so "real" for the wrapper is "fake" for the detector: every crop is pushed towards
its wrong class by the same attack code.

:func:`run_one` is the pipeline step (``blinkbench posttrain``, Snakemake rule and DVC stage
``posttrain``): it reads ``data/models/frame/<detector>/<dataset>.zip``, writes the
defended model as an ordinary frame model file (:mod:`blinkbench.detectors.modelfile`) at
``data/models/frame/<detector>-pt-<algorithm>-<variant>/<dataset>.zip`` (so the study can
attack or re-score it like any detector) and the evaluation JSON at
``data/evaluations/defence/<dataset>/<detector>/<algorithm>-<variant>.json``.
The network works on CUDA when torch sees a GPU (:mod:`blinkbench.core.devices`;
``BLINKBENCH_DEVICE=cpu`` forces the CPU, whose results are deterministic); every tensor
follows the network's device, and the defended network is kept and saved on the CPU.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from blinkbench.core import devices, io, paths
from . import ALGORITHMS, VARIANTS, defended_name, plan  # noqa: F401  (plan: re-exported)

log = logging.getLogger(__name__)

COS_EPS = 1e-8
BATCH = 32          # crops per attack / embedding batch

# The seed study's figures (Xception on FaceForensics++), reported beside ours.
REFERENCE = {"detector": "xception", "normal_before": 0.9076, "robust_before": 0.0105,
             "normal_after": [0.84, 0.86], "robust_after": [0.044, 0.095],
             "note": "seed 002: Xception, FGSM eps 2/255; after = the range over algorithms and variants"}


# ---------------------------------------------------------------------------- pieces

class TowardsWrong(nn.Module):
    """``net``'s fake logit times ``sign`` (+1 for fake crops, -1 for real ones): an attack
    aimed at "real" on this wrapper pushes every crop towards its wrong class."""

    def __init__(self, net: nn.Module, sign: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("sign", sign.float())
        # A new module starts in train mode, and the attacks restore the mode they found:
        # mirror the network's, or an attack would leave it (and its batch norm) training.
        self.train(net.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(-1) * self.sign


def _signs(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.where(np.asarray(labels) == 1, 1.0, -1.0).astype(np.float32))


def _to_tensor(crops: np.ndarray) -> torch.Tensor:
    from blinkbench.detectors.frame.cnn import to_tensor

    return to_tensor(crops)


def _to_hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().permute(0, 2, 3, 1).contiguous().cpu().numpy().astype(np.float32)


def cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity ``<u, v> / (|u| |v| + 1e-8)``."""
    u, v = u.flatten(1).double(), v.flatten(1).double()
    return (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1) + COS_EPS)


def keep_mask(clean: torch.Tensor, candidates: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Which candidates join the neighbourhood: ``cosine(clean, candidate) >= tau``, row by
    row (``clean`` and ``candidates`` both ``(n, d)``). Returns the mask and the cosines."""
    cos = cosine(clean, candidates)
    return cos >= float(tau), cos


def anchor_attack(algorithm: str, eps: float, params: dict | None = None):
    """The anchor attack of an algorithm (PGD or DeepFool from the attacks registry), held to
    the neighbourhood's L-inf radius ``eps``: DeepFool is a minimal-L2 attack whose default is
    unprojected (attacks.params.deepfool.project), so the anchor asks for ``project=True``
    unless ``params`` say otherwise."""
    import dataclasses

    from blinkbench.attacks.frame import REGISTRY, create

    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; known: {sorted(ALGORITHMS)}")
    fields = {f.name for f in dataclasses.fields(REGISTRY.get(algorithm))}
    defaults = {"project": True} if "project" in fields else {}
    return create(algorithm, **{**defaults, **(params or {}), "eps": float(eps)})


@dataclass
class Neighbourhood:
    crops: np.ndarray        # (m, H, W, 3) float32 in [0, 1]: the kept candidates
    label: np.ndarray        # (m,) int: their clean crops' labels
    source: np.ndarray       # (m,) int: index of the clean crop each came from
    fraction: np.ndarray     # (m,) float: t of x + t (a - x)
    cosine: np.ndarray       # (m,) float: cosine with the clean embedding
    n_candidates: int
    anchor_flipped: float    # share of anchors that the model classifies wrong

    def stats(self) -> dict:
        q = np.quantile(self.cosine, [0.0, 0.5]).tolist() if len(self.cosine) else [None, None]
        return {"n_candidates": int(self.n_candidates), "n_kept": int(len(self.label)),
                "kept_fraction": float(len(self.label) / self.n_candidates) if self.n_candidates else None,
                "kept_by_fraction": {f"{t:g}": int((self.fraction == t).sum()) for t in sorted(set(self.fraction.tolist()))},
                "cosine_min_kept": q[0], "cosine_median_kept": q[1], "anchor_flipped": self.anchor_flipped}


def neighbourhood(net: nn.Module, crops: np.ndarray, labels: np.ndarray, algorithm: str, *, tau: float = 0.9,
                  eps: float = 2.0, fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0),
                  attack_params: dict | None = None, seed: int = 0, batch_size: int = BATCH) -> Neighbourhood:
    """The kept adversarial neighbours of ``crops`` (uint8 RGB or float in [0, 1]; labels
    1 fake / 0 real) for one algorithm; see the module docstring."""
    if not 0 < len(fractions) or any(not 0 < t <= 1 for t in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {fractions}")
    atk = anchor_attack(algorithm, eps, attack_params)
    was_training = net.training
    net.eval()
    dev = devices.of(net)
    parts: dict[str, list] = {k: [] for k in ("crops", "label", "source", "fraction", "cosine")}
    n_cand, flipped = 0, 0
    try:
        for s in range(0, len(crops), batch_size):
            x = _to_tensor(crops[s:s + batch_size]).to(dev)
            y = np.asarray(labels[s:s + batch_size]).astype(int)
            sign = _signs(y).to(dev)
            wrapped = TowardsWrong(net, sign)
            a = atk(wrapped, x, seed=seed + s)
            with torch.no_grad():
                flipped += int((wrapped(a) < 0).sum())
                clean_emb = net.embed(x)
                for t in fractions:
                    c = (x + float(t) * (a - x)).clamp_(0.0, 1.0)
                    keep, cos = keep_mask(clean_emb, net.embed(c), tau)
                    keep, cos = keep.cpu(), cos.cpu()
                    n_cand += len(c)
                    idx = keep.nonzero().flatten().numpy()
                    if len(idx):
                        parts["crops"].append(_to_hwc(c[idx]))
                        parts["label"].append(y[idx])
                        parts["source"].append(idx + s)
                        parts["fraction"].append(np.full(len(idx), float(t)))
                        parts["cosine"].append(cos[idx].numpy())
    finally:
        net.train(was_training)
    h, w = (crops.shape[1], crops.shape[2]) if len(crops) else (0, 0)
    cat = lambda k, empty: np.concatenate(parts[k]) if parts[k] else empty  # noqa: E731
    return Neighbourhood(cat("crops", np.zeros((0, h, w, 3), np.float32)), cat("label", np.zeros(0, int)),
                         cat("source", np.zeros(0, int)), cat("fraction", np.zeros(0)), cat("cosine", np.zeros(0)),
                         n_cand, float(flipped / len(crops)) if len(crops) else 0.0)


def _bn_eval(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def posttrain(net: nn.Module, crops: np.ndarray, labels: np.ndarray, neighbours: Neighbourhood | None, *,
              variant: str = "full", lr: float = 1e-4, momentum: float = 0.9, iterations: int = 20,
              batch_size: int = 16, seed: int = 0) -> tuple[nn.Module, dict]:
    """A post-trained copy of ``net`` (the original is untouched) and a record of the fit:
    exactly ``iterations`` SGD steps on batches of the clean crops plus the neighbours."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if iterations < 0 or batch_size < 1:
        raise ValueError(f"need iterations >= 0 and batch_size >= 1, got {iterations}, {batch_size}")
    pool_x = [np.asarray(crops)]
    pool_y = [np.asarray(labels).astype(np.float32)]
    if neighbours is not None and len(neighbours.label):
        pool_x.append(neighbours.crops)
        pool_y.append(neighbours.label.astype(np.float32))
    n_clean = len(pool_x[0])
    dev = devices.of(net)
    n = n_clean + (len(pool_x[1]) if len(pool_x) > 1 else 0)
    if n == 0:
        raise ValueError("post-training needs at least one crop")
    net = copy.deepcopy(net)
    for p in net.parameters():
        p.requires_grad_(True)
    if variant == "frozen":
        for p in net.backbone.parameters():
            p.requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=float(lr), momentum=float(momentum))
    gen = np.random.default_rng(seed)
    order = np.zeros(0, int)
    losses = []

    def item(i: int) -> tuple[np.ndarray, float]:
        k = 0 if i < n_clean else 1
        j = i if k == 0 else i - n_clean
        return pool_x[k][j], float(pool_y[k][j])

    net.train()
    _bn_eval(net)          # statistics as trained; the frozen backbone stays bit-identical
    try:
        for _ in range(int(iterations)):
            if len(order) < batch_size:
                order = np.concatenate([order, gen.permutation(n)])
            idx, order = order[:batch_size], order[batch_size:]
            xs, ys = zip(*(item(int(i)) for i in idx))
            x = torch.cat([_to_tensor(np.asarray(c)[None]) for c in xs]).to(dev)
            y = torch.tensor(ys, dtype=torch.float32, device=dev)
            opt.zero_grad(set_to_none=True)
            loss = F.binary_cross_entropy_with_logits(net(x).reshape(-1), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(True)      # attacks need gradients
    info = {"steps": len(losses), "pool_clean": int(n_clean), "pool_neighbours": int(n - n_clean),
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "trained_parameters": int(sum(p.numel() for p in params))}
    return net, info


def _logits(net: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = BATCH) -> np.ndarray:
    out = [np.zeros(0)]
    dev = devices.of(net)
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            b = x[s:s + batch_size]
            b = b if isinstance(b, torch.Tensor) else _to_tensor(b)
            out.append(net(b.to(dev)).reshape(-1).double().cpu().numpy())
    return np.concatenate(out)


def evaluate(net: nn.Module, crops: np.ndarray, labels: np.ndarray, video_id: np.ndarray, *,
             fgsm_eps: float = 2.0, seed: int = 0, batch_size: int = BATCH) -> dict:
    """Normal and robust (FGSM at ``fgsm_eps``, every crop towards its wrong class) accuracy,
    on crops and on videos (mean frame probability >= 0.5 = fake)."""
    from blinkbench.attacks.frame import create

    labels = np.asarray(labels).astype(int)
    fgsm = create("fgsm", eps=float(fgsm_eps))
    net.eval()
    clean = _logits(net, crops, batch_size)
    dev = devices.of(net)
    adv_logits = []
    for s in range(0, len(crops), batch_size):
        x = _to_tensor(crops[s:s + batch_size]).to(dev)
        wrapped = TowardsWrong(net, _signs(labels[s:s + batch_size]).to(dev))
        adv_logits.append(_logits(net, fgsm(wrapped, x, seed=seed + s), batch_size))
    adv = np.concatenate(adv_logits) if adv_logits else np.zeros(0)
    sign = np.where(labels == 1, 1.0, -1.0)

    def acc(z: np.ndarray) -> tuple[float | None, float | None]:
        if not len(z):
            return None, None
        crop = float(((z > 0).astype(int) == labels).mean())
        prob = 1.0 / (1.0 + np.exp(-z))
        df = pd.DataFrame({"v": video_id, "p": prob, "y": labels}).groupby("v").agg(p=("p", "mean"), y=("y", "first"))
        return crop, float(((df["p"] >= 0.5).astype(int) == df["y"]).mean())

    normal_crops, normal_videos = acc(clean)
    robust_crops, robust_videos = acc(adv)
    correct = (clean > 0).astype(int) == labels
    shift = (adv - clean) * sign                      # < 0: towards the wrong class
    return {"n_crops": int(len(crops)), "n_videos": int(len(set(np.asarray(video_id).tolist()))),
            "fgsm_eps": float(fgsm_eps),
            "normal_acc_crops": normal_crops, "normal_acc_videos": normal_videos,
            "robust_acc_crops": robust_crops, "robust_acc_videos": robust_videos,
            "fgsm_flipped": float((correct & ((adv > 0).astype(int) != labels)).sum() / max(int(correct.sum()), 1)),
            "fgsm_mean_logit_shift": float(shift.mean()) if len(shift) else None}


def fgsm_check(before: dict) -> dict:
    """Did FGSM move the undefended model? (a robust-accuracy gain is only meaningful then)."""
    moved = (before["fgsm_mean_logit_shift"] is not None and before["fgsm_mean_logit_shift"] < 0
             and before["robust_acc_crops"] is not None and before["normal_acc_crops"] is not None
             and before["robust_acc_crops"] < before["normal_acc_crops"])
    return {"moved": bool(moved), "mean_logit_shift": before["fgsm_mean_logit_shift"],
            "flipped": before["fgsm_flipped"],
            "accuracy_drop": (before["normal_acc_crops"] - before["robust_acc_crops"])
            if before["robust_acc_crops"] is not None else None}


# ---------------------------------------------------------------------------- the step

def _subsample(cs, max_crops: int | None, seed: int):
    if max_crops is None or len(cs) <= max_crops:
        return cs
    from blinkbench.detectors.frame import CropSet

    keep = np.sort(np.random.default_rng(seed).choice(len(cs), size=int(max_crops), replace=False))
    return CropSet(cs.crops[keep], cs.video_id[keep], cs.label[keep], cs.frame[keep])


def _crops(dataset: str, split: str):
    from blinkbench.core.labels import LABELS
    from blinkbench.detectors.frame import CropSet

    man = pd.read_parquet(paths.path("manifest", dataset=dataset))
    man = man[(man["split"] == split) & man["label"].isin(list(LABELS))]
    return CropSet.from_manifest(dataset, man)


def defend(det, train, test, algorithm: str, variant: str, cfg: dict, seed: int = 0) -> tuple[Any, dict]:
    """The defended copy of a fitted CNN detector and its record (before/after evaluation,
    neighbourhood and fit statistics, timings), from CropSets ``train`` and ``test``."""
    if not hasattr(det, "embed"):
        raise ValueError(f"{det.name}: not a CNN detector (no embed()); post-training needs a network")
    nb, sgd, ev = cfg["neighbourhood"], cfg["sgd"], cfg["evaluate"]
    net = det.network().to(devices.name())     # CUDA when there is one (core.devices)
    train = _subsample(train, nb.get("max_crops"), seed)
    if len(set(train.label.tolist()) & {0, 1}) < 2:
        raise ValueError(f"post-training needs real and fake training crops; have labels {sorted(set(train.label.tolist()))}")
    t0 = time.perf_counter()
    before = evaluate(net, test.crops, test.label, test.video_id, fgsm_eps=ev["fgsm_eps"], seed=seed)
    t1 = time.perf_counter()
    neigh = neighbourhood(net, train.crops, train.label, algorithm, tau=cfg["tau"], eps=nb["eps"],
                          fractions=tuple(nb["fractions"]), attack_params=nb.get(algorithm) or {}, seed=seed)
    t2 = time.perf_counter()
    new_net, fit = posttrain(net, train.crops, train.label, neigh, variant=variant, lr=sgd["lr"],
                             momentum=sgd["momentum"], iterations=sgd["iterations"], batch_size=sgd["batch_size"],
                             seed=seed)
    t3 = time.perf_counter()
    after = evaluate(new_net, test.crops, test.label, test.video_id, fgsm_eps=ev["fgsm_eps"], seed=seed)
    t4 = time.perf_counter()
    defended = copy.copy(det)
    defended.net_ = new_net.cpu().eval()       # kept (and saved) on the CPU, as training does
    record = {"algorithm": algorithm, "algorithm_label": ALGORITHMS[algorithm], "variant": variant,
              "variant_label": VARIANTS[variant], "tau": float(cfg["tau"]),
              "n_train_crops": int(len(train)), "n_test_crops": int(len(test)),
              "neighbourhood": neigh.stats(), "fit": fit, "before": before, "after": after,
              "fgsm_check": fgsm_check(before),
              "seconds": {"evaluate_before": t1 - t0, "neighbourhood": t2 - t1, "sgd": t3 - t2, "evaluate_after": t4 - t3},
              "posttrain_crops_per_s": float(len(train) / (t3 - t1)) if t3 > t1 else None}
    defended.fit_info_ = {**getattr(det, "fit_info_", {}),
                          "defence": {k: record[k] for k in ("algorithm", "variant", "tau", "n_train_crops")}
                          | {"steps": fit["steps"], "n_neighbours": neigh.stats()["n_kept"]}}
    return defended, record


def run_one(params: dict, detector: str, algorithm: str, variant: str, out_model: str | Path | None = None,
            out_json: str | Path | None = None) -> dict:
    """The ``posttrain`` step for one (detector, algorithm, variant): never raises for bad
    input; a failure writes a model file recording why and a JSON with ``status: error``."""
    from blinkbench.detectors import modelfile
    from blinkbench.detectors.frame import FrameDetector

    cfg = params["defence"]
    ds = cfg["dataset"]
    seed = int(params["base"]["seed"])
    name = defended_name(detector, algorithm, variant)
    out_model = Path(out_model or paths.path("frame_model", detector=name, train=ds))
    out_json = Path(out_json or defence_path(ds, detector, algorithm, variant))
    res: dict = {"detector": detector, "defended": name, "dataset": ds, "algorithm": algorithm, "variant": variant,
                 "status": "ok", "error": "", "reference": REFERENCE,
                 "config": {k: cfg[k] for k in ("tau", "neighbourhood", "sgd", "evaluate")}}
    try:
        torch.manual_seed(seed)
        det = FrameDetector.load(paths.path("frame_model", detector=detector, train=ds))
        train, test = _crops(ds, "train"), _crops(ds, "test")
        if not len(test):
            raise ValueError(f"{ds}: no test crops to evaluate on")
        defended, record = defend(det, train, test, algorithm, variant, cfg, seed)
        res.update(record)
        defended.save(out_model)
        if not res["fgsm_check"]["moved"]:
            log.warning("%s: FGSM eps %s did not move the undefended model: robust accuracy shows nothing",
                        detector, cfg["evaluate"]["fgsm_eps"])
        log.info("%s: normal %.3f -> %.3f, robust %.3f -> %.3f (crops)", name, record["before"]["normal_acc_crops"],
                 record["after"]["normal_acc_crops"], record["before"]["robust_acc_crops"],
                 record["after"]["robust_acc_crops"])
    except Exception as exc:
        log.error("post-training %s failed: %s", name, exc)
        res.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        modelfile.save_failure(out_model, detector, res["error"], kind="frame")
    io.write_json(res, out_json)
    return res


def defence_path(dataset: str, detector: str, algorithm: str, variant: str) -> Path:
    return paths.path("defence", dataset=dataset, detector=detector, algorithm=algorithm, variant=variant)
