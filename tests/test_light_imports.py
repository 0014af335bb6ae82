"""Start-up cost: the workflow's parse step and the per-video jobs that need no torch
(faces, landmarks, ear, blinks) must not import torch or Lightning (importing them took
most of `snakemake -n`'s 12 s). Checked in a fresh interpreter through ``sys.modules``, not
by timing; ``benchmarks/bench_startup.py`` prints the times."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "torchvision", "timm", "foolbox")


def modules_after(code: str) -> set[str]:
    """Top-level module names in ``sys.modules`` after running ``code`` in a new interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    code += "\nimport sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def workflow_imports() -> list[str]:
    """Every import statement in the Snakefile and rules/*.smk (top level and inside their
    functions, which run while the DAG is built)."""
    stmts = []
    for f in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        for line in f.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")) and " import " in s or s.startswith("import "):
                ast.parse(s)                     # a plain Python import line
                stmts.append(s)
    return stmts


def test_workflow_parse_imports_no_torch():
    stmts = workflow_imports()
    assert any("blinkbench" in s for s in stmts)
    # common.smk checks detector names and hyper-parameters at parse time (detector_plan with
    # check_registry): the registries import every detector module
    code = "\n".join(stmts) + """
from blinkbench.core import config as _cfg
from blinkbench.experiments.plan import detector_plan as _plan
_p = _cfg.load("params.yaml")
_plan(_p, check_registry=True)
_plan(_p, True, "frame_detectors")
from blinkbench.experiments import plan as _bb_plan
_bb_plan.study_sets(_p), _bb_plan.defended_models(_p)
from blinkbench.report.render import template_files as _tf
_tf()
"""
    loaded = modules_after(code)
    assert "blinkbench" in loaded and "snakemake" in loaded
    assert not loaded & set(HEAVY), f"parse-time imports pull in {sorted(loaded & set(HEAVY))}"
    # nor pandas (a second of `snakemake -n` here), PyAV or jinja2: listing and planning
    # open no video, read no table and render nothing
    parse_heavy = {"pandas", "av", "jinja2"}
    assert not loaded & parse_heavy, f"parse-time imports pull in {sorted(loaded & parse_heavy)}"


@pytest.mark.parametrize("step", ["faces", "landmarks", "ear", "blinks"])
def test_per_video_steps_import_no_torch(step):
    """What `blinkbench <step>` imports: the CLI with its whole parser, the step functions and,
    for landmarks, every registered backend. (The parser once imported the post-training
    module for its choices, so every per-video job loaded torch: ~3 s CPU each.)"""
    code = f"""
import blinkbench.cli
blinkbench.cli.build_parser()  # main() builds every subcommand's parser before running one
from blinkbench.spine import steps
assert {step!r} in steps.STEPS
import blinkbench.spine.faces, blinkbench.spine.ear, blinkbench.spine.blinks, blinkbench.video.codec
from blinkbench.spine import landmarks
landmarks.REGISTRY.available()
"""
    loaded = modules_after(code)
    assert not loaded & set(HEAVY), f"{step}: imports {sorted(loaded & set(HEAVY))}"


def test_detector_modules_are_light_until_fit():
    """The registries' modules import without torch; the Lightning pieces load on use and
    are still reachable under their old names."""
    loaded = modules_after("""
import blinkbench.detectors.blink as b, blinkbench.detectors.frame as f
b.available(); f.available()
b.create("fcn"); f.create("meso4")
""")
    assert not loaded & set(HEAVY)
    from blinkbench.detectors.blink import neural, neural_fit
    from blinkbench.detectors.frame import cnn, cnn_fit

    assert neural.WindowDataModule is neural_fit.WindowDataModule
    assert cnn.to_tensor is cnn_fit.to_tensor and cnn.PREDICT_BATCH == cnn_fit.PREDICT_BATCH
    with pytest.raises(AttributeError):
        cnn.no_such_name  # noqa: B018


def test_predicting_imports_no_lightning(tmp_path):
    """Saved detectors predict without Lightning, as the re-scoring and evaluation jobs do: a
    frame CNN (MesoNet) and a neural blink detector (FCN), loaded from their model files in a
    fresh interpreter, give the parent's scores with torch loaded and Lightning not. (Their
    input conversions lived beside the training code, so every such job imported Lightning:
    ~3.5 s of CPU each.)"""
    import numpy as np

    from blinkbench.detectors import blink, frame
    from blinkbench.detectors.blink.series import VideoSeries

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (6, 48, 48, 3), dtype=np.uint8)
    cs = frame.CropSet(crops, np.array([f"v{i}" for i in range(6)], object), np.arange(6) % 2, np.zeros(6, int))
    cnn = frame.create("meso4", seed=0, input_size=48, batch_size=6, epochs=1, dropout=0.0)
    cnn.fit(cs)
    cnn.save(tmp_path / "cnn.zip")
    t = np.arange(200) / 25.0
    videos = [VideoSeries(f"s{i}", t, 0.3 + 0.02 * rng.standard_normal(len(t)), label=i % 2) for i in range(6)]
    fcn = blink.create("fcn", seed=0, **{**blink.get("fcn").test_params, "epochs": 1})
    fcn.fit(videos, np.array([v.label for v in videos]))
    fcn.save(tmp_path / "fcn.zip")
    np.save(tmp_path / "crops.npy", crops)
    np.save(tmp_path / "ears.npy", np.stack([v.ear for v in videos]))
    code = f"""
import numpy as np, json
from pathlib import Path
from blinkbench.detectors.blink import Detector
from blinkbench.detectors.blink.series import VideoSeries
from blinkbench.detectors.frame import FrameDetector
d = Path({str(tmp_path)!r})
p_cnn = FrameDetector.load(d / "cnn.zip").predict_frames(np.load(d / "crops.npy"))
t = np.arange(200) / 25.0
videos = [VideoSeries(f"s{{i}}", t, ear, label=i % 2) for i, ear in enumerate(np.load(d / "ears.npy"))]
p_fcn = Detector.load(d / "fcn.zip").predict_proba(videos)
print(json.dumps({{"cnn": p_cnn.tolist(), "fcn": np.asarray(p_fcn).tolist()}}))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    code += "\nimport sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    scores_line, modules_line = out.stdout.strip().splitlines()[-2:]
    loaded, scores = set(json.loads(modules_line)), json.loads(scores_line)
    assert "torch" in loaded and "lightning" not in loaded, sorted(loaded & set(HEAVY))
    np.testing.assert_array_equal(scores["cnn"], cnn.predict_frames(crops))
    np.testing.assert_array_equal(scores["fcn"], fcn.predict_proba(videos))
