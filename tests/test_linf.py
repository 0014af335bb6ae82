"""The shared L-inf update (attacks/linf.py): it stays in the budget and the pixel range, steps
down the loss, and gives bit for bit what each attack's own loop computed before it was shared
(Landmark Breaker's min/max ball, NES's clip-then-project, EOT-PGD's perturbation form)."""

from __future__ import annotations

import torch

from blinkbench.attacks.linf import project, sign_step, valid_delta


def _data(seed=0, shape=(4, 3, 17, 17)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    v = (x + (torch.rand(shape, generator=g) - 0.5) * 0.1).clamp(0, 1)
    grad = torch.randn(shape, generator=g)
    grad[0, 0, 0, :3] = 0.0                          # sign 0: no step there
    return x, v, grad


def test_step_stays_in_the_ball_and_the_pixel_range_and_goes_down_a_linear_loss():
    x, v, grad = _data()
    eps, alpha = 4 / 255, 1 / 255
    new = sign_step(v, grad, alpha, x - eps, x + eps).clamp(0, 1)
    assert float((new - x).abs().max()) <= eps + 1e-7
    assert float(new.min()) >= 0 and float(new.max()) <= 1
    assert float((grad * new).sum()) < float((grad * v.clamp(x - eps, x + eps)).sum())
    assert torch.equal(new[0, 0, 0, :3], v.clamp(x - eps, x + eps)[0, 0, 0, :3])
    d = valid_delta(x, torch.full_like(x, 0.5))
    assert float((x + d).max()) <= 1.0


def test_bit_identical_to_the_loops_it_replaced():
    for seed in range(5):
        x, v, grad = _data(seed)
        eps, alpha = 8 / 255, 0.25 * 8 / 255
        # Landmark Breaker
        old = torch.min(torch.max(v - alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
        assert torch.equal(sign_step(v, grad, alpha, x - eps, x + eps).clamp(0, 1), old)
        # NES
        step = torch.clamp(v - alpha * grad.sign(), 0.0, 1.0)
        old = torch.clamp(x + torch.clamp(step - x, -eps, eps), 0.0, 1.0)
        assert torch.equal(project(sign_step(v, grad, alpha), x, eps), old)
        # EOT-PGD (perturbation form)
        delta = v - x
        old = torch.clamp(x + torch.clamp(delta - alpha * grad.sign(), -eps, eps), 0.0, 1.0) - x
        assert torch.equal(valid_delta(x, sign_step(delta, grad, alpha, -eps, eps)), old)
