"""One video -> blinks chain (issue 11): run_chain is the four per-video steps in order, in
every form its callers use (analyze, the study's re-scoring with crops, the EAR attack's own
file names), and run_batch's one up-to-date check covers every output kind of a step."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data as skdata

from blinkbench.core import io
from blinkbench.spine import steps
from conftest import make_video

HAND = {"faces": "f.parquet", "crops": "c.npz", "landmarks": "l.parquet", "ear": "e.parquet", "blinks": "b.parquet",
        "blink_summary": "b.json"}


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    img = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    d = tmp_path_factory.mktemp("chain")
    return make_video(d / "face.mkv", [np.roll(img, 2 * i, axis=1) for i in range(16)], fps=25)


def same(a: dict, b: dict) -> bool:
    """Equal dicts, NaN equal to NaN (the summary of a video without blinks has NaN means)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _by_hand(video, out, params):
    out.mkdir(parents=True, exist_ok=True)
    f = {k: out / v for k, v in HAND.items()}
    faces = steps.faces_one(video, f["faces"], f["crops"], params)
    steps.landmarks_one(video, f["faces"], f["landmarks"], params)
    steps.ear_one(f["landmarks"], f["ear"])
    return faces, steps.blinks_one(f["ear"], f["blinks"], f["blink_summary"], params)


def test_run_chain_is_the_four_steps_by_hand(tmp_path, params, face_video):
    faces, summary = _by_hand(face_video, tmp_path / "hand", params)
    assert summary["status"] == "ok" and summary["face_frames"] == 16
    run = steps.run_chain(face_video, params, tmp_path / "chain", crops=True, files=HAND, steps_meta=True)
    assert same(run["faces"], faces) and same(run["blinks"], summary)
    for key, name in HAND.items():
        assert run["paths"][key] == tmp_path / "chain" / name
        a, b = tmp_path / "hand" / name, tmp_path / "chain" / name
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
            assert same(io.read_meta(a), io.read_meta(b))
        elif name.endswith(".npz"):
            with np.load(a) as za, np.load(b) as zb:
                assert len(za["crops"]) > 0
                assert np.array_equal(za["crops"], zb["crops"]) and np.array_equal(za["frames"], zb["frames"])
        else:
            assert same(io.read_json(a), io.read_json(b))
    # analyze's form: the same summary without its stamp, the events as lists, no crops kept
    out = steps.run_chain(face_video, params, tmp_path / "analyze")
    assert same({k: v for k, v in out.items() if k not in ("video", "blinks", "closures")},
                {k: v for k, v in summary.items() if k != "stamp"})
    events = pd.read_parquet(tmp_path / "hand" / "b.parquet")
    assert len(out["blinks"]) == int((events["kind"] == "blink").sum())
    with np.load(tmp_path / "analyze" / "crops.npz") as z:
        assert len(z["crops"]) == 0


def test_batch_redoes_a_step_when_any_of_its_outputs_is_stale(tmp_path, monkeypatch, params, face_video):
    """The crops file (no stamp: it must exist) and the blink summary (its JSON stamp) count
    as outputs of their steps as the parquet files do."""
    from blinkbench import datasets
    from blinkbench.core import paths

    root = tmp_path / "raw"
    (root / "real").mkdir(parents=True)
    (root / "real" / "face.mkv").write_bytes(face_video.read_bytes())
    monkeypatch.chdir(tmp_path)
    ds = {"adapter": "folder", "root": str(root)}
    params["datasets"] = {"t": ds}
    datasets.write_manifest(datasets.build_manifest("t", ds, params), "data/manifests/t.parquet")
    names = ("faces", "landmarks", "ear", "blinks")
    assert [steps.run_batch(s, "t", params)["done"] for s in names] == [1, 1, 1, 1]
    vid = pd.read_parquet("data/manifests/t.parquet")["video_id"][0]
    paths.path("crops", dataset="t", video=vid).unlink()
    summary = paths.path("blink_summary", dataset="t", video=vid)
    io.write_json({**io.read_json(summary), "stamp": "other"}, summary)
    assert [steps.run_batch(s, "t", params)["done"] for s in names] == [1, 0, 0, 1]
    assert [steps.run_batch(s, "t", params)["done"] for s in names] == [0, 0, 0, 0]
