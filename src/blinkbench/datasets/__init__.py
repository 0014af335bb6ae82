"""Dataset adapters and per-video manifests.

``discover`` turns a dataset (``params["datasets"][name]``: an adapter and a root, plus
adapter options) into sorted :class:`Entry` rows, reading folder listings and metadata
files only (``metadata_files`` names those files, for workflow inputs). ``build_manifest``
adds what probing each file finds (frame rate, frame count, size, codec, status) and its
sha256; ``write_manifest`` stores it atomically. Missing and
broken files become status rows, never exceptions, so one bad video cannot stop a dataset.

Adapters (each module's docstring states its layout, ids, groups and splits):

=========  ======================================================================
folder     ``root/real/**`` and ``root/fake/**`` (the embedded demo), optional splits.csv
ffpp       FaceForensics++ ``original_sequences`` / ``manipulated_sequences``
celebdf    Celeb-DF v1/v2 ``Celeb-real``, ``YouTube-real``, ``Celeb-synthesis`` + test list
dfdc       DFDC ``dfdc_train_part_N/metadata.json`` (+ optional test ``labels.csv``)
=========  ======================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Iterable

import pandas as pd

from blinkbench.core.io import stamp, write_parquet
from . import celebdf, dfdc, ffpp, folder
from .base import MANIFEST_COLUMNS, TEST_FRACTION, Entry, SplitConfig, check_entries, manifest_frame

__all__ = [
    "ADAPTERS", "MANIFEST_COLUMNS", "TEST_FRACTION", "Entry", "build_manifest", "discover",
    "metadata_files", "present_ids", "write_manifest",
]  # fmt: skip

# adapter name -> module with OPTIONS (its own config keys), LAYOUT, discover(root, cfg, split_cfg)
# and metadata_files(root, cfg)
ADAPTERS: dict[str, ModuleType] = {"folder": folder, "ffpp": ffpp, "celebdf": celebdf, "dfdc": dfdc}
COMMON_KEYS = frozenset({"adapter", "root", "max_videos"})


def discover(name: str, ds_cfg: dict, params: dict) -> list[Entry]:
    """The dataset's videos, sorted by ``video_id``, without decoding any video.

    Includes videos that metadata lists but whose file is absent. ``max_videos`` keeps the
    first N by ``video_id``; splits are assigned before that cut, so they do not depend on it.
    Raises ValueError for an unknown adapter, a missing root, an option that belongs to
    another adapter, or a layout with no videos.
    """
    module, root = _adapter(name, ds_cfg)
    entries = module.discover(root, ds_cfg, SplitConfig.from_params(params))
    if not entries:
        raise ValueError(f"dataset '{name}': no videos found under {root}; expected {module.LAYOUT}")
    entries.sort(key=lambda e: e.video_id)
    check_entries(entries, f"dataset '{name}'")
    limit = ds_cfg.get("max_videos")
    return entries[:limit] if limit else entries


def metadata_files(name: str, ds_cfg: dict, params: dict) -> list[Path]:
    """The existing non-video files that ``discover`` reads (splits files, test lists,
    metadata.json, labels CSVs): the manifest must be rebuilt when one of them changes.
    ``params`` is accepted for symmetry with :func:`discover`; no adapter needs it."""
    module, root = _adapter(name, ds_cfg)
    return sorted(p for p in module.metadata_files(root, ds_cfg) if p.is_file())


def _adapter(name: str, ds_cfg: dict) -> tuple[ModuleType, Path]:
    """The adapter module and root of a dataset config, after checking both and the options."""
    adapter = ds_cfg.get("adapter")
    if adapter not in ADAPTERS:
        raise ValueError(f"dataset '{name}': unknown adapter {adapter!r} (one of {sorted(ADAPTERS)})")
    module = ADAPTERS[adapter]
    misplaced = sorted(set(ds_cfg) - COMMON_KEYS - module.OPTIONS)
    if misplaced:
        owners = {k: [a for a, m in ADAPTERS.items() if k in m.OPTIONS] for k in misplaced}
        detail = ", ".join(
            f"'{k}' ({'/'.join(o) + ' only' if o else 'unknown key'})" for k, o in owners.items()
        )
        raise ValueError(f"dataset '{name}': option not valid for adapter '{adapter}': {detail}")
    if "root" not in ds_cfg:
        raise ValueError(f"dataset '{name}': no root given")
    root = Path(ds_cfg["root"]).expanduser()
    if not root.is_dir():
        raise ValueError(f"dataset '{name}': root {root} does not exist or is not a folder "
                         f"(resolved from {Path.cwd()}); expected {module.LAYOUT}")
    return module, root


def present_ids(entries: Iterable[Entry]) -> dict[str, Path]:
    """video_id -> path for the entries whose file exists."""
    return {e.video_id: e.path for e in entries if e.path.is_file()}


def build_manifest(
    name: str, ds_cfg: dict, params: dict, progress: bool = False, *, workers: int = 1
) -> pd.DataFrame:
    """:func:`discover` plus a probe and sha256 of every file: one row per entry, columns
    :data:`MANIFEST_COLUMNS`. Missing files get status "missing"; any other per-file failure
    status "error" with its message. Same inputs give an identical DataFrame."""
    return manifest_frame(name, discover(name, ds_cfg, params), progress=progress, workers=workers)


def write_manifest(df: pd.DataFrame, out_path: str | os.PathLike) -> None:
    """Write a manifest atomically with metadata ``status``, ``dataset``, ``counts`` (rows per
    status) and ``stamp`` (a hash of ids, splits, labels and file hashes)."""
    names = sorted(set(df["dataset"]))
    if len(names) > 1:
        raise ValueError(f"a manifest holds one dataset, got {names}")
    counts = {str(k): int(v) for k, v in sorted(df["status"].value_counts().items())}
    content = df[["video_id", "label", "split", "group", "sha256", "status"]].to_numpy().tolist()
    meta = {"status": "ok", "dataset": names[0] if names else "", "counts": counts, "stamp": stamp(content)}
    write_parquet(df[MANIFEST_COLUMNS], out_path, meta=meta)
