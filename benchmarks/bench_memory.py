#!/usr/bin/env python
"""Peak-memory benchmark of issue 13 item 8 (a script, not a test): the faces step, frame
detector training/evaluation, and the EAR attack.

    python benchmarks/bench_memory.py [--parts faces,frames,ear] [--sizes 640x360,1920x1080,3840x2160]
                                      [--frames 40,160] [--slow-detector-ms MS] [--work DIR]
                                      [--videos 24,96] [--crops-per-video 16] [--ear-frames 100,400]

``frames``: ``protocol.train_frame`` (meso4, 1 epoch, input 64) and ``protocol.evaluate_frame``
on synthetic crop datasets of N and 4N videos (256 px crops, compressed npz as the faces step
writes them), each phase in a fresh process, crops in memory (``lazy=False``: the former
path) against crops read from disk (:mod:`blinkbench.detectors.frame.cropstore`; its cache is
deleted before training, so the training figure includes writing it). ``ear``: the EAR
attack's geometry, clean port EAR, 5 optimisation steps and the final port EAR on synthetic
clips of L and 4L frames (640x360), context tensor in memory (the former path) against the
file-backed :class:`~blinkbench.attacks.blink.ear_attack.ContextStore`. Both report the
child's ``VmHWM`` minus its resident set after imports (fresh process: the high-water mark
is not inherited through exec).

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


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------- frame detectors

def make_crop_dataset(root: Path, n_videos: int, per_video: int, size: int = 256) -> Path:
    """``root/data/{manifests,crops}`` of dataset ``demo``: n videos, half fake (brighter),
    every fifth a test video, the rest train (a seeded tenth of them held out for validation)."""
    import numpy as np
    import pandas as pd

    done = root / "done"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    rows = []
    for v in range(n_videos):
        vid, label = f"v{v:04d}", ("fake" if v % 2 else "real")
        rows.append({"video_id": vid, "label": label, "split": "test" if v % 5 == 4 else "train", "status": "ok"})
        base = rng.normal(110 + 25 * (label == "fake"), 30, (per_video, size, size, 3))
        p = root / "data" / "crops" / "demo" / f"{vid}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(p, crops=np.clip(base, 0, 255).astype(np.uint8), frames=np.arange(per_video) * 10)
    (root / "data" / "manifests").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "data" / "manifests" / "demo.parquet")
    done.write_text("ok")
    return root


def child_frames(root: str, phase: str, mode: str) -> None:
    import os
    import shutil
    import time

    from blinkbench.core import config
    from blinkbench.detectors.frame import CropSet
    from blinkbench.detectors.frame import cnn_fit  # noqa: F401  (torch, Lightning: part of the baseline)
    from blinkbench.experiments import protocol

    os.chdir(root)
    params = config.validate({"datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"}},
                              "frame_detectors": {"enabled": ["meso4"], "hyper": {"meso4": {
                                  "epochs": 1, "input_size": 64, "batch_size": 32, "augment": True}}}})
    if mode == "memory":
        eager = CropSet.from_manifest.__func__
        CropSet.from_manifest = classmethod(lambda cls, *a, **k: eager(cls, *a, **{**k, "lazy": False}))
    out = Path(root) / mode
    if phase == "train":
        shutil.rmtree(Path(root) / "data" / "cache", ignore_errors=True)
    base = _status_mib("VmRSS")
    t0 = time.perf_counter()
    if phase == "train":
        info = protocol.train_frame(params, "meso4", "demo", out / "model.zip", out / "info.json")
        n, status = info["n_train_crops"] + info["n_val_crops"], info["status"]
    else:
        ev = protocol.evaluate_frame(params, out / "model.zip", "demo", out / "s.parquet", out / "e.json", out / "r.csv")
        n, status = ev.get("n_scored", ev.get("n_videos")), ev["status"]
    peak = _status_mib("VmHWM")
    print(json.dumps({"baseline_mib": round(base, 1), "peak_mib": round(peak, 1), "growth_mib": round(peak - base, 1),
                      "seconds": round(time.perf_counter() - t0, 1), "n": n, "status": status}))


def run_frames(a) -> None:
    import hashlib

    per = a.crops_per_video
    print(f"\nframe detectors: meso4 (1 epoch, input 64) on 256 px crops, {per} per video; growth = VmHWM - RSS after imports")
    print(f"{'videos':>6} {'crops MiB':>9} {'phase':>5} {'in memory MiB':>13} {'from disk MiB':>13}"
          f" {'s (mem/disk)':>12}  same model")
    for n in map(int, a.videos.split(",")):
        root = make_crop_dataset(Path(a.work) / f"crops_{n}x{per}", n, per)
        mib = n * per * 256 * 256 * 3 / 2**20
        for phase in ("train", "eval"):
            res = {}
            for mode in ("memory", "disk"):
                r = subprocess.run([sys.executable, __file__, "--child-frames", str(root), phase, mode],
                                   capture_output=True, text=True)
                res[mode] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else \
                    {"growth_mib": "failed", "seconds": "-", "err": r.stderr.strip().splitlines()[-1:]}
            same = ""
            if phase == "train":
                h = [hashlib.sha256((root / m / "model.zip").read_bytes()).hexdigest() if (root / m / "model.zip").exists()
                     else m for m in ("memory", "disk")]
                same = "yes" if h[0] == h[1] else "NO"
            else:
                same = "yes" if (root / "memory" / "s.parquet").read_bytes() == (root / "disk" / "s.parquet").read_bytes() \
                    else "NO (scores differ)"
            print(f"{n:>6} {mib:>9.0f} {phase:>5} {res['memory']['growth_mib']:>13} {res['disk']['growth_mib']:>13}"
                  f" {str(res['memory']['seconds']) + '/' + str(res['disk']['seconds']):>12}  {same}")
            for m in res.values():
                if "err" in m:
                    print("   failed:", m["err"])


# ---------------------------------------------------------------------- EAR attack

def make_ear_clip(path: Path, n: int, width: int = 640, height: int = 360):
    """A clip of a textured face-sized patch drifting across, and 478 landmarks on it per frame."""
    import numpy as np

    lm_path = path.with_suffix(".npy")
    if not path.exists() or not lm_path.exists():
        from skimage import data as skdata

        from blinkbench.video.codec import write_video

        face = skdata.astronaut()[:300, 100:400]
        yy, xx = np.mgrid[0:22, 0:22]
        grid = np.stack([xx.ravel(), yy.ravel()], 1)[:478].astype(np.float64) * 7
        lms = []

        def frames():
            for i in range(n):
                dx = int(40 * np.sin(i / 15))
                img = np.full((height, width, 3), 90, np.uint8)
                img[30:330, 170 + dx:470 + dx] = face
                pts = grid + [245 + dx, 105]
                pts[33], pts[263] = [270 + dx, 160], [370 + dx, 162]
                lms.append(np.concatenate([pts, np.zeros((478, 1))], 1))
                yield img

        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames(), fps=25)
        np.save(lm_path, np.array(lms, np.float32))
    return path, lm_path


def child_ear(video: str, landmarks: str, mode: str) -> None:
    import time

    import numpy as np
    import torch

    from blinkbench.attacks.blink import ear_attack as ea

    torch.set_num_threads(1)
    lms = np.load(landmarks).astype(np.float64)
    n = len(lms)
    t = np.arange(n) / 25.0
    p = ea.EarAttackParams(steps=5, frames_per_step=8)
    ea._surrogate(p.surrogate)
    base = _status_mib("VmRSS")
    t0 = time.perf_counter()
    geo = ea.ClipGeometry.build(video, lms, t, np.ones(n, bool), p.roi_scale, p.delta_size, p.eot_pad,
                                context="memory" if mode == "memory" else "file")
    clean = ea._clean_cache(geo, ea._surrogate(p.surrogate))
    target = ea.Target(clean * 0.5, np.full(n, float(np.nanmean(clean))), np.zeros(n), [])
    pert = ea.Perturbation("shared", n, t, p.delta_size)
    torch.manual_seed(0)
    ea.optimise(geo, target, pert, p, "inject")
    final = ea.adversarial_port_ear(ea._surrogate(p.surrogate), geo, pert)
    peak = _status_mib("VmHWM")
    digest = __import__("hashlib").sha256(pert.params.numpy().tobytes() + final.tobytes()).hexdigest()[:12]
    print(json.dumps({"baseline_mib": round(base, 1), "peak_mib": round(peak, 1), "growth_mib": round(peak - base, 1),
                      "seconds": round(time.perf_counter() - t0, 1), "digest": digest}))


def run_ear(a) -> None:
    print("\nEAR attack (640x360): geometry + clean port EAR + 5 steps + final port EAR; growth = VmHWM - RSS after imports")
    print(f"{'frames':>6} {'context MiB':>11} {'in memory MiB':>13} {'file MiB':>9} {'s (mem/file)':>12}  same result")
    for n in map(int, a.ear_frames.split(",")):
        video, lms = make_ear_clip(Path(a.work) / f"ear_{n}.mp4", n)
        res = {}
        for mode in ("memory", "file"):
            r = subprocess.run([sys.executable, __file__, "--child-ear", str(video), str(lms), mode],
                               capture_output=True, text=True)
            res[mode] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else \
                {"growth_mib": "failed", "seconds": "-", "digest": r.stderr.strip().splitlines()[-1:]}
        same = "yes" if res["memory"]["digest"] == res["file"]["digest"] else f"NO {res['memory']['digest']} {res['file']['digest']}"
        ctx = n * 3 * 208 * 208 * 2 / 2**20
        print(f"{n:>6} {ctx:>11.0f} {res['memory']['growth_mib']:>13} {res['file']['growth_mib']:>9}"
              f" {str(res['memory']['seconds']) + '/' + str(res['file']['seconds']):>12}  {same}")


# ---------------------------------------------------------------------- faces step

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
    ap.add_argument("--parts", default="faces,frames,ear")
    ap.add_argument("--videos", default="24,96", help="frame detectors: dataset sizes (videos)")
    ap.add_argument("--crops-per-video", type=int, default=16)
    ap.add_argument("--ear-frames", default="100,400", help="EAR attack: clip lengths (frames)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-frames", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--child-ear", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child, a.slow_detector_ms)
        return 0
    if a.child_frames:
        child_frames(*a.child_frames)
        return 0
    if a.child_ear:
        child_ear(*a.child_ear)
        return 0
    import os

    print("load average:", " ".join(f"{x:.1f}" for x in os.getloadavg()), f"({os.cpu_count()} cores)")
    parts = a.parts.split(",")
    if "frames" in parts:
        run_frames(a)
    if "ear" in parts:
        run_ear(a)
    if "faces" not in parts:
        return 0
    print(f"\nfaces step\n{'size':>10} {'frames':>6} {'baseline MiB':>12} {'peak MiB':>9} {'growth MiB':>10}  status")
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
