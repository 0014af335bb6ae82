"""The CNN frame detectors: ResNet50, VGG19, Xception, EfficientNet-B4 and MesoNet on face crops.

The pieces, each with one job:

- the **network** is a plain ``nn.Module`` from :mod:`.nets` ([0, 1] RGB crops in, one fake
  logit out; resizing and normalisation inside), reachable with
  :meth:`CNNFrameDetector.network` for the attacks (foolbox, bounds (0, 1)) and export;
- :class:`FrameClassifier` (``LightningModule``) wraps it: BCE-with-logits (optionally
  class-balanced), Adam or AdamW, and logs ``train_loss``, ``train_acc``, ``val_loss``,
  ``val_acc`` and ``val_auc`` (the latter only when the validation crops hold both classes);
- :class:`CropDataModule` owns the crops: the training CropSet with the field's
  augmentations (:func:`augment`), the validation CropSet as is;
- :class:`CNNFrameDetector` builds the ``Trainer`` only inside ``fit``: seeded
  (``lightning.seed_everything``), ``deterministic=True``, CPU, no logger, no progress bar,
  no checkpoint files (its root is a temporary folder); early stopping on the validation
  CropSet's loss (never on test data), and the weights of the best validation epoch are
  kept in memory. Without a validation set it trains ``epochs`` and keeps the last weights.

Input sizes. The paper sizes are 224 (ResNet50, VGG19), 299 (Xception), 380
(EfficientNet-B4) and 256 (MesoNet). Training those on a CPU is slow (see
``benchmarks/bench_frame_cnns.py``), so the default ``input_size`` of the large networks is
smaller (:data:`CPU_INPUT_SIZE`); set ``input_size`` to :data:`nets.PAPER_INPUT_SIZE` values
to follow the papers. Crops are resized inside the network, so the crop files, the attacks'
pixel space and the predictions' interface do not change with it.

A fitted detector pickles its network as a state dict (numpy arrays) plus the arguments
that build it (``net_args_``); no Trainer, DataModule or optimiser is stored, and a loaded
detector predicts exactly what it did before saving.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from typing import Any, ClassVar

import cv2
import lightning
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from . import checkpoints, nets
from blinkbench.detectors.training import BinaryLogitModule, KeepBest, PicklesNetAsWeights, training_scope
from .base import CropSet, FrameDetector, register

PREDICT_BATCH = 32

# Default input sizes for CPU training (paper sizes in nets.PAPER_INPUT_SIZE).
CPU_INPUT_SIZE = {"resnet50": 160, "vgg19": 128, "xception": 160, "efficientnet_b4": 160,
                  "meso4": 256, "mesoinception4": 256}


# ---------------------------------------------------------------------------- data

AUGMENT = {
    "flip_p": 0.5,                       # horizontal flip
    "color_p": 0.5,                      # brightness / contrast jitter
    "brightness": 0.1,                   # +- shift, fraction of the range
    "contrast": 0.2,                     # x (1 +- contrast)
    "blur_p": 0.2,                       # Gaussian blur
    "blur_sigma": (0.3, 1.5),            # pixels of the crop
    "jpeg_p": 0.5,                       # JPEG re-compression (last: as a re-upload would)
    "jpeg_quality": (40, 95),
}


def augment(img: np.ndarray, rng: np.random.Generator, cfg: dict = AUGMENT) -> np.ndarray:
    """One training crop (HxWx3 uint8 RGB) with random flip, brightness/contrast, Gaussian
    blur and JPEG re-compression (OpenCV), each with its own probability in ``cfg``."""
    out = img
    if rng.random() < cfg["flip_p"]:
        out = out[:, ::-1]
    if rng.random() < cfg["color_p"]:
        a = 1.0 + rng.uniform(-cfg["contrast"], cfg["contrast"])
        b = 255.0 * rng.uniform(-cfg["brightness"], cfg["brightness"])
        mean = float(out.mean())
        out = np.clip((out.astype(np.float32) - mean) * a + mean + b, 0, 255).astype(np.uint8)
    if rng.random() < cfg["blur_p"]:
        out = cv2.GaussianBlur(np.ascontiguousarray(out), (0, 0), float(rng.uniform(*cfg["blur_sigma"])))
    if rng.random() < cfg["jpeg_p"]:
        q = int(rng.integers(cfg["jpeg_quality"][0], cfg["jpeg_quality"][1] + 1))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(out)


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """Crops ``(n, H, W, 3)`` (uint8, or float in [0, 1]) as the networks' ``(n, 3, H, W)``
    float32 input in [0, 1]."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected crops (n, H, W, 3), got shape {crops.shape}")
    if crops.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    elif np.issubdtype(crops.dtype, np.floating):
        if crops.size and (not np.isfinite(crops).all() or crops.min() < 0 or crops.max() > 1):
            raise ValueError("float crops must be finite and in [0, 1]")
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).permute(0, 3, 1, 2)
    else:
        raise ValueError(f"crops must be uint8 or float in [0, 1], got {crops.dtype}")
    return x.contiguous()


class CropDataset(Dataset):
    """Labelled crops; with ``augment`` each access draws its augmentation from one seeded
    generator, so a run (single-process loading, seeded shuffling) is reproducible."""

    def __init__(self, crops: np.ndarray, labels: np.ndarray, augment: bool = False, seed: int = 0):
        self.crops, self.labels = crops, np.asarray(labels, dtype=np.float32)
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int):
        img = self.crops[i]
        if self.augment:
            img = augment(img, self.rng)
        return to_tensor(img[None])[0], torch.tensor(self.labels[i])


def _labelled(cs: CropSet, what: str) -> CropSet:
    keep = np.isin(cs.label, (0, 1))
    if not keep.all():
        logging.getLogger(__name__).warning("%s: %d crops without a real/fake label are left out",
                                            what, int((~keep).sum()))
    return CropSet(cs.crops[keep], cs.video_id[keep], cs.label[keep], cs.frame[keep])


class CropDataModule(lightning.LightningDataModule):
    """Training and validation CropSets (only labelled crops). The validation set is the
    caller's (a held-out split of videos): it drives early stopping and nothing else; a
    video may not be in both."""

    def __init__(self, train: CropSet, val: CropSet | None = None, *, batch_size: int = 16,
                 augment: bool = True, seed: int = 0):
        super().__init__()
        self.train_set = _labelled(train, "train")
        self.val_set = _labelled(val, "val") if val is not None and len(val) else None
        if not len(self.train_set):
            raise ValueError("no labelled training crops")
        if self.val_set is not None:
            shared = set(self.train_set.video_id) & set(self.val_set.video_id)
            if shared:
                raise ValueError(f"videos in both train and val: {sorted(shared)[:5]}")
            if not len(self.val_set):
                self.val_set = None
        self.batch_size = int(batch_size)
        self.augment = bool(augment)
        self.seed = int(seed)

    @property
    def has_val(self) -> bool:
        return self.val_set is not None

    def train_dataloader(self) -> DataLoader:
        # num_workers=0: augmentation draws from one seeded generator (reproducible), and on
        # a CPU-only machine the network, not the decoding, is the bottleneck.
        ds = CropDataset(self.train_set.crops, self.train_set.label, self.augment, self.seed)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        ds = CropDataset(self.val_set.crops, self.val_set.label) if self.has_val else CropDataset(
            self.train_set.crops[:0], self.train_set.label[:0])
        return DataLoader(ds, batch_size=max(self.batch_size, PREDICT_BATCH), shuffle=False)


# ---------------------------------------------------------------------------- model

class FrameClassifier(BinaryLogitModule):
    """A :mod:`.nets` network trained as a binary fake/real crop classifier.

    ``pos_weight`` scales the fake-class loss (``n_real / n_fake`` balances the classes);
    with ``freeze_backbone`` only the head trains and the backbone's batch-norm statistics
    stay as loaded."""

    def __init__(self, net: nets.FrameNet, lr: float = 1e-4, weight_decay: float = 0.0, optimizer: str = "adamw",
                 pos_weight: float = 1.0, freeze_backbone: bool = False):
        super().__init__()
        if optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {optimizer!r}")
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        if freeze_backbone:
            for p in self.net.backbone.parameters():
                p.requires_grad_(False)

    def on_train_batch_start(self, batch, batch_idx):
        # Lightning sets modes itself (and restores them around validation): re-check here.
        if self.hparams.freeze_backbone and self.net.backbone.training:
            self.net.backbone.eval()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = self._loss(logits, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train_acc", ((logits > 0).float() == y).float().mean(), on_step=False, on_epoch=True,
                 batch_size=len(y))
        return loss

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW if self.hparams.optimizer == "adamw" else torch.optim.Adam
        return opt(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class PreciseBatchNorm(Callback):
    """Re-estimate the networks' batch-norm running statistics before every validation and at
    the end of training: one pass over the training crops (no augmentation, no gradient, in
    train mode, cumulative averages), as "precise BN" does.

    Why: MesoNet's batch norm keeps the authors' Keras momentum (0.99, i.e. PyTorch 0.01),
    made for many thousand steps. A CPU-sized fit takes a few dozen, after which the running
    statistics are still close to their initial (0, 1) while the batches' real ones are far
    off (first Meso-4 block on the demo: running mean 0.02, var 0.96 against 0.48 and 0.05).
    In eval mode such a network then gives nearly the same logit to every crop (the demo's
    Meso-4 scored all test crops 0.051 +- 0.001: AUC 0.53, every video "fake", and an input
    gradient so small that no attack could move it), and early stopping, which validates in
    eval mode, keeps epoch 0. Re-estimating makes eval mode match what was trained."""

    def __init__(self, crops: np.ndarray, batch_size: int = PREDICT_BATCH):
        self.crops = crops
        self.batch_size = int(batch_size)

    def on_validation_start(self, trainer, pl_module):
        recalibrate_batchnorm(pl_module.net, self.crops, self.batch_size)

    def on_train_end(self, trainer, pl_module):
        recalibrate_batchnorm(pl_module.net, self.crops, self.batch_size)


def recalibrate_batchnorm(net: nn.Module, crops: np.ndarray, batch_size: int = PREDICT_BATCH) -> bool:
    """Set every batch-norm layer's running mean and variance of ``net`` to their averages
    over ``crops`` (uint8 RGB, as predicted), computed in train mode without gradients; the
    network's mode and each layer's momentum are restored. Returns False (nothing changed)
    when ``net`` has no batch norm, no crops, or a layer is frozen in eval mode (a frozen
    backbone keeps the statistics it was loaded with)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or not len(crops) or any(not p.requires_grad for m in bns for p in m.parameters()):
        return False
    was_training = net.training
    momenta = [m.momentum for m in bns]
    try:
        net.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None              # cumulative moving average over the batches
            m.train()
        with torch.no_grad():
            for s in range(0, len(crops), batch_size):
                net(to_tensor(crops[s:s + batch_size]))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        net.train(was_training)
    return True


# ---------------------------------------------------------------------------- detectors

COMMON_HYPER: dict[str, Any] = {
    "epochs": 10,               # upper bound; early stopping on the validation set usually ends sooner
    "patience": 3,              # epochs without a lower validation loss before stopping
    "batch_size": 16,
    "lr": 1e-4,
    "optimizer": "adamw",       # adam | adamw
    "weight_decay": 1e-4,
    "dropout": 0.5,
    "augment": True,            # flip, brightness/contrast, blur, JPEG (see AUGMENT)
    "balanced": True,           # weight the fake-class loss by n_real / n_fake crops
    "freeze_backbone": False,   # train the head only (with a pretrained checkpoint)
    "checkpoint": None,         # weights to start from (checkpoints.load_checkpoint formats); never downloaded
}


class CNNFrameDetector(PicklesNetAsWeights, FrameDetector):
    """A :mod:`.nets` network on face crops trained with Lightning. Subclasses name the
    architecture (``arch``) and may change defaults (``own_hyper``)."""

    family = "cnn"
    arch: ClassVar[str] = "?"
    own_hyper: ClassVar[dict[str, Any]] = {}
    test_params = {"input_size": 64, "epochs": 1, "batch_size": 4, "augment": False}

    def __init__(self, seed: int = 0, **hyper: Any):
        super().__init__(seed=seed, **hyper)
        h = self.hyper
        if h["optimizer"] not in ("adam", "adamw"):
            raise ValueError(f"{self.name}: optimizer must be 'adam' or 'adamw', got {h['optimizer']!r}")
        if int(h["input_size"]) < 32 or int(h["epochs"]) < 0 or int(h["batch_size"]) < 1:
            raise ValueError(f"{self.name}: need input_size >= 32, epochs >= 0, batch_size >= 1; got "
                             f"{h['input_size']}, {h['epochs']}, {h['batch_size']}")

    @classmethod
    def default_hyper(cls) -> dict[str, Any]:
        return copy.deepcopy({**COMMON_HYPER, "input_size": CPU_INPUT_SIZE[cls.arch], **cls.own_hyper})

    @classmethod
    def pretrained(cls, checkpoint: str, seed: int = 0, **hyper: Any) -> "CNNFrameDetector":
        """The detector with the weights in ``checkpoint`` as they are (no training)."""
        return cls(seed=seed, **{**hyper, "checkpoint": str(checkpoint), "epochs": 0}).fit(CropSet.empty())

    def net_args(self) -> dict:
        """Arguments of :func:`checkpoints.build` for this detector (without the checkpoint)."""
        h = self.hyper
        args = {"arch": self.arch, "input_size": int(h["input_size"]), "dropout": float(h["dropout"])}
        if "hidden" in h:
            args["hidden"] = int(h["hidden"])
        return args

    def fit(self, train: CropSet, val: CropSet | None = None) -> "CNNFrameDetector":
        h = self.hyper
        args = self.net_args()
        with training_scope():
            lightning.seed_everything(self.seed, workers=True)
            net = checkpoints.build(**args, checkpoint=h["checkpoint"])
            history: list[dict] = []
            info: dict[str, Any] = {"epochs_run": 0, "best_epoch": None, "best_val_loss": None}
            if int(h["epochs"]) > 0:
                net, history, info = self._train(net, train, val)
        self.net_ = net.eval()
        self.net_args_ = args
        self.history_ = history
        self.fit_info_ = info
        self.fitted_ = True
        return self

    def _train(self, net: nets.FrameNet, train: CropSet, val: CropSet | None):
        h = self.hyper
        dm = CropDataModule(train, val, batch_size=h["batch_size"], augment=h["augment"], seed=self.seed)
        y = dm.train_set.label
        both = (y == 0).any() and (y == 1).any()
        pos_weight = float((y == 0).sum() / (y == 1).sum()) if h["balanced"] and both else 1.0
        module = FrameClassifier(net, lr=h["lr"], weight_decay=h["weight_decay"], optimizer=h["optimizer"],
                                 pos_weight=pos_weight, freeze_backbone=h["freeze_backbone"])
        best = KeepBest("val_loss")
        callbacks: list[Callback] = [PreciseBatchNorm(dm.train_set.crops), best]
        if dm.has_val:
            callbacks.append(EarlyStopping("val_loss", patience=int(h["patience"]), mode="min"))
        with tempfile.TemporaryDirectory(prefix="blinkbench-lightning-") as tmp:
            trainer = lightning.Trainer(
                max_epochs=int(h["epochs"]), accelerator="cpu", devices=1, deterministic=True, logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0, limit_val_batches=1.0 if dm.has_val else 0, log_every_n_steps=1,
                callbacks=callbacks, default_root_dir=tmp)
            trainer.fit(module, datamodule=dm)
        net = module.net
        if best.state is not None:
            net.load_state_dict(best.state)
        for p in net.parameters():
            p.requires_grad_(True)              # attacks need gradients; freezing was for training only
        info = {"epochs_run": len(best.history), "best_epoch": best.best_epoch,
                "best_val_loss": best.best if best.state is not None else None,
                "n_train_crops": len(dm.train_set), "n_train_videos": len(set(dm.train_set.video_id)),
                "n_val_crops": len(dm.val_set) if dm.has_val else 0, "pos_weight": pos_weight}
        return net, best.history, info

    def network(self) -> nn.Module:
        """The trained network in eval mode: ``(B, 3, H, W)`` RGB in [0, 1] -> ``(B,)`` fake
        logits (for the attacks; wrap in :class:`nets.TwoClassLogits` for foolbox)."""
        if not self.fitted_:
            raise RuntimeError(f"{self.name}: network() before fit()")
        return self.net_.eval()

    def predict_logits(self, crops: np.ndarray) -> np.ndarray:
        """Fake logits ``(n,)`` of crops (uint8 RGB, or float in [0, 1])."""
        net = self.network()
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected crops (n, H, W, 3), got shape {crops.shape}")
        out = [np.zeros(0)]
        with torch.inference_mode():
            for s in range(0, len(crops), PREDICT_BATCH):   # converted per batch: a dataset's crops
                x = to_tensor(crops[s:s + PREDICT_BATCH])  # as float32 would not fit in memory
                out.append(net(x).double().numpy())
        return np.concatenate(out)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Penultimate features ``(n, d)`` float32 of crops (uint8 RGB, or float in [0, 1]):
        :meth:`nets.FrameNet.embed` in eval mode (for Xception the 2048-d pooled features)."""
        net = self.network()
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected crops (n, H, W, 3), got shape {crops.shape}")
        out = []
        with torch.inference_mode():
            for s in range(0, len(crops), PREDICT_BATCH):
                out.append(net.embed(to_tensor(crops[s:s + PREDICT_BATCH])).float().numpy())
        if not out:
            with torch.inference_mode():
                width = net.embed(torch.zeros(1, 3, net.input_size, net.input_size)).shape[1]
            return np.zeros((0, width), np.float32)
        return np.concatenate(out)

    def predict_frames(self, crops: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        return expit(self.predict_logits(crops))

    def describe(self) -> dict:
        d = super().describe()
        if self.fitted_:
            d["fit"] = self.fit_info_
        return d

    def _rebuild_net(self):  # for PicklesNetAsWeights
        return checkpoints.build(**self.net_args_)


_TIMM_HYPER = {"hidden": 256}
_MESO_HYPER = {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 32}   # the authors' Adam(1e-3)


@register("resnet50")
class ResNet50Detector(CNNFrameDetector):
    arch = "resnet50"
    own_hyper = _TIMM_HYPER


@register("vgg19")
class VGG19Detector(CNNFrameDetector):
    arch = "vgg19"
    own_hyper = _TIMM_HYPER


@register("xception")
class XceptionDetector(CNNFrameDetector):
    arch = "xception"
    own_hyper = _TIMM_HYPER


@register("efficientnet_b4")
class EfficientNetB4Detector(CNNFrameDetector):
    arch = "efficientnet_b4"
    own_hyper = _TIMM_HYPER


@register("meso4")
class Meso4Detector(CNNFrameDetector):
    arch = "meso4"
    own_hyper = _MESO_HYPER


@register("mesoinception4")
class MesoInception4Detector(CNNFrameDetector):
    arch = "mesoinception4"
    own_hyper = _MESO_HYPER
