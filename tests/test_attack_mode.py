"""The PGD/FGSM speed-ups (frozen weights, channels-last on CPU) change no perturbation, leave
the model as it was, and the crops follow the model's device.

The reference is the attack as it ran before the speed-ups: foolbox's ``LinfPGD`` called
directly on the model with trainable, contiguous weights (the old ``FoolboxAttack._run``),
seeded and projected the same way. A trained MesoNet is not needed: an untrained Meso-4 at
64 px with batch-norm statistics set away from (0, 1) has the same layers (conv, ReLU, batch
norm, max-pool, resize) that the speed-ups touch."""

from __future__ import annotations

import foolbox as fb
import pytest
import torch

from blinkbench.attacks.frame import create
from blinkbench.attacks.frame.base import TwoClassLogits, attack_mode, model_device, project
from blinkbench.detectors.frame.nets import Meso4


def meso(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = Meso4(input_size=64, dropout=0.5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(0.0, 0.5)
                m.running_var.uniform_(0.05, 0.5)
    return net.eval()


def reference_pgd(net, x, *, eps=4.0, steps=10, rel=0.25, random_start=True, seed=0):
    """The attack as before: foolbox on the untouched model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fmodel = fb.PyTorchModel(TwoClassLogits(net).eval(), bounds=(0, 1))
        crit = fb.criteria.TargetedMisclassification(torch.zeros(len(x), dtype=torch.long))
        atk = fb.attacks.LinfPGD(rel_stepsize=rel, steps=steps, random_start=random_start)
        _, adv, _ = atk(fmodel, x, crit, epsilons=eps / 255.0)
    return project(adv.detach(), x, eps / 255.0)


@pytest.mark.parametrize("name, kw", [("pgd", {}), ("pgd", {"steps": 3, "random_start": False}),
                                      ("fgsm", {"steps": 1, "rel": 1.0, "random_start": False})])
def test_perturbations_equal_the_reference(name, kw):
    net = meso()
    x = torch.rand(4, 3, 72, 72, generator=torch.Generator().manual_seed(1))
    ref = reference_pgd(net, x, seed=7, **kw)
    params = {"steps": kw["steps"], "random_start": kw["random_start"]} if name == "pgd" and kw else {}
    adv = create(name, **params)(net, x, seed=7)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert (ref - x).abs().max() > 1e-3                  # the reference does move the crops
    # equal up to floating-point order: a sign flip of a near-zero gradient component
    # would show as a 2-step difference at a pixel; none is allowed
    torch.testing.assert_close(adv, ref, atol=1e-6, rtol=0)


def test_attack_mode_restores_weights_grad_flags_and_layout():
    net = meso()
    net.head[2].weight.requires_grad_(False)              # a frozen layer stays frozen
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = {k: p.requires_grad for k, p in net.named_parameters()}
    strides = {k: p.stride() for k, p in net.named_parameters()}
    with attack_mode(net):
        assert not any(p.requires_grad for p in net.parameters())
        conv = net.backbone[0][0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    create("pgd", steps=2)(net, torch.rand(2, 3, 64, 64))
    assert {k: p.requires_grad for k, p in net.named_parameters()} == flags
    assert {k: p.stride() for k, p in net.named_parameters()} == strides
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_crops_follow_the_model_device():
    """No GPU here: the plumbing is checked with the device the model's parameters are on
    (``meta`` tensors for the device lookup; CPU for a full run)."""
    net = meso()
    assert model_device(net) == torch.device("cpu")
    with torch.device("meta"):
        m = Meso4(input_size=64)
    assert model_device(m) == torch.device("meta")

    class NoParams(torch.nn.Module):
        def forward(self, x):
            return x.mean((1, 2, 3))

    assert model_device(NoParams(), "cpu") == torch.device("cpu")
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            seen.append((x.device, next(self.inner.parameters()).device))
            return self.inner(x)

    x = torch.rand(2, 3, 64, 64)
    adv = create("fgsm")(Spy(net), x)
    assert seen and all(a == b for a, b in seen)
    assert adv.device == x.device
