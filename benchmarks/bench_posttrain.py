#!/usr/bin/env python
"""Post-training throughput on CPU (a script, not a test): crops/s of the adaptive
post-training defence (blinkbench.defence.posttrain), split into its two costs.

    OMP_NUM_THREADS=1 python benchmarks/bench_posttrain.py [--threads 1] [--crops 64] [--crop 256]
        [--models meso4 xception] [--algorithms pgd deepfool] [--variants frozen full]

Per model (untrained, ``epochs=0``, at the detector's CPU input size: Meso4 256 px resized
inside, Xception 160 px) on ``--crops`` random uint8 face crops of ``--crop`` px, half
labelled fake, with the issue's defaults (tau 0.9, anchor eps 2, fractions 0.25-1, PGD 10
steps / DeepFool 50, SGD lr 1e-4, momentum 0.9, 20 steps of 16):

- ``neigh crops/s``: training crops per second through the neighbourhood search (anchor
  attack towards the wrong class, 4 candidates per crop, one embedding pass each);
- ``sgd s``: the 20 SGD steps (fixed work: 320 crops forward and backward);
- ``crops/s``: training crops / (neighbourhood + SGD), what one post-training job costs per
  training crop (the SGD part does not grow with the crop count, so this rises with it).

DeepFool stops once every crop is misclassified, so on an untrained model its time depends
on the weights (``anchor flipped`` says how far it went). One untimed warm-up pass per model.
Threads are pinned (default 1: the machine is shared); expect +-20-30 % between runs on a
loaded VM.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crops", type=int, default=64)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--models", nargs="+", default=["meso4", "xception"])
    ap.add_argument("--algorithms", nargs="+", default=["pgd", "deepfool"])
    ap.add_argument("--variants", nargs="+", default=["frozen", "full"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from blinkbench.defence import posttrain as pt
    from blinkbench.detectors.frame import CropSet, create

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (args.crops, args.crop, args.crop, 3), dtype=np.uint8)
    labels = np.arange(args.crops) % 2
    print(f"post-training, {args.crops} crops of {args.crop} px, {args.threads} thread(s), issue defaults")
    print(f"{'model':<10} {'algorithm':<9} {'variant':<7} {'kept':>9} {'anchor flipped':>14} "
          f"{'neigh crops/s':>13} {'sgd s':>7} {'crops/s':>8}")
    for name in args.models:
        det = create(name, seed=0, epochs=0).fit(CropSet.empty(args.crop))
        net = det.network()
        pt.neighbourhood(net, crops[:4], labels[:4], "pgd", attack_params={"steps": 1})    # warm-up
        for alg in args.algorithms:
            t0 = time.perf_counter()
            nb = pt.neighbourhood(net, crops, labels, alg, tau=0.9, eps=2,
                                  attack_params={"steps": 10} if alg == "pgd" else {"steps": 50})
            t_nb = time.perf_counter() - t0
            for var in args.variants:
                t1 = time.perf_counter()
                _, info = pt.posttrain(net, crops, labels, nb, variant=var)
                t_sgd = time.perf_counter() - t1
                assert info["steps"] == 20
                print(f"{name:<10} {alg:<9} {var:<7} {len(nb.label):>4}/{nb.n_candidates:<4} "
                      f"{nb.anchor_flipped:>14.2f} {args.crops / t_nb:>13.2f} {t_sgd:>7.2f} "
                      f"{args.crops / (t_nb + t_sgd):>8.2f}")


if __name__ == "__main__":
    main()
