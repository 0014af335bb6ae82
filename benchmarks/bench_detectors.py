#!/usr/bin/env python
"""Fit and predict time of the blink detectors, per 100 videos (a script, not a test).

    python benchmarks/bench_detectors.py [--detectors rule,classical|all|name,name]
                                         [--videos N] [--seed S] [--no-warmup]

Each detector is built with its DEFAULT hyper-parameters (not the small test ones) and the
default series preparation (25 Hz, 6 s windows every 2 s: 8 windows per 20 s video). Data:
the synthetic EAR task of ``blinkbench.testing.synthetic`` (as in the tests) with 20 s videos, ``N`` for training
and another ``N`` (other seed) for prediction, half real, half fake, 25 and 30 fps.

Columns:

- ``first_use_s``: fit + predict on 6 tiny videos before timing, untimed otherwise: mostly
  Numba compilation (tslearn compiles at every start; sktime caches compiled code on disk,
  so it is large only in a fresh environment). ``--no-warmup`` skips it, and the first
  timed fit then includes the compilation.
- ``fit_s/100`` and ``predict_s/100``: wall time of ``fit`` on N videos and ``predict_proba``
  on N others, scaled to 100 videos (exact for N = 100; some costs are not linear in N:
  k-NN prediction grows with training x test windows, kernel SVM fits with the square).
- ``auc``: on the prediction videos, a sanity check that the timed model learned something.

Threads: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS`` = 1 and
``torch.set_num_threads(1)``, because the machine is shared; the estimators run with
``n_jobs=1``. A detector that fails gets an error row; the script always exits 0.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

from blinkbench.detectors.blink import available, create, get  # noqa: E402
from blinkbench.detectors.evaluation import metrics  # noqa: E402
from blinkbench.detectors.blink.series import SeriesConfig, window_batch  # noqa: E402
from blinkbench.testing.synthetic import synthetic_videos  # noqa: E402  (the tests' synthetic task)

FAMILIES = ("rule", "classical", "neural")


def select(spec: str) -> list[str]:
    """``all``, family names and detector names, comma-separated, in registry order."""
    names = available()
    if spec == "all":
        return names
    wanted: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part in FAMILIES:
            wanted += [n for n in names if get(n).family == part and n not in wanted]
        elif part in names:
            if part not in wanted:
                wanted.append(part)
        else:
            raise SystemExit(f"unknown detector or family {part!r}; available: {', '.join(names)}")
    return wanted


def bench_one(name: str, train, y_train, test, y_test, seed: int, warmup) -> dict:
    row: dict = {"detector": name, "family": get(name).family}
    try:
        if warmup is not None:
            t0 = time.perf_counter()
            create(name, seed=seed).fit(warmup[0], warmup[1]).predict_proba(warmup[0])
            row["first_use_s"] = time.perf_counter() - t0
        det = create(name, seed=seed)
        t0 = time.perf_counter()
        det.fit(train, y_train)
        t1 = time.perf_counter()
        p = det.predict_proba(test)
        t2 = time.perf_counter()
        row.update(fit_s=t1 - t0, predict_s=t2 - t1, auc=metrics(y_test, p)["auc"])
    except Exception as e:  # one detector's failure is a row, not the end of the run
        row["error"] = f"{type(e).__name__}: {e}"[:200]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detectors", default="rule,classical",
                    help="comma-separated names and/or families (rule, classical, neural), or all")
    ap.add_argument("--videos", type=int, default=100, help="videos to fit on, and as many to predict")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-warmup", action="store_true", help="time the first use (JIT compilation) too")
    args = ap.parse_args(argv)
    if args.videos < 4:
        raise SystemExit("--videos must be at least 4 (two of each class)")

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    warnings.filterwarnings("ignore")

    names = select(args.detectors)
    train, y_train = synthetic_videos(args.videos, args.seed, duration_s=(20.0, 20.0), prefix="train")
    test, y_test = synthetic_videos(args.videos, args.seed + 1000, duration_s=(20.0, 20.0), prefix="test")
    warm = None if args.no_warmup else synthetic_videos(6, args.seed + 2000, (20.0, 20.0), prefix="w")
    n_windows = len(window_batch(train, SeriesConfig())[2])
    scale = 100.0 / args.videos
    print(f"# {args.videos} train + {args.videos} test synthetic videos of 20 s "
          f"({n_windows} training windows, default series config); default hyper-parameters; "
          f"1 thread; times scaled to 100 videos")
    head = (f"{'detector':16s} {'family':9s} {'first_use_s':>11s} {'fit_s/100':>10s} "
            f"{'predict_s/100':>13s} {'auc':>6s}")
    print(head)
    print("-" * len(head))
    for name in names:
        r = bench_one(name, train, y_train, test, y_test, args.seed, warm)
        if "error" in r:
            print(f"{name:16s} {r['family']:9s} ERROR {r['error']}", flush=True)
            continue
        first = f"{r['first_use_s']:11.2f}" if "first_use_s" in r else f"{'-':>11s}"
        print(f"{name:16s} {r['family']:9s} {first} {r['fit_s'] * scale:10.2f} "
              f"{r['predict_s'] * scale:13.2f} {r['auc']:6.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
