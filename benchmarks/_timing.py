"""Timing helper shared by the benchmarks (imported as ``_timing``: a benchmark runs as a
script, so its own folder is on ``sys.path``)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def rate(fn: Callable[[], object], n_items: int, seconds: float, min_passes: int = 3) -> float:
    """Median items/s over passes of ``fn`` (each pass handles ``n_items``) after one warm-up
    pass: passes repeat for ``seconds``, and at least ``min_passes`` run."""
    fn()
    rates, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(rates) < min_passes:
        t0 = time.perf_counter()
        fn()
        rates.append(n_items / (time.perf_counter() - t0))
    return statistics.median(rates)
