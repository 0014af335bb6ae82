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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from blinkbench.core.io import sha256_file
from blinkbench.core.labels import LABELS

if TYPE_CHECKING:  # both are imported where used: the workflow's parse lists videos, it opens none
    import pandas as pd

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
    error: str = ""  # why the file must not be read (a name outside the root, not UTF-8);
    #                  such an entry gets a manifest row with status "error" and is never opened


def video_entry(
    video_id: str, path: Path, label: str, fake_method: str, *, group: str, source_id: str = "",
    target_id: str = "", split: str = "", compression: str = "", error: str = "",
) -> Entry:  # fmt: skip
    """The :class:`Entry` of one video, its ``method`` following its label as in every
    adapter: :data:`ORIGINAL` for a real video, ``fake_method`` for a fake one; the fields an
    adapter does not know stay empty."""
    method = ORIGINAL if label == "real" else fake_method
    return Entry(video_id, path, label, method, source_id, target_id, split, compression, group, error)


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
    folders (such as half-written ``.name.tmp-*`` files) are skipped. [] if it is absent.

    ``recursive`` descends into sub-folders, following symlinked ones (each real folder is
    visited once, so a link loop ends); see :func:`check_symlinks` for links that lead
    outside the dataset root."""
    if not folder.is_dir():
        return []
    candidates = _walk(folder) if recursive else folder.iterdir()
    return sorted(
        p
        for p in candidates
        if p.suffix.lower() in VIDEO_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def _walk(folder: Path) -> Iterable[Path]:
    """Every path below ``folder``, following symlinked folders, each real folder once."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a loop, or a second link to a visited folder
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        # real folders before links, so a folder reached both ways keeps its real path
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")),
                             key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d))
        base = Path(dirpath)
        yield from (base / f for f in filenames)


def resolve_under(root: Path, value: str) -> Path:
    """A config path: absolute as given, otherwise relative to the dataset root.

    For paths from the user's params only; a file name read from a dataset's own metadata
    goes through :func:`name_under`, which never leaves its folder."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


OUTSIDE = "outside the dataset root"


def name_under(folder: Path, name: str) -> tuple[Path, str]:
    """``(path, error)`` for a file name read from a metadata file (DFDC ``metadata.json``
    and test ``labels.csv``, the Celeb-DF test list), relative to ``folder``.

    The name is read lexically (``/`` and ``\\`` both separate) and must stay inside
    ``folder``: an empty or absolute name, a drive or UNC prefix, a NUL byte or any ``..``
    component gives an error, and the caller makes an error row of it (the file is never
    opened: ``../../etc/passwd`` gets no probe and no hash).
    The row's ``path`` is ``folder`` joined with the name as written (so ``/etc/passwd``
    for an absolute name): it says what was asked for; nothing opens an error row's path.
    Symlinks are not resolved here: see :func:`check_symlinks`."""
    raw = str(name).strip().replace("\\", "/")
    parts = PurePosixPath(raw).parts
    bad = (
        not raw
        or raw.startswith("/")
        or re.match(r"^[A-Za-z]:", raw) is not None
        or ".." in parts
        or "\x00" in raw
    )
    if bad:
        error = f"{OUTSIDE}: file name {name!r} is empty, absolute or climbs out of its folder"
        return folder / raw.replace("\x00", ""), error
    return folder.joinpath(*[p for p in parts if p != "."]), ""


def rejected_id(*parts: str, raw: str) -> str:
    """A safe ``video_id`` for an entry whose name was rejected: ``safe_id(*parts)`` plus a
    hash of the raw name, so two rejected names (or one and a good file) never collide."""
    tag = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return safe_id(*parts, "rejected", tag)


def utf8_name_errors(entries: Iterable[Entry]) -> list[Entry]:
    """Entries whose path is not valid UTF-8 (a file name in another encoding shows up with
    surrogate escapes) get an error and a unique id (``safe_id`` turned the bad bytes into
    ``_``), so one such file gives one error row instead of stopping the manifest: parquet,
    JSON and the workflow's command lines all need UTF-8."""
    out = []
    for e in entries:
        try:
            str(e.path).encode("utf-8")
            e.video_id.encode("utf-8")
        except UnicodeEncodeError:
            shown = printable_path(e.path)
            e = replace(e, video_id=rejected_id(e.video_id, raw=str(os.fsencode(e.path))),
                        error=e.error or f"file name is not valid UTF-8: {shown}")
        out.append(e)
    return out


def printable_path(path: Path | str) -> str:
    """``path`` as valid UTF-8 text: bytes that are not UTF-8 are shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_symlinks(entries: Sequence[Entry], root: Path, where: str) -> None:
    """Symlinks in a dataset are followed: that is how a dataset spread over several disks
    is usually assembled (``root/dfdc_train_part_3 -> /mnt/b/part3``). The file names a
    metadata file holds are kept inside the root by :func:`name_under`; links the dataset's
    owner placed are trusted, but every file that a link takes outside the root is logged
    (one warning per dataset, with the first few), so an unpacked archive that carried a
    link to ``/etc`` does not go unnoticed."""
    try:
        top = root.resolve()
    except OSError:
        return
    outside = []
    for e in entries:
        if e.error:
            continue
        try:
            if e.path.exists() and not e.path.resolve().is_relative_to(top):
                outside.append(f"{printable_path(e.path)} -> {printable_path(e.path.resolve())}")
        except (OSError, RuntimeError):  # a symlink loop: the file cannot be opened anyway
            continue
    if outside:
        log.warning("%s: %d files are reached through symlinks leading outside %s (followed): %s%s",
                    where, len(outside), printable_path(top), "; ".join(outside[:3]),
                    " ..." if len(outside) > 3 else "")


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
    resolution, so the same layout gives the same string); bytes that are not UTF-8 are
    shown as ``\\xNN`` (:func:`printable_path`)."""
    absolute = Path(os.path.abspath(path))
    try:
        shown = absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        shown = absolute.as_posix()
    return printable_path(shown)


def measure(entry: Entry | Path) -> dict:
    """Probe and hash one entry's file. Never raises: a failure becomes status "error", and
    an entry that carries an error (see :attr:`Entry.error`) is not opened at all."""
    from blinkbench.video import codec as video

    if isinstance(entry, Entry) and entry.error:
        return {**video.VideoInfo(ERROR, entry.error).as_dict(), "sha256": ""}
    path = entry.path if isinstance(entry, Entry) else entry
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
    with ThreadPoolExecutor(max(1, workers)) as pool:
        measured = pool.map(measure, entries)
        if progress:
            from tqdm import tqdm

            measured = tqdm(measured, total=len(entries), desc=f"manifest {name}", unit="video")
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
    rows = [{k: _utf8(v) for k, v in row.items()} for row in rows]
    import pandas as pd

    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS).astype(_MANIFEST_DTYPES)


def _utf8(value):
    """Strings as valid UTF-8 (a lone surrogate from a file name or a metadata file becomes
    its ``\\udcNN`` escape), so that parquet can store every row; other values unchanged."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


# ----------------------------------------------------------------------------- quick trials

_CELL_ORDER = {"test": 0, "train": 1, "val": 2, "fake": 0, "real": 1}


def select_trial(entries: Sequence[Entry], limit: int | None, seed: int) -> list[Entry]:
    """At most ``limit`` entries for a quick trial (``max_videos``), sorted by ``video_id``.

    The cut keeps a trial meaningful instead of taking the first ids (which, for FF++, are
    all fakes of one method):

    * whole groups are taken (a fake with its original and the other fakes of that pair),
      in a seeded order (:func:`unit_draw` of the group); groups with no file on disk (or
      only entries that carry an error) come only once all the others are used;
    * each next group is the first, in that order, that holds the (split, label) cell with
      the fewest videos so far (ties: test before train before val, fake before real), so
      both labels, and test as well as train, are present as soon as ``limit`` allows;
    * while a split is still missing, a group may fill at most half of what is left (at
      least 2), so one big group cannot crowd out the others;
    * a group larger than its share is cut to its originals first (at most half the share,
      at least one) and then the fakes made from those originals; a fake never comes
      without its original (``target_id``) when that original is in its group.

    Splits are never changed (they were assigned before the cut), and the selection
    depends only on the entries, which of their files exist, ``limit`` and the seed."""
    entries = list(entries)
    if not limit or limit >= len(entries):
        return sorted(entries, key=lambda e: e.video_id)
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.split, e.group), []).append(e)

    def rank(key: tuple[str, str]) -> tuple:
        return (all(m.error for m in groups[key]), unit_draw(key[1], seed), key)

    def present(key: tuple[str, str]) -> bool:  # checked lazily: a stat per group looked at
        return any(not m.error and os.path.isfile(m.path) for m in groups[key])

    def queue(keys) -> dict[tuple[str, str], deque]:  # (split, label) -> groups holding it
        out: dict[tuple[str, str], deque] = {}
        for key in keys:
            for label in sorted({m.label for m in groups[key]}):
                out.setdefault((key[0], label), deque()).append(key)
        return out

    queues = queue(sorted(groups, key=rank))
    later: set[tuple[str, str]] = set()  # groups without a file: a second round, if needed
    second_round = False
    used: set[tuple[str, str]] = set()
    count: dict[tuple[str, str], int] = {}
    chosen: list[Entry] = []
    while len(chosen) < limit:
        for q in queues.values():
            while q and (q[0] in used or (not second_round and q[0] in later)):
                q.popleft()
        live = [c for c, q in queues.items() if q]
        if not live and later and not second_round:
            queues, second_round = queue(sorted(later, key=rank)), True
            continue
        if not live:
            break
        want = min(live, key=lambda c: (count.get(c, 0), _CELL_ORDER[c[0]], _CELL_ORDER[c[1]]))
        key = queues[want].popleft()
        if not second_round and not present(key):
            later.add(key)
            continue
        used.add(key)
        left = limit - len(chosen)
        unseen = {split for split, _ in live} - {m.split for m in chosen} - {key[0]}
        taken = _cut(groups[key], max(2, left // 2) if unseen else left, want[1])[:left]
        for m in taken:
            count[(m.split, m.label)] = count.get((m.split, m.label), 0) + 1
        chosen += taken
    return sorted(chosen, key=lambda e: e.video_id)


def _cut(members: list[Entry], budget: int, want: str) -> list[Entry]:
    """``members`` if they fit in ``budget``; else originals first (at most half the budget,
    at least one), then fakes whose original is kept or not in the group, never a fake
    without its original."""
    members = sorted(members, key=lambda m: (bool(m.error), m.video_id))
    if len(members) <= budget:
        return members
    reals = [m for m in members if m.label == "real"]
    fakes = [m for m in members if m.label == "fake"]
    real_ids = {r.target_id for r in reals}

    def admissible(f: Entry, kept: set[str]) -> bool:  # its original is kept, or not in the group
        return f.target_id not in real_ids or f.target_id in kept

    orphans = [f for f in fakes if admissible(f, set())]
    if budget == 1 or not reals:
        pool = (orphans if want == "fake" else []) or reals or orphans
        return pool[:budget]
    keep = reals[: min(len(reals), max(1, budget // 2))]
    kept = {r.target_id for r in keep}
    keep += [f for f in fakes if admissible(f, kept)][: budget - len(keep)]
    keep += reals[len(kept) : len(kept) + budget - len(keep)]
    return keep
