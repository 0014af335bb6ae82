#!/usr/bin/env python
"""Forensic frame detectors: throughput at 256x256 and the classifier choice (a script, not a test).

    python benchmarks/bench_frame_forensic.py [--n-crops N] [--repeats N] [--select] [--skip-speed]

Speed: for each detector (``block_dct``, ``ela``) and each of its classifiers, crops/s of
feature extraction alone and of ``predict_frames`` (features + classifier + aggregation) on
``--n-crops`` synthetic 256x256 crops, median of ``--repeats`` timed runs after one warm-up.
The detector is fitted beforehand (untimed) on a separate synthetic train set at 256x256.

Selection (``--select``): each classifier is trained on ``synthetic_task(seed=101)`` and
scored on three validation sets (seeds 201-203; the tests use seeds 10 and 11, never these),
128x128 crops; the table gives mean frame-level AUC, video-level AUC (mean probability) and
frame log-loss. The detectors' default classifiers are the best frame AUC here.

Single-threaded (OMP/MKL/OpenBLAS threads = 1, set before NumPy loads) because the machine
is shared; figures are for one core.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402


def _torch_one_thread() -> None:
    if "torch" in sys.modules:           # not imported by the forensic module; guard anyway
        sys.modules["torch"].set_num_threads(1)


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``repeats`` runs after one warm-up. CPU time
    (this process, all threads) is the steadier figure when others share the cores."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def speed(n_crops: int, repeats: int) -> None:
    import cv2

    from blinkbench.detectors.frame import forensic as fz

    cv2.setNumThreads(1)
    _torch_one_thread()
    train = fz.synthetic_task(n_videos=16, crops_per_video=4, size=256, seed=301)
    test = fz.synthetic_task(n_videos=max(1, -(-n_crops // 4)), crops_per_video=4, size=256, seed=302).crops[:n_crops]
    n = len(test)
    print(f"\nspeed: {n} crops 256x256x3 uint8, 1 thread, median of {repeats} runs; crops/s by wall "
          f"clock and by this process's CPU time")
    print(f"{'detector':10s} {'classifier':10s} {'feat/s wall':>11s} {'feat/s cpu':>10s} "
          f"{'pred/s wall':>11s} {'pred/s cpu':>10s} {'fit s':>6s}  features per crop")
    for cls in (fz.BlockDCT, fz.ELA):
        for j, kind in enumerate(fz._CLASSIFIERS[cls.name]):
            det = cls(seed=0, classifier=kind)
            t0 = time.perf_counter()
            det.fit(train)
            fit_s = time.perf_counter() - t0
            if j == 0:                     # features do not depend on the classifier
                fw, fc = _timed(lambda: det.features(test), repeats)
                f = det.features(test[:1])
                shape = "x".join(map(str, (f[0] if isinstance(f, tuple) else f).shape[1:]))
                feat = f"{n / fw:11.1f} {n / fc:10.1f}"
            else:
                feat = f"{'':11s} {'':10s}"
            pw, pc = _timed(lambda: det.predict_frames(test), repeats)
            print(f"{cls.name:10s} {kind:10s} {feat} {n / pw:11.1f} {n / pc:10.1f} {fit_s:6.1f}  {shape if j == 0 else ''}")
    print(f"(fit: {len(train)} crops of 256x256, {len(np.unique(train.video_id))} videos, wall clock)")


def select() -> None:
    from sklearn.metrics import log_loss

    from blinkbench.detectors.evaluation import metrics
    from blinkbench.detectors.frame import forensic as fz

    _torch_one_thread()
    train = fz.synthetic_task(n_videos=40, crops_per_video=4, size=128, seed=101)
    vals = [fz.synthetic_task(n_videos=40, crops_per_video=4, size=128, seed=s) for s in (201, 202, 203)]
    print("\nselection: train seed 101 (40 videos x 4 crops, 128x128), validation seeds 201-203 (40 videos each)")
    print(f"{'detector':10s} {'classifier':10s} {'frame AUC':>10s} {'video AUC':>10s} {'log-loss':>9s} {'acc@0.5':>8s}  other")
    variants = [(fz.BlockDCT, {}), (fz.ELA, {}), (fz.ELA, {"extra_qualities": ()})]
    for cls, extra in variants:
        for kind in fz._CLASSIFIERS[cls.name]:
            det = cls(seed=0, classifier=kind, **extra).fit(train)
            fa, va, ll, acc = [], [], [], []
            for v in vals:
                p = det.predict_frames(v.crops)
                fa.append(metrics(v.label, p)["auc"])
                ll.append(log_loss(v.label, np.clip(p, 1e-6, 1 - 1e-6)))
                acc.append(float(((p >= 0.5) == v.label).mean()))
                vv = det.predict_videos(v)
                va.append(metrics(vv["label"], vv["mean_prob"])["auc"])
            other = " ".join(f"{k}={v}" for k, v in extra.items())
            print(f"{cls.name:10s} {kind:10s} {np.mean(fa):10.3f} {np.mean(va):10.3f} {np.mean(ll):9.3f} "
                  f"{np.mean(acc):8.3f}  {other}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-crops", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--select", action="store_true", help="also run the classifier selection")
    ap.add_argument("--skip-speed", action="store_true")
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore", category=FutureWarning)
    if not a.skip_speed:
        speed(a.n_crops, a.repeats)
    if a.select:
        select()
    return 0


if __name__ == "__main__":
    sys.exit(main())
