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
  (``lightning.seed_everything``), ``deterministic=True``, on CUDA when there is one
  (:mod:`blinkbench.core.devices`; ``BLINKBENCH_DEVICE=cpu`` forces the CPU), no logger, no progress bar,
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
import tempfile
from typing import Any, ClassVar

import numpy as np

from blinkbench.detectors.weights import PicklesNetAsWeights
from .base import CropSet, FrameDetector, register
from .cropstore import as_crops

# torch, Lightning and the networks are imported where they are used (fit, predict), so that
# importing this module (registry, parse-time checks) stays light; the training pieces are in
# .cnn_fit, the networks' input in .nets, both still reachable from here (__getattr__ below).
_IN_CNN_FIT = ("AUGMENT", "augment", "CropDataset", "CropDataModule", "FrameClassifier",
               "PreciseBatchNorm", "recalibrate_batchnorm")


def __getattr__(name: str):
    if name in ("PREDICT_BATCH", "to_tensor"):     # the networks' input: predicting needs no Lightning
        from . import nets

        return getattr(nets, name)
    if name in _IN_CNN_FIT:
        from . import cnn_fit

        return getattr(cnn_fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Default input sizes for CPU training (paper sizes in nets.PAPER_INPUT_SIZE).
CPU_INPUT_SIZE = {"resnet50": 160, "vgg19": 128, "xception": 160, "efficientnet_b4": 160,
                  "meso4": 256, "mesoinception4": 256}


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
        import lightning

        from . import checkpoints
        from blinkbench.detectors.training import training_scope

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

    def _train(self, net: "nets.FrameNet", train: CropSet, val: CropSet | None):
        import lightning
        from lightning.pytorch.callbacks import Callback, EarlyStopping

        from blinkbench.core import devices
        from blinkbench.detectors.training import KeepBest
        from .cnn_fit import CropDataModule, FrameClassifier, PreciseBatchNorm

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
                max_epochs=int(h["epochs"]), accelerator=devices.accelerator(), devices=1, deterministic=True, logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0, limit_val_batches=1.0 if dm.has_val else 0, log_every_n_steps=1,
                callbacks=callbacks, default_root_dir=tmp)
            trainer.fit(module, datamodule=dm)
        net = module.net.cpu()                   # trained on any device, kept (and saved) on the CPU
        if best.state is not None:
            net.load_state_dict(best.state)
        for p in net.parameters():
            p.requires_grad_(True)              # attacks need gradients; freezing was for training only
        info = {"epochs_run": len(best.history), "best_epoch": best.best_epoch,
                "best_val_loss": best.best if best.state is not None else None,
                "n_train_crops": len(dm.train_set), "n_train_videos": len(set(dm.train_set.video_id)),
                "n_val_crops": len(dm.val_set) if dm.has_val else 0, "pos_weight": pos_weight}
        return net, best.history, info

    def network(self) -> "nn.Module":
        """The trained network in eval mode: ``(B, 3, H, W)`` RGB in [0, 1] -> ``(B,)`` fake
        logits (for the attacks; wrap in :class:`nets.TwoClassLogits` for foolbox)."""
        if not self.fitted_:
            raise RuntimeError(f"{self.name}: network() before fit()")
        return self.net_.eval()

    def predict_logits(self, crops: np.ndarray) -> np.ndarray:
        """Fake logits ``(n,)`` of crops (uint8 RGB, or float in [0, 1])."""
        import torch

        from blinkbench.core import devices
        from .nets import PREDICT_BATCH, to_tensor

        net = self.network()
        dev = devices.of(net)
        crops = as_crops(crops)          # a CropStore stays on disk: read batch by batch below
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected crops (n, H, W, 3), got shape {crops.shape}")
        out = [np.zeros(0)]
        with torch.inference_mode():
            for s in range(0, len(crops), PREDICT_BATCH):   # converted per batch: a dataset's crops
                x = to_tensor(crops[s:s + PREDICT_BATCH])  # as float32 would not fit in memory
                out.append(net(x.to(dev)).double().cpu().numpy())
        return np.concatenate(out)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Penultimate features ``(n, d)`` float32 of crops (uint8 RGB, or float in [0, 1]):
        :meth:`nets.FrameNet.embed` in eval mode (for Xception the 2048-d pooled features)."""
        import torch

        from blinkbench.core import devices
        from .nets import PREDICT_BATCH, to_tensor

        net = self.network()
        dev = devices.of(net)
        crops = as_crops(crops)          # a CropStore stays on disk: read batch by batch below
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected crops (n, H, W, 3), got shape {crops.shape}")
        out = []
        with torch.inference_mode():
            for s in range(0, len(crops), PREDICT_BATCH):
                x = to_tensor(crops[s:s + PREDICT_BATCH]).to(dev)
                out.append(net.embed(x).float().cpu().numpy())
        if not out:
            with torch.inference_mode():
                width = net.embed(torch.zeros(1, 3, net.input_size, net.input_size, device=dev)).shape[1]
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
        from . import checkpoints

        return checkpoints.build(**self.net_args_)


_TIMM_HYPER = {"hidden": 256}
_MESO_HYPER = {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 32}   # the authors' Adam(1e-3)

# One row per registered CNN detector: registry name (= the :mod:`.nets` architecture) ->
# class name and the defaults it changes. The classes differ in nothing else, so they are
# made from this table; each is still a module attribute under its name (importable,
# picklable by reference).
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet50": ("ResNet50Detector", _TIMM_HYPER),
    "vgg19": ("VGG19Detector", _TIMM_HYPER),
    "xception": ("XceptionDetector", _TIMM_HYPER),
    "efficientnet_b4": ("EfficientNetB4Detector", _TIMM_HYPER),
    "meso4": ("Meso4Detector", _MESO_HYPER),
    "mesoinception4": ("MesoInception4Detector", _MESO_HYPER),
}

for _arch, (_cls_name, _own) in ARCHITECTURES.items():
    globals()[_cls_name] = register(_arch)(type(_cls_name, (CNNFrameDetector,), {
        "arch": _arch, "own_hyper": _own, "__module__": __name__,
        "__doc__": f"The {_arch} network of :mod:`.nets` as a frame detector."}))
del _arch, _cls_name, _own
