"""Where did an artifact come from, and is what is on disk still what was recorded?

    blinkbench lineage data/reports/metrics.json:blink_detectors.tsf.demo.demo.auc
    blinkbench lineage data/models/blink/tsf/demo.zip --json
    blinkbench audit                     # exit 1 when anything is stale, edited or missing

The record is ``dvc.lock`` (written by ``dvc repro`` or, after a Snakemake run, by
``make record``): for each stage its command, the params values it read, and the hashes of
its inputs (data and code) and outputs. ``lineage`` walks it from the stage that produced the
artifact back to the raw videos (with the sha256 the manifest recorded for each) and adds
the code version (git commit, dirty flag, package version), the library versions, the model
files' hashes, host and time of the query. ``audit`` compares every recorded hash with the
files now (DVC's status): an output whose inputs did not change but whose content did was
edited by hand; a stage whose code, data or params changed is stale; a recorded output that
is gone is missing.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from blinkbench import __version__

LIBRARIES = ("mediapipe", "torch", "torchvision", "onnxruntime", "opencv-contrib-python", "scikit-learn", "sktime",
             "tslearn", "timm", "foolbox", "lightning", "numpy", "av", "dvc", "snakemake")


def _lock(root: Path) -> dict:
    f = root / "dvc.lock"
    if not f.exists():
        raise FileNotFoundError(f"{f} not found: run `dvc repro`, or `make record` after a Snakemake run")
    return yaml.safe_load(f.read_text()).get("stages", {})


def _inside(path: str, out: str) -> bool:
    return path == out or path.startswith(out.rstrip("/") + "/")


def _producers(stages: dict, path: str) -> list[str]:
    """The stages whose output is path or a folder holding it; else, for a folder dependency
    such as the report's data/ear, every stage whose output lies inside it."""
    outs = [(name, o["path"]) for name, st in stages.items() for o in st.get("outs", [])]
    holding = [name for name, out in outs if _inside(path, out)]
    return holding or sorted({name for name, out in outs if _inside(out, path)})


def environment(root: Path) -> dict:
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    versions = {}
    for lib in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[lib] = importlib.metadata.version(lib)
    return {"git_commit": git("rev-parse", "HEAD") or None, "git_dirty": bool(git("status", "--porcelain")),
            "blinkbench": __version__, "python": platform.python_version(), "libraries": versions,
            "host": platform.node(), "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _videos(root: Path, stages: dict, raw_paths: set[str]) -> list[dict]:
    """Input videos under the raw data folders of the chain, with the sha256 their
    dataset manifest recorded."""
    import pandas as pd

    videos = []
    for name, st in stages.items():
        if not name.startswith("manifest"):
            continue
        for o in st.get("outs", []):
            f = root / o["path"]
            if not f.exists():
                continue
            df = pd.read_parquet(f, columns=["dataset", "video_id", "path", "sha256", "status"])
            for r in df.itertuples():
                if any(_inside(r.path, p) for p in raw_paths):
                    videos.append({"dataset": r.dataset, "video_id": r.video_id, "path": r.path,
                                   "sha256": r.sha256, "status": r.status})
    return videos


def lineage(target: str, root: Path = Path(".")) -> dict:
    """The chain that produced target (a path, or ``FILE.json:dotted.key`` for one metric)."""
    root = Path(root)
    stages = _lock(root)
    path, _, key = target.partition(":")
    path = Path(path).as_posix().removeprefix("./")
    out: dict = {"artifact": path}
    if key:
        value = json.loads((root / path).read_text())
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(f"{key!r} not in {path}")
            value = value[part]
        out.update(metric=key, value=value)
    seen: dict[str, dict] = {}
    raw: set[str] = set()
    models: dict[str, str] = {}

    def visit(name: str) -> None:
        if name in seen:
            return
        st = stages[name]
        seen[name] = step = {"stage": name, "cmd": st.get("cmd"), "params": st.get("params", {}).get("params.yaml", {}),
                             "outs": {x["path"]: x.get("md5") for x in st.get("outs", [])}, "code": {}, "inputs": []}
        for d in st.get("deps", []):
            p = d["path"]
            if p.startswith("src/"):
                step["code"][p] = d.get("md5")
                continue
            if "/models/" in p or p.endswith((".zip", ".onnx", ".tflite", ".h5", ".pt")):
                models[p] = d.get("md5")
            producers = _producers(stages, p)
            if not producers:
                raw.add(p)
            step["inputs"].append({"path": p, "md5": d.get("md5"), "from": producers})
            for prod in producers:
                visit(prod)

    producers = _producers(stages, path)
    if not producers:
        raise LookupError(f"{path}: no stage in dvc.lock produced it")
    for name in producers:
        visit(name)
    out["produced_by"] = producers
    out["steps"] = list(seen.values())
    for name, st in seen.items():  # model outputs of the chain itself (trained detectors)
        for p, md5 in st["outs"].items():
            if "/models/" in p:
                models[p] = md5
    out["models"] = models
    # raw data: dataset roots that no stage produced, and the demo stage's generated videos
    if "demo" in seen:
        raw |= set(seen["demo"]["outs"])
    out["videos"] = _videos(root, stages, raw)
    out["environment"] = environment(root)
    return out


def render_tree(info: dict) -> str:
    lines = [f"{info['artifact']}" + (f" : {info['metric']} = {info['value']}" if "metric" in info else "")]
    steps = {s["stage"]: s for s in info["steps"]}
    printed: set[str] = set()

    def walk(name: str, depth: int) -> None:
        s = steps[name]
        pad = "  " * depth
        lines.append(f"{pad}<- {name}: {s['cmd']}")
        if name in printed:
            lines.append(f"{pad}   (shown above)")
            return
        printed.add(name)
        if s["params"]:
            lines.append(f"{pad}   params: {json.dumps(s['params'], sort_keys=True)}")
        for i in s["inputs"]:
            if i["from"]:
                for prod in i["from"]:
                    walk(prod, depth + 1)
            else:
                lines.append(f"{pad}   <- {i['path']} (input, md5 {i['md5']})")

    for name in info["produced_by"]:
        walk(name, 1)
    lines.append(f"videos ({len(info['videos'])}):")
    lines += [f"  {v['path']}  sha256 {v['sha256']}  {v['status']}" for v in info["videos"]]
    lines.append("models:")
    lines += [f"  {p}  md5 {h}" for p, h in sorted(info["models"].items())]
    env = info["environment"]
    lines.append(f"code: git {env['git_commit']}{' (dirty)' if env['git_dirty'] else ''}, blinkbench {env['blinkbench']}, "
                 f"python {env['python']}")
    lines.append("libraries: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()))
    lines.append(f"host {env['host']}, {env['time']}")
    return "\n".join(lines)


@contextlib.contextmanager
def dvc_repo(root: Path):
    """DVC's Python API opened on ``root`` (the working directory is ``root`` meanwhile: DVC
    resolves some paths, such as the run cache, against it).

    ``import dvc`` binds DVC's log handlers to the ``sys.stdout``/``sys.stderr`` of that moment.
    In a process whose streams were replaced since (a test runner capturing output per test, a
    notebook), DVC's first log line would go to a closed stream and DVC turns that logging error
    into a failed stage. Point the handlers at the current streams before using the API."""
    import logging

    from dvc.repo import Repo

    for name in ("dvc", "dvc_objects", "dvc_data"):
        for h in logging.getLogger(name).handlers:
            if isinstance(h, logging.StreamHandler):
                # not setStream(): it flushes the old stream, which may be closed
                h.stream = sys.stderr if h.level >= logging.WARNING else sys.stdout
    with contextlib.chdir(root), Repo(".") as repo:
        yield repo


def audit(root: Path = Path(".")) -> list[dict]:
    """Every recorded artifact whose files no longer match dvc.lock: stale (its code, data
    or params changed), edited (its content changed while its inputs did not) or missing."""
    recorded = {o["path"]: o.get("md5") for st in _lock(root).values() for o in st.get("outs", [])}
    problems = []
    with dvc_repo(root) as repo:
        status = repo.status()
    for stage, changes in sorted(status.items()):
        inputs_changed = False
        outs: dict[str, str] = {}
        for ch in changes:
            if not isinstance(ch, dict):
                if ch == "changed checksum":  # dvc.yaml's stage definition differs from the lock
                    problems.append({"stage": stage, "path": "dvc.yaml", "problem": "stale", "why": "stage definition changed"})
                continue
            for kind, items in ch.items():
                if kind == "changed deps":
                    inputs_changed = True
                    for p, what in items.items():
                        why = ", ".join(f"{k} {v}" for k, v in what.items()) if isinstance(what, dict) else what
                        problems.append({"stage": stage, "path": p, "problem": "stale", "why": f"input {why}"})
                elif kind == "changed outs":
                    outs.update(items)
        for p, what in outs.items():
            if what in ("deleted", "not in cache") and not (Path(root) / p).exists():
                problems.append({"stage": stage, "path": p, "problem": "missing", "why": "recorded output is gone"})
            elif not inputs_changed:
                for f, why in _changed_files(Path(root), recorded.get(p), p):
                    problems.append({"stage": stage, "path": f, "problem": "missing" if why == "deleted" else "edited",
                                     "why": f"output {why}, inputs unchanged"})
    return problems


def _changed_files(root: Path, md5: str | None, out: str) -> list[tuple[str, str]]:
    """The files of a changed output folder that differ from the recorded listing (DVC's
    .dir object in the cache), or the output itself when that listing is not at hand."""
    import hashlib

    listing = root / ".dvc/cache/files/md5" / (md5 or "xx")[:2] / (md5 or "")[2:]
    if not md5 or not md5.endswith(".dir") or not listing.exists():
        return [(out, "modified")]
    recorded = {e["relpath"]: e["md5"] for e in json.loads(listing.read_text())}
    now = {f.relative_to(root / out).as_posix(): f for f in (root / out).rglob("*") if f.is_file()}
    changed = [(f"{out}/{rel}", "deleted") for rel in sorted(set(recorded) - set(now))]
    changed += [(f"{out}/{rel}", "added") for rel in sorted(set(now) - set(recorded))]
    for rel in sorted(set(now) & set(recorded)):
        if hashlib.md5(now[rel].read_bytes()).hexdigest() != recorded[rel]:
            changed.append((f"{out}/{rel}", "modified"))
    return changed or [(out, "modified")]
