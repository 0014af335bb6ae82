"""The demo's per-video jobs through a real SLURM cluster (profiles/slurm) give the same
outputs, byte for byte, as a local run.

scripts/slurm_local.sh starts a one-node cluster on 127.0.0.1 (munged, MariaDB, slurmdbd,
slurmctld, slurmd; installing the Debian packages if missing and root). Where it cannot
(not root and not installed, no apt, daemons that do not come up), the test is skipped with
the script's own message. The cluster is always stopped afterwards. Marked slow; it runs in
CI, where .ci/run installs the packages.

The run itself is tests/slurm_background.py, started in the background when the suite has
collected this test (tests/conftest.py) and this file ordered last: ~4-5 minutes of it are
the SLURM plugin's sacct polls (>= 40 s apart), which then overlap the other tests instead of
holding one of the suite's workers. The test waits for its result and checks it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import slurm_background


def _outputs(work: Path) -> dict[str, Path]:
    return {p.relative_to(work).as_posix(): p for p in sorted((work / "data").rglob("*")) if p.is_file()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cluster_run(request):
    """The background run's result (tests/slurm_background.py): the cluster started, the
    local and the SLURM run done, the cluster stopped."""
    res = slurm_background.result(request.config)
    if "skip" in res:
        pytest.skip(res["skip"])
    return res


@pytest.mark.slow
def test_slurm_per_video_jobs_match_a_local_run(cluster_run):
    res = cluster_run
    assert "error" not in res and "timeout" not in res, res.get("error") or res.get("timeout")
    # the cluster is always stopped afterwards
    assert res["stop"]["rc"] == 0, res["stop"]["log"]
    assert res["local"]["rc"] == 0, res["local"]["log"]
    log = res["slurm"]["log"]
    assert res["slurm"]["rc"] == 0, log
    # the jobs really went through sbatch: one SLURM job id per rule instance
    submitted = [line for line in log.splitlines() if "has been submitted with SLURM jobid" in line]
    want = {"demo": 1, "manifest": 1, "faces": 2, "landmarks": 2, "ear": 2, "blinks": 2}
    assert len(submitted) == sum(want.values()), log
    states = dict(line.split("|", 1) for line in res["sacct"].split() if "|" in line)
    assert list(states.values()).count("COMPLETED") >= sum(want.values()), res["sacct"]

    a, b = _outputs(Path(res["dir"]) / "local"), _outputs(Path(res["dir"]) / "slurm")
    kinds = {k.split("/")[1] for k in a}
    assert {"raw", "manifests", "faces", "crops", "landmarks", "ear", "blinks"} <= kinds, sorted(a)
    assert sorted(a) == sorted(b)
    differ = [k for k in a if _sha256(a[k]) != _sha256(b[k])]
    assert not differ, f"outputs differ between the local and the SLURM run: {differ}"
