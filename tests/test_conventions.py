"""One convention per name (issue 11 point 4): one two-class view of the detectors' logit,
one label mapping, one PSNR/SSIM module, one registrar. Each test checks the single
definition is the one every user gets, and that it behaves as its callers relied on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "blinkbench"


def _defined_classes(name: str) -> list[str]:
    """Modules under src/ that define a class called ``name``."""
    out = []
    for p in sorted(SRC.rglob("*.py")):
        tree = ast.parse(p.read_text(), str(p))
        if any(isinstance(n, ast.ClassDef) and n.name == name for n in ast.walk(tree)):
            out.append(str(p.relative_to(SRC)))
    return out


# ---------------------------------------------------------------------- TwoClassLogits

def test_two_class_logits_is_defined_once_and_the_attacks_use_it():
    from blinkbench.attacks.frame import TwoClassLogits as from_attacks_pkg
    from blinkbench.attacks.frame.base import TwoClassLogits as from_attacks
    from blinkbench.detectors.frame.nets import TwoClassLogits
    assert _defined_classes("TwoClassLogits") == ["detectors/frame/nets.py"]
    assert from_attacks is TwoClassLogits and from_attacks_pkg is TwoClassLogits


@pytest.mark.parametrize("shape", [(5,), (5, 1)])
def test_two_class_logits_gives_zero_and_z_with_sigmoid_probabilities(shape):
    from blinkbench.detectors.frame.nets import TwoClassLogits

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x.sum(dim=(1, 2, 3)).reshape(shape) - 3.0

    x = torch.rand(5, 3, 4, 4)
    z = x.sum(dim=(1, 2, 3)) - 3.0
    two = TwoClassLogits(Fixed())(x)
    assert two.shape == (5, 2)
    assert torch.equal(two[:, 0], torch.zeros(5)) and torch.equal(two[:, 1], z)
    assert torch.allclose(torch.softmax(two, 1)[:, 1], torch.sigmoid(z), atol=1e-6)


# ---------------------------------------------------------------------- labels

# Literals that hold both labels but are not a label mapping: the quick-trial cell order of
# datasets/base.select_trial ("ties: fake before real").
_NOT_A_LABEL_MAPPING = {("datasets/base.py", "_CELL_ORDER")}


# core/params_types.py is generated from the params schema (its Literal types repeat the
# schema's enums, its step-name map is typing, not a registry); the schema is what is checked.
GENERATED = {"core/params_types.py"}


def _hand_written() -> list:
    return [p for p in sorted(SRC.rglob("*.py")) if str(p.relative_to(SRC)) not in GENERATED]


def _label_literals() -> list[tuple[str, int, str]]:
    """Tuples/lists/sets holding both "real" and "fake", and dicts keyed by both, in src/."""
    out = []
    for p in _hand_written():
        rel = str(p.relative_to(SRC))
        tree = ast.parse(p.read_text(), str(p))
        named = {id(n.value): t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)}
        for n in ast.walk(tree):
            if isinstance(n, (ast.Tuple, ast.List, ast.Set)):
                elts = n.elts
            elif isinstance(n, ast.Dict):
                elts = [k for k in n.keys if k is not None]
            else:
                continue
            if {e.value for e in elts if isinstance(e, ast.Constant)} >= {"real", "fake"}:
                if (rel, named.get(id(n))) not in _NOT_A_LABEL_MAPPING:
                    out.append((rel, n.lineno, ast.unparse(n)[:60]))
    return out


def test_the_label_pair_is_spelled_out_only_in_core_labels():
    found = _label_literals()
    assert [f[0] for f in found] == ["core/labels.py"], found


def test_label_of_inverts_labels():
    from blinkbench.core.labels import LABELS, label_of
    assert list(LABELS) == ["real", "fake"] and LABELS["fake"] == 1
    assert [label_of(i) for i in (0, 1)] == ["real", "fake"]
    for bad in (-1, 2, None):
        with pytest.raises(ValueError):
            label_of(bad)



# ---------------------------------------------------------------------- PSNR / SSIM

def _modules_that(pred) -> list[str]:
    out = []
    for p in sorted(SRC.rglob("*.py")):
        tree = ast.parse(p.read_text(), str(p))
        if any(pred(n) for n in ast.walk(tree)):
            out.append(str(p.relative_to(SRC)))
    return out


def test_psnr_and_ssim_are_computed_only_in_attacks_perceptual():
    """skimage.metrics is imported in one module, and no other module has a PSNR of its own
    (a ``log10`` of a mean squared error) or its own psnr/ssim function."""
    def imports_skimage_metrics(n):
        return ((isinstance(n, ast.ImportFrom) and (n.module or "").startswith("skimage.metrics"))
                or (isinstance(n, ast.Import) and any(a.name.startswith("skimage.metrics") for a in n.names)))

    def log10(n):
        return isinstance(n, ast.Attribute) and n.attr == "log10" or isinstance(n, ast.Name) and n.id == "log10"

    def own_metric(n):
        return isinstance(n, ast.FunctionDef) and n.name.lower().lstrip("_") in ("psnr", "ssim", "ssim_in_box")

    assert _modules_that(imports_skimage_metrics) == ["attacks/perceptual.py"]
    assert _modules_that(log10) == []
    assert _modules_that(own_metric) == ["attacks/perceptual.py"]


def test_pyts_and_tslearn_are_imported_only_through_import_cached():
    """No module imports pyts or tslearn itself: neither asks numba to cache what it compiles,
    so imported directly they compile in every process (33 CPU-s for ``pyts.classification``);
    ``numba_cache.import_cached`` turns numba's cache on for the import. Tests and benchmarks
    go through it too, or they would compile the library for the rest of their process."""
    def imports_them(n):
        libs = ("pyts", "tslearn")
        return ((isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in libs)
                or (isinstance(n, ast.Import) and any(a.name.split(".")[0] in libs for a in n.names)))

    assert _modules_that(imports_them) == []
    root = SRC.parents[1]
    elsewhere = [str(p.relative_to(root)) for d in ("tests", "benchmarks") for p in sorted((root / d).rglob("*.py"))
                 if any(imports_them(n) for n in ast.walk(ast.parse(p.read_text(), str(p))))]
    assert elsewhere == []


def test_metric_rules_keep_json_valid_for_identical_images_and_tiny_boxes():
    """Identical images: PSNR None (JSON null), not inf (invalid JSON, and an infinite mean);
    a box under the 7 px SSIM window: SSIM None, not a value from a shrunk window."""
    import json

    import numpy as np

    from blinkbench.attacks import perceptual as pc

    a = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    same = pc.crop_metrics(a, a.copy())
    assert same["psnr"] is None and same["linf"] == 0 and same["ssim"] == pytest.approx(1.0)
    tiny = pc.crop_metrics(a[:6, :30], (a[:6, :30] ^ 1))
    assert tiny["ssim"] is None and tiny["psnr"] is not None
    assert pc.ssim_in_box(a, a ^ 1, (0, 0, 6, 20)) is None
    json.dumps([same, tiny], allow_nan=False)   # strict JSON: no inf, no NaN


# ---------------------------------------------------------------------- one registrar

def _registries():
    from blinkbench.attacks import frame as frame_attacks
    from blinkbench.attacks.blink import landmark_breaker
    from blinkbench.detectors import blink, frame
    from blinkbench.spine import landmarks
    return {"blink detector": blink.REGISTRY, "frame detector": frame.REGISTRY,
            "frame attack": frame_attacks.REGISTRY, "landmark attack": landmark_breaker.ATTACKS,
            "landmark backend": landmarks.REGISTRY}


def test_every_plug_in_kind_registers_classes_through_core_registry():
    import inspect

    from blinkbench.core.registry import Registry

    for kind, reg in _registries().items():
        assert isinstance(reg, Registry), kind
        names = reg.available() if reg.modules else list(reg)
        assert names, kind
        for name in names:
            cls = reg.get(name)
            assert inspect.isclass(cls), f"{kind} {name!r} is registered as {cls!r}, not a class"


def test_no_module_level_dict_of_classes_is_a_second_registry():
    """A plug-in kind kept as ``NAME = {"a": ClassA, ...}`` (the landmark attacks were) is a
    registry style of its own; literal dicts of names to classes may only sit in core/registry."""
    found = []
    for p in _hand_written():
        tree = ast.parse(p.read_text(), str(p))
        classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for n in tree.body:
            value = n.value if isinstance(n, (ast.Assign, ast.AnnAssign)) else None
            if (isinstance(value, ast.Dict) and value.values
                    and all(isinstance(v, ast.Name) and v.id in classes for v in value.values)):
                found.append(f"{p.relative_to(SRC)}:{n.lineno}")
    # detectors/blink/nets.NETS maps a detector's ``arch`` hyper-parameter to its network
    # module (a choice inside one detector, not a plug-in kind)
    assert found == [f for f in found if f.startswith("detectors/blink/nets.py")], found


def test_landmark_backends_declare_their_point_count_on_the_registered_class():
    from blinkbench.spine.landmarks import REGISTRY, backend_class
    assert {n: backend_class(n).n_points for n in REGISTRY.available()} == {
        "mediapipe": 478, "mediapipe_tflite": 478, "pfld": 68}
    with pytest.raises(ValueError, match="unknown landmark backend"):
        backend_class("dlib")


@pytest.mark.parametrize("backend, n_points", [("mediapipe", 478), ("mediapipe_tflite", 478), ("pfld", 68)])
def test_a_failed_landmark_step_writes_the_backends_width(tmp_path, params, backend, n_points):
    """The error path of landmarks_one writes an empty parquet whose point lists have the
    backend's width, read from the registered class (it was a hard-coded copy)."""
    import pyarrow.parquet as pq

    from blinkbench.core import io
    from blinkbench.spine import steps

    params["landmarks"]["backend"] = backend
    out = tmp_path / "l.parquet"
    meta = steps.landmarks_one(tmp_path / "v.mp4", tmp_path / "missing_track.parquet", out, params)
    assert meta["status"] == "error" and io.read_meta(out)["status"] == "error"
    schema = pq.read_schema(out)
    assert schema.field("x").type.list_size == n_points


def test_landmark_attacks_keep_their_names_and_the_paper_alias():
    from blinkbench.attacks.blink import landmark_breaker as lb
    assert lb.ATTACKS["landmark_breaker"] is lb.MIFGSM and lb.MIFGSM.name == "mifgsm"
    assert {n: c.name for n, c in lb.ATTACKS.items() if n != "landmark_breaker"} == {n: n for n in lb.ATTACKS
                                                                                    if n != "landmark_breaker"}
    assert isinstance(lb.make_attack("landmark_breaker", steps=3), lb.MIFGSM)
    with pytest.raises(KeyError, match="unknown landmark attack"):
        lb.make_attack("pgd_l2")


def test_registry_alias_refuses_to_rename_a_taken_name():
    from blinkbench.core.registry import Registry
    reg = Registry("thing")

    @reg.register("a")
    class A:
        pass

    @reg.register("b")
    class B:
        pass

    reg.alias("first", "a")
    assert reg.get("first") is A and A.name == "a"
    with pytest.raises(ValueError, match="registered twice"):
        reg.alias("first", "b")
