#!/usr/bin/env python
"""Peak-memory benchmark of the faces step (issue 13 item 8; a script, not a test).

    python benchmarks/bench_memory.py [--sizes 640x360,1920x1080,3840x2160] [--frames 40,160]
                                      [--slow-detector-ms MS] [--work DIR]

Each run is a fresh process (``ru_maxrss`` is a high-water mark per process) that imports the
step, records its resident set, runs ``faces.track_video`` on one synthetic video (a face
image scaled to the size, H.264 yuv420p, written once under ``--work`` and reused) and prints
the peak and the peak minus the after-import baseline. "Flat" means the growth neither
follows the resolution nor the length.

Before/after: run it with another checkout's sources first on the path, e.g.
``PYTHONPATH=/path/to/old/src python benchmarks/bench_memory.py``: the before code queued 32
full decoded frames (8K: 1.4 GiB); the after code downscales on the decode thread and queues
small images (full frames only where a crop may be cut).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(video: str, slow_ms: float = 0.0) -> None:
    import time

    from blinkbench.core import config
    from blinkbench.spine import faces

    params = config.load(Path(__file__).resolve().parents[1] / "params.yaml")
    if slow_ms:  # a detector slower than the decoder (a loaded machine, a bigger model): the queue fills
        call = faces.MediaPipeFaceDetector.__call__

        def slow(self, rgb):
            time.sleep(slow_ms / 1000)
            return call(self, rgb)

        faces.MediaPipeFaceDetector.__call__ = slow
    base = _rss_mib()
    res = faces.track_video(video, params["faces"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_mib": round(base, 1), "peak_mib": round(peak, 1),
                      "growth_mib": round(peak - base, 1), "frames": res.meta["n_frames"],
                      "status": res.meta["status"]}))


def make_video(path: Path, width: int, height: int, n: int) -> Path:
    if path.exists():
        return path
    import cv2
    from skimage import data as skdata

    from blinkbench.video.codec import write_video

    face = skdata.astronaut()
    side = min(width, height)
    img = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    frame = cv2.copyMakeBorder(img, 0, height - side, (width - side) // 2, width - side - (width - side) // 2,
                               cv2.BORDER_CONSTANT, value=(90, 90, 90))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, (frame for _ in range(n)), fps=25)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="640x360,1920x1080,3840x2160")
    ap.add_argument("--frames", default="40,160")
    ap.add_argument("--work", default="/tmp/blinkbench_bench/memory")
    ap.add_argument("--slow-detector-ms", type=float, default=0.0,
                    help="sleep this long in every detection, so the decoder runs ahead and the reader's queue "
                         "fills (what a loaded machine does; makes the queue's share of memory deterministic)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child, a.slow_detector_ms)
        return 0
    print(f"{'size':>10} {'frames':>6} {'baseline MiB':>12} {'peak MiB':>9} {'growth MiB':>10}  status")
    for size in a.sizes.split(","):
        w, h = map(int, size.split("x"))
        for n in map(int, a.frames.split(",")):
            video = make_video(Path(a.work) / f"face_{w}x{h}_{n}.mp4", w, h, n)
            r = subprocess.run([sys.executable, __file__, "--child", str(video),
                                "--slow-detector-ms", str(a.slow_detector_ms)], capture_output=True, text=True)
            if r.returncode:
                print(f"{size:>10} {n:>6} failed: {r.stderr.strip().splitlines()[-1:]}")
                continue
            m = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{size:>10} {n:>6} {m['baseline_mib']:>12} {m['peak_mib']:>9} {m['growth_mib']:>10}  {m['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
