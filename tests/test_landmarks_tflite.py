"""The ``mediapipe_tflite`` landmark backend: the Face Mesh model by the TFLite runtime.

Its cut model and NumPy custom ops against the torch port (which is tested against the
TFLite runtime and MediaPipe), batch invariance, bad input as NaN rows, and on real clips
from ../shared: eye points against MediaPipe's graph, blink events against annotations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blinkbench.spine import blinks, steps
from blinkbench.spine.ear import EYE_INDICES
from blinkbench.spine.landmarks import make_backend, read_landmarks
from blinkbench.spine.landmarks import tflite_mesh as tm
from blinkbench.spine.landmarks.extract import extract

EAR_POINTS = list(EYE_INDICES["mediapipe"]["left"]) + list(EYE_INDICES["mediapipe"]["right"])
BLINK_CLIPS = ["selfie_blinks.mp4", "news_presenter.mp4", "talking_crop_a.mp4", "talking_crop_b.mp4"]

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert (the TFLite runtime) is not installed")


@pytest.fixture(scope="module")
def backend():
    with tm.TFLiteMesh(batch_size=4, roi="crop") as b:
        yield b


@pytest.fixture(scope="module")
def faces_192() -> np.ndarray:
    """Four real face images, 192x192, from the shared blink clip (skips without it)."""
    from conftest import SHARED, SKIP_SHARED
    from blinkbench.video.codec import FrameReader

    clip = SHARED / "samples" / "blink" / "talking_crop_a.mp4"
    if not clip.exists():
        pytest.skip(SKIP_SHARED)
    out = []
    for fr in FrameReader(str(clip)):
        if fr.index % 15 == 0:
            rgb = fr.rgb()
            h, w = rgb.shape[:2]
            s = min(h, w)
            out.append(tm.TFLiteMesh.prepare(np.ascontiguousarray(rgb[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2])))
        if len(out) == 4:
            break
    return np.stack(out)


def test_index_tables_are_the_ports():
    from blinkbench.mesh_torch import facemesh

    # one copy of the refinement tables serves both runtimes
    for name in ("LIPS_INDICES", "LEFT_EYE_INDICES", "RIGHT_EYE_INDICES", "N_EYE_CONTOUR_FOR_IRIS_Z"):
        assert getattr(tm, name) is getattr(facemesh, name), name
    assert len(tm.LIPS_INDICES) == 80 and len(tm.LEFT_EYE_INDICES) == len(tm.RIGHT_EYE_INDICES) == 71


def test_numpy_custom_ops_equal_the_ports():
    import torch
    from blinkbench.mesh_torch import graph

    rng = np.random.default_rng(0)
    lm = (rng.normal(96, 30, (3, 468, 3))).astype(np.float32)
    o = {"subset_idxs": [33, 133, 160, 144, 263, 362], "left_rotation_idx": 33, "right_rotation_idx": 263,
         "target_rotation_radians": 0.0, "output_height": 16, "output_width": 16, "scale_x": 1.5, "scale_y": 1.5}
    m = tm.landmarks_to_transform_matrix(lm, o)
    mt = graph.landmarks_to_transform_matrix(**graph._l2tm_args(o))(torch.from_numpy(lm)).numpy()
    np.testing.assert_allclose(m, mt, atol=1e-3)
    feat = rng.normal(0, 1, (3, 48, 48, 32)).astype(np.float32)
    # 16x16 outputs onto the 48x48 map: rotated and scaled, the third one partly outside (zeros)
    m = np.zeros((3, 4, 4), np.float32)
    for k, (ang, sc, tx, ty) in enumerate(((0.0, 1.0, 10.0, 12.0), (0.4, 1.7, 20.0, 5.0), (-0.3, 2.5, 35.0, 30.0))):
        m[k, :2, :2] = sc * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        m[k, :2, 3] = (tx, ty)
        m[k, 2, 2] = m[k, 3, 3] = 1
    got = tm.transform_tensor_bilinear(feat, m, 16, 16)
    want = graph.transform_tensor_bilinear(torch.from_numpy(feat).permute(0, 3, 1, 2), torch.from_numpy(m), 16, 16)
    np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    assert (got == 0).any() and (got != 0).any()
    pts = rng.normal(0, 5, (3, 71, 2)).astype(np.float32)
    np.testing.assert_allclose(tm.transform_landmarks(pts, m),
                               graph.transform_landmarks(torch.from_numpy(pts), torch.from_numpy(m)).numpy(), atol=1e-3)


def test_cut_model_equals_the_torch_port(backend, faces_192):
    import torch
    from blinkbench.mesh_torch import TorchFaceMeshAttention, to_tensor

    pts, presence = backend.infer(faces_192)
    with torch.no_grad():
        want = TorchFaceMeshAttention().eval().landmarks(to_tensor(faces_192))
    assert (presence > 0.5).all()
    np.testing.assert_allclose(pts, want.landmarks.numpy(), atol=2e-3)  # 192-pixel units
    np.testing.assert_allclose(presence, 1 / (1 + np.exp(-want.presence_logit.numpy())), atol=1e-4)


def test_batches_give_the_landmarks_of_batch_one(faces_192):
    crops = [(im, 192, 192) for im in faces_192]
    with tm.TFLiteMesh(batch_size=4, roi="crop") as b4, tm.TFLiteMesh(batch_size=1, roi="crop") as b1:
        got4, got1 = b4.process_batch(crops), b1.process_batch(crops)
        got3 = b4.process_batch(crops[:3])  # a short last batch (padded)
    assert all(p is not None for p in got4)
    for a, b in zip(got4, got1):
        np.testing.assert_allclose(a, b, atol=1e-3)
    for a, b in zip(got3, got4):
        np.testing.assert_allclose(a, b, atol=1e-3)
    with tm.TFLiteMesh(roi="track") as t:  # tracking: handing frames over in one list or one by one
        whole = t.process_batch(crops)
        t.reset()
        single = [t.process_batch([c])[0] for c in crops]
    for a, b in zip(whole, single):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_bad_crops_and_no_face_give_none(backend, faces_192):
    noise = np.random.default_rng(1).integers(0, 255, (192, 192, 3), dtype=np.uint8)
    flat = np.full((150, 120, 3), 128, np.uint8)
    crops = [None, (np.zeros((0, 0, 3), np.uint8), 0, 0), (np.zeros((10, 10), np.uint8), 10, 10),
             (flat, 120, 150), (noise, 192, 192), (faces_192[0], 192, 192)]
    for roi in ("crop", "track"):
        with tm.TFLiteMesh(batch_size=4, roi=roi) as b:
            got = b.process_batch(crops)
        assert got[:5] == [None] * 5, roi
        assert got[5] is not None and got[5].shape == (478, 3) and np.isfinite(got[5]).all(), roi


def test_truncated_video_and_missing_face_are_nan_rows(tmp_path, shared, params):
    """A video cut mid-stream and frames without a face in the track: NaN rows, no crash."""
    from conftest import make_video
    from blinkbench.video.codec import FrameReader

    src = shared / "samples" / "blink" / "talking_crop_a.mp4"
    params["landmarks"]["backend"] = "mediapipe_tflite"
    track_path = tmp_path / "f.parquet"
    steps.faces_one(src, track_path, tmp_path / "c.npz", params)
    track = pd.read_parquet(track_path)
    track.loc[10:19, "face_present"] = False  # the face track lost the face here
    mkv = make_video(tmp_path / "v.mkv", (fr.rgb() for fr in FrameReader(str(src))))  # matroska: playable when cut
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(mkv.read_bytes()[: int(mkv.stat().st_size * 0.7)])
    with make_backend(params["landmarks"]) as b:
        meta = extract(str(cut), track, b, tmp_path / "l.parquet", params["landmarks"]["crop_scale"], {"status": "ok"})
    frame, _, present, xyz = (np.concatenate(a) for a in zip(*read_landmarks(tmp_path / "l.parquet")))
    assert 0 < meta["n_frames"] < len(track)  # cut short, and said so
    assert any("decoded" in w for w in meta["warnings"])
    assert not present[10:20].any() and np.isnan(xyz[10:20]).all()
    assert present[:10].all() and np.isfinite(xyz[:10]).all()
    assert meta["face_frames"] == int(present.sum())


# ---------------------------------------------------------------------------- real clips

def _landmarks(clip, params, backend, tmp_path):
    p = {**params, "landmarks": {**params["landmarks"], "backend": backend}}
    track = tmp_path / f"{clip.stem}.track.parquet"
    if not track.exists():
        steps.faces_one(clip, track, tmp_path / f"{clip.stem}.crops.npz", p)
    out = tmp_path / f"{clip.stem}.{backend}.parquet"
    meta = steps.landmarks_one(clip, track, out, p)
    assert meta["status"] == "ok", meta
    return np.concatenate([xyz for *_, xyz in read_landmarks(out)])


@pytest.mark.parametrize("clip", ["news_presenter.mp4", "talking_crop_b.mp4"])
def test_eye_points_match_the_graph_within_one_pixel(shared, params, tmp_path, clip):
    path = shared / "samples" / "blink" / clip
    graph = _landmarks(path, params, "mediapipe", tmp_path)
    ours = _landmarks(path, params, "mediapipe_tflite", tmp_path)
    both = ~np.isnan(graph[:, 0, 0]) & ~np.isnan(ours[:, 0, 0])
    assert both.sum() >= 0.95 * len(graph)
    d = np.linalg.norm(graph[both][:, EAR_POINTS, :2] - ours[both][:, EAR_POINTS, :2], axis=-1)
    assert np.median(d) <= 1.0, f"eye points {np.median(d):.3f} px median from the graph's"
    lids = list(tm.LEFT_EYE_INDICES[:16]) + list(tm.RIGHT_EYE_INDICES[:16])
    assert np.median(np.linalg.norm(graph[both][:, lids, :2] - ours[both][:, lids, :2], axis=-1)) <= 1.0


def test_blink_events_match_the_annotations(shared, params, tmp_path):
    params["landmarks"]["backend"] = "mediapipe_tflite"
    ann = pd.read_csv(shared / "samples" / "blink" / "annotations.csv")
    tp = n_det = n_truth = 0
    for clip in BLINK_CLIPS:
        res = steps.run_chain(shared / "samples" / "blink" / clip, params, tmp_path / clip.split(".")[0])
        assert res["status"] == "ok", res
        events = pd.read_parquet(tmp_path / clip.split(".")[0] / "blinks.parquet")
        truth = ann[ann["video"] == clip]
        m = blinks.match_events(events, truth, tol_frames=2)
        missed = sorted(set(range(len(truth))) - {p[0] for p in m["pairs"]})
        assert not missed, f"{clip}: annotated events {truth.iloc[missed].to_dict('records')} not found"
        tp, n_det, n_truth = tp + m["tp"], n_det + m["n_detected"], n_truth + m["n_truth"]
    assert tp == n_truth
    assert n_det == n_truth, f"{n_det - tp} detections match no annotated event"
