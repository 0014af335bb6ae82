"""Shared fixtures: the ../shared real clips and models, small synthetic videos."""

from __future__ import annotations

import copy
import os
from pathlib import Path


def _threads_per_worker() -> None:
    """Under ``pytest -n N`` (N > 1) give each worker's math libraries its share of the
    cores (at least one), before anything imports torch or numpy's BLAS. Their default is
    every core per process: with two workers on two cores, torch's OpenMP threads wait
    spinning for a thread that the other worker has taken the core from, and a test ran
    5.6x longer (test_study_demo: 62 s alone with one core busy elsewhere at one thread,
    347 s at the default two). Children (Snakemake, DVC, the CLI) inherit the share.
    A value set by the user is kept."""
    n = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if n > 1:
        share = str(max(1, (os.cpu_count() or 1) // n))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ.setdefault(var, share)


_threads_per_worker()

import numpy as np  # noqa: E402  (after the thread share above)
import pytest  # noqa: E402

from blinkbench.core import config  # noqa: E402
from blinkbench.video.codec import write_video  # noqa: E402

import slurm_background  # noqa: E402  (tests/: the SLURM test's run, started in the background)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SKIP_SHARED = "../shared not found: real-clip tests need the shared samples beside the project root"


def pytest_collection_modifyitems(config, items):
    """Test files with the most end-to-end (``slow``) tests first, each file's tests kept
    together and in order. ``make test`` spreads whole files over the cores (pytest-xdist,
    ``--dist loadfile --no-loadscope-reorder``) in this order: the long files start first
    and the short ones fill the gaps, instead of a few Snakemake/DVC/SLURM runs at the end
    with one core idle (xdist's own order is by number of tests, which puts them last)."""
    from collections import Counter

    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    first = {p: i for i, p in enumerate(dict.fromkeys(item.path for item in items))}
    # The SLURM test goes last: its run goes on in the background from the start
    # (tests/slurm_background.py) and by then it only reads the result
    items.sort(key=lambda it: (it.path.name == slurm_background.TEST_FILE, -slow[it.path], first[it.path]))


def pytest_collection_finish(session):
    """Start the SLURM test's cluster run in the background if it was selected."""
    slurm_background.start(session.config, session.items)


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder (real clips and models); skips the test where it is absent."""
    if not (SHARED / "samples").is_dir():
        pytest.skip(SKIP_SHARED)
    return SHARED


@pytest.fixture
def params() -> dict:
    """The project's params.yaml, validated (a fresh copy per test)."""
    return copy.deepcopy(_params())


_cache: dict = {}


def _params() -> dict:
    if "p" not in _cache:
        _cache["p"] = config.load(ROOT / "params.yaml")
    return _cache["p"]


def make_video(path: Path, frames, fps: float = 25, **kw) -> Path:
    write_video(path, iter(frames), fps=fps, **kw)
    return path


@pytest.fixture(scope="session")
def flat_video(tmp_path_factory) -> Path:
    """A valid 20-frame 64x64 video with no face in it."""
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(120, 10, (64, 64, 3)), 0, 255).astype(np.uint8) for _ in range(20)]
    return make_video(tmp_path_factory.mktemp("flat") / "flat.mp4", frames)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with torch at one thread (restored afterwards): the attack and
    mesh tests compare results bit for bit, and the suite shares the machine's cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fit_tiny_detector(net, x, y, *, lr: float, epochs: int, test, batch: int | None = None, min_acc: float = 0.95):
    """Train an attack test's tiny frame detector (crops ``x`` -> one fake logit) with Adam on
    the binary cross-entropy towards labels ``y`` (float), full batch or in shuffled batches
    of ``batch`` (seeded), then put it in eval mode and check it learned the synthetic task:
    accuracy of the logit's sign on the held-out ``test`` crops and labels at least ``min_acc``
    (else the attack tests would measure nothing). Seed torch before building ``net``."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam(net.parameters(), lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        if batch is None:
            batches = [(x, y)]
        else:
            perm = torch.randperm(len(x), generator=g)
            batches = [(x[i], y[i]) for i in (perm[b:b + batch] for b in range(0, len(x), batch))]
        for xb, yb in batches:
            loss = F.binary_cross_entropy_with_logits(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    xt, yt = test
    with torch.no_grad():
        acc = float(((net(xt) > 0).long() == yt).float().mean())
    assert acc >= min_acc, f"the tiny CNN did not learn the synthetic task (test accuracy {acc:.2f})"
    return net
