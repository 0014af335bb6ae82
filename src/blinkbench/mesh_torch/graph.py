"""Execute a parsed TFLite graph as a differentiable PyTorch module (NCHW).

:class:`TFLiteGraph` turns the operator list of a :class:`~.tflite_reader.Model` into torch
calls. Layout rule: every rank-4 activation is held NCHW (TFLite holds NHWC); tensors of any
other rank keep TFLite's layout. Ops whose semantics depend on the layout (PAD, RESHAPE,
CONCATENATION, STRIDED_SLICE, broadcasting constants, PRELU alphas) translate between the
two, so the results equal TFLite's up to float rounding.

TFLite semantics reproduced here:

- ``SAME`` padding: output ``ceil(in / stride)``, total padding
  ``max(0, (out - 1) * stride + (k - 1) * dilation + 1 - in)``, the extra pixel of an odd
  total after (bottom/right), as TFLite's ``ComputePaddingHeightWidth``; max-pool padding
  never wins (padded with -inf).
- Fused activations (NONE, RELU, RELU6, RELU_N1_TO_1, TANH) on CONV_2D, DEPTHWISE_CONV_2D,
  MAX_POOL_2D, ADD, MUL, CONCATENATION.
- PRELU ``x >= 0 ? x : alpha * x`` with alpha broadcast NHWC-wise.
- ``DEQUANTIZE`` of constant fp16 weights is folded at build time (weights are float32
  buffers); a DEQUANTIZE of an activation is a float cast.
- The batch size is free: TFLite's static batch 1 in RESHAPE targets is replaced by the
  input's batch, and the MediaPipe custom ops run batched.

MediaPipe's custom operators in ``face_landmark_with_attention.tflite`` (version 2 of
``Landmarks2TransformMatrix``, ``TransformTensorBilinear``, ``TransformLandmarks``,
from ``mediapipe/util/tflite/operations``) are implemented here too, differentiably
(the crop is ``grid_sample`` with TFLite's hard out-of-bounds zeroing).

Builtin operators: CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, PRELU, ADD, MUL, PAD, RESHAPE,
CONCATENATION, STRIDED_SLICE, RELU, DEQUANTIZE (what the four MediaPipe face models use).
Anything else raises :class:`UnsupportedOp` at construction, naming the operator.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .tflite_reader import Model, Operator

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class UnsupportedOp(NotImplementedError):
    """The graph holds an operator (or an option of one) this executor does not implement."""


def same_padding(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding (before, after) along one axis."""
    out = (size + stride - 1) // stride
    eff = (k - 1) * dilation + 1
    total = max(0, (out - 1) * stride + eff - size)
    return total // 2, total - total // 2


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if name == "NONE":
        return None
    if name == "RELU":
        return F.relu
    if name == "RELU6":
        return lambda x: torch.clamp(x, 0.0, 6.0)
    if name == "RELU_N1_TO_1":
        return lambda x: torch.clamp(x, -1.0, 1.0)
    if name == "TANH":
        return torch.tanh
    raise UnsupportedOp(f"fused activation {name}")


def _with_act(fn, act_name: str):
    act = _activation(act_name)
    if act is None:
        return fn
    return lambda *a: act(fn(*a))


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class TFLiteGraph(nn.Module):
    """A TFLite graph as an ``nn.Module``.

    ``forward(*inputs)`` takes the graph inputs in order (rank-4 inputs NCHW, float) and
    returns a tuple of the graph outputs in TFLite layout (rank-4 outputs NHWC), so they
    compare one to one with the TFLite runtime's. Constants are registered as buffers (no
    gradient w.r.t. weights); the forward pass is out-of-place, so autograd flows to the
    inputs through every op.
    """

    def __init__(self, model: Model):
        super().__init__()
        self.model_inputs = list(model.inputs)
        self.model_outputs = list(model.outputs)
        self._rank = {t.index: len(t.shape) for t in model.tensors}
        self._shape = {t.index: tuple(t.shape) for t in model.tensors}
        self._const: dict[int, np.ndarray] = {t.index: t.data for t in model.tensors
                                              if t.data is not None and not t.sparse}
        self._steps: list[tuple[Callable, list[int], list[int], str]] = []
        self._n_buffers = 0
        for op in model.operators:
            self._add(op)
        # Free each intermediate value after its last use.
        last: dict[int, int] = {}
        for k, (_, ins, _, _) in enumerate(self._steps):
            for i in ins:
                last[i] = k
        keep = set(self.model_outputs)
        self._free_after = [[i for i in ins if last.get(i) == k and i not in keep and i >= 0]
                            for k, (_, ins, _, _) in enumerate(self._steps)]

    # ------------------------------------------------------------------ building

    def _buffer(self, value: np.ndarray) -> str:
        name = f"c{self._n_buffers}"
        self._n_buffers += 1
        self.register_buffer(name, torch.from_numpy(np.array(value, dtype=np.float32)))  # own, writable copy
        return name

    def _const_for(self, idx: int, like_rank: int) -> str:
        """Register constant ``idx`` laid out to broadcast against an activation of ``like_rank``."""
        c = np.asarray(self._const[idx], dtype=np.float32)
        if like_rank == 4:
            c = c.reshape((1,) * (4 - c.ndim) + c.shape) if c.ndim < 4 else c
            c = np.transpose(c, (0, 3, 1, 2))
        return self._buffer(c)

    def _get(self, name: str) -> torch.Tensor:
        return getattr(self, name)

    def _add(self, op: Operator) -> None:
        kind = op.op
        ins, outs = op.inputs, op.outputs
        if kind == "DEQUANTIZE":
            if ins[0] in self._const:
                self._const[outs[0]] = np.asarray(self._const[ins[0]], np.float32)
                return
            self._steps.append((lambda x: x.float(), ins[:1], outs, kind))
            return
        builder = getattr(self, "_op_" + kind.replace("CUSTOM:", "custom_").lower(), None)
        if builder is None:
            raise UnsupportedOp(f"operator {op.index}: {kind} (version {op.version}) is not implemented")
        fn, used = builder(op)
        self._steps.append((fn, used, outs, kind))

    def op_counts(self) -> dict[str, int]:
        """Operators executed per forward pass (DEQUANTIZE of weights folded away)."""
        out: dict[str, int] = {}
        for *_, kind in self._steps:
            out[kind] = out.get(kind, 0) + 1
        return out

    def _act_input(self, op: Operator, k: int = 0) -> int:
        i = op.inputs[k]
        if i in self._const:
            raise UnsupportedOp(f"operator {op.index} {op.op}: constant input {k} is not supported")
        return i

    def _op_conv_2d(self, op: Operator):
        w = np.transpose(self._const[op.inputs[1]], (0, 3, 1, 2))  # OHWI -> OIHW
        wname = self._buffer(w)
        bname = self._buffer(self._const[op.inputs[2]]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        return self._conv(op, wname, bname, groups=1, kh=w.shape[2], kw=w.shape[3])

    def _op_depthwise_conv_2d(self, op: Operator):
        o = op.options
        w = self._const[op.inputs[1]]  # (1, H, W, C * M)
        c_in = self._shape[op.inputs[0]][3]
        if w.shape[3] != c_in * o["depth_multiplier"]:
            raise UnsupportedOp(f"operator {op.index}: depthwise channels {w.shape} vs input {c_in}")
        wname = self._buffer(np.transpose(w, (3, 0, 1, 2)))  # (C*M, 1, H, W)
        bname = self._buffer(self._const[op.inputs[2]]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        return self._conv(op, wname, bname, groups=c_in, kh=w.shape[1], kw=w.shape[2])

    def _conv(self, op: Operator, wname: str, bname: str | None, groups: int, kh: int, kw: int):
        o = op.options
        stride = (o["stride_h"], o["stride_w"])
        dil = (o["dilation_h"], o["dilation_w"])
        same = o["padding"] == "SAME"

        def conv(x):
            w = self._get(wname)
            b = self._get(bname) if bname else None
            pad = 0
            if same:
                ph = same_padding(x.shape[2], kh, stride[0], dil[0])
                pw = same_padding(x.shape[3], kw, stride[1], dil[1])
                if ph[0] == ph[1] and pw[0] == pw[1]:
                    pad = (ph[0], pw[0])
                else:
                    x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
            return F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups)

        return _with_act(conv, o["activation"]), [self._act_input(op)]

    def _op_max_pool_2d(self, op: Operator):
        o = op.options
        k, s = (o["filter_h"], o["filter_w"]), (o["stride_h"], o["stride_w"])

        def pool(x):
            if o["padding"] == "SAME":
                ph = same_padding(x.shape[2], k[0], s[0])
                pw = same_padding(x.shape[3], k[1], s[1])
                if any(ph + pw):
                    x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=-math.inf)
            return F.max_pool2d(x, k, s)

        return _with_act(pool, o["activation"]), [self._act_input(op)]

    def _op_prelu(self, op: Operator):
        rank = self._rank[op.inputs[0]]
        alpha = np.asarray(self._const[op.inputs[1]], np.float32)
        if rank == 4 and alpha.size == alpha.shape[-1] == self._shape[op.inputs[0]][3]:
            # one alpha per channel (all MediaPipe models): F.prelu, ~50x faster on CPU than where()
            aname = self._buffer(alpha.reshape(-1))
            return (lambda x: F.prelu(x, self._get(aname))), [self._act_input(op)]
        aname = self._const_for(op.inputs[1], rank)
        return (lambda x: torch.clamp(x, min=0) + self._get(aname) * torch.clamp(x, max=0)), [self._act_input(op)]

    def _binary(self, op: Operator, fn):
        a, b = op.inputs[:2]
        act = op.options.get("activation", "NONE")
        if a in self._const and b in self._const:
            raise UnsupportedOp(f"operator {op.index} {op.op}: both inputs constant")
        if a in self._const or b in self._const:
            var, con = (b, a) if a in self._const else (a, b)
            cname = self._const_for(con, self._rank[var])
            if a in self._const:
                f = lambda x: fn(self._get(cname), x)  # noqa: E731
            else:
                f = lambda x: fn(x, self._get(cname))  # noqa: E731
            return _with_act(f, act), [var]
        if self._rank[a] != self._rank[b] and 4 in (self._rank[a], self._rank[b]):
            raise UnsupportedOp(f"operator {op.index} {op.op}: broadcasting a rank-4 activation with another rank")
        return _with_act(fn, act), [a, b]

    def _op_add(self, op):
        return self._binary(op, torch.add)

    def _op_mul(self, op):
        return self._binary(op, torch.mul)

    def _unary(self, op, fn):
        return fn, [self._act_input(op)]

    def _op_relu(self, op):
        return self._unary(op, F.relu)

    def _op_pad(self, op: Operator):
        p = np.asarray(self._const[op.inputs[1]], dtype=np.int64)
        if p[0].any():
            raise UnsupportedOp(f"operator {op.index} PAD: padding the batch axis")
        rank = self._rank[op.inputs[0]]
        # torch's F.pad lists the last axis first; rank-4 tensors are NCHW (TFLite rows N, H, W, C).
        order = [2, 1, 3] if rank == 4 else list(range(rank - 1, 0, -1))
        pad = tuple(int(v) for r in order for v in p[r])
        return (lambda x: F.pad(x, pad)), [self._act_input(op)]

    def _op_reshape(self, op: Operator):
        if len(op.inputs) > 1 and op.inputs[1] in self._const:  # shape given as a constant tensor
            target = [int(v) for v in np.asarray(self._const[op.inputs[1]]).reshape(-1)]
        elif "new_shape" in op.options:
            target = list(op.options["new_shape"])
        else:
            target = list(self._shape[op.outputs[0]])
        in_rank = self._rank[op.inputs[0]]

        def reshape(x):
            if in_rank == 4:
                x = to_nhwc(x)
            shape = list(target)
            if shape and shape[0] == 1:
                shape[0] = x.shape[0]  # static batch 1 -> actual batch
            y = x.reshape(shape)
            return to_nchw(y) if y.dim() == 4 else y

        return reshape, [self._act_input(op)]

    def _op_concatenation(self, op: Operator):
        rank = self._rank[op.outputs[0]]
        axis = op.options["axis"] % rank
        if rank == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        for i in op.inputs:
            if i in self._const:
                raise UnsupportedOp(f"operator {op.index} CONCATENATION: constant input")
        return _with_act(lambda *xs: torch.cat(xs, dim=axis), op.options["activation"]), list(op.inputs)

    def _op_strided_slice(self, op: Operator):
        o = op.options
        if o["ellipsis_mask"] or o["new_axis_mask"]:
            raise UnsupportedOp(f"operator {op.index} STRIDED_SLICE: ellipsis/new-axis masks")
        begin, end, strides = (np.asarray(self._const[i]).reshape(-1).tolist() for i in op.inputs[1:4])
        in_shape = self._shape[op.inputs[0]]
        rank = len(in_shape)
        out_rank = self._rank[op.outputs[0]]
        slices = []
        for d in range(rank):
            b = None if o["begin_mask"] >> d & 1 else begin[d]
            e = None if o["end_mask"] >> d & 1 else end[d]
            if d == 0 and (b in (None, 0)) and (e is None or e >= in_shape[0]) and strides[0] == 1:
                slices.append(slice(None))  # the whole (free) batch axis
            elif o["shrink_axis_mask"] >> d & 1:
                slices.append(b)
            else:
                slices.append(slice(b, e, strides[d]))

        def strided_slice(x):
            if rank == 4:
                x = to_nhwc(x)
            y = x[tuple(slices)]
            return to_nchw(y) if out_rank == 4 else y

        return strided_slice, [self._act_input(op)]

    # ------------------------------------------------------------------ MediaPipe custom ops (v2)

    def _op_custom_landmarks2transformmatrix(self, op: Operator):
        if op.version != 2:
            raise UnsupportedOp(f"operator {op.index}: Landmarks2TransformMatrix version {op.version}")
        return landmarks_to_transform_matrix(**_l2tm_args(op.options)), [self._act_input(op)]

    def _op_custom_transformtensorbilinear(self, op: Operator):
        if op.version != 2:
            raise UnsupportedOp(f"operator {op.index}: TransformTensorBilinear version {op.version}")
        oh, ow = self._shape[op.outputs[0]][1:3]
        return (lambda x, m: transform_tensor_bilinear(x, m, oh, ow)), list(op.inputs[:2])

    def _op_custom_transformlandmarks(self, op: Operator):
        if op.version != 2:
            raise UnsupportedOp(f"operator {op.index}: TransformLandmarks version {op.version}")
        return transform_landmarks, list(op.inputs[:2])

    # ------------------------------------------------------------------ running

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.model_inputs):
            raise ValueError(f"expected {len(self.model_inputs)} inputs, got {len(inputs)}")
        vals: dict[int, torch.Tensor] = dict(zip(self.model_inputs, inputs))
        for (fn, ins, outs, _), free in zip(self._steps, self._free_after):
            y = fn(*(vals[i] for i in ins))
            if len(outs) == 1:
                vals[outs[0]] = y
            else:
                vals.update(zip(outs, y))
            for i in free:
                vals.pop(i, None)
        out = []
        for i in self.model_outputs:
            y = vals[i]
            out.append(to_nhwc(y) if y.dim() == 4 else y)
        return tuple(out)


# ---------------------------------------------------------------------- custom ops

def _l2tm_args(o: dict) -> dict:
    return dict(subset=list(o["subset_idxs"]), left=int(o["left_rotation_idx"]), right=int(o["right_rotation_idx"]),
                target_rotation=float(o.get("target_rotation_radians", 0.0)),
                out_h=int(o["output_height"]), out_w=int(o["output_width"]),
                scale_x=float(o["scale_x"]), scale_y=float(o["scale_y"]))


def landmarks_to_transform_matrix(subset, left, right, target_rotation, out_h, out_w, scale_x, scale_y):
    """``Landmarks2TransformMatrix`` v2: (B, N, 3) landmarks -> (B, 4, 4) crop-to-input matrix.

    Rotation from the ``left``-``right`` landmark pair, the box of ``subset`` in the rotated
    frame, scaled by ``scale_x/y`` per output pixel; maps output pixel (x, y, 0, 1) to input
    coordinates, as MediaPipe's CPU kernel."""
    idx = torch.as_tensor(sorted(set(int(i) for i in subset)), dtype=torch.long)

    def fn(lm: torch.Tensor) -> torch.Tensor:
        xy = lm[..., :2]
        d = xy[:, right] - xy[:, left]
        r = target_rotation - torch.atan2(d[:, 1], d[:, 0])  # (B,)
        c, s = torch.cos(r)[:, None], torch.sin(r)[:, None]
        pts = xy[:, idx]
        rx = c * pts[..., 0] - s * pts[..., 1]
        ry = s * pts[..., 0] + c * pts[..., 1]
        xmax, xmin = rx.amax(1), rx.amin(1)
        ymax, ymin = ry.amax(1), ry.amin(1)
        w, h = xmax - xmin, ymax - ymin
        mx, my = (xmax + xmin) / 2, (ymax + ymin) / 2
        c, s = c[:, 0], s[:, 0]
        # rotate the centre back by -r
        cx = c * mx + s * my
        cy = -s * mx + c * my
        sx = scale_x * w / out_w
        sy = scale_y * h / out_h
        # t = shift(cx, cy) @ rot(-r) @ scale(sx, sy) @ shift(-out_w/2, -out_h/2)
        a00, a01 = c * sx, s * sy
        a10, a11 = -s * sx, c * sy
        tx = cx - a00 * (out_w / 2.0) - a01 * (out_h / 2.0)
        ty = cy - a10 * (out_w / 2.0) - a11 * (out_h / 2.0)
        zero, one = torch.zeros_like(cx), torch.ones_like(cx)
        rows = [torch.stack([a00, a01, zero, tx], -1), torch.stack([a10, a11, zero, ty], -1),
                torch.stack([zero, zero, one, zero], -1), torch.stack([zero, zero, zero, one], -1)]
        return torch.stack(rows, 1)

    return fn


def transform_tensor_bilinear(x: torch.Tensor, m: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """``TransformTensorBilinear`` v2: sample NCHW ``x`` at ``m``-mapped pixel centres.

    Output pixels whose source point falls outside ``[0, W-1] x [0, H-1]`` are zero (the
    kernel's out-of-bound rule), others are bilinear; differentiable in ``x`` and ``m``."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(out_h, dtype=x.dtype, device=x.device),
                            torch.arange(out_w, dtype=x.dtype, device=x.device), indexing="ij")
    # align-corners correction of the v2 kernel: T -> S T A (shift by half a pixel)
    a00, a01, a03 = m[:, 0, 0], m[:, 0, 1], m[:, 0, 3]
    a10, a11, a13 = m[:, 1, 0], m[:, 1, 1], m[:, 1, 3]
    t0 = a03 + 0.5 * a00 + 0.5 * a01 - 0.5
    t1 = a13 + 0.5 * a10 + 0.5 * a11 - 0.5
    tx = a00[:, None, None] * xs + a01[:, None, None] * ys + t0[:, None, None]
    ty = a10[:, None, None] * xs + a11[:, None, None] * ys + t1[:, None, None]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    grid = torch.stack([tx / (w - 1) * 2 - 1, ty / (h - 1) * 2 - 1], -1)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return y * inside[:, None].to(y.dtype)


def transform_landmarks(lm: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``TransformLandmarks`` v2: (B, N, 2|3) points through the first two rows of ``m``."""
    x, y = lm[..., 0], lm[..., 1]
    nx = m[:, 0, 0, None] * x + m[:, 0, 1, None] * y + m[:, 0, 3, None]
    ny = m[:, 1, 0, None] * x + m[:, 1, 1, None] * y + m[:, 1, 3, None]
    parts = [nx, ny] + ([lm[..., 2]] if lm.shape[-1] == 3 else [])
    return torch.stack(parts, -1)
