"""`make setup` refuses, with a clear message, to start an install the disk cannot hold.

A CI machine once ran out of disk 78 s into `pip install -r requirements.lock`, leaving pip's
"No space left on device" as the only explanation and a half-built .venv behind.
"""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_free_space.sh"


def _run(need_gb, tmp_path):
    return subprocess.run(["bash", str(SCRIPT), str(need_gb), str(tmp_path)],
                          capture_output=True, text=True, timeout=30)


def test_a_disk_too_small_for_the_install_stops_setup_with_the_figures(tmp_path):
    r = _run(10**7, tmp_path)           # ten petabytes: no disk here has that free
    assert r.returncode == 1
    assert "GB free" in r.stderr and "10000000 GB" in r.stderr
    assert "SETUP_FREE_GB=0" in r.stderr          # how to go on anyway


def test_enough_disk_or_a_zero_need_lets_setup_go_on(tmp_path):
    for need in (0, 0.001):
        r = _run(need, tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""


def test_the_makefile_checks_before_it_creates_the_venv():
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("$(VENV)/.installed: pyproject.toml requirements.lock", 1)[1]
    assert recipe.index("check_free_space.sh") < recipe.index("-m venv")
