"""Loading a model never runs code from it, and a hostile file is refused cheaply (issue 13).

- A pickle whose ``__reduce__`` calls ``os.system`` (the old model format was pickle) is given
  to every loader: ``Detector.load``, ``FrameDetector.load``, the protocol's evaluation
  loaders, ``blinkbench detect --model`` and the module-level ``modelfile.load``. Each must
  refuse it with a clear error, and the marker file the payload would create never appears.
- A model file whose skops part names a type outside the allow-list (a function such as
  ``os.system``) is refused, so is a file whose weights do not fit the network.
- A few-KB MesoNet ``.h5`` that declares a 1.8 GiB weight is refused before any array is
  read (peak RSS measured in a subprocess).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from blinkbench.detectors import modelfile
from blinkbench.detectors.blink import Detector, create, get
from blinkbench.detectors.frame import FrameDetector
from blinkbench.detectors.frame import create as frame_create
from blinkbench.experiments import protocol
from blinkbench.testing.synthetic import synthetic_videos

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(tmp_path: Path, wrap: bool = False) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    obj = _Payload(marker)
    if wrap:   # shaped like the old model files: a dict with the detector inside
        obj = {"format": 1, "kind": "frame", "name": "ela", "detector": obj}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=5))
    return path, marker


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """The fixture is live: plain unpickling creates the marker (so its absence below means
    the loaders never unpickled the file)."""
    path, marker = _evil(tmp_path)
    pickle.loads(path.read_bytes())
    assert marker.exists()


LOADERS = {
    "Detector.load": Detector.load,
    "FrameDetector.load": FrameDetector.load,
    "modelfile.load": modelfile.load,
    "modelfile.read_header": modelfile.read_header,
    "protocol._load_frame": protocol._load_frame,
}


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_loader_refuses_a_malicious_pickle(loader, wrap, tmp_path):
    path, marker = _evil(tmp_path, wrap)
    with pytest.raises(modelfile.ModelFileError, match="pickle.*refuses"):
        LOADERS[loader](path)
    assert not marker.exists()


def test_protocol_evaluations_record_a_refused_model_and_run_nothing(tmp_path):
    """evaluate_blink / evaluate_frame turn a refused model into an error evaluation."""
    path, marker = _evil(tmp_path)
    table = protocol.pd.DataFrame({"video_id": ["v1"], "label": ["fake"], "split": ["test"], "status": ["ok"]})
    outs = (tmp_path / "s.parquet", tmp_path / "m.json", tmp_path / "r.csv")
    head = {"detector": "x", "family": None, "train_dataset": "a", "test_dataset": "b", "status": "ok", "error": ""}
    for loader in (Detector.load, protocol._load_frame):
        assert protocol._load_or_record(loader, path, table, head, outs) is None
        res = json.loads(outs[1].read_text())
        assert res["status"] == "error" and "pickle" in res["error"]
    assert not marker.exists()


def test_detect_cli_refuses_a_malicious_pickle(tmp_path):
    path, marker = _evil(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-m", "blinkbench", "detect", str(tmp_path / "clip.mp4"), "--model", str(path),
                        "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "error" and "pickle" in out["error"] and "refuses" in out["error"]
    assert "Traceback" not in r.stderr
    assert not marker.exists()


@pytest.fixture(scope="module")
def fitted_rocket(tmp_path_factory):
    videos, y = synthetic_videos(8, 3, duration_s=(8, 8))
    det = create("minirocket", seed=0, **get("minirocket").test_params).fit(videos, y)
    path = tmp_path_factory.mktemp("m") / "minirocket.zip"
    det.save(path)
    return path


def _replace(src: Path, dst: Path, **members: bytes) -> Path:
    with zipfile.ZipFile(src) as z:
        data = {n: z.read(n) for n in z.namelist()}
    data.update(members)
    dst.write_bytes(modelfile._zip(data))
    return dst


def test_a_type_outside_the_allow_list_is_refused(fitted_rocket, tmp_path):
    import skops.io

    bad = _replace(fitted_rocket, tmp_path / "bad.zip", **{modelfile.ESTIMATORS: skops.io.dumps({"model_": os.system})})
    with pytest.raises(modelfile.ModelFileError, match="outside the allow-list.*system"):
        Detector.load(bad)
    with pytest.raises(modelfile.ModelFileError, match="allow-list"):
        modelfile.load(bad)


def test_foreign_and_mismatched_files_are_refused(fitted_rocket, tmp_path):
    # a pickle member smuggled into the zip
    sneaky = _replace(fitted_rocket, tmp_path / "a.zip", **{modelfile.ESTIMATORS: pickle.dumps({"x": 1})})
    with pytest.raises(modelfile.ModelFileError, match="unreadable"):
        Detector.load(sneaky)
    # an extra member, a frame loader on a blink file, a detector name not in the registry
    with pytest.raises(modelfile.ModelFileError, match="not a blinkbench model file"):
        Detector.load(_replace(fitted_rocket, tmp_path / "b.zip", **{"run.py": b"import os"}))
    with pytest.raises(modelfile.ModelFileError, match="expected a frame detector"):
        FrameDetector.load(fitted_rocket)
    header = json.loads(zipfile.ZipFile(fitted_rocket).read(modelfile.HEADER))
    header["name"] = "os.system"
    with pytest.raises(modelfile.ModelFileError, match="unknown detector"):
        Detector.load(_replace(fitted_rocket, tmp_path / "c.zip", **{modelfile.HEADER: json.dumps(header).encode()}))
    # weights that do not fit the network rebuilt from the stored spec
    from safetensors.torch import save as st_save
    import torch

    videos, y = synthetic_videos(6, 3, duration_s=(8, 8))
    fcn = create("fcn", seed=0, **get("fcn").test_params).fit(videos, y)
    fcn.save(tmp_path / "fcn.zip")
    wrong = _replace(tmp_path / "fcn.zip", tmp_path / "d.zip", **{modelfile.WEIGHTS: st_save({"w": torch.zeros(3)})})
    with pytest.raises(modelfile.ModelFileError, match="do not fit"):
        Detector.load(wrong)
    # a spec whose network would be far larger than its weights: refused on the meta device
    header = json.loads(zipfile.ZipFile(tmp_path / "fcn.zip").read(modelfile.HEADER))
    header["state"]["net_spec_"]["filters"] = [100_000, 100_000, 100_000]
    huge = _replace(tmp_path / "fcn.zip", tmp_path / "e.zip", **{modelfile.HEADER: json.dumps(header).encode()})
    with pytest.raises(modelfile.ModelFileError, match="do not fit"):
        Detector.load(huge)


def test_fuzzed_model_files_give_clean_errors(fitted_rocket, tmp_path):
    """240 mutated model files (random byte flips, truncations, spliced garbage) of a
    skops-based, a safetensors-based and a JSON-only detector: each either loads or is
    refused with ModelFileError/UntrainedModel, never another exception."""
    videos, y = synthetic_videos(6, 3, duration_s=(8, 8))
    sources = [fitted_rocket.read_bytes()]
    for name in ("blink_rate_rule", "fcn"):
        create(name, seed=0, **get(name).test_params).fit(videos, y).save(tmp_path / f"{name}.zip")
        sources.append((tmp_path / f"{name}.zip").read_bytes())
    rng = np.random.default_rng(13)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(240):
        data = bytearray(sources[i % 3])
        how = (i // 3) % 4
        if how == 0:                                   # flip a few bytes anywhere
            for j in rng.integers(0, len(data), rng.integers(1, 8)):
                data[j] ^= int(rng.integers(1, 256))
        elif how == 1:                                 # truncate
            data = data[: int(rng.integers(0, len(data)))]
        elif how == 2:                                 # garbage spliced into the middle
            j = int(rng.integers(0, len(data)))
            data[j:j] = rng.integers(0, 256, int(rng.integers(1, 64))).astype(np.uint8).tobytes()
        else:                                          # flip bytes inside the JSON header only
            start = bytes(data).find(b"{")
            for j in rng.integers(start, start + 400, 3):
                data[j] ^= int(rng.integers(1, 256))
        path = tmp_path / "fuzz.zip"
        path.write_bytes(bytes(data))
        try:
            Detector.load(path)
            outcomes["loaded"] += 1
        except (modelfile.ModelFileError, modelfile.UntrainedModel):
            outcomes["refused"] += 1
    print(f"fuzzed model files: {outcomes}")
    assert outcomes["refused"] >= 100


def test_failure_records_load_as_untrained_for_both_families(tmp_path):
    for kind, loader in (("blink", Detector.load), ("frame", FrameDetector.load)):
        p = tmp_path / f"{kind}.zip"
        modelfile.save_failure(p, "x", "boom", kind)
        with pytest.raises(modelfile.UntrainedModel, match="boom"):
            loader(p)


def test_frame_model_round_trip_and_header(tmp_path):
    from blinkbench.detectors.frame.forensic import synthetic_task

    cs = synthetic_task(8, 2, 64)
    det = frame_create("ela", seed=0, n_estimators=10, cv_folds=2, classifier="rf").fit(cs)
    det.save(tmp_path / "ela.zip")
    back = FrameDetector.load(tmp_path / "ela.zip")
    assert back.hyper == det.hyper and np.array_equal(back.predict_frames(cs.crops), det.predict_frames(cs.crops))
    info = modelfile.read_header(tmp_path / "ela.zip")
    assert info["kind"] == "frame" and info["name"] == "ela" and info["status"] == "ok"


# ----------------------------------------------------------------------------- MesoNet .h5

def _keras_h5(path: Path, net, huge: str | None = None) -> None:
    """Write ``net``'s weights as the authors' Keras 2 ``save_weights`` layout (Meso4 only);
    with ``huge``, that weight instead declares a 1.8 GiB float64 array and writes nothing."""
    import h5py

    convs = [b[0] for b in net.backbone]
    bns = [b[2] for b in net.backbone]
    layers = {}
    for i, c in enumerate(convs):
        layers[f"conv2d_{i + 1}"] = {"kernel": c.weight.detach().numpy().transpose(2, 3, 1, 0), "bias": c.bias.detach().numpy()}
    for i, b in enumerate(bns):
        layers[f"batch_normalization_{i + 1}"] = {"gamma": b.weight.detach().numpy(), "beta": b.bias.detach().numpy(),
                                                  "moving_mean": b.running_mean.numpy(), "moving_variance": b.running_var.numpy()}
    for i, d in enumerate((net.head[2], net.head[5])):
        sign = -1.0 if i == 1 else 1.0          # the file's last layer is the P(real) logit
        layers[f"dense_{i + 1}"] = {"kernel": sign * d.weight.detach().numpy().T, "bias": sign * d.bias.detach().numpy()}
    with h5py.File(path, "w") as h:
        h.attrs["layer_names"] = [n.encode() for n in layers]
        for name, ws in layers.items():
            g = h.create_group(name)
            g.attrs["weight_names"] = [f"{name}/{k}:0".encode() for k in ws]
            for k, a in ws.items():
                if f"{name}/{k}" == huge:
                    g.create_dataset(f"{name}/{k}:0", shape=(15000, 16000), dtype="f8")
                else:
                    g.create_dataset(f"{name}/{k}:0", data=np.asarray(a, np.float32))


def test_keras_h5_layout_round_trips(tmp_path):
    import torch

    from blinkbench.detectors.frame import checkpoints, mesonet_h5

    src = checkpoints.build("meso4", 256).eval()
    with torch.no_grad():
        for b in src.backbone:
            b[2].running_mean.uniform_(-0.1, 0.1)
    _keras_h5(tmp_path / "m.h5", src)
    back = mesonet_h5.meso4_from_h5(tmp_path / "m.h5")
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(back(x), src(x))


_RSS = """
import resource, sys
from blinkbench.detectors.frame import checkpoints, mesonet_h5
net = checkpoints.build("meso4", 256)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    mesonet_h5.{fn}
    print("LOADED")
except ValueError as exc:
    print("REFUSED", exc)
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("fn", ["load_keras_weights(net, sys.argv[1])", "read_h5(sys.argv[1])"])
def test_an_h5_declaring_gigabytes_is_refused_before_reading(tmp_path, fn):
    from blinkbench.detectors.frame import checkpoints

    path = tmp_path / "huge.h5"
    _keras_h5(path, checkpoints.build("meso4", 256), huge="dense_1/kernel")
    assert path.stat().st_size < 256 * 1024         # the real weights (80 KB) and an unwritten 1.8 GiB one
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", _RSS.replace("{fn}", fn), str(path)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("REFUSED"), r.stdout
    peak_mib = int(lines[-1].split()[1]) / 1024
    print(f"file {path.stat().st_size} bytes; peak RSS growth while refusing: {peak_mib:.1f} MiB")
    assert peak_mib < 100, f"refusing grew the peak RSS by {peak_mib:.0f} MiB"


def test_detect_opens_the_model_file_once(tmp_path, monkeypatch):
    """``blinkbench detect`` used to unpickle the model twice (once for its kind, once to
    use it); it now reads it once, whatever the video turns out to be."""
    import builtins

    from conftest import _params

    videos, y = synthetic_videos(6, 3, duration_s=(8, 8))
    model = tmp_path / "rule.zip"
    create("blink_rate_rule").fit(videos, y).save(model)
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    opened = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if Path(str(file)) == model:
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    res = protocol.detect_video(model, tmp_path / "clip.mp4", _params(), tmp_path / "work")
    assert res["detector"] == "blink_rate_rule" and res["status"] != "ok"
    assert len(opened) == 1, f"model file opened {len(opened)} times"


def test_study_skips_a_refused_blink_model_and_goes_on(tmp_path, monkeypatch, params):
    """A model file the loader refuses (here: a pickle) is a skipped detector for the study's
    re-scoring and the noise-effect tables, not a crash of the whole set."""
    import pickle

    from blinkbench.core import paths
    from blinkbench.experiments import noise_effect, study

    monkeypatch.chdir(tmp_path)
    params["detectors"]["enabled"] = ["blink_rate_rule"]
    params["frame_detectors"]["enabled"] = ["meso4"]
    for kind, name in (("blink_model", "blink_rate_rule"), ("frame_model", "meso4")):
        p = paths.path(kind, detector=name, train=params["attacks"]["models_trained_on"])
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(pickle.dumps({"kind": "blink"}))
    blink, frame = study._models(params)
    assert blink == {} and frame == {}
    assert noise_effect._blink_models(params) == {}
