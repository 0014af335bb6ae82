"""The ``blinkbench`` command: every pipeline step, for one video or a whole dataset.

Snakemake rules call the one-video form (explicit input and output paths); DVC stages call
the ``--dataset`` form, which walks the manifest and skips videos already up to date. Both
run the same functions in :mod:`blinkbench.spine.steps`.

This is the package's one command-line entry point: every subcommand's arguments are
defined here and nothing in the package imports this module (``python -m blinkbench`` runs
it through ``__main__``). The only other argument parsers are the DVC-remote tools
``python -m blinkbench.ops.sync`` / ``ops.s3_server``, separate tools that run without
the pipeline (``tests/test_architecture.py`` checks both rules).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from blinkbench import __version__
from blinkbench.core import config, io, lineage, paths, steps_table
from blinkbench.core.params_types import BlinksParams, FacesParams, LandmarksParams, ReportParams
from blinkbench.spine import steps

log = logging.getLogger("blinkbench")


def _params(args, step: str | None = None, dataset: str | None = None, dvc_form: bool = False) -> Any:
    """The validated params file; for a pipeline ``step``, only the sections its table entry
    declares (:func:`blinkbench.core.steps_table.step_view`: reading another raises). Typed
    ``Any``: the view's type depends on ``step``; a handler gets its step's TypedDict by
    calling ``step_view`` with the step's name (as :func:`cmd_report` does)."""
    path = Path(args.params)
    if not path.exists() and args.params == "params.yaml" and getattr(args, "allow_default_params", False):
        params = config.validate({"datasets": {}}, source="built-in defaults")
    else:
        params = config.load(path)
    return steps_table.step_view(params, step, dataset, dvc_form) if step else params


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")


def _batch_or_one(p: argparse.ArgumentParser, one: list[tuple[str, str]]) -> None:
    _add_params(p)
    p.add_argument("--dataset", help="process every video of this dataset's manifest (DVC stage form)")
    for flag, help_ in one:
        p.add_argument(flag, help=help_ + " (one-video form)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="blinkbench", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"blinkbench {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("validate-params", help="check a params file against the schema")
    p.add_argument("file", nargs="?", default="params.yaml")
    p.add_argument("--dvc-yaml", metavar="PATH", help="also check PATH is the dvc.yaml generated from this file")

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml from the step table and a params file (or --check it)")
    _add_params(p)
    p.add_argument("--out", default="dvc.yaml", help="default: %(default)s")
    p.add_argument("--check", action="store_true", help="exit 1 unless --out is what would be written")

    p = sub.add_parser("params-types", help="write core/params_types.py (typed params sections) from the schema "
                                            "and the step table (or --check it)")
    p.add_argument("--check", action="store_true", help="exit 1 unless the file is what would be written")

    p = sub.add_parser("demo", help="generate the embedded demo dataset")
    _add_params(p)
    p.add_argument("--root", help="output folder (default: datasets.demo.root)")

    p = sub.add_parser("manifest", help="scan a dataset and write its manifest parquet")
    _add_params(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", help="default: " + paths.PATTERNS["manifest"])

    _batch_or_one(sub.add_parser("faces", help="face track and sampled face crops"),
                  [("--video-path", "input video"), ("--track", "output track parquet"), ("--crops", "output crops .npz")])
    _batch_or_one(sub.add_parser("landmarks", help="per-frame facial landmarks"),
                  [("--video-path", "input video"), ("--track", "input face track"), ("--out", "output parquet")])
    _batch_or_one(sub.add_parser("ear", help="eye aspect ratio series"),
                  [("--landmarks", "input landmarks parquet"), ("--out", "output parquet")])
    _batch_or_one(sub.add_parser("blinks", help="blink and closure events + per-video summary"),
                  [("--ear", "input EAR parquet"), ("--out", "output events parquet"), ("--summary", "output summary JSON")])

    p = sub.add_parser("report", help="build the HTML report and metrics from all datasets")
    _add_params(p)

    p = sub.add_parser("analyze", help="faces, landmarks, EAR and blinks for one video; print a summary")
    p.add_argument("video")
    _add_params(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--plot", metavar="PNG", help="save EAR over time with blinks marked")
    p.add_argument("--keep", metavar="DIR", help="keep the intermediate artifacts in DIR")
    _add_blink_parsers(sub)
    _add_study_parsers(sub)
    _add_blink_attack_parsers(sub)
    _add_defence_parsers(sub)
    _add_experiment_parsers(sub)
    _add_lineage_parsers(sub)
    return ap


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM (Snakemake stopping its jobs, ``scancel``, a SLURM time limit) as an exit:
    Python's default would end the process at once, leaving the temporary of a file being
    written (a 1080p video is hundreds of MB) until that file is next written; as an
    exception, every ``finally`` runs and :func:`blinkbench.core.io.atomic_path` removes it."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():   # signal handlers live there only
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.cmd](args)
    except config.ParamsError as exc:
        print(f"blinkbench: {exc}", file=sys.stderr)
        return 2


def cmd_validate(args) -> int:
    params = config.load(args.file)
    if args.dvc_yaml:
        from blinkbench.core import dvcgen

        stale = dvcgen.check(params, args.dvc_yaml)
        if stale:
            print(f"blinkbench: {stale}", file=sys.stderr)
            return 1
    print(f"{args.file}: valid")
    return 0


def cmd_dvc_yaml(args) -> int:
    from blinkbench.core import dvcgen

    params = _params(args)
    if args.check:
        stale = dvcgen.check(params, args.out)
        print(f"blinkbench: {stale}" if stale else f"{args.out}: current", file=sys.stderr if stale else sys.stdout)
        return 1 if stale else 0
    print(dvcgen.write(params, args.out))
    return 0


def cmd_params_types(args) -> int:
    from blinkbench.core import typegen

    if args.check:
        stale = typegen.check()
        print(f"blinkbench: {stale}" if stale else f"{typegen.OUT}: current", file=sys.stderr if stale else sys.stdout)
        return 1 if stale else 0
    print(typegen.write())
    return 0


def cmd_demo(args) -> int:
    from blinkbench.datasets import demo

    params = _params(args)
    root = args.root or params["datasets"].get("demo", {}).get("root")  # the default output, not a demo param
    if not root:
        print("blinkbench: no --root and no datasets.demo.root in params", file=sys.stderr)
        return 2
    params = steps_table.step_view(params, "demo")
    demo.generate(root, params["demo"], params["base"]["seed"])
    print(root)
    return 0


def cmd_manifest(args) -> int:
    from . import datasets

    params = _params(args)
    if args.dataset not in params["datasets"]:
        print(f"blinkbench: dataset {args.dataset!r} is not in params datasets: {sorted(params['datasets'])}", file=sys.stderr)
        return 2
    params = steps_table.step_view(params, "manifest", args.dataset)
    try:
        df = datasets.build_manifest(args.dataset, params["datasets"][args.dataset], params, progress=sys.stderr.isatty())
    except ValueError as exc:  # a layout or metadata file the adapter refuses: a message, not a traceback
        print(f"blinkbench: manifest {args.dataset}: {exc}", file=sys.stderr)
        return 2
    out = args.out or paths.path("manifest", dataset=args.dataset)
    datasets.write_manifest(df, out)
    counts = df["status"].value_counts().to_dict()
    log.info("%s: %d videos %s -> %s", args.dataset, len(df), counts, out)
    return 0


def _need(args, *names: str) -> None:
    missing = [n for n in names if getattr(args, n) is None]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise SystemExit(f"blinkbench {args.cmd}: give --dataset, or all of {flags}")


def _step_command(step: str, one) -> Callable[..., int]:
    def run(args) -> int:
        params = _params(args, step)
        if args.dataset:
            counts = steps.run_batch(step, args.dataset, params, progress=sys.stderr.isatty())
            log.info("%s %s: %s", step, args.dataset, counts)
            return 0
        meta = one(args, params)
        level = logging.INFO if meta.get("status") == "ok" else logging.WARNING
        log.log(level, "%s: status %s %s", step, meta.get("status"), meta.get("error", ""))
        return 0

    return run


def _faces(args, params: FacesParams):
    _need(args, "video_path", "track", "crops")
    return steps.faces_one(args.video_path, args.track, args.crops, params)


def _landmarks(args, params: LandmarksParams):
    _need(args, "video_path", "track", "out")
    return steps.landmarks_one(args.video_path, args.track, args.out, params)


def _ear(args, params):
    _need(args, "landmarks", "out")
    return steps.ear_one(args.landmarks, args.out)


def _blinks(args, params: BlinksParams):
    _need(args, "ear", "out", "summary")
    return steps.blinks_one(args.ear, args.out, args.summary, params)


def cmd_report(args) -> int:
    from blinkbench.report import build as report

    params: ReportParams = steps_table.step_view(_params(args), "report")
    out = report.build(params)
    print(Path(out).resolve())
    return 0


def analyze(video: str, params: dict, workdir: str | Path, plot: str | None = None, progress: bool = False) -> dict:
    """faces -> landmarks -> EAR -> blinks for one video into ``workdir``
    (:func:`blinkbench.spine.steps.run_chain`), plus the EAR plot when ``plot`` is a path and the
    evidence a blink verdict would rest on."""
    from blinkbench.spine.blinks import evidence

    out = steps.run_chain(video, params, workdir, progress=progress)
    if plot:
        import pandas as pd

        from blinkbench.report.plotting import plot_ear

        w = Path(workdir)
        plot_ear(pd.read_parquet(w / "ear.parquet"), pd.read_parquet(w / "blinks.parquet"), plot, title=Path(video).name)
    if out.get("status") == "ok":
        out["evidence"] = evidence(out, float(params["detectors"]["min_face_s"]))
        if not out["evidence"]["sufficient"]:
            out.setdefault("warnings", []).append(
                f"insufficient evidence for a blink verdict: {out['evidence']['face_duration_s']:.1f} s of face, "
                f"below detectors.min_face_s = {out['evidence']['min_face_s']:g} s")
    return out


def cmd_analyze(args) -> int:
    args.allow_default_params = True
    params = _params(args)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        res = analyze(args.video, params, args.keep, args.plot, progress=sys.stderr.isatty())
    else:
        with tempfile.TemporaryDirectory(prefix="blinkbench-") as tmp:
            res = analyze(args.video, params, tmp, args.plot, progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(io.finite(res), sort_keys=True))
    else:
        print(_format_summary(res))
    return 0 if res["status"] == "ok" else 1


def _format_summary(r: dict) -> str:
    f = lambda x, fmt: "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)  # noqa: E731
    lines = [
        f"video        {r['video']}",
        f"status       {r['status']}" + (f"  ({r['error']})" if r.get("error") else ""),
        f"frames       {r.get('frames', 0)}  fps {f(r.get('fps'), '.2f')}  duration {f(r.get('duration_s'), '.2f')} s",
        f"face frames  {r.get('face_frames', 0)}  ({f(r.get('face_duration_s'), '.2f')} s of face"
        + (f"; a blink verdict needs {r['evidence']['min_face_s']:g} s)" if "evidence" in r else ")"),
        f"EAR median   {f(r.get('ear_median'), '.3f')}",
        f"blinks       {len(r['blinks'])}  rate {f(r.get('blink_rate_per_min'), '.1f')}/min  "
        f"mean {f(r.get('mean_blink_ms'), '.0f')} ms  IBI mean {f(r.get('ibi_mean_s'), '.2f')} s",
        f"closures     {len(r['closures'])}  ({f(r.get('closure_total_s'), '.2f')} s)",
    ]
    for w in r.get("warnings", []):
        lines.append(f"warning      {w}")
    if r["blinks"] or r["closures"]:
        lines.append("  kind     start_frame  end_frame  duration_ms  min_EAR")
        for kind in ("blinks", "closures"):
            for e in r[kind]:
                lines.append(f"  {kind[:-1]:<8} {e['start_frame']:>11}  {e['end_frame']:>9}  {e['duration_ms']:>11.0f}  {e['min_ear']:.3f}")
    return "\n".join(lines)


# family -> (params section, path prefix, trainer, evaluator); one CLI shape for both families
FAMILIES = {"blink": ("detectors", "blink", "train_blink", "evaluate_blink"),
            "frame": ("frame_detectors", "frame", "train_frame", "evaluate_frame")}


def _add_blink_parsers(sub) -> None:
    p = sub.add_parser("detectors", help="list the registered detectors")
    p.add_argument("--frames", action="store_true", help="frame-level detectors instead of blink-based ones")
    p.add_argument("--json", action="store_true")
    for fam, (_, prefix, train, evaluate) in FAMILIES.items():
        p = sub.add_parser(train, aliases=[train.replace("_", "-")],
                           help=f"fit one {fam} detector on a dataset's training videos")
        _add_params(p)
        p.add_argument("--detector", required=True)
        p.add_argument("--train", required=True, help="training dataset name")
        p.add_argument("--out", help="model file (default: " + paths.PATTERNS[f"{prefix}_model"] + ")")
        p.add_argument("--info", help="info JSON (default: " + paths.PATTERNS[f"{prefix}_model_info"] + ")")
        p.set_defaults(family=fam)
        p = sub.add_parser(evaluate, aliases=[evaluate.replace("_", "-")],
                           help=f"score a trained {fam} detector on a dataset's test split")
        _add_params(p)
        p.add_argument("--detector", required=True)
        p.add_argument("--train", required=True, help="dataset the model was trained on")
        p.add_argument("--test", required=True, help="dataset whose test split is scored")
        p.add_argument("--model", help="default: " + paths.PATTERNS[f"{prefix}_model"])
        p.set_defaults(family=fam)
    p = sub.add_parser("select_blink", aliases=["select-blink"],
                       help="best-of: the enabled blink detector with the best validation score (detectors.best_of)")
    _add_params(p)
    p.add_argument("--train", required=True, help="training dataset name")
    p.add_argument("--out", help="selection JSON (default: " + paths.PATTERNS["blink_selection"] + ")")

    p = sub.add_parser("detect", help="score one video with a trained detector (blink or frame)")
    p.add_argument("video")
    p.add_argument("--model", required=True, help="a model file written by train_blink or train_frame")
    _add_params(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_study_parsers(sub) -> None:
    def set_args(p, variant: bool):
        _add_params(p)
        p.add_argument("--target", required=True, help="attacked frame detector, or 'clean' for the reference")
        p.add_argument("--method", required=True, help="attack method ('none' for the clean reference)")
        p.add_argument("--eps", required=True, type=float, help="L-inf budget, 0-255 levels")
        if variant:
            p.add_argument("--variant", help="compression variant (default: every variant of the study)")

    p = sub.add_parser("attack", help="adversarial lossless video(s) of one study set (and, with --all, its compressions)")
    set_args(p, False)
    p.add_argument("--video", help="one video id of attacks.dataset (Snakemake form)")
    p.add_argument("--out", help="output .mkv (one-video form)")
    p.add_argument("--all", action="store_true", help="every selected video, then every compression (DVC form)")

    p = sub.add_parser("compress", help="a compression variant of a lossless video")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--variant", required=True)

    p = sub.add_parser("rescore", help="blink path + every trained detector on one study set")
    set_args(p, True)
    p.add_argument("--out", help="output JSON (one-variant form)")


def _add_defence_parsers(sub) -> None:
    from blinkbench.defence import ALGORITHMS, VARIANTS

    p = sub.add_parser("posttrain", help="adaptive post-training of a CNN frame detector, evaluated before and after")
    _add_params(p)
    p.add_argument("--detector", required=True, help="CNN frame detector trained on defence.dataset")
    p.add_argument("--algorithm", required=True, choices=sorted(ALGORITHMS), help="anchor attack (pgd: Alg. 1, deepfool: Alg. 2)")
    p.add_argument("--variant", required=True, choices=sorted(VARIANTS), help="frozen backbone or full")
    p.add_argument("--out-model", help="default: data/models/frame/<detector>-pt-<algorithm>-<variant>/<dataset>.zip")
    p.add_argument("--out-json", help="default: " + paths.PATTERNS["defence"])


def cmd_posttrain(args) -> int:
    from blinkbench.defence import posttrain

    params = _params(args, "posttrain")
    res = posttrain.run_one(params, args.detector, args.algorithm, args.variant, args.out_model, args.out_json)
    if res["status"] != "ok":
        print(f"{res['defended']}: error ({res['error']})")
        return 0
    b, a = res["before"], res["after"]
    print(f"{res['defended']}: normal {b['normal_acc_crops']:.3f} -> {a['normal_acc_crops']:.3f}, robust (FGSM eps "
          f"{b['fgsm_eps']:g}) {b['robust_acc_crops']:.3f} -> {a['robust_acc_crops']:.3f} (crops); "
          f"{res['neighbourhood']['n_kept']} of {res['neighbourhood']['n_candidates']} neighbours kept")
    return 0


def _add_blink_attack_parsers(sub) -> None:
    p = sub.add_parser("ear_attack", aliases=["ear-attack"], help="EAR suppression/injection on a video, re-scored")
    _add_params(p)
    p.add_argument("--mode", required=True, choices=["suppress", "inject"])
    p.add_argument("--video", help="one video id of blink_attacks.dataset (Snakemake form)")
    p.add_argument("--out", help="result.json path (one-video form)")
    p.add_argument("--all", action="store_true", help="every selected video of this mode (DVC form)")

    p = sub.add_parser("landmark_breaker", aliases=["landmark-breaker"], help="Landmark Breaker tables on face crops")
    _add_params(p)
    p.add_argument("--out", help="default: " + paths.PATTERNS["landmark_breaker"])


def cmd_ear_attack(args) -> int:
    from blinkbench.experiments import blink_study

    params = _params(args, "ear_attack")
    ds = params["blink_attacks"]["dataset"]
    if args.video:
        todo = [(args.video, args.out or paths.path("ear_attack", dataset=ds, mode=args.mode, video=args.video))]
    elif args.all:
        todo = [(v, paths.path("ear_attack", dataset=ds, mode=args.mode, video=v))
                for v in blink_study.videos(params, args.mode)["video_id"]]
    else:
        raise SystemExit("blinkbench ear_attack: give --video (one video) or --all")
    for vid, out in todo:
        res = blink_study.ear_attack_one(params, args.mode, vid, out)
        print(f"{args.mode} {vid}: {res['status']}" + (f" ({res['error']})" if res.get("error") else ""))
    return 0


def cmd_landmark_breaker(args) -> int:
    from blinkbench.experiments import blink_study

    params = _params(args, "landmark_breaker")
    out = args.out or paths.path("landmark_breaker", dataset=params["blink_attacks"]["dataset"])
    res = blink_study.landmark_breaker(params, out)
    print(f"landmark breaker on {res['n_crops']} crops: {res['status']}")
    return 0


def cmd_attack(args) -> int:
    from blinkbench.experiments import study

    params = _params(args, "attack", dvc_form=args.all and not args.video)  # --all also compresses
    if args.video:
        res = study.attack_one(params, args.target, args.method, args.eps, args.video, args.out)
        print(f"{args.video}: {res['status']}" + (f" ({res['error']})" if res.get("error") else ""))
        return 0
    if not args.all:
        raise SystemExit("blinkbench attack: give --video (one video) or --all (every selected video)")
    for vid in study.selected_videos(params)["video_id"]:
        out = study.adv_path(params, args.target, args.method, args.eps, "none", vid)
        res = study.attack_one(params, args.target, args.method, args.eps, vid, out)
        print(f"{vid}: {res['status']}")
        for variant in params["attacks"]["compressions"]:
            study.compress_one(out, study.adv_path(params, args.target, args.method, args.eps, variant, vid), variant)
    return 0


def cmd_compress(args) -> int:
    from blinkbench.experiments import study

    rec = study.compress_one(args.src, args.dst, args.variant)
    print(f"{args.dst}: {rec['status']}")
    return 0


def cmd_rescore(args) -> int:
    from blinkbench.experiments import study

    params = _params(args, "rescore", dvc_form=not args.variant)  # every variant: the DVC form
    variants = [args.variant] if args.variant else ["none", *params["attacks"]["compressions"]]
    for v in variants:
        out = args.out if args.out and args.variant else paths.path(
            "study", dataset=params["attacks"]["dataset"], target=args.target, method=args.method,
            eps=study._eps(args.eps), variant=v)
        res = study.rescore_set(params, args.target, args.method, args.eps, v, out)
        print(f"{study.set_name(args.target, args.method, args.eps, v)}: {len(res['videos'])} videos")
    return 0


def cmd_detectors(args) -> int:
    if args.frames:
        from blinkbench.detectors.frame import available, get
    else:
        from blinkbench.detectors.blink import available, get

    rows = [{"name": n, "family": get(n).family, "view": getattr(get(n), "view", "crops"), "hyper": get(n).default_hyper()}
            for n in available()]
    if args.json:
        print(json.dumps(rows, default=str))
    else:
        for r in rows:
            print(f"{r['name']:<16} {r['family']:<10} {r['view']:<9} {r['hyper']}")
    return 0


def cmd_train(args) -> int:
    from blinkbench.experiments import protocol

    _, prefix, train, _ = FAMILIES[args.family]
    params = _params(args, train)
    w = {"detector": args.detector, "train": args.train}
    info = getattr(protocol, train)(params, args.detector, args.train, args.out or paths.path(f"{prefix}_model", **w),
                                    args.info or paths.path(f"{prefix}_model_info", **w))
    print(f"{args.detector} on {args.train}: {info['status']}" + (f" ({info['error']})" if info["error"] else ""))
    return 0


def cmd_evaluate(args) -> int:
    from blinkbench.experiments import protocol

    _, prefix, _, evaluate = FAMILIES[args.family]
    params = _params(args, evaluate)
    w = {"detector": args.detector, "train": args.train, "test": args.test}
    res = getattr(protocol, evaluate)(params, args.model or paths.path(f"{prefix}_model", **w), args.test,
                                      paths.path(f"{prefix}_scores", **w), paths.path(f"{prefix}_eval", **w),
                                      paths.path(f"{prefix}_roc", **w), train_dataset=args.train)
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"{args.detector} trained on {args.train}, tested on {args.test}: {res['status']} n={res['n']} "
          f"AUC {f(res['auc'])} EER {f(res['eer'])} acc {f(res['acc_0.5'])} AP {f(res['ap'])}")
    return 0


def cmd_select(args) -> int:
    from blinkbench.experiments.selection import select_blink

    res = select_blink(_params(args, "select_blink"), args.train, args.out or paths.path("blink_selection", train=args.train))
    print(f"best-of on {args.train} ({res['landmark_backend']}): {res['status']}"
          + (f", chose {res['chosen']} ({res['metric']} {res['chosen_score']:.3f})" if res["chosen"] else "")
          + (f" ({res['error']})" if res["error"] else ""))
    return 0


def cmd_detect(args) -> int:
    from blinkbench.experiments.protocol import detect_video

    args.allow_default_params = True
    params = _params(args)
    with tempfile.TemporaryDirectory(prefix="blinkbench-") as tmp:
        res = detect_video(args.model, args.video, params, tmp)
    if args.json:
        print(json.dumps(io.finite(res), sort_keys=True))
    else:
        p = res["probability"]
        why = (f"; {res['face_duration_s']:.1f} s of face, a verdict needs {res['min_face_s']:g} s"
               if res.get("verdict") == "insufficient" else "")
        print(f"{res['video']}: {res['verdict']}" + (f"  (fake probability {p:.3f}, {res['detector']}{why})" if p is not None
                                                      else f"  ({res['status']}: {res.get('error', '')})"))
    return 0 if res["status"] == "ok" else 1


def _add_experiment_parsers(sub) -> None:
    p = sub.add_parser("ear_attack_video", aliases=["ear-attack-video"],
                       help="EAR attack on any video file, scored by the real pipeline (no dataset needed)")
    p.add_argument("video")
    p.add_argument("out_dir")
    p.add_argument("mode", choices=["suppress", "inject"])
    p.add_argument("--attack-params", default="{}", help="EarAttackParams fields as JSON")
    p.add_argument("--model", action="append", default=[], help="NAME=PATH of a fitted blink detector (repeatable)")

    p = sub.add_parser("noise_effect", aliases=["noise-effect"],
                       help="what per-frame noise does to the blink detectors, per study set (also in the report)")
    _add_params(p)
    p.add_argument("--out", default=str(Path(paths.PATTERNS["report"]).parent), help="default: %(default)s")

    p = sub.add_parser("landmark_compare", aliases=["landmark-compare"],
                       help="the same blink detectors trained and tested on each landmark backend's EAR")
    _add_params(p)
    p.add_argument("--dataset", required=True, help="a configured dataset whose manifest and faces exist")
    p.add_argument("--backends", nargs="+", default=["mediapipe", "pfld"], help="registered landmark backends")
    p.add_argument("--detectors", nargs="+", default=None, help="blink detectors (default: detectors.enabled)")
    p.add_argument("--pfld-model", default=None, help="PFLD ONNX file (default: landmarks.pfld_model)")


def cmd_ear_attack_video(args) -> int:
    from blinkbench.attacks.blink.ear_attack import run_ear_attack

    try:
        attack_params = json.loads(args.attack_params)
        models = dict(m.split("=", 1) for m in args.model)
    except ValueError as exc:   # bad JSON, or a --model without '='
        print(f"blinkbench ear_attack_video: {exc}", file=sys.stderr)
        return 2
    res = run_ear_attack(args.video, args.out_dir, args.mode, attack_params, models)
    print(json.dumps({k: res.get(k) for k in ("status", "error")}))
    return 0 if res.get("status") == "ok" else 1


def cmd_noise_effect(args) -> int:
    from blinkbench.experiments import noise_effect

    tables = noise_effect.compute(_params(args))
    noise_effect.write(tables, args.out)
    found = noise_effect.finding(tables["summary"], tables["reference"])    # {} without attacked sets
    if found:
        print(found["table"].to_string(index=False, float_format=lambda x: format(x, ".4g")))
        for line in found["conclusion"]:
            print(line)
    return 0


def cmd_landmark_compare(args) -> int:
    from blinkbench.experiments import landmark_compare as lc

    params = _params(args)
    if args.dataset not in params["datasets"]:
        print(f"blinkbench landmark_compare: dataset {args.dataset!r} not in params datasets "
              f"{sorted(params['datasets'])}", file=sys.stderr)
        return 2
    df = lc.compare(params, args.dataset, args.backends, args.detectors, args.pfld_model)
    out = lc.write(df, args.dataset)
    print(lc.wide(df).to_string(float_format=lambda x: f"{x:.3f}"))
    print(f"written {out}")
    return 0 if (df["status"] == "ok").any() else 1


def _add_lineage_parsers(sub) -> None:
    p = sub.add_parser("lineage", help="the chain of steps, params, code and data that produced an artifact")
    p.add_argument("target", help="a path (parquet, model, report) or FILE.json:dotted.key for one metric")
    p.add_argument("--root", default=".", help="project root holding dvc.lock (default: %(default)s)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("audit", help="list artifacts that are stale, edited by hand or missing (exit 1 if any)")
    p.add_argument("--root", default=".")
    p.add_argument("--json", action="store_true")


def cmd_lineage(args) -> int:
    try:
        info = lineage.lineage(args.target, Path(args.root))
    except (FileNotFoundError, LookupError, KeyError, ValueError) as e:
        print(f"blinkbench lineage: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=1, default=str) if args.json else lineage.render_tree(info))
    return 0


def cmd_audit(args) -> int:
    try:
        problems = lineage.audit(Path(args.root))
    except FileNotFoundError as e:
        print(f"blinkbench audit: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(problems, indent=1))
    else:
        for p in problems:
            print(f"{p['problem']:8} {p['path']}  [{p['stage']}] {p['why']}")
        print(f"{len(problems)} problems" if problems else "every recorded artifact matches dvc.lock")
    return 1 if problems else 0


COMMANDS = {
    "validate-params": cmd_validate,
    "dvc-yaml": cmd_dvc_yaml,
    "params-types": cmd_params_types,
    "demo": cmd_demo,
    "manifest": cmd_manifest,
    "faces": _step_command("faces", _faces),
    "landmarks": _step_command("landmarks", _landmarks),
    "ear": _step_command("ear", _ear),
    "blinks": _step_command("blinks", _blinks),
    "report": cmd_report,
    "analyze": cmd_analyze,
    "detectors": cmd_detectors,
    **{name: cmd_train for _, _, t, _ in FAMILIES.values() for name in (t, t.replace("_", "-"))},
    **{name: cmd_evaluate for _, _, _, e in FAMILIES.values() for name in (e, e.replace("_", "-"))},
    "select_blink": cmd_select,
    "select-blink": cmd_select,
    "detect": cmd_detect,
    "attack": cmd_attack,
    "compress": cmd_compress,
    "rescore": cmd_rescore,
    "ear_attack": cmd_ear_attack,
    "ear-attack": cmd_ear_attack,
    "landmark_breaker": cmd_landmark_breaker,
    "landmark-breaker": cmd_landmark_breaker,
    "posttrain": cmd_posttrain,
    "ear_attack_video": cmd_ear_attack_video,
    "ear-attack-video": cmd_ear_attack_video,
    "noise_effect": cmd_noise_effect,
    "noise-effect": cmd_noise_effect,
    "landmark_compare": cmd_landmark_compare,
    "landmark-compare": cmd_landmark_compare,
    "lineage": cmd_lineage,
    "audit": cmd_audit,
}

if __name__ == "__main__":
    sys.exit(main())
