#!/usr/bin/env python
"""Start-up cost (a script, not a test): how long `snakemake -n` takes to parse the workflow
and build its DAG, and how long a job's Python process takes to import what its step needs.

    python benchmarks/bench_startup.py [--repeats 3] [--skip-snakemake]

Then a job that only predicts: a saved MesoNet scoring four crops in a fresh process, and
the same with the training module (and so Lightning) imported first, as predicting did
until 2026-12-04.

Last (``--skip-pyts`` leaves it out), importing pyts, which compiles its numba functions at
import: ``import pyts.classification`` as it is; through
:func:`blinkbench.detectors.blink.numba_cache.import_cached` with an empty numba cache (compile
and write it: the first job on a fresh install) and with the cache written (every later
job); and a job that loads a saved LearningShapelets detector and scores one video, with the
cache written, and the same job with pyts imported directly first (compiled, as every job
did before ``import_cached``). The cache goes to a temporary ``NUMBA_CACHE_DIR``, so the
install's own cache is neither used nor touched.

Each figure is a fresh process, run ``--repeats`` times: wall seconds (median, min) and CPU
seconds (user + sys of the child, median), and whether torch ended up imported. CPU seconds
are the steadier figure on a loaded machine. Run from anywhere; the snakemake run uses this
checkout's Snakefile and params.yaml (``-n``: nothing is executed or written)."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Step -> the modules its `blinkbench <step>` job imports (the CLI imports the step's module lazily).
STEPS = {
    "cli only": [],
    "faces": ["blinkbench.spine.faces"],
    "landmarks": ["blinkbench.spine.landmarks", "blinkbench.spine.landmarks.mediapipe_mesh"],
    "ear": ["blinkbench.spine.ear", "blinkbench.spine.landmarks"],
    "blinks": ["blinkbench.spine.blinks"],
    "train_blink": ["blinkbench.experiments.protocol", "blinkbench.detectors.blink.neural_fit"],
    "train_frame": ["blinkbench.experiments.protocol", "blinkbench.detectors.frame.cnn_fit"],
    "attack": ["blinkbench.experiments.study", "blinkbench.attacks.frame"],
    "ear_attack": ["blinkbench.experiments.blink_study", "blinkbench.attacks.blink.ear_attack"],
}


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def row(label: str, runs: list[tuple[float, float, str]], extra: str = "") -> None:
    walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
    print(f"{label:14s} wall median {statistics.median(walls):6.2f} s  min {min(walls):6.2f} s   "
          f"cpu median {statistics.median(cpus):6.2f} s  {extra}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-snakemake", action="store_true")
    ap.add_argument("--skip-pyts", action="store_true", help="leave out the pyts import rows (~2 min)")
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH")] if p)}
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"{args.repeats} runs each")
    if not args.skip_snakemake:
        exe = shutil.which("snakemake", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        if exe is None:
            print("snakemake: not found")
        else:
            runs = [timed([exe, "-n", "-q"], env, ROOT) for _ in range(args.repeats)]
            row("snakemake -n", runs, "(parse + DAG of this checkout's params.yaml, dry run)")
    print("\nimport time of each step's modules in a fresh `python -c` (the CLI with its whole parser, as "
          "`blinkbench <step>` builds it, plus what the step imports)")
    for step, mods in STEPS.items():
        code = "import sys, blinkbench.cli\nblinkbench.cli.build_parser()\n" + "".join(f"import {m}\n" for m in mods) + \
            "print('torch' in sys.modules)"
        runs = [timed([sys.executable, "-c", code], env, ROOT) for _ in range(args.repeats)]
        row(step, runs, f"torch imported: {runs[-1][2].strip()}")
    predict_rows(args.repeats, env)
    if not args.skip_pyts:
        pyts_rows(args.repeats, env)
    return 0


PREDICT = """
import sys, numpy as np, blinkbench.cli
blinkbench.cli.build_parser()
{extra}
from blinkbench.detectors.frame import FrameDetector
FrameDetector.load(sys.argv[1]).predict_frames(np.zeros((4, 48, 48, 3), np.uint8))
print('lightning' in sys.modules)
"""


def predict_rows(repeats: int, env: dict) -> None:
    """A job that only predicts (rescore, evaluate_frame): a fresh process loads a saved
    MesoNet and scores four crops; and the same with the training module imported first,
    which is what predicting imported until 2026-12-04 (Lightning with it)."""
    import tempfile

    import numpy as np

    from blinkbench.detectors import frame

    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        cs = frame.CropSet(rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8),
                           np.array(["a", "b", "c", "d"], object), np.arange(4) % 2, np.zeros(4, int))
        det = frame.create("meso4", seed=0, input_size=48, batch_size=4, epochs=1)
        det.fit(cs)
        det.save(Path(d) / "meso4.zip")
        print("\na saved MesoNet predicting four crops in a fresh process (what rescore and evaluate_frame do)")
        for label, extra in (("predict", ""), ("predict+fit", "import blinkbench.detectors.frame.cnn_fit")):
            code = PREDICT.format(extra=extra)
            runs = [timed([sys.executable, "-c", code, str(Path(d) / "meso4.zip")], env, ROOT) for _ in range(repeats)]
            row(label, runs, f"Lightning imported: {runs[-1][2].strip()}")


PYTS_LOAD = """
import sys, blinkbench.cli
blinkbench.cli.build_parser()
from blinkbench.detectors.blink import Detector
from blinkbench.testing.synthetic import synthetic_videos
videos, _ = synthetic_videos(1, 0, duration_s=(8, 8))
Detector.load(sys.argv[1]).predict_proba(videos)
"""

PYTS_FIT = """
import sys
from blinkbench.detectors.blink import create, get
from blinkbench.testing.synthetic import synthetic_videos
videos, y = synthetic_videos(4, 4, duration_s=(8, 8))
create("learning_shapelets", seed=0, **get("learning_shapelets").test_params).fit(videos, y).save(sys.argv[1])
"""


def pyts_rows(repeats: int, env: dict) -> None:
    """pyts' import cost with and without numba's cache (see the module docstring)."""
    import tempfile

    direct = "import pyts.classification"
    helper = "from blinkbench.detectors.blink.numba_cache import import_cached\nimport_cached('pyts.classification')"
    print("\nimporting pyts.classification in a fresh process (numba compiles pyts' functions at import)")
    with tempfile.TemporaryDirectory() as d:
        runs = [timed([sys.executable, "-c", direct], {**env, "NUMBA_CACHE_DIR": f"{d}/none"}, ROOT)
                for _ in range(repeats)]
        row("pyts direct", runs, "(import pyts.classification: no cache)")
        runs = [timed([sys.executable, "-c", helper], {**env, "NUMBA_CACHE_DIR": f"{d}/cold{i}"}, ROOT)
                for i in range(repeats)]
        row("pyts cold", runs, "(import_cached, empty cache: compiles and writes it)")
        warm = {**env, "NUMBA_CACHE_DIR": f"{d}/cold0"}
        runs = [timed([sys.executable, "-c", helper], warm, ROOT) for _ in range(repeats)]
        row("pyts warm", runs, "(import_cached, cache written)")
        timed([sys.executable, "-c", PYTS_FIT, str(Path(d) / "ls.zip")], warm, ROOT)   # in the same cache
        runs = [timed([sys.executable, "-c", PYTS_LOAD, str(Path(d) / "ls.zip")], warm, ROOT) for _ in range(repeats)]
        row("shapelets job", runs, "(load a saved LearningShapelets, score one video; cache written)")
        # as before import_cached: pyts imported directly first, so import_cached finds it compiled
        runs = [timed([sys.executable, "-c", "import pyts.classification" + PYTS_LOAD, str(Path(d) / "ls.zip")],
                      warm, ROOT) for _ in range(repeats)]
        row("shapelets old", runs, "(the same job with pyts imported directly first: compiled, as before)")


if __name__ == "__main__":
    sys.exit(main())
