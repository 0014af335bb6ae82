"""Dataset adapters and manifests: the real FF++/DFDC samples (../shared) and synthetic
layouts of every adapter built in tmp_path (tiny videos, corrupt files, official splits)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blinkbench import datasets
from blinkbench.datasets import (
    MANIFEST_COLUMNS,
    Entry,
    build_manifest,
    discover,
    present_ids,
    write_manifest,
)
from blinkbench.datasets import base
from blinkbench.core.io import read_meta
from blinkbench.video import codec
from blinkbench.video.codec import write_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PARAMS = {"base": {"seed": 42}, "splits": {"val_fraction": 0.15}}
ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@pytest.fixture
def samples() -> Path:
    if not (SHARED / "samples").is_dir():
        pytest.skip("../shared not found: real-clip tests need the shared samples beside the project root")
    return SHARED / "samples"


@pytest.fixture(scope="session")
def tiny_mp4(tmp_path_factory) -> bytes:
    """Bytes of a valid 5-frame 32x32 25 fps H.264 video (encoded once per session)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.mp4"
    write_video(path, (np.full((32, 32, 3), 40 * i, np.uint8) for i in range(5)), fps=25)
    return path.read_bytes()


def put(path: Path, data: bytes = b"") -> Path:
    """Create ``path`` (and its folders) holding ``data``; discovery never reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def by_id(entries: list[Entry]) -> dict[str, Entry]:
    return {e.video_id: e for e in entries}


def assert_well_formed(entries: list[Entry]) -> None:
    """Invariants every adapter must keep: sorted unique safe ids, valid labels and splits,
    and each group inside one split."""
    ids = [e.video_id for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(ID_RE.match(i) for i in ids)
    assert {e.label for e in entries} <= {"real", "fake"}
    assert {e.split for e in entries} <= {"train", "val", "test"}
    splits_of_group = defaultdict(set)
    for e in entries:
        splits_of_group[e.group].add(e.split)
    assert all(len(s) == 1 for s in splits_of_group.values()), splits_of_group


# ----------------------------------------------------------------------------- real samples


@pytest.mark.shared
def test_ffpp_real_sample_manifest(samples, caplog):
    cfg = {"adapter": "ffpp", "root": str(samples / "ffpp")}
    with caplog.at_level(logging.WARNING):
        df = build_manifest("ffpp", cfg, PARAMS)
    assert "official splits not found" in caplog.text  # the sample has no splits/ folder

    assert list(df.columns) == MANIFEST_COLUMNS and len(df) == 4 and df.video_id.is_unique
    rows = df.set_index("video_id")
    expected = {  # video_id: (label, method, target, source)
        "youtube_c23_004": ("real", "original", "004", ""),
        "youtube_c23_634": ("real", "original", "634", ""),
        "NeuralTextures_c23_004_982": ("fake", "NeuralTextures", "004", "982"),
        "FaceSwap_c23_634_660": ("fake", "FaceSwap", "634", "660"),
    }
    assert set(rows.index) == set(expected)
    for vid, (label, method, target, source) in expected.items():
        assert tuple(rows.loc[vid, ["label", "method", "target_id", "source_id"]]) == (label, method, target, source)
    assert (df.status == "ok").all() and (df.error == "").all()
    assert (df.fps == 25.0).all() and (df.compression == "c23").all()
    assert df.n_frames.between(250, 400).all() and (df.width == 1280).all() and (df.height == 720).all()
    assert df.sha256.str.fullmatch(r"[0-9a-f]{64}").all() and df.sha256.is_unique
    # A fake has its original's frame count, group and split.
    for fake, real in [("NeuralTextures_c23_004_982", "youtube_c23_004"), ("FaceSwap_c23_634_660", "youtube_c23_634")]:
        assert rows.loc[fake, "n_frames"] == rows.loc[real, "n_frames"]
        assert rows.loc[fake, "group"] == rows.loc[real, "group"]
        assert rows.loc[fake, "split"] == rows.loc[real, "split"]
    assert rows.loc["youtube_c23_004", "group"] == "004_982"
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df.path)  # outside the cwd


@pytest.mark.shared
def test_dfdc_real_sample_manifest_with_missing_file(samples):
    df = build_manifest("dfdc", {"adapter": "dfdc", "root": str(samples / "dfdc")}, PARAMS)  # must not raise

    assert len(df) == 5 and df.video_id.is_unique
    rows = df.set_index("video_id")
    missing = rows.loc["p0_awnfpubqmo"]
    assert missing.status == "missing" and missing.sha256 == "" and missing.n_frames == 0
    assert not Path(missing.path).exists() and "not found" in missing.error
    present = rows.drop(index="p0_awnfpubqmo")
    assert (present.status == "ok").all() and present.fps.between(29.9, 30.1).all()
    assert present.n_frames.between(290, 310).all()

    assert rows.loc["p49_lynaeydofd", "label"] == "real"
    assert (rows.drop(index="p49_lynaeydofd").label == "fake").all()
    assert (rows.loc["p49_lynaeydofd", ["width", "height"]] == [1920, 1080]).all()
    # Fakes are grouped with their original (from metadata.json), reals with themselves.
    assert rows.loc["p0_brtujopkby", "group"] == rows.loc["p0_brtujopkby", "target_id"] == "gnmmhlbzge"
    assert rows.loc["p0_awnfpubqmo", "group"] == "lnhkjhyhvw"
    assert rows.loc["p49_lynaeydofd", "group"] == "lynaeydofd"
    assert set(df.split) <= {"train", "val"}  # training parts only: no test without test_labels
    assert set(present_ids(discover("dfdc", {"adapter": "dfdc", "root": str(samples / "dfdc")}, PARAMS))) == set(
        present.index
    )


# ----------------------------------------------------------------------------- FaceForensics++


def make_ffpp(root: Path) -> dict[str, str]:
    """Pairs (000,001) ... (010,011) in the official splits, plus 012_013 not covered, plus
    DFD actors. Returns official id -> split."""
    pairs = [(f"{2 * i:03d}", f"{2 * i + 1:03d}") for i in range(6)]
    official = {"train": pairs[:3], "val": pairs[3:4], "test": pairs[4:]}
    for split, ps in official.items():
        put(root / "splits" / f"{split}.json", json.dumps([list(p) for p in ps]).encode())
    for comp in ("c23", "c40"):
        for t, s in pairs + [("012", "013")]:
            for i in (t, s):
                put(root / f"original_sequences/youtube/{comp}/videos/{i}.mp4")
            put(root / f"manipulated_sequences/Deepfakes/{comp}/videos/{t}_{s}.mp4")
            put(root / f"manipulated_sequences/NeuralTextures/{comp}/videos/{s}_{t}.mp4")
        for actor in ("01", "02", "03"):
            put(root / f"original_sequences/actors/{comp}/videos/{actor}__walking.mp4")
        put(root / f"manipulated_sequences/DeepFakeDetection/{comp}/videos/01_02__walking__AB12CD34.mp4")
    put(root / "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4")  # not a compression
    return {i: split for split, ps in official.items() for p in ps for i in p}


def test_ffpp_official_splits_apply_to_real_and_fake(tmp_path, caplog):
    official = make_ffpp(tmp_path)
    cfg = {"adapter": "ffpp", "root": str(tmp_path), "compressions": ["c23", "c40"]}
    with caplog.at_level(logging.WARNING):
        entries = discover("ffpp", cfg, PARAMS)
    assert_well_formed(entries)
    assert "official splits not found" not in caplog.text and "seeded splits" in caplog.text

    e = by_id(entries)
    assert len(entries) == 2 * (14 + 14 + 3 + 1)  # per compression: reals, fakes, actors, DFD
    assert e["Deepfakes_c23_000_001"].target_id == "000" and e["Deepfakes_c23_000_001"].source_id == "001"
    assert e["NeuralTextures_c40_001_000"].target_id == "001"
    assert not any("masks" in str(x.path) for x in entries)
    for x in entries:
        if x.target_id in official:  # youtube real or fake covered by the official pairs
            assert x.split == official[x.target_id], x
            assert x.group == "_".join(sorted({x.target_id, official_pair(official, x.target_id)}))
    for vid in ("youtube_c23_006", "Deepfakes_c23_006_007", "NeuralTextures_c40_007_006"):
        assert e[vid].split == "val"
    for vid in ("youtube_c40_010", "Deepfakes_c23_010_011", "NeuralTextures_c23_009_008"):
        assert e[vid].split == "test"
    # Not covered: seeded by group, the pair still together; DFD grouped by target actor.
    assert len({e[v].split for v in ("youtube_c23_012", "youtube_c40_013", "Deepfakes_c23_012_013")}) == 1
    assert e["youtube_c23_012"].group == "012_013"
    dfd, actor = e["DeepFakeDetection_c23_01_02__walking__AB12CD34"], e["actors_c23_01__walking"]
    assert (dfd.label, dfd.method, dfd.target_id, dfd.source_id) == ("fake", "DeepFakeDetection", "01", "02")
    assert dfd.group == actor.group == "01" and dfd.split == actor.split


def official_pair(official: dict[str, str], i: str) -> str:
    """The partner of id ``i`` in the synthetic official pairs (000-001, 002-003, ...)."""
    return f"{int(i) ^ 1:03d}"


def test_ffpp_options_select_without_changing_groups_or_splits(tmp_path):
    make_ffpp(tmp_path)
    (tmp_path / "splits").rename(tmp_path / "no_splits")  # seeded splits, from pairs in file names
    full = by_id(discover("ffpp", {"adapter": "ffpp", "root": str(tmp_path)}, PARAMS))
    some = discover(
        "ffpp",
        {"adapter": "ffpp", "root": str(tmp_path), "methods": ["Deepfakes"], "originals": ["youtube"]},
        PARAMS,
    )
    assert {x.method for x in some} == {"original", "Deepfakes"} and {x.compression for x in some} == {"c23"}
    assert not any(x.video_id.startswith("actors_") for x in some)
    for x in some:  # the selection never moves a video to another group or split
        assert (x.group, x.split) == (full[x.video_id].group, full[x.video_id].split)
    assert full["youtube_c23_004"].group == "004_005"
    assert_well_formed(sorted(full.values(), key=lambda x: x.video_id))


# ----------------------------------------------------------------------------- Celeb-DF


def make_celebdf(root: Path, n_ids: int = 40) -> set[str]:
    """Identities id0..id{n-1} with 2 real videos each, fakes between neighbours, 12
    YouTube-real videos and a test list (one listed file absent). Returns listed video_ids."""
    for i in range(n_ids):
        for k in range(2):
            put(root / f"Celeb-real/id{i}_{k:04d}.mp4")
        for j in ((i + 1) % n_ids, (i + 7) % n_ids):
            put(root / f"Celeb-synthesis/id{i}_id{j}_{i:04d}.mp4")
    for k in range(12):
        put(root / f"YouTube-real/{k:05d}.mp4")
    listed = ["1 Celeb-real/id0_0000.mp4", "1 YouTube-real/00003.mp4", "0 Celeb-synthesis/id2_id3_0002.mp4",
              "0 Celeb-synthesis/id5_id12_0005.mp4", "1 Celeb-real/id9_0001.mp4",
              "0 Celeb-synthesis/id98_id99_0000.mp4"]  # the last one is not on disk
    (root / "List_of_testing_videos.txt").write_text("\n".join(listed) + "\n")
    return {base.safe_id(*line.split(" ")[1].removesuffix(".mp4").split("/")) for line in listed}


def test_celebdf_test_list_and_identity_val(tmp_path):
    listed = make_celebdf(tmp_path)
    params = {"base": {"seed": 42}, "splits": {"val_fraction": 0.3}}
    entries = discover("celeb", {"adapter": "celebdf", "root": str(tmp_path)}, params)
    assert_well_formed(entries)
    e = by_id(entries)

    assert {x.video_id for x in entries if x.split == "test"} == listed  # test never in train/val
    assert not e["Celeb-synthesis_id98_id99_0000"].path.exists()
    f = e["Celeb-synthesis_id2_id3_0002"]
    assert (f.label, f.method, f.target_id, f.source_id) == ("fake", "Celeb-synthesis", "id2", "id3")
    assert e["Celeb-real_id1_0000"].target_id == "id1" and e["YouTube-real_00004"].label == "real"

    def identities(split: str, kinds=("Celeb-real", "Celeb-synthesis")) -> set[str]:
        return {i for x in entries if x.split == split and x.video_id.startswith(kinds)
                for i in (x.target_id, x.source_id) if i}

    val_ids = {x.group for x in entries if x.split == "val" and x.group.startswith("id")}
    assert val_ids, "the synthetic set is large enough for some val identities"
    assert not val_ids & identities("train")  # no val identity appears in train
    assert not identities("val", ("Celeb-real",)) & identities("train")  # real identities disjoint
    for x in entries:  # every val fake shows at least one identity that train never shows
        if x.split == "val" and x.label == "fake":
            assert {x.target_id, x.source_id} - identities("train")
    youtube = {x.split for x in entries if x.video_id.startswith("YouTube-real") and x.video_id not in listed}
    assert youtube <= {"train", "val"}
    non_test = [x for x in entries if x.split != "test"]
    assert 0.15 < sum(x.split == "val" for x in non_test) / len(non_test) < 0.5  # calibrated near 0.3


# ----------------------------------------------------------------------------- DFDC


def make_dfdc(root: Path, tiny: bytes, n_originals: int = 30) -> None:
    for part in (0, 7):
        meta = {}
        for i in range(n_originals // 2):
            orig = f"r{part}x{i:03d}"
            meta[f"{orig}.mp4"] = {"label": "REAL", "split": "train"}
            meta[f"f{part}x{i:03d}.mp4"] = {"label": "FAKE", "split": "train", "original": f"{orig}.mp4"}
        for name in meta:
            put(root / f"dfdc_train_part_{part}" / name, tiny)
        meta["gone.mp4"] = {"label": "FAKE", "split": "train", "original": f"r{part}x000.mp4"}
        put(root / f"dfdc_train_part_{part}/metadata.json", json.dumps(meta).encode())
    put(root / "test/labels.csv", b"filename,label\naaaa.mp4,1\nbbbb.mp4,0\n")
    put(root / "test_videos/aaaa.mp4", tiny)
    put(root / "test_videos/bbbb.mp4", tiny)


def test_dfdc_groups_fakes_with_originals_and_reads_test_labels(tmp_path, tiny_mp4):
    make_dfdc(tmp_path, tiny_mp4)
    cfg = {"adapter": "dfdc", "root": str(tmp_path), "test_labels": "test/labels.csv", "test_dir": "test_videos"}
    params = {"base": {"seed": 42}, "splits": {"val_fraction": 0.3}}
    entries = discover("dfdc", cfg, params)
    assert_well_formed(entries)
    e = by_id(entries)

    assert {x.video_id for x in entries if x.split == "test"} == {"test_aaaa", "test_bbbb"}
    assert (e["test_aaaa"].label, e["test_bbbb"].label) == ("fake", "real")
    assert {x.split for x in entries if x.split != "test"} == {"train", "val"}
    for x in entries:
        if x.split != "test" and x.label == "fake" and x.video_id != "p0_gone" and x.video_id != "p7_gone":
            original = e[f"p{x.video_id[1]}_r{x.video_id[4:]}"]
            assert x.target_id == original.target_id == x.group == original.group
            assert x.split == original.split and x.method == "dfdc" and x.source_id == ""
    assert e["p0_gone"].group == "r0x000" and e["p0_gone"].split == e["p0_r0x000"].split

    df = build_manifest("dfdc", cfg, params)
    rows = df.set_index("video_id")
    assert (rows.loc[["p0_gone", "p7_gone"], "status"] == "missing").all()
    assert (rows.drop(index=["p0_gone", "p7_gone"]).status == "ok").all()
    assert (rows.drop(index=["p0_gone", "p7_gone"]).n_frames == 5).all()

    del cfg["test_labels"]
    with pytest.raises(ValueError, match="test_dir is given without test_labels"):
        discover("dfdc", cfg, params)


# ----------------------------------------------------------------------------- folder


def test_folder_layout_ids_and_splits_csv(tmp_path, tiny_mp4):
    put(tmp_path / "real/a.mp4", tiny_mp4)
    put(tmp_path / "real/sub dir/b#1.MOV", tiny_mp4)
    put(tmp_path / "fake/x.avi", tiny_mp4)
    put(tmp_path / "fake/.x.tmp-123.mp4", tiny_mp4)  # half-written by an atomic writer
    put(tmp_path / "real/notes.txt", b"not a video")
    put(tmp_path / "blinks.csv", b"video_id,start\n")
    cfg = {"adapter": "folder", "root": str(tmp_path)}

    entries = discover("demo", cfg, PARAMS)
    assert_well_formed(entries)
    assert [x.video_id for x in entries] == ["fake_x", "real_a", "real_sub_dir__b_1"]
    e = by_id(entries)
    assert (e["real_a"].method, e["real_a"].target_id, e["fake_x"].method) == ("original", "real_a", "fake")
    assert all(x.group == x.video_id for x in entries)

    put(tmp_path / "splits.csv", b"video_id,split\nreal_a,test\nfake_x,val\nreal_sub_dir__b_1,train\n")
    assert [x.split for x in discover("demo", cfg, PARAMS)] == ["val", "test", "train"]
    put(tmp_path / "splits.csv", b"video_id,split\nreal_a,holdout\n")
    with pytest.raises(ValueError, match="split must be one of"):
        discover("demo", cfg, PARAMS)


def test_corrupt_files_become_status_rows(tmp_path, tiny_mp4):
    put(tmp_path / "real/good.mp4", tiny_mp4)
    put(tmp_path / "real/truncated.mp4", tiny_mp4[: len(tiny_mp4) // 2])
    put(tmp_path / "fake/empty.mp4")
    put(tmp_path / "fake/noise.mp4", np.random.default_rng(0).bytes(4096))
    df = build_manifest("broken", {"adapter": "folder", "root": str(tmp_path)}, PARAMS)  # must not raise

    rows = df.set_index("video_id")
    good = rows.loc["real_good"]
    assert (good.status, good.n_frames, good.fps, good.width, good.codec) == ("ok", 5, 25.0, 32, "h264")
    bad = rows.drop(index="real_good")
    assert (bad.status == "unreadable").all() and (bad.error != "").all() and (bad.n_frames == 0).all()
    assert (rows.sha256.str.len() == 64).all()  # every file that exists is hashed, broken or not

    out = tmp_path / "manifest.parquet"
    write_manifest(df, out)
    meta = read_meta(out)
    assert meta["status"] == "ok" and meta["dataset"] == "broken"
    assert meta["counts"] == {"ok": 1, "unreadable": 3} and len(meta["stamp"]) == 16
    pd.testing.assert_frame_equal(pd.read_parquet(out), df, check_dtype=False)


def test_exception_while_probing_becomes_error_row(tmp_path, tiny_mp4, monkeypatch):
    put(tmp_path / "real/a.mp4", tiny_mp4)
    put(tmp_path / "fake/b.mp4", tiny_mp4)

    def explode(path, *args, **kwargs):
        if Path(path).name == "b.mp4":
            raise RuntimeError("decoder exploded")
        return probe(path, *args, **kwargs)

    probe = codec.probe
    monkeypatch.setattr(codec, "probe", explode)
    rows = build_manifest("x", {"adapter": "folder", "root": str(tmp_path)}, PARAMS).set_index("video_id")
    assert rows.loc["fake_b", "status"] == "error" and "decoder exploded" in rows.loc["fake_b", "error"]
    assert rows.loc["real_a", "status"] == "ok"


# ----------------------------------------------------------------------------- API behaviour


def test_manifest_is_deterministic_and_paths_are_cwd_relative(tmp_path, tiny_mp4, monkeypatch):
    for i in range(3):
        put(tmp_path / f"ds/real/r{i}.mp4", tiny_mp4)
        put(tmp_path / f"ds/fake/f{i}.mp4", tiny_mp4)
    monkeypatch.chdir(tmp_path)
    cfg = {"adapter": "folder", "root": "ds"}
    first, second = build_manifest("demo", cfg, PARAMS), build_manifest("demo", cfg, PARAMS, workers=3)
    pd.testing.assert_frame_equal(first, second)
    assert first.path.tolist()[:2] == ["ds/fake/f0.mp4", "ds/fake/f1.mp4"]


def test_seed_changes_the_seeded_split_and_max_videos_does_not(tmp_path):
    for i in range(40):
        put(tmp_path / f"real/v{i:02d}.mp4")
    cfg = {"adapter": "folder", "root": str(tmp_path)}
    splits = {seed: [x.split for x in discover("d", cfg, {"base": {"seed": seed}})] for seed in (1, 2)}
    assert splits[1] != splits[2]
    assert splits[1] == [x.split for x in discover("d", cfg, {"base": {"seed": 1}})]
    assert {"train", "val", "test"} <= set(splits[1])

    full = discover("d", cfg, PARAMS)
    cut = discover("d", {**cfg, "max_videos": 5}, PARAMS)
    assert len(cut) == 5 and set(cut) <= set(full)  # a subset, each entry (and split) unchanged
    assert {"train", "test"} <= {x.split for x in cut}


def test_split_fractions_are_calibrated_for_single_and_paired_keys():
    cfg = base.SplitConfig(seed=7, val_fraction=0.15)

    def entry(i: int, target: str, source: str = "") -> Entry:
        return Entry(f"v{i}", Path(f"v{i}.mp4"), "fake", "m", source, target, "", "", target)

    single = base.assign_splits([entry(i, f"g{i}") for i in range(3000)], cfg, test_fraction=0.2)
    share = {s: sum(x.split == s for x in single) / 3000 for s in ("test", "val")}
    assert abs(share["test"] - 0.2) < 0.03 and abs(share["val"] - 0.8 * 0.15) < 0.03

    paired = [entry(i, f"id{i % 300}", f"id{(i * 7 + 1) % 300}") for i in range(3000)]
    out = base.assign_splits(paired, cfg, keys=lambda x: (x.target_id, x.source_id))
    assert abs(sum(x.split == "val" for x in out) / 3000 - 0.15) < 0.05
    assert_well_formed(sorted(out, key=lambda x: x.video_id))
    val_keys = {x.group for x in out if x.split == "val"}
    assert not any({x.target_id, x.source_id} & val_keys for x in out if x.split == "train")


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"adapter": "dfdc", "compressions": ["c23"]}, r"'compressions' \(ffpp only\)"),
        ({"adapter": "ffpp", "test_labels": "labels.csv"}, r"'test_labels' \(dfdc only\)"),
        ({"adapter": "folder", "colour": "red"}, "unknown key"),
        ({"adapter": "youtube"}, "unknown adapter"),
        ({"adapter": "folder", "root": "/nonexistent/blinkbench"}, "does not exist"),
        ({"adapter": "celebdf"}, "no videos found"),
    ],
)
def test_bad_configs_raise_clear_errors(tmp_path, cfg, message):
    with pytest.raises(ValueError, match=message):
        discover("d", {"root": str(tmp_path), **cfg}, PARAMS)


def test_colliding_ids_raise(tmp_path):
    put(tmp_path / "real/a.mp4")
    put(tmp_path / "real/a.avi")
    with pytest.raises(ValueError, match="two files map to video_id 'real_a'"):
        discover("d", {"adapter": "folder", "root": str(tmp_path)}, PARAMS)


def test_present_ids_lists_only_existing_files(tmp_path):
    here = put(tmp_path / "a.mp4")
    entries = [Entry(v, p, "real", "original", "", v, "train", "", v) for v, p in
               [("a", here), ("b", tmp_path / "b.mp4")]]
    assert present_ids(entries) == {"a": here}
    assert set(datasets.ADAPTERS) == {"folder", "ffpp", "celebdf", "dfdc"}


def test_metadata_files_are_the_existing_non_video_inputs(tmp_path, tiny_mp4):
    def files(adapter: str, root: Path, **opts) -> list[str]:
        cfg = {"adapter": adapter, "root": str(root), **opts}
        return [p.relative_to(root).as_posix() for p in datasets.metadata_files("d", cfg, PARAMS)]

    make_ffpp(tmp_path / "ffpp")
    (tmp_path / "ffpp/splits/val.json").unlink()  # only existing files are workflow inputs
    assert files("ffpp", tmp_path / "ffpp") == ["splits/test.json", "splits/train.json"]
    make_celebdf(tmp_path / "celeb", n_ids=3)
    assert files("celebdf", tmp_path / "celeb") == ["List_of_testing_videos.txt"]
    make_dfdc(tmp_path / "dfdc", tiny_mp4, n_originals=2)
    assert files("dfdc", tmp_path / "dfdc", test_labels="test/labels.csv") == [
        "dfdc_train_part_0/metadata.json", "dfdc_train_part_7/metadata.json", "test/labels.csv"]
    put(tmp_path / "folder/real/a.mp4")
    assert files("folder", tmp_path / "folder") == []
    put(tmp_path / "folder/splits.csv", b"video_id,split\n")
    assert files("folder", tmp_path / "folder") == ["splits.csv"]


# ----------------------------------------------------------------------------- quick trials


def _originals_kept(cut: list[Entry], full: list[Entry]) -> bool:
    """Every fake of ``cut`` whose original video is in ``full`` has it in ``cut`` too."""
    reals = {(x.compression, x.target_id): x for x in full if x.label == "real"}
    ids = {x.video_id for x in cut}
    return all(reals[(f.compression, f.target_id)].video_id in ids
               for f in cut if f.label == "fake" and (f.compression, f.target_id) in reals)


@pytest.mark.parametrize("limit", [2, 3, 4, 6, 9, 15])
def test_max_videos_keeps_both_labels_and_fakes_with_originals(tmp_path, limit):
    make_ffpp(tmp_path)
    cfg = {"adapter": "ffpp", "root": str(tmp_path), "compressions": ["c23"], "originals": ["youtube"]}
    full = discover("d", cfg, PARAMS)
    cut = discover("d", {**cfg, "max_videos": limit}, PARAMS)
    assert len(cut) == limit and set(cut) <= set(full)  # entries, splits included, unchanged
    assert [x.video_id for x in cut] == sorted(x.video_id for x in cut)
    assert {x.label for x in cut} == {"real", "fake"}, [x.video_id for x in cut]
    assert _originals_kept(cut, full), [x.video_id for x in cut]
    if limit >= 4:  # room for two pairs: test as well as train
        assert {"train", "test"} <= {x.split for x in cut}, [(x.video_id, x.split) for x in cut]
    assert cut == discover("d", {**cfg, "max_videos": limit}, PARAMS)  # deterministic


@pytest.mark.shared
@pytest.mark.parametrize("root, comp", [("ffpp", "c23"), ("ffpp_c40", "c40")])
def test_max_videos_on_the_ffpp_samples(samples, root, comp):
    cfg = {"adapter": "ffpp", "root": str(samples / root), "compressions": [comp]}
    full = discover("d", cfg, PARAMS)
    for limit in (2, 3, 4):
        cut = discover("d", {**cfg, "max_videos": limit}, PARAMS)
        assert len(cut) == limit and {x.label for x in cut} == {"real", "fake"}
        assert _originals_kept(cut, full), [x.video_id for x in cut]


# ----------------------------------------------------------------------------- DFDC test parts, Kaggle layout


def test_dfdc_test_parts_form_the_test_split(tmp_path, tiny_mp4):
    make_dfdc(tmp_path, tiny_mp4)
    # A fake of part 0 made from an original of part 7: the group goes to test whole.
    meta = json.loads((tmp_path / "dfdc_train_part_0/metadata.json").read_text())
    meta["cross.mp4"] = {"label": "FAKE", "split": "train", "original": "r7x001.mp4"}
    put(tmp_path / "dfdc_train_part_0/metadata.json", json.dumps(meta).encode())
    put(tmp_path / "dfdc_train_part_0/cross.mp4", tiny_mp4)
    cfg = {"adapter": "dfdc", "root": str(tmp_path)}
    entries = discover("d", {**cfg, "test_parts": [7]}, PARAMS)
    assert_well_formed(entries)
    test = {x.video_id for x in entries if x.split == "test"}
    assert test == {x.video_id for x in entries if x.video_id.startswith("p7_")} | {"p0_cross"}
    assert {x.split for x in entries if x.video_id not in test} == {"train", "val"}
    assert {x.label for x in entries if x.split == "test"} == {"real", "fake"}
    same = discover("d", {**cfg, "test_parts": ["dfdc_train_part_7"]}, PARAMS)
    assert same == entries
    assert "test" not in {x.split for x in discover("d", cfg, PARAMS)}
    with pytest.raises(ValueError, match="test_parts names 3"):
        discover("d", {**cfg, "test_parts": [3]}, PARAMS)
    with pytest.raises(ValueError, match="give one"):
        discover("d", {**cfg, "test_parts": [7], "test_labels": "test/labels.csv"}, PARAMS)


def test_dfdc_reads_the_kaggle_sample_folder(tmp_path, tiny_mp4):
    meta = {"a.mp4": {"label": "FAKE", "split": "train", "original": "b.mp4"},
            "b.mp4": {"label": "REAL", "split": "train", "original": None},
            "c.mp4": {"label": "FAKE", "split": "train", "original": "gone.mp4"}}
    put(tmp_path / "train_sample_videos/metadata.json", json.dumps(meta).encode())
    for name in meta:
        put(tmp_path / "train_sample_videos" / name, tiny_mp4)
    put(tmp_path / "dfdc_train_part_2/metadata.json", json.dumps({"d.mp4": {"label": "REAL"}}).encode())
    put(tmp_path / "dfdc_train_part_2/d.mp4", tiny_mp4)
    cfg = {"adapter": "dfdc", "root": str(tmp_path)}
    e = by_id(discover("d", cfg, PARAMS))
    assert set(e) == {"p2_d", "sample_a", "sample_b", "sample_c"}
    assert e["sample_a"].group == e["sample_b"].group == "b" and e["sample_a"].split == e["sample_b"].split
    assert e["sample_c"].target_id == "gone"
    tested = discover("d", {**cfg, "test_parts": ["sample"]}, PARAMS)
    assert {x.video_id for x in tested if x.split == "test"} == {"sample_a", "sample_b", "sample_c"}
    assert [p.relative_to(tmp_path).as_posix() for p in datasets.metadata_files("d", cfg, PARAMS)] == [
        "dfdc_train_part_2/metadata.json", "train_sample_videos/metadata.json"]


@pytest.mark.shared
def test_dfdc_more_sample_lists_all_three_videos(samples):
    cfg = {"adapter": "dfdc", "root": str(samples / "dfdc_more")}
    df = build_manifest("d", cfg, PARAMS)
    rows = df.set_index("video_id")
    assert sorted(rows.index) == ["p3_knqhpwoigk", "sample_abofeumbvv", "sample_abqwwspghj"]
    assert (rows.status == "ok").all() and (rows.n_frames == 300).all()
    assert rows.loc["p3_knqhpwoigk", "label"] == "real"
    assert (rows.loc[["sample_abofeumbvv", "sample_abqwwspghj"], "label"] == "fake").all()
    assert rows.loc["sample_abofeumbvv", "group"] == "atvmxvwyns"


@pytest.mark.shared
def test_dfdc_sample_with_a_test_part(samples):
    cfg = {"adapter": "dfdc", "root": str(samples / "dfdc"), "test_parts": [49]}
    entries = discover("d", cfg, PARAMS)
    assert {x.video_id for x in entries if x.split == "test"} == {"p49_lynaeydofd"}
    cut = discover("d", {**cfg, "max_videos": 2}, PARAMS)
    assert {x.label for x in cut} == {"real", "fake"} and "test" in {x.split for x in cut}
    assert all(x.path.is_file() for x in cut), "files that exist are preferred"


# ----------------------------------------------------------------------------- path safety, names, links


def _write_outside(tmp_path: Path, tiny: bytes) -> Path:
    """A real video outside the dataset root: the old adapters probed and hashed it."""
    return put(tmp_path / "outside.mp4", tiny)


def _rejected_rows(df: pd.DataFrame) -> pd.DataFrame:
    bad = df[df.error.str.contains("outside the dataset root")]
    assert (bad.status == "error").all() and (bad.sha256 == "").all() and (bad.n_frames == 0).all()
    return bad


def test_dfdc_names_outside_the_root_are_error_rows(tmp_path, tiny_mp4):
    outside = _write_outside(tmp_path, tiny_mp4)
    root = tmp_path / "ds"
    meta = {"ok.mp4": {"label": "REAL"}, "../../outside.mp4": {"label": "FAKE", "original": "ok.mp4"},
            str(outside): {"label": "REAL"}, "..\\..\\outside.mp4": {"label": "REAL"},
            "sub/../../../outside.mp4": {"label": "REAL"}}
    put(root / "dfdc_train_part_0/metadata.json", json.dumps(meta).encode())
    put(root / "dfdc_train_part_0/ok.mp4", tiny_mp4)
    put(root / "test/labels.csv", b"filename,label\ngood.mp4,0\n../../outside.mp4,1\n" + f"{outside},0\n".encode())
    put(root / "test/good.mp4", tiny_mp4)
    cfg = {"adapter": "dfdc", "root": str(root), "test_labels": "test/labels.csv"}
    entries = discover("d", cfg, PARAMS)
    assert_well_formed(entries)
    df = build_manifest("d", cfg, PARAMS)
    bad = _rejected_rows(df)
    assert len(bad) == 6 and len(df) == 8
    assert set(df[df.status == "ok"].video_id) == {"p0_ok", "test_good"}
    assert set(present_ids(entries)) == {"p0_ok", "test_good"}
    write_manifest(df, tmp_path / "m.parquet")  # the rest goes on


def test_celebdf_test_list_names_outside_the_root_are_error_rows(tmp_path, tiny_mp4):
    outside = _write_outside(tmp_path, tiny_mp4)
    root = tmp_path / "celeb"
    put(root / "Celeb-real/id0_0000.mp4", tiny_mp4)
    put(root / "Celeb-synthesis/id0_id1_0000.mp4", tiny_mp4)
    (root / "List_of_testing_videos.txt").write_text(
        f"1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/../../outside.mp4\n1 {outside}\n")
    cfg = {"adapter": "celebdf", "root": str(root)}
    df = build_manifest("d", cfg, PARAMS)
    bad = _rejected_rows(df)
    assert len(bad) == 2 and set(bad.split) == {"test"}
    assert (df[~df.index.isin(bad.index)].status == "ok").all() and len(df) == 4


def _non_utf8(folder: Path, raw: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / os.fsdecode(raw)


def test_a_file_name_that_is_not_utf8_is_one_error_row(tmp_path, tiny_mp4):
    root = tmp_path / "ds"
    put(root / "real/ok.mp4", tiny_mp4)
    put(root / "fake/f.mp4", tiny_mp4)
    for raw in (b"caf\xe9.mp4", b"caf\xe8.mp4"):  # Latin-1 names; the same id once the bad byte is replaced
        try:
            _non_utf8(root / "real", raw).write_bytes(tiny_mp4)
        except (OSError, UnicodeError):
            pytest.skip("this file system refuses names that are not UTF-8")
    cfg = {"adapter": "folder", "root": str(root)}
    df = build_manifest("d", cfg, PARAMS)  # raised UnicodeEncodeError before
    write_manifest(df, tmp_path / "m.parquet")
    back = pd.read_parquet(tmp_path / "m.parquet").set_index("video_id")
    bad = back[back.status == "error"]
    assert len(bad) == 2 and bad.error.str.contains("not valid UTF-8").all()
    assert set(bad.path.map(lambda p: Path(p).name)) == {"caf\\xe9.mp4", "caf\\xe8.mp4"}
    assert (back.drop(index=bad.index).status == "ok").all() and len(back) == 4
    assert set(present_ids(discover("d", cfg, PARAMS))) == {"real_ok", "fake_f"}


def test_symlinked_folders_are_followed_and_links_outside_the_root_logged(tmp_path, tiny_mp4, caplog):
    root = tmp_path / "ds"
    put(root / "real/a.mp4", tiny_mp4)
    put(root / "fake/inside/b.mp4", tiny_mp4)
    put(tmp_path / "elsewhere/c.mp4", tiny_mp4)
    try:
        (root / "real/linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        (root / "fake/again").symlink_to(root / "fake/inside", target_is_directory=True)
        (root / "real/loop").symlink_to(root / "real", target_is_directory=True)
    except OSError:
        pytest.skip("this system cannot make symlinks")
    with caplog.at_level(logging.WARNING):
        ids = {x.video_id for x in discover("d", {"adapter": "folder", "root": str(root)}, PARAMS)}
    # followed once each: the loop ends, the folder linked twice keeps its real path
    assert ids == {"real_a", "real_linked__c", "fake_inside__b"}
    assert "symlinks leading outside" in caplog.text and "linked/c.mp4" in caplog.text
