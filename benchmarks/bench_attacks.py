#!/usr/bin/env python
"""Attack throughput on CPU (a script, not a test): crops/s per attack and model, and
frames/s of whole adversarial videos.

    OMP_NUM_THREADS=1 python benchmarks/bench_attacks.py [--threads 1] [--batch 8] [--crop 240]
        [--models tiny meso4 resnet50] [--attacks fgsm pgd ...] [--frames 40] [--skip-video]

Part 1, crops: every attack with its DEFAULT parameters (``attacks.defaults``) at eps 4
(the default) on one batch of ``--batch`` face crops of ``--crop`` px (FF++ 720p face
boxes are ~155 px; with the crops' margin 0.3 that is ~250 px): the ``faces`` step's crops
of the clip below, resized, or uniform noise without ``../shared``. Per model:

- ``tiny``: a 2-conv CNN resizing to 32 px (the tests' architecture, untrained);
- ``meso4``: MesoNet at its 256 px input, with the authors' ``Meso4_DF.h5`` weights when
  ``../shared/models`` has them, else untrained (``epochs=0``);
- ``resnet50``: timm ResNet50 (untrained) at ``--resnet-size`` px (default 112).

Attacks only have work to do on crops the model calls fake, so where a model calls most
of the batch real, its logit is negated for the benchmark (``polarity -1`` in the table):
the crops then start as fake for every model. One FGSM run per model warms up
(allocations, oneDNN kernels), then each attack is timed once: PGD, FGSM and FakeRetouch
run a fixed number of steps on any weights, but CW (abort_early) and DeepFool (stops once
every crop is misclassified) may stop earlier, so their figures depend on the model; the
columns ``fake before/after`` (share called fake) say how far each attack went.

Part 2, video: :func:`attack_video` end to end (decode, attack, 8-bit quantisation,
FFV1 write, lossless verification) on the first ``--frames`` frames of the FF++
NeuralTextures clip ``004_982.mp4`` (a lossless cut; the face track made by
``steps.faces_one``), with MesoNet, margin 0.3: first eps 0 (decode, two forward passes
per crop, FFV1 write and verification: the cost around any attack), then every attack at
defaults, then PGD under four batching settings (batch 8 or 1, size_step 16 or 1),
repeated ``--batching-repeats`` times interleaved; the
model's polarity is flipped as in part 1 if it calls the clip's crops real. Needs
``../shared``; skipped with a message without it.

Part 3 (``--before-after N``): PGD on MesoNet by three code paths, alternated N times in
one process (same load for all): before issue 14 (foolbox on the untouched model), after its
first speed-up (foolbox inside ``Attack.__call__``: frozen, channels-last weights) and the
current one (PGD's own loop through ``nets.gradient_view``), with wall and CPU time and how
far the perturbations are apart (largest difference, share of values that differ, logits,
success flags). ``--rounding N`` compares both with a float64 run of PGD for N seeds (how
far float32 rounding alone moves PGD's result).

Threads are pinned (default 1; the machine is shared): figures vary by +-20-30 % between
runs on a loaded VM.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"
CLIP = SHARED / "samples/ffpp/manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4"
MESO_H5 = SHARED / "models/Meso4_DF.h5"


def tiny_net():
    import torch.nn.functional as F
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1), nn.Linear(16, 1)

        def forward(self, x):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
            x = F.max_pool2d(F.relu(self.c1(x * 2 - 1)), 2)
            return self.fc(F.relu(self.c2(x)).mean((2, 3))).squeeze(1)

    return Tiny().eval()


def build_model(name: str, resnet_size: int):
    """(network, description) for a model name of this benchmark."""
    from blinkbench.detectors.frame import CropSet, create, get

    if name == "tiny":
        return tiny_net(), "2-conv CNN, 32 px, untrained"
    if name == "meso4":
        if MESO_H5.is_file():
            return get("meso4").pretrained(str(MESO_H5)).network(), "MesoNet 256 px, Meso4_DF.h5"
        return create("meso4", epochs=0).fit(CropSet.empty()).network(), "MesoNet 256 px, untrained"
    if name == "resnet50":
        det = create("resnet50", epochs=0, input_size=resnet_size).fit(CropSet.empty())
        return det.network(), f"ResNet50 {resnet_size} px, untrained"
    raise ValueError(name)


def negated(net):
    """``-net(x)``: a model's polarity flipped so that the benchmark crops start as fake."""
    from torch import nn

    class Negated(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return -self.inner(x)

    return Negated(net).eval()


def bench_crops(models: list[str], attacks: list[str], batch: int, crop: int, resnet_size: int,
                crops: "np.ndarray | None") -> None:
    import torch
    import torch.nn.functional as F

    from blinkbench.attacks.frame import create

    torch.manual_seed(0)
    if crops is not None and len(crops):
        x = torch.from_numpy(crops[np.linspace(0, len(crops) - 1, batch).round().astype(int)])
        x = F.interpolate(x.permute(0, 3, 1, 2).float() / 255, size=(crop, crop), mode="bilinear",
                          align_corners=False, antialias=True).clamp(0, 1)
        source = "face crops of " + CLIP.name
    else:
        x, source = torch.rand(batch, 3, crop, crop), "uniform noise"
    print(f"\n== crops: batch {batch} x {crop}x{crop} px ({source}), default parameters, eps 4/255")
    print(f"{'model':9s} {'attack':12s} {'s/batch':>8s} {'crops/s':>8s} {'cpu s':>6s} {'fake before':>12s}"
          f" {'fake after':>11s} {'polarity':>8s}  model")
    for m in models:
        net, desc = build_model(m, resnet_size)
        with torch.no_grad():
            polarity = 1 if float((net(x) > 0).float().mean()) >= 0.5 else -1
        net = net if polarity == 1 else negated(net)
        create("fgsm")(net, x[:2])                       # warm-up
        with torch.no_grad():
            before = float((net(x) > 0).float().mean())
        for a in attacks:
            t, c = time.perf_counter(), time.process_time()
            adv = create(a)(net, x, seed=0)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            with torch.no_grad():
                after = float((net(adv) > 0).float().mean())
            print(f"{m:9s} {a:12s} {dt:8.2f} {batch / dt:8.2f} {dc:6.2f} {before:12.2f} {after:11.2f} {polarity:8d}"
                  f"  {desc}", flush=True)


def reference_pgd(net, x, seed: int = 0):
    """PGD as it ran before the speed-ups of ``Attack.__call__`` (frozen weights,
    channels-last): foolbox's LinfPGD with the default parameters, called directly on the
    untouched model, seeded and projected as the attack does."""
    import foolbox as fb
    import torch

    from blinkbench.attacks.frame import base, defaults

    p = defaults("pgd")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fmodel = fb.PyTorchModel(base.TwoClassLogits(net).eval(), bounds=(0, 1))
        crit = fb.criteria.TargetedMisclassification(torch.zeros(len(x), dtype=torch.long))
        atk = fb.attacks.LinfPGD(rel_stepsize=p["rel_step_size"], steps=p["steps"], random_start=p["random_start"])
        _, adv, _ = atk(fmodel, x, crit, epsilons=p["eps"] / 255.0)
    return base.project(adv.detach(), x, p["eps"] / 255.0)


def foolbox_pgd():
    """PGD as issue 14's first speed-up left it (the path before the native loop and
    :func:`~blinkbench.detectors.frame.nets.gradient_view`): foolbox's LinfPGD inside
    ``Attack.__call__`` (frozen, channels-last weights)."""
    from blinkbench.attacks.frame import PGD, FoolboxAttack

    class FoolboxPGD(PGD):
        _run = FoolboxAttack._run

    return FoolboxPGD()


def compare(adv, ref, net) -> str:
    """How far two PGD results are apart: largest difference (in 0-255 levels), share of
    values that differ, largest logit difference and whether the success flags (logit < 0:
    called real) agree."""
    import torch

    d = (adv - ref).abs()
    with torch.no_grad():
        za, zr = net(adv), net(ref)
    return (f"max |diff| {float(d.max()) * 255:.1f}/255, {float((d > 0).float().mean()) * 100:.2f} % of values differ, "
            f"max |logit diff| {float((za - zr).abs().max()):.3f}, same success flags: {bool(((za < 0) == (zr < 0)).all())}")


def _meso4_batch(crops, batch: int, crop: int):
    """``batch`` face crops spread over ``crops`` resized to ``crop`` px in [0, 1] (random
    images without crops), and the Meso-4 network the PGD comparisons attack."""
    import torch
    import torch.nn.functional as F

    if crops is not None and len(crops):
        x = torch.from_numpy(crops[np.linspace(0, len(crops) - 1, batch).round().astype(int)])
        x = F.interpolate(x.permute(0, 3, 1, 2).float() / 255, size=(crop, crop), mode="bilinear",
                          align_corners=False, antialias=True).clamp(0, 1)
    else:
        x = torch.rand(batch, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    net, desc = build_model("meso4", 0)
    return x, net, desc


def bench_before_after(batch: int, crop: int, crops: "np.ndarray | None", repeats: int) -> None:
    """PGD on Meso-4 by three code paths, alternated in one process so all see the same
    load: ``before`` (:func:`reference_pgd`, foolbox on the untouched model), ``foolbox``
    (:func:`foolbox_pgd`, the path before the native loop) and ``after`` (the current
    ``create("pgd")``); wall and CPU seconds per batch, medians, ratios, and how far the
    perturbations are apart."""

    from blinkbench.attacks.frame import create

    x, net, desc = _meso4_batch(crops, batch, crop)
    paths = {"before": lambda: reference_pgd(net, x), "foolbox": lambda: foolbox_pgd()(net, x, seed=0),
             "after": lambda: create("pgd")(net, x, seed=0)}
    create("fgsm")(net, x[:2])                       # warm-up
    reference_pgd(net, x[:2])
    print(f"\n== PGD before/after: meso4 ({desc}), batch {batch} x {crop} px, {repeats} alternated repeats, "
          f"load average {os.getloadavg()[0]:.1f}")
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in paths}
    advs = {}
    for r in range(repeats):
        for label, fn in paths.items():
            t, c = time.perf_counter(), time.process_time()
            advs[label] = fn()
            runs[label].append((time.perf_counter() - t, time.process_time() - c))
            w, cpu = runs[label][-1]
            print(f"  #{r + 1} {label:7s} wall {w:6.2f} s ({batch / w:6.2f} crops/s)  cpu {cpu:6.2f} s "
                  f"({batch / cpu:6.2f} crops/s)", flush=True)
    med = {k: np.median(np.array(v), axis=0) for k, v in runs.items()}
    for k in paths:
        print(f"  median {k:7s} wall {batch / med[k][0]:6.2f} crops/s, cpu {batch / med[k][1]:6.2f} crops/s")
    for k in ("before", "foolbox"):
        print(f"  after vs {k:7s}: speed-up wall {med[k][0] / med['after'][0]:.2f}x, cpu {med[k][1] / med['after'][1]:.2f}x")
    print(f"  foolbox vs before: {compare(advs['foolbox'], advs['before'], net)}")
    print(f"  after vs before:   {compare(advs['after'], advs['before'], net)}")
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")


def float64_pgd(net, x, seed: int = 0):
    """PGD with the default parameters in float64 (network and crops cast; the random start is
    the float32 draw of the seeded attack, cast): how PGD would go in near-exact arithmetic."""
    import copy

    import torch
    import torch.nn.functional as F

    from blinkbench.attacks.frame import TwoClassLogits, defaults

    p = defaults("pgd")
    eps = p["eps"] / 255.0
    step = p["rel_step_size"] * eps
    net64 = TwoClassLogits(copy.deepcopy(net).double().eval())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        r = torch.rand(x.shape, dtype=x.dtype).double()
    x0 = x.double()
    adv = torch.clamp(x0 + (r * (eps - -eps) + -eps), 0.0, 1.0)
    for _ in range(p["steps"]):
        xi = adv.detach().requires_grad_()
        loss = F.cross_entropy(net64(xi), torch.zeros(len(x), dtype=torch.long), reduction="none").sum()
        (g,) = torch.autograd.grad(loss, xi)
        adv = torch.clamp(x0 + torch.clamp(adv + -1.0 * (step * g.sign()) - x0, -eps, eps), 0.0, 1.0)
    return x0 + torch.clamp(adv - x0, -eps, eps)


def bench_rounding(batch: int, crop: int, crops: "np.ndarray | None", seeds: int) -> None:
    """How far PGD's float32 results are from a float64 run, per seed: the reference path
    (:func:`reference_pgd`) and the current one. PGD follows gradient signs, so one flipped
    near-zero component moves a pixel by two steps and later gradients see it: this is
    what "equal up to rounding order" can mean for PGD."""

    from blinkbench.attacks.frame import create

    x, net, desc = _meso4_batch(crops, batch, crop)
    print(f"\n== PGD rounding: meso4 ({desc}), batch {batch} x {crop} px; share of values differing (> 0.5/255)")
    for seed in range(seeds):
        ref, new, f64 = reference_pgd(net, x, seed), create("pgd")(net, x, seed=seed), float64_pgd(net, x, seed)

        def share(a, b):
            return float(((a.double() - b.double()).abs() > 0.5 / 255).float().mean()) * 100

        print(f"  seed {seed}: reference vs float64 {share(ref, f64):5.2f} %, current vs float64 {share(new, f64):5.2f} %,"
              f" current vs reference {share(new, ref):5.2f} %; {compare(new, ref, net)}", flush=True)


def cut_clip(src: Path, n: int, out: Path) -> None:
    from blinkbench.video.codec import FrameReader, probe, write_video

    def frames():
        for fr in FrameReader(src):
            if fr.index >= n:
                break
            yield fr.rgb()

    write_video(out, frames(), probe(src).fps, codec="ffv1", pix_fmt="bgr0")


def _at_least_one(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def prepare_clip(d: Path, n_frames: int) -> dict:
    """The lossless cut of the clip, its face track and the faces step's crops, in ``d``."""
    from blinkbench.core import config
    from blinkbench.spine import steps

    cut_clip(CLIP, n_frames, d / "clip.mkv")
    return steps.faces_one(d / "clip.mkv", d / "track.parquet", d / "crops.npz", config.load(ROOT / "params.yaml"))


def bench_video(d: Path, meta: dict, attacks: list[str], n_frames: int, batch: int,
                batching_repeats: int) -> None:
    from blinkbench.attacks.frame import attack_video

    import torch

    net, desc = build_model("meso4", 0)
    crops = np.load(d / "crops.npz")["crops"]
    with torch.no_grad():
        p = torch.sigmoid(net(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)).mean().item()
    if p < 0.5:
        net, desc = negated(net), desc + f", polarity -1 (mean fake probability {p:.3f} on the faces crops)"
    clip = d / "clip.mkv"
    print(f"\n== video: first {n_frames} frames of {CLIP.name} ({meta['status']}, "
          f"{meta.get('face_frames')} face frames), {desc}, margin 0.3, eps 4")
    print(f"{'run':18s} {'batch':>5s} {'step':>4s} {'mean bs':>7s} {'frames/s':>8s} {'attack s/f':>10s} "
          f"{'float ok':>8s} {'success':>7s} {'rescued':>7s} {'p before':>8s} {'p after':>7s} {'linf':>4s} "
          f"{'PSNR':>5s} {'SSIM':>6s}")
    runs = [("eps0 (I/O+2 fwd)", "fgsm", {"eps": 0}, batch, 16)] + [(a, a, {}, batch, 16) for a in attacks]
    for r in range(batching_repeats):              # interleaved, the machine is shared
        runs += [(f"pgd #{r + 1}", "pgd", {}, bs, st) for bs, st in [(batch, 16), (batch, 1), (1, 16), (1, 1)]]
    for label, a, params, bs, step in runs:
        s = attack_video(clip, d / "track.parquet", net, a, params, d / f"{a}.mkv", batch_size=bs, size_step=step,
                         margin=0.3)
        if s["status"] != "ok":
            print(f"{label:18s} status {s['status']}: {s['error']}")
            continue
        print(f"{label:18s} {bs:5d} {step:4d} {s['mean_batch_size']:7.2f} {s['n_frames'] / s['wall_s']:8.2f} "
              f"{s['time_per_frame_s']:10.3f} {s['success_rate_float']:8.2f} {s['success_rate']:7.2f} "
              f"{s['n_rescued']:7d} {s['p_fake_before_mean']:8.3f} {s['p_fake_after_mean']:7.3f} {s['linf_max']:4d} "
              f"{s['psnr_mean'] or 0:5.1f} {s['ssim_mean']:6.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from blinkbench.attacks.frame import available

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "meso4", "resnet50"])
    ap.add_argument("--attacks", nargs="+", default=available())
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=240)
    ap.add_argument("--resnet-size", type=int, default=112)
    ap.add_argument("--frames", type=_at_least_one, default=40,
                    help="frames of the clip to cut and attack (at least 1: an empty clip has no crops)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batching-repeats", type=int, default=2, help="interleaved repeats of the PGD batching runs")
    ap.add_argument("--skip-crops", action="store_true")
    ap.add_argument("--skip-video", action="store_true")
    ap.add_argument("--before-after", type=int, default=0, metavar="N",
                    help="also time PGD on meso4 by the pre-issue-14 path, the foolbox path and the current one, N "
                         "alternated repeats (0: skip)")
    ap.add_argument("--rounding", type=int, default=0, metavar="N",
                    help="also compare PGD on meso4 (reference and current path) with a float64 run, seeds 0..N-1 "
                         "(0: skip)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s) (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench_attacks_") as tmp:
        d = Path(tmp)
        meta = prepare_clip(d, args.frames) if CLIP.is_file() else None
        crops = np.load(d / "crops.npz")["crops"] if meta else None
        if not args.skip_crops:
            bench_crops(args.models, args.attacks, args.batch, args.crop, args.resnet_size, crops)
        if args.before_after:
            bench_before_after(args.batch, args.crop, crops, args.before_after)
        if args.rounding:
            bench_rounding(args.batch, args.crop, crops, args.rounding)
        if args.skip_video:
            pass
        elif meta is None:
            print(f"\n== video: skipped ({CLIP} not found: needs ../shared beside the project root)")
        else:
            bench_video(d, meta, args.attacks, args.frames, args.batch, args.batching_repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
