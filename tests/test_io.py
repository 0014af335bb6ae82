"""Atomic artifact writes and provenance metadata."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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


# A writer killed (SIGKILL: no finally runs) in the middle of a ParquetStream.
_KILLED_WRITER = """
import sys, time
import pyarrow as pa
from blinkbench.core import io
s = io.ParquetStream(sys.argv[1], pa.schema([("a", pa.int64())]))
s.write({"a": [1, 2, 3]})
print("writing", flush=True)
time.sleep(120)
"""


def _killed_write(path: Path) -> list[Path]:
    """Start writing ``path`` in a child process, kill it mid-write; return what it left."""
    p = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    return [f for f in path.parent.iterdir() if f.name != path.name]


def test_temporary_of_a_killed_writer_is_cleaned_by_the_next_write(tmp_path):
    out = tmp_path / "d" / "x.parquet"
    left = _killed_write(out)
    assert [f.name for f in left] and all(f.name.startswith(".x.tmp-") for f in left), left  # what DVC saw
    assert not out.exists()
    io.write_parquet(pd.DataFrame({"a": [1]}), out, {"status": "ok", "stamp": "s"})
    assert sorted(f.name for f in out.parent.iterdir()) == ["x.parquet"]


# A `blinkbench` command stopped by SIGTERM (Snakemake stopping its jobs, scancel, a SLURM
# time limit) in the middle of an atomic write: the command's own entry point, main().
_TERMINATED_COMMAND = """
import argparse, sys, time
from blinkbench import cli
from blinkbench.core import io

def slow(args):
    with io.atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"x" * 1000)
        print("writing", flush=True)
        time.sleep(120)
    return 0

cli.COMMANDS["slow"] = slow
parser = argparse.ArgumentParser()
parser.set_defaults(cmd="slow", verbose=False)
cli.build_parser = lambda: parser
sys.exit(cli.main([]))
"""


def test_a_command_stopped_by_sigterm_leaves_no_temporary(tmp_path):
    out = tmp_path / "d" / "x.mkv"
    p = subprocess.Popen([sys.executable, "-c", _TERMINATED_COMMAND, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
        assert [f.name for f in out.parent.iterdir()] == [f".x.tmp-{p.pid}.mkv"]
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    assert list(out.parent.iterdir()) == []


def test_clean_temporaries_spares_live_writers_and_other_files(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    names = {
        f".a.tmp-{dead}.parquet": False,          # killed writer of a.parquet: removed
        f".b.tmp-{dead}.npz": False,
        f".a.tmp-{os.getpid()}.parquet": True,    # this process is writing it
        f".a.tmp-{os.getppid()}.parquet": True,   # a live process
        "a.parquet": True,                        # outputs and look-alikes stay
        f"a.tmp-{dead}.parquet": True,
        ".hidden": True,
    }
    for n in names:
        (tmp_path / n).write_text("x")
    removed = io.clean_temporaries(tmp_path, stem="b")
    assert [f.name for f in removed] == [f".b.tmp-{dead}.npz"]
    io.clean_temporaries(tmp_path)
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(n for n, keep in names.items() if keep and "b.tmp" not in n)
    assert io.clean_temporaries(tmp_path / "absent") == []
