"""DFDC (Deepfake Detection Challenge) adapter: the training parts, plus an optional test set.

Layout::

    root/dfdc_train_part_{N}/metadata.json   {"x.mp4": {"label": "FAKE"|"REAL", "split": "train",
                                                         "original": "y.mp4"}}  (original: fakes only)
    root/dfdc_train_part_{N}/x.mp4
    <test_dir>/<filename>                    optional test videos, labelled by ``test_labels``:
    <test_labels>                            a CSV with columns filename,label (1 = fake, 0 = real)

``test_labels`` is absolute or relative to root; ``test_dir`` (same rule) defaults to the
folder of ``test_labels``. Videos come from metadata.json, not from the folder listing: a
listed file that is absent (it happens in the real download) is an entry whose path does
not exist, so its manifest row has status "missing"; unlisted files are ignored.

``video_id`` is ``p{N}_{stem}`` for the training parts (``p0_brtujopkby``) and
``test_{stem}`` for the test set. A fake is made by pasting another face onto its
original video, so a fake's ``target_id`` is the original's stem and its ``source_id`` is
empty (the face donor is not recorded); a real video's ``target_id`` is its own stem.
``group`` is the original's stem for fakes and the own stem for reals, so a fake and its
original always share a split. Training parts are train, with val carved by group
(seeded, ``splits.val_fraction``); the test set is test, one group per video.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

from .base import ORIGINAL, Entry, SplitConfig, assign_splits, resolve_under, safe_id

log = logging.getLogger(__name__)

OPTIONS = frozenset({"test_labels", "test_dir"})
LAYOUT = "root/dfdc_train_part_<N>/metadata.json (+ optional test_labels CSV)"
PART_GLOB = "dfdc_train_part_*"
METHOD = "dfdc"  # DFDC does not say which of its face-swap methods made a fake

_PART = re.compile(r"^dfdc_train_part_(.+)$")


def discover(root: Path, cfg: dict, split_cfg: SplitConfig) -> list[Entry]:
    entries = [e for part in _parts(root) for e in _part_entries(part)]
    entries = assign_splits(entries, split_cfg)  # only val is carved: every part is training data
    if "test_labels" in cfg:
        labels = resolve_under(root, cfg["test_labels"])
        test_dir = resolve_under(root, cfg["test_dir"]) if "test_dir" in cfg else labels.parent
        entries += _test_entries(labels, test_dir)
    elif "test_dir" in cfg:
        raise ValueError("dfdc: test_dir is given without test_labels (the CSV that labels it)")
    return entries


def metadata_files(root: Path, cfg: dict) -> list[Path]:
    labels = [resolve_under(root, cfg["test_labels"])] if "test_labels" in cfg else []
    return [part / "metadata.json" for part in _parts(root)] + labels


def _parts(root: Path) -> list[Path]:
    def number(p: Path) -> tuple[int, str]:
        suffix = _PART.match(p.name)[1]  # type: ignore[index]  # the glob guarantees a match
        return (int(suffix), "") if suffix.isdigit() else (1 << 30, suffix)

    return sorted((p for p in root.glob(PART_GLOB) if p.is_dir()), key=number)


def _part_entries(part: Path) -> list[Entry]:
    meta_path = part / "metadata.json"
    if not meta_path.is_file():
        log.warning("DFDC: %s has no metadata.json (labels unknown): skipped", part)
        return []
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise ValueError(f"{meta_path}: not valid JSON: {exc}") from None
    prefix = "p" + _PART.match(part.name)[1]  # type: ignore[index]
    out = []
    for filename, info in sorted(meta.items()):
        label = str(info.get("label", "")).lower()
        if label not in ("real", "fake"):
            raise ValueError(
                f"{meta_path}: {filename}: label must be REAL or FAKE, got {info.get('label')!r}"
            )
        stem = Path(filename).stem
        original = Path(info.get("original") or "").stem if label == "fake" else ""
        if label == "fake" and not original:
            log.warning("DFDC: %s: fake %s has no original: grouped on its own", meta_path, filename)
        target = original if label == "fake" else stem
        out.append(_entry(safe_id(prefix, stem), part / filename, label, target, "", target or stem))
    return out


def _test_entries(labels: Path, test_dir: Path) -> list[Entry]:
    if not labels.is_file():
        raise ValueError(f"dfdc: test_labels file not found: {labels}")
    out = []
    with labels.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"filename", "label"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{labels}: expected columns filename,label, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                flag = int(float(row["label"]))
            except (TypeError, ValueError):
                flag = -1
            if flag not in (0, 1):
                raise ValueError(
                    f"{labels}:{line}: label must be 1 (fake) or 0 (real), got {row['label']!r}"
                )
            filename = row["filename"].strip()
            stem, label = Path(filename).stem, "fake" if flag else "real"
            vid = safe_id("test", stem)
            out.append(_entry(vid, test_dir / filename, label, "" if flag else stem, "test", vid))
    return out


def _entry(vid: str, path: Path, label: str, target: str, split: str, group: str) -> Entry:
    return Entry(
        video_id=vid,
        path=path,
        label=label,
        method=ORIGINAL if label == "real" else METHOD,
        source_id="",
        target_id=target,
        split=split,
        compression="",
        group=group,
    )
