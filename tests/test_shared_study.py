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
