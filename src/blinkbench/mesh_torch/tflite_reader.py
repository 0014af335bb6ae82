"""Read a ``.tflite`` flatbuffer into plain Python: operators, tensors, constant weights.

A small hand-written reader of the parts of the TFLite schema (``schema.fbs``) that the
MediaPipe face models use, so the PyTorch port needs only numpy and the ``flatbuffers``
package (its FlexBuffers decoder) at run time: no TFLite runtime, no generated schema code. Field ids follow ``schema.fbs``; a field id ``i`` sits
at vtable slot ``4 + 2 i``. Constant fp16 weights (the ``DEQUANTIZE`` inputs) are returned
as float32 arrays; custom-op options (FlexBuffers maps) are decoded by :func:`flexbuffer_loads`
(``flatbuffers.flexbuffers`` behind bounds checks and a nesting cap).

Only what the face models need is decoded; an operator whose options are not decoded keeps
``options == {}``, and :mod:`.graph` refuses operators it cannot execute, naming them.

A malformed, truncated or crafted file raises :class:`TFLiteFormatError` (a ``ValueError``):
every offset, count and length is checked against the file before it is followed, FlexBuffers
nesting is bounded, and tensors sharing a buffer share its array (a file cannot make the
reader copy one buffer once per tensor).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# BuiltinOperator codes (schema.fbs) of the operators this package knows by name.
BUILTIN_OPS = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
    5: "DEPTH_TO_SPACE", 6: "DEQUANTIZE", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
    19: "RELU", 20: "RELU_N1_TO_1", 21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR",
    28: "TANH", 32: "CUSTOM", 34: "PAD", 41: "SUB", 45: "STRIDED_SLICE", 54: "PRELU",
    117: "HARD_SWISH", 124: "DENSIFY",
}

# TensorType -> numpy dtype.
TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
                6: np.bool_, 7: np.int16, 9: np.int8, 10: np.float64}

PADDING = {0: "SAME", 1: "VALID"}
ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type
    data: np.ndarray | None = None   # constant value (fp16 already widened to fp32), else None
    sparse: bool = False             # data is a sparse encoding (DENSIFY input), kept flat


@dataclass
class Operator:
    index: int
    op: str                    # builtin name, or "CUSTOM:<name>"
    version: int
    inputs: list[int]          # tensor indices (-1: optional input left out)
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Model:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    description: str = ""

    def tensor(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def op_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.operators:
            out[o.op] = out.get(o.op, 0) + 1
        return out


class TFLiteFormatError(ValueError):
    """A ``.tflite`` file (or custom-op FlexBuffers options) that does not parse."""


MAX_FLEX_DEPTH = 32  # nesting of FlexBuffers maps/vectors; the face models use 2


def _unpack(fmt: str, buf: bytes, pos: int):
    """One little-endian value at ``pos``, which must lie wholly inside ``buf``."""
    size = struct.calcsize(fmt)
    if pos < 0 or pos + size > len(buf):
        raise TFLiteFormatError(f"offset {pos} (+{size} bytes) is outside the {len(buf)}-byte buffer")
    return struct.unpack_from(fmt, buf, pos)[0]


def _span(buf: bytes, start: int, n: int, itemsize: int = 1) -> None:
    if n < 0 or start < 0 or start + n * itemsize > len(buf):
        raise TFLiteFormatError(f"{n} x {itemsize} bytes at offset {start} run past the {len(buf)}-byte buffer")


def _enum(table: dict, value: int, what: str):
    if value not in table:
        raise TFLiteFormatError(f"unknown {what} {value}")
    return table[value]


# ------------------------------------------------------------------ flatbuffer access

class _Table:
    """One flatbuffer table: scalar, vector, string and sub-table fields by field id."""

    __slots__ = ("buf", "pos", "vt", "vt_len")

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vt = pos - _unpack("<i", buf, pos)
        self.vt_len = _unpack("<H", buf, self.vt)
        if self.vt_len < 4 or self.vt_len % 2:
            raise TFLiteFormatError(f"table at {pos}: vtable length {self.vt_len}")
        _span(buf, self.vt, self.vt_len)

    def _off(self, fid: int) -> int:
        slot = 4 + 2 * fid
        if slot >= self.vt_len:
            return 0
        return _unpack("<H", self.buf, self.vt + slot)

    def has(self, fid: int) -> bool:
        return self._off(fid) != 0

    def scalar(self, fid: int, fmt: str, default=0):
        o = self._off(fid)
        return _unpack("<" + fmt, self.buf, self.pos + o) if o else default

    def _indirect(self, fid: int) -> int | None:
        o = self._off(fid)
        if not o:
            return None
        p = self.pos + o
        return p + _unpack("<I", self.buf, p)

    def table(self, fid: int) -> "_Table | None":
        p = self._indirect(fid)
        return None if p is None else _Table(self.buf, p)

    def string(self, fid: int) -> str:
        p = self._indirect(fid)
        if p is None:
            return ""
        n = _unpack("<I", self.buf, p)
        _span(self.buf, p + 4, n)
        return self.buf[p + 4 : p + 4 + n].decode("utf-8", "replace")

    def vector(self, fid: int, dtype) -> np.ndarray:
        p = self._indirect(fid)
        if p is None:
            return np.zeros(0, dtype)
        n = _unpack("<I", self.buf, p)
        dt = np.dtype(dtype).newbyteorder("<")
        _span(self.buf, p + 4, n, dt.itemsize)
        return np.frombuffer(self.buf, dtype=dt, count=n, offset=p + 4)

    def tables(self, fid: int) -> list["_Table"]:
        p = self._indirect(fid)
        if p is None:
            return []
        n = _unpack("<I", self.buf, p)
        _span(self.buf, p + 4, n, 4)
        out = []
        for k in range(n):
            e = p + 4 + 4 * k
            out.append(_Table(self.buf, e + _unpack("<I", self.buf, e)))
        return out


# ------------------------------------------------------------------ flexbuffers

def flexbuffer_loads(data: bytes):
    """Decode a FlexBuffers value (custom-op options) with ``flatbuffers.flexbuffers``.

    The library's own ``Loads`` trusts its input: an offset before the buffer's start wraps
    round to its end (Python indexing), a cyclic vector recurses until ``RecursionError``, and
    bad bytes surface as ``struct.error``/``IndexError``/``UnicodeDecodeError``/... Here the
    bytes sit behind :class:`_StrictBytes` (every index and slice must lie inside the buffer),
    maps and vectors are walked by :func:`_flex_value` with nesting capped at
    :data:`MAX_FLEX_DEPTH` and about one decoded value per byte of the buffer (vectors whose
    elements all point at one shared vector would otherwise expand to 2^depth values), and
    any failure is a :class:`TFLiteFormatError`."""
    from flatbuffers import flexbuffers

    data = bytes(data)
    if len(data) < 3:
        raise TFLiteFormatError("flexbuffer too short")
    root_width, packed = data[-1], data[-2]
    try:
        root = flexbuffers.Ref.PackedType(
            flexbuffers.Buf(_StrictBytes(data), len(data) - 2 - root_width), root_width, packed)
        return _flex_value(root, 0, [len(data) + MAX_FLEX_DEPTH + 1])  # a cycle meets the depth cap first
    except TFLiteFormatError:
        raise
    except (struct.error, IndexError, KeyError, ValueError, TypeError, AssertionError,
            OverflowError, RecursionError) as exc:
        raise TFLiteFormatError(f"malformed flexbuffer: {type(exc).__name__}: {exc}") from exc


class _StrictBytes:
    """The bytes of a flexbuffer as ``flexbuffers.Buf`` reads them, refusing any index or
    slice outside ``[0, len)`` instead of letting a negative one wrap round to the end."""

    __slots__ = ("_b",)

    def __init__(self, b: bytes):
        self._b = b

    def __len__(self) -> int:
        return len(self._b)

    def __getitem__(self, key):
        n = len(self._b)
        if isinstance(key, slice):
            start = 0 if key.start is None else key.start
            stop = n if key.stop is None else key.stop
            if not 0 <= start <= stop <= n or key.step not in (None, 1):
                raise TFLiteFormatError(f"flexbuffer bytes [{start}:{stop}] are outside the {n}-byte buffer")
            return self._b[start:stop]
        if not 0 <= key < n:
            raise TFLiteFormatError(f"flexbuffer offset {key} is outside the {n}-byte buffer")
        return self._b[key]


def _flex_value(ref, depth: int, budget: list[int]):
    """``ref.Value``, but maps and untyped vectors are walked here so nesting and the number
    of values are bounded (typed vectors hold only scalars or keys and cannot nest);
    ``budget[0]``: values still allowed."""
    if depth > MAX_FLEX_DEPTH:
        raise TFLiteFormatError(f"flexbuffer nested deeper than {MAX_FLEX_DEPTH} (a cycle?)")
    budget[0] -= 1
    if budget[0] < 0:
        raise TFLiteFormatError("flexbuffer decodes to more values than it has bytes (shared sub-vectors?)")
    if ref.IsMap:
        m = ref.AsMap
        return {k.AsKey: _flex_value(v, depth + 1, budget) for k, v in zip(m.Keys, m.Values)}
    if ref.IsVector:
        return [_flex_value(v, depth + 1, budget) for v in ref.AsVector]
    return ref.Value


# ------------------------------------------------------------------ options per operator

def _opts_conv(t: _Table) -> dict:
    return {"padding": _enum(PADDING, t.scalar(0, "b"), "padding"), "stride_w": t.scalar(1, "i"), "stride_h": t.scalar(2, "i"),
            "activation": _enum(ACTIVATION, t.scalar(3, "b"), "activation"),
            "dilation_w": t.scalar(4, "i", 1), "dilation_h": t.scalar(5, "i", 1)}


def _opts_depthwise(t: _Table) -> dict:
    return {"padding": _enum(PADDING, t.scalar(0, "b"), "padding"), "stride_w": t.scalar(1, "i"), "stride_h": t.scalar(2, "i"),
            "depth_multiplier": t.scalar(3, "i"), "activation": _enum(ACTIVATION, t.scalar(4, "b"), "activation"),
            "dilation_w": t.scalar(5, "i", 1), "dilation_h": t.scalar(6, "i", 1)}


def _opts_pool(t: _Table) -> dict:
    return {"padding": _enum(PADDING, t.scalar(0, "b"), "padding"), "stride_w": t.scalar(1, "i"), "stride_h": t.scalar(2, "i"),
            "filter_w": t.scalar(3, "i"), "filter_h": t.scalar(4, "i"), "activation": _enum(ACTIVATION, t.scalar(5, "b"), "activation")}


def _opts_act0(t: _Table) -> dict:  # AddOptions, MulOptions, SubOptions: activation is field 0
    return {"activation": _enum(ACTIVATION, t.scalar(0, "b"), "activation")}


def _opts_concat(t: _Table) -> dict:
    return {"axis": t.scalar(0, "i"), "activation": _enum(ACTIVATION, t.scalar(1, "b"), "activation")}


def _opts_reshape(t: _Table) -> dict:
    return {"new_shape": [int(v) for v in t.vector(0, np.int32)]} if t.has(0) else {}


def _opts_strided_slice(t: _Table) -> dict:
    return {k: t.scalar(i, "i") for i, k in enumerate(
        ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask"))}


# op -> (BuiltinOptions union type expected, decoder)
_OPTIONS = {
    "CONV_2D": (1, _opts_conv), "DEPTHWISE_CONV_2D": (2, _opts_depthwise),
    "MAX_POOL_2D": (5, _opts_pool), "AVERAGE_POOL_2D": (5, _opts_pool),
    "CONCATENATION": (10, _opts_concat), "ADD": (11, _opts_act0), "RESHAPE": (17, _opts_reshape),
    "MUL": (21, _opts_act0), "SUB": (28, _opts_act0), "STRIDED_SLICE": (32, _opts_strided_slice),
}


# ------------------------------------------------------------------ model

def read_model(path: str | Path) -> Model:
    """Parse a ``.tflite`` file (first subgraph) into a :class:`Model`; a malformed file
    raises :class:`TFLiteFormatError` naming it."""
    buf = Path(path).read_bytes()
    try:
        return parse_model(buf)
    except TFLiteFormatError as exc:
        raise TFLiteFormatError(f"{path}: {exc}") from exc


def parse_model(buf: bytes) -> Model:
    """:func:`read_model` on bytes. Anything wrong with them is a :class:`TFLiteFormatError`;
    the checks sit where offsets and counts are followed, and the last-resort conversion
    below only words what a check missed the same way."""
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise TFLiteFormatError("not a TFLite flatbuffer (file identifier TFL3 missing)")
    try:
        return _parse_model(buf)
    except TFLiteFormatError:
        raise
    except (struct.error, IndexError, KeyError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise TFLiteFormatError(f"malformed TFLite file: {type(exc).__name__}: {exc}") from exc


def _parse_model(buf: bytes) -> Model:
    root = _Table(buf, _unpack("<I", buf, 0))
    codes = []
    for oc in root.tables(1):  # operator_codes
        code = max(oc.scalar(0, "b"), oc.scalar(3, "i"))  # deprecated_builtin_code, builtin_code
        name = "CUSTOM:" + oc.string(1) if code == 32 else BUILTIN_OPS.get(code, f"BUILTIN_{code}")
        codes.append((name, oc.scalar(2, "i", 1)))
    buffers = root.tables(4)
    subgraphs = root.tables(2)
    if not subgraphs:
        raise TFLiteFormatError("model has no subgraph")
    g = subgraphs[0]
    tensors = []
    flat: dict[tuple[int, type], np.ndarray | None] = {}  # one array per buffer, however many tensors use it
    for i, t in enumerate(g.tables(0)):
        ttype = t.scalar(1, "b")
        if ttype not in TENSOR_TYPES:
            raise TFLiteFormatError(f"tensor {i}: unsupported TensorType {ttype}")
        dtype = TENSOR_TYPES[ttype]
        shape = tuple(int(v) for v in t.vector(0, np.int32))
        if any(d < -1 for d in shape):
            raise TFLiteFormatError(f"tensor {i}: shape {shape}")
        sparse = t.has(6)  # sparsity parameters: the buffer holds only the non-zero blocks
        key = (t.scalar(2, "I"), dtype)
        if key not in flat:
            arr = _buffer_data(buf, buffers, key[0], dtype, None)
            flat[key] = arr.astype(np.float32) if arr is not None and dtype == np.float16 else arr
        data = flat[key]
        if data is not None and not sparse:
            if int(np.prod(shape, dtype=np.int64)) != data.size or any(d < 0 for d in shape):
                raise TFLiteFormatError(f"tensor {i}: shape {shape} does not fit its {data.size} values")
            data = data.reshape(shape) if shape else data.reshape(())
        tensors.append(Tensor(i, t.string(3), shape, dtype, data, sparse))
    ops = []
    for i, o in enumerate(g.tables(3)):
        code = o.scalar(0, "I")
        if code >= len(codes):
            raise TFLiteFormatError(f"operator {i}: opcode index {code} of {len(codes)}")
        name, version = codes[code]
        opts: dict = {}
        if name in _OPTIONS and o.has(4):
            want, decode = _OPTIONS[name]
            got = o.scalar(3, "B")
            if got != want:
                raise TFLiteFormatError(f"operator {i} ({name}): options type {got}, expected {want}")
            opts = decode(o.table(4))
        elif name.startswith("CUSTOM:") and o.has(5):
            raw = o.vector(5, np.uint8).tobytes()
            opts = flexbuffer_loads(raw) if raw else {}
        ops.append(Operator(i, name, version, [int(v) for v in o.vector(1, np.int32)],
                            [int(v) for v in o.vector(2, np.int32)], opts))
    return Model(tensors, ops, [int(v) for v in g.vector(1, np.int32)],
                 [int(v) for v in g.vector(2, np.int32)], root.string(3))


def _buffer_data(buf: bytes, buffers: list[_Table], index: int, dtype, shape) -> np.ndarray | None:
    if index == 0 or index >= len(buffers):
        return None
    b = buffers[index]
    raw = b.vector(0, np.uint8)
    if raw.size == 0 and b.scalar(1, "Q") > 1:  # large models: data stored after the flatbuffer
        off, size = b.scalar(1, "Q"), b.scalar(2, "Q")
        _span(buf, off, size)
        raw = np.frombuffer(buf, np.uint8, count=size, offset=off)
    if raw.size == 0:
        return None
    itemsize = np.dtype(dtype).itemsize
    if raw.size % itemsize:
        raise TFLiteFormatError(f"buffer {index}: {raw.size} bytes is not a whole number of {np.dtype(dtype)} values")
    arr = np.frombuffer(raw.tobytes(), dtype=np.dtype(dtype).newbyteorder("<"))
    if shape is None:
        return arr
    return arr.reshape(shape) if shape else arr.reshape(())
