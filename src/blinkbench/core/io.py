"""Atomic, provenance-stamped artifact I/O.

Every artifact is written to a temporary file beside its destination and renamed into
place, so an interrupted run never leaves a half-written file that looks complete.
Parquet artifacts carry a ``blinkbench`` key in their schema metadata (a JSON object with at
least ``status`` and ``stamp``); ``stamp`` is a hash of the inputs and parameters that made
the artifact, which lets batch (DVC) runs skip per-video work that is already up to date.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"blinkbench"


# Temporary files of atomic_path: ``.<stem>.tmp-<pid><ext>`` (ignored by DVC: .dvcignore).
_TMP_RE = re.compile(r"^\.(?P<stem>.+)\.tmp-(?P<pid>\d+)(?P<ext>\.[^.]*)?$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone; or not a pid at all
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_temporaries(folder: str | os.PathLike, stem: str | None = None) -> list[Path]:
    """Delete temporaries of :func:`atomic_path` in ``folder`` (only those of the file named
    ``stem`` when given) that a killed process left behind: their writer's pid is no longer
    running. Returns what was deleted. A missing folder has nothing to clean."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for f in folder.iterdir():
        m = _TMP_RE.match(f.name)
        if not m or (stem is not None and m["stem"] != stem) or _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
            removed.append(f)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    ``suffix`` keeps the file extension on the temporary name for writers that pick a
    format from it (video muxers, numpy's ``.npz``). Temporaries of the same file left by a
    killed writer are deleted first (:func:`clean_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_temporaries(path.parent, path.stem)
    ext = path.suffix if suffix is None else suffix
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: None instead (recursively; NumPy floats and tuples too),
    so what blinkbench writes and prints is strict JSON."""
    import math

    import numpy as np

    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _with_meta(schema: pa.Schema, meta: dict | None) -> pa.Schema:
    if meta is None:
        return schema
    md = dict(schema.metadata or {})
    md.pop(b"pandas", None)  # pandas index metadata is noise and varies with versions
    md[META_KEY] = json.dumps(meta, sort_keys=True, default=_json_default).encode()
    return schema.with_metadata(md)


def write_parquet(data: "pa.Table | Any", path: str | os.PathLike, meta: dict | None = None) -> None:
    """Write a table (or DataFrame) atomically with blinkbench metadata."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    table = table.replace_schema_metadata(None) if meta is not None else table
    table = table.cast(_with_meta(table.schema, meta))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


class ParquetStream:
    """Incremental parquet writer (row groups as they come), atomic on close.

    Memory stays bounded by one batch whatever the video length.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, meta: dict | None = None):
        self.path = Path(path)
        self.schema = _with_meta(schema, meta)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        self.rows = 0

    def write(self, columns: dict) -> None:
        batch = pa.RecordBatch.from_pydict(columns, schema=self.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def set_meta(self, meta: dict) -> None:
        """Replace the metadata written at close (e.g. to record the final status)."""
        self._writer.add_key_value_metadata(
            {META_KEY.decode(): json.dumps(meta, sort_keys=True, default=_json_default)}
        )

    def close(self) -> None:
        self._writer.close()
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
        if self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> "ParquetStream":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_meta(path: str | os.PathLike) -> dict:
    """The blinkbench metadata of a parquet artifact ({} if absent or unreadable)."""
    try:
        md = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return {}
    # ParquetStream.set_meta stores file-level key-value metadata; it wins over schema metadata.
    try:
        kv = pq.ParquetFile(path).metadata.metadata or {}
    except (OSError, pa.ArrowInvalid):
        kv = {}
    raw = kv.get(META_KEY) or md.get(META_KEY)
    return json.loads(raw) if raw else {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stamp(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (inputs' hashes, params, step version)."""
    blob = json.dumps(parts, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def is_current(path: str | os.PathLike, expected_stamp: str) -> bool:
    """True when ``path`` exists and was made from exactly these inputs and params."""
    return Path(path).exists() and read_meta(path).get("stamp") == expected_stamp
