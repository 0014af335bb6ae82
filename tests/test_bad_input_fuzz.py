"""Fuzz-style bad input beyond model files (issue 13, acceptance): at least 200 mutated
metadata files (DFDC metadata.json and labels CSV, the Celeb-DF test list) and params files
(truncated, bit-flipped, spliced, non-UTF-8) each give a clean result: the dataset is
listed, or a ValueError / ParamsError naming the file, never another exception; and
``blinkbench manifest`` turns a refused metadata file into one message and exit 2, not a
traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blinkbench import datasets
from blinkbench.core import config

ROOT = Path(__file__).resolve().parents[1]
N = 60  # per file kind: 240 in all
SPLICE = [b"\xff\xfe", b"\x00", b"{", b"]", b'"', b"\n", b",", b"null", b"1e999", b"NaN", b"-", b"../", b"\r"]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    k = int(rng.integers(0, 5))
    if k == 0:
        del b[int(rng.integers(0, len(b))):]
    elif k == 1:
        for _ in range(int(rng.integers(1, 6))):
            p = int(rng.integers(0, len(b)))
            b[p] ^= 1 << int(rng.integers(0, 8))
    elif k == 2:
        p = int(rng.integers(0, len(b)))
        b[p:p] = SPLICE[int(rng.integers(0, len(SPLICE)))]
    elif k == 3:
        p, q = sorted(int(x) for x in rng.integers(0, len(b), 2))
        del b[p:q]
    else:
        p = int(rng.integers(0, len(b)))
        b[p:p] = bytes(rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8))
    return bytes(b)


@pytest.fixture
def layouts(tmp_path, params):
    dfdc = tmp_path / "dfdc"
    part = dfdc / "dfdc_train_part_0"
    part.mkdir(parents=True)
    meta = {"a.mp4": {"label": "REAL", "split": "train"},
            "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"}}
    for name in meta:
        (part / name).write_bytes(b"")
    (dfdc / "test").mkdir()
    (dfdc / "test" / "t.mp4").write_bytes(b"")
    celeb = tmp_path / "celeb"
    for folder in ("Celeb-real", "Celeb-synthesis", "YouTube-real"):
        (celeb / folder).mkdir(parents=True)
    (celeb / "Celeb-real" / "id0_0000.mp4").write_bytes(b"")
    (celeb / "Celeb-synthesis" / "id0_id1_0000.mp4").write_bytes(b"")
    dfdc_cfg = {"adapter": "dfdc", "root": str(dfdc), "test_labels": "test/labels.csv"}
    celeb_cfg = {"adapter": "celebdf", "root": str(celeb)}
    return {  # kind -> (file, valid content, what reads it)
        "dfdc_metadata": (part / "metadata.json", json.dumps(meta).encode(),
                          lambda: datasets.discover("d", dfdc_cfg, params)),
        "dfdc_labels": (dfdc / "test" / "labels.csv", b"filename,label\nt.mp4,1\nu.mp4,0\n",
                        lambda: datasets.discover("d", dfdc_cfg, params)),
        "celebdf_list": (celeb / "List_of_testing_videos.txt",
                         b"1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n",
                         lambda: datasets.discover("c", celeb_cfg, params)),
        "params": (tmp_path / "params.yaml", (ROOT / "params.yaml").read_bytes(),
                   lambda: config.load(tmp_path / "params.yaml")),
    }


def test_mutated_metadata_and_params_files_give_clean_errors(layouts):
    for path, good, _ in layouts.values():
        path.write_bytes(good)
    for kind, (path, good, read) in layouts.items():
        read()  # the valid file reads
        rng = np.random.default_rng(13)
        outcomes = {"ok": 0, "refused": 0}
        for i in range(N):
            path.write_bytes(mutate(good, rng))
            try:
                read()
                outcomes["ok"] += 1
            except ValueError as exc:  # ParamsError is one; UnicodeDecodeError would be too, so:
                assert not isinstance(exc, UnicodeDecodeError), (kind, i, exc)
                assert str(path.name) in str(exc) or "dataset '" in str(exc) or "invalid parameter" in str(exc), \
                    (kind, i, exc)
                outcomes["refused"] += 1
        path.write_bytes(good)
        assert outcomes["refused"] >= N // 4, (kind, outcomes)


def test_labels_with_an_infinite_label_are_refused_cleanly(layouts):
    """'1e999' parsed as float infinity and int() raised OverflowError out of the adapter."""
    path, _, read = layouts["dfdc_labels"]
    (layouts["dfdc_metadata"][0]).write_bytes(layouts["dfdc_metadata"][1])
    path.write_bytes(b"filename,label\nt.mp4,1e999\n")
    with pytest.raises(ValueError, match="label must be 1"):
        read()


@pytest.mark.parametrize("kind", ["params_not_utf8", "labels_not_utf8"])
def test_cli_reports_a_refused_file_without_a_traceback(tmp_path, layouts, kind):
    import yaml

    for path, good, _ in layouts.values():
        path.write_bytes(good)
    params_path = tmp_path / "params.yaml"
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["datasets"]["d"] = {"adapter": "dfdc", "root": str(tmp_path / "dfdc"), "test_labels": "test/labels.csv"}
    params_path.write_text(yaml.safe_dump(p))
    if kind == "params_not_utf8":
        params_path.write_bytes(params_path.read_bytes() + b"# \xff\xfe\n")
    else:
        layouts["dfdc_labels"][0].write_bytes(b"filename,label\nt\xff.mp4,1\n")
    r = subprocess.run([sys.executable, "-m", "blinkbench", "manifest", "--params", str(params_path), "--dataset", "d",
                        "--out", str(tmp_path / "m.parquet")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "not UTF-8" in r.stderr, r.stderr
    assert not (tmp_path / "m.parquet").exists()
