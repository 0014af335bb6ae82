"""The SLURM test's cluster run, started in the background as soon as the suite has
collected it, so that its waiting overlaps the other tests.

``tests/test_slurm.py`` compares the demo's per-video jobs run through a real one-node
SLURM cluster with a local run. Most of that run's time is waiting: the SLURM executor
plugin polls ``sacct`` at least 40 s apart after any job finishes (hard-coded in
snakemake-executor-plugin-slurm 1.4.0), and the chain demo -> manifest -> faces ->
landmarks -> ear -> blinks is six levels deep, so ~4-5 minutes pass with a core mostly
idle. Run in the test itself, that held one of ``make test``'s two workers for the whole
time. Instead, :func:`start` (called by ``tests/conftest.py`` once collection has picked
the test) launches this file as a separate process, once per test session (the first
xdist worker to get here wins a ``mkdir``); the test is ordered last, and by the time it
runs it reads the finished result (:func:`result`) and makes the same assertions on it.

Run as a script (``python tests/slurm_background.py RUN_DIR``) it does what the test's
fixture and body did: start the cluster (``scripts/slurm_local.sh start``), run the demo's
per-video chain locally and through SLURM (concurrently: the SLURM run is mostly waiting),
read ``sacct``, always stop the cluster, and write ``RUN_DIR/result.json`` atomically. Where
the cluster cannot start, the result says so and the test skips with the script's message.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import yaml

from blinkbench.core import io

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
START_TIMEOUT_S = 420  # an install from scratch (~2.5 min measured) plus the daemons
RUN_TIMEOUT_S = 1200
STOP_TIMEOUT_S = 120
# the longest the whole background run may take (the test waits at most this long)
TOTAL_TIMEOUT_S = START_TIMEOUT_S + RUN_TIMEOUT_S + STOP_TIMEOUT_S + 60
TEST_FILE = "test_slurm.py"
RESULT = "result.json"

# The demo's per-video chain on two short videos: demo, manifest, faces, landmarks, ear, blinks.
TINY = {
    "datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"}},
    "demo": {"n_real": 1, "n_fake": 1, "duration_s": 3.0, "fps": [25, 30], "size": 160},
    "faces": {"crops": {"n_per_video": 2, "size": 64}},
    "attacks": {"enabled": False},
    "blink_attacks": {"enabled": False},
}
UNTIL = ["manifest", "blinks"]  # --until: these rules and what they need, nothing after


# ------------------------------------------------------------------ in pytest

def run_dir(config) -> Path:
    """The run's folder, the same for every xdist worker of one session: beside the
    workers' own temporary folders (pytest removes old sessions' folders)."""
    base = config._tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return shared / "slurm-background"


def start(config, items) -> None:
    """Launch the background run if the session's selected tests include the SLURM test
    and no other process of this session has launched it; the launching process waits for
    it when its session ends. Past :data:`TOTAL_TIMEOUT_S` it is sent SIGTERM, on which it
    still stops the cluster (:func:`main`), and killed if that does not end it."""
    if config.option.collectonly or not any(it.path.name == TEST_FILE for it in items):
        return
    d = run_dir(config)
    try:
        d.mkdir()
    except FileExistsError:     # another worker of this session launched it
        return
    t0 = time.monotonic()
    with open(d / "background.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(d)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=d)

    def reap() -> None:
        try:
            proc.wait(timeout=max(1.0, TOTAL_TIMEOUT_S - (time.monotonic() - t0)))
            return
        except subprocess.TimeoutExpired:
            proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    config.add_cleanup(reap)


def result(config) -> dict:
    """The background run's result, waiting for it (at most :data:`TOTAL_TIMEOUT_S`)."""
    d = run_dir(config)
    path = d / RESULT
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    while not path.exists():
        if not d.exists():
            raise RuntimeError(f"the SLURM background run was never started ({d} missing)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path} after {TOTAL_TIMEOUT_S} s; see {d / 'background.log'}")
        time.sleep(1.0)
    res = json.loads(path.read_text())
    res["dir"] = str(d)
    return res


# ------------------------------------------------------------------ the run itself

def _free_port_block(n: int = 4) -> int:
    """First base port in 17000..17990 with n consecutive free loopback ports."""
    for base in range(17000, 18000, 10):
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def _snakemake_cmd(work: Path, *args: str) -> list[str]:
    (work / "params.yaml").write_text(yaml.safe_dump(TINY))
    return [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(work / "params.yaml"), "--until", *UNTIL, *args]


def _done(rc: int | None, out: str | None, err: str | None) -> dict:
    return {"rc": rc, "log": (out or "") + (err or "")}


def run(d: Path) -> dict:
    cluster = d / "cluster"
    cluster.mkdir(exist_ok=True)
    env = {**os.environ, "SLURM_LOCAL_DIR": str(cluster), "SLURM_LOCAL_PORT": str(_free_port_block())}
    res: dict = {}
    try:
        try:
            r = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True,
                               timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            res["skip"] = f"SLURM cannot be started here: scripts/slurm_local.sh start took over {START_TIMEOUT_S}s"
            return res
        if r.returncode != 0:
            why = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no message"]
            res["skip"] = f"SLURM cannot be started here: {why[0]} (full output: {r.stdout}{r.stderr})"
            return res
        env = {**env, "SLURM_CONF": str(cluster / "slurm.conf"), "PATH": f"{BIN}{os.pathsep}{env['PATH']}"}
        env.setdefault("USER", getpass.getuser())  # the plugin reads $USER; CI shells may lack it
        local, slurm = d / "local", d / "slurm"
        local.mkdir(), slurm.mkdir()
        # the SLURM run mostly waits on sacct polls: the local run goes meanwhile
        sp = subprocess.Popen(_snakemake_cmd(slurm, "--profile", str(ROOT / "profiles/slurm"),
                                             "--slurm-init-seconds-before-status-checks", "5"),
                              cwd=slurm, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            r = subprocess.run(_snakemake_cmd(local, "--cores", "1"), cwd=local, env=env, capture_output=True,
                               text=True, timeout=RUN_TIMEOUT_S)
            res["local"] = _done(r.returncode, r.stdout, r.stderr)
            out, err = sp.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            sp.kill()
            out, err = sp.communicate()
            res["timeout"] = f"a snakemake run took over {RUN_TIMEOUT_S} s"
        res["slurm"] = _done(sp.returncode, out, err)
        acct = subprocess.run(["sacct", "-X", "-n", "-P", "--format=JobIDRaw,State", "--starttime", "now-3hours"],
                              env=env, capture_output=True, text=True)
        res["sacct"] = acct.stdout + acct.stderr
        return res
    except Exception:
        res["error"] = traceback.format_exc()
        return res
    finally:
        try:
            stop = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True,
                                  timeout=STOP_TIMEOUT_S)
            res["stop"] = _done(stop.returncode, stop.stdout, stop.stderr)
        except subprocess.TimeoutExpired:
            res["stop"] = {"rc": None, "log": f"scripts/slurm_local.sh stop took over {STOP_TIMEOUT_S} s"}


def _terminated(signum, frame):
    raise SystemExit(128 + signum)     # unwinds through run()'s finally: the cluster is stopped


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    d = Path(argv[1])
    t0 = time.monotonic()
    try:
        res = run(d)
    except SystemExit as e:     # SIGTERM: run() stopped the cluster on the way out
        res = {"error": f"the background run was terminated (exit {e.code}); see {d / 'background.log'}"}
    res["seconds"] = round(time.monotonic() - t0, 1)
    io.write_json(res, d / RESULT)     # atomic: the test waits for this name, never half-written
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
