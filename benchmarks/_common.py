"""Pieces shared by the benchmarks (imported as ``_common``: a benchmark runs as a script, so
its own folder is on ``sys.path``)."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"     # the real clips and model files beside the project


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's argument parser: its docstring's first paragraph as description and
    ``--shared`` (the shared real clips and models, default ``../shared``)."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="shared data root (default: %(default)s)")
    return ap


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
