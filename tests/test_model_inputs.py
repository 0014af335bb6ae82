"""Model files that params name by path (the PFLD model, frame-detector checkpoints) are
declared inputs of the Snakemake rules that read them (issue 13 item 11): replacing one
reruns the step (Snakemake's mtime trigger), and a missing one is named before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blinkbench.spine.steps import model_files

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def test_model_files_per_step(params):
    assert model_files(params, "landmarks") == []  # MediaPipe's models ship in its wheel
    params["landmarks"].update(backend="pfld", pfld_model="m/pfld.onnx")
    params["frame_detectors"]["hyper"]["meso4"] = {"checkpoint": "m/meso4.h5", "epochs": 0}
    for step in ("landmarks", "ear_attack", "rescore", "landmark_breaker"):
        assert model_files(params, step) == ["m/pfld.onnx"], step
    assert model_files(params, "train_frame", "meso4") == ["m/meso4.h5"]
    assert model_files(params, "train_frame", "resnet50") == [] and model_files(params, "blinks") == []
    params["landmarks"]["backend"] = "mediapipe"  # the Landmark Breaker still attacks PFLD as a transfer target
    assert model_files(params, "landmarks") == [] and model_files(params, "landmark_breaker") == ["m/pfld.onnx"]


@pytest.mark.slow  # a Snakemake parse: 10-40 s on this machine
def test_snakemake_rules_take_the_model_files_as_inputs(tmp_path):
    (tmp_path / "pfld.onnx").write_bytes(b"x")
    (tmp_path / "meso.h5").write_bytes(b"x")
    cfg = {"datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"}},
           "demo": {"n_real": 1, "n_fake": 1, "duration_s": 4.0, "fps": [25], "size": 192},
           "landmarks": {"backend": "pfld", "pfld_model": "pfld.onnx"},
           "detectors": {"enabled": ["blink_rate_rule"], "train_on": ["demo"], "test_on": ["demo"]},
           "frame_detectors": {"enabled": ["meso4"], "train_on": ["demo"], "test_on": ["demo"],
                               "hyper": {"meso4": {"checkpoint": "meso.h5", "epochs": 0}}},
           "attacks": {"enabled": False}, "blink_attacks": {"enabled": False}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                        "--configfile", str(tmp_path / "params.yaml"), "--cores", "1", "-n",
                        "data/landmarks/demo/real_demo_real_00.parquet", "data/models/frame/meso4/demo.zip"],
                       capture_output=True, text=True, env=ENV, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    jobs = {block.split(":", 1)[0].strip(): block for block in out.split("rule ")[1:]}
    assert "pfld.onnx" in jobs["landmarks"].split("output:")[0], jobs["landmarks"]
    assert "meso.h5" in jobs["train_frame"].split("output:")[0], jobs["train_frame"]
