"""Memory bounds of issue 13 item 8 that the faces queue does not cover: the frame detectors'
crops read lazily from a file store (:mod:`blinkbench.detectors.frame.cropstore`) and the EAR
attack's per-video context kept in a file (:class:`ear_attack.ContextStore`). Each bounded
path is checked against the former in-memory one: same bytes, same results, bit for bit.
Peak-RSS figures are in ``benchmarks/bench_memory.py``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from blinkbench.attacks.blink import ear_attack as ea

from conftest import make_video


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
