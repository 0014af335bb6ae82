"""The interface of the frame-level detectors (CNNs on face crops and forensic baselines).

Inputs are face crops sampled by the ``faces`` step (``data/crops/<dataset>/<video>.npz``:
``crops`` (n, S, S, 3) uint8 RGB, ``frames`` (n,) frame indices). A :class:`CropSet` holds
many videos' crops with one row per crop and the video id it came from, so frame scores are
always grouped by video id (never by a folder name several videos share).

A frame detector

- is registered by name (``@register("resnet50")``) and built by :func:`create`;
- ``fit(train, val)`` on CropSets (validation only for early stopping / model selection);
- ``predict_frames(crops)`` gives a fake probability per crop (uint8 RGB or float in [0,1]);
- ``predict_videos(cropset)`` gives video-level scores (``evaluation.frame_to_video``:
  mean probability and fraction of frames called fake);
- ``save(path)`` / ``FrameDetector.load(path)`` round-trip it with identical scores, through
  a data-only model file (:mod:`blinkbench.detectors.modelfile`; never a pickle).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

import numpy as np

from blinkbench.core import paths
from blinkbench.core.labels import LABELS
from blinkbench.core.registry import HyperParams, Registry
from blinkbench.detectors import modelfile
from .cropstore import CropStore, cached_crops

if TYPE_CHECKING:  # imported where used: the workflow's parse checks this registry
    import pandas as pd

REGISTRY: Registry = Registry("frame detector")   # modules: set by the package __init__
modelfile.REGISTRIES["frame"] = REGISTRY            # where a frame model file's class comes from


@dataclass
class CropSet:
    """Crops with their video, label and frame per row. ``crops`` is an array, or a
    :class:`~.cropstore.CropStore` reading them from disk on demand (what
    :meth:`from_manifest` gives: a dataset's crops are never all in memory)."""

    crops: np.ndarray | CropStore   # (n, H, W, 3) uint8 RGB
    video_id: np.ndarray     # (n,) str
    label: np.ndarray        # (n,) int: 1 fake, 0 real, -1 unknown
    frame: np.ndarray        # (n,) int frame index in its video

    def __post_init__(self):
        n = len(self.crops)
        for k in ("video_id", "label", "frame"):
            if len(getattr(self, k)) != n:
                raise ValueError(f"CropSet: {k} has {len(getattr(self, k))} rows, crops {n}")

    def __len__(self) -> int:
        return len(self.crops)

    def videos(self) -> pd.DataFrame:
        """One row per video: video_id, label (first crop's), n_crops."""
        import pandas as pd

        df = pd.DataFrame({"video_id": self.video_id, "label": self.label})
        return df.groupby("video_id", sort=True).agg(label=("label", "first"), n_crops=("label", "size")).reset_index()

    def subset(self, video_ids: Iterable[str]) -> "CropSet":
        keep = np.isin(self.video_id, list(video_ids))
        return CropSet(self.crops[keep], self.video_id[keep], self.label[keep], self.frame[keep])

    @classmethod
    def concat(cls, sets: list["CropSet"]) -> "CropSet":
        sets = [s for s in sets if len(s)]
        if not sets:
            return cls.empty()
        if all(isinstance(s.crops, CropStore) for s in sets):
            crops = CropStore.concat([s.crops for s in sets])
        else:
            crops = np.concatenate([np.asarray(s.crops) for s in sets])
        return cls(crops, np.concatenate([s.video_id for s in sets]),
                   np.concatenate([s.label for s in sets]), np.concatenate([s.frame for s in sets]))

    @classmethod
    def empty(cls, size: int = 256) -> "CropSet":
        return cls(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, object), np.zeros(0, int), np.zeros(0, int))

    @classmethod
    def from_manifest(cls, dataset: str, manifest: pd.DataFrame, split: str | None = None,
                      lazy: bool = True) -> "CropSet":
        """Crops of a dataset's manifest rows (optionally one split), in the manifest's order;
        videos whose crop file is missing or empty are skipped (their status is in the faces
        artifacts). ``lazy`` (default): the crops stay on disk (:mod:`.cropstore`; one video's
        crops in memory at a time, while its cache is written); ``lazy=False`` loads them all
        into one array (the former behaviour: same rows, same bytes)."""
        rows = manifest if split is None else manifest[manifest["split"] == split]
        parts = []
        for r in rows.itertuples(index=False):
            p = paths.path("crops", dataset=dataset, video=r.video_id)
            if not p.exists():
                continue
            if lazy:
                cache, frames = cached_crops(p, dataset, r.video_id)
                crops = CropStore.from_npy([cache])
            else:
                with np.load(p) as z:
                    crops, frames = z["crops"], z["frames"]
            if len(crops):
                lab = LABELS.get(r.label, -1)
                parts.append(cls(crops, np.full(len(crops), r.video_id, object), np.full(len(crops), lab),
                                 frames.astype(int)))
        return cls.concat(parts)


register = REGISTRY.register


class FrameDetector(HyperParams, ABC):
    family: ClassVar[str] = "cnn"          # cnn | forensic

    def __init__(self, seed: int = 0, **hyper: Any):
        self._set_hyper(seed, hyper)

    @abstractmethod
    def fit(self, train: CropSet, val: CropSet | None = None) -> "FrameDetector": ...

    @abstractmethod
    def predict_frames(self, crops: np.ndarray) -> np.ndarray:
        """Fake probability per crop, shape (n,)."""

    def predict_videos(self, cs: CropSet) -> pd.DataFrame:
        from blinkbench.detectors.evaluation import frame_to_video

        s = self.predict_frames(cs.crops) if len(cs) else np.zeros(0)
        import pandas as pd

        df = pd.DataFrame({"video_id": cs.video_id, "score": s})
        out = frame_to_video(df)
        labels = cs.videos().set_index("video_id")["label"]
        out["label"] = out["video_id"].map(labels).astype(int)
        return out

    def save(self, path: str | Path) -> None:
        if not self.fitted_:
            raise RuntimeError(f"{self.name}: save() before fit()")
        modelfile.save(self, path, "frame")

    @staticmethod
    def load(path: str | Path) -> "FrameDetector":
        """The detector in a frame model file; ``modelfile.ModelFileError`` for anything else,
        ``modelfile.UntrainedModel`` for a recorded training failure (both ValueErrors).
        Nothing in the file is executed."""
        return modelfile.load(path, "frame")

    def _after_load(self) -> None:
        pass

    def describe(self) -> dict:
        return {"name": self.name, "family": self.family, "seed": self.seed, "hyper": self.hyper}
