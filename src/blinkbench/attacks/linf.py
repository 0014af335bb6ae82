"""The L-inf update of every iterative attack here, written once: a step against the sign of
the loss gradient, then back into the budget (the eps-ball around the clean input) and the
valid pixel range [0, 1]. EOT-PGD (:mod:`.frame.eot`), NES (:mod:`.frame.nes`), FakeRetouch
(:mod:`.frame.fakeretouch`, projection only: its optimiser is Adam), the Landmark Breaker
family (:mod:`.blink.landmark_breaker`) and :meth:`.frame.base.Attack.__call__` call these.

Each attack keeps the order of operations it had (EOT-PGD steps its perturbation, NES and
Landmark Breaker their images), so the perturbations are bit-identical to the loops these
functions replaced: float arithmetic is not associative, and ``x + clamp(adv - x)`` is not
always ``clamp(adv, x - eps, x + eps)`` to the last bit.
"""

from __future__ import annotations

import torch


def sign_step(v: torch.Tensor, grad: torch.Tensor, alpha: float,
              lo: float | torch.Tensor = 0.0, hi: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``v - alpha * sign(grad)`` (a step down the loss) clamped to ``[lo, hi]``: numbers (the
    pixel range, a perturbation's budget) or tensors (the eps-ball ``x - eps, x + eps``)."""
    return torch.clamp(v - alpha * grad.sign(), lo, hi)


def project(adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project ``adv`` onto the L-inf ball of radius ``eps`` around ``x``, then clip to [0, 1]."""
    return torch.clamp(x + torch.clamp(adv - x, -eps, eps), 0.0, 1.0)


def valid_delta(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The perturbation ``delta`` cut so that ``x + delta`` stays in [0, 1]."""
    return torch.clamp(x + delta, 0.0, 1.0) - x
