"""The PGD/FGSM speed-ups (issue 14: frozen weights and channels-last on CPU; PGD's own loop;
the networks' gradient view) change the perturbations only by floating-point rounding order,
leave the model as it was, and the crops follow the model's device.

The reference is the attack as it ran before the speed-ups: foolbox's ``LinfPGD`` called
directly on the model with trainable, contiguous weights (the old ``FoolboxAttack._run``),
seeded and projected the same way. A trained MesoNet is not needed: an untrained Meso-4 at
64 px with batch-norm statistics set away from (0, 1) has the same layers (conv, ReLU, batch
norm, max-pool, resize) that the speed-ups touch.

"Up to rounding order": PGD follows the sign of the gradient, so a rounding difference that
flips the sign of a near-zero gradient component moves that pixel by two steps, and the next
gradients see it (the float32 reference itself parts from a float64 run that way). Where the
arithmetic is the same (PGD's loop vs foolbox's on the same network) the results are equal to
the bit; through the gradient view they must agree on all but a few values, on the logits
and on the success flags."""

from __future__ import annotations

import foolbox as fb
import pytest
import torch

from blinkbench.attacks.frame import PGD, FoolboxAttack, create
from blinkbench.attacks.frame.base import TwoClassLogits, attack_mode, model_device, project
from blinkbench.detectors.frame import nets
from blinkbench.detectors.frame.nets import GradientView, Meso4, MesoInception4, gradient_view


def meso(seed: int = 0, arch=Meso4) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = arch(input_size=64, dropout=0.5)
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


CASES = [("pgd", {}), ("pgd", {"steps": 3, "random_start": False}),
         ("fgsm", {"steps": 1, "rel": 1.0, "random_start": False})]


def attack(name, kw):
    params = {"steps": kw["steps"], "random_start": kw["random_start"]} if name == "pgd" and kw else {}
    return create(name, **params)


class FoolboxPGD(PGD):
    """PGD through foolbox inside ``Attack.__call__`` (the path before PGD's own loop)."""
    _run = FoolboxAttack._run


@pytest.mark.parametrize("size", [56, 64, 72])                  # resize up, none, down
@pytest.mark.parametrize("name, kw", CASES)
def test_perturbations_equal_the_reference_up_to_rounding(name, kw, size):
    net = meso()
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    ref = reference_pgd(net, x, seed=7, **kw)
    adv = attack(name, kw)(net, x, seed=7)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert (ref - x).abs().max() > 1e-3                  # the reference does move the crops
    assert (adv - x).abs().max() <= 4 / 255 + 1e-7 and adv.min() >= 0 and adv.max() <= 1
    differ = (adv - ref).abs() > 1e-6
    assert differ.float().mean() <= 1e-3, f"{int(differ.sum())} of {differ.numel()} values differ"
    with torch.no_grad():
        za, zr = net(adv), net(ref)
    torch.testing.assert_close(za, zr, atol=1e-3 * float(zr.abs().max()), rtol=0)
    assert torch.equal(za < 0, zr < 0)                   # same success flags


@pytest.mark.parametrize("name, kw", CASES)
def test_pgd_loop_is_foolboxs_loop_to_the_bit(name, kw, monkeypatch):
    """Without the gradient view, PGD's own loop is foolbox's LinfPGD on the same network:
    same random start, loss, steps and projections, equal to the bit."""
    monkeypatch.setattr(nets, "gradient_view", lambda m: m)
    net = meso()
    x = torch.rand(4, 3, 72, 72, generator=torch.Generator().manual_seed(1))
    adv = attack(name, kw)(net, x, seed=7)
    params = {"steps": kw.get("steps", 10), "rel_step_size": kw.get("rel", 0.25),
              "random_start": kw.get("random_start", True)}
    fool = FoolboxPGD(**params)(net, x, seed=7)
    assert (adv - x).abs().max() > 1e-3
    assert torch.equal(adv, fool)


def _grad(f, x):
    xi = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(xi).sum(), xi)
    return g


@pytest.mark.parametrize("arch", [Meso4, MesoInception4])
@pytest.mark.parametrize("size", [56, 64, 72])
def test_gradient_view_is_the_same_function(arch, size):
    net = meso(arch=arch)
    view = gradient_view(net)
    assert isinstance(view, GradientView) and view.identity_norm
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z, zv = net(x), view(x)
    if size == 64:              # no resize: pooling first is exact in the forward pass
        assert torch.equal(z, zv)
    torch.testing.assert_close(zv, z, atol=1e-5 * float(z.abs().max()), rtol=0)
    g, gv = _grad(net, x), _grad(view, x)
    scale = float(g.abs().max())
    assert scale > 0
    off = (gv - g).abs() > 1e-4 * scale
    assert off.float().mean() <= 1e-3, f"{int(off.sum())} of {off.numel()} gradient values differ"
    assert net.training is False and view.backbone is not net.backbone
    # the view shares the network's layers: nothing was copied
    assert {id(p) for p in view.parameters()} == {id(p) for p in net.parameters()}


def test_gradient_view_moves_pools_only_past_increasing_layers():
    net = meso()
    kinds = [[type(m).__name__ for m in blk] for blk in gradient_view(net).backbone]
    assert kinds == [["Conv2d", "_ReusedGradPool", "ReLU", "BatchNorm2d"]] * 4
    with torch.no_grad():
        net.backbone[1][2].weight[3] = -0.5              # one decreasing channel: that pool stays
    kinds = [[type(m).__name__ for m in blk] for blk in gradient_view(net).backbone]
    assert kinds[1] == ["Conv2d", "ReLU", "BatchNorm2d", "_ReusedGradPool"]
    assert kinds[0] == ["Conv2d", "_ReusedGradPool", "ReLU", "BatchNorm2d"]
    assert all(type(m) is torch.nn.MaxPool2d for blk in net.backbone for m in blk if "Pool" in type(m).__name__)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(gradient_view(net)(x), net(x))


@pytest.mark.parametrize("kernel,size,ceil,channels_last", [(2, 64, True, False), (2, 65, True, True),
                                                            (4, 32, True, False), (3, 30, False, True)])
def test_reused_grad_pool_is_max_pool_to_the_bit_and_reuses_its_buffer(kernel, size, ceil, channels_last):
    """The pool of the gradient view: the same output and input gradient as nn.MaxPool2d, to
    the bit, call after call, with its gradient written into one buffer it keeps."""
    from blinkbench.detectors.frame.nets import _ReusedGradPool

    pool = torch.nn.MaxPool2d(kernel, ceil_mode=ceil)
    mine = _ReusedGradPool(pool)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    gen = torch.Generator().manual_seed(kernel + size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ptrs = set()
    for _ in range(3):
        x = torch.rand(2, 3, size, size, generator=gen).contiguous(memory_format=fmt).requires_grad_()
        w = torch.randn(2, 4, -(-size // kernel) if ceil else size // kernel, generator=gen)
        outs, grads = [], []
        for p in (pool, mine):
            y = conv(x)                                  # an intermediate tensor, as in the network
            out = p(y)
            (g,) = torch.autograd.grad((out * w[..., None]).sum(), y)
            outs.append(out.detach())
            grads.append(g.clone())
        assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
        ptrs.add(mine.grad_buffer.data_ptr())
    assert len(ptrs) == 1                                # one buffer, reused
    leaf = torch.rand(1, 3, size, size, generator=gen, requires_grad=True)
    fresh = _ReusedGradPool(pool)
    (g,) = torch.autograd.grad(fresh(leaf).sum(), leaf)  # the caller's own tensor: the plain pool
    assert fresh.grad_buffer is None and torch.equal(g, torch.autograd.grad(pool(leaf).sum(), leaf)[0])


def test_gradient_view_only_for_eval_frame_nets():
    net = meso()
    assert gradient_view(net.train()) is net                 # batch statistics: not the same function
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
    assert gradient_view(plain) is plain
    with pytest.raises(ValueError):
        GradientView(net.train())


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
