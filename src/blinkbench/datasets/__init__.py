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
dfdc       DFDC ``dfdc_train_part_N/metadata.json``, Kaggle ``train_sample_videos/metadata.json``
           (+ optional test ``labels.csv`` or ``test_parts``)
union      several of the above as one dataset: ``members`` (name -> dataset config, roots
           relative to the union's root); ids ``{member}__{id}``, groups kept per member
=========  ======================================================================

Keys every dataset takes: ``adapter``, ``root``, ``max_videos`` and ``split`` (every video
goes to this split: ``split: test`` makes an evaluation-only dataset, such as real footage
scored by detectors trained elsewhere).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Iterable

from blinkbench.core.io import stamp, write_parquet
from blinkbench.core.params_types import DatasetSection, ManifestParams
from . import celebdf, dfdc, ffpp, folder
if TYPE_CHECKING:  # pandas costs a second of `snakemake -n`, which needs none of it
    import pandas as pd
from .base import (
    MANIFEST_COLUMNS, TEST_FRACTION, Entry, SplitConfig, check_entries, check_symlinks, manifest_frame, select_trial,
    utf8_name_errors,
)  # fmt: skip

log = logging.getLogger(__name__)

__all__ = [
    "ADAPTERS", "MANIFEST_COLUMNS", "TEST_FRACTION", "Entry", "build_manifest", "discover",
    "metadata_files", "present_ids", "write_manifest",
]  # fmt: skip

# adapter name -> module with OPTIONS (its own config keys), LAYOUT, discover(root, cfg, split_cfg)
# and metadata_files(root, cfg)
ADAPTERS: dict[str, ModuleType] = {"folder": folder, "ffpp": ffpp, "celebdf": celebdf, "dfdc": dfdc}
COMMON_KEYS = frozenset({"adapter", "root", "max_videos", "split"})
UNION = "union"  # an adapter of adapters: composed here, not a layout module


def discover(name: str, ds_cfg: dict, params: dict) -> list[Entry]:
    """The dataset's videos, sorted by ``video_id``, without decoding any video.

    Includes videos that metadata lists but whose file is absent, and entries that must not
    be read (a metadata name outside the root, a file name that is not UTF-8): those carry
    an ``error`` and become error rows of the manifest. Symlinks are followed (see
    :func:`base.check_symlinks`). ``max_videos`` keeps a balanced subset of N
    (:func:`base.select_trial`: both labels, fakes with their originals, test and train);
    splits are assigned before that cut, so they do not depend on it.
    Raises ValueError for an unknown adapter, a missing root, an option that belongs to
    another adapter, or a layout with no videos.
    """
    split_cfg = SplitConfig.from_params(params)
    if ds_cfg.get("adapter") == UNION:
        entries = _discover_union(name, ds_cfg, params)   # each member checked by its own discover
    else:
        module, root = _adapter(name, ds_cfg)
        entries = module.discover(root, ds_cfg, split_cfg)
        if not entries:
            raise ValueError(f"dataset '{name}': no videos found under {root}; expected {module.LAYOUT}")
        entries = utf8_name_errors(entries)
    if ds_cfg.get("split"):
        entries = [replace(e, split=ds_cfg["split"]) for e in entries]
    entries.sort(key=lambda e: e.video_id)
    check_entries(entries, f"dataset '{name}'")
    for e in entries:
        if e.error:
            log.warning("dataset '%s': %s: %s (an error row; the rest goes on)", name, e.video_id, e.error)
    if ds_cfg.get("adapter") != UNION:
        check_symlinks(entries, root, f"dataset '{name}'")
    return select_trial(entries, ds_cfg.get("max_videos"), split_cfg.seed)


def metadata_files(name: str, ds_cfg: dict, params: dict) -> list[Path]:
    """The existing non-video files that ``discover`` reads (splits files, test lists,
    metadata.json, labels CSVs): the manifest must be rebuilt when one of them changes.
    ``params`` is accepted for symmetry with :func:`discover`; no adapter needs it."""
    if ds_cfg.get("adapter") == UNION:
        return sorted(p for m, cfg in _members(name, ds_cfg).items() for p in metadata_files(f"{name}.{m}", cfg, params))
    module, root = _adapter(name, ds_cfg)
    return sorted(p for p in module.metadata_files(root, ds_cfg) if p.is_file())


def _members(name: str, ds_cfg: dict) -> dict[str, dict]:
    """The member dataset configs of a union, their roots resolved against the union's root."""
    root = Path(ds_cfg.get("root", ".")).expanduser()
    if not root.is_dir():
        raise ValueError(f"dataset '{name}': root {root} does not exist or is not a folder (resolved from {Path.cwd()})")
    members = ds_cfg.get("members") or {}
    if not members:
        raise ValueError(f"dataset '{name}': a union needs members (name -> dataset config)")
    out = {}
    for m, cfg in members.items():
        if cfg.get("adapter") == UNION:
            raise ValueError(f"dataset '{name}': member '{m}' is a union itself; nest members directly")
        out[m] = {**cfg, "root": str(root / Path(cfg.get("root", "")).expanduser())}
    return out


def _discover_union(name: str, ds_cfg: dict, params: dict) -> list[Entry]:
    """Every member's entries (its own splits, or its ``split``), ids and groups prefixed by the
    member's name so that two members never share an id or a group."""
    misplaced = sorted(set(ds_cfg) - COMMON_KEYS - {"members"})
    if misplaced:
        raise ValueError(f"dataset '{name}': option not valid for adapter 'union': {misplaced}")
    out = []
    for m, cfg in _members(name, ds_cfg).items():
        for e in discover(f"{name}.{m}", cfg, params):
            out.append(replace(e, video_id=f"{m}__{e.video_id}", group=f"{m}__{e.group}",
                               source_id=f"{m}__{e.source_id}" if e.source_id else "",
                               target_id=f"{m}__{e.target_id}" if e.target_id else ""))
    return out


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
    """video_id -> path for the entries whose file exists and may be read (no ``error``)."""
    return {e.video_id: e.path for e in entries if not e.error and e.path.is_file()}


def build_manifest(
    name: str, ds_cfg: DatasetSection, params: ManifestParams, progress: bool = False, *, workers: int = 1
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
