"""Per-video steps on bad input: every case gets outputs with a clear status, nothing raises,
status propagates to the end; stamps follow inputs and params."""

from __future__ import annotations


import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data as skdata

from blinkbench.core import io
from blinkbench.spine import steps
from conftest import make_video


def run_chain(video, out, params):
    """The chain on one video (the blink step's metadata), as the study and the EAR attack run it."""
    files = {"faces": "f.parquet", "crops": "c.npz", "landmarks": "l.parquet", "ear": "e.parquet",
             "blinks": "b.parquet", "blink_summary": "b.json"}
    return steps.run_chain(video, params, out, crops=True, files=files, steps_meta=True)["blinks"]


@pytest.fixture(scope="module")
def face_frame():
    img = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    return img


def test_no_face_anywhere(tmp_path, flat_video, params):
    s = run_chain(flat_video, tmp_path / "o", params)
    assert s["status"] == "no_face"
    assert s["frames"] == 20 and s["face_frames"] == 0
    for f in ("f.parquet", "l.parquet", "e.parquet", "b.parquet", "b.json"):
        assert (tmp_path / "o" / f).exists()
    assert io.read_meta(tmp_path / "o" / "l.parquet")["status"] == "no_face"


def _audio_only(path):
    import av

    with av.open(str(path), "w", format="wav") as c:
        st = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(st.encode(frame)) + list(st.encode(None)):
            c.mux(packet)


@pytest.mark.parametrize("kind, status", [("zero", "unreadable"), ("noise", "unreadable"), ("missing", "missing"),
                                          ("audio", "no_video_stream")])
def test_broken_files_get_status_rows(tmp_path, params, kind, status):
    v = tmp_path / f"{kind}.mp4"
    if kind == "zero":
        v.write_bytes(b"")
    elif kind == "noise":
        # Seeded: about 3 in 1000 random 4 KiB blobs pass FFmpeg's probe as an audio format
        # and give "no_video_stream" instead (the "audio" case), which made os.urandom flaky.
        v.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "audio":
        _audio_only(v)
    s = run_chain(v, tmp_path / "o", params)
    assert s["status"] == status
    assert s["error"]
    assert pd.read_parquet(tmp_path / "o" / "b.parquet").empty


def test_truncated_video_keeps_decoded_part(tmp_path, params, face_frame):
    # Moving frames, so the bytes spread over all frames and a cut lands mid-stream.
    v = make_video(tmp_path / "v.mkv", [np.roll(face_frame, 2 * i, axis=1) for i in range(50)], fps=25)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(v.read_bytes()[: int(v.stat().st_size * 0.9)])  # keeps whole clusters
    s = run_chain(cut, tmp_path / "o", params)
    assert s["status"] == "ok"
    assert 0 < s["frames"] < 50 and s["face_frames"] == s["frames"]


def test_two_faces_keeps_most_persistent_and_warns(tmp_path, params, face_frame):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(40):
        right = face_frame if i < 25 else np.full_like(face_frame, 90)  # second face leaves at 1 s
        frames.append(np.concatenate([face_frame, right], axis=1))
    v = make_video(tmp_path / "two.mp4", frames, fps=25)
    out = tmp_path / "o"
    out.mkdir()
    meta = steps.faces_one(v, out / "f.parquet", out / "c.npz", params)
    assert meta["status"] == "ok"
    assert meta["n_tracks"] >= 2
    assert any(w.startswith("multiple_faces") for w in meta["warnings"])
    track = pd.read_parquet(out / "f.parquet")
    assert track["face_present"].all()
    assert (track["x1"] <= 256 + 1).all(), "kept the face present in every frame (left one)"
    crops = np.load(out / "c.npz")
    assert crops["crops"].shape[1:] == (256, 256, 3) and len(crops["frames"]) > 0


def test_stamps_follow_params(tmp_path, flat_video, params):
    a = steps.faces_one(flat_video, tmp_path / "a.parquet", tmp_path / "a.npz", params)
    params["faces"]["detect_every"] = 3
    b = steps.faces_one(flat_video, tmp_path / "b.parquet", tmp_path / "b.npz", params)
    assert a["stamp"] != b["stamp"]
    e1 = steps.ear_one(tmp_path / "missing.parquet", tmp_path / "e.parquet")
    assert e1["status"] == "error" and "missing" in e1["error"]


def test_batch_skips_exactly_what_the_per_video_steps_stamped(tmp_path, monkeypatch, params, face_frame, flat_video):
    """run_batch's up-to-date check and the *_one functions share one stamp definition: after
    a batch run every video is up to date; a blink parameter change redoes only blinks."""
    from blinkbench import datasets

    root = tmp_path / "raw"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    make_video(root / "real" / "face.mp4", [face_frame] * 12)
    (root / "fake" / "flat.mp4").write_bytes(flat_video.read_bytes())
    monkeypatch.chdir(tmp_path)
    ds = {"adapter": "folder", "root": str(root)}
    params["datasets"] = {"t": ds}
    datasets.write_manifest(datasets.build_manifest("t", ds, params), "data/manifests/t.parquet")
    for step in ("faces", "landmarks", "ear", "blinks"):
        assert steps.run_batch(step, "t", params)["done"] == 2
    for step in ("faces", "landmarks", "ear", "blinks"):
        assert steps.run_batch(step, "t", params) == {"done": 0, "up_to_date": 2, "not_ok": 0}
    params["blinks"]["close_ratio"] = 0.45
    assert [steps.run_batch(s, "t", params)["done"] for s in ("faces", "landmarks", "ear", "blinks")] == [0, 0, 0, 2]


# ------------------------------------------------------------------ unreadable files (issue 13, item 10)

@pytest.fixture
def deny_read(monkeypatch):
    """``deny(path)``: make a file unreadable as the OS does for a non-root user (chmod 000).
    Root reads anything, so there ``open`` and ``os.access`` refuse the file too."""
    import builtins
    import os

    denied: set[str] = set()
    real_open, real_access = builtins.open, os.access

    def fake_open(file, *a, **k):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) in denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    def fake_access(path, mode, *a, **k):
        if isinstance(path, (str, os.PathLike)) and os.path.abspath(path) in denied and mode & os.R_OK:
            return False
        return real_access(path, mode, *a, **k)

    def deny(path):
        path.chmod(0)
        if os.geteuid() == 0:
            denied.add(os.path.abspath(path))
            monkeypatch.setattr(builtins, "open", fake_open)
            monkeypatch.setattr(os, "access", fake_access)

    return deny


def _two_video_dataset(tmp_path, monkeypatch, params, face_frame):
    from blinkbench import datasets

    root = tmp_path / "raw"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    make_video(root / "real" / "face.mp4", [face_frame] * 12)
    make_video(root / "fake" / "locked.mp4", [face_frame] * 12)
    monkeypatch.chdir(tmp_path)
    params["datasets"] = {"t": {"adapter": "folder", "root": str(root)}}
    # the report over what exists: no detectors or attacks in these tests
    for section in ("detectors", "frame_detectors"):
        params[section].update(enabled=[], train_on=None, test_on=None)
    params["attacks"]["enabled"] = params["blink_attacks"]["enabled"] = False
    return root, lambda: datasets.write_manifest(datasets.build_manifest("t", params["datasets"]["t"], params),
                                                 "data/manifests/t.parquet")


def _report_rows(params):
    from blinkbench.core import paths
    from blinkbench.report import build as report

    report.build(params)
    table = pd.read_csv(paths.path("dataset_summary", dataset="t")).set_index("video_id")
    return table, paths.PATTERNS["report"]


def test_unreadable_video_in_the_manifest_is_a_status_row_and_the_report_builds(
        tmp_path, monkeypatch, params, face_frame, deny_read):
    """DVC's batch: a file the manifest lists but nobody can read used to raise
    PermissionError from the hash in faces_one, outside its error handling, which stopped
    the stage and so the report. Stale temporaries of a killed run are cleaned first."""
    root, write_manifest = _two_video_dataset(tmp_path, monkeypatch, params, face_frame)
    deny_read(root / "fake" / "locked.mp4")
    write_manifest()
    stale = tmp_path / "data/faces/t/.real_face.tmp-999999999.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    for step in ("faces", "landmarks", "ear", "blinks"):
        counts = steps.run_batch(step, "t", params)
        assert counts == {"done": 2, "up_to_date": 0, "not_ok": 1}, (step, counts)
    assert not stale.exists()
    assert io.read_meta("data/faces/t/fake_locked.parquet")["status"] == "unreadable"
    assert io.read_json("data/blinks/t/fake_locked.json")["status"] == "unreadable"
    table, page = _report_rows(params)
    assert table.loc["fake_locked", "status"] == "unreadable" and table.loc["real_face", "status"] == "ok"
    assert "unreadable" in open(page).read()


def test_unreadable_video_or_model_in_one_job_is_a_status_row(tmp_path, params, face_frame, deny_read):
    """Snakemake's per-video jobs call the *_one functions without a known hash."""
    v = make_video(tmp_path / "v.mp4", [face_frame] * 12)
    model = tmp_path / "pfld.onnx"
    model.write_bytes(b"not a model")
    deny_read(v)
    s = run_chain(v, tmp_path / "o", params)
    assert s["status"] == "unreadable" and s["error"]
    assert pd.read_parquet(tmp_path / "o" / "b.parquet").empty
    deny_read(model)
    params["landmarks"].update(backend="pfld", pfld_model=str(model))
    ok = make_video(tmp_path / "ok.mp4", [face_frame] * 12)
    out = tmp_path / "p"
    out.mkdir()
    steps.faces_one(ok, out / "f.parquet", out / "c.npz", params)
    meta = steps.landmarks_one(ok, out / "f.parquet", out / "l.parquet", params)
    assert meta["status"] == "error" and meta["error"]
    assert io.read_meta(out / "l.parquet")["status"] == "error"


def test_batch_goes_on_when_a_video_raises_and_the_report_shows_it(tmp_path, monkeypatch, params, face_frame):
    """Last resort: a per-video function that raises anyway costs that video only; later
    steps record its missing artifact as an error row and the report is built."""
    root, write_manifest = _two_video_dataset(tmp_path, monkeypatch, params, face_frame)
    write_manifest()
    real_faces_one = steps.faces_one

    def flaky(video, *a, **k):
        if "locked" in str(video):
            raise OSError(28, "No space left on device")
        return real_faces_one(video, *a, **k)

    monkeypatch.setattr(steps, "faces_one", flaky)
    assert steps.run_batch("faces", "t", params) == {"done": 2, "up_to_date": 0, "not_ok": 1}
    assert not (tmp_path / "data/faces/t/fake_locked.parquet").exists()
    for step in ("landmarks", "ear", "blinks"):
        assert steps.run_batch(step, "t", params)["not_ok"] == 1
    summary = io.read_json("data/blinks/t/fake_locked.json")
    assert summary["status"] == "error" and "missing or unreadable input artifact" in summary["error"]
    table, _ = _report_rows(params)
    assert table.loc["fake_locked", "status"] == "error" and table.loc["real_face", "status"] == "ok"


@pytest.mark.parametrize("damage", ["truncated", "not_an_object", "events_garbled", "ear_garbled"])
def test_corrupt_blink_outputs_of_an_ok_video_are_a_status_row_and_the_report_builds(
        tmp_path, monkeypatch, params, face_frame, damage):
    """Issue 13 item 10: a blink summary JSON (or events file) damaged after its video ran ok
    made the report raise; now that video is an error row naming the file and the rest is built."""
    root, write_manifest = _two_video_dataset(tmp_path, monkeypatch, params, face_frame)
    write_manifest()
    for step in ("faces", "landmarks", "ear", "blinks"):
        steps.run_batch(step, "t", params)
    summary, events = tmp_path / "data/blinks/t/real_face.json", tmp_path / "data/blinks/t/real_face.parquet"
    assert io.read_json(summary)["status"] == "ok"
    if damage == "truncated":
        summary.write_bytes(summary.read_bytes()[:17])
    elif damage == "not_an_object":
        summary.write_text("[1, 2]")
    elif damage == "events_garbled":
        events.write_bytes(events.read_bytes()[:40])
    else:  # the EAR series only feeds a plot: the row stays ok, the plot is left out
        ear = tmp_path / "data/ear/t/real_face.parquet"
        ear.write_bytes(ear.read_bytes()[:40])
        table, page = _report_rows(params)
        assert (table["status"] == "ok").all() and not (tmp_path / "data/reports/t/ear_real_face.png").exists()
        assert (tmp_path / "data/reports/t/ear_fake_locked.png").exists()
        return
    table, page = _report_rows(params)
    assert table.loc["real_face", "status"] == "error"
    assert "real_face" in table.loc["real_face", "error"] and "blink" in table.loc["real_face", "error"]
    assert table.loc["fake_locked", "status"] == "ok"
    assert "real_face" in open(page).read()


def test_chain_from_a_later_step_reads_the_earlier_outputs_and_leaves_them(tmp_path, params, face_frame):
    """run_chain/run_steps ``start_at`` (issue 11.1): from ``landmarks`` on, on a face track
    made before (given by absolute path in ``files``), the chain runs only the later steps,
    does not rewrite the track, and ends where the full chain ends; an unknown step is refused;
    a track that is not there becomes a status row."""
    v = make_video(tmp_path / "v.mkv", [np.roll(face_frame, 2 * i, axis=1) for i in range(12)], fps=25)
    full = steps.run_chain(v, params, tmp_path / "full", crops=True, steps_meta=True)
    track = tmp_path / "full" / "faces.parquet"
    before = track.read_bytes()
    part = steps.run_chain(v, params, tmp_path / "part", files={"faces": track}, start_at="landmarks", steps_meta=True)
    assert list(part) == ["landmarks", "ear", "blinks", "paths"]
    assert track.read_bytes() == before and not (tmp_path / "part" / "faces.parquet").exists()
    assert not (tmp_path / "part" / "crops.npz").exists()
    assert part["blinks"]["status"] == "ok" and part["blinks"]["stamp"] == full["blinks"]["stamp"]
    for name in ("landmarks.parquet", "ear.parquet", "blinks.parquet", "summary.json"):
        assert (tmp_path / "part" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name

    outs = {k: tmp_path / "ear_on" / n for k, n in steps.CHAIN_FILES.items()}
    outs["landmarks"] = tmp_path / "full" / "landmarks.parquet"
    assert list(steps.run_steps(v, outs, params, start_at="ear")) == ["ear", "blinks"]
    with pytest.raises(ValueError, match="start_at"):
        steps.run_steps(v, outs, params, start_at="crops")
    gone = steps.run_chain(v, params, tmp_path / "gone", files={"faces": tmp_path / "nope.parquet"},
                           start_at="landmarks", steps_meta=True)
    assert gone["blinks"]["status"] == "error" and "nope.parquet" in gone["blinks"]["error"]
