#!/usr/bin/env python
"""The ``mediapipe_tflite`` landmark backend against MediaPipe's graph (a script, not a test).

    python benchmarks/bench_landmarks_tflite.py [--shared PATH] [--repeats N] [--skip-snakemake]
                                                [--contention N]

Answers issue 14, acceptance points 1 and 2 (every figure printed; ratios are measured back
to back, clip by clip, so a loaded machine slows both sides of a ratio alike):

1. Speed and faithfulness, single job, on the 12 clips of ``samples/ffpp_c40`` and the 4
   ``samples/ffpp`` c23 clips:
   - ``graph alone``: the ``mediapipe`` backend (``mp.solutions`` Face Mesh graph) on the
     very crops the pipeline feeds it, decoded into memory before timing (the issue's
     reference: ``bench_ear_extraction.py``'s "mesh only").
   - ``step``: ``steps.landmarks_one`` + ``steps.ear_one`` with ``landmarks.backend:
     mediapipe_tflite`` (decode thread, crop, batched TFLite inference, parquet, EAR).
     Target: step frames/s >= 1.5x graph alone.
   - eye landmarks: per frame with a face in both, the distance in frame pixels between the
     two backends' points, over the 12 EAR points and over the 32 eyelid points (first 16
     contour points of each eye); median over frames x points. Target: <= 1 px.
   - blinks: the 4 clips of ``samples/blink`` through faces -> landmarks -> EAR -> blinks
     with each backend, events matched to ``annotations.csv`` within 2 frames. Target: every
     annotated event found with ``mediapipe_tflite`` and no detection unmatched that the
     graph does not also have (no new false event).
2. CPU per frame (process CPU time, all threads): the step, decode+crop alone (the
   FrameReader decode thread + StableCrop + crop to RGB, what the step does besides
   inference) and inference alone (the backend on pre-decoded crops, batched). Target:
   step <= 1.1 x (decode+crop + inference). Then ``snakemake --cores 2`` (and ``--cores 1``)
   over the 12 ffpp_c40 clips' landmarks in a throw-away project copy with the face tracks
   made beforehand: aggregate frames/s against what 2 cores allow at the step's CPU cost,
   with each job's start-up (a fresh ``blinkbench landmarks`` process) counted in that cost.
   Target: >= 0.9.

``--contention N`` (alone, 2c): why the step's CPU per frame exceeds the sum of its parts.
On the first N ffpp_c40 clips, the CPU of inference alone and of decode+crop alone, each
also beside a child process on the other core that runs a Python loop (busy, no memory
traffic) and beside one that runs the other part (as in the step). If the parts cost more
beside each other and not beside the loop, the step's extra CPU is the cores sharing caches
and memory bandwidth, not the step's own glue.

Face tracks are made once per clip with ``steps.faces_one`` (untimed) and cached under
``/tmp/blinkbench_bench/tflite``. Each timed (clip, mode) cell: one warm-up, then
``--repeats`` runs, median. The load average is printed at the start and the end: absolute
figures on a shared machine need a rerun on an idle one; the ratios are the answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from _common import parser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(tempfile.gettempdir()) / "blinkbench_bench" / "tflite"
BLINK_CLIPS = ["selfie_blinks.mp4", "news_presenter.mp4", "talking_crop_a.mp4", "talking_crop_b.mp4"]
SPEEDUP_TARGET, EYE_PX_TARGET, CPU_TARGET, SMK_TARGET = 1.5, 1.0, 1.1, 0.9


def _params(backend: str = "mediapipe") -> dict:
    from blinkbench.core import config

    p = config.load(ROOT / "params.yaml")
    p["landmarks"]["backend"] = backend
    return p


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def clip_lists(shared: Path) -> dict[str, list[Path]]:
    return {"ffpp_c40": sorted((shared / "samples" / "ffpp_c40").rglob("*.mp4")),
            "ffpp_c23": sorted((shared / "samples" / "ffpp").rglob("*.mp4"))}


def track_of(clip: Path, params: dict) -> Path:
    from blinkbench.spine import steps

    key = "_".join(clip.parts[-4:]).replace(".mp4", "")
    d = CACHE / key
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "track.parquet").exists():
        steps.faces_one(clip, d / "track.parquet", d / "crops.npz", params)
    return d / "track.parquet"


def _timed(fn) -> tuple[float, float, object]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def _median_run(fn, repeats: int) -> tuple[float, float, object]:
    fn()  # warm-up
    runs = [_timed(fn) for _ in range(repeats)]
    k = int(np.argsort([r[0] for r in runs])[len(runs) // 2])
    return runs[k]


# ----------------------------------------------------------------------------- modes

def landmarks_step(clip: Path, track: Path, work: Path, params: dict) -> tuple[int, Path]:
    from blinkbench.spine import steps

    lm, ear = work / "landmarks.parquet", work / "ear.parquet"
    meta = steps.landmarks_one(clip, track, lm, params)
    emeta = steps.ear_one(lm, ear)
    if meta.get("status") != "ok" or emeta.get("status") != "ok":
        raise RuntimeError(f"step failed on {clip}: {meta.get('error') or emeta.get('error')}")
    return int(meta["n_frames"]), lm


def points_of(lm: Path) -> np.ndarray:
    from blinkbench.spine.landmarks import read_landmarks

    return np.concatenate([xyz for *_, xyz in read_landmarks(lm)])


def eye_distances(a: np.ndarray, b: np.ndarray) -> dict:
    from blinkbench.spine.ear import EYE_INDICES
    from blinkbench.spine.landmarks.tflite_mesh import LEFT_EYE_INDICES, RIGHT_EYE_INDICES

    ear_pts = list(EYE_INDICES["mediapipe"]["left"]) + list(EYE_INDICES["mediapipe"]["right"])
    lid_pts = list(LEFT_EYE_INDICES[:16]) + list(RIGHT_EYE_INDICES[:16])
    both = ~np.isnan(a[:, 0, 0]) & ~np.isnan(b[:, 0, 0])
    out = {"frames": int(both.sum()), "only_graph": int((~np.isnan(a[:, 0, 0]) & ~both).sum()),
           "only_tflite": int((~np.isnan(b[:, 0, 0]) & ~both).sum())}
    for name, idx in (("ear", ear_pts), ("lids", lid_pts)):
        d = np.linalg.norm(a[both][:, idx, :2] - b[both][:, idx, :2], axis=-1)
        out[name] = d.reshape(-1)
    return out


def crops_for(clip: Path, track: Path, params: dict) -> tuple[list, list]:
    """The crops the step feeds its backend, and their origins, decoded into memory."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_ear_extraction import decode_crops

    class _Scale:  # decode_crops only reads crop_scale_hint
        crop_scale_hint = None

    return decode_crops(str(clip), track, _Scale(), params["landmarks"]["crop_scale"])


def graph_alone(crops: list, params: dict) -> int:
    from blinkbench.spine.landmarks import make_backend

    with make_backend(params["landmarks"]) as backend:
        backend.reset()
        for rgb in crops:
            if rgb is not None:
                backend.process(rgb)
    return len(crops)


def inference_alone(backend, inputs: list) -> int:
    backend.reset()
    backend.process_batch(inputs)
    return len(inputs)


def decode_crop_alone(clip: Path, track: Path, params: dict) -> int:
    """What the step does besides inference: its FrameReader (decode thread, same threads
    setting) with its CropPrepare (StableCrop, crop to RGB, resize to 192)."""
    import importlib

    ex = importlib.import_module("blinkbench.spine.landmarks.extract")
    from blinkbench.video.codec import FrameReader

    from blinkbench.spine.landmarks import make_backend

    tr = pd.read_parquet(track)
    with make_backend(params["landmarks"]) as b:
        size = b.input_size if b.batch_size > 1 else None
    threads = ex.DECODER_THREADS if ex.DECODER_THREADS is not None else ex.decoder_threads(str(clip))
    n = 0
    for _ in FrameReader(str(clip), queue_size=ex.QUEUE, threads=threads, worker=ex.WORKER,
                         prepare=ex.CropPrepare(tr, params["landmarks"]["crop_scale"], size)):
        n += 1
    return n


# ----------------------------------------------------------------------------- part 1 + CPU

def speed_and_fidelity(groups: dict[str, list[Path]], repeats: int) -> dict:
    from blinkbench.spine.landmarks import make_backend

    pg, pt = _params("mediapipe"), _params("mediapipe_tflite")
    cfg = pt["landmarks"]["tflite"]
    print(f"\n== 1. single job: step (mediapipe_tflite, batch {cfg['batch_size']}, {cfg['num_threads']} thread) "
          f"vs MediaPipe graph alone; eye landmarks vs the graph's (frame px)  [{_load()}]")
    print(f"{'clip':<34}{'frames':>7}{'graph fps':>10}{'step fps':>10}{'ratio':>7}{'EAR-pt med':>11}"
          f"{'lid med':>9}{'p95':>7}{'dec+crop ms':>12}{'infer ms':>9}{'step ms':>9}{'graph ms':>9}  (CPU/frame)")
    summary = {}
    tfl = make_backend(pt["landmarks"])
    for group, clips in groups.items():
        tot = {"n": 0, "graph": 0.0, "step": 0.0, "cpu_step": 0.0, "cpu_dec": 0.0, "cpu_inf": 0.0,
               "cpu_graph": 0.0}
        dists = {"ear": [], "lids": []}
        for clip in clips:
            track = track_of(clip, pg)
            work = Path(tempfile.mkdtemp(prefix="bbtfl_"))
            try:
                if repeats > 0:
                    crops, origins = crops_for(clip, track, pg)
                    g_wall, g_cpu, _ = _median_run(lambda: graph_alone(crops, pg), repeats)
                    s_wall, s_cpu, _ = _median_run(lambda: landmarks_step(clip, track, work / "t", pt), repeats)
                    inputs = [(tfl.prepare(c) if tfl.input_size else c, c.shape[1], c.shape[0], *o)
                              if c is not None else None for c, o in zip(crops, origins)]
                    _, i_cpu, _ = _median_run(lambda: inference_alone(tfl, inputs), repeats)
                    _, d_cpu, _ = _median_run(lambda: decode_crop_alone(clip, track, pt), repeats)
                else:  # --repeats 0: faithfulness only, nothing timed (NaN figures)
                    g_wall = s_wall = g_cpu = s_cpu = i_cpu = d_cpu = float("nan")
                n, lm_t = landmarks_step(clip, track, work / "t", pt)
                _, lm_g = landmarks_step(clip, track, work / "g", pg)
                dd = eye_distances(points_of(lm_g), points_of(lm_t))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for k in dists:
                dists[k].append(dd[k])
            tot["n"] += n
            tot["graph"] += g_wall
            tot["step"] += s_wall
            tot["cpu_step"] += s_cpu
            tot["cpu_dec"] += d_cpu
            tot["cpu_inf"] += i_cpu
            tot["cpu_graph"] += g_cpu
            name = "/".join(clip.parts[-3:])[-33:]
            print(f"{name:<34}{n:>7}{n / g_wall:>10.1f}{n / s_wall:>10.1f}{g_wall / s_wall:>7.2f}"
                  f"{np.median(dd['ear']):>11.3f}{np.median(dd['lids']):>9.3f}{np.percentile(dd['ear'], 95):>7.2f}"
                  f"{d_cpu / n * 1e3:>12.2f}{i_cpu / n * 1e3:>9.2f}{s_cpu / n * 1e3:>9.2f}{g_cpu / n * 1e3:>9.2f}"
                  + (f"  faces only in graph {dd['only_graph']}, only tflite {dd['only_tflite']}"
                     if dd["only_graph"] or dd["only_tflite"] else ""))
        n = tot["n"]
        ear_med = float(np.median(np.concatenate(dists["ear"])))
        lid_med = float(np.median(np.concatenate(dists["lids"])))
        ratio = tot["graph"] / tot["step"]
        cpu_ratio = tot["cpu_step"] / (tot["cpu_dec"] + tot["cpu_inf"])
        summary[group] = dict(ratio=ratio, ear_med=ear_med, lid_med=lid_med, cpu_ratio=cpu_ratio,
                              cpu_step_ms=tot["cpu_step"] / n * 1e3, frames=n)
        print(f"{group + ' overall':<34}{n:>7}{n / tot['graph']:>10.1f}{n / tot['step']:>10.1f}{ratio:>7.2f}"
              f"{ear_med:>11.3f}{lid_med:>9.3f}{'':>7}{tot['cpu_dec'] / n * 1e3:>12.2f}{tot['cpu_inf'] / n * 1e3:>9.2f}"
              f"{tot['cpu_step'] / n * 1e3:>9.2f}{tot['cpu_graph'] / n * 1e3:>9.2f}")
        verdict = lambda ok, x: "not timed" if x != x else ("met" if ok else "NOT met")  # noqa: E731
        print(f"  -> {group}: step = {ratio:.2f}x graph alone (target >= {SPEEDUP_TARGET}: "
              f"{verdict(ratio >= SPEEDUP_TARGET, ratio)}); eye landmarks median {ear_med:.3f} px "
              f"(EAR points), {lid_med:.3f} px (eyelids) (target <= {EYE_PX_TARGET}: "
              f"{'met' if max(ear_med, lid_med) <= EYE_PX_TARGET else 'NOT met'}); CPU/frame step = "
              f"{cpu_ratio:.2f}x (decode+crop + inference) (target <= {CPU_TARGET}: "
              f"{verdict(cpu_ratio <= CPU_TARGET, cpu_ratio)})")
    tfl.close()
    return summary


def _inputs(tfl, crops: list, origins: list) -> list:
    return [(tfl.prepare(c) if tfl.input_size else c, c.shape[1], c.shape[0], *o) if c is not None else None
            for c, o in zip(crops, origins)]


def _background(kind: str, clip: str, track: str, ready, stop) -> None:
    """In a child process: loop one part of the step (``decode``: decode+crop, ``infer``:
    inference on pre-decoded crops) or a Python loop that touches no memory (``spin``) until
    ``stop`` is set."""
    from blinkbench.spine.landmarks import make_backend

    pt = _params("mediapipe_tflite")
    if kind == "infer":
        tfl = make_backend(pt["landmarks"])
        inputs = _inputs(tfl, *crops_for(Path(clip), Path(track), _params("mediapipe")))
    ready.set()
    while not stop.is_set():
        if kind == "decode":
            decode_crop_alone(Path(clip), Path(track), pt)
        elif kind == "infer":
            inference_alone(tfl, inputs)
        else:
            sum(range(100_000))


def _beside(kind: str, clip: Path, track: Path, fn, repeats: int) -> float:
    """CPU seconds of ``fn`` (median run) while a child process runs ``kind`` on the other core."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_background, args=(kind, str(clip), str(track), ready, stop), daemon=True)
    child.start()
    try:
        if not ready.wait(300):
            raise RuntimeError(f"background {kind} did not start")
        time.sleep(1.0)
        return _median_run(fn, repeats)[1]
    finally:
        stop.set()
        child.join(60)


def contention(clips: list[Path], repeats: int) -> None:
    """Why the step costs more CPU per frame than its two parts timed alone: each part
    timed alone, beside a Python loop on the other core (a busy core, no memory traffic),
    and beside the other part (what the step does: decoding on one core, inference on the
    other). If the parts slow down beside each other but not beside the loop, the extra CPU
    is the two cores sharing caches and memory, not the step's own glue."""
    from blinkbench.spine.landmarks import make_backend

    pg, pt = _params("mediapipe"), _params("mediapipe_tflite")
    tfl = make_backend(pt["landmarks"])
    print(f"\n== 2c. contention: CPU ms per frame of each part alone / beside a Python loop / beside the other "
          f"part, on {len(clips)} ffpp_c40 clips  [{_load()}]")
    print(f"{'clip':<34}{'frames':>7}{'infer':>8}{'+loop':>8}{'+dec':>8}{'dec':>8}{'+loop':>8}{'+infer':>8}"
          f"{'step':>8}{'step/alone':>11}{'step/beside':>12}")
    tot, frames = np.zeros(7), 0
    for clip in clips:
        track = track_of(clip, pg)
        inputs = _inputs(tfl, *crops_for(clip, track, pg))
        n = len(inputs)
        work = Path(tempfile.mkdtemp(prefix="bbtfl_"))
        try:
            infer = lambda: inference_alone(tfl, inputs)  # noqa: E731
            dec = lambda: decode_crop_alone(clip, track, pt)  # noqa: E731
            row = [_median_run(infer, repeats)[1], _beside("spin", clip, track, infer, repeats),
                   _beside("decode", clip, track, infer, repeats), _median_run(dec, repeats)[1],
                   _beside("spin", clip, track, dec, repeats), _beside("infer", clip, track, dec, repeats),
                   _median_run(lambda: landmarks_step(clip, track, work / "t", pt), repeats)[1]]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        tot += row
        frames += n
        ms = [c / n * 1e3 for c in row]
        print(f"{'/'.join(clip.parts[-3:])[-33:]:<34}{n:>7}" + "".join(f"{v:>8.2f}" for v in ms)
              + f"{ms[6] / (ms[0] + ms[3]):>11.2f}{ms[6] / (ms[2] + ms[5]):>12.2f}", flush=True)
    ms = tot / max(frames, 1) * 1e3
    print(f"{'overall':<34}{frames:>7}" + "".join(f"{v:>8.2f}" for v in ms)
          + f"{ms[6] / (ms[0] + ms[3]):>11.2f}{ms[6] / (ms[2] + ms[5]):>12.2f}")
    print(f"  -> beside the other part, inference costs {ms[2] / ms[0]:.2f}x and decode+crop {ms[5] / ms[3]:.2f}x "
          f"their CPU alone (beside a Python loop: {ms[1] / ms[0]:.2f}x, {ms[4] / ms[3]:.2f}x); the step costs "
          f"{ms[6] / (ms[0] + ms[3]):.2f}x the parts alone and {ms[6] / (ms[2] + ms[5]):.2f}x the parts beside each other")
    tfl.close()


def blink_events(shared: Path, backend: str) -> dict:
    from blinkbench.spine import blinks, steps

    params = _params(backend)
    ann = pd.read_csv(shared / "samples" / "blink" / "annotations.csv")
    out = {}
    for clip in BLINK_CLIPS:
        path = shared / "samples" / "blink" / clip
        track = track_of(path, params)
        with tempfile.TemporaryDirectory() as w:
            w = Path(w)
            steps.landmarks_one(path, track, w / "l.parquet", params)
            steps.ear_one(w / "l.parquet", w / "e.parquet")
            steps.blinks_one(w / "e.parquet", w / "b.parquet", w / "s.json", params)
            ev = pd.read_parquet(w / "b.parquet")
        truth = ann[ann["video"] == clip]
        m = blinks.match_events(ev, truth, tol_frames=2)
        matched = {p[1] for p in m["pairs"]}
        false = [tuple(r) for k, r in enumerate(ev[["start_frame", "end_frame", "kind"]].itertuples(index=False))
                 if k not in matched]
        out[clip] = {"missed": sorted(set(range(len(truth))) - {p[0] for p in m["pairs"]}), "false": false,
                     "n_truth": len(truth), "n_det": len(ev)}
    return out


def blink_check(shared: Path) -> bool:
    print(f"\n== 1b. blink events vs annotations (+-2 frames), each backend  [{_load()}]")
    g, t = blink_events(shared, "mediapipe"), blink_events(shared, "mediapipe_tflite")
    ok = True
    for clip in BLINK_CLIPS:
        new_false = [e for e in t[clip]["false"]
                     if not any(abs(e[0] - f[0]) <= 2 and abs(e[1] - f[1]) <= 2 for f in g[clip]["false"])]
        ok &= not t[clip]["missed"] and not new_false
        print(f"{clip:<22} truth {t[clip]['n_truth']:>2}  graph: detected {g[clip]['n_det']:>2} missed "
              f"{len(g[clip]['missed'])} false {g[clip]['false']}  |  tflite: detected {t[clip]['n_det']:>2} "
              f"missed {t[clip]['missed']} false {t[clip]['false']} new false {new_false}")
    print(f"  -> every annotated event recovered with mediapipe_tflite, no new false event: {'met' if ok else 'NOT met'}")
    return ok


# ----------------------------------------------------------------------------- part 2: snakemake

def _smk_project(clips: list[Path], work: Path) -> tuple[list[str], int]:
    """A throw-away project in ``work``: Snakefile and rules copied, params.yaml with one
    ``folder`` dataset ``bench`` holding ``clips`` (symlinks) and the tflite backend, and the
    clips' face tracks and crops put in place beforehand (older than nothing they depend on,
    so only the landmark jobs run). Returns the landmark targets and the frame count."""
    import yaml

    from blinkbench import datasets as bb_datasets
    from blinkbench.core import paths

    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "rules", work / "rules")
    for extra in ("envs", "profiles"):
        if (ROOT / extra).is_dir():
            shutil.copytree(ROOT / extra, work / extra)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"] = {"bench": {"adapter": "folder", "root": "raw"}}

    def rename(v):  # other sections name the demo dataset (train_on, study...): point them at bench
        if isinstance(v, dict):
            return {k: rename(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rename(x) for x in v]
        return "bench" if v == "demo" else v

    params = {k: (rename(v) if k != "datasets" else v) for k, v in params.items()}
    params["landmarks"]["backend"] = "mediapipe_tflite"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for k, clip in enumerate(clips):
        dst = work / "raw" / "real" / f"{k:02d}_{clip.stem}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(clip)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        from blinkbench.core import config

        cfg = config.load(work / "params.yaml")
        ids = bb_datasets.present_ids(bb_datasets.discover("bench", cfg["datasets"]["bench"], cfg))
    finally:
        os.chdir(cwd)
    pt = _params("mediapipe_tflite")
    targets, frames = [], 0
    for vid, path in sorted(ids.items()):
        clip = Path(os.path.realpath(work / path)) if not Path(path).is_absolute() else Path(os.path.realpath(path))
        track = track_of(clip, pt)
        frames += len(pd.read_parquet(track, columns=["frame"]))
        for kind, src in (("faces", track), ("crops", track.with_name("crops.npz"))):
            dst = work / paths.PATTERNS[kind].format(dataset="bench", video=vid)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
        targets.append(paths.PATTERNS["landmarks"].format(dataset="bench", video=vid))
    return targets, frames


def _snakemake(work: Path, cores: int, targets: list[str]) -> tuple[float, float, float]:
    """Wall s of ``snakemake --cores N targets`` (landmark outputs removed first), the jobs'
    CPU s (the rule's benchmark files: each job's process tree, start-up included; sampled
    by Snakemake every 0.5 s, so it can miss a little) and the whole run's CPU s (snakemake
    itself included, from the children's rusage)."""
    import resource

    for t in targets:
        (work / t).unlink(missing_ok=True)
    shutil.rmtree(work / "logs" / "landmarks", ignore_errors=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(["snakemake", "--cores", str(cores), "--quiet", "all", "--", *targets], cwd=work, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if r.returncode:
        raise RuntimeError(f"snakemake --cores {cores} failed:\n{r.stderr[-3000:]}")
    cpu = 0.0
    for tsv in (work / "logs" / "landmarks").rglob("*.tsv"):
        row = pd.read_csv(tsv, sep="\t")
        cpu += float(row["cpu_time"].iloc[-1])
    return wall, cpu, total


def snakemake_check(clips: list[Path]) -> None:
    """``snakemake --cores 1`` and ``--cores 2`` on the landmarks of ``clips`` (face tracks
    made beforehand) in a throw-away project; aggregate frames/s against what 2 cores allow
    at the jobs' own CPU per frame (start-up included)."""
    print(f"\n== 2b. snakemake over {len(clips)} clips' landmarks (mediapipe_tflite), face tracks made beforehand  "
          f"[{_load()}]")
    work = Path(tempfile.mkdtemp(prefix="bbsmk_"))
    try:
        targets, frames = _smk_project(clips, work)
        w1, c1, t1 = _snakemake(work, 1, targets)
        w2, c2, t2 = _snakemake(work, 2, targets)
        cpu_frame = c2 / frames
        allowed = 2 / cpu_frame
        print(f"  {len(targets)} jobs, {frames} frames; --cores 1: {w1:.1f} s ({frames / w1:.1f} frames/s, jobs' CPU "
              f"{c1:.1f} s); --cores 2: {w2:.1f} s ({frames / w2:.1f} frames/s, jobs' CPU {c2:.1f} s) = "
              f"{w1 / w2:.2f}x --cores 1")
        print(f"  jobs' CPU per frame (start-up included) {cpu_frame * 1e3:.2f} ms -> 2 cores allow "
              f"{allowed:.1f} frames/s; reached {frames / w2:.1f} = {frames / w2 / allowed:.2f} of it "
              f"(target >= {SMK_TARGET}: {'met' if frames / w2 / allowed >= SMK_TARGET else 'NOT met'})")
        print(f"  whole run's CPU (snakemake itself included): --cores 1 {t1:.1f} s, --cores 2 {t2:.1f} s -> "
              f"{t2 / frames * 1e3:.2f} ms per frame; at that cost 2 cores allow {2 * frames / t2:.1f} frames/s, "
              f"reached {frames / w2 / (2 * frames / t2):.2f} of it")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per cell; 0: faithfulness only")
    ap.add_argument("--groups", default="ffpp_c40,ffpp_c23")
    ap.add_argument("--skip-blinks", action="store_true")
    ap.add_argument("--skip-snakemake", action="store_true")
    ap.add_argument("--only-snakemake", action="store_true", help="part 2b alone")
    ap.add_argument("--contention", type=int, default=0, metavar="N",
                    help="part 2c alone, on the first N ffpp_c40 clips: each part's CPU alone and beside the other")
    args = ap.parse_args(argv)
    if not (args.shared / "samples").is_dir():
        print(f"{args.shared}/samples not found: this benchmark needs the shared real clips.")
        return 0
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {os.cpu_count()} CPUs  {_load()}")
    groups = {k: v for k, v in clip_lists(args.shared).items() if k in args.groups.split(",") and v}
    if args.only_snakemake:
        snakemake_check(groups["ffpp_c40"])
        return 0
    if args.contention:
        contention(groups["ffpp_c40"][:args.contention], max(1, args.repeats))
        return 0
    speed_and_fidelity(groups, args.repeats)
    if not args.skip_blinks:
        blink_check(args.shared)
    if not args.skip_snakemake and "ffpp_c40" in groups:
        snakemake_check(groups["ffpp_c40"])
    print(f"\nend  {_load()}  (a shared machine: rerun on an idle one for absolute figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
