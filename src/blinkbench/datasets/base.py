"""Dataset entries, seeded group-wise splitting and the per-video manifest.

Every adapter (``folder``, ``ffpp``, ``celebdf``, ``dfdc``) turns one dataset's own folder
layout into :class:`Entry` rows from folder listings and metadata files only; nothing here
decodes video except :func:`manifest_frame`, which probes each file.

Splits
------
Official splits are used where a dataset ships them (FF++ ``splits/*.json``, the Celeb-DF
test list, the DFDC test ``labels.csv``). Everything else is split by :func:`assign_splits`,
the one splitting helper all adapters use:

* every video carries one or more *group keys* (an identity, an original video and its
  fakes, ...); each key draws a number ``u`` in [0, 1) from ``sha256(seed, key)``;
* ``u < test`` puts the key in test, else ``u`` in the next ``val`` share of the remaining
  interval puts it in val, else train;
* a video goes to test if any of its keys is a test key, else to val if any is a val key,
  else to train. Its ``group`` becomes the key that decided (the first key for train), so
  videos sharing a ``group`` always share a split, and no val/test key ever appears in a
  train video.

A key's draw depends only on the seed and the key, never on which other videos were found:
changing ``compressions``, ``methods`` or ``max_videos`` never moves a video to another
split. ``val_fraction`` (``splits.val_fraction``) is the share of the non-test videos that
goes to val; where a dataset has no official test set, :data:`TEST_FRACTION` of the groups
are held out as test. When videos have several keys (a face swap involves two identities)
the per-key probabilities are calibrated so the expected shares of *videos* still match.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from blinkbench.video import codec as video
from blinkbench.core.io import sha256_file
from blinkbench.core.labels import LABELS

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SPLITS = ("train", "val", "test")
ORIGINAL = "original"  # ``method`` of every real video
TEST_FRACTION = 0.2  # share of groups held out as test where a dataset has no official test set
ERROR = "error"  # manifest status of a file whose probing or hashing raised

MANIFEST_COLUMNS = [
    "dataset", "video_id", "path", "label", "method", "source_id", "target_id", "split",
    "compression", "group", "fps", "n_frames", "duration_s", "width", "height", "codec", "vfr",
    "sha256", "status", "error",
]  # fmt: skip
_MANIFEST_DTYPES = {
    "fps": "float64", "n_frames": "int64", "duration_s": "float64", "width": "int64",
    "height": "int64", "vfr": "bool",
}  # fmt: skip

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Entry:
    """One video of a dataset, as its layout and metadata describe it (the file may be absent)."""

    video_id: str  # unique within the dataset; only [A-Za-z0-9_.-]
    path: Path  # root joined with the file's place in the layout; may not exist
    label: str  # "real" | "fake"
    method: str  # manipulation method; "original" for real videos
    source_id: str  # identity/video the face comes FROM ("" if none or unknown)
    target_id: str  # identity/video the face is pasted ONTO (real videos: their own id)
    split: str  # "train" | "val" | "test" ("" only while an adapter is still assigning)
    compression: str  # "raw", "c23", "c40" for FF++; "" if unknown
    group: str  # splitting unit: videos sharing it are always in one split


@dataclass(frozen=True)
class SplitConfig:
    """The parameters seeded splitting reads: ``base.seed`` and ``splits.val_fraction``."""

    seed: int
    val_fraction: float

    @classmethod
    def from_params(cls, params: dict) -> "SplitConfig":
        from blinkbench.core.config import schema  # defaults come from the one schema, not repeated here

        props = schema()["properties"]
        seed = (params.get("base") or {}).get("seed", props["base"]["properties"]["seed"]["default"])
        val = (params.get("splits") or {}).get(
            "val_fraction", props["splits"]["properties"]["val_fraction"]["default"]
        )
        if not 0 <= float(val) < 1:
            raise ValueError(f"splits.val_fraction must be in [0, 1), got {val}")
        return cls(int(seed), float(val))


# ----------------------------------------------------------------------------- layout helpers


def safe_id(*parts: str) -> str:
    """Join ``parts`` with ``_`` and replace every character outside [A-Za-z0-9_.-] by ``_``."""
    return _UNSAFE.sub("_", "_".join(p for p in parts if p))


def list_videos(folder: Path, recursive: bool = False) -> list[Path]:
    """Video files (by extension, case-insensitive) in ``folder``, sorted; hidden files and
    folders (such as half-written ``.name.tmp-*`` files) are skipped. [] if it is absent."""
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in candidates
        if p.suffix.lower() in VIDEO_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def resolve_under(root: Path, value: str) -> Path:
    """A config path: absolute as given, otherwise relative to the dataset root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


# ----------------------------------------------------------------------------- splitting


def unit_draw(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, key): sha256, so stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _key_split(u: float, test: float, val: float) -> str:
    if u < test:
        return "test"
    return "val" if u - test < val * (1.0 - test) else "train"


def _solve(f: Callable[[float], float], target: float) -> float:
    """p in [0, 1] with f(p) = target for increasing f (bisection; exact for p = 0)."""
    if target <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


def key_fractions(n_keys: Sequence[int], val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Per-key (test, val) probabilities that give videos with ``n_keys`` keys each the
    expected shares ``test_fraction`` of test and ``val_fraction`` of the rest as val.
    With one key per video they are the fractions themselves."""
    k = np.asarray(n_keys, dtype=np.float64)
    if k.size == 0 or np.all(k == 1):
        return test_fraction, val_fraction
    t = _solve(lambda p: float(np.mean(1 - (1 - p) ** k)), test_fraction)
    keep = (1 - t) ** k  # probability that no key of a video draws test
    want_val = (1 - test_fraction) * val_fraction
    v = _solve(lambda p: float(np.mean(keep * (1 - (1 - p) ** k))), want_val)
    return t, v


def split_of(keys: Sequence[str], seed: int, val: float, test: float = 0.0) -> tuple[str, str]:
    """(split, deciding key) of a video with group ``keys`` under per-key probabilities."""
    drawn = [(_key_split(unit_draw(k, seed), test, val), k) for k in keys]
    for split in ("test", "val"):
        for s, k in drawn:
            if s == split:
                return split, k
    return "train", keys[0]


def assign_splits(
    entries: Iterable[Entry],
    cfg: SplitConfig,
    test_fraction: float = 0.0,
    keys: Callable[[Entry], Sequence[str]] | None = None,
) -> list[Entry]:
    """Give every entry whose ``split`` is "" a seeded split by group (see the module doc).

    ``keys(entry)`` lists an entry's group keys (default: its ``group``); the entry's
    ``group`` is replaced by the key that decided its split. Entries that already have a
    split (official ones) are returned unchanged.
    """
    entries = list(entries)
    key_of = keys or (lambda e: (e.group,))
    pending = {i: tuple(key_of(e)) or (e.video_id,) for i, e in enumerate(entries) if not e.split}
    t, v = key_fractions([len(k) for k in pending.values()], cfg.val_fraction, test_fraction)
    for i, ks in pending.items():
        split, group = split_of(ks, cfg.seed, v, t)
        entries[i] = replace(entries[i], split=split, group=group)
    return entries


def check_entries(entries: Sequence[Entry], where: str) -> None:
    """Raise ValueError on duplicate or unsafe ids, or invalid labels/splits."""
    seen: dict[str, Path] = {}
    for e in entries:
        if e.video_id in seen:
            raise ValueError(
                f"{where}: two files map to video_id '{e.video_id}': {seen[e.video_id]} and {e.path}"
            )
        seen[e.video_id] = e.path
        if not e.video_id or _UNSAFE.search(e.video_id):
            raise ValueError(f"{where}: unsafe video_id '{e.video_id}' ({e.path})")
        if e.label not in LABELS or e.split not in SPLITS:
            raise ValueError(f"{where}: bad label/split {e.label!r}/{e.split!r} for {e.video_id}")


# ----------------------------------------------------------------------------- manifest


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when inside it, else absolute (no symlink
    resolution, so the same layout gives the same string)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()


def measure(path: Path) -> dict:
    """Probe and hash one file. Never raises: a failure becomes status "error"."""
    try:
        info = video.probe(path)
        readable = path.is_file() and os.access(path, os.R_OK)  # broken videos are hashed too
        return {**info.as_dict(), "sha256": sha256_file(path) if readable else ""}
    except Exception as exc:  # one bad file must not stop a dataset-wide manifest
        return {**video.VideoInfo(ERROR, f"{type(exc).__name__}: {exc}").as_dict(), "sha256": ""}


def manifest_frame(
    name: str, entries: Sequence[Entry], progress: bool = False, workers: int = 1
) -> pd.DataFrame:
    """One row per entry (in the given order) with its probe result and sha256.

    Deterministic: no timestamps, and ``path`` is the only path stored. ``workers`` > 1
    probes files on threads (demuxing and hashing release the GIL); order is unchanged.
    """
    paths = [e.path for e in entries]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        measured = pool.map(measure, paths)
        if progress:
            from tqdm import tqdm

            measured = tqdm(measured, total=len(paths), desc=f"manifest {name}", unit="video")
        rows = [
            {
                "dataset": name,
                "video_id": e.video_id,
                "path": display_path(e.path),
                "label": e.label,
                "method": e.method,
                "source_id": e.source_id,
                "target_id": e.target_id,
                "split": e.split,
                "compression": e.compression,
                "group": e.group,
                **m,
            }
            for e, m in zip(entries, measured)
        ]
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS).astype(_MANIFEST_DTYPES)
