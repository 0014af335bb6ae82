#!/usr/bin/env python
"""Speed of the blink-path attacks on CPU (a script, not a test; always exits 0).

    python benchmarks/bench_blink_attacks.py [--shared PATH] [--seconds S] [--video NAME] [--skip-video]

One thread everywhere (OMP/MKL = 1, ``torch.set_num_threads(1)``): the machine is shared.

Part 1, Landmark Breaker: attack iterations per second per crop (one iteration = one
forward and backward pass of every surrogate on the crop, plus the update), at batch 1 and
8, for ``mifgsm`` (the attention model, the paper's defaults), ``mdifgsm`` (input diversity
adds a resize per iteration) and ``mdifgsm_ens`` (two models per iteration). Real 192x192
face crops from ``../shared`` when present, otherwise seeded noise (the cost does not depend
on the content). Each cell: one warm-up attack, then attacks for at least ``--seconds``;
the median rate.

Part 2, EAR attack: :func:`run_ear_attack` (suppression, default parameters: shared
perturbation, 100 steps of 8 frames, all four compression conditions) on a real clip
(``selfie_blinks.mp4``, 14 s, 480x854 by default), with its phase timings per second of
video: the clean pipeline run, the precomputation (decoding, ROI crops, the port's clean
EAR), the optimisation (also as steps/s and frames/s), writing the lossless video, and each
scoring condition (compression + the pipeline's re-extraction). The optimisation cost does
not grow with the video's length (a fixed number of steps of a fixed batch); the other
phases do.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import parser, rate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _crops(shared: Path | None, n: int) -> tuple[np.ndarray, str]:
    """n uint8 192x192 face crops from MediaPipe's ROI on the selfie clip, or seeded noise."""
    if shared is None or not (shared / "samples" / "blink" / "selfie_blinks.mp4").is_file():
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 192, 192, 3), dtype=np.uint8), "seeded noise"
    from blinkbench.attacks.blink import ear_attack as ea
    from blinkbench.video.lossless import read_frames, write_lossless
    from blinkbench.spine.landmarks import read_landmarks
    from blinkbench.mesh_torch import crop_affine

    with tempfile.TemporaryDirectory(prefix="bench_blink_attacks_") as tmp:
        frames = read_frames(shared / "samples" / "blink" / "selfie_blinks.mp4", 4 * n)
        clip = Path(tmp) / "clip.mkv"
        write_lossless(clip, frames, 24.0)
        run = ea.run_pipeline(clip, Path(tmp) / "run", ea.pipeline_params(None))
        lms = np.concatenate([x[3] for x in read_landmarks(run["paths"]["landmarks"])])
    idx = list(range(0, 4 * n, 4))
    aff = ea.roi_affine(*ea.face_rois(lms[idx]), 192)
    out = []
    for k, i in enumerate(idx):
        x = torch.from_numpy(frames[i]).permute(2, 0, 1)[None].float() / 255
        out.append(crop_affine(x, torch.as_tensor(aff[k : k + 1], dtype=torch.float32), 192))
    crops = (torch.cat(out).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return crops, "real crops (selfie_blinks.mp4, MediaPipe ROI)"



def landmark_breaker(crops: np.ndarray, source: str, seconds: float) -> None:
    from blinkbench.attacks.blink import make_attack

    print(f"\nLandmark Breaker, attack iterations/s per crop (T=20 per attack), 1 thread, {source}")
    print(f"{'attack':<14}{'surrogates':<22}{'batch 1':>10}{'batch 8':>10}{'s per crop (T=20, b8)':>24}")
    for name in ("mifgsm", "mdifgsm", "mdifgsm_ens"):
        atk = make_attack(name)
        row = {}
        for b in (1, 8):
            x = crops[:b]
            row[b] = rate(lambda: atk(x), atk.steps * b, seconds, min_passes=2)
        print(f"{name:<14}{'+'.join(atk.surrogates):<22}{row[1]:>10.1f}{row[8]:>10.1f}{atk.steps / row[8]:>24.2f}")


def ear_attack(shared: Path, video: str) -> None:
    from blinkbench.attacks.blink import run_ear_attack

    path = shared / "samples" / "blink" / video
    with tempfile.TemporaryDirectory(prefix="bench_ear_attack_") as tmp:
        t0 = time.perf_counter()
        res = run_ear_attack(path, tmp, "suppress", {})
        wall = time.perf_counter() - t0
    if res.get("status") != "ok":
        print(f"EAR attack on {video}: {res.get('status')} {res.get('error')}")
        return
    dur = res["video_duration_s"]
    opt = res["optimisation"]
    steps = int(res["params"]["steps"])
    print(f"\nEAR attack (suppress, defaults: {res['params']['perturbation']}, {steps} steps x "
          f"{opt['frames_per_step']} frames, eps {res['params']['eps']:g}) on {video}: {res['n_frames']} frames, "
          f"{dur:.1f} s of video; 1 thread; wall {wall:.1f} s = {wall / dur:.2f} s per video second")
    print(f"  optimisation: {steps / opt['seconds']:.2f} steps/s, "
          f"{steps * opt['frames_per_step'] / opt['seconds']:.1f} frames/s (forward+backward incl. EOT crops)")
    print(f"{'phase':<28}{'seconds':>10}{'s per video s':>16}")
    for k, v in res["timing"].items():
        print(f"{k[:-2]:<28}{v:>10.2f}{v / dur:>16.3f}")
    cond = res["conditions"]
    print("  outcome (MediaPipe re-extraction): blinks " + ", ".join(
        f"{c} {m.get('n_blinks')}" for c, m in cond.items()) + "; EAR/open in clean blinks " + ", ".join(
        f"{c} {m['focus_mean_ratio']:.2f}" for c, m in cond.items() if m.get("focus_mean_ratio") is not None))
    print(f"  cost: L-inf {res['perceptual']['linf']}, PSNR {res['perceptual']['psnr_mean']:.1f} dB, "
          f"SSIM face {res['perceptual']['ssim_face_mean']:.3f}")


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--seconds", type=float, default=6.0, help="minimum timing per Landmark Breaker cell")
    ap.add_argument("--video", default="selfie_blinks.mp4", help="clip under samples/blink for part 2")
    ap.add_argument("--skip-video", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    shared = args.shared if (args.shared / "samples" / "blink").is_dir() else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    crops, source = _crops(shared, 8)
    landmark_breaker(crops, source, args.seconds)
    if args.skip_video:
        return 0
    if shared is None:
        print(f"\n{args.shared}/samples/blink not found: the EAR attack part needs a real clip.")
        return 0
    ear_attack(shared, args.video)
    return 0


if __name__ == "__main__":
    sys.exit(main())
