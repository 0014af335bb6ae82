"""DFDC (Deepfake Detection Challenge) adapter: the training parts, plus an optional test set.

Layout::

    root/dfdc_train_part_{N}/metadata.json   {"x.mp4": {"label": "FAKE"|"REAL", "split": "train",
                                                         "original": "y.mp4"}}  (original: fakes only)
    root/dfdc_train_part_{N}/x.mp4
    root/train_sample_videos/metadata.json   the Kaggle competition's sample folder: same format
    root/train_sample_videos/x.mp4
    <test_dir>/<filename>                    optional test videos, labelled by ``test_labels``:
    <test_labels>                            a CSV with columns filename,label (1 = fake, 0 = real)

``test_labels`` is absolute or relative to root; ``test_dir`` (same rule) defaults to the
folder of ``test_labels``. Without a labelled test set, ``test_parts`` names the parts that
form the test split instead (``[49]`` or ``["dfdc_train_part_49"]``; ``train_sample_videos``
or ``sample`` for the Kaggle folder); the two options exclude each other. Videos come from
metadata.json, not from the folder listing: a listed file that is absent (it happens in the
real download) is an entry whose path does not exist, so its manifest row has status
"missing"; unlisted files are ignored. A file name in metadata.json or labels.csv that is
absolute or climbs out of its folder (``../``) is never read: it becomes an entry with an
error (manifest status "error"), and the rest of the dataset goes on.

``video_id`` is ``p{N}_{stem}`` for the training parts (``p0_brtujopkby``),
``sample_{stem}`` for the Kaggle folder and ``test_{stem}`` for the test set. A fake is made
by pasting another face onto its original video, so a fake's ``target_id`` is the original's
stem and its ``source_id`` is empty (the face donor is not recorded); a real video's
``target_id`` is its own stem. ``group`` is the original's stem for fakes and the own stem
for reals, so a fake and its original always share a split. Training parts are train, with
val carved by group (seeded, ``splits.val_fraction``); the test set is test, one group per
video. With ``test_parts``, every group with a video in a test part is test (a fake in a
test part takes its original from a training part along, so no group spans two splits).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import replace
from pathlib import Path

from blinkbench.core.labels import LABELS, label_of

from .base import (
    Entry, SplitConfig, assign_splits, name_under, rejected_id, resolve_under, safe_id, video_entry,
)  # fmt: skip

log = logging.getLogger(__name__)

OPTIONS = frozenset({"test_labels", "test_dir", "test_parts"})
LAYOUT = ("root/dfdc_train_part_<N>/metadata.json or root/train_sample_videos/metadata.json "
          "(+ optional test_labels CSV)")
PART_GLOB = "dfdc_train_part_*"
KAGGLE_SAMPLE = "train_sample_videos"  # the Kaggle competition's labelled sample folder
METHOD = "dfdc"  # DFDC does not say which of its face-swap methods made a fake

_PART = re.compile(r"^dfdc_train_part_(.+)$")


def discover(root: Path, cfg: dict, split_cfg: SplitConfig) -> list[Entry]:
    if "test_parts" in cfg and ("test_labels" in cfg or "test_dir" in cfg):
        raise ValueError("dfdc: test_parts and test_labels/test_dir both name a test set: give one")
    parts = _parts(root)
    test_parts = _test_parts(parts, cfg.get("test_parts") or [])
    entries = [e for part in parts for e in _part_entries(part, part in test_parts)]
    entries = _whole_groups_to_test(entries)
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
    """The training parts by number, then the Kaggle sample folder if there is one."""
    def number(p: Path) -> tuple[int, str]:
        m = _PART.match(p.name)
        if m is None:  # the Kaggle folder
            return (1 << 31, p.name)
        return (int(m[1]), "") if m[1].isdigit() else (1 << 30, m[1])

    found = [p for p in root.glob(PART_GLOB) if p.is_dir()]
    if (root / KAGGLE_SAMPLE).is_dir():
        found.append(root / KAGGLE_SAMPLE)
    return sorted(found, key=number)


def _prefix(part: Path) -> str:
    m = _PART.match(part.name)
    return "p" + m[1] if m else "sample"


def _names(part: Path) -> set[str]:
    """What ``test_parts`` may call a part: its folder name and its number, or ``sample``."""
    m = _PART.match(part.name)
    return {part.name, m[1] if m else "sample"}


def _test_parts(parts: list[Path], names: list) -> set[Path]:
    """The parts ``test_parts`` names (a part number, a folder name, or ``sample``)."""
    chosen = set()
    for name in names:
        hit = [p for p in parts if str(name) in _names(p)]
        if not hit:
            raise ValueError(f"dfdc: test_parts names {name!r}, which is not a part found here "
                             f"({', '.join(p.name for p in parts) or 'none'})")
        chosen.update(hit)
    return chosen


def _whole_groups_to_test(entries: list[Entry]) -> list[Entry]:
    """Every entry whose group has a member in a test part becomes test too."""
    test_groups = {e.group for e in entries if e.split == "test"}
    moved = [e for e in entries if e.group in test_groups and e.split != "test"]
    if moved:
        log.warning("DFDC: %d videos of training parts share a group with a test part's video: "
                    "they are test too", len(moved))
    return [replace(e, split="test") if e.group in test_groups else e for e in entries]


def _part_entries(part: Path, test: bool = False) -> list[Entry]:
    meta_path = part / "metadata.json"
    if not meta_path.is_file():
        log.warning("DFDC: %s has no metadata.json (labels unknown): skipped", part)
        return []
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise ValueError(f"{meta_path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object of file name -> label, got {type(meta).__name__}")
    prefix = _prefix(part)
    out = []
    for filename, info in sorted(meta.items()):
        info = info if isinstance(info, dict) else {}
        label = str(info.get("label", "")).lower()
        if label not in LABELS:
            raise ValueError(
                f"{meta_path}: {filename}: label must be REAL or FAKE, got {info.get('label')!r}"
            )
        path, error = name_under(part, filename)
        stem = safe_id(Path(filename).stem)
        original = safe_id(Path(str(info.get("original") or "")).stem) if label == "fake" else ""
        if label == "fake" and not original and not error:
            log.warning("DFDC: %s: fake %s has no original: grouped on its own", meta_path, filename)
        target = original if label == "fake" else stem
        vid = rejected_id(prefix, stem, raw=filename) if error else safe_id(prefix, stem)
        group = vid if error else (target or stem)
        out.append(_entry(vid, path, label, target, "test" if test else "", group, error))
    return out


def _test_entries(labels: Path, test_dir: Path) -> list[Entry]:
    if not labels.is_file():
        raise ValueError(f"dfdc: test_labels file not found: {labels}")
    out = []
    try:
        text = labels.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{labels}: not UTF-8 text: {exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise ValueError(f"{labels}: not a CSV file: {exc}") from None
    if not {"filename", "label"} <= set(fieldnames or ()):
        raise ValueError(f"{labels}: expected columns filename,label, got {fieldnames}")
    rows = _csv_rows(reader, labels)
    for line, row in enumerate(rows, start=2):
        try:
            flag = int(float(row["label"]))
        except (TypeError, ValueError, OverflowError):  # empty, text, inf
            flag = -1
        if flag not in LABELS.values():
            raise ValueError(
                f"{labels}:{line}: label must be 1 (fake) or 0 (real), got {row['label']!r}"
            )
        filename = (row["filename"] or "").strip()
        path, error = name_under(test_dir, filename)
        stem, label = safe_id(Path(filename).stem), label_of(flag)
        vid = rejected_id("test", stem, raw=filename) if error else safe_id("test", stem)
        out.append(_entry(vid, path, label, "" if flag else stem, "test", vid, error))
    return out


def _csv_rows(reader: csv.DictReader, path: Path) -> list[dict]:
    try:
        return list(reader)
    except csv.Error as exc:
        raise ValueError(f"{path}: not a CSV file: {exc}") from None


def _entry(vid: str, path: Path, label: str, target: str, split: str, group: str, error: str = "") -> Entry:
    return video_entry(vid, path, label, METHOD, target_id=target, split=split, group=group, error=error)
