"""The TFLite reader on malformed files (issue 13 item 11): a truncated, bit-flipped or
crafted ``.tflite`` gives a clean ``TFLiteFormatError`` (a ``ValueError``) and nothing else:
no ``struct.error``/``IndexError``/``RecursionError``, no offset read from the wrong end of
the file, no endless loop."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from blinkbench.mesh_torch import tflite_reader as R
from blinkbench.mesh_torch.facemesh import BLAZEFACE_MODEL, FACE_MESH_ATTENTION_MODEL, model_file

N_MUTANTS = 120  # per model: 240 in all


def _structure_bytes(buf: bytes) -> np.ndarray:
    """Positions of the file that are not weight data (mutating weights only changes values)."""
    base = np.frombuffer(buf, np.uint8).__array_interface__["data"][0]
    mask = np.ones(len(buf), bool)
    root = R._Table(buf, struct.unpack_from("<I", buf, 0)[0])
    for b in root.tables(4):
        v = b.vector(0, np.uint8)
        if v.size:
            off = v.__array_interface__["data"][0] - base
            mask[off : off + v.size] = False
    return np.flatnonzero(mask)


def _mutants(buf: bytes, n: int, seed: int):
    """Truncations, bit flips and overwritten 32-bit words (extreme or random offsets), all
    in the file's structure."""
    rng = np.random.default_rng(seed)
    pos = _structure_bytes(buf)
    for k in range(n):
        b = bytearray(buf)
        p = int(pos[rng.integers(0, len(pos))])
        if k % 3 == 0:
            del b[p:]
        elif k % 3 == 1:
            for _ in range(1 + k % 5):
                q = int(pos[rng.integers(0, len(pos))])
                b[q] ^= 1 << int(rng.integers(0, 8))
        else:
            word = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, int(rng.integers(0, 1 << 32))][k % 4]
            b[p & ~3 : (p & ~3) + 4] = word.to_bytes(4, "little")
        yield k, bytes(b)


@pytest.mark.parametrize("rel", [BLAZEFACE_MODEL, FACE_MESH_ATTENTION_MODEL])
def test_mutated_models_parse_or_raise_a_clean_error(rel):
    buf = model_file(rel).read_bytes()
    outcomes = {"ok": 0, "refused": 0}
    for k, b in _mutants(buf, N_MUTANTS, seed=len(rel)):
        t0 = time.perf_counter()
        try:
            R.parse_model(b)
            outcomes["ok"] += 1
        except R.TFLiteFormatError as exc:
            assert str(exc), k
            outcomes["refused"] += 1
        assert time.perf_counter() - t0 < 5, f"mutant {k} took too long"
    assert outcomes["refused"] >= N_MUTANTS // 2, outcomes  # truncations alone are a third
    assert sum(outcomes.values()) == N_MUTANTS


def test_offset_before_the_start_is_refused_not_read_from_the_end():
    """Python's struct reads a negative offset from the end of the buffer: the old reader
    followed a vtable offset past the file's start and parsed bytes from its tail."""
    buf = bytearray(model_file(BLAZEFACE_MODEL).read_bytes())
    root = struct.unpack_from("<I", buf, 0)[0]
    struct.pack_into("<i", buf, root, root + 2)  # vtable at byte -2
    with pytest.raises(R.TFLiteFormatError, match="outside"):
        R.parse_model(bytes(buf))


def test_flexbuffer_cycle_is_refused_not_a_recursion_error():
    # an untyped vector (type 10, width 1) whose only element points at the vector itself
    with pytest.raises(R.TFLiteFormatError, match="nested deeper"):
        R.flexbuffer_loads(bytes([1, 0, 40, 2, 40, 1]))


def test_flexbuffer_key_without_terminator_and_bad_utf8_are_refused():
    good = _flex_map_a_1()
    assert R.flexbuffer_loads(good) == {"a": 1}
    with pytest.raises(R.TFLiteFormatError):
        R.flexbuffer_loads(good.replace(b"a\0", b"\xff\0"))
    with pytest.raises(R.TFLiteFormatError):
        R.flexbuffer_loads(good[1:])  # the key's NUL is gone, offsets shift


def test_flexbuffer_offset_before_the_start_is_refused_not_wrapped_to_the_end():
    """flexbuffers.Buf turns a negative offset into one counted from the end; the strict
    view refuses it. A map whose value offset points 200 bytes before the buffer."""
    good = bytearray(_flex_map_a_1())
    assert R.flexbuffer_loads(bytes(good)) == {"a": 1}
    root_width = good[-1]
    good[-2 - root_width] = 200  # root offset (width 1): the map would start before byte 0
    with pytest.raises(R.TFLiteFormatError, match="outside"):
        R.flexbuffer_loads(bytes(good))


def _shared_vector_chain(levels: int) -> bytes:
    """Untyped vectors (width 1) whose two elements both point at the previous one: 2^levels
    leaves from 5 bytes per level. A DAG, not a cycle, so only the nesting cap stops it."""
    b = bytearray([2, 1, 2, 4, 4])   # size 2, ints 1 and 2, type bytes INT/width 1
    start = 1
    for _ in range(levels):
        b.append(2)
        here = len(b)
        b += bytes([here - start, here + 1 - start, 40, 40])   # both -> previous; type vector
        start = here
    return bytes(b + bytes([len(b) - start, 40, 1]))


def test_flexbuffer_of_shared_sub_vectors_is_refused_fast():
    """The old hand-written decoder and an uncapped walk over flexbuffers both expanded this
    exponentially (measured under load: 18 levels, 98 bytes, 7 s in the old decoder; 20
    levels, 123 bytes, 114 s in the uncapped walk; 30 levels would take hours)."""
    assert R.flexbuffer_loads(_shared_vector_chain(2)) == [[[1, 2], [1, 2]], [[1, 2], [1, 2]]]
    t0 = time.perf_counter()
    with pytest.raises(R.TFLiteFormatError, match="more values than it has bytes"):
        R.flexbuffer_loads(_shared_vector_chain(30))
    assert time.perf_counter() - t0 < 1


def test_flexbuffer_decoder_agrees_with_the_library_on_many_values():
    """The hardened walk is flexbuffers' own decoding: same values for nested maps, vectors,
    typed vectors, floats, strings, bools and nulls."""
    flex = pytest.importorskip("flatbuffers.flexbuffers")
    values = [
        {"a": 1, "b": [1, 2, 3], "c": {"d": 1.5, "e": "x\u00e9"}, "f": [True, False], "g": None},
        [1, "two", 3.0, [4, [5, {"six": 6}]]],
        {"big": 1 << 40, "neg": -7, "floats": [0.25, 0.1]},
        "just a string", 42, -1.5,
    ]
    for v in values:
        raw = bytes(flex.Dumps(v))
        assert R.flexbuffer_loads(raw) == flex.Loads(raw) == v


def test_face_mesh_custom_options_match_the_flexbuffers_library():
    """Every custom operator of the real models decodes to exactly what flexbuffers.Loads
    gives (the attention Face Mesh's custom ops; the other models have none)."""
    flex = pytest.importorskip("flatbuffers.flexbuffers")
    from blinkbench.mesh_torch.facemesh import FACE_MESH_MODEL, IRIS_MODEL
    n_custom = 0
    for rel in (FACE_MESH_ATTENTION_MODEL, FACE_MESH_MODEL, IRIS_MODEL, BLAZEFACE_MODEL):
        buf = model_file(rel).read_bytes()
        m = R.parse_model(buf)
        g = R._Table(buf, struct.unpack_from("<I", buf, 0)[0]).tables(2)[0]
        for o, t in zip(m.operators, g.tables(3)):
            if o.op.startswith("CUSTOM:") and t.has(5):
                raw = t.vector(5, np.uint8).tobytes()
                assert o.options == flex.Loads(raw), (rel, o.index, o.op)
                n_custom += 1
    assert n_custom == 6  # of its 11 custom ops, 6 carry options
    lm = next(o for o in R.read_model(model_file(FACE_MESH_ATTENTION_MODEL)).operators
              if o.op == "CUSTOM:Landmarks2TransformMatrix")
    assert (lm.options["left_rotation_idx"], lm.options["right_rotation_idx"]) == (61, 291)
    assert lm.options["scale_x"] == 1.5 and len(lm.options["subset_idxs"]) == 80


def _flex_map_a_1() -> bytes:
    flex = pytest.importorskip("flatbuffers.flexbuffers")
    return bytes(flex.Dumps({"a": 1}))


def test_tensors_sharing_a_buffer_share_its_array():
    """A crafted file can point every tensor at one large buffer; each tensor used to get its
    own copy (memory = tensors x buffer). Now one array per buffer: point a second tensor of
    the same shape at another's buffer and both hold the same memory."""
    buf = bytearray(model_file(BLAZEFACE_MODEL).read_bytes())
    m = R.parse_model(bytes(buf))
    by_shape: dict = {}
    for t in m.tensors:
        if t.data is not None and not t.sparse:
            by_shape.setdefault((t.shape, t.dtype), []).append(t.index)
    a, b = next(v[:2] for v in by_shape.values() if len(v) >= 2)
    g = R._Table(bytes(buf), struct.unpack_from("<I", buf, 0)[0]).tables(2)[0]
    ta, tb = g.tables(0)[a], g.tables(0)[b]
    struct.pack_into("<I", buf, tb.pos + tb._off(2), ta.scalar(2, "I"))
    m2 = R.parse_model(bytes(buf))
    assert np.shares_memory(m2.tensors[a].data, m2.tensors[b].data)
    np.testing.assert_array_equal(m2.tensors[b].data, m.tensors[a].data)


def test_the_real_models_still_parse_the_same():
    for rel in (BLAZEFACE_MODEL, FACE_MESH_ATTENTION_MODEL):
        m = R.read_model(model_file(rel))
        assert m.operators and m.tensors and m.inputs and m.outputs
