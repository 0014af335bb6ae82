"""The PyTorch port of MediaPipe Face Mesh against the TFLite runtime and MediaPipe itself.

Parity references: ``ai_edge_litert`` (the TFLite runtime, test-only) for the models made
of builtin ops (face mesh, iris, BlazeFace); MediaPipe's own calculator graph for the
attention mesh, whose custom ops only MediaPipe's op resolver provides (raw tensors from
``InferenceCalculator``, and the 478 refined points from the ``FaceLandmarkCpu`` subgraph
that ``mp.solutions.face_mesh`` runs, fed the whole 192x192 image as its ROI). Real faces
come from ../shared clips cropped around the face track the pipeline's own step finds.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from blinkbench.spine.ear import EYE_INDICES, OUTER_CORNERS, ear_from_landmarks
from blinkbench.mesh_torch import graph as G
from blinkbench.mesh_torch import tflite_reader
from blinkbench.mesh_torch.facemesh import (
    BLAZEFACE_MODEL, FACE_MESH_ATTENTION_MODEL, FACE_MESH_MODEL, IRIS_MODEL, IRIS_SIZE, MESH_SIZE,
    TorchBlazeFace, TorchFaceMesh, TorchFaceMeshAttention, TorchIris, _roi_affine, crop_affine,
    crop_resize, ear_torch, eye_rois, iris_refined_landmarks, landmarks_in_frame, model_file,
    refined_landmarks, to_tensor,
)

# (clip, frames): open eyes, a blink, the long closure, open again; annotations.csv frames.
CLIPS = [("selfie_blinks.mp4", (0, 12, 150, 230)), ("talking_crop_a.mp4", (0, 15, 40))]
CLOSED = {("selfie_blinks.mp4", 12), ("selfie_blinks.mp4", 150), ("talking_crop_a.mp4", 15)}
FACE_SCALE = 1.5          # MediaPipe's face ROI is the detection box x 1.5
NUMERIC_PX = 0.01         # what fp32 rounding leaves; the issue asks < 0.5 px
ALL_MODELS = [FACE_MESH_MODEL, FACE_MESH_ATTENTION_MODEL, IRIS_MODEL, BLAZEFACE_MODEL]


# torch at one thread for the whole module (deterministic, and fair to other jobs): conftest
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models():
    return {"mesh": TorchFaceMesh().eval(), "att": TorchFaceMeshAttention().eval(), "iris": TorchIris().eval()}


def _tflite(path, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x_nhwc, np.float32))
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}


def _square(face_box, scale: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = face_box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0)
    return tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))


@pytest.fixture(scope="module")
def crops(shared, tmp_path_factory):
    """Real 192x192 uint8 face crops: the faces step's track box x 1.5, square, edge-replicated."""
    import av
    import pandas as pd
    from conftest import _params

    from blinkbench.spine import steps

    out = []
    for clip, frames in CLIPS:
        path = shared / "samples" / "blink" / clip
        w = tmp_path_factory.mktemp("mesh_torch_faces")
        meta = steps.faces_one(path, w / "track.parquet", w / "crops.npz", _params())
        assert meta["status"] == "ok", meta
        track = pd.read_parquet(w / "track.parquet")
        with av.open(str(path)) as c:
            for i, fr in enumerate(c.decode(video=0)):
                if i in frames:
                    row = track.iloc[i]
                    assert row.face_present, f"{clip} frame {i}: no face in the track"
                    rgb = fr.to_ndarray(format="rgb24")
                    box = _square((row.x0, row.y0, row.x1, row.y1), FACE_SCALE)
                    x = crop_resize(to_tensor(rgb), box, MESH_SIZE)
                    u8 = (x[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
                    out.append({"clip": clip, "frame": i, "rgb": rgb, "box": box, "u8": u8,
                                "face_box": (row.x0, row.y0, row.x1, row.y1)})
                if i >= max(frames):
                    break
    return out


def _batch(crops) -> torch.Tensor:
    return torch.cat([to_tensor(c["u8"]) for c in crops])


# ---------------------------------------------------------------------- reader and ops

def test_reader_matches_the_generated_schema():
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    flex = pytest.importorskip("flatbuffers.flexbuffers")
    for rel in ALL_MODELS:
        buf = model_file(rel).read_bytes()
        m = tflite_reader.parse_model(buf)
        ref = schema.Model.GetRootAsModel(buf, 0)
        g = ref.Subgraphs(0)
        assert len(m.tensors) == g.TensorsLength() and len(m.operators) == g.OperatorsLength()
        assert m.inputs == list(g.InputsAsNumpy()) and m.outputs == list(g.OutputsAsNumpy())
        for t in m.tensors:
            rt = g.Tensors(t.index)
            assert t.name == rt.Name().decode()
            assert list(t.shape) == (list(rt.ShapeAsNumpy()) if rt.ShapeLength() else [])
            raw = ref.Buffers(rt.Buffer()).DataAsNumpy()
            if t.data is not None:
                want = np.frombuffer(raw.tobytes(), {0: np.float32, 1: np.float16, 2: np.int32}[rt.Type()])
                np.testing.assert_array_equal(t.data.reshape(-1), want.astype(t.data.dtype))
        for o in m.operators:
            ro = g.Operators(o.index)
            assert o.inputs == list(ro.InputsAsNumpy()) and o.outputs == list(ro.OutputsAsNumpy())
            if o.op == "CONV_2D":
                opt = schema.Conv2DOptions()
                opt.Init(ro.BuiltinOptions().Bytes, ro.BuiltinOptions().Pos)
                assert (o.options["stride_w"], o.options["stride_h"]) == (opt.StrideW(), opt.StrideH())
                assert o.options["padding"] == ("SAME", "VALID")[opt.Padding()]
            if o.op.startswith("CUSTOM:"):
                raw = ro.CustomOptionsAsNumpy()
                assert o.options == (flex.Loads(raw.tobytes()) if ro.CustomOptionsLength() else {})


def test_op_inventory_and_unsupported_ops_are_named():
    counts = {rel: tflite_reader.read_model(model_file(rel)).op_counts() for rel in ALL_MODELS}
    print("\nops per model:", counts)
    assert set(counts[FACE_MESH_MODEL]) == {"DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD",
                                            "MAX_POOL_2D", "PAD"}
    assert {"CUSTOM:Landmarks2TransformMatrix", "CUSTOM:TransformTensorBilinear",
            "CUSTOM:TransformLandmarks", "MUL", "STRIDED_SLICE", "RESHAPE"} <= set(counts[FACE_MESH_ATTENTION_MODEL])
    # The full-range detector stores sparse weights (DENSIFY): refused by name, not mis-run.
    sparse = tflite_reader.read_model(model_file("face_detection/face_detection_full_range_sparse.tflite"))
    with pytest.raises(G.UnsupportedOp, match="DENSIFY"):
        G.TFLiteGraph(sparse)


@pytest.mark.parametrize("size,k,stride,want", [(192, 3, 2, (0, 1)), (96, 3, 1, (1, 1)), (64, 2, 2, (0, 0)),
                                                (7, 5, 2, (2, 2)), (8, 4, 1, (1, 2))])
def test_same_padding_is_tflites(size, k, stride, want):
    before, after = G.same_padding(size, k, stride)
    assert (before, after) == want
    assert (size + before + after - k) // stride + 1 == -(-size // stride)


# ---------------------------------------------------------------------- parity on real faces



@pytest.mark.shared
def test_face_mesh_matches_tflite_on_real_faces(crops, models):
    with torch.no_grad():
        res = models["mesh"](_batch(crops))
    diffs, logit_diffs = [], []
    for k, c in enumerate(crops):
        ref = _tflite(model_file(FACE_MESH_MODEL), c["u8"][None] / np.float32(255))
        lm = ref["conv2d_21"].reshape(468, 3)
        diffs.append(np.abs(res.landmarks[k].numpy() - lm))
        logit = float(ref["conv2d_31"].ravel()[0])
        logit_diffs.append(abs(res.presence_logit[k].item() - logit))
        assert (res.presence_logit[k].item() > 0) == (logit > 0) and logit > 0, f"{c['clip']}:{c['frame']} no face?"
        # EAR from the port equals blinkbench.spine.ear on the runtime's landmarks
        ref_l, ref_r = ear_from_landmarks(lm[None], "mediapipe")
        port_l, port_r = ear_torch(res.landmarks[k : k + 1])
        assert abs(port_l.item() - ref_l[0]) < 1e-4 and abs(port_r.item() - ref_r[0]) < 1e-4
    d = np.stack(diffs)
    print(f"\nface_landmark.tflite vs port on {len(crops)} real crops (192 px): xy max {d[..., :2].max():.2e} "
          f"mean {d[..., :2].mean():.2e} px, z max {d[..., 2].max():.2e}; presence logit max diff {max(logit_diffs):.2e}")
    assert d[..., :2].max() < NUMERIC_PX and d[..., 2].max() < NUMERIC_PX
    assert max(logit_diffs) < 1e-3


def _mediapipe_graph(text: str):
    mp = pytest.importorskip("mediapipe")
    from google.protobuf import text_format
    from mediapipe.calculators.core import split_vector_calculator_pb2  # noqa: F401 (registers options)
    from mediapipe.calculators.tensor import (  # noqa: F401
        image_to_tensor_calculator_pb2, inference_calculator_pb2, tensors_to_floats_calculator_pb2)
    from mediapipe.framework import calculator_pb2
    from mediapipe.python._framework_bindings import calculator_graph, resource_util

    resource_util.set_resource_dir(os.path.dirname(os.path.dirname(mp.__file__)))
    cfg = calculator_pb2.CalculatorGraphConfig()
    text_format.Parse(text, cfg)
    return calculator_graph.CalculatorGraph(graph_config=cfg)


def _mediapipe_attention_raw(images: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The attention model's 7 raw output tensors per image, from MediaPipe's InferenceCalculator."""
    import mediapipe as mp
    from mediapipe.python import packet_creator, packet_getter

    n = 7
    text = f"""
      input_stream: "image"
      node {{ calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" output_stream: "TENSORS:in"
        options {{ [mediapipe.ImageToTensorCalculatorOptions.ext] {{ output_tensor_width: 192
          output_tensor_height: 192 keep_aspect_ratio: false output_tensor_float_range {{ min: 0 max: 1 }} }} }} }}
      node {{ calculator: "TfLiteCustomOpResolverCalculator" output_side_packet: "OP_RESOLVER:op_resolver" }}
      node {{ calculator: "InferenceCalculator" input_stream: "TENSORS:in" output_stream: "TENSORS:out"
        input_side_packet: "OP_RESOLVER:op_resolver"
        options {{ [mediapipe.InferenceCalculatorOptions.ext] {{
          model_path: "mediapipe/modules/{FACE_MESH_ATTENTION_MODEL}" delegate {{ xnnpack {{}} }} }} }} }}
      node {{ calculator: "SplitTensorVectorCalculator" input_stream: "out"
        {" ".join(f'output_stream: "t{i}"' for i in range(n))}
        options {{ [mediapipe.SplitVectorCalculatorOptions.ext] {{
          {" ".join(f"ranges {{ begin: {i} end: {i + 1} }}" for i in range(n))} }} }} }}
      {" ".join(f'node {{ calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:t{i}" output_stream: "FLOATS:f{i}" }}' for i in range(n))}
      {" ".join(f'output_stream: "f{i}"' for i in range(n))}
    """
    g = _mediapipe_graph(text)
    got: dict[tuple[int, int], np.ndarray] = {}
    for i in range(n):
        g.observe_output_stream(f"f{i}", lambda s, p, i=i: got.__setitem__((p.timestamp.value, i), np.array(packet_getter.get_float_list(p))))
    g.start_run()
    for t, img in enumerate(images):
        g.add_packet_to_input_stream("image", packet_creator.create_image_frame(image_format=mp.ImageFormat.SRGB, data=img).at(t))
    g.close()
    return [[got[(t, i)] for i in range(n)] for t in range(len(images))]


def _mediapipe_refined(images: list[np.ndarray]) -> list[np.ndarray]:
    """MediaPipe's FaceLandmarkCpu (with attention) on each whole 192x192 image: (478, 3) in pixels."""
    import mediapipe as mp
    from mediapipe.framework.formats import rect_pb2
    from mediapipe.python import packet_creator, packet_getter

    g = _mediapipe_graph("""
      input_stream: "image" input_stream: "roi" output_stream: "landmarks" input_side_packet: "with_attention"
      node { calculator: "FaceLandmarkCpu" input_stream: "IMAGE:image" input_stream: "ROI:roi"
             output_stream: "LANDMARKS:landmarks" input_side_packet: "WITH_ATTENTION:with_attention" }""")
    got: dict[int, np.ndarray] = {}
    g.observe_output_stream("landmarks", lambda s, p: got.__setitem__(
        p.timestamp.value, np.array([(q.x, q.y, q.z) for q in packet_getter.get_proto(p).landmark])))
    g.start_run(input_side_packets={"with_attention": packet_creator.create_bool(True)})
    roi = rect_pb2.NormalizedRect(x_center=0.5, y_center=0.5, width=1.0, height=1.0, rotation=0.0)
    for t, img in enumerate(images):
        g.add_packet_to_input_stream("image", packet_creator.create_image_frame(image_format=mp.ImageFormat.SRGB, data=img).at(t))
        g.add_packet_to_input_stream("roi", packet_creator.create_proto(roi).at(t))
    g.close()
    return [got[t] * MESH_SIZE if t in got else None for t in range(len(images))]


@pytest.mark.shared
def test_attention_mesh_matches_mediapipe_on_real_faces(crops, models):
    images = [c["u8"] for c in crops]
    with torch.no_grad():
        raw = models["att"](_batch(crops))
        refined = models["att"].landmarks(_batch(crops)).landmarks.numpy()
    ref_raw = _mediapipe_attention_raw(images)
    ref_refined = _mediapipe_refined(images)
    worst = {}
    for k, c in enumerate(crops):
        for name, port, ref in zip(raw._fields, raw, ref_raw[k]):
            d = np.abs(port[k].numpy().reshape(-1) - ref)
            worst[name] = max(worst.get(name, 0.0), float(d.max()))
        assert ref_refined[k] is not None, f"MediaPipe found no face in {c['clip']}:{c['frame']}"
        d = np.abs(refined[k] - ref_refined[k])
        worst["refined478_xy"] = max(worst.get("refined478_xy", 0.0), float(d[:, :2].max()))
        worst["refined478_z"] = max(worst.get("refined478_z", 0.0), float(d[:, 2].max()))
        ref_l, ref_r = ear_from_landmarks(ref_refined[k][None], "mediapipe")
        port_l, port_r = ear_torch(torch.as_tensor(refined[k : k + 1]))
        assert abs(port_l.item() - ref_l[0]) < 1e-4 and abs(port_r.item() - ref_r[0]) < 1e-4
    mean_refined = float(np.mean([np.abs(refined[k] - ref_refined[k])[:, :2].mean() for k in range(len(crops))]))
    print(f"\nattention mesh vs MediaPipe on {len(crops)} real crops, max abs diff per output: "
          + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()) + f"; refined xy mean {mean_refined:.2e} px")
    assert max(v for k, v in worst.items() if k != "presence_logit") < NUMERIC_PX
    assert worst["presence_logit"] < 1e-3
    # The port sees the annotated blinks: both eyes' EAR at closed frames well below open ones.
    ear = np.array([np.mean([e.item() for e in ear_torch(torch.as_tensor(refined[k : k + 1]))]) for k in range(len(crops))])
    for clip, _ in CLIPS:
        shut = [e for e, c in zip(ear, crops) if c["clip"] == clip and (clip, c["frame"]) in CLOSED]
        opened = [e for e, c in zip(ear, crops) if c["clip"] == clip and (clip, c["frame"]) not in CLOSED]
        assert max(shut) < 0.6 * min(opened), f"{clip}: EAR closed {shut} vs open {opened}"


@pytest.mark.shared
def test_iris_matches_tflite_on_real_eye_crops(crops, models):
    eyes, diffs = [], []
    with torch.no_grad():
        x = _batch(crops)
        mesh = models["mesh"](x).landmarks
        rois = eye_rois(mesh)
        for eye, flip in (("left", False), ("right", True)):
            e = crop_affine(x, _roi_affine(*rois[eye], IRIS_SIZE, flip), IRIS_SIZE)
            eyes.append((e.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
        eyes = np.concatenate(eyes)
        res = models["iris"](to_tensor(eyes))
    for k in range(len(eyes)):
        ref = _tflite(model_file(IRIS_MODEL), eyes[k][None] / np.float32(255))
        diffs.append(max(np.abs(res.contour[k].numpy() - ref["output_eyes_contours_and_brows"].reshape(71, 3)).max(),
                         np.abs(res.iris[k].numpy() - ref["output_iris"].reshape(5, 3)).max()))
        centre = ref["output_iris"].reshape(5, 3)[0, :2]
        assert (16 < centre).all() and (centre < 48).all(), "iris centre far from the eye-crop centre"
    print(f"\niris_landmark.tflite vs port on {len(eyes)} real eye crops (64 px): max {max(diffs):.2e} "
          f"mean-of-max {np.mean(diffs):.2e}")
    assert max(diffs) < NUMERIC_PX


@pytest.mark.shared
def test_blazeface_matches_tflite_and_finds_the_face(crops):
    model = TorchBlazeFace().eval()
    c = crops[0]
    box = _square(c["face_box"], 2.5)
    x = crop_resize(to_tensor(c["rgb"]), box, 128)
    with torch.no_grad():
        reg, logit = model(x)
        boxes, _ = model.decode(reg)
    ref = _tflite(model_file(BLAZEFACE_MODEL), x.permute(0, 2, 3, 1).numpy() * 2 - 1)
    assert np.abs(reg.numpy() - ref["regressors"]).max() < 1e-3
    assert np.abs(logit.numpy() - ref["classificators"][..., 0]).max() < 1e-3
    best = boxes[0, int(logit[0].argmax())].numpy()
    # the track's face box in the 128 px crop
    s = 128 / (box[2] - box[0])
    fb = (np.asarray(c["face_box"]) - [box[0], box[1], box[0], box[1]]) * s
    inter = np.prod(np.clip(np.minimum(best[2:], fb[2:]) - np.maximum(best[:2], fb[:2]), 0, None))
    iou = inter / (np.prod(best[2:] - best[:2]) + np.prod(fb[2:] - fb[:2]) - inter)
    assert torch.sigmoid(logit.max()) > 0.5 and iou > 0.5, (best, fb, iou)


# ---------------------------------------------------------------------- gradients and helpers

@pytest.mark.shared
def test_gradients_reach_the_frame_inside_the_crop_only(crops, models):
    c = crops[1]  # a blink frame
    frame = to_tensor(c["rgb"]).requires_grad_(True)
    res = landmarks_in_frame(models["att"], frame, c["box"])
    left, right = ear_torch(res.landmarks)
    (left + right).sum().backward()
    g = frame.grad[0].abs().sum(0)
    x0, y0, x1, y1 = (max(0, v) for v in c["box"])
    inside = g[y0:y1, x0:x1]
    assert torch.isfinite(frame.grad).all()
    assert (inside > 0).float().mean() > 0.5, "EAR gradient should touch most of the crop"
    outside = g.clone()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() == 0, "no gradient may leak outside the crop box"
    # Landmarks in frame pixels land inside the face box the faces step found.
    fx0, fy0, fx1, fy1 = c["face_box"]
    xy = res.landmarks[0, :, :2].detach().numpy()
    inside_box = ((xy[:, 0] > fx0 - 10) & (xy[:, 0] < fx1 + 10) & (xy[:, 1] > fy0 - 20) & (xy[:, 1] < fy1 + 10)).mean()
    assert inside_box > 0.95


@pytest.mark.shared
def test_gradient_is_the_true_derivative(crops):
    """Central differences in float64 along a random direction agree with autograd.

    The networks are piecewise smooth (PReLU, max-pool, box min/max), so the step is tiny
    and the tolerance a few per mille rather than gradcheck's; a little noise breaks the
    exact ties of 8-bit pixels (where max-pool has only a subgradient). The custom ops are
    checked exactly in :func:`test_custom_ops_pass_gradcheck`."""
    model = TorchFaceMeshAttention().double().eval()
    gen = torch.Generator().manual_seed(0)
    x = to_tensor(crops[0]["u8"]).double()
    x = (x + 1e-3 * torch.rand(x.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)

    def f(inp):
        left, right = ear_torch(model.landmarks(inp).landmarks)
        return (left + right).sum()

    f(x).backward()
    d = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    d /= d.norm()
    h = 1e-6
    with torch.no_grad():
        numeric = (f(x + h * d) - f(x - h * d)) / (2 * h)
    analytic = (x.grad * d).sum()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    print(f"\ndirectional derivative: autograd {analytic.item():.6e}, central difference {numeric.item():.6e}")
    assert abs(numeric - analytic) <= 5e-3 * abs(analytic), (numeric.item(), analytic.item())


def test_custom_ops_pass_gradcheck():
    gen = torch.Generator().manual_seed(0)
    lm = (torch.rand(2, 140, 3, generator=gen, dtype=torch.float64) * 40 + 4).requires_grad_(True)
    l2tm = G.landmarks_to_transform_matrix(subset=list(range(30, 60)), left=33, right=133, target_rotation=0.0,
                                           out_h=16, out_w=16, scale_x=1.5, scale_y=1.5)
    assert torch.autograd.gradcheck(l2tm, (lm,), fast_mode=True)
    feat = torch.rand(2, 3, 12, 12, generator=gen, dtype=torch.float64, requires_grad=True)
    m = torch.zeros(2, 4, 4, dtype=torch.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = 0.6137, 0.1291, -0.1173, 0.5711
    m[:, 0, 3], m[:, 1, 3], m[:, 2, 2], m[:, 3, 3] = 1.3719, 2.2093, 1.0, 1.0  # off the integer grid (bilinear kinks)
    m.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: G.transform_tensor_bilinear(a, b, 8, 8), (feat, m), fast_mode=True)
    pts = torch.rand(2, 5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(G.transform_landmarks, (pts, m))


@pytest.mark.shared
def test_mesh_and_iris_gradients_are_finite_and_nonzero(crops, models):
    x = _batch(crops[:2]).requires_grad_(True)
    mesh = models["mesh"](x)
    pts = iris_refined_landmarks(x, mesh.landmarks, models["iris"])
    assert pts.shape == (2, 478, 3)
    left, right = ear_torch(pts)
    (left.sum() + right.sum() + mesh.presence_logit.sum()).backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).float().mean() > 0.3


@pytest.mark.shared
def test_batch_equals_one_by_one(crops, models):
    x = _batch(crops)
    with torch.no_grad():
        batch = models["att"].landmarks(x).landmarks
        single = torch.cat([models["att"].landmarks(x[k : k + 1]).landmarks for k in range(len(x))])
    assert (batch - single).abs().max() < 1e-3


def test_landmarks_in_frame_follow_the_crop():
    """The same 192 px patch pasted at two places gives the same landmarks shifted by the offset."""
    rng = np.random.default_rng(0)
    patch = torch.as_tensor(rng.random((1, 3, 192, 192)), dtype=torch.float32)
    model = TorchFaceMesh().eval()
    frames, boxes = [], [(10, 20, 202, 212), (57, 3, 249, 195)]
    for x0, y0, x1, y1 in boxes:
        f = torch.zeros(1, 3, 240, 260)
        f[..., y0:y1, x0:x1] = patch
        frames.append(f)
    with torch.no_grad():
        a, b = (landmarks_in_frame(model, f, bx).landmarks for f, bx in zip(frames, boxes))
        direct = model(patch).landmarks
    shift = torch.tensor([boxes[1][0] - boxes[0][0], boxes[1][1] - boxes[0][1], 0.0])
    assert (b - a - shift).abs().max() < 1e-3
    assert (a - direct - torch.tensor([10.0, 20.0, 0.0])).abs().max() < 1e-3


def test_ear_torch_matches_numpy_and_handles_degenerate_eyes():
    rng = np.random.default_rng(1)
    pts = rng.normal(100, 20, (5, 478, 3))
    pts[2, list(EYE_INDICES["mediapipe"]["left"])] = 50.0  # collapsed eye: zero width
    t = torch.as_tensor(pts, dtype=torch.float64).requires_grad_(True)
    left, right = ear_torch(t)
    ref_l, ref_r = ear_from_landmarks(pts, "mediapipe")
    np.testing.assert_allclose(left.detach().numpy(), ref_l, rtol=1e-12)
    np.testing.assert_allclose(right.detach().numpy(), ref_r, rtol=1e-12)
    assert torch.isnan(left[2]) and not torch.isnan(right[2])
    torch.nansum(left + right).backward()
    assert torch.isfinite(t.grad).all()
    assert OUTER_CORNERS["mediapipe"] == (33, 263)  # the eye corners the iris ROIs use too


def test_refinement_puts_points_where_mediapipe_does():
    mesh = torch.zeros(1, 468, 3)
    mesh[..., 2] = torch.arange(468.0)
    lips, le, re = torch.full((1, 80, 2), 1.0), torch.full((1, 71, 2), 2.0), torch.full((1, 71, 2), 3.0)
    li, ri = torch.full((1, 5, 2), 4.0), torch.full((1, 5, 2), 5.0)
    out = refined_landmarks(mesh, lips=lips, left_eye=le, right_eye=re, left_iris=li, right_iris=ri)[0]
    assert out.shape == (478, 3)
    assert (out[61, :2] == 1).all() and (out[33, :2] == 2).all() and (out[263, :2] == 3).all()
    assert (out[1, :2] == 0).all() and (out[:468, 2] == torch.arange(468.0)).all()  # z kept
    left16 = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]
    assert (out[468:473, :2] == 4).all() and torch.allclose(out[468:473, 2], torch.tensor(left16).float().mean())
    assert (out[473:, :2] == 5).all()


def test_hand_built_graph_matches_numpy_semantics():
    """Ops and options the face models do not exercise: SAME max-pool (asymmetric padding),
    PRELU with a per-pixel alpha, a fused RELU6, STRIDED_SLICE and RESHAPE, at batch 2."""
    T, Op = tflite_reader.Tensor, tflite_reader.Operator
    rng = np.random.default_rng(3)
    alpha = rng.normal(0.3, 0.2, (4, 4, 2)).astype(np.float32)
    bias = np.array([2.5, -1.0], np.float32)
    tensors = [T(0, "in", (1, 8, 8, 2), np.float32), T(1, "pool", (1, 4, 4, 2), np.float32),
               T(2, "alpha", (4, 4, 2), np.float32, alpha), T(3, "prelu", (1, 4, 4, 2), np.float32),
               T(4, "bias", (2,), np.float32, bias), T(5, "add", (1, 4, 4, 2), np.float32),
               T(6, "b", (4,), np.int32, np.array([0, 0, 0, 1], np.int32)),
               T(7, "e", (4,), np.int32, np.array([1, 4, 4, 2], np.int32)),
               T(8, "s", (4,), np.int32, np.array([1, 1, 1, 1], np.int32)),
               T(9, "slice", (1, 4, 4, 1), np.float32), T(10, "flat", (1, 16), np.float32)]
    ops = [Op(0, "MAX_POOL_2D", 1, [0], [1], dict(padding="SAME", stride_w=2, stride_h=2, filter_w=3, filter_h=3,
                                                  activation="NONE")),
           Op(1, "PRELU", 1, [1, 2], [3]),
           Op(2, "ADD", 1, [3, 4], [5], dict(activation="RELU6")),
           Op(3, "STRIDED_SLICE", 1, [5, 6, 7, 8], [9], dict(begin_mask=0, end_mask=0, ellipsis_mask=0,
                                                             new_axis_mask=0, shrink_axis_mask=0)),
           Op(4, "RESHAPE", 1, [9], [10], dict(new_shape=[1, -1]))]
    graph = G.TFLiteGraph(tflite_reader.Model(tensors, ops, [0], [5, 10]))
    x = rng.normal(0, 3, (2, 8, 8, 2)).astype(np.float32)
    add, flat = graph(torch.as_tensor(x).permute(0, 3, 1, 2))

    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-np.inf)  # SAME: 1 px, after
    pool = np.stack([np.stack([padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max((1, 2)) for j in range(4)], 1)
                     for i in range(4)], 1)
    want = np.clip(np.where(pool >= 0, pool, pool * alpha) + bias, 0, 6)
    np.testing.assert_allclose(add.numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(flat.numpy(), want[..., 1].reshape(2, 16), rtol=1e-6, atol=1e-6)
    assert graph.op_counts() == {"MAX_POOL_2D": 1, "PRELU": 1, "ADD": 1, "STRIDED_SLICE": 1, "RESHAPE": 1}
