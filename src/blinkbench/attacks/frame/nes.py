"""NES: a black-box, score-based attack (Ilyas et al., "Black-box adversarial attacks with
limited queries and information", ICML 2018).

The attacker sees only the detector's output probability ``p`` (that a crop is fake) for
crops it submits: no logit, no gradient, no weights. The model runs under
``torch.no_grad()``, so no gradient of it is ever computed. Each iteration estimates the
gradient of the loss ``L = log p - log(1 - p)`` (the log-odds of the queried probability,
computed from ``p`` alone; monotone in ``p``, and unlike ``p`` it does not flatten out
where the detector is confident) with natural evolution strategies and antithetic samples:

    g = 1 / (2 n sigma) * sum_{i=1..n} [L(x + sigma u_i) - L(x - sigma u_i)] u_i,   u_i ~ N(0, I)

then steps ``x <- Proj_eps(x - alpha sign(g))`` (``alpha = rel_step_size * eps``), clipped to
[0, 1], like PGD. ``u`` is drawn at a ``tile``-times coarser resolution and repeated over
``tile`` x ``tile`` pixel blocks (``tile = 1``: plain per-pixel NES); fewer dimensions make the
estimate far less noisy per query (the tiling prior of Ilyas et al., ICLR 2019).

Queries. An iteration costs ``2 * samples`` queries plus one for the new iterate; the clean
crop costs one. A crop stops once its queried probability is below ``sigmoid(-confidence)``
(adversarial with margin, so that 8-bit rounding keeps it so) or when the next iteration
would exceed ``max_queries``. The iterate returned is the one with the lowest queried
probability. Queries used per crop are kept (:meth:`NES.frame_stats`) and written to the
per-frame records of the adversarial video (``queries``) and its stats
(``queries_per_frame_mean``). ``sigma`` is in 0-255 levels, like ``eps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from blinkbench.attacks.linf import project, sign_step

from .base import Attack, register


@register("nes")
@dataclass(frozen=True, kw_only=True)
class NES(Attack):
    """Natural-evolution-strategies gradient estimate + L-inf PGD, probability queries only."""

    max_queries: int = 1000
    samples: int = 20
    sigma: float = 2.0
    rel_step_size: float = 0.2
    tile: int = 8
    confidence: float = 1.0
    query_batch: int = 64

    test_params = {"max_queries": 400, "samples": 10}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples < 1 or self.tile < 1 or self.query_batch < 1:
            raise ValueError(f"{self.name}: samples, tile and query_batch must be >= 1")
        if self.sigma <= 0:
            raise ValueError(f"{self.name}: sigma must be > 0 (0-255 levels)")
        object.__setattr__(self, "_last", {})

    def frame_stats(self) -> dict[str, list]:
        """Per-crop figures of the last call: ``queries`` (probability queries used)."""
        return dict(self._last)

    def _query(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The detector's fake probability for crops ``x`` (float64), in chunks; nothing else
        of the model is seen."""
        with torch.no_grad():
            out = [torch.sigmoid(model(c).reshape(-1).double()) for c in x.split(self.query_batch)]
        return torch.cat(out) if out else x.new_zeros(0, dtype=torch.float64)

    @staticmethod
    def _loss(p: torch.Tensor) -> torch.Tensor:
        """Log-odds of the queried probability (clamped away from 0 and 1)."""
        p = p.clamp(1e-300, 1.0)
        return torch.log(p) - torch.log1p(-p.clamp(max=1 - 1e-16))

    def _noise(self, n: int, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        """``n`` standard normal directions of ``shape`` (C, H, W), constant on tile blocks."""
        c, h, w = shape
        if self.tile == 1:
            return torch.randn((n, c, h, w), dtype=like.dtype, device=like.device)
        u = torch.randn((n, c, math.ceil(h / self.tile), math.ceil(w / self.tile)), dtype=like.dtype,
                        device=like.device)
        return F.interpolate(u, scale_factor=self.tile, mode="nearest")[..., :h, :w]

    def _estimate(self, model: nn.Module, xa: torch.Tensor, sigma: float) -> torch.Tensor:
        """NES estimate of the loss gradient at one crop ``xa`` (C, H, W): ``2 * samples`` queries."""
        u = self._noise(self.samples, xa.shape, xa)
        u = torch.cat([u, -u])                                               # antithetic pairs
        loss = self._loss(self._query(model, torch.clamp(xa + sigma * u, 0.0, 1.0))).to(xa.dtype)
        return (loss[:, None, None, None] * u).sum(0) / (2 * self.samples * sigma)

    def __call__(self, model: nn.Module, x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        object.__setattr__(self, "_last", {})       # eps 0 or no crops: no stale figures
        return super().__call__(model, x, seed=seed)

    def _run(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._nes(model, x)

    def _nes(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        e, sigma = self.eps / 255.0, self.sigma / 255.0
        alpha = self.rel_step_size * e
        stop_p = 1.0 / (1.0 + math.exp(self.confidence))
        n = len(x)
        per_iter = 2 * self.samples + 1
        queries = [1] * n
        p_best = self._query(model, x)
        best = x.clone()
        adv = x.clone()
        active = [k for k in range(n) if p_best[k] >= stop_p]
        while active:
            active = [k for k in active if queries[k] + per_iter <= self.max_queries]
            if not active:
                break
            idx = torch.tensor(active)
            g = torch.stack([self._estimate(model, adv[k], sigma) for k in active])    # one crop at a time: memory
            step = project(sign_step(adv[idx], g, alpha), x[idx], e)
            p = self._query(model, step)
            adv[idx] = step
            for j, k in enumerate(active):
                queries[k] += per_iter
                if p[j] < p_best[k]:
                    p_best[k], best[k] = p[j], step[j]
            active = [k for j, k in enumerate(active) if p[j] >= stop_p]
        object.__setattr__(self, "_last", {"queries": queries, "p_fake_queried": [float(v) for v in p_best]})
        return best
