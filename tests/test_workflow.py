"""Snakemake and DVC: both describe the same steps; a complete run leaves nothing to do;
a blink parameter change reruns blinks and what follows, never landmarks; a new video runs
only its own per-video jobs; the demo's ground-truth blinks are found.

The end-to-end tests (marked slow) run the real workflow on a tiny demo config in a
temporary folder; they take a few minutes on 2 cores and run in CI."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from blinkbench.core import io, paths
from blinkbench.spine.steps import STEPS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
PER_VIDEO = [s for s, spec in STEPS.items() if spec.per_video]


# ------------------------------------------------------------------ same stages, both tools

def _dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _snakemake_rules() -> dict[str, dict]:
    """rule name -> {shell, params} read from rules/*.smk (Snakemake's own --list-rules
    confirms the names)."""
    rules = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^rule |^checkpoint |\Z)", text, re.S | re.M):
            body = m.group(2)
            shell = "".join(re.findall(r'"([^"]*)"', body.split("shell:")[1])) if "shell:" in body else ""
            step_params = re.search(r'step_params\("(\w+)"\)', body)
            rules[m.group(1)] = {"shell": shell, "step_params": step_params.group(1) if step_params else None}
    return rules


def test_dvc_yaml_is_generated_from_the_step_table():
    """dvc.yaml is `blinkbench dvc-yaml`'s output for the project's params.yaml: it cannot
    drift from the table (nor from the model files params names)."""
    from blinkbench.core import config, dvcgen

    params = config.load(ROOT / "params.yaml")
    assert dvcgen.check(params, ROOT / "dvc.yaml") is None, "dvc.yaml is stale: run `blinkbench dvc-yaml`"
    r = subprocess.run([str(BIN / "blinkbench"), "validate-params", "params.yaml", "--dvc-yaml", "dvc.yaml"], cwd=ROOT,
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr


def test_every_dvc_param_key_is_in_params_yaml():
    """DVC reads params.yaml literally (no schema defaults): a key a stage tracks must be
    written there, or DVC cannot record the stage."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in _dvc_stages().items():
        for key in stage.get("do", stage).get("params", []):
            if isinstance(key, dict) or "${" in key:
                continue
            cur = raw
            for part in key.split("."):
                assert isinstance(cur, dict) and part in cur, f"stage {name} tracks {key}, absent from params.yaml"
                cur = cur[part]


def test_dvc_yaml_names_the_model_files_params_name(tmp_path):
    """Model files named in params (PFLD, frame checkpoints) are deps of the stages that read
    them; a stale dvc.yaml (params changed, not regenerated) stops the validation stage."""
    from blinkbench.core import config, dvcgen

    params = config.load(ROOT / "params.yaml")
    params["landmarks"].update(backend="pfld", pfld_model="models/pfld.onnx")
    fd = params["frame_detectors"]
    fd["hyper"][fd["enabled"][0]] = {**fd["hyper"].get(fd["enabled"][0], {}), "checkpoint": "models/ckpt.pt"}
    stages = yaml.safe_load(dvcgen.render(params))["stages"]
    deps = {n: s.get("do", s)["deps"] for n, s in stages.items()}
    for name in ("landmarks", "rescore", "rescore_clean", "ear_attack", "landmark_breaker"):
        assert "models/pfld.onnx" in deps[name], name
    assert "models/ckpt.pt" in deps["train_frame"]
    assert not any("models/pfld.onnx" in d or "models/ckpt.pt" in d for n, d in deps.items()
                   if n not in ("landmarks", "rescore", "rescore_clean", "ear_attack", "landmark_breaker", "train_frame"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    check = [str(BIN / "blinkbench"), "validate-params", "params.yaml", "--dvc-yaml", "dvc.yaml"]
    r = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, env=ENV)
    assert r.returncode == 1 and "blinkbench dvc-yaml" in r.stderr, r.stdout + r.stderr
    r = subprocess.run([str(BIN / "blinkbench"), "dvc-yaml"], cwd=tmp_path, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    assert subprocess.run(check, cwd=tmp_path, capture_output=True, text=True, env=ENV).returncode == 0


def test_dvc_and_snakemake_describe_the_same_steps():
    dvc = _dvc_stages()
    dvc.pop(GUARD)  # DVC only: checks params.yaml before any command is built from it
    smk = _snakemake_rules()
    dvc_names = {st.name or name for name, spec in STEPS.items() for st in spec.dvc}
    assert set(dvc) == dvc_names, "dvc.yaml stages differ from the step table"
    assert set(smk) == set(STEPS), "rules/*.smk rules differ from the step table"
    for name, spec in STEPS.items():
        # every rule runs its step's command; rules that read params take them from the table
        assert smk[name]["shell"].startswith(f"blinkbench {name} "), smk[name]["shell"]
        assert smk[name]["step_params"] == (name if spec.params else None), (
            f"rule {name} must declare its params via step_params('{name}') (and only then)")
        for st in spec.dvc:
            stage = dvc[st.name or name]
            body = stage.get("do", stage)
            assert body["cmd"].startswith(f"blinkbench {name} "), body["cmd"]
            want = {p.replace("{dataset}", "${key}") for p in (spec.params if st.params is None else st.params)}
            assert set(body.get("params", [])) == want | set(st.extra_params)
            assert ("foreach" in stage) == (spec.per_video or name == "manifest")
            if spec.per_video:
                assert "--dataset ${key}" in body["cmd"]
                outs = {next(iter(o)) if isinstance(o, dict) else o for o in body["outs"]}
                for kind in spec.outputs:
                    folder = Path(paths.PATTERNS[kind]).parent.as_posix().replace("{dataset}", "${key}")
                    assert folder in outs, f"dvc stage {name} lacks out {folder}"
            if name.startswith(("train_", "evaluate_")):
                axes = {"detector", "train"} | ({"test"} if name.startswith("evaluate_") else set())
                assert set(stage["matrix"]) == axes
                for ax in axes:
                    assert f"--{ax} ${{item.{ax}}}" in body["cmd"] and f"--{ax} {{wildcards.{ax}}}" in smk[name]["shell"]
                outs = {o if isinstance(o, str) else next(iter(o)) for o in body["outs"]}
                assert outs == {paths.PATTERNS[k].replace("{", "${item.") for k in spec.outputs}
    # The study differs in granularity only: Snakemake compresses per video, DVC's attack
    # stage writes the compressions, and DVC has separate stages for the clean reference.
    assert {n for n, s in STEPS.items() if not s.dvc} == {"compress"}
    for clean in ("attack_clean", "rescore_clean"):
        assert "--target clean --method none --eps 0" in dvc[clean]["cmd"]


def test_snakemake_lists_the_same_rules():
    r = subprocess.run([str(BIN / "snakemake"), "--list-rules"], cwd=ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    names = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}  # "name (docstring)"
    assert names == set(STEPS) | {"all"}


def test_snakemake_lint_clean():
    r = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Lints for" not in r.stdout + r.stderr, r.stdout + r.stderr


def _profile(name: str) -> dict:
    return yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())


def test_a_source_copied_with_a_new_mtime_but_the_same_bytes_reruns_nothing(tmp_path):
    """The project's Snakemake profile on a one-rule workflow: a 3 MB source (a real clip's
    size, over Snakemake's own 1 MB checksum limit) given a newer modification time with
    the same bytes, as a fresh copy of ``../shared`` or a dataset has, reruns nothing;
    changed bytes rerun. Both profiles set the same limit."""
    limit = _profile("default")["max-checksum-file-size"]
    assert _profile("slurm")["max-checksum-file-size"] == limit
    src = tmp_path / "clip.mp4"
    size = 3_000_000
    assert 1_000_000 < size <= limit
    src.write_bytes(random.Random(0).randbytes(size))
    (tmp_path / "Snakefile").write_text('rule copy:\n    input: "clip.mp4"\n    output: "out/clip.bin"\n'
                                        '    shell: "cp {input} {output}"\n')

    def smk(*args: str) -> str:
        r = subprocess.run([str(BIN / "snakemake"), "--profile", str(ROOT / "profiles/default"), "--cores", "1",
                            *args], cwd=tmp_path, capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout + r.stderr

    smk()
    assert (tmp_path / "out/clip.bin").read_bytes() == src.read_bytes()
    later = (tmp_path / "out/clip.bin").stat().st_mtime + 60
    os.utime(src, (later, later))
    assert "Nothing to be done" in smk("-n")
    src.write_bytes(random.Random(1).randbytes(size))
    os.utime(src, (later, later))
    assert "Updated input files: clip.mp4" in smk("-n")


# ------------------------------------------------------------------ end to end (slow)

TINY = {
    "datasets": {"demo": {"adapter": "folder", "root": "data/raw/demo"},
                 "extra": {"adapter": "folder", "root": "extra"}},
    "demo": {"n_real": 2, "n_fake": 2, "duration_s": 4.0, "fps": [25, 30], "size": 192},
    "faces": {"crops": {"n_per_video": 4, "size": 64}},
    "report": {"ear_plots": 2},
    # two cheap detectors that train on the tiny demo's one real and one fake training video
    # (MiniRocket's calibration needs two per class: its training would be recorded as failed)
    # the tiny demo's clips are 4 s: below the default verdict minimum (7 s of face), so it
    # is lowered here to keep them judged (abstention has its own tests in test_abstain.py)
    "detectors": {"enabled": ["blink_rate_rule", "tsf"], "train_on": ["demo"], "test_on": ["demo", "extra"],
                  "min_face_s": 3.0, "hyper": {"tsf": {"n_estimators": 20}}},
    "frame_detectors": {"enabled": ["block_dct"], "train_on": ["demo"], "test_on": ["demo"]},
    # the attacks are tested in test_protocol.py / test_attacks.py / test_blink_attacks.py
    "attacks": {"enabled": False},
    "blink_attacks": {"enabled": False},
}


def _smk(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "params.yaml"), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=work)


def _planned(work: Path) -> Counter:
    """Jobs a dry run would execute, per rule."""
    r = _smk(work, "-n", "--quiet", "rules")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    jobs = Counter()
    table = out.split("Job stats:")[-1] if "Job stats:" in out else ""
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) not in ("total", "all"):
            jobs[m.group(1)] = int(m.group(2))
    return jobs


@pytest.fixture(scope="module")
def snake_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("smk")
    first = {**TINY, "datasets": {"demo": TINY["datasets"]["demo"]}, "detectors": {**TINY["detectors"], "test_on": ["demo"]}}
    (work / "params.yaml").write_text(yaml.safe_dump(first))
    r = _smk(work, "--until", "demo")
    assert r.returncode == 0, r.stdout + r.stderr
    # "extra": a folder dataset of copies of two demo videos, to which a test adds a third.
    (work / "params.yaml").write_text(yaml.safe_dump(TINY))
    for label, name in (("real", "demo_real_00"), ("fake", "demo_fake_00")):
        src = next((work / "data/raw/demo" / label).glob(f"{name}*.mp4"))
        (work / "extra" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, work / "extra" / label / f"clip_{label}.mp4")
    r = _smk(work)
    assert r.returncode == 0, r.stdout + r.stderr
    return work


@pytest.mark.slow
def test_snakemake_complete_run_then_nothing_to_do(snake_run):
    work = snake_run
    assert (work / paths.PATTERNS["report"]).exists()
    metrics = json.loads((work / paths.PATTERNS["metrics"]).read_text())
    assert metrics["demo"]["videos"] == 4 and metrics["demo"]["ok"] == 4
    # every (detector, train, test) evaluated; the rule baseline separates the demo's test pair
    det = metrics["blink_detectors"]
    assert set(det) == {"blink_rate_rule", "tsf"}
    assert set(det["tsf"]["demo"]) == {"demo", "extra"}
    assert det["blink_rate_rule"]["demo"]["demo"]["n"] == 2 and det["blink_rate_rule"]["demo"]["demo"]["auc"] == 1.0
    assert (work / "data/reports/roc/blink__tsf__demo__demo.csv").exists()
    assert set(metrics["frame_detectors"]) == {"block_dct"}
    assert _planned(work) == Counter()


@pytest.mark.slow
def test_demo_ground_truth_blinks_found(snake_run):
    truth = json.loads((snake_run / paths.PATTERNS["metrics"]).read_text())["demo"]["blink_truth"]
    print(f"\ndemo blink recovery: {truth}")
    assert truth["truth_events"] > 0
    assert truth["recall"] >= 0.9 and truth["precision"] >= 0.9


@pytest.mark.slow
def test_snakemake_blink_param_change_reruns_blinks_not_landmarks(snake_run):
    work = snake_run
    cfg = yaml.safe_load((work / "params.yaml").read_text())
    cfg["blinks"] = {"min_blink_ms": 60}
    (work / "params.yaml").write_text(yaml.safe_dump(cfg))
    try:
        n_videos = 4 + 2
        # blink events and everything downstream of them (detectors trained and tested on
        # their summaries), never landmarks
        # (best-of selection refits on the blink series too: one per training dataset)
        assert _planned(work) == Counter({"blinks": n_videos, "train_blink": 2, "evaluate_blink": 4,
                                          "select_blink": 1, "report": 1})
        lm = work / paths.path("landmarks", dataset="demo", video="real_demo_real_00")
        before = lm.stat().st_mtime_ns
        assert _smk(work).returncode == 0
        assert lm.stat().st_mtime_ns == before
        assert _planned(work) == Counter()
    finally:
        cfg.pop("blinks")
        (work / "params.yaml").write_text(yaml.safe_dump(cfg))
        assert _smk(work).returncode == 0


@pytest.mark.slow
def test_snakemake_new_video_runs_only_its_jobs(snake_run):
    work = snake_run
    src = next((work / "data/raw/demo/real").glob("demo_real_01*.mp4"))
    shutil.copy(src, work / "extra/real/clip_new.mp4")
    # its per-video jobs, and re-evaluating the models on "extra" (not retraining: train_on is demo)
    want = Counter({"manifest": 1, **{s: 1 for s in PER_VIDEO}, "evaluate_blink": 2, "report": 1})
    assert _planned(work) == want
    r = _smk(work)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (work / paths.path("blinks", dataset="extra", video="real_clip_new")).exists()
    assert _planned(work) == Counter()


@pytest.mark.slow
def test_snakemake_bad_video_is_a_status_and_the_run_goes_on(snake_run):
    work = snake_run
    (work / "extra/fake/broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + random.Random(0).randbytes(2000))  # seeded
    try:
        r = _smk(work)
        assert r.returncode == 0, r.stdout + r.stderr
        table = (work / paths.path("dataset_summary", dataset="extra")).read_text()
        assert "fake_broken" in table and "unreadable" in table
        assert "unreadable" in (work / paths.PATTERNS["report"]).read_text()
    finally:
        (work / "extra/fake/broken.mp4").unlink()
        assert _smk(work).returncode == 0


# ------------------------------------------------------------------ DVC (slow)

def _dvc(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dvc"), *args], cwd=work, capture_output=True, text=True, env=ENV)


@pytest.mark.slow
def test_dvc_repro_status_and_incremental(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # DVC tracks params keys literally, so start from the project's full params.yaml.
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key in ("demo", "report"):
        cfg[key] = TINY[key]
    cfg["faces"]["crops"] = TINY["faces"]["crops"]
    cfg["datasets"] = {"demo": TINY["datasets"]["demo"]}
    # DVC tracks params keys literally: keep every key of the project's sections
    cfg["detectors"] = {**cfg["detectors"], **TINY["detectors"], "test_on": ["demo"]}
    cfg["frame_detectors"] = {**cfg["frame_detectors"], **TINY["frame_detectors"]}
    # DVC's study matrices empty: only the (cheap) clean reference runs, without compressions
    cfg["attacks"] = {**cfg["attacks"], "targets": [], "methods": [], "eps": [], "compressions": []}
    cfg["defence"] = {**cfg["defence"], "detectors": []}   # DVC matrix: no CNN is trained here
    cfg["blink_attacks"] = {**cfg["blink_attacks"], "modes": [],
                            "landmark_breaker": {"n_crops": 1, "attacks": ["fgsm"], "conditions": ["none"]}}
    (work / "params.yaml").write_text(yaml.safe_dump(cfg))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"], ["git", "config", "user.name", "t"]):
        subprocess.run(cmd, cwd=work, check=True)
    assert _dvc(work, "init", "-q").returncode == 0
    assert _dvc(work, "repro", "demo").returncode == 0
    # "extra": a plain folder dataset (a DVC dependency, not an output) with two videos.
    for label, name in (("real", "demo_real_00"), ("fake", "demo_fake_00")):
        (work / "extra" / label).mkdir(parents=True)
        shutil.copy(next((work / "data/raw/demo" / label).glob(f"{name}*.mp4")), work / "extra" / label / "clip.mp4")
    cfg["datasets"]["extra"] = TINY["datasets"]["extra"]
    (work / "params.yaml").write_text(yaml.safe_dump(cfg))
    r = _dvc(work, "repro")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "up to date" in _dvc(work, "status").stdout.lower()
    metrics = _dvc(work, "metrics", "show", "--json")
    assert metrics.returncode == 0 and "blink_truth" in metrics.stdout and "tsf" in metrics.stdout
    plots = _dvc(work, "plots", "show", "--json")
    assert plots.returncode == 0 and "blink__tsf__demo__demo.csv" in plots.stdout

    # Determinism: retraining and re-evaluating from scratch gives byte-identical outputs,
    # so the hashes in dvc.lock do not move.
    lock = (work / "dvc.lock").read_text()
    for stage in ("train_blink@tsf-demo", "evaluate_blink@tsf-demo-demo"):
        r = _dvc(work, "repro", "--force", "--single-item", stage)
        assert r.returncode == 0, r.stdout + r.stderr
    assert (work / "dvc.lock").read_text() == lock

    # A blink parameter: blinks and report rerun, landmarks do not.
    lm = work / paths.path("landmarks", dataset="demo", video="real_demo_real_00")
    before = lm.stat().st_mtime_ns
    cfg["blinks"]["min_blink_ms"] = 60
    (work / "params.yaml").write_text(yaml.safe_dump(cfg))
    status = _dvc(work, "status").stdout
    assert "blinks@demo" in status and "landmarks@demo" not in status and "faces@demo" not in status
    r = _dvc(work, "repro")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Running stage 'blinks@demo'" in r.stdout and "Running stage 'landmarks@demo'" not in r.stdout
    assert lm.stat().st_mtime_ns == before
    assert "up to date" in _dvc(work, "status").stdout.lower()

    # A new video: the dataset's stages rerun, but only the new video is processed.
    faces_dir = work / "data/faces/extra"
    faces_before = {p.name: p.stat().st_mtime_ns for p in faces_dir.glob("*.parquet")}
    shutil.copy(work / "extra/real/clip.mp4", work / "extra/real/added.mp4")
    r = _dvc(work, "repro")
    assert r.returncode == 0, r.stdout + r.stderr
    faces_after = {p.name: p.stat().st_mtime_ns for p in faces_dir.glob("*.parquet")}
    assert set(faces_after) == set(faces_before) | {"real_added.parquet"}
    assert all(faces_after[k] == v for k, v in faces_before.items()), "existing videos were recomputed"
    assert io.read_meta(faces_dir / "real_added.parquet")["status"] == "ok"
    assert "up to date" in _dvc(work, "status").stdout.lower()


# ------------------------------------------------------------------ params never reach a shell unchecked

GUARD, GUARD_OUT = "validate_params", "logs/dvc/params_valid.txt"


def test_every_dvc_stage_waits_for_params_validation():
    """DVC builds commands from params.yaml (${key}, ${item.*}) and runs them without
    checking anything: every stage depends on the stage that validates the whole file."""
    stages = _dvc_stages()
    guard = stages[GUARD]
    assert "${" not in guard["cmd"] and "blinkbench validate-params params.yaml" in guard["cmd"]
    assert guard["params"] == [{"params.yaml": None}]  # the whole file, every key
    assert [next(iter(o)) for o in guard["outs"]] == [GUARD_OUT]
    for name, stage in stages.items():
        if name != GUARD:
            assert GUARD_OUT in stage.get("do", stage)["deps"], f"stage {name} can run before params are validated"


def _dvc_repo(work: Path, cfg: dict) -> None:
    work.mkdir()
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", work / ".dvcignore")
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / "params.yaml").write_text(yaml.safe_dump(cfg))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"], ["git", "config", "user.name", "t"]):
        subprocess.run(cmd, cwd=work, check=True)
    assert _dvc(work, "init", "-q").returncode == 0


@pytest.mark.slow
def test_dvc_never_runs_a_command_built_from_an_invalid_name(tmp_path):
    """A dataset named like a shell command (issue 13): DVC stops at the validation stage;
    --keep-going, so no other stage that does not depend on it would run either."""
    work = tmp_path / "repo"
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "repo_extra").mkdir()
    cfg["datasets"]["demo; touch PWNED #"] = {"adapter": "folder", "root": "../repo_extra"}
    _dvc_repo(work, cfg)
    r = _dvc(work, "repro", "--keep-going")
    assert r.returncode != 0
    assert not (work / "PWNED").exists(), "a params value ran as a shell command"
    assert f"Running stage '{GUARD}'" in r.stdout and "Running stage 'manifest@" not in r.stdout, r.stdout


def test_dvc_ignores_atomic_write_temporaries(tmp_path):
    """A writer killed mid-write leaves .<name>.tmp-<pid>.<ext> in an output folder
    (blinkbench.core.io.atomic_path): never part of what DVC hashes."""
    work = tmp_path / "repo"
    _dvc_repo(work, {"datasets": {}})
    tmp = "data/faces/demo/.real_demo_real_00.tmp-4242.parquet"
    r = _dvc(work, "check-ignore", tmp, "data/crops/demo/.real_a.tmp-7.npz")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _dvc(work, "check-ignore", "data/faces/demo/real_demo_real_00.parquet").returncode != 0


# ------------------------------------------------------------------ params fixed per run

@pytest.mark.slow
def test_dry_run_lint_and_other_config_never_change_a_runs_params(tmp_path):
    """Snakemake wrote logs/params.yaml while parsing, even for -n and --lint: another
    --config then changed the params of jobs already running. Each config now has its own
    file, named by its content hash and never rewritten; a dry run writes none."""
    work = tmp_path / "w"
    work.mkdir()
    cfg = {**TINY, "datasets": {"demo": TINY["datasets"]["demo"]}, "detectors": {**TINY["detectors"], "test_on": ["demo"]}}
    (work / "params.yaml").write_text(yaml.safe_dump(cfg))

    def params_files(r):
        return re.findall(r"--params (\S+)", r.stdout + r.stderr)

    r = _smk(work, "--until", "demo", "-p")
    assert r.returncode == 0, r.stdout + r.stderr
    used = set(params_files(r))
    assert len(used) == 1, used
    running = work / used.pop()
    assert running.parent == work / "logs/params"
    before = running.read_bytes()
    assert yaml.safe_load(before)["demo"] == {**cfg["demo"]}  # the job read this run's config

    (work / "other.yaml").write_text(yaml.safe_dump({"report": {"ear_plots": 3}}))
    other = ("--configfile", str(work / "params.yaml"), str(work / "other.yaml"))
    dry = _smk(work, "-n", "-p", "--forcerun", "demo", *other)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    planned = set(params_files(dry))
    assert planned and running.relative_to(work).as_posix() not in planned  # another config, another file
    lint = _smk(work, "--lint", *other)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert running.read_bytes() == before
    assert sorted(p.name for p in (work / "logs/params").iterdir()) == [running.name]  # neither wrote a file
    assert not (work / "logs/params.yaml").exists()
