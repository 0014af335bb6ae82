"""Atomic artifact writes and provenance metadata."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from blinkbench.core import io


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "a" / "x.json"
    with pytest.raises(RuntimeError):
        with io.atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_parquet_meta_round_trip_and_stamp(tmp_path):
    out = tmp_path / "t.parquet"
    io.write_parquet(pd.DataFrame({"a": [1, 2]}), out, {"status": "ok", "stamp": "abc"})
    assert io.read_meta(out) == {"status": "ok", "stamp": "abc"}
    assert io.is_current(out, "abc") and not io.is_current(out, "abd")
    assert pd.read_parquet(out)["a"].tolist() == [1, 2]


def test_parquet_stream_final_meta_and_abort(tmp_path):
    schema = pa.schema([("x", pa.int32())])
    out = tmp_path / "s.parquet"
    with io.ParquetStream(out, schema, {"status": "running"}) as s:
        s.write({"x": [1, 2, 3]})
        s.write({"x": [4]})
        s.set_meta({"status": "ok", "n": 4})
    assert io.read_meta(out) == {"status": "ok", "n": 4}
    assert pd.read_parquet(out)["x"].tolist() == [1, 2, 3, 4]

    out2 = tmp_path / "aborted.parquet"
    with pytest.raises(KeyError):
        with io.ParquetStream(out2, schema) as s:
            s.write({"x": [1]})
            raise KeyError("boom")
    assert not out2.exists()
    assert not any(p.name.startswith(".aborted") for p in tmp_path.iterdir())


def test_stamp_depends_on_every_part():
    base = io.stamp("faces", 1, "sha", {"a": 1})
    assert base == io.stamp("faces", 1, "sha", {"a": 1})
    assert base != io.stamp("faces", 2, "sha", {"a": 1})
    assert base != io.stamp("faces", 1, "sha2", {"a": 1})
    assert base != io.stamp("faces", 1, "sha", {"a": 2})
