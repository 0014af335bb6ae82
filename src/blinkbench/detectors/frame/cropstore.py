"""Face crops of many videos read from disk on demand, so training and evaluating a frame
detector does not hold a dataset's crops in memory (issue 13 item 8: FF++ c23's crops as one
array would be ~16 GB, and concatenating the per-video arrays needed that twice).

The crop files (``data/crops/<dataset>/<video>.npz``) are compressed, and a compressed npz
member can be neither memory-mapped nor read in part. The first time a video's crops are
needed they are therefore copied, one video at a time, into an uncompressed ``.npy`` cache
(``paths.PATTERNS["crop_cache"]``, outside the crops folder that DVC tracks), written
atomically (:func:`blinkbench.core.io.atomic_path`) and stamped with the crop file's
modification time: a newer crop file makes it stale and it is rewritten.

A :class:`CropStore` is a read-only ``(n, S, S, 3)`` uint8 array over such files, one row
per crop in the order given:

- ``store[i]`` and ``store[a:b]`` read those crops (``pread``: not a memory map, whose
  touched pages would stay in the process's resident set until unmapped) and return arrays;
- ``store[mask]`` / ``store[indices]`` return a new store over those rows (nothing is read),
  which is what ``CropSet.subset`` and the label filters do;
- ``np.asarray(store)`` reads everything (a fallback for code that needs one array; the
  detectors here never do it).

The bytes read are the crop file's own, so everything computed from a store is what the
same code computed from the arrays in memory (tests compare trained models bit for bit).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from blinkbench.core import io, paths


class CropStore:
    """Read-only uint8 crops ``(n, S, S, 3)`` in uncompressed ``.npy`` files (see module doc)."""

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, files: Sequence[tuple[str, int]], crop_shape: tuple[int, ...],
                 src: np.ndarray, row: np.ndarray):
        """``files``: (path, byte offset of the data) per source file; ``src``/``row``: per crop
        the file it is in and its row there."""
        self._files = [(str(p), int(o)) for p, o in files]
        self.crop_shape = tuple(int(x) for x in crop_shape)
        self._src = np.asarray(src, np.int32)
        self._row = np.asarray(row, np.int64)
        self._nbytes = int(np.prod(self.crop_shape))

    # ------------------------------------------------------------------ building

    @classmethod
    def from_npy(cls, files: Sequence[str | Path]) -> "CropStore":
        """A store over all rows of these ``.npy`` files (uint8, same crop shape)."""
        entries, counts, shape = [], [], None
        for f in files:
            n, s, off = npy_layout(f)
            if shape is not None and s != shape:
                raise ValueError(f"{f}: crops of shape {s}, others {shape}")
            shape = s
            entries.append((str(f), off))
            counts.append(n)
        if shape is None:
            raise ValueError("CropStore.from_npy: no files")
        counts = np.asarray(counts, np.int64)
        src = np.repeat(np.arange(len(entries)), counts)
        row = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        return cls(entries, shape, src, row)

    @classmethod
    def concat(cls, stores: Sequence["CropStore"]) -> "CropStore":
        stores = list(stores)
        if not stores:
            raise ValueError("CropStore.concat: nothing to concatenate")
        shape = stores[0].crop_shape
        files, srcs, rows = [], [], []
        for s in stores:
            if s.crop_shape != shape:
                raise ValueError(f"CropStore.concat: crops of shape {s.crop_shape} and {shape}")
            srcs.append(s._src + len(files))
            rows.append(s._row)
            files.extend(s._files)
        return cls(files, shape, np.concatenate(srcs), np.concatenate(rows))

    # ------------------------------------------------------------------ array interface

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._src),) + self.crop_shape

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self._src)

    def __repr__(self) -> str:
        return f"CropStore(shape={self.shape}, files={len(self._files)})"

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"crop {i} outside a store of {len(self)}")
            return self.read(np.array([i % len(self)]))[0]
        if isinstance(key, slice):
            return self.read(np.arange(len(self))[key])
        if isinstance(key, tuple):          # e.g. store[i, ..., 0]: read the rows, index the rest
            head = self[key[0]]
            if isinstance(key[0], (int, np.integer)):
                return head[key[1:]]
            return np.asarray(head)[(slice(None),) + key[1:]]
        k = np.asarray(key)
        if k.ndim == 0 and np.issubdtype(k.dtype, np.integer):
            return self[int(k)]
        if k.dtype == bool:
            if k.shape != (len(self),):
                raise IndexError(f"boolean index of shape {k.shape} for a store of {len(self)}")
            k = np.flatnonzero(k)
        elif not np.issubdtype(k.dtype, np.integer):
            if k.size:
                raise IndexError(f"a store is indexed by ints, slices or masks, not {k.dtype}")
            k = k.astype(np.int64)
        if k.size and (k.min() < -len(self) or k.max() >= len(self)):
            raise IndexError(f"index out of range for a store of {len(self)}")
        k = k % max(len(self), 1)
        return CropStore(self._files, self.crop_shape, self._src[k], self._row[k])

    def __array__(self, dtype=None, copy=None):
        a = self.read(np.arange(len(self)))
        return a if dtype is None else a.astype(dtype)

    def read(self, idx: np.ndarray) -> np.ndarray:
        """The crops at positions ``idx`` as one array; consecutive rows of one file are one read."""
        idx = np.asarray(idx, np.int64)
        out = np.empty((len(idx),) + self.crop_shape, np.uint8)
        if not len(idx):
            return out
        src, row = self._src[idx], self._row[idx]
        brk = np.flatnonzero((np.diff(src) != 0) | (np.diff(row) != 1)) + 1
        starts = np.concatenate([[0], brk])
        ends = np.concatenate([brk, [len(idx)]])
        fds: dict[int, int] = {}
        try:
            for a, b in zip(starts.tolist(), ends.tolist()):
                s = int(src[a])
                if s not in fds:
                    fds[s] = os.open(self._files[s][0], os.O_RDONLY)
                want = (b - a) * self._nbytes
                got = os.preadv(fds[s], [memoryview(out[a:b]).cast("B")], self._files[s][1] + int(row[a]) * self._nbytes)
                if got != want:
                    raise OSError(f"{self._files[s][0]}: short read ({got} of {want} bytes): file changed or damaged")
        finally:
            for fd in fds.values():
                os.close(fd)
        return out


def as_crops(crops):
    """``crops`` as is when it is a :class:`CropStore`, else ``np.asarray(crops)``."""
    return crops if isinstance(crops, CropStore) else np.asarray(crops)


def npy_layout(path: str | Path) -> tuple[int, tuple[int, ...], int]:
    """(rows, crop shape, data offset) of an uncompressed C-order uint8 ``.npy`` of crops."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if dtype != np.uint8 or fortran or len(shape) != 4:
        raise ValueError(f"{path}: not C-order uint8 (n, H, W, C) crops: {dtype}, {shape}, fortran={fortran}")
    return int(shape[0]), tuple(int(x) for x in shape[1:]), offset


def cached_crops(npz: str | Path, dataset: str, video: str) -> tuple[Path, np.ndarray]:
    """The uncompressed cache of a crop file (written now if missing or older than the crop
    file) and the crop file's frame indices. One video's crops are in memory while writing."""
    npz = Path(npz)
    st = npz.stat()
    cache = paths.path("crop_cache", dataset=dataset, video=video)
    with np.load(npz) as z:
        frames = np.asarray(z["frames"])
        fresh = False
        try:
            fresh = cache.stat().st_mtime_ns == st.st_mtime_ns and npy_layout(cache)[0] == len(frames)
        except (OSError, ValueError):
            fresh = False
        if not fresh:
            crops = np.ascontiguousarray(z["crops"], dtype=np.uint8)
            with io.atomic_path(cache, suffix=".npy") as tmp:
                np.save(tmp, crops, allow_pickle=False)
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    return cache, frames
