#!/usr/bin/env python
"""Where the demo's time goes (a script, not a test): job time by rule and the run's timeline.

    python benchmarks/bench_demo.py --workdir DIR           # read a finished run in DIR
    python benchmarks/bench_demo.py --run [--workdir DIR]   # clone this checkout, time `make demo`

``--run`` clones this checkout's HEAD into ``--workdir`` (default: a fresh temporary folder),
runs ``make demo`` there and prints its wall time; both forms then read the run's own records:
the Snakemake benchmark files (``logs/<rule>/**/*.tsv``: wall seconds ``s`` and ``cpu_time``
per job) and the newest Snakemake log (``.snakemake/log/``: when each job started and
finished). Printed: the pipeline's wall time from the first job's start to the last job's end,
and per rule the number of jobs, the sum of their wall and CPU seconds and when (seconds after
the first start) the rule's first job started and its last one ended. A sum of job wall times
above twice the pipeline's wall time means jobs slowed each other down on the 2 cores; CPU
seconds miss short child processes (Snakemake samples them), so read them as a lower bound.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import ROOT, parser

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")
RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):")
JOBID = re.compile(r"^\s+jobid: (\d+)")
DONE = re.compile(r"^Finished jobid: (\d+)")


def job_records(workdir: Path) -> dict[str, list[tuple[float, float]]]:
    """rule -> [(wall s, cpu s)] from the Snakemake benchmark files under ``logs/<rule>/``."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for tsv in sorted((workdir / "logs").glob("*/**/*.tsv")):
        rule = tsv.relative_to(workdir / "logs").parts[0]
        with tsv.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:
            last = rows[-1]
            try:
                out[rule].append((float(last["s"]), float(last.get("cpu_time") or "nan")))
            except (KeyError, ValueError):
                continue   # not a Snakemake benchmark file
    return out


def timeline(log: Path) -> list[tuple[str, float, float]]:
    """(rule, start s, end s) per finished job of a Snakemake log, seconds after the first start."""
    ts = None
    rule = None
    started: dict[str, tuple[str, dt.datetime]] = {}
    jobs = []
    for line in log.read_text(errors="replace").splitlines():
        if m := STAMP.match(line):
            ts = dt.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := RULE.match(line):
            rule = m.group(1)
        elif (m := JOBID.match(line)) and rule and ts:
            started[m.group(1)] = (rule, ts)
            rule = None
        elif (m := DONE.match(line)) and m.group(1) in started and ts:
            r, t0 = started[m.group(1)]
            jobs.append((r, t0, ts))
    if not jobs:
        return []
    first = min(t0 for _, t0, _ in jobs)
    return [(r, (a - first).total_seconds(), (b - first).total_seconds()) for r, a, b in jobs]


def report(workdir: Path) -> None:
    recs = job_records(workdir)
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    tl = timeline(logs[-1]) if logs else []
    span: dict[str, list[float]] = {}
    for r, a, b in tl:
        s = span.setdefault(r, [a, b])
        s[0], s[1] = min(s[0], a), max(s[1], b)
    wall = max((b for _, _, b in tl), default=float("nan"))
    print(f"run: {workdir}")
    print(f"pipeline wall (first job start -> last job end): {wall:.0f} s ({wall / 60:.1f} min), "
          f"{len(tl)} jobs in the log{f' ({logs[-1].name})' if logs else ''}")
    total_w = sum(w for v in recs.values() for w, _ in v)
    total_c = sum(c for v in recs.values() for _, c in v)
    print(f"sum of job wall {total_w:.0f} s, of job CPU {total_c:.0f} s "
          f"(average jobs running: {total_w / wall:.2f})" if wall == wall and wall > 0 else "")
    print(f"\n{'rule':18s} {'jobs':>4s} {'wall s':>8s} {'cpu s':>8s} {'first start':>12s} {'last end':>9s}")
    for rule in sorted(recs, key=lambda r: -sum(w for w, _ in recs[r])):
        v = recs[rule]
        a, b = span.get(rule, (float("nan"), float("nan")))
        print(f"{rule:18s} {len(v):4d} {sum(w for w, _ in v):8.1f} {sum(c for _, c in v):8.1f} {a:12.0f} {b:9.0f}")


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--workdir", type=Path, help="a finished run (or, with --run, where to clone)")
    ap.add_argument("--run", action="store_true", help="clone HEAD and time `make demo` first")
    args = ap.parse_args()
    if args.run:
        work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_demo_")) / "clone"
        if work.exists():
            ap.error(f"{work} exists: --run clones into a new folder")
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
        t0 = time.perf_counter()
        with (work / "demo.log").open("w") as log:
            rc = subprocess.run(["make", "demo"], cwd=work, stdout=log, stderr=subprocess.STDOUT).returncode
        took = time.perf_counter() - t0
        print(f"make demo: exit {rc}, {took:.0f} s ({took / 60:.1f} min) including the venv; log {work / 'demo.log'}")
        args.workdir = work
    if args.workdir is None or not (args.workdir / "logs").is_dir():
        ap.error("give --workdir of a finished run (with logs/) or --run")
    report(args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
