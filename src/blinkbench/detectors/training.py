"""What the Lightning-trained detectors (blink networks, frame CNNs) share: a scope that
keeps ``fit`` free of process-wide side effects, and a callback that keeps the best weights
in memory (no checkpoint files)."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager

import lightning
import torch
from lightning.pytorch.callbacks import Callback
from torch.nn import functional as F

from blinkbench.detectors.weights import PicklesNetAsWeights  # noqa: F401  (re-exported: was defined here)


class KeepBest(Callback):
    """Keeps in memory the network weights of the epoch with the lowest ``monitor`` (so no
    checkpoint files), and each epoch's logged metrics in ``history``."""

    def __init__(self, monitor: str = "val_loss"):
        self.monitor = monitor
        self.best = float("inf")
        self.best_epoch: int | None = None
        self.state: dict | None = None
        self.history: list[dict] = []

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        v = metrics.get(self.monitor)
        if v is not None and v < self.best:
            self.best, self.best_epoch = v, trainer.current_epoch
            self.state = {k: t.detach().clone() for k, t in pl_module.net.state_dict().items()}


@contextmanager
def training_scope(threads: int | None = 1):
    """Quiet Lightning's info messages and undo its process-wide side effects after ``fit``:
    ``deterministic=True`` turns on ``torch.use_deterministic_algorithms`` and
    ``seed_everything`` sets ``PL_*`` environment variables; both are restored. The global
    RNGs stay seeded, as after any ``seed_everything``.

    ``threads`` pins torch's intra-op threads for the fit (restored afterwards): results are
    bit-identical only for one thread count (reduction order), so a fixed count keeps models
    and DVC hashes the same on machines with different core counts. ``None`` leaves it.

    Warnings still show, except the DataLoader-workers hint (single-process loading is
    deliberate, for reproducibility) and a torch deprecation notice about Lightning's own
    internals."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")}
    n_threads = torch.get_num_threads()
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            # torch 2.14 deprecates a pytree idiom Lightning 2.6 uses internally: not ours to act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            yield
    finally:
        torch.set_num_threads(n_threads)
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class BinaryLogitModule(lightning.LightningModule):
    """Shared steps of the LightningModules that train ``self.net`` (one fake logit per
    input) with BCE-with-logits: ``pos_weight`` (in the subclass's saved hyper-parameters)
    scales the fake-class loss; validation logs ``val_loss``, ``val_acc`` and, when both
    classes are present, ``val_auc``."""

    def __init__(self):
        super().__init__()
        self._val_logits: list[torch.Tensor] = []
        self._val_y: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pw = torch.tensor(self.hparams.pos_weight, dtype=logits.dtype, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pw)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", self._loss(logits, y), on_step=False, on_epoch=True, batch_size=len(y))
        self._val_logits.append(logits.detach())
        self._val_y.append(y)

    def on_validation_epoch_end(self):
        if not self._val_logits:
            return
        logits, y = torch.cat(self._val_logits), torch.cat(self._val_y)
        self._val_logits.clear()
        self._val_y.clear()
        self.log("val_acc", ((logits > 0).float() == y).float().mean())
        if 0 < float(y.sum()) < len(y):
            from sklearn.metrics import roc_auc_score

            self.log("val_auc", float(roc_auc_score(y.cpu().numpy(), logits.cpu().numpy())))
