"""The one command-line entry point (issue 11 point 1): the experiment commands that used to
have their own ``python -m`` parsers (ear_attack, noise_effect, landmark_compare, lineage)
are ``blinkbench`` subcommands, and bad arguments end in a message and exit code 2, not a
traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blinkbench import cli

PARAMS = str(Path(__file__).resolve().parents[1] / "params.yaml")


@pytest.mark.parametrize("argv, handler", [
    (["ear_attack_video", "v.mp4", "out", "suppress"], "cmd_ear_attack_video"),
    (["ear-attack-video", "v.mp4", "out", "inject", "--model", "a=b.zip"], "cmd_ear_attack_video"),
    (["noise_effect"], "cmd_noise_effect"),
    (["noise-effect", "--out", "x"], "cmd_noise_effect"),
    (["landmark_compare", "--dataset", "demo"], "cmd_landmark_compare"),
    (["landmark-compare", "--dataset", "demo", "--backends", "mediapipe"], "cmd_landmark_compare"),
    (["lineage", "x.parquet"], "cmd_lineage"),
    (["audit", "--json"], "cmd_audit"),
])
def test_each_subcommand_parses_and_has_its_handler(argv, handler):
    args = cli.build_parser().parse_args(argv)
    assert cli.COMMANDS[args.cmd] is getattr(cli, handler)


def test_every_subparser_has_a_handler():
    ap = cli.build_parser()
    sub = next(a for a in ap._actions if a.dest == "cmd")
    assert set(sub.choices) == set(cli.COMMANDS)


def test_ear_attack_video_refuses_bad_json_and_models_cleanly(capsys):
    assert cli.main(["ear_attack_video", "v.mp4", "out", "suppress", "--attack-params", "{bad"]) == 2
    assert cli.main(["ear_attack_video", "v.mp4", "out", "suppress", "--model", "no_equals_sign"]) == 2
    err = capsys.readouterr().err
    assert err.count("blinkbench ear_attack_video:") == 2


def test_landmark_compare_names_an_unknown_dataset(capsys):
    assert cli.main(["landmark_compare", "--params", PARAMS, "--dataset", "nope"]) == 2
    assert "not in params datasets" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["lineage", "audit"])
def test_lineage_and_audit_without_a_dvc_lock_say_so(tmp_path, capsys, cmd):
    argv = [cmd, "x.parquet", "--root", str(tmp_path)] if cmd == "lineage" else [cmd, "--root", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "dvc.lock not found" in capsys.readouterr().err


def test_noise_effect_writes_its_tables_with_no_study_data(tmp_path, monkeypatch):
    """Nothing attacked yet: the command still writes its (empty) tables atomically."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["noise_effect", "--params", PARAMS, "--out", "rep"]) == 0
    names = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert "noise_effect.csv" in names and "noise_effect.json" in names
    json.loads((tmp_path / "rep" / "noise_effect.json").read_text())
