"""Keep Snakemake and DVC in agreement about what is up to date.

    python -m blinkbench.ops.sync record    # after a Snakemake run (`make demo`): write dvc.lock
    python -m blinkbench.ops.sync pull      # a collaborator: dvc pull, then mark Snakemake done

``record`` writes into ``dvc.lock`` the hashes of the outputs a Snakemake run made, with the
current code and params as the stages' dependencies, recomputing nothing (``dvc commit -f``
per stage). It refuses while Snakemake still has jobs to run (the outputs would not match the
code and params recorded beside them), and names the stages it could not record because
their outputs are missing (exit 2).

``pull`` fetches the outputs of the committed ``dvc.lock`` (``dvc pull``), checks that DVC
finds them consistent with the code and params (``dvc status`` clean), and only then runs
``snakemake --touch``: DVC restores contents, not modification times, so without it Snakemake
would see inputs newer than outputs and rerun. The touch is safe exactly because DVC has just
verified, by checksums, that every output belongs to the current inputs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from blinkbench.ops import action_main

UP_TO_DATE = ("data and pipelines are up to date", "there are no changes")


def _tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def snakemake_pending(repo: Path, extra: list[str] | None = None) -> str | None:
    """None when Snakemake plans no job in repo, else its dry-run output."""
    r = _run([_tool("snakemake"), "-n", "--cores", "1", *(extra or [])], repo)
    out = r.stdout + r.stderr
    if r.returncode == 0 and "Nothing to be done" in out:
        return None
    return out


def dvc_clean(repo: Path) -> tuple[bool, str]:
    r = _run([_tool("dvc"), "status"], repo)
    out = (r.stdout + r.stderr).strip()
    return r.returncode == 0 and any(s in out.lower() for s in UP_TO_DATE), out


GUARD_STAGE = "validate_params"


def record(repo: Path, *, check_snakemake: bool = True, snakemake_args: list[str] | None = None) -> tuple[list[str], list[str]]:
    """dvc commit -f every stage whose outputs all exist. Returns (recorded, skipped)."""
    from blinkbench.core.lineage import dvc_repo

    if check_snakemake:
        pending = snakemake_pending(repo, snakemake_args)
        if pending is not None:
            raise RuntimeError("Snakemake still has jobs to run; finish the run first "
                               f"(snakemake --cores N), then record:\n{pending[-2000:]}")
    recorded, skipped = [], []
    with dvc_repo(repo) as dvc:
        # DVC's guard stage, which every stage depends on, has no Snakemake rule (Snakemake
        # validates the params at parse time): run it, it only validates params.yaml.
        dvc.reproduce(GUARD_STAGE, single_item=True)
        for stage in dvc.index.stages:
            if not stage.cmd:  # a .dvc data file, not a pipeline stage
                continue
            missing = [str(o) for o in stage.outs if not o.exists]
            if missing:
                skipped.append(f"{stage.addressing} (missing {', '.join(missing[:3])})")
                continue
            dvc.commit(stage.addressing, force=True)
            recorded.append(stage.addressing)
    return recorded, skipped


def pull(repo: Path, *, dvc_args: list[str] | None = None) -> None:
    r = _run([_tool("dvc"), "pull", *(dvc_args or [])], repo)
    if r.returncode:
        raise RuntimeError(f"dvc pull failed:\n{r.stdout}{r.stderr}")
    # The guard stage's output is a log, not a result (not cached, so not pulled): validate
    # this clone's params.yaml again, which rewrites the same file every stage depends on.
    r = _run([_tool("dvc"), "repro", "--single-item", GUARD_STAGE], repo)
    if r.returncode:
        raise RuntimeError(f"params.yaml does not validate:\n{r.stdout}{r.stderr}")
    clean, status = dvc_clean(repo)
    if not clean:
        raise RuntimeError("after dvc pull, DVC finds stages out of date (code or params differ from "
                           f"dvc.lock); run `dvc repro` or `snakemake` instead of touching:\n{status}")
    r = _run([_tool("snakemake"), "--touch", "--cores", "1"], repo)
    if r.returncode:
        raise RuntimeError(f"snakemake --touch failed:\n{r.stdout}{r.stderr}")


def _record(a: argparse.Namespace) -> int:
    recorded, skipped = record(Path(a.repo), check_snakemake=not a.no_snakemake_check)
    print(f"recorded {len(recorded)} stages into dvc.lock")
    if skipped:
        print("not recorded (outputs missing):\n  " + "\n  ".join(skipped), file=sys.stderr)
        return 2
    return 0


def _pull(a: argparse.Namespace) -> int:
    pull(Path(a.repo))
    print("pulled; dvc status clean; Snakemake outputs marked up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sync", description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=".")
    ap.add_argument("--no-snakemake-check", action="store_true", help="record: skip the `snakemake -n` check")
    return action_main(ap, {"record": _record, "pull": _pull}, (RuntimeError,), argv)


if __name__ == "__main__":
    sys.exit(main())
