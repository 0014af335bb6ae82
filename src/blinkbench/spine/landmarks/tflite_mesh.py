"""Face Mesh with refined eyes by the TFLite runtime, in batches (backend ``mediapipe_tflite``).

Runs ``face_landmark_with_attention.tflite`` from the installed mediapipe wheel (the model
behind ``mp.solutions.face_mesh`` with ``refine_landmarks=True``) with ``ai_edge_litert``
and its XNNPACK delegate, on the pipeline's own stable face crop (see :mod:`.extract`),
without MediaPipe's graph: no detector, no per-frame graph scheduling. By default
(``roi: track``) it follows the face as the graph does in video mode (the model's input
is the ROI of the previous frame's landmarks, cut from this frame's crop), one crop per
``invoke``; ``roi: crop`` stretches the whole crop instead and runs ``batch_size`` crops
per ``invoke``.

The model holds three MediaPipe custom operators (``Landmarks2TransformMatrix``,
``TransformTensorBilinear``, ``TransformLandmarks``, version 2) that only MediaPipe's own
op resolver provides. So at load time the flatbuffer is cut into its runs of builtin
operators, each packed as a model of its own (weights shared by copy, ~2.5 MB each), and
the custom operators between them run here in NumPy, batched, with the kernels' semantics
(as :mod:`blinkbench.mesh_torch.graph` reproduces them in torch; the tests compare the two).
For a free batch size the cut models get ``RESHAPE`` targets and batch-axis
``STRIDED_SLICE`` bounds that follow the input batch instead of TFLite's static 1.

Input as MediaPipe feeds the model: RGB in [0, 1], 192x192 (bilinear).
Output: the 478 points of MediaPipe's ``LandmarksRefinementCalculator`` (lips and eye
contours replace the mesh's x, y; irises appended with z = mean z of the first 16 contour
points), in the crop's pixels, z on the x scale. A crop whose face-presence score
(sigmoid of ``conv_faceflag``) is below ``min_tracking_confidence`` gives no landmarks
(NaN row), as the graph drops a face it no longer tracks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from blinkbench.core.params_types import LandmarksSection

from .base import LandmarkBackend, register

MESH_SIZE = 192
MODEL = "face_landmark/face_landmark_with_attention.tflite"
OUTPUTS = ("output_mesh_identity", "output_lips", "output_left_eye", "output_right_eye",
           "output_left_iris", "output_right_iris", "conv_faceflag")

# LandmarksRefinementCalculator index tables (tensors_to_face_landmarks_with_attention.pbtxt).
# The one copy: blinkbench.mesh_torch.facemesh (the differentiable port) imports them from here.
LIPS_INDICES = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
    76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
    62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407,
)
LEFT_EYE_INDICES = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
    130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
    226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
    35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
    156, 70, 63, 105, 66, 107, 55, 193,
)
RIGHT_EYE_INDICES = (
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
    359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
    446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
    265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
    383, 300, 293, 334, 296, 336, 285, 417,
)
N_EYE_CONTOUR_FOR_IRIS_Z = 16                     # iris z = mean z of the first 16 eye points


def model_path() -> Path:
    """The attention model inside the installed mediapipe wheel (located, never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mediapipe is not installed: its wheel ships the Face Mesh model")
    path = Path(list(spec.submodule_search_locations)[0]) / "modules" / MODEL
    if not path.is_file():
        raise FileNotFoundError(f"Face Mesh model not found at {path}")
    return path


# ---------------------------------------------------------------------- custom operators (NumPy, batched)

def landmarks_to_transform_matrix(lm: np.ndarray, o: dict) -> np.ndarray:
    """``Landmarks2TransformMatrix`` v2: (B, N, 3) -> (B, 4, 4) output-pixel -> input matrix."""
    idx = o.get("_idx")
    if idx is None:  # computed once per operator (the options dict lives as long as the model)
        idx = o["_idx"] = np.array(sorted({int(i) for i in o["subset_idxs"]}))
    left, right = int(o["left_rotation_idx"]), int(o["right_rotation_idx"])
    out_w, out_h = float(o["output_width"]), float(o["output_height"])
    xy = lm[..., :2].astype(np.float32)
    d = xy[:, right] - xy[:, left]
    r = np.float32(o.get("target_rotation_radians", 0.0)) - np.arctan2(d[:, 1], d[:, 0])
    c, s = np.cos(r)[:, None], np.sin(r)[:, None]
    pts = xy[:, idx]
    rx = c * pts[..., 0] - s * pts[..., 1]
    ry = s * pts[..., 0] + c * pts[..., 1]
    xmax, xmin, ymax, ymin = rx.max(1), rx.min(1), ry.max(1), ry.min(1)
    mx, my = (xmax + xmin) / 2, (ymax + ymin) / 2
    c, s = c[:, 0], s[:, 0]
    cx, cy = c * mx + s * my, -s * mx + c * my
    sx = float(o["scale_x"]) * (xmax - xmin) / out_w
    sy = float(o["scale_y"]) * (ymax - ymin) / out_h
    m = np.zeros((len(lm), 4, 4), np.float32)
    m[:, 0, 0], m[:, 0, 1] = c * sx, s * sy
    m[:, 1, 0], m[:, 1, 1] = -s * sx, c * sy
    m[:, 0, 3] = cx - m[:, 0, 0] * (out_w / 2) - m[:, 0, 1] * (out_h / 2)
    m[:, 1, 3] = cy - m[:, 1, 0] * (out_w / 2) - m[:, 1, 1] * (out_h / 2)
    m[:, 2, 2] = m[:, 3, 3] = 1
    return m


def transform_tensor_bilinear(x: np.ndarray, m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """``TransformTensorBilinear`` v2 on NHWC ``x``: bilinear samples at the ``m``-mapped
    pixel centres (half-pixel corrected), zero where the point falls outside the input."""
    b, h, w, ch = x.shape
    ys, xs = _grid(out_h, out_w)
    a00, a01, a03 = m[:, 0, 0, None, None], m[:, 0, 1, None, None], m[:, 0, 3, None, None]
    a10, a11, a13 = m[:, 1, 0, None, None], m[:, 1, 1, None, None], m[:, 1, 3, None, None]
    tx = a00 * xs + a01 * ys + (a03 + 0.5 * a00 + 0.5 * a01 - 0.5)
    ty = a10 * xs + a11 * ys + (a13 + 0.5 * a10 + 0.5 * a11 - 0.5)
    inside = ((tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)).reshape(b, -1, 1)
    tx, ty = np.clip(tx, 0, w - 1), np.clip(ty, 0, h - 1)
    x0, y0 = np.floor(tx).astype(np.intp), np.floor(ty).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (tx - x0).reshape(b, -1, 1), (ty - y0).reshape(b, -1, 1)
    flat = x.reshape(b * h * w, ch)
    base = (np.arange(b) * (h * w))[:, None, None]

    def at(yy, xx):  # rows of the flattened map: one gather per corner
        return flat[(base + yy * w + xx).reshape(b, -1)]

    out = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1))
    return (out * inside).reshape(b, out_h, out_w, ch).astype(np.float32, copy=False)


_GRIDS: dict = {}


def _grid(out_h: int, out_w: int):
    if (out_h, out_w) not in _GRIDS:
        _GRIDS[out_h, out_w] = np.meshgrid(np.arange(out_h, dtype=np.float32), np.arange(out_w, dtype=np.float32),
                                           indexing="ij")
    return _GRIDS[out_h, out_w]


def transform_landmarks(lm: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``TransformLandmarks`` v2: (B, N, 2|3) points through the first two rows of ``m``."""
    out = lm.astype(np.float32).copy()
    x, y = lm[..., 0], lm[..., 1]
    out[..., 0] = m[:, 0, 0, None] * x + m[:, 0, 1, None] * y + m[:, 0, 3, None]
    out[..., 1] = m[:, 1, 0, None] * x + m[:, 1, 1, None] * y + m[:, 1, 3, None]
    return out


# ---------------------------------------------------------------------- cache of the cut

CUT_VERSION = 1


def cache_dir() -> Path:
    """Where cut models are kept: ``$BLINKBENCH_CACHE`` or ``~/.cache/blinkbench``."""
    import os

    root = os.environ.get("BLINKBENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blinkbench"
    return Path(root) / "tflite_mesh"


def _cut_key(path: Path) -> str:
    import hashlib

    return f"{hashlib.sha256(path.read_bytes()).hexdigest()[:24]}_v{CUT_VERSION}"


def _load_cut(path: Path):
    """The cached cut of ``path`` (a JSON index and plain .tflite files: data only, nothing
    executed), or None when absent or unreadable (then it is cut again)."""
    import json

    d = cache_dir() / _cut_key(path)
    try:
        meta = json.loads((d / "cut.json").read_text())
        steps = []
        for st in meta["steps"]:
            if st[0] == "builtin":
                st = ["builtin", (d / st[1]).read_bytes(), st[2], st[3]]
            steps.append(st)
        return steps, {int(k): v for k, v in meta["names"].items()}, int(meta["input"]), list(meta["outputs"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _store_cut(path: Path, cut) -> None:
    """Write the cut atomically (a temp directory renamed into place); a failure only costs
    the next start-up the cut again."""
    import json
    import os
    import shutil
    import tempfile

    steps, names, inp, outs = cut
    root = cache_dir()
    final = root / _cut_key(path)
    if final.exists():
        return
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp_"))
        index = []
        for k, st in enumerate(steps):
            if st[0] == "builtin":
                (tmp / f"seg{k}.tflite").write_bytes(st[1])
                index.append(["builtin", f"seg{k}.tflite", st[2], st[3]])
            else:
                index.append(st)
        used = {i for st in steps for i in st[2] + st[3]} | {inp, *outs}
        (tmp / "cut.json").write_text(json.dumps({"steps": index, "names": {str(i): names[i] for i in sorted(used)},
                                                  "input": inp, "outputs": outs}))
        os.rename(tmp, final)
        tmp = None
    except (OSError, TypeError, ValueError):  # unwritable cache, or options JSON cannot hold
        pass
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- the cut model

class SplitModel:
    """A TFLite model with MediaPipe custom ops, run as builtin-op segments + NumPy ops.

    ``run(x)`` takes the (B, 192, 192, 3) float32 input and returns the model's outputs by
    tensor name, each with the batch first."""

    def __init__(self, path: str | Path, num_threads: int = 1, cache: bool = True):
        self._num_threads = int(num_threads)
        path = Path(path)
        cut = _load_cut(path) if cache else None
        if cut is None:
            cut = self.cut(path)
            if cache:
                _store_cut(path, cut)
        self.steps, self.names, self.input, self.outputs = cut
        self._interpreters: list = []
        self._batch = 0

    @classmethod
    def cut(cls, path: Path) -> tuple[list, dict, int, list]:
        """(steps, tensor names, input, outputs): builtin runs as packed models, custom ops
        with their options."""
        from ai_edge_litert import schema_py_generated as S
        import flatbuffers
        from flatbuffers import flexbuffers

        model = S.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
        if len(model.subgraphs) != 1:
            raise ValueError(f"{path}: expected one subgraph, found {len(model.subgraphs)}")
        sg = model.subgraphs[0]
        codes = model.operatorCodes
        names = {i: t.name.decode() if isinstance(t.name, bytes) else t.name for i, t in enumerate(sg.tensors)}
        const = {i for i, t in enumerate(sg.tensors) if t.buffer and model.buffers[t.buffer].data is not None
                 and len(model.buffers[t.buffer].data)}
        ops = list(sg.operators)

        def kind(op):
            code = codes[op.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            if builtin == S.BuiltinOperator.CUSTOM:
                cc = code.customCode
                return "CUSTOM:" + (cc.decode() if isinstance(cc, bytes) else cc)
            return builtin

        # Segments: maximal runs of builtin operators, and single custom operators.
        segments: list[tuple[str, list]] = []
        for op in ops:
            k = kind(op)
            if isinstance(k, str):
                segments.append((k, [op]))
            elif segments and segments[-1][0] == "builtin":
                segments[-1][1].append(op)
            else:
                segments.append(("builtin", [op]))
        graph_inputs, graph_outputs = [int(i) for i in sg.inputs], [int(i) for i in sg.outputs]
        if len(graph_inputs) != 1:
            raise ValueError(f"{path}: expected one input, found {len(graph_inputs)}")
        consumed_after: list[set[int]] = []
        later: set[int] = set(graph_outputs)
        for _, seg_ops in reversed(segments):
            consumed_after.append(set(later))
            for op in seg_ops:
                later.update(int(i) for i in op.inputs if i >= 0)
        consumed_after.reverse()

        cls._patch_batch(model, sg, ops, kind, S)
        steps: list = []
        for (k, seg_ops), needed_later in zip(segments, consumed_after):
            produced = {int(o) for op in seg_ops for o in op.outputs}
            if k == "builtin":
                ins: list[int] = []
                for op in seg_ops:
                    for i in op.inputs:
                        i = int(i)
                        if i >= 0 and i not in produced and i not in const and i not in ins:
                            ins.append(i)
                outs = [int(o) for op in seg_ops for o in op.outputs if int(o) in needed_later]
                sg.operators, sg.inputs, sg.outputs = seg_ops, ins, outs
                builder = flatbuffers.Builder(1 << 22)
                builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
                steps.append(["builtin", bytes(builder.Output()), ins, outs])
            else:
                op = seg_ops[0]
                raw = bytes(op.customOptions) if op.customOptions is not None else b""
                opts = flexbuffers.Loads(raw) if raw else {}
                shape = [int(v) for v in sg.tensors[op.outputs[0]].shape]
                steps.append([k, opts, [int(i) for i in op.inputs if i >= 0], [int(o) for o in op.outputs], shape])
        return steps, names, graph_inputs[0], graph_outputs

    @staticmethod
    def _patch_batch(model, sg, ops, kind, S) -> None:
        """Let the batch axis follow the input: RESHAPE targets and batch-axis STRIDED_SLICE
        bounds written for TFLite's static batch 1."""
        for op in ops:
            k = kind(op)
            if k == S.BuiltinOperator.RESHAPE:
                src = sg.tensors[op.inputs[0]]
                if len(src.shape) == 0 or src.shape[0] != 1:
                    continue
                if len(op.inputs) > 1 and op.inputs[1] >= 0:
                    t = sg.tensors[op.inputs[1]]
                    buf = model.buffers[t.buffer]
                    if buf.data is not None and len(buf.data):
                        shape = np.frombuffer(bytes(buf.data), np.int32).copy()
                        if len(shape) and shape[0] == 1:
                            shape[0] = -1
                            buf.data = np.frombuffer(shape.tobytes(), np.uint8).copy()
                opt = op.builtinOptions
                if opt is not None and getattr(opt, "newShape", None) is not None and len(opt.newShape) \
                        and opt.newShape[0] == 1:
                    opt.newShape = [-1] + list(opt.newShape[1:])
            elif k == S.BuiltinOperator.STRIDED_SLICE:
                src = sg.tensors[op.inputs[0]]
                o = op.builtinOptions
                begin, end, strides = (np.frombuffer(bytes(model.buffers[sg.tensors[i].buffer].data), np.int32)
                                       for i in op.inputs[1:4])
                if (len(src.shape) and src.shape[0] == 1 and begin[0] == 0 and end[0] >= 1 and strides[0] == 1
                        and not (o.shrinkAxisMask & 1)):
                    o.beginMask |= 1
                    o.endMask |= 1

    def _prepare(self, batch: int) -> None:
        if batch == self._batch:
            return
        from ai_edge_litert.interpreter import Interpreter

        self._interpreters = []
        for step in self.steps:
            if step[0] != "builtin":
                self._interpreters.append(None)
                continue
            it = Interpreter(model_content=step[1], num_threads=self._num_threads)
            for d in it.get_input_details():
                if d["shape"][0] != batch:
                    it.resize_tensor_input(d["index"], [batch, *d["shape"][1:]])
            it.allocate_tensors()
            by_name = {d["name"]: d["index"] for d in it.get_input_details()}
            out_by_name = {d["name"]: d["index"] for d in it.get_output_details()}
            self._interpreters.append((it, [by_name[self.names[i]] for i in step[2]],
                                       [out_by_name[self.names[o]] for o in step[3]]))
        self._batch = batch

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self._prepare(len(x))
        vals: dict[int, np.ndarray] = {self.input: x}
        for step, interp in zip(self.steps, self._interpreters):
            k = step[0]
            if k == "builtin":
                it, in_idx, out_idx = interp
                for t, j in zip(step[2], in_idx):
                    it.set_tensor(j, np.ascontiguousarray(vals[t], np.float32))
                it.invoke()
                for t, j in zip(step[3], out_idx):
                    vals[t] = it.get_tensor(j)
                continue
            _, opts, ins, outs, shape = step
            if k == "CUSTOM:Landmarks2TransformMatrix":
                vals[outs[0]] = landmarks_to_transform_matrix(vals[ins[0]], opts)
            elif k == "CUSTOM:TransformTensorBilinear":
                vals[outs[0]] = transform_tensor_bilinear(vals[ins[0]], vals[ins[1]], shape[1], shape[2])
            elif k == "CUSTOM:TransformLandmarks":
                vals[outs[0]] = transform_landmarks(vals[ins[0]], vals[ins[1]])
            else:
                raise NotImplementedError(f"custom operator {k} is not implemented")
        return {self.names[o]: vals[o] for o in self.outputs}


def refine(out: dict[str, np.ndarray]) -> np.ndarray:
    """(B, 478, 3) points in 192-pixel units from the attention model's outputs, as
    MediaPipe's ``LandmarksRefinementCalculator``."""
    b = len(out["output_mesh_identity"])
    pts = np.empty((b, 478, 3), np.float32)
    pts[:, :468] = out["output_mesh_identity"].reshape(b, 468, 3)
    for idx, name, n in ((LIPS_INDICES, "output_lips", 80), (LEFT_EYE_INDICES, "output_left_eye", 71),
                         (RIGHT_EYE_INDICES, "output_right_eye", 71)):
        pts[:, list(idx), :2] = out[name].reshape(b, n, 2)
    for k, (eye, name) in enumerate(((LEFT_EYE_INDICES, "output_left_iris"), (RIGHT_EYE_INDICES, "output_right_iris"))):
        z = pts[:, list(eye[:N_EYE_CONTOUR_FOR_IRIS_Z]), 2].mean(1)
        sl = slice(468 + 5 * k, 473 + 5 * k)
        pts[:, sl, :2] = out[name].reshape(b, 5, 2)
        pts[:, sl, 2] = z[:, None]
    return pts


# MediaPipe's face_landmark_landmarks_to_roi: box of the mesh points, rotated so the line
# through points 33 and 263 is level, long side x 1.5, square.
ROI_ROTATION_POINTS = (33, 263)
ROI_SCALE = 1.5


def roi_from_landmarks(pts: np.ndarray) -> tuple[float, float, float, float]:
    """(cx, cy, side, rotation) of the graph's tracking ROI from (>= 468, 3) points."""
    xy = pts[:468, :2].astype(np.float64)
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    a, b = xy[ROI_ROTATION_POINTS[0]], xy[ROI_ROTATION_POINTS[1]]
    r = -np.arctan2(-(b[1] - a[1]), b[0] - a[0])
    return (x0 + x1) / 2, (y0 + y1) / 2, ROI_SCALE * max(x1 - x0, y1 - y0), float(r)


BORDER = cv2.BORDER_REPLICATE


def warp_roi(img: np.ndarray, roi, border: int | None = None) -> np.ndarray:
    """The rotated square ``roi`` of ``img`` as the 192x192 model input, as MediaPipe's
    OpenCV ImageToTensor converter cuts it: the ROI's corners (continuous coordinates) map
    to the output's corner pixel indices (no half-pixel shift), bilinear."""
    cx, cy, side, r = roi
    k, c, s = side / MESH_SIZE, np.cos(r), np.sin(r)
    h = MESH_SIZE / 2
    m = np.array([[k * c, -k * s, cx - k * (c - s) * h],
                  [k * s, k * c, cy - k * (s + c) * h]], np.float64)
    return cv2.warpAffine(img, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=BORDER if border is None else border)


def from_roi(p: np.ndarray, roi) -> np.ndarray:
    """Model-input points (192-pixel units) back to the image ``roi`` was cut from."""
    cx, cy, side, r = roi
    c, s = np.cos(r), np.sin(r)
    u, v = p[:, 0] / MESH_SIZE - 0.5, p[:, 1] / MESH_SIZE - 0.5
    out = np.empty_like(p)
    out[:, 0] = cx + side * (u * c - v * s)
    out[:, 1] = cy + side * (u * s + v * c)
    out[:, 2] = p[:, 2] / MESH_SIZE * side
    return out


@register("mediapipe_tflite")
class TFLiteMesh(LandmarkBackend):
    """The refined Face Mesh model by the TFLite runtime.

    ``roi``:

    - ``track`` (default): as MediaPipe's graph in video mode, each frame's model input is
      the rotated square ROI (:func:`roi_from_landmarks`) of the previous frame's landmarks,
      cut from this frame's crop; on a first frame, or after a frame without a face, the ROI
      comes from a first pass on the whole crop. Frames depend on each other, so the model
      runs one crop per ``invoke``; ``batch_size`` frames are handed over at once.
    - ``crop``: the whole crop stretched to 192x192, ``batch_size`` crops per ``invoke``
      (no dependence between frames; ~2 px median from the graph's eye points on FF++).
    """

    name = "mediapipe_tflite"
    scheme = "mediapipe"
    n_points = 478

    @classmethod
    def from_params(cls, cfg: LandmarksSection) -> "TFLiteMesh":
        t = cfg.get("tflite") or {}
        return cls(t.get("batch_size", 16), t.get("num_threads", 1), cfg.get("min_tracking_confidence", 0.5),
                   t.get("roi", "track"))

    def __init__(self, batch_size: int = 16, num_threads: int = 1, min_presence: float = 0.5,
                 roi: str = "track", path: str | Path | None = None):
        if roi not in ("track", "crop"):
            raise ValueError(f"landmarks.tflite.roi must be 'track' or 'crop', not {roi!r}")
        self.batch_size = int(batch_size)
        self.min_presence = float(min_presence)
        self.roi = roi
        self.input_size = MESH_SIZE if roi == "crop" else None  # crop: resized beside the decoder
        self._model = SplitModel(path or model_path(), num_threads)
        self._prev: np.ndarray | None = None  # track: last landmarks, frame pixels

    def reset(self) -> None:
        self._prev = None

    @staticmethod
    def prepare(rgb: np.ndarray) -> np.ndarray:
        """The crop as the ``crop`` mode's input: stretched to 192x192, RGB uint8 (bilinear)."""
        if rgb.shape[:2] == (MESH_SIZE, MESH_SIZE):
            return rgb
        return cv2.resize(rgb, (MESH_SIZE, MESH_SIZE), interpolation=cv2.INTER_LINEAR)

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 192, 192, 3) uint8 -> (B, 478, 3) points in 192-pixel units, (B,) presence."""
        out = self._model.run(images.astype(np.float32) * np.float32(1 / 255))
        flag = out["conv_faceflag"].reshape(len(images))
        return refine(out), 1 / (1 + np.exp(-flag.astype(np.float64)))

    def _good(self, pts: np.ndarray, presence: float) -> bool:
        return bool(presence >= self.min_presence) and bool(np.isfinite(pts).all())

    @staticmethod
    def _valid(c) -> bool:
        return (c is not None and c[0] is not None and getattr(c[0], "ndim", 0) == 3 and c[0].size > 0
                and c[0].shape[2] == 3 and c[1] > 0 and c[2] > 0)

    def process_batch(self, crops: list) -> list:
        """``crops``: ``(image, w, h[, x0, y0])``, ``image`` the crop (``crop`` mode: possibly
        already :meth:`prepare`-d), ``w, h`` the crop's own size, ``x0, y0`` its origin in the
        frame (``track`` mode follows the face across re-centred crops with it); returns
        points in crop pixels, or None (no crop, or no face found)."""
        if self.roi == "track":
            return [self._track_one(c) for c in crops]
        res: list = [None] * len(crops)
        ok = [k for k, c in enumerate(crops) if self._valid(c)]
        for s in range(0, len(ok), self.batch_size):
            part = ok[s:s + self.batch_size]
            images = np.stack([self.prepare(crops[k][0]) for k in part])
            if len(part) < self.batch_size:  # a short last batch: pad, so one shape is allocated
                images = np.concatenate([images, np.zeros((self.batch_size - len(part), *images.shape[1:]), np.uint8)])
            pts, presence = self.infer(images)
            for j, k in enumerate(part):
                if self._good(pts[j], presence[j]):
                    w, h = crops[k][1], crops[k][2]
                    res[k] = pts[j] * np.array([w, h, w], np.float32) / MESH_SIZE
        return res

    def _track_one(self, c) -> np.ndarray | None:
        if not self._valid(c):
            self._prev = None
            return None
        img, w, h = c[0], c[1], c[2]
        ox, oy = (c[3], c[4]) if len(c) >= 5 else (0, 0)
        if img.shape[:2] != (h, w):  # a resized crop cannot be followed: use it whole
            self._prev = None
            pts, presence = self.infer(self.prepare(img)[None])
            return pts[0] * np.array([w, h, w], np.float32) / MESH_SIZE if self._good(pts[0], presence[0]) else None
        if self._prev is None:  # (re)start: a first pass on the whole crop gives the ROI
            pts, presence = self.infer(self.prepare(img)[None])
            if not self._good(pts[0], presence[0]):
                return None
            seed = pts[0] * np.array([w, h, w], np.float32) / MESH_SIZE
        else:
            seed = self._prev - np.array([ox, oy, 0], np.float32)
        roi = roi_from_landmarks(seed)
        pts, presence = self.infer(warp_roi(np.ascontiguousarray(img), roi)[None])
        if not self._good(pts[0], presence[0]):
            self._prev = None
            return None
        out = from_roi(pts[0], roi).astype(np.float32)
        self._prev = out + np.array([ox, oy, 0], np.float32)
        return out

    def process(self, rgb: np.ndarray) -> np.ndarray | None:
        if rgb is None or rgb.size == 0:
            return None
        return self.process_batch([(rgb, rgb.shape[1], rgb.shape[0])])[0]
