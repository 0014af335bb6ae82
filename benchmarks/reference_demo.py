#!/usr/bin/env python
"""The reference study's protocol on a reduced demo (a script that prints figures, not a test).

    python benchmarks/reference_demo.py [--work /tmp/reference_demo] [--n 6] [--duration 8]
        [--size 192] [--targets vgg19 resnet50 xception efficientnet_b4 meso4] [--blink ...]
        [--pfld-model ../shared/models/pfld_68.onnx]

What it runs, with the project's own functions and params.yaml + configs/reference.yaml
(the ``reference`` preset: FGSM at eps 12.75 and 25.5 levels, 0.05 and 0.1 of the pixel
range, lossless), in a work folder outside the repository:

1. a demo of ``--n`` real and ``--n`` fake videos (``--duration`` s, ``--size`` px), its
   manifest and the per-video steps (faces, MediaPipe landmarks, EAR, blinks);
2. the classical blink detectors and the CNNs, trained on the demo's train+val split with
   params.yaml's CPU-sized settings (64 px, 2 epochs; Meso4 20), evaluated on its test split
   (accuracy at 0.5 and on fakes, and the reference's accuracy with unknown verdicts as fake);
3. the study: every fake test video attacked against each target CNN in turn at both eps,
   re-scored by every CNN and blink detector; the reference's table
   (:func:`blinkbench.report.reference.reference_table`);
4. with ``--pfld-model``: the same blink detectors on MediaPipe and PFLD EAR series
   (:mod:`blinkbench.experiments.landmark_compare`).

Everything is printed as Markdown tables and written to ``<work>/reference_demo.json``.
Reduced demo, so few test videos: read the figures as a run of the protocol, not estimates.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BLINK = ["blink_rate_rule", "knn_dtw", "minirocket", "tsf", "weasel", "catch22"]


def md(df, fmt="{:.2f}") -> str:
    cols = [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    lines = ["| " + " | ".join([df.index.name or "", *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, row in df.iterrows():
        cells = ["" if v is None or v != v else (fmt.format(v) if isinstance(v, float) else str(v)) for v in row]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/reference_demo")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--targets", nargs="+", default=["vgg19", "resnet50", "xception", "efficientnet_b4", "meso4"])
    ap.add_argument("--rescore-with", nargs="*", default=[],
                    help="more CNNs that re-score but are not attacked (a reduced run: then the preset is not claimed)")
    ap.add_argument("--blink", nargs="+", default=BLINK, help="blink detectors")
    ap.add_argument("--pfld-model", default=None)
    args = ap.parse_args()

    import pandas as pd

    from blinkbench import datasets
    from blinkbench.core import config, paths
    from blinkbench.datasets import demo
    from blinkbench.experiments import protocol, study
    from blinkbench.report.reference import reference_table
    from blinkbench.spine import steps

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    ref = yaml.safe_load((ROOT / "configs" / "reference.yaml").read_text())
    p = copy.deepcopy(base)
    for k, v in ref.items():
        p[k] = {**p.get(k, {}), **v}
    p["demo"] = {"n_real": args.n, "n_fake": args.n, "duration_s": args.duration, "fps": [25, 30], "size": args.size}
    p["faces"]["crops"]["n_per_video"] = 8
    p["detectors"]["enabled"] = list(args.blink)
    p["detectors"]["min_face_s"] = 5.0
    frames = list(dict.fromkeys([*args.targets, *args.rescore_with]))
    p["frame_detectors"]["enabled"] = frames
    p["frame_detectors"]["hyper"] = {k: v for k, v in p["frame_detectors"]["hyper"].items() if k in frames}
    p["attacks"]["targets"] = list(args.targets)
    if args.rescore_with:
        p["attacks"]["preset"] = None       # not each enabled CNN in turn: the same sets, without the claim
    params = config.validate(p)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    t0 = time.perf_counter()
    tick = lambda what: print(f"[{time.perf_counter() - t0:7.1f} s] {what}", flush=True)  # noqa: E731

    if not paths.path("manifest", dataset="demo").exists():
        demo.generate("data/raw/demo", params["demo"], seed=params["base"]["seed"])
        datasets.write_manifest(datasets.build_manifest("demo", params["datasets"]["demo"], params),
                                paths.path("manifest", dataset="demo"))
    for step in ("faces", "landmarks", "ear", "blinks"):
        steps.run_batch(step, "demo", params)
    tick("demo and per-video steps")

    clean = {}
    for d in args.blink:
        w = {"detector": d, "train": "demo"}
        if not paths.path("blink_model", **w).exists():
            protocol.train_blink(params, d, "demo", paths.path("blink_model", **w), paths.path("blink_model_info", **w))
        clean[f"blink/{d}"] = protocol.evaluate_blink(params, paths.path("blink_model", **w), "demo",
                                                      *(paths.path(k, **w, test="demo") for k in ("blink_scores", "blink_eval", "blink_roc")))
    tick("blink detectors")
    for d in frames:
        w = {"detector": d, "train": "demo"}
        if not paths.path("frame_model", **w).exists():
            protocol.train_frame(params, d, "demo", paths.path("frame_model", **w), paths.path("frame_model_info", **w))
        clean[f"frame/{d}"] = protocol.evaluate_frame(params, paths.path("frame_model", **w), "demo",
                                                      *(paths.path(k, **w, test="demo") for k in ("frame_scores", "frame_eval", "frame_roc")))
        tick(f"frame detector {d}")
    keys = ["n", "coverage", "auc", "acc_0.5", "acc_fake", "acc_real"]
    ctab = pd.DataFrame({k: {m: v.get(m) for m in keys} | {"acc_unknown_as_fake": (v.get("unknown_as_fake") or {}).get("acc")}
                         for k, v in clean.items()}).T
    ctab.index.name = "detector (clean test split)"
    print(md(ctab))

    vids = study.selected_videos(params)["video_id"].tolist()
    sets = {}
    for t, m, e, v in study.plan(params):
        out = paths.path("study", dataset="demo", target=t, method=m, eps=e, variant=v)
        if not out.exists():
            for vid in vids:
                dst = study.adv_path(params, t, m, e, "none", vid)
                if not dst.exists():
                    study.attack_one(params, t, m, e, vid, dst)
            study.rescore_set(params, t, m, e, v, out)
        sets[(t, float(e))] = json.loads(out.read_text())
        tick(f"study set {t}/{m}/eps{e}")
    table, metrics = reference_table(sets, list(args.targets), params["attacks"]["eps"],
                                     float(params["detectors"]["min_face_s"]))
    print(f"\nreference table: {len(vids)} fake test videos")
    print(md(table))

    result = {"params": {"demo": params["demo"], "targets": args.targets, "eps": params["attacks"]["eps"]},
              "clean": {k: {m: v.get(m) for m in keys} | {"unknown_as_fake": v.get("unknown_as_fake")} for k, v in clean.items()},
              "reference_attack": metrics, "n_fake_test": len(vids)}

    if args.pfld_model:
        from blinkbench.experiments import landmark_compare as lc

        df = lc.compare(params, "demo", ["mediapipe", "pfld"], list(args.blink), args.pfld_model)
        lc.write(df, "demo")
        print("\nlandmark backends compared")
        print(md(lc.wide(df)))
        result["landmark_compare"] = df.to_dict("records")
        tick("landmark comparison")
    (work / "reference_demo.json").write_text(json.dumps(result, indent=1, default=str))
    tick(f"written {work / 'reference_demo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
