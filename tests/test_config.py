"""params.yaml validation: the project file is valid, and bad keys or types fail naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from blinkbench.core import config


def test_project_params_valid_and_defaults_filled(params):
    assert set(params) >= {"base", "datasets", "faces", "landmarks", "blinks", "report"}
    filled = config.validate({"datasets": {}})
    assert filled["blinks"]["close_ratio"] == 0.5
    assert filled["faces"]["crops"]["size"] == 256  # nested defaults too


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"blinks": {"close_ratioo": 0.5}}, "blinks"),
        ({"faces": {"detect_every": "5"}}, "faces.detect_every"),
        ({"faces": {"crops": {"size": 8}}}, "faces.crops.size"),
        ({"landmarks": {"backend": "dlib"}}, "landmarks.backend"),
        ({"datasets": {"x": {"adapter": "youtube", "root": "a"}}}, "datasets.x.adapter"),
        ({"datasets": {"bad name": {"adapter": "folder", "root": "a"}}}, "datasets"),
        ({"unknown_section": 1}, "(top level)"),
    ],
)
def test_bad_params_name_the_key(patch, where):
    p = {"datasets": {}, **patch}
    with pytest.raises(config.ParamsError) as exc:
        config.validate(p)
    assert f"'{where}'" in str(exc.value)


def test_cli_rejects_bad_params_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"datasets": {}, "blinks": {"max_blink_ms": "long"}}))
    r = subprocess.run([sys.executable, "-m", "blinkbench", "validate-params", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "blinks.max_blink_ms" in r.stderr
