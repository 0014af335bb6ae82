"""tests/slurm_background.py, the SLURM test's background run, without a cluster: where the
cluster cannot start the result says why (the test skips with it) and the cluster is still
stopped; nothing is launched unless the SLURM test was selected; a run never started is an
error, not a wait."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import slurm_background


def _stand_in(tmp_path: Path, start_rc: int, message: str) -> Path:
    """A stand-in for scripts/slurm_local.sh that logs its calls and fails or succeeds at start."""
    script = tmp_path / "slurm_local.sh"
    calls = tmp_path / "calls.txt"
    script.write_text(f'#!/bin/bash\necho "$1" >> {calls}\nif [ "$1" = start ]; then echo "{message}" >&2; '
                      f"exit {start_rc}; fi\nexit 0\n")
    return script


def test_a_cluster_that_cannot_start_is_a_skip_and_is_still_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm_background, "SCRIPT", _stand_in(tmp_path, 1, "slurmctld did not come up"))
    run = tmp_path / "run"
    run.mkdir()
    assert slurm_background.main(["slurm_background.py", str(run)]) == 0
    res = json.loads((run / slurm_background.RESULT).read_text())
    assert res["skip"].startswith("SLURM cannot be started here: slurmctld did not come up")
    assert "local" not in res and "slurm" not in res      # no snakemake run without a cluster
    assert (tmp_path / "calls.txt").read_text().split() == ["start", "stop"]
    assert res["stop"]["rc"] == 0
    assert not (run / (slurm_background.RESULT + ".tmp")).exists()


def test_a_terminated_run_still_stops_the_cluster_and_says_so(tmp_path):
    """SIGTERM (what :func:`slurm_background.start`'s clean-up sends past its time limit)
    while the cluster is starting: the stand-in is asked to stop, and the result is written."""
    script = tmp_path / "slurm_local.sh"
    calls = tmp_path / "calls.txt"
    script.write_text(f'#!/bin/bash\necho "$1" >> {calls}\nif [ "$1" = start ]; then sleep 30; fi\nexit 0\n')
    run = tmp_path / "run"
    run.mkdir()
    code = ("import sys, pathlib, slurm_background as s; s.SCRIPT = pathlib.Path(sys.argv[1]); "
            "sys.exit(s.main(['x', sys.argv[2]]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(script), str(run)],
                            cwd=Path(slurm_background.__file__).parent)
    deadline = time.monotonic() + 60
    while not (calls.exists() and "start" in calls.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, "the stand-in was never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    res = json.loads((run / slurm_background.RESULT).read_text())
    assert "terminated" in res["error"]
    assert calls.read_text().split() == ["start", "stop"]


def _config(tmp_path: Path, collectonly: bool = False):
    factory = types.SimpleNamespace(getbasetemp=lambda: tmp_path)
    cleanups: list = []
    return types.SimpleNamespace(_tmp_path_factory=factory, option=types.SimpleNamespace(collectonly=collectonly),
                                 add_cleanup=cleanups.append), cleanups


def test_nothing_is_launched_unless_the_slurm_test_is_selected(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    item = types.SimpleNamespace(path=Path("tests/test_faces.py"))
    config, cleanups = _config(tmp_path)
    slurm_background.start(config, [item])
    slurm_background.start(_config(tmp_path, collectonly=True)[0],
                           [types.SimpleNamespace(path=Path("tests") / slurm_background.TEST_FILE)])
    assert not slurm_background.run_dir(config).exists() and cleanups == []
    with pytest.raises(RuntimeError, match="never started"):
        slurm_background.result(config)


def test_the_run_folder_is_shared_by_a_sessions_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    a = slurm_background.run_dir(_config(tmp_path / "popen-gw0")[0])
    b = slurm_background.run_dir(_config(tmp_path / "popen-gw1")[0])
    assert a == b == tmp_path / "slurm-background"
