"""Which manifest rows the attacks take (experiments/plan.py): the study's frame attacks and
the blink attacks share one rule (test split, status ok, by video id) and differ in the
labels they take and the blink attacks' cap."""

from __future__ import annotations

import pandas as pd

from blinkbench.core import paths
from blinkbench.experiments import plan


def _manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [  # video_id, label, split, status
        ("f3", "fake", "test", "ok"), ("f1", "fake", "test", "ok"), ("f2", "fake", "train", "ok"),
        ("f4", "fake", "test", "error"), ("r2", "real", "test", "ok"), ("r1", "real", "test", "ok"),
        ("r3", "real", "val", "ok"),
    ]
    out = paths.path("manifest", dataset="d")
    out.parent.mkdir(parents=True)
    pd.DataFrame(rows, columns=["video_id", "label", "split", "status"]).to_parquet(out)


def test_study_takes_usable_test_videos_of_its_labels(tmp_path, monkeypatch):
    _manifest(tmp_path, monkeypatch)
    params = {"attacks": {"dataset": "d", "labels": ["fake"]}}
    sel = plan.selected_videos(params)
    assert sel["video_id"].tolist() == ["f1", "f3"] and sel.index.tolist() == [0, 1]
    params["attacks"]["labels"] = ["fake", "real"]
    assert plan.selected_videos(params)["video_id"].tolist() == ["f1", "f3", "r1", "r2"]


def test_blink_attacks_take_their_mode_label_up_to_max_videos(tmp_path, monkeypatch):
    _manifest(tmp_path, monkeypatch)
    params = {"blink_attacks": {"dataset": "d", "max_videos": 0}}
    assert plan.blink_attack_videos(params, "suppress")["video_id"].tolist() == ["r1", "r2"]
    assert plan.blink_attack_videos(params, "inject")["video_id"].tolist() == ["f1", "f3"]
    params["blink_attacks"]["max_videos"] = 1
    assert plan.blink_attack_videos(params, "suppress")["video_id"].tolist() == ["r1"]
