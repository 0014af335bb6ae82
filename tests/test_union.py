"""Several datasets as one (the ``union`` adapter), an evaluation-only dataset (``split``) and
a flat folder of one label: what the real-footage study's configuration (configs/shared.yaml)
is made of."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blinkbench.core import config
from blinkbench import datasets

ROOT = Path(__file__).resolve().parents[1]


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def _params(ds: dict) -> dict:
    return config.validate({"datasets": ds, "attacks": {"enabled": False}, "blink_attacks": {"enabled": False}})


def test_union_prefixes_ids_and_groups_and_keeps_member_splits(tmp_path):
    for m in ("a", "b"):
        _touch(tmp_path / m / "real" / "x.mp4")
        _touch(tmp_path / m / "fake" / "x.mp4")
    (tmp_path / "a" / "splits.csv").write_text("video_id,split\nreal_x,train\nfake_x,val\n")
    cfg = {"adapter": "union", "root": str(tmp_path),
           "members": {"a": {"adapter": "folder", "root": "a"}, "b": {"adapter": "folder", "root": "b"}}}
    p = _params({"u": cfg})
    ents = {e.video_id: e for e in datasets.discover("u", p["datasets"]["u"], p)}
    # the same ids in two members stay distinct, and their groups never merge across members
    assert set(ents) == {"a__real_x", "a__fake_x", "b__real_x", "b__fake_x"}
    assert ents["a__real_x"].group.startswith("a__") and ents["b__real_x"].group.startswith("b__")
    assert ents["a__real_x"].split == "train" and ents["a__fake_x"].split == "val"   # member's own splits
    assert datasets.metadata_files("u", p["datasets"]["u"], p) == [tmp_path / "a" / "splits.csv"]


def test_split_key_makes_an_evaluation_only_dataset(tmp_path):
    for i in range(10):
        _touch(tmp_path / "real" / f"r{i}.mp4")
        _touch(tmp_path / "fake" / f"f{i}.mp4")
    p = _params({"d": {"adapter": "folder", "root": str(tmp_path), "split": "test"}})
    ents = datasets.discover("d", p["datasets"]["d"], p)
    assert len(ents) == 20 and {e.split for e in ents} == {"test"}
    p = _params({"d": {"adapter": "folder", "root": str(tmp_path)}})
    assert {e.split for e in datasets.discover("d", p["datasets"]["d"], p)} != {"test"}


def test_flat_folder_of_one_label(tmp_path):
    _touch(tmp_path / "clip.mp4")
    _touch(tmp_path / "sub" / "other.mkv")
    p = _params({"d": {"adapter": "folder", "root": str(tmp_path), "label": "real"}})
    ents = datasets.discover("d", p["datasets"]["d"], p)
    assert [(e.video_id, e.label) for e in ents] == [("real_clip", "real"), ("real_sub__other", "real")]


def test_bad_union_configs_are_refused(tmp_path):
    with pytest.raises(config.ParamsError):     # a union's member needs an adapter and a root
        _params({"u": {"adapter": "union", "root": str(tmp_path), "members": {"a": {"root": "a"}}}})
    nested = {"adapter": "union", "root": str(tmp_path),
              "members": {"a": {"adapter": "union", "root": ".", "members": {"b": {"adapter": "folder", "root": "b"}}}}}
    p = _params({"u": nested})
    with pytest.raises(ValueError, match="union itself"):
        datasets.discover("u", p["datasets"]["u"], p)
    p = _params({"d": {"adapter": "ffpp", "root": str(tmp_path), "label": "real"}})
    with pytest.raises(ValueError, match="folder only"):
        datasets.discover("d", p["datasets"]["d"], p)


@pytest.mark.shared
def test_the_shared_configuration_lists_every_real_clip(shared):
    p = config.validate(yaml.safe_load((ROOT / "configs" / "shared.yaml").read_text()))
    cfg = {**p["datasets"]["shared"], "root": str(shared / "samples")}
    ents = datasets.discover("shared", cfg, p)
    present = [e for e in ents if e.path.is_file()]
    by_member: dict[str, int] = {}
    for e in present:
        by_member[e.video_id.split("__")[0]] = by_member.get(e.video_id.split("__")[0], 0) + 1
    print(f"\nshared footage per member: {by_member}")
    assert {e.split for e in ents} == {"test"}
    assert by_member["ffpp"] == 4 and by_member["ffpp_c40"] == 12 and by_member["blink"] == 4
    assert by_member["dfdc"] == 4                       # awnfpubqmo is listed but absent (a real-world miss)
    assert all(e.label == "real" for e in present if e.video_id.startswith("blink__"))
    assert by_member["dfdc_more"] == 3                  # the Kaggle train_sample_videos layout too
    assert sum(e.label == "fake" for e in present) == 15
