"""FaceForensics++ adapter (the dataset's own download layout).

Layout::

    root/original_sequences/youtube/{raw,c23,c40}/videos/004.mp4                  real
    root/original_sequences/actors/{raw,c23,c40}/videos/01__walking.mp4           real (DFD actors)
    root/manipulated_sequences/{Deepfakes,Face2Face,FaceSwap,NeuralTextures,FaceShifter}/
         {raw,c23,c40}/videos/004_982.mp4              fake: target 004, source 982
    root/manipulated_sequences/DeepFakeDetection/{raw,c23,c40}/videos/
         01_02__walking__YVGY8LOK.mp4                  fake: target actor 01, source actor 02
    root/splits/{train,val,test}.json                  optional official splits: JSON lists of
                                                       [target, source] id pairs

Options: ``compressions`` (default ``[c23]``), ``methods`` (default: every folder under
``manipulated_sequences``), ``originals`` (default ``[youtube, actors]``). Other folders
(``masks``, ...) are ignored. ``video_id`` is ``{originals or method}_{compression}_{stem}``
(``youtube_c23_004``, ``NeuralTextures_c23_004_982``), unique across methods and compressions.

Groups and splits: YouTube videos are grouped by their pair (``004_982``: the original 004,
the original 982 and every fake made between them, in every method and compression); the
pairs are read from the file names of all method folders and the splits files, whatever
``methods``/``compressions`` select, so a video's group never depends on the selection.
The official splits put a real id in the split of the pair containing it and a fake
``t_s`` in the split of the pair (t, s) or (s, t). Without ``splits/`` (a warning is
logged), and for the actors/DeepFakeDetection videos, which the official files do not
cover, videos get a seeded split by group (DFD: the target actor), 20 % test.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .base import SPLITS, TEST_FRACTION, Entry, SplitConfig, assign_splits, list_videos, safe_id, video_entry

log = logging.getLogger(__name__)

OPTIONS = frozenset({"compressions", "methods", "originals"})
LAYOUT = (
    "root/original_sequences/{youtube,actors}/<comp>/videos and "
    "root/manipulated_sequences/<method>/<comp>/videos"
)
ORIGINALS_DIR = "original_sequences"
METHODS_DIR = "manipulated_sequences"
SPLITS_DIR = "splits"
ORIGINAL_KINDS = ("youtube", "actors")
DEFAULT_COMPRESSIONS = ("c23",)

_YOUTUBE_REAL = re.compile(r"^(\d+)$")  # 004
_ACTOR_REAL = re.compile(r"^(\d+)__(.+)$")  # 01__walking_and_outside_surprised
_YOUTUBE_FAKE = re.compile(r"^(\d+)_(\d+)$")  # 004_982 (target_source)
_ACTOR_FAKE = re.compile(r"^(\d+)_(\d+)__(.+)__([A-Za-z0-9]+)$")  # 01_02__scene__HASH


def parse_stem(stem: str) -> tuple[str, str, bool]:
    """(target, source, youtube-based) from a file stem; ("", "", False) if unrecognised."""
    if m := _YOUTUBE_REAL.match(stem):
        return m[1], "", True
    if m := _YOUTUBE_FAKE.match(stem):
        return m[1], m[2], True
    if m := _ACTOR_FAKE.match(stem):
        return m[1], m[2], False
    if m := _ACTOR_REAL.match(stem):
        return m[1], "", False
    return "", "", False


def discover(root: Path, cfg: dict, split_cfg: SplitConfig) -> list[Entry]:
    compressions = list(cfg.get("compressions", DEFAULT_COMPRESSIONS))
    found_methods = sorted(d.name for d in _subdirs(root / METHODS_DIR))
    methods = list(cfg.get("methods", found_methods))
    for m in sorted(set(methods) - set(found_methods)):
        log.warning("FF++ %s: method folder %s/%s not found", root, METHODS_DIR, m)

    folders = [(kind, ORIGINALS_DIR, kind) for kind in cfg.get("originals", ORIGINAL_KINDS)]
    folders += [(m, METHODS_DIR, m) for m in methods]
    official = read_official_splits(root / SPLITS_DIR)
    groups = pair_groups(root, official)

    entries = []
    for name, top, sub in folders:
        for comp in compressions:
            for path in list_videos(root / top / sub / comp / "videos"):
                entries.append(_entry(path, name, comp, top == ORIGINALS_DIR, groups, official))

    pending = sum(not e.split for e in entries)
    if official is None:
        log.warning("FF++ %s: official splits not found (%s/{train,val,test}.json); assigning "
                    "seeded splits by group to all %d videos", root, SPLITS_DIR, pending)
    elif pending:
        log.warning("FF++ %s: %d videos (actors/DeepFakeDetection or ids absent from the official "
                    "splits) get seeded splits by group", root, pending)
    return assign_splits(entries, split_cfg, test_fraction=TEST_FRACTION)


def _entry(
    path: Path, name: str, comp: str, real: bool, groups: dict[str, str],
    official: OfficialSplits | None,
) -> Entry:  # fmt: skip
    target, source, youtube = parse_stem(path.stem)
    vid = safe_id(name, comp, path.stem)
    if not target:
        log.warning("FF++: unrecognised file name %s: grouped on its own", path)
    split = official.split_of(target, source) if youtube and official is not None else ""
    return video_entry(vid, path, "real" if real else "fake", name, source_id=source, target_id=target, split=split,
                       compression=comp, group=(groups.get(target, target) if youtube else target) or vid)


def metadata_files(root: Path, cfg: dict) -> list[Path]:
    return [root / SPLITS_DIR / f"{s}.json" for s in SPLITS]


@dataclass(frozen=True)
class OfficialSplits:
    """The official splits: the split of each [target, source] pair and of each id in one."""

    pairs: dict[frozenset[str], str]
    ids: dict[str, str]

    def split_of(self, target: str, source: str) -> str:
        """A fake's pair split (either order) or a real id's split; "" if not covered."""
        return self.pairs.get(frozenset((target, source)), "") if source else self.ids.get(target, "")


def read_official_splits(folder: Path) -> OfficialSplits | None:
    """Official splits from ``{train,val,test}.json``; None if none of the files exists."""
    files = {s: folder / f"{s}.json" for s in SPLITS}
    if not any(f.is_file() for f in files.values()):
        return None
    pairs: dict[frozenset[str], str] = {}
    owner: dict[str, str] = {}
    for split, f in files.items():
        if not f.is_file():
            log.warning("FF++: %s not found; its pairs get seeded splits", f)
            continue
        try:
            listed = json.loads(f.read_text())
            listed = [(str(a), str(b)) for a, b in listed]
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{f}: expected a JSON list of [target, source] pairs ({exc})") from None
        for a, b in listed:
            for i in (a, b):
                if owner.setdefault(i, split) != split:
                    raise ValueError(f"{folder}: id {i} is listed in both {owner[i]} and {split}")
            pairs[frozenset((a, b))] = split
    return OfficialSplits(pairs, owner)


def pair_groups(root: Path, official: OfficialSplits | None) -> dict[str, str]:
    """YouTube id -> group name: ids linked by a fake (in any method folder and compression)
    or an official pair form one group, named by its sorted ids (``004_982``)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    links = [tuple(p) for p in (official.pairs if official else ()) if len(p) == 2]
    for path in sorted((root / METHODS_DIR).glob("*/*/videos/*")):
        if m := _YOUTUBE_FAKE.match(path.stem):
            links.append((m[1], m[2]))
    for a, b in links:
        parent[find(a)] = find(b)
    members: dict[str, list[str]] = {}
    for x in list(parent):
        members.setdefault(find(x), []).append(x)
    return {x: "_".join(sorted(ms)) for ms in members.values() for x in ms}


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
