#!/usr/bin/env bash
# Does the GPU get used? Prints, on the CPU and (when torch sees one) on a CUDA device:
#   - frame-CNN training crops/s (Meso-4 at 256 px, Lightning, one epoch over 64 crops),
#   - PGD crops/s (Meso-4, batch 8 x 240 px, default parameters, eps 4),
#   - Face Mesh port frames/s (the attention model, batches of 8 frames, no gradient).
# Without CUDA the GPU lines say "no CUDA device". Takes about 1-2 minutes on a 2-core CPU,
# well under 5 minutes on a GPU machine. Run from the project root or anywhere:
#     bash benchmarks/gpu_check.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" - <<'PYEOF'
import os
import time

import numpy as np
import torch

from blinkbench.attacks.frame import create as attack
from blinkbench.core import devices
from blinkbench.detectors.frame import CropSet, create


def train_rate(dev: str) -> float:
    os.environ[devices.ENV] = dev
    rng = np.random.default_rng(0)
    n = 64
    cs = CropSet(rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8), np.array([f"v{i}" for i in range(n)], object),
                 np.arange(n) % 2, np.zeros(n, int))
    det = create("meso4", epochs=1, batch_size=16, augment=False)
    t = time.perf_counter()
    det.fit(cs)
    return n / (time.perf_counter() - t)


def sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


def pgd_rate(dev: str) -> float:
    net = create("meso4", epochs=0).fit(CropSet.empty()).network().to(dev)
    x = torch.rand(8, 3, 240, 240, generator=torch.Generator().manual_seed(0)).to(dev)
    attack("fgsm")(net, x[:2])                          # warm-up
    sync(dev)
    t = time.perf_counter()
    attack("pgd")(net, x, seed=0)
    sync(dev)
    return len(x) / (time.perf_counter() - t)


def mesh_rate(dev: str, batches: int = 4) -> float:
    from blinkbench.mesh_torch import landmarks_in_frame, surrogate

    model = surrogate("attention", dev)
    frames = torch.rand(8, 3, 360, 480, generator=torch.Generator().manual_seed(0)).to(dev)
    box = [[140.0, 60.0, 340.0, 300.0]] * len(frames)
    with torch.no_grad():
        landmarks_in_frame(model, frames, box)        # warm-up
        sync(dev)
        t = time.perf_counter()
        for _ in range(batches):
            landmarks_in_frame(model, frames, box)
        sync(dev)
    return batches * len(frames) / (time.perf_counter() - t)


print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.1f} "
      f"on {os.cpu_count()} cores")
targets = ["cpu", "cuda"]
for dev in targets:
    if dev == "cuda" and not torch.cuda.is_available():
        print("cuda: no CUDA device")
        continue
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "CPU"
    print(f"{dev} ({name}): CNN training {train_rate(dev):7.1f} crops/s | PGD {pgd_rate(dev):7.2f} crops/s | "
          f"Face Mesh port {mesh_rate(dev):7.1f} frames/s", flush=True)
PYEOF
