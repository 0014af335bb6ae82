"""Generic ``folder`` adapter: real and fake videos in two sub-folders.

Layout::

    root/real/**/*.{mp4,avi,mov,mkv,webm}    real videos (any depth)
    root/fake/**/*.{mp4,avi,mov,mkv,webm}    fake videos
    root/splits.csv                          optional: columns video_id,split
    root/...                                 anything else (e.g. the demo's blinks.csv) is ignored

or, with the option ``label: real`` (or ``fake``), a flat folder of videos of one label:
``root/**/*.mp4`` (e.g. footage of real people without fakes), ids ``{label}_{path}``.

``video_id`` is ``{label}_{path below real/ or fake/ without extension}`` with ``/`` written
as ``__`` and any other character outside [A-Za-z0-9_.-] as ``_`` (``fake/a/b c.mp4`` ->
``fake_a__b_c``). Each video is its own group. Splits come from ``splits.csv`` when present;
videos it does not list (or all videos, without it) get a seeded split by group: 20 %
(:data:`~blinkbench.datasets.base.TEST_FRACTION`) test, then ``splits.val_fraction`` of the
rest val. The layout has no notion of identity, so nothing stops one person appearing in
two splits: write ``splits.csv`` when that matters. The embedded demo dataset uses this layout.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import replace
from pathlib import Path

from .base import (
    LABELS, SPLITS, TEST_FRACTION, Entry, SplitConfig, assign_splits, list_videos, safe_id, video_entry,
)  # fmt: skip

log = logging.getLogger(__name__)

OPTIONS: frozenset[str] = frozenset({"label"})
LAYOUT = "root/real/**/*.mp4 and root/fake/**/*.mp4 (optional root/splits.csv: video_id,split)"
SPLITS_FILE = "splits.csv"


def discover(root: Path, cfg: dict, split_cfg: SplitConfig) -> list[Entry]:
    entries = []
    one = cfg.get("label")
    if one is not None and one not in LABELS:
        raise ValueError(f"folder option label must be one of {tuple(LABELS)}, got {one!r}")
    for label in [one] if one else LABELS:
        base = root if one else root / label
        for path in list_videos(base, recursive=True):
            rel = path.relative_to(base).with_suffix("")
            vid = safe_id(label, "__".join(rel.parts))
            entries.append(
                video_entry(vid, path, label, "fake", target_id=vid if label == "real" else "", group=vid)
            )
    fixed = read_splits_csv(root / SPLITS_FILE)
    if fixed is not None:
        entries = [replace(e, split=fixed.get(e.video_id, "")) for e in entries]
        unlisted = sum(not e.split for e in entries)
        if unlisted:
            log.warning("%s lists %d of %d videos; the rest get a seeded split",
                        root / SPLITS_FILE, len(entries) - unlisted, len(entries))
    return assign_splits(entries, split_cfg, test_fraction=TEST_FRACTION)


def metadata_files(root: Path, cfg: dict) -> list[Path]:
    return [root / SPLITS_FILE]


def read_splits_csv(path: Path) -> dict[str, str] | None:
    """video_id -> split from a ``video_id,split`` CSV; None if the file is absent."""
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"video_id", "split"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected columns video_id,split, got {reader.fieldnames}")
        out = {}
        for line, row in enumerate(reader, start=2):
            split = (row["split"] or "").strip()
            if split not in SPLITS:
                raise ValueError(f"{path}:{line}: split must be one of {SPLITS}, got {split!r}")
            out[(row["video_id"] or "").strip()] = split
    return out
