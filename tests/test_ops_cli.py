"""The command lines of the operations tools (`python -m blinkbench.ops.s3_server ...`,
`python -m blinkbench.ops.sync ...`, called by the Makefile): one action each, an expected
failure becomes one line on stderr and exit status 1, never a traceback. No server is
started here (tests/test_collab.py does that)."""

from __future__ import annotations

import argparse

import pytest

from blinkbench.ops import action_main, s3_server, sync


def test_s3_server_status_and_stop_without_a_server(tmp_path, capsys):
    assert s3_server.main(["status", "--dir", str(tmp_path)]) == 3
    assert capsys.readouterr().out.strip() == "not running"
    assert s3_server.main(["stop", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "not running"


def test_s3_server_configure_without_a_server_is_one_line_and_status_1(tmp_path, capsys):
    assert s3_server.main(["configure", "--dir", str(tmp_path), "--repo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"s3_server configure: no S3 server running under {tmp_path}: start it first\n"


def test_sync_pull_outside_a_dvc_repository_is_one_line_and_status_1(tmp_path, capsys):
    assert sync.main(["pull", "--repo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sync pull: dvc pull failed:")


def test_an_unexpected_error_is_not_swallowed_and_unknown_actions_are_refused():
    def broken(args):
        raise KeyError("a bug")

    ap = argparse.ArgumentParser(prog="tool")
    with pytest.raises(KeyError):
        action_main(ap, {"go": broken}, (RuntimeError,), ["go"])
    with pytest.raises(SystemExit) as e:
        action_main(argparse.ArgumentParser(prog="tool"), {"go": broken}, (RuntimeError,), ["stop"])
    assert e.value.code == 2
