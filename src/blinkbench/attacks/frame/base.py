"""Adversarial attacks on face crops: one shared base, a registry by name, foolbox attacks.

The contract with the detectors: a network is any ``nn.Module`` that maps RGB crops
``(B, 3, H, W)``, float in [0, 1], of any size, to one fake logit per crop ``(B,)``
(positive = fake; resizing and normalisation happen inside it). Attacks therefore work in
the crop's own pixel space at its native size, and the perturbation they return maps back
onto the video frame exactly (no resampling of the noise).

Every attack has the same goal and the same budget:

- goal: fake crops classified *real*. Attacks that support it are targeted at class 0
  ("real") of the two-class view :class:`TwoClassLogits` (``[0, z]``); DeepFool is
  untargeted, which for a binary model is the same thing (the only other class is real);
- budget: ``eps`` in 0-255 levels, L-inf. The result of every fixed-budget attack (FGSM,
  PGD, FakeRetouch) is projected onto the eps-ball around the clean crop and clipped to
  [0, 1] (:meth:`Attack.__call__`). CW-L2 and DeepFool are, as in their papers, minimal-L2
  attacks with no L-inf bound of their own: by default (``project=False``) their result is
  only clipped to [0, 1], ``eps`` does not bound it, and what they reach is reported (L2 and
  L-inf per frame and per video, :mod:`.video`). ``project=True`` projects their result
  onto the eps-ball like the others (the pre-issue-12 behaviour), so that ``eps`` means the
  same for every attack. :meth:`Attack.bounded` says which applies. ``eps = 0`` returns the
  clean crops unchanged for every attack (the study's clean reference).

An attack is a frozen, keyword-only dataclass: its fields are its typed parameters with
defaults, unknown or mistyped parameters fail at construction, and a concrete attack is a
few lines that set defaults on a shared base (:class:`FGSM` is :class:`PGD` with one step
of size eps from the clean crop). Build one by name with ``create(name, **params)``, where
``params`` is the caller's ``params["attacks"][name]`` section; ``defaults(name)`` lists the
parameters and their defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import types
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from blinkbench.attacks.linf import project  # noqa: F401  (also re-exported: base.project)
from blinkbench.core import devices
from blinkbench.core.registry import Registry
from blinkbench.detectors.frame.nets import TwoClassLogits  # re-exported: the attacks' foolbox view

REGISTRY: Registry = Registry("attack")   # every attack module is imported by the package __init__


register = REGISTRY.register
"""Class decorator: make an attack available under ``name``."""


available = REGISTRY.available
get = REGISTRY.get


def create(name: str, **params: Any) -> "Attack":
    """The attack called ``name`` with ``params`` (typically ``params["attacks"][name]``)."""
    return get(name)(**params)


def defaults(name: str) -> dict[str, Any]:
    """Parameter names and default values of an attack (what a params section may set)."""
    return {f.name: f.default for f in dataclasses.fields(get(name))}


@dataclass(frozen=True, kw_only=True)
class Attack(ABC):
    """Base of all attacks. ``eps``: L-inf budget in 0-255 levels."""

    eps: float = 4.0

    name: ClassVar[str] = "?"
    targeted: ClassVar[bool] = True     # aims at class "real"; False: untargeted (binary: same)
    test_params: ClassVar[dict[str, Any]] = {}   # few-step settings for the test table

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            fixed = _check_type(type(self).name, f.name, value, hints[f.name])
            if fixed is not value:
                object.__setattr__(self, f.name, fixed)
        if self.eps < 0:
            raise ValueError(f"{self.name}: eps must be >= 0 (0-255 levels), got {self.eps}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "eps" and isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"{self.name}: {f.name} must be >= 0, got {v}")

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __call__(self, model: nn.Module, x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        """Adversarial versions of fake crops ``x`` (B, 3, H, W) in [0, 1]: same shape, within
        eps/255 of ``x`` in L-inf and inside [0, 1]. The model runs in eval mode (its mode is
        restored after); random parts are seeded with ``seed`` without touching the caller's
        global RNG state."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected crops (B, 3, H, W), got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x) or float(x.min()) < 0 or float(x.max()) > 1:
            raise ValueError(f"{self.name}: crops must be float in [0, 1]")
        x = x.detach()
        if self.eps == 0 or len(x) == 0:
            return x.clone()
        x_out = x
        x = x.to(model_device(model, x.device))      # tensors follow the model's device
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[]), attack_mode(model):
                torch.manual_seed(int(seed))
                adv = self._run(model, x).detach()
        finally:
            model.train(was_training)
        adv = project(adv, x, self.eps / 255.0) if self.bounded() else torch.clamp(adv, 0.0, 1.0)
        return adv.to(x_out.device)

    def bounded(self) -> bool:
        """Whether the result is held to the L-inf budget ``eps`` (minimal-norm attacks: only
        with ``project=True``)."""
        return True

    @abstractmethod
    def _run(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The attack proper: adversarial crops (projection and clipping follow)."""


def model_device(model: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter (or buffer); ``default`` for a model with
    neither (a stand-in that follows its input)."""
    return devices.of(model, default)


@contextlib.contextmanager
def attack_mode(model: nn.Module):
    """The model as attacks need it, restored on exit: no gradient for its weights (attacks
    differentiate with respect to the input only; without this autograd also computes every
    weight gradient, the larger part of a convolution's backward pass), and on CPU its 4-D
    weights channels-last (oneDNN's faster convolution and pooling paths; same values, same
    results here). Measured on Meso-4, batch 8, one thread, CPU seconds
    (``benchmarks/bench_attacks.py --before-after``): PGD 1.1-1.2x faster on real face crops,
    about 2x on uniform-noise crops (whose weight gradients were the costly part)."""
    params = [p for p in model.parameters() if p.requires_grad]
    swapped = []
    try:
        for p in params:
            p.requires_grad_(False)
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t.device.type == "cpu" and t.ndim == 4 and not t.is_contiguous(memory_format=torch.channels_last):
                swapped.append((t, t.data))
                t.data = t.data.contiguous(memory_format=torch.channels_last)
        yield model
    finally:
        for t, data in swapped:
            t.data = data
        for p in params:
            p.requires_grad_(True)


def _check_type(attack: str, key: str, value: Any, hint: Any) -> Any:
    """Accept ``value`` for a field annotated ``hint`` (int, float, bool, str, X | None);
    ints are accepted (and converted) for floats, bools never count as numbers."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return value
    for t in allowed:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
    names = " | ".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise TypeError(f"{attack}: parameter {key!r} must be {names}, got {value!r}")


# ------------------------------------------------------------------ foolbox attacks

@dataclass(frozen=True, kw_only=True)
class FoolboxAttack(Attack):
    """An attack run by foolbox 3 on :class:`TwoClassLogits` of the network, bounds (0, 1).

    Fixed-budget attacks get ``epsilons = eps / 255``; minimal-norm attacks (``minimal``)
    get ``None`` (unbounded) and are projected onto the L-inf budget afterwards only when
    their ``project`` field says so (:class:`MinimalNormAttack`)."""

    minimal: ClassVar[bool] = False

    @abstractmethod
    def _foolbox(self):
        """The configured foolbox attack object."""

    def _run(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        import foolbox as fb

        fmodel = fb.PyTorchModel(TwoClassLogits(model).eval(), bounds=(0, 1), device=x.device)
        n = len(x)
        if self.targeted:
            criterion = fb.criteria.TargetedMisclassification(torch.zeros(n, dtype=torch.long, device=x.device))
        else:
            criterion = fb.criteria.Misclassification(torch.ones(n, dtype=torch.long, device=x.device))
        epsilon = None if self.minimal else self.eps / 255.0
        _, clipped, _ = self._foolbox()(fmodel, x, criterion, epsilons=epsilon)
        return clipped


@register("pgd")
@dataclass(frozen=True, kw_only=True)
class PGD(FoolboxAttack):
    """L-inf projected gradient descent (Madry et al., ICLR 2018) as foolbox's ``LinfPGD``
    computes it: from a uniform random start in the eps-ball (``random_start``), ``steps``
    steps of ``rel_step_size * eps`` along the sign of the gradient of the cross-entropy
    towards "real", each projected onto the ball and clipped to [0, 1]. The default step
    (0.25 eps for 10 steps) is Madry's 2.5 eps / steps.

    :meth:`_run` is foolbox's loop written out with the same tensor operations in the same
    order (same random start from the same RNG draw, same loss, same step and projection;
    ``FoolboxAttack._run`` is the reference, ``tests/test_attack_mode.py`` compares them),
    without foolbox's per-call overhead and its final forward pass (whose success flags
    were discarded), and through :func:`~blinkbench.detectors.frame.nets.gradient_view` of
    the network (the same function, cheaper forward and backward for the frame CNNs; equal
    up to floating-point rounding order)."""

    steps: int = 10
    rel_step_size: float = 0.25
    random_start: bool = True

    test_params = {"steps": 5}

    def _foolbox(self):
        import foolbox as fb

        return fb.attacks.LinfPGD(rel_stepsize=self.rel_step_size, steps=self.steps, random_start=self.random_start)

    def _run(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        from blinkbench.detectors.frame.nets import gradient_view

        eps = self.eps / 255.0
        stepsize = self.rel_step_size * eps
        net = TwoClassLogits(gradient_view(model))
        target = torch.zeros(len(x), dtype=torch.long, device=x.device)     # class "real"
        x0 = x
        if self.random_start:       # foolbox: x0 + ep.uniform(x0, shape, -eps, eps), clipped
            x = x0 + (torch.rand(x0.shape, dtype=x0.dtype, device=x0.device) * (eps - -eps) + -eps)
            x = torch.clamp(x, 0.0, 1.0)
        with torch.enable_grad():
            for _ in range(self.steps):
                xi = x.detach().requires_grad_()
                loss = F.cross_entropy(net(xi), target, reduction="none").sum()
                (grad,) = torch.autograd.grad(loss, xi)
                x = x + -1.0 * (stepsize * grad.sign())                  # targeted: down the loss
                x = x0 + torch.clamp(x - x0, -eps, eps)
                x = torch.clamp(x, 0.0, 1.0)
        return x0 + torch.clamp(x - x0, -eps, eps)     # foolbox's clip_perturbation of the result


@register("fgsm")
@dataclass(frozen=True, kw_only=True)
class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al., ICLR 2015): PGD with one step of size
    eps from the clean crop (exactly foolbox's own ``FGSM``)."""

    steps: int = 1
    rel_step_size: float = 1.0
    random_start: bool = False

    test_params = {}


@dataclass(frozen=True, kw_only=True)
class MinimalNormAttack(FoolboxAttack):
    """A minimal-L2 attack (CW-L2, DeepFool): the smallest perturbation the algorithm finds
    that flips the decision, unbounded in L-inf as in the papers. ``project=True`` projects
    it onto the L-inf ball of radius ``eps`` (then ``eps`` is a budget, as for PGD); with the
    default ``project=False`` ``eps`` only switches the attack on (``eps = 0``: clean)."""

    minimal = True

    project: bool = False

    def bounded(self) -> bool:
        return self.project


@register("cw_l2")
@dataclass(frozen=True, kw_only=True)
class CarliniWagnerL2(MinimalNormAttack):
    """Carlini-Wagner L2 (S&P 2017), foolbox ``L2CarliniWagnerAttack``, targeted at "real":
    Adam (``lr``) on the tanh-space perturbation for ``steps`` steps per constant, with a
    binary search over the loss constant (``binary_search_steps``, from
    ``initial_const``). ``confidence`` is the logit margin required (``z <= -confidence``):
    the default 1.0 (fake probability <= 0.27), not foolbox's 0, keeps most crops adversarial
    after rounding to 8 bits, since a minimal-norm attack lands right at the boundary.
    Unbounded in L-inf unless ``project`` (:class:`MinimalNormAttack`)."""

    steps: int = 100
    lr: float = 0.01
    confidence: float = 1.0
    binary_search_steps: int = 5
    initial_const: float = 0.01

    test_params = {"steps": 20, "binary_search_steps": 3, "initial_const": 1.0}

    def _foolbox(self):
        import foolbox as fb

        return fb.attacks.L2CarliniWagnerAttack(binary_search_steps=self.binary_search_steps, steps=self.steps,
                                                stepsize=self.lr, confidence=self.confidence,
                                                initial_const=self.initial_const, abort_early=True)


@register("deepfool")
@dataclass(frozen=True, kw_only=True)
class DeepFoolL2(MinimalNormAttack):
    """DeepFool L2 (Moosavi-Dezfooli et al., CVPR 2016), foolbox ``L2DeepFoolAttack`` on the
    logit difference: linearise the boundary, step onto it, ``overshoot`` past it, repeat up
    to ``steps`` times until the crop is misclassified. Untargeted: with two classes,
    misclassifying a fake crop is classifying it real. ``overshoot`` defaults to the paper's
    0.02; raise it if rounding to 8 bits undoes too many successes (see the video stats).
    Unbounded in L-inf unless ``project`` (:class:`MinimalNormAttack`)."""

    targeted = False

    steps: int = 50
    overshoot: float = 0.02

    test_params = {"steps": 10}

    def _foolbox(self):
        import foolbox as fb

        return fb.attacks.L2DeepFoolAttack(steps=self.steps, candidates=2, overshoot=self.overshoot, loss="logits")
