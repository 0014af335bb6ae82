"""The reference study's exact DTW variants run through tslearn's batched DTW; they must give
pyts' distances (the reference's implementation) for the same options."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from blinkbench.detectors.blink.numba_cache import import_cached
from blinkbench.detectors.blink.reference import dtw_matrix


@pytest.mark.slow          # pyts compiles its DTW with numba on first use (~20 CPU-s without its cache)
@pytest.mark.parametrize("method,options", [("classic", None), ("sakoechiba", {"window_size": 0.1}),
                                            ("sakoechiba", {"window_size": 0.25}), ("itakura", {"max_slope": 2.0})])
def test_exact_variants_equal_pyts(method, options):
    dtw = import_cached("pyts.metrics").dtw

    rng = np.random.default_rng(1)
    for n in (60, 150):
        A, B = rng.random((3, n)), rng.random((4, n))
        want = np.array([[dtw(a, b, dist="square", method=method, options=options) for b in B] for a in A])
        np.testing.assert_allclose(dtw_matrix(A, B, method, options), want, rtol=1e-9, atol=1e-12)


def test_reference_cap_keeps_both_classes_and_is_seeded():
    from blinkbench.detectors.blink.reference import KnnDtwFast

    X = np.random.default_rng(0).random((200, 30))
    y = np.r_[np.zeros(150, int), np.ones(50, int)]
    a, b = (KnnDtwFast(seed=4, max_reference=20) for _ in range(2))
    for d in (a, b):
        d._fit_windows(X, None, y, None)
    assert len(a.train_y_) == 20 and set(a.train_y_) == {0, 1}
    assert np.array_equal(a.train_x_, b.train_x_)
    assert abs(a.train_y_.mean() - 0.25) <= 0.05


# A fresh process imports a pyts module through import_cached with NUMBA_CACHE_DIR from the
# environment and reports, per numba function pyts compiled at import (it compiles the others
# on first call), how many signatures came from the cache and how many were compiled.
_CACHE_PROBE = """
import json, sys
import numba
from numba.core.registry import CPUDispatcher
from blinkbench.detectors.blink.numba_cache import import_cached
njit, jit = numba.njit, numba.jit
import_cached("pyts." + sys.argv[1])
fs = {f"{n}.{k}": f for n, m in list(sys.modules.items()) if n.startswith("pyts.")
      for k, f in vars(m).items() if isinstance(f, CPUDispatcher) and f.signatures}
print(json.dumps({"restored": numba.njit is njit and numba.jit is jit,
                  "functions": {k: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()),
                                    type(f._cache).__name__] for k, f in fs.items()}}))
"""


def test_pyts_compiles_once_then_loads_from_numba_cache(tmp_path):
    """pyts' numba functions are compiled with ``cache=True`` when imported through
    ``import_cached``: the first process compiles and writes the cache, the next one compiles
    nothing, and numba's decorators are restored afterwards. (pyts.preprocessing: the same
    import path as pyts.metrics and pyts.classification at a sixth of their compile time.)"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = [json.loads(subprocess.run([sys.executable, "-c", _CACHE_PROBE, "preprocessing"], env=env,
                                      capture_output=True, text=True, check=True).stdout) for _ in range(2)]
    assert all(r["restored"] for r in runs)                              # numba's own decorators again
    first, second = (r["functions"] for r in runs)
    assert len(first) >= 3 and first.keys() == second.keys()
    assert all(kind == "FunctionCache" for *_, kind in first.values())
    assert all(hits == 0 and miss > 0 for hits, miss, _ in first.values()), first        # compiled once
    assert all(hits > 0 and miss == 0 for hits, miss, _ in second.values()), second      # then only loaded
    assert list((tmp_path / "numba").rglob("*.nbi"))                     # written where it was told


def test_import_cached_restores_numba_after_a_failed_import():
    import numba

    njit, jit = numba.njit, numba.jit
    with pytest.raises(ModuleNotFoundError):
        import_cached("pyts.no_such_module")
    assert numba.njit is njit and numba.jit is jit
    assert import_cached("numpy") is np                   # already imported: returned as it is
