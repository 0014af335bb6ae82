#!/usr/bin/env python
"""Speed of the PyTorch Face Mesh port against the TFLite runtime, and how the port's
landmarks compare with the pipeline's ``mp.solutions`` output (a script, not a test).

    python benchmarks/bench_mesh_torch.py [--shared PATH] [--n-crops N] [--seconds S]

Part 1, frames/s on the same real 192x192 face crops (64x64 eye crops for the iris model),
one thread everywhere (OMP/MKL = 1, ``torch.set_num_threads(1)``, TFLite ``num_threads=1``),
because the machine is shared:

- ``tflite``: ``ai_edge_litert`` Interpreter, one image per ``invoke`` (its batch is 1).
  The attention model's custom ops exist only inside MediaPipe, so its reference row is
  MediaPipe's ``InferenceCalculator`` graph fed 192x192 images (includes the graph's image
  conversion: an upper bound on the runtime's cost).
- ``torch fwd``: the port, ``torch.no_grad``, batch 1 and 16.
- ``torch fwd+bwd``: forward and backward of the summed EAR (mesh models) or of the summed
  landmarks (iris) to the input image, batch 1 and 16.

Each cell: one warm-up pass, then passes over the crops for at least ``--seconds``; the
median per-pass rate is printed.

Part 2, observation: the pipeline (``steps.faces_one`` + ``steps.landmarks_one``, i.e.
``mp.solutions.face_mesh`` in video mode on the StableCrop around the face track) against the
port's attention model on the very same crops (``Frame.rgb_crop`` of the same boxes, the
whole crop resized to 192x192, as :func:`landmarks_in_frame` does), and against the port on
a square 1.5x face-box crop (MediaPipe's own ROI size). Distances in frame pixels, as NME
(mean point distance / inter-ocular distance 33-263), and EAR differences per frame.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import parser, rate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ["selfie_blinks.mp4", "talking_crop_a.mp4"]
FACE_SCALE = 1.5


def _params():
    from blinkbench.core import config

    return config.load(ROOT / "params.yaml")


def _square(face_box, scale: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = face_box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0)
    return tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))


def _tracks(shared: Path, work: Path) -> dict:
    import pandas as pd

    from blinkbench.spine import steps

    params = _params()
    out = {}
    for clip in CLIPS:
        path = shared / "samples" / "blink" / clip
        steps.faces_one(path, work / f"{clip}.track.parquet", work / f"{clip}.crops.npz", params)
        out[clip] = pd.read_parquet(work / f"{clip}.track.parquet")
    return out


def _face_crops(shared: Path, tracks: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n real 192x192 face crops (uint8, NHWC) spread over the clips, and 2n eye crops."""
    import av

    from blinkbench.mesh_torch import TorchFaceMesh, crop_resize, to_tensor
    from blinkbench.mesh_torch.facemesh import IRIS_SIZE, _roi_affine, crop_affine, eye_rois

    faces = []
    per_clip = {c: set(np.linspace(0, len(t) - 1, n // len(CLIPS) + 1).round().astype(int)[: n // len(CLIPS)].tolist())
                for c, t in tracks.items()}
    for clip, frames in per_clip.items():
        track = tracks[clip]
        with av.open(str(shared / "samples" / "blink" / clip)) as c:
            for i, fr in enumerate(c.decode(video=0)):
                if i in frames and track.face_present.iloc[i]:
                    r = track.iloc[i]
                    x = crop_resize(to_tensor(fr.to_ndarray(format="rgb24")), _square((r.x0, r.y0, r.x1, r.y1), FACE_SCALE))
                    faces.append((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    faces = np.stack(faces)
    with torch.no_grad():
        x = to_tensor(faces)
        rois = eye_rois(TorchFaceMesh()(x).landmarks)
        eyes = [crop_affine(x, _roi_affine(*rois[e], IRIS_SIZE, e == "right"), IRIS_SIZE) for e in ("left", "right")]
    eyes = (torch.cat(eyes).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return faces, eyes



def _tflite_pass(path, images: np.ndarray, scale: float = 1.0, shift: float = 0.0):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    idx = it.get_input_details()[0]["index"]
    outs = [d["index"] for d in it.get_output_details()]
    xs = [(im[None].astype(np.float32) / 255) * scale + shift for im in images]

    def run():
        for x in xs:
            it.set_tensor(idx, x)
            it.invoke()
            for o in outs:
                it.get_tensor(o)

    return run


def _mediapipe_attention_pass(images: np.ndarray):
    import mediapipe as mp
    from google.protobuf import text_format
    from mediapipe.calculators.tensor import image_to_tensor_calculator_pb2, inference_calculator_pb2  # noqa: F401
    from mediapipe.framework import calculator_pb2
    from mediapipe.python import packet_creator
    from mediapipe.python._framework_bindings import calculator_graph, resource_util

    from blinkbench.mesh_torch.facemesh import FACE_MESH_ATTENTION_MODEL

    resource_util.set_resource_dir(os.path.dirname(os.path.dirname(mp.__file__)))
    cfg = calculator_pb2.CalculatorGraphConfig()
    text_format.Parse(f"""
      input_stream: "image" output_stream: "out"
      node {{ calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" output_stream: "TENSORS:in"
        options {{ [mediapipe.ImageToTensorCalculatorOptions.ext] {{ output_tensor_width: 192 output_tensor_height: 192
          keep_aspect_ratio: false output_tensor_float_range {{ min: 0 max: 1 }} }} }} }}
      node {{ calculator: "TfLiteCustomOpResolverCalculator" output_side_packet: "OP_RESOLVER:op_resolver" }}
      node {{ calculator: "InferenceCalculator" input_stream: "TENSORS:in" output_stream: "TENSORS:out"
        input_side_packet: "OP_RESOLVER:op_resolver"
        options {{ [mediapipe.InferenceCalculatorOptions.ext] {{ model_path: "mediapipe/modules/{FACE_MESH_ATTENTION_MODEL}"
          delegate {{ xnnpack {{ num_threads: 1 }} }} }} }} }}""", cfg)
    graph = calculator_graph.CalculatorGraph(graph_config=cfg)
    got = []
    graph.observe_output_stream("out", lambda s, p: got.append(p.timestamp.value))
    graph.start_run()
    frames = [packet_creator.create_image_frame(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(im))
              for im in images]
    state = {"t": 0}

    def run():
        start = len(got)
        for f in frames:
            graph.add_packet_to_input_stream("image", f.at(state["t"]))
            state["t"] += 1
        graph.wait_until_idle()
        assert len(got) - start == len(frames)

    return run, graph


def _torch_passes(model, images: np.ndarray, batch: int, backward: bool, loss):
    from blinkbench.mesh_torch import to_tensor

    x_all = to_tensor(images)
    chunks = [x_all[k : k + batch] for k in range(0, len(x_all) - batch + 1, batch)]

    def run():
        for x in chunks:
            if backward:
                x = x.clone().requires_grad_(True)
                loss(model, x).backward()
            else:
                with torch.no_grad():
                    loss(model, x)

    return run, sum(len(c) for c in chunks)


def speed_table(faces: np.ndarray, eyes: np.ndarray, seconds: float) -> None:
    from blinkbench.mesh_torch import TorchFaceMesh, TorchFaceMeshAttention, TorchIris, ear_torch, model_file
    from blinkbench.mesh_torch.facemesh import FACE_MESH_MODEL, IRIS_MODEL

    def ear_loss(m, x):
        left, right = ear_torch(m.landmarks(x).landmarks)
        return (left + right).sum()

    def iris_loss(m, x):
        r = m(x)
        return r.contour.sum() + r.iris.sum()

    rows = []
    specs = [("face_landmark (468)", TorchFaceMesh().eval(), faces, ear_loss, _tflite_pass(model_file(FACE_MESH_MODEL), faces)),
             ("attention (478)", TorchFaceMeshAttention().eval(), faces, ear_loss, None),
             ("iris (64x64)", TorchIris().eval(), eyes, iris_loss, _tflite_pass(model_file(IRIS_MODEL), eyes))]
    for name, model, images, loss, ref in specs:
        graph = None
        if ref is None:
            try:
                ref, graph = _mediapipe_attention_pass(images)
                ref_label = "mediapipe graph"
            except Exception as exc:  # mediapipe absent or changed: the row stays informative
                print(f"  ({name}: MediaPipe reference unavailable: {exc})")
                ref_label = "n/a"
        else:
            ref_label = "tflite"
        row = {"model": name, "ref": ref_label,
               "ref fps": rate(ref, len(images), seconds) if ref is not None else float("nan")}
        if graph is not None:
            graph.close()
        for label, b, bwd in (("fwd b1", 1, False), ("fwd b16", 16, False), ("fwd+bwd b1", 1, True), ("fwd+bwd b16", 16, True)):
            run, n = _torch_passes(model, images, b, bwd, loss)
            row[label] = rate(run, n, seconds)
        rows.append(row)
    cols = ["ref fps", "fwd b1", "fwd b16", "fwd+bwd b1", "fwd+bwd b16"]
    print(f"\nframes/s, 1 thread, {len(faces)} face crops / {len(eyes)} eye crops "
          f"(torch {torch.__version__}, {torch.get_num_threads()} thread)")
    print(f"{'model':<22}{'reference':<17}" + "".join(f"{c:>13}" for c in cols))
    for r in rows:
        print(f"{r['model']:<22}{r['ref']:<17}" + "".join(f"{r[c]:>13.1f}" for c in cols))
    for r in rows:
        print(f"  {r['model']}: port fwd b1 = {r['fwd b1'] / r['ref fps']:.2f}x reference, "
              f"fwd+bwd b16 = {r['fwd+bwd b16'] / r['ref fps']:.2f}x reference")


def pipeline_comparison(shared: Path, work: Path, tracks: dict) -> None:
    from blinkbench.spine import steps
    from blinkbench.spine.ear import OUTER_CORNERS, ear_from_landmarks
    from blinkbench.spine.landmarks.extract import StableCrop, read_landmarks
    from blinkbench.mesh_torch import TorchFaceMeshAttention, landmarks_in_frame, to_tensor
    from blinkbench.video.codec import FrameReader, _clip_box

    params = _params()
    model = TorchFaceMeshAttention().eval()
    scale = params["landmarks"]["crop_scale"]
    a, b = OUTER_CORNERS["mediapipe"]
    print(f"\npipeline (mp.solutions face_mesh, video mode, refine_landmarks) vs port (attention model), "
          f"frame pixels; NME = mean point distance / inter-ocular distance")
    print(f"{'clip':<20}{'port input':<26}{'frames':>7}{'NME %':>8}{'p95 NME %':>10}{'EAR MAE':>9}{'EAR r':>7}"
          f"{'pipe EAR':>9}{'port EAR':>9}")
    for clip in CLIPS:
        path = shared / "samples" / "blink" / clip
        lm_path = work / f"{clip}.landmarks.parquet"
        steps.landmarks_one(path, work / f"{clip}.track.parquet", lm_path, params)
        pipe = np.concatenate([xyz for *_, xyz in read_landmarks(lm_path)])
        track = tracks[clip]
        boxes = track[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
        crop = StableCrop(scale)
        same, square, keep = [], [], []
        with torch.no_grad():
            for fr in FrameReader(str(path)):
                i = fr.index
                if not (i < len(track) and track.face_present.iloc[i]) or np.isnan(pipe[i, 0, 0]):
                    continue
                box = crop.update(boxes[i], fr.width, fr.height)
                x0, y0, x1, y1 = _clip_box(box, fr.width, fr.height, even=True)
                rgb = to_tensor(fr.rgb_crop(box))
                pts = landmarks_in_frame(model, rgb, (0, 0, x1 - x0, y1 - y0)).landmarks[0].numpy()
                same.append(pts + [x0, y0, 0])
                square.append(landmarks_in_frame(model, to_tensor(fr.rgb()), _square(boxes[i], FACE_SCALE)).landmarks[0].numpy())
                keep.append(i)
        ref = pipe[keep]
        ref_ear = np.nanmean(np.stack(ear_from_landmarks(ref, "mediapipe")), 0)
        iod = np.linalg.norm(ref[:, a, :2] - ref[:, b, :2], axis=-1)
        for label, pts in (("same crop, stretched", np.stack(same)), ("square 1.5x face box", np.stack(square))):
            nme = np.linalg.norm(pts[..., :2] - ref[..., :2], axis=-1).mean(1) / iod * 100
            ear = np.nanmean(np.stack(ear_from_landmarks(pts, "mediapipe")), 0)
            r = np.corrcoef(ear, ref_ear)[0, 1]
            print(f"{clip:<20}{label:<26}{len(keep):>7}{nme.mean():>8.2f}{np.percentile(nme, 95):>10.2f}"
                  f"{np.abs(ear - ref_ear).mean():>9.4f}{r:>7.3f}{np.median(ref_ear):>9.3f}{np.median(ear):>9.3f}")


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--n-crops", type=int, default=32, help="face crops for the speed table (multiple of 16)")
    ap.add_argument("--seconds", type=float, default=4.0, help="minimum timing per cell")
    ap.add_argument("--skip-pipeline", action="store_true")
    args = ap.parse_args(argv)
    if not (args.shared / "samples" / "blink").is_dir():
        print(f"{args.shared}/samples/blink not found: this benchmark needs the shared real clips.")
        return 0
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        print("ai_edge_litert (the TFLite runtime, a test dependency) is not installed: no reference to time.")
        return 0
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_mesh_torch_") as tmp:
        work = Path(tmp)
        tracks = _tracks(args.shared, work)
        faces, eyes = _face_crops(args.shared, tracks, args.n_crops)
        speed_table(faces, eyes, args.seconds)
        if not args.skip_pipeline:
            pipeline_comparison(args.shared, work, tracks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
