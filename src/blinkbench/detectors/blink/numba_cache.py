"""Importing the numba-compiled time-series libraries (pyts, tslearn) with numba's on-disk
cache on. Import them through :func:`import_cached`, never directly
(``tests/test_conventions.py`` checks it).

Neither library asks numba to cache what it compiles. pyts compiles at import:
``import pyts.classification`` cost 31-33 CPU-s and ``pyts.metrics`` 19 s in every fresh
process, and each training, evaluation or re-scoring job is one. tslearn compiles on first
call (a ``knn_dtw`` fit and predict: 8.9 CPU-s, 5.0 from the cache). During an import through
:func:`import_cached`, numba's ``njit`` and ``jit`` default to ``cache=True``: the machine
code is written once and reloaded by every later process (``pyts.classification`` then
imports in 2.3-2.7 CPU-s; ``benchmarks/bench_startup.py``).
Numba keys its cache on the source file, the function's signature and the CPU, so the code
that runs is the code a fresh compile makes. (sktime's numba functions ask for the cache
themselves.)

The cache belongs to the installed environment, like Python's ``.pyc`` files: numba writes it
into ``__pycache__`` beside the library's sources (in the project's ``.venv``), or under
``NUMBA_CACHE_DIR`` when set. It is never under ``data/`` and never tracked by DVC.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

_DEFAULTS = threading.Lock()


def import_cached(name: str) -> ModuleType:
    """Module ``name`` (e.g. ``"pyts.classification"``, ``"tslearn.metrics"``), imported with
    numba's ``njit``/``jit`` defaulting to ``cache=True``; numba's own decorators are back in
    place when it returns. A module imported before, outside this function, is returned as
    it was compiled."""
    if name in sys.modules:
        return sys.modules[name]
    import numba

    with _DEFAULTS:
        njit, jit = numba.njit, numba.jit
        numba.njit, numba.jit = _cache_on(njit), _cache_on(jit)
        try:
            return importlib.import_module(name)
        finally:
            numba.njit, numba.jit = njit, jit


def _cache_on(decorator):
    def cached(*args, **kwargs):
        kwargs.setdefault("cache", True)
        return decorator(*args, **kwargs)

    return cached
