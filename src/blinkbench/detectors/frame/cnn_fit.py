"""The torch and Lightning side of the CNN frame detectors (:mod:`.cnn`): augmentation, the
DataModule, the LightningModule and precise batch norm.

Kept apart from :mod:`.cnn` so that importing the detectors (the registry, the workflow's
parse-time check of names and hyper-parameters) does not import torch or Lightning; the
detectors' ``fit`` imports this module. Crops as tensors (``to_tensor``) are in :mod:`.nets`,
so that predicting (re-scoring, evaluating) does not import Lightning."""

from __future__ import annotations

import logging

import cv2
import lightning
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import nets
from .nets import PREDICT_BATCH, to_tensor  # noqa: F401  (also this module's names)
from blinkbench.detectors.training import BinaryLogitModule
from .base import CropSet

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


class CropDataset(Dataset):
    """Labelled crops (an array, or a :class:`~.cropstore.CropStore`: one crop is read per
    access); with ``augment`` each access draws its augmentation from one seeded generator,
    so a run (single-process loading, seeded shuffling) is reproducible."""

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
        dev = bns[0].running_mean.device          # inputs follow the network's device
        with torch.no_grad():
            for s in range(0, len(crops), batch_size):
                net(to_tensor(crops[s:s + batch_size]).to(dev))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        net.train(was_training)
    return True
