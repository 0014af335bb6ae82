"""The demo as a project in a fresh working directory, for the end-to-end test modules
(test_protocol, test_landmark_compare, test_study_demo): params validated with the ``demo``
dataset, the demo videos generated, their manifest written and the chosen per-video steps run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def demo_workdir(work: Path, demo_cfg: dict, sections: dict, run: Iterable[str] = ()) -> Iterator[dict]:
    """Make ``work`` the working directory and yield the params: ``sections`` validated with
    the ``demo`` dataset (the folder adapter on ``data/raw/demo``, generated from ``demo_cfg``
    with the params' seed), its manifest written and the steps ``run`` run on it. The old
    working directory is restored on exit."""
    from blinkbench import datasets
    from blinkbench.core import config, paths
    from blinkbench.datasets import demo
    from blinkbench.spine import steps

    old = os.getcwd()
    os.chdir(work)
    try:
        params = config.validate({"datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"}},
                                  "demo": demo_cfg, **sections})
        demo.generate("data/raw/demo", demo_cfg, seed=params["base"]["seed"])
        datasets.write_manifest(datasets.build_manifest("demo", params["datasets"]["demo"], params),
                                paths.path("manifest", dataset="demo"))
        for step in run:
            steps.run_batch(step, "demo", params)
        yield params
    finally:
        os.chdir(old)
