#!/usr/bin/env python
"""Training and inference frames/s of the CNN frame detectors on CPU (a script, not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_frame_cnns.py [--threads 1] [--batch 8]
        [--min-time 3] [--archs resnet50 vgg19 ...] [--sizes cpu paper] [--json out.json]

For each architecture of :mod:`blinkbench.detectors.frame.nets`, at the detector's default CPU input
size (``cnn.CPU_INPUT_SIZE``) and at the paper's (``nets.PAPER_INPUT_SIZE``):

- inference: ``net.eval()`` under ``torch.inference_mode`` on a batch of 256x256 face crops
  in [0, 1] (the crop files' size; the resize to the input size happens inside the network
  and is timed with it), as ``predict_frames`` runs it;
- training: one AdamW step on BCE-with-logits in train mode (forward, backward, update), as
  one Lightning training step runs it without Lightning's own per-step overhead.

Each (architecture, size, mode) gets one discarded warm-up iteration, then iterations until
``--min-time`` seconds have passed (at least 2); frames/s = crops / median iteration time.
Threads are pinned (``torch.set_num_threads``, default 1) because the machine is shared;
figures on a loaded VM vary by +-30 % between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _time(fn, min_time: float) -> tuple[float, int]:
    fn()                                               # warm-up (allocations, oneDNN kernels)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), len(times)


def bench(arch: str, size: int, batch: int, min_time: float) -> dict:
    import torch
    from torch.nn import functional as F

    from blinkbench.detectors.frame import checkpoints

    torch.manual_seed(0)
    net = checkpoints.build(arch, input_size=size)
    x = torch.rand(batch, 3, 256, 256)
    y = (torch.arange(batch) % 2).float()

    net.eval()

    def infer():
        with torch.inference_mode():
            net(x)

    t_inf, n_inf = _time(infer, min_time)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(net(x), y).backward()
        opt.step()

    t_tr, n_tr = _time(step, min_time)
    return {"arch": arch, "input_size": size, "batch": batch,
            "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
            "infer_fps": batch / t_inf, "infer_iters": n_inf, "train_fps": batch / t_tr, "train_iters": n_tr}


def main(argv: list[str] | None = None) -> int:
    from blinkbench.detectors.frame import cnn, nets

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="+", default=list(nets.PAPER_INPUT_SIZE))
    ap.add_argument("--sizes", nargs="+", choices=["cpu", "paper"], default=["cpu", "paper"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds of timed iterations per cell")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s) (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), batch {args.batch} crops of 256x256, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'arch':16s} {'which':6s} {'input':>5s} {'params M':>8s} {'infer f/s':>10s} {'train f/s':>10s}"
          f" {'train s/epoch of 10k':>21s}")
    rows = []
    for arch in args.archs:
        for which in args.sizes:
            size = cnn.CPU_INPUT_SIZE[arch] if which == "cpu" else nets.PAPER_INPUT_SIZE[arch]
            if which == "paper" and "cpu" in args.sizes and size == cnn.CPU_INPUT_SIZE[arch]:
                continue                                # MesoNet: the CPU default is the paper size
            r = bench(arch, size, args.batch, args.min_time)
            r["which"] = which if size != nets.PAPER_INPUT_SIZE[arch] or which == "paper" else "both"
            rows.append(r)
            print(f"{arch:16s} {r['which']:6s} {size:5d} {r['params_m']:8.2f} {r['infer_fps']:10.1f} "
                  f"{r['train_fps']:10.2f} {10_000 / r['train_fps']:21.0f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
