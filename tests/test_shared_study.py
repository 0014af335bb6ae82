"""The real-footage study's pieces: pretrained frame detectors (the MesoNet authors' weights
used as they are, no training) and, where ../shared exists, a reduced run of the study."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blinkbench.core import config, io
from blinkbench.experiments import protocol

pytestmark = pytest.mark.shared


def test_pretrained_frame_detector_is_the_checkpoint_as_is(shared, tmp_path):
    from blinkbench.detectors.frame import FrameDetector
    from blinkbench.detectors.frame.mesonet_h5 import meso4_from_h5

    h5 = shared / "models" / "Meso4_DF.h5"
    params = config.validate({"datasets": {}, "frame_detectors": {"hyper": {"meso4": {"checkpoint": str(h5), "epochs": 0}}}})
    # the dataset named here is never read: no manifest, no crops exist for it
    info = protocol.train_frame(params, "meso4", "nowhere", tmp_path / "m.zip", tmp_path / "m.json")
    assert info["status"] == "ok" and info["pretrained"] is True and info["n_train_crops"] == 0
    assert info["checkpoint_sha256"] == io.sha256_file(h5)
    net = FrameDetector.load(tmp_path / "m.zip").network()
    ref = meso4_from_h5(h5)
    for (k, a), (_, b) in zip(sorted(net.state_dict().items()), sorted(ref.state_dict().items())):
        assert torch.equal(a, b), k
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert np.allclose(net(x).numpy(), ref(x).numpy(), atol=1e-6)


def test_a_missing_checkpoint_is_a_recorded_failure(tmp_path):
    params = config.validate({"datasets": {}, "frame_detectors": {"hyper": {"meso4": {"checkpoint": str(tmp_path / "no.h5"),
                                                                                      "epochs": 0}}}})
    info = protocol.train_frame(params, "meso4", "nowhere", tmp_path / "m.zip", tmp_path / "m.json")
    assert info["status"] == "error" and "no.h5" in info["error"]
    assert io.read_json(tmp_path / "m.json")["status"] == "error"


@pytest.mark.slow
def test_reduced_real_footage_study_runs_end_to_end(shared, tmp_path):
    """configs/shared.yaml, reduced: two DFDC clips (a real, a fake: max_videos 2 keeps both
    labels) as the real footage, a tiny demo for the blink rule, the authors' Meso4 as the
    pretrained target, FGSM at eps 8 without compression. The same Snakefile and rules as
    `make study-shared`. (Not FF++'s 004_982: the authors' Meso4 does not detect that fake
    even clean, so attacking it would show nothing.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "configs" / "shared.yaml").read_text())
    cfg["datasets"]["demo"] = {"adapter": "folder", "root": "data/raw/demo"}
    cfg["datasets"]["shared"].update(root=str(shared / "samples"), members={
        "dfdc": {"adapter": "dfdc", "root": "dfdc", "max_videos": 2}})
    cfg["frame_detectors"]["enabled"] = ["meso4"]
    cfg["frame_detectors"]["hyper"] = {"meso4": {**cfg["frame_detectors"]["hyper"]["meso4"],
                                                 "checkpoint": str(shared / "models" / "Meso4_DF.h5")}}
    cfg.update(demo={"n_real": 2, "n_fake": 2, "duration_s": 4.0, "fps": [25], "size": 192},
               faces={"crops": {"n_per_video": 4}}, report={"ear_plots": 2})
    cfg["detectors"].update(enabled=["blink_rate_rule"], min_face_s=3.0)
    cfg["attacks"].update(methods=["fgsm"], eps=[8], compressions=[])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(root / "Snakefile"),
                        "--directory", str(tmp_path), "--cores", "2"], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    info = io.read_json(tmp_path / "data/models/frame/meso4/demo.json")
    assert info["pretrained"] is True and info["n_train_crops"] == 0
    m = io.read_json(tmp_path / "data/reports/metrics.json")
    det = m["study"]["detection_rate"]
    clean, attacked = det["clean"]["none"]["eps0"]["none"], det["meso4"]["fgsm"]["eps8"]["none"]
    print(f"\nDFDC fake, authors' Meso4: clean {clean.get('frame/meso4')}, FGSM eps 8 {attacked.get('frame/meso4')};"
          f" blink rule {clean.get('blink/blink_rate_rule')} -> {attacked.get('blink/blink_rate_rule')}")
    assert "frame/meso4" in attacked and "blink/blink_rate_rule" in attacked
    # the target detects the real fake before the attack, and the attack moves it
    assert clean["frame/meso4"] == 1.0 and attacked["frame/meso4"] == 0.0
    # ... so the question is asked on that fake: the blink rule's verdict on the video the attack took from Meso4
    f = m["study"]["fooled_target"]["meso4"]["fgsm"]["eps8"]["none"]
    assert (f["n_fakes"], f["n_detected_clean"], f["n_fooled"], f["fooled_rate"]) == (1, 1, 1, 1.0)
    assert set(f["detection_rate_on_fooled"]) == {"blink/blink_rate_rule"}
    ev = io.read_json(tmp_path / "data/evaluations/blink/blink_rate_rule/demo/shared.json")
    assert ev["n"] + ev["n_abstained"] + len(ev["skipped"]) == 2 and ev["coverage"] is not None
    assert (tmp_path / "data/reports/index.html").exists()
