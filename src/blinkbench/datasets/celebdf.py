"""Celeb-DF adapter (v1 and v2 share the layout).

Layout::

    root/Celeb-real/id{N}_{k}.mp4                 real; identity idN
    root/YouTube-real/{k}.mp4                     real; no identity (each video is its own group)
    root/Celeb-synthesis/id{T}_id{S}_{k}.mp4      fake; target idT (video), source idS (face)
    root/List_of_testing_videos.txt               official test set, lines "1 YouTube-real/00170.mp4"
                                                  or "0 Celeb-synthesis/id0_id1_0000.mp4" (1 = real)

``video_id`` is ``{folder}_{stem}`` (``Celeb-real_id0_0003``, ``YouTube-real_00170``,
``Celeb-synthesis_id0_id1_0000``). Listed test videos are test, whatever else holds, and
never enter train or val (a listed file that is absent is still an entry, status
"missing"; a listed name that is absolute or climbs out of the root with ``../`` is never
read: it is an entry with an error, status "error" in the manifest). Each listed video is
its own group: the official protocol reuses training identities in test, so identity
groups could not keep to one split.

Val is carved from the other videos by identity, seeded (:func:`base.assign_splits` with
the target and source identities as keys): a video whose target or source identity is a
val identity goes to val, so no val identity appears in train. A fake pairing a val
identity with a train identity is in val, so train identities can appear as the other
half of a val fake; making the two identity sets fully disjoint would need whole connected
components of the face-swap graph, which in Celeb-DF span almost every identity. The
per-identity probability is calibrated so that about ``splits.val_fraction`` of the videos
land in val. YouTube-real videos are split at random (seeded), one group each. Without the
test list (a warning is logged) a seeded 20 % of the groups is held out as test instead.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .base import (
    TEST_FRACTION, Entry, SplitConfig, assign_splits, list_videos, name_under, rejected_id, safe_id, video_entry,
)  # fmt: skip

log = logging.getLogger(__name__)

OPTIONS: frozenset[str] = frozenset()
LAYOUT = "root/Celeb-real, root/YouTube-real, root/Celeb-synthesis and root/List_of_testing_videos.txt"
CELEB_REAL, YOUTUBE_REAL, SYNTHESIS = "Celeb-real", "YouTube-real", "Celeb-synthesis"
FOLDERS = (CELEB_REAL, YOUTUBE_REAL, SYNTHESIS)
TEST_LIST = "List_of_testing_videos.txt"

_REAL = re.compile(r"^(id\d+)_(\d+)$")
_FAKE = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")


def discover(root: Path, cfg: dict, split_cfg: SplitConfig) -> list[Entry]:
    files = {f"{folder}/{p.name}": p for folder in FOLDERS for p in list_videos(root / folder)}
    test = read_test_list(root / TEST_LIST)
    if test is None:
        log.warning("Celeb-DF %s: %s not found; holding out a seeded %d%% of groups as test",
                    root, TEST_LIST, round(100 * TEST_FRACTION))
    entries = []
    for rel in sorted(set(files) | set(test or {})):
        folder, _, name = rel.partition("/")
        path, error = name_under(root, rel)
        if error:  # a listed name outside the root: an error row, never read
            entries.append(_rejected(path, rel, error, (test or {}).get(rel, "fake")))
            continue
        if folder not in FOLDERS:
            log.warning("Celeb-DF %s: %s lists %s, outside %s: skipped", root, TEST_LIST, rel, FOLDERS)
            continue
        entry = _entry(root / folder / name, folder, rel in (test or {}))
        if test and rel in test and test[rel] != entry.label:
            log.warning("Celeb-DF %s: %s labels %s %s, but its folder says %s (folder kept)",
                        root, TEST_LIST, rel, test[rel], entry.label)
        entries.append(entry)
    return assign_splits(
        entries,
        split_cfg,
        test_fraction=0.0 if test is not None else TEST_FRACTION,
        keys=lambda e: tuple(k for k in (e.target_id, e.source_id) if k),
    )


def _entry(path: Path, folder: str, is_test: bool) -> Entry:
    vid = safe_id(folder, path.stem)
    real = folder != SYNTHESIS
    target, source = vid, ""  # YouTube-real: no identity, the video is its own
    if folder != YOUTUBE_REAL:
        m = (_REAL if real else _FAKE).match(path.stem)
        target, source = (m[1], "" if real else m[2]) if m else ("", "")
        if not m:
            log.warning("Celeb-DF: unrecognised file name %s: grouped on its own", path)
    return video_entry(vid, path, "real" if real else "fake", SYNTHESIS, source_id=source, target_id=target,
                       split="test" if is_test else "", group=vid if is_test else (target or vid))


def _rejected(path: Path, rel: str, error: str, label: str) -> Entry:
    vid = rejected_id("test", safe_id(Path(rel).stem), raw=rel)
    return video_entry(vid, path, label, SYNTHESIS, split="test", group=vid, error=error)


def metadata_files(root: Path, cfg: dict) -> list[Path]:
    return [root / TEST_LIST]


def read_test_list(path: Path) -> dict[str, str] | None:
    """``folder/file`` -> "real"/"fake" from the official test list; None if absent."""
    if not path.is_file():
        return None
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text: {exc}") from None
    out = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        flag, _, rel = line.strip().partition(" ")
        if flag not in ("0", "1") or not rel.strip():
            raise ValueError(f"{path}:{n}: expected '<1 real|0 fake> <folder>/<file>', got {line!r}")
        out[rel.strip().replace("\\", "/")] = "real" if flag == "1" else "fake"
    return out
