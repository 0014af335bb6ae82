"""Memory bounds of issue 13 item 8 that the faces queue does not cover: the frame detectors'
crops read lazily from a file store (:mod:`blinkbench.detectors.frame.cropstore`) and the EAR
attack's per-video context kept in a file (:class:`ear_attack.ContextStore`). Each bounded
path is checked against the former in-memory one: same bytes, same results, bit for bit.
Peak-RSS figures are in ``benchmarks/bench_memory.py``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from blinkbench.attacks.blink import ear_attack as ea

from conftest import make_video


# torch at one thread for the whole module (deterministic, and fair to other jobs): conftest
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------- EAR attack context

@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """A 16-frame 160x160 clip of a textured moving blob, and per-frame 478 landmarks around it."""
    rng = np.random.default_rng(3)
    base = np.clip(rng.normal(128, 40, (160, 160, 3)), 0, 255).astype(np.uint8)
    frames, lms = [], []
    yy, xx = np.mgrid[0:24, 0:24]
    grid = np.stack([xx.ravel(), yy.ravel()], 1)[:478].astype(np.float64)
    for i in range(16):
        frames.append(np.roll(base, i, axis=1))
        pts = 40 + grid * 3 + [i, 0.5 * i]
        pts[33], pts[263] = [55 + i, 70], [105 + i, 72]
        lms.append(np.concatenate([pts, np.zeros((478, 1))], 1))
    video = make_video(tmp_path_factory.mktemp("ctx") / "clip.mp4", frames)
    lm = np.array(lms)
    present = np.ones(16, bool)
    present[5] = False                      # one frame without a face: its context row stays zero
    return video, lm, np.arange(16) / 25.0, present


def test_context_store_gathers_the_in_memory_tensor_bit_for_bit(face_clip):
    video, lm, t, present = face_clip
    geo_f = ea.ClipGeometry.build(video, lm, t, present, 1.5, 64, 8)
    geo_m = ea.ClipGeometry.build(video, lm, t, present, 1.5, 64, 8, context="memory")
    assert geo_f.context._mem is None and geo_m.context._mem is not None
    # the file holds the frames, the process does not
    assert os.fstat(geo_f.context._file.fileno()).st_size == 16 * 3 * 208 * 208 * 2
    idx = np.array([0, 3, 5, 15, 3])                                # repeats and an invalid frame
    a, b = geo_f.context[idx], geo_m.context[idx]
    assert a.dtype == torch.float16 and a.shape == (5, 3, 208, 208)
    assert torch.equal(a, b) and a.abs().sum() > 0 and a[2].abs().sum() == 0
    assert torch.equal(geo_f.context[7], geo_m.context[7])
    rng = np.random.default_rng(0)
    jit = ea.jitter_affines(len(idx), rng, 1.0, 0.005, 0.3, limit=7)
    assert torch.equal(geo_f.clean_crops(idx, jit), geo_m.clean_crops(idx, jit))
    with pytest.raises(IndexError):
        geo_f.context[np.array([16])]


def test_ear_attack_optimisation_is_unchanged_by_the_file_context(face_clip):
    """The same seeded optimisation on both stores ends with the same perturbation, bit for bit."""
    video, lm, t, present = face_clip
    p = ea.EarAttackParams(steps=2, frames_per_step=2, delta_size=64, eps=8)
    out = []
    for where in ("file", "memory"):
        geo = ea.ClipGeometry.build(video, lm, t, present, p.roi_scale, p.delta_size, p.eot_pad, context=where)
        opn = np.full(16, 0.3)
        target = ea.Target(np.where(present, 0.12, np.nan), opn, np.zeros(16), [])
        pert = ea.Perturbation("shared", 16, t, p.delta_size)
        torch.manual_seed(0)
        log = ea.optimise(geo, target, pert, p, "inject")
        out.append((pert.params.clone(), log["loss"], geo.clean_ear["TorchFaceMeshAttention"]))
    (pf, lf, cf), (pm, lm_, cm) = out
    assert pf.abs().max() > 0                      # the attack moved
    assert torch.equal(pf, pm) and lf == lm_ and np.array_equal(cf, cm, equal_nan=True)


# ---------------------------------------------------------------------- frame detectors' crops

def _write_crop_dataset(root, name: str, n_videos: int, size: int = 32, seed: int = 0):
    """A manifest and per-video crop files (compressed npz, as the faces step writes): fake
    videos slightly brighter and noisier; one video without a crop file, one with no crops."""
    from blinkbench.core import paths

    rng = np.random.default_rng(seed)
    rows = []
    for v in range(n_videos):
        vid, label = f"v{v:03d}", ("fake" if v % 2 else "real")
        split = "test" if v % 5 == 4 else ("val" if v % 7 == 3 else "train")
        rows.append({"video_id": vid, "label": label, "split": split, "status": "ok"})
        if v == 1:
            continue                                            # no crop file: listed, skipped
        n = 0 if v == 2 else int(rng.integers(3, 7))
        base = rng.normal(110 + 30 * (label == "fake"), 25 + 10 * (label == "fake"), (n, size, size, 3))
        crops = np.clip(base, 0, 255).astype(np.uint8)
        p = root / paths.path("crops", dataset=name, video=vid)
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(p, crops=crops, frames=np.arange(n) * 5)
    man = root / paths.path("manifest", dataset=name)
    man.parent.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pd.DataFrame(rows).to_parquet(man)
    return pd.DataFrame(rows)


@pytest.fixture
def crop_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    man = _write_crop_dataset(tmp_path, "demo", 24)
    return tmp_path, man


def test_lazy_cropset_is_the_eager_one(crop_project):
    from blinkbench.core import paths
    from blinkbench.detectors.frame import CropSet
    from blinkbench.detectors.frame.cropstore import CropStore

    root, man = crop_project
    lazy = CropSet.from_manifest("demo", man)
    eager = CropSet.from_manifest("demo", man, lazy=False)
    assert isinstance(lazy.crops, CropStore) and isinstance(eager.crops, np.ndarray)
    assert lazy.crops.shape == eager.crops.shape and len(lazy) > 60
    for k in ("video_id", "label", "frame"):
        assert np.array_equal(getattr(lazy, k), getattr(eager, k))
    assert np.array_equal(np.asarray(lazy.crops), eager.crops)
    assert np.array_equal(lazy.crops[7], eager.crops[7]) and np.array_equal(lazy.crops[-1], eager.crops[-1])
    assert np.array_equal(lazy.crops[5:40:3], eager.crops[5:40:3])
    assert np.array_equal(lazy.crops[np.int64(3)], eager.crops[3]) and np.array_equal(lazy.crops[np.array(3)], eager.crops[3])
    assert np.array_equal(lazy.crops[2, ..., 1], eager.crops[2, ..., 1])
    with pytest.raises(IndexError):
        lazy.crops[len(lazy)]
    # subsets stay lazy and select the same rows
    ids = ["v004", "v009", "v013"]
    sl, se = lazy.subset(ids), eager.subset(ids)
    assert isinstance(sl.crops, CropStore) and np.array_equal(np.asarray(sl.crops), se.crops)
    order = np.array([3, 0, 0, 9, 2])
    assert np.array_equal(sl.crops[order][1:4], se.crops[order][1:4])
    both = CropSet.concat([sl, lazy.subset(["v000"])])
    assert isinstance(both.crops, CropStore)
    assert np.array_equal(np.asarray(both.crops), CropSet.concat([se, eager.subset(["v000"])]).crops)
    # the cache: written once, outside the crops folder, rewritten when the crop file changes
    cache = root / paths.path("crop_cache", dataset="demo", video="v000")
    assert cache.exists() and not (root / "data/cache/crops/demo/v001.npy").exists()
    stamp = cache.stat().st_mtime_ns
    CropSet.from_manifest("demo", man)
    assert cache.stat().st_mtime_ns == stamp
    new = np.full((2, 32, 32, 3), 7, np.uint8)
    npz = root / paths.path("crops", dataset="demo", video="v000")
    np.savez_compressed(npz, crops=new, frames=np.array([1, 2]))
    os.utime(npz, ns=(stamp + 10**9, stamp + 10**9))
    again = CropSet.from_manifest("demo", man).subset(["v000"])
    assert np.array_equal(np.asarray(again.crops), new) and list(again.frame) == [1, 2]


def _bounded(monkeypatch, cap: int) -> list[int]:
    """Forbid reading a whole store at once and record how many crops each read brings in."""
    from blinkbench.detectors.frame import cropstore

    sizes: list[int] = []
    read = cropstore.CropStore.read

    def counted(self, idx):
        sizes.append(len(idx))
        assert len(idx) <= cap, f"{len(idx)} crops read at once (cap {cap})"
        return read(self, idx)

    def refuse(self, dtype=None, copy=None):
        raise AssertionError("a whole CropStore was materialised")

    monkeypatch.setattr(cropstore.CropStore, "read", counted)
    monkeypatch.setattr(cropstore.CropStore, "__array__", refuse)
    return sizes


@pytest.mark.parametrize("detector", ["meso4", "ela", "block_dct"])
def test_training_and_evaluation_from_disk_match_in_memory(crop_project, monkeypatch, detector):
    """train_frame + evaluate_frame through the protocol: the model file and the evaluation
    are byte-identical to the in-memory path's, and the lazy run never holds more than a
    batch of crops (reads are capped; materialising a whole store fails the test)."""
    from blinkbench.core import config, paths
    from blinkbench.detectors.frame import CropSet
    from blinkbench.experiments import protocol

    root, _ = crop_project
    hyper = {"meso4": {"epochs": 2, "input_size": 32, "batch_size": 8, "augment": True},
             "ela": {"n_estimators": 20, "cv_folds": 2},
             "block_dct": {"block": 16, "n_estimators": 20, "max_train_blocks": 300, "cv_folds": 2}}[detector]
    params = config.validate({"datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"}},
                              "frame_detectors": {"enabled": ["meso4", "ela", "block_dct"], "hyper": {detector: hyper}}})
    out = {}
    eager_from_manifest = CropSet.from_manifest.__func__
    for mode in ("eager", "lazy"):
        with monkeypatch.context() as m:
            if mode == "eager":
                m.setattr(CropSet, "from_manifest",
                          classmethod(lambda cls, *a, **k: eager_from_manifest(cls, *a, **{**k, "lazy": False})))
                sizes = None
            else:
                sizes = _bounded(m, cap=64)
            d = root / mode
            info = protocol.train_frame(params, detector, "demo", d / "model.zip", d / "info.json")
            assert info["status"] == "ok", info["error"]
            ev = protocol.evaluate_frame(params, d / "model.zip", "demo", d / "scores.parquet", d / "eval.json",
                                         d / "roc.csv", train_dataset="demo")
            assert ev["status"] == "ok"
            out[mode] = {k: (d / k).read_bytes() for k in ("model.zip", "info.json", "scores.parquet", "roc.csv")}
            out[mode]["eval"] = json.dumps(ev, sort_keys=True, default=str)
            if sizes is not None:
                assert sizes and max(sizes) <= 64
    for k in out["eager"]:
        assert out["eager"][k] == out["lazy"][k], f"{detector}: {k} differs between the eager and lazy paths"
