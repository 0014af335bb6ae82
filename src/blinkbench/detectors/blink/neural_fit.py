"""The Lightning side of the neural blink detectors (:mod:`.neural`): the seeded by-video
split, the DataModule, the LightningModule and the batch-norm callback.

Kept apart from :mod:`.neural` so that importing the detectors (the registry, the
workflow's parse-time check of names and hyper-parameters) does not import torch or
Lightning; :meth:`.neural.NeuralWindowDetector.fit` imports this module. The networks'
input (``to_input``) is in :mod:`.nets`, so that predicting does not import Lightning."""

from __future__ import annotations

import lightning
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

from . import nets
from .nets import to_input  # noqa: F401  (also this module's name)
from blinkbench.detectors.training import BinaryLogitModule


def split_by_video(groups: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation window indices, holding out whole videos (``groups``).

    Per class, ``round(val_fraction x videos)`` videos go to validation, drawn with
    ``default_rng(seed)``: at least one when the class has two or more videos, never all of
    them (training keeps every class). A video's label is that of its windows."""
    groups = np.asarray(groups)
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    ug = np.unique(groups)
    glabel = np.array([y[groups == g][0] for g in ug])
    val_groups: list = []
    for c in np.unique(glabel):
        gs = ug[glabel == c]
        n = int(round(val_fraction * len(gs)))
        if val_fraction > 0 and len(gs) >= 2:
            n = max(n, 1)
        n = min(n, len(gs) - 1)
        if n > 0:
            val_groups.extend(rng.permutation(gs)[:n].tolist())
    val = np.isin(groups, val_groups)
    return np.flatnonzero(~val), np.flatnonzero(val)


class WindowDataModule(lightning.LightningDataModule):
    """EAR windows with labels and video groups; ``setup`` makes the seeded by-video split
    (:func:`split_by_video`), exposed as ``train_idx`` / ``val_idx`` (window indices)."""

    def __init__(self, X: np.ndarray, M: np.ndarray, y: np.ndarray, groups: np.ndarray, *, batch_size: int = 64,
                 val_fraction: float = 0.2, seed: int = 0, mask_channel: bool = False):
        super().__init__()
        if not np.isfinite(X).all():
            raise ValueError("windows contain NaN or inf (series.prepare should have filled them)")
        self.X, self.M, self.y, self.groups = X, M, np.asarray(y), np.asarray(groups)
        self.batch_size = int(batch_size)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.mask_channel = bool(mask_channel)
        self.train_idx: np.ndarray | None = None
        self.val_idx: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_idx is None:
            self.train_idx, self.val_idx = split_by_video(self.groups, self.y, self.val_fraction, self.seed)

    def calibration_inputs(self, max_n: int = 4096) -> torch.Tensor:
        """Network inputs of at most ``max_n`` training windows (seeded choice), for
        re-estimating batch-norm statistics."""
        self.setup()
        idx = self.train_idx
        if len(idx) > max_n:
            idx = np.sort(np.random.default_rng(self.seed).choice(idx, max_n, replace=False))
        return to_input(self.X[idx], self.M[idx], self.mask_channel)

    @property
    def has_val(self) -> bool:
        self.setup()
        return len(self.val_idx) > 0

    def _dataset(self, idx: np.ndarray) -> TensorDataset:
        x = to_input(self.X[idx], self.M[idx], self.mask_channel)
        return TensorDataset(x, torch.from_numpy(self.y[idx].astype(np.float32)))

    def train_dataloader(self) -> DataLoader:
        # num_workers=0: windows are small tensors already in memory; workers would only
        # add start-up cost and a source of non-determinism.
        return DataLoader(self._dataset(self.train_idx), batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.val_idx), batch_size=max(self.batch_size, 256), shuffle=False)


class SeriesClassifier(BinaryLogitModule):
    """Any :mod:`.nets` network (``net_spec`` = :func:`nets.build` arguments) trained as a
    binary fake/real window classifier. ``pos_weight`` scales the fake-class loss
    (``n_real / n_fake`` balances the classes)."""

    def __init__(self, net_spec: dict, lr: float = 1e-3, weight_decay: float = 0.0, pos_weight: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = nets.build(**net_spec)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self._loss(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class PreciseBatchNorm(Callback):
    """Before each validation, re-estimates the network's batch-norm statistics on (a seeded
    subset of) the training windows (:func:`nets.recalibrate_batchnorm`), so the validation
    loss, the early stopping and the kept best weights see the eval-mode network as it will
    predict, not one with lagging running averages."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def on_validation_epoch_start(self, trainer, pl_module):
        nets.recalibrate_batchnorm(pl_module.net, self.x)
