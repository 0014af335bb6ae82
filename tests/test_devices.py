"""Device plumbing: CUDA when there is one, the CPU otherwise or when forced with
``BLINKBENCH_DEVICE=cpu``; Lightning gets ``accelerator="auto"`` unless forced; trained
networks come back on the CPU and predictions put their inputs on the network's device.
There is no GPU here: the checks run on the CPU (and read which device the code chose)."""

from __future__ import annotations

import lightning
import numpy as np
import pytest
import torch

from blinkbench.core import devices
from blinkbench.detectors.frame import CropSet, create

HAS_CUDA = torch.cuda.is_available()


def test_choice_and_override(monkeypatch):
    monkeypatch.delenv(devices.ENV, raising=False)
    assert devices.requested() == "auto"
    assert devices.name() == ("cuda" if HAS_CUDA else "cpu")
    assert devices.accelerator() == "auto"
    monkeypatch.setenv(devices.ENV, "CPU")
    assert devices.name() == "cpu" and devices.accelerator() == "cpu"
    assert devices.name("auto") == ("cuda" if HAS_CUDA else "cpu")     # an explicit argument wins
    monkeypatch.setenv(devices.ENV, "tpu")
    with pytest.raises(ValueError, match="BLINKBENCH_DEVICE"):
        devices.name()
    if not HAS_CUDA:
        with pytest.raises(RuntimeError, match="no CUDA"):
            devices.name("cuda")
    assert devices.accelerator("cuda") == "gpu"


def test_of_reads_the_module_device():
    assert devices.of(torch.nn.Linear(2, 1)) == torch.device("cpu")
    with torch.device("meta"):
        m = torch.nn.Linear(2, 1)
    assert devices.of(m) == torch.device("meta")
    assert devices.of(torch.nn.ReLU(), "cpu") == torch.device("cpu")


def crops(n: int = 4, size: int = 40) -> CropSet:
    rng = np.random.default_rng(0)
    lab = np.arange(n) % 2
    return CropSet(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.array([f"v{i}" for i in range(n)],
                   object), lab, np.zeros(n, int))


@pytest.mark.parametrize("env, expected", [(None, "auto"), ("cpu", "cpu")])
def test_training_asks_lightning_for_the_chosen_accelerator(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv(devices.ENV, raising=False)
    else:
        monkeypatch.setenv(devices.ENV, env)
    seen = []
    real = lightning.Trainer

    def spy(*args, **kwargs):
        seen.append(kwargs["accelerator"])
        return real(*args, **kwargs)

    monkeypatch.setattr(lightning, "Trainer", spy)
    det = create("meso4", input_size=32, epochs=1, batch_size=4, augment=False).fit(crops())
    assert seen == [expected]
    net = det.network()
    assert devices.of(net).type == "cpu"              # kept and saved on the CPU whatever it trained on
    logits = det.predict_logits(crops().crops)
    assert logits.shape == (4,) and np.isfinite(logits).all()


def test_prediction_inputs_follow_the_network_device(monkeypatch):
    det = create("meso4", input_size=32, epochs=0).fit(CropSet.empty())
    net = det.network()
    seen = []
    net.register_forward_pre_hook(lambda m, args: seen.append((args[0].device, devices.of(m))))
    det.predict_logits(crops().crops)
    assert seen and all(a == b for a, b in seen)
