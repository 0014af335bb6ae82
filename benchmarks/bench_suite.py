#!/usr/bin/env python
"""How long `make test` takes and how busy it keeps the cores (a script, not a test).

    python benchmarks/bench_suite.py --run [--workdir DIR] [--workers N]   # clone HEAD, time `make test`
    python benchmarks/bench_suite.py --log FILE                            # read a finished run's log

``--run`` clones this checkout's HEAD into ``--workdir`` (default: a fresh temporary folder,
with a link to this checkout's ``../shared`` beside the clone so that the real-clip tests run),
creates the venv there (``make setup``, timed apart) and runs ``make test`` (``TEST_WORKERS``
from ``--workers``, default ``auto``: one test process per core), with the wall, user and
system seconds of the whole process tree. Printed: setup and test wall time, the cores busy
on average during the tests (CPU seconds / wall seconds), pytest's own summary line and its
slowest tests, and how many test processes xdist started. ``--log`` reads the same figures
(but no CPU seconds) from a log of ``make test`` or ``.ci/run``. ``.ci/run`` also installs
a local SLURM first (``scripts/slurm_local.sh install``, as root); without it
``tests/test_slurm.py`` skips here and the run is shorter than CI's.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, parser

SUMMARY = re.compile(r"^=+ (.*\d+ passed.*) =+$")
SLOW = re.compile(r"^\s*([\d.]+)s (call|setup|teardown)\s+(\S+)")
WORKERS = re.compile(r"^created: (\d+)/\d+ workers")


def read_log(text: str, top: int) -> None:
    """pytest's summary, its slowest tests and the number of xdist workers, from a log."""
    lines = text.splitlines()
    workers = next((m.group(1) for ln in lines if (m := WORKERS.match(ln))), "1 (no xdist)")
    summary = next((m.group(1) for ln in reversed(lines) if (m := SUMMARY.match(ln))), "no summary line found")
    slow = [m.groups() for ln in lines if (m := SLOW.match(ln))]
    print(f"test processes: {workers}")
    print(f"pytest: {summary}")
    if slow:
        print(f"slowest {min(top, len(slow))}:")
        for s, phase, node in slow[:top]:
            print(f"  {float(s):7.1f} s  {phase:8s} {node}")


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--run", action="store_true", help="clone HEAD and time `make setup` and `make test`")
    ap.add_argument("--workdir", type=Path, help="with --run: where to clone (a new folder)")
    ap.add_argument("--workers", default="auto", help="TEST_WORKERS for make test (default auto)")
    ap.add_argument("--log", type=Path, help="a finished run's log to read instead")
    ap.add_argument("--top", type=int, default=10, help="slowest tests to print")
    args = ap.parse_args()
    if args.log:
        read_log(args.log.read_text(errors="replace"), args.top)
        return 0
    if not args.run:
        ap.error("give --run or --log")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_suite_")) / "clone"
    if work.exists():
        ap.error(f"{work} exists: --run clones into a new folder")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
    shared = ROOT.parent / "shared"
    beside = work.resolve().parent / "shared"
    if shared.is_dir() and not beside.exists() and args.workdir is None:
        beside.symlink_to(shared)        # the real-clip tests look for ../shared beside the clone
    if not beside.exists():
        print(f"note: no {beside}: the real-clip tests will skip, so this run is shorter than CI's")
    print(f"clone of {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()} "
          f"in {work}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    with (work / "setup.log").open("w") as log:
        rc = subprocess.run(["make", "setup"], cwd=work, stdout=log, stderr=subprocess.STDOUT).returncode
    setup = time.perf_counter() - t0
    print(f"make setup: exit {rc}, {setup:.0f} s")
    if rc:
        return rc
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with (work / "test.log").open("w") as log:
        rc = subprocess.run(["make", "test", f"TEST_WORKERS={args.workers}"], cwd=work, stdout=log,
                            stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, sys_ = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    print(f"make test: exit {rc}, {wall:.0f} s ({wall / 60:.1f} min); CPU user {user:.0f} s + system {sys_:.0f} s: "
          f"{(user + sys_) / wall:.2f} cores busy on average; log {work / 'test.log'}")
    print(f"setup + test: {(setup + wall) / 60:.1f} min, load average at the end {os.getloadavg()[0]:.1f}")
    read_log((work / "test.log").read_text(errors="replace"), args.top)
    return rc


if __name__ == "__main__":
    sys.exit(main())
