"""EAR series preparation (``blinkbench.detectors.blink.series``) and the evaluation protocol
(``blinkbench.detectors.evaluation``), on cases small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from blinkbench.detectors import evaluation
from blinkbench.core import io
from blinkbench.detectors.blink.series import (SeriesConfig, VideoSeries, aggregate, feature_matrix, feature_names,
    features, prepare, resample, window_batch, windows)

NONE = SeriesConfig(normalise="none")


def _video(ear, fps=25.0, vid="v"):
    ear = np.asarray(ear, float)
    return VideoSeries(vid, np.arange(len(ear)) / fps, ear)


# ----------------------------------------------------------------------------- config

def test_config_derived_lengths_and_validation():
    cfg = SeriesConfig()
    assert (cfg.window_len, cfg.stride_len) == (150, 50)          # 6 s and 2 s at 25 Hz
    assert SeriesConfig.from_params(None) == cfg
    assert SeriesConfig.from_params({"window_s": 4.0}).window_len == 100
    assert SeriesConfig.from_params(cfg.as_dict()) == cfg
    for bad in ({"normalise": "l2"}, {"aggregate": "sum"}, {"rate_hz": 0}, {"stride_s": -1.0}):
        with pytest.raises(ValueError):
            SeriesConfig(**bad)
    with pytest.raises(TypeError):
        SeriesConfig.from_params({"window": 6})


# ----------------------------------------------------------------------------- resampling

def test_25_and_30_fps_land_on_the_same_grid():
    def signal(t):
        return 0.3 + 0.05 * np.sin(2 * np.pi * 0.3 * t)

    a = _video(signal(np.arange(500) / 25.0), fps=25.0)           # 20 s at 25 fps
    b = _video(signal(np.arange(600) / 30.0), fps=30.0)           # 20 s at 30 fps
    pa, pb = prepare(a, NONE), prepare(b, NONE)
    assert len(pa.values) == len(pb.values) == 500                # 25 Hz grid over 19.96 s
    grid = np.arange(500) / 25.0
    np.testing.assert_allclose(pa.values, signal(grid), atol=1e-6)
    np.testing.assert_allclose(pb.values, signal(grid), atol=1e-4)  # linear interpolation error
    assert pa.mask.all() and pb.mask.all()


def test_variable_frame_rate_is_resampled_uniformly():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.02, 0.06, 300))
    x = 0.3 + 0.01 * t                                            # linear: interpolation is exact
    grid, y = resample(t, x, 25.0)
    np.testing.assert_allclose(np.diff(grid), 0.04)
    assert grid[0] == t[0] and grid[-1] <= t[-1]
    np.testing.assert_allclose(y, 0.3 + 0.01 * grid)


def test_short_gap_is_interpolated_and_long_gap_masked():
    n = 500
    ear = 0.2 + 0.0004 * np.arange(n)                             # linear ramp, 25 fps
    ear[100:105] = np.nan                                         # 0.2 s <= interpolate_gap_s 0.25
    ear[300:350] = np.nan                                         # 2 s: masked
    ear[0:3] = np.nan                                             # short but at the edge: masked
    p = prepare(_video(ear), NONE)
    expected_mask = np.ones(n, bool)
    expected_mask[300:350] = False
    expected_mask[0:3] = False
    np.testing.assert_array_equal(p.mask, expected_mask)
    np.testing.assert_allclose(p.values[100:105], 0.2 + 0.0004 * np.arange(100, 105), rtol=1e-6)
    neutral = np.median(p.values[p.mask])                         # the open-eye level
    np.testing.assert_allclose(p.values[300:350], neutral, rtol=1e-6)
    np.testing.assert_allclose(p.values[0:3], neutral, rtol=1e-6)
    assert p.values.dtype == np.float32


def test_faceless_video_is_all_masked_with_neutral_values():
    p = prepare(_video(np.full(100, np.nan)), SeriesConfig())
    assert not p.mask.any() and (p.values == 1.0).all()
    assert resample(np.zeros(0), np.zeros(0), 25.0)[0].shape == (0,)


# ----------------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("how", ["none", "median", "zscore", "minmax"])
def test_normalisations(how):
    rng = np.random.default_rng(1)
    ear = 0.3 + 0.02 * rng.standard_normal(400)
    ear[50:60] = 0.1                                              # a blink
    ear[200:260] = np.nan                                         # a masked gap
    p = prepare(_video(ear), SeriesConfig(normalise=how))
    obs = p.values[p.mask].astype(float)
    raw = ear[np.isfinite(ear)]
    if how == "none":
        np.testing.assert_allclose(obs, raw, rtol=1e-6)
    elif how == "median":
        assert np.median(obs) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(obs, raw / np.median(raw), rtol=1e-5)
    elif how == "zscore":
        assert obs.mean() == pytest.approx(0.0, abs=1e-5) and obs.std() == pytest.approx(1.0, abs=1e-5)
    else:
        assert obs.min() == pytest.approx(0.0, abs=1e-6) and obs.max() == pytest.approx(1.0, abs=1e-6)
    # masked samples hold the normalised open-eye level (the observed median)
    np.testing.assert_allclose(p.values[~p.mask], np.median(obs), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- windows

def test_window_count_and_tail_coverage():
    cfg = SeriesConfig()                                          # L 150, stride 50
    W, M = windows(prepare(_video(np.full(500, 0.3)), cfg), cfg)
    assert W.shape == M.shape == (8, 150)                         # starts 0, 50, ..., 350
    ramp = prepare(_video(0.3 + 0.0001 * np.arange(520)), cfg)
    W, M = windows(ramp, cfg)
    assert W.shape == (9, 150)                                    # 0..350, then the tail at 370
    np.testing.assert_array_equal(W[-1], ramp.values[370:520])
    np.testing.assert_array_equal(W[1], ramp.values[50:200])


def test_short_video_is_padded_and_kept():
    cfg = SeriesConfig()
    W, M = windows(prepare(_video(np.full(100, 0.3)), cfg), cfg)  # 4 s < one 6 s window
    assert W.shape == (1, 150)
    assert M[0, :100].all() and not M[0, 100:].any()              # 33 % masked, but the only one
    np.testing.assert_allclose(W[0], 1.0)                         # median-normalised open level


def test_mostly_masked_windows_are_dropped():
    cfg = SeriesConfig()
    ear = 0.3 + 0.0001 * np.arange(500)
    ear[100:300] = np.nan
    p = prepare(_video(ear), cfg)
    W, M = windows(p, cfg)
    # start s keeps its window when [s, s+150) overlaps [100, 300) by <= 30 %: only 300 and 350
    assert W.shape == (2, 150)
    np.testing.assert_array_equal(W[0], p.values[300:450])
    assert M.all()
    # with nothing left to keep, every window is kept rather than none
    W, M = windows(prepare(_video(np.full(300, np.nan)), cfg), cfg)
    assert len(W) == 4 and not M.any()


def test_window_batch_groups_videos_in_order():
    cfg = SeriesConfig()
    vids = [_video(np.full(500, 0.3), vid="a"), _video(np.full(100, 0.3), vid="b"),
            _video(np.full(520, 0.3), vid="c")]
    X, M, g = window_batch(vids, cfg)
    assert X.shape == (8 + 1 + 9, 150) and X.dtype == np.float32 and M.dtype == bool
    np.testing.assert_array_equal(np.bincount(g), [8, 1, 9])
    assert (np.diff(g) >= 0).all()
    X, M, g = window_batch([], cfg)
    assert X.shape == (0, 150) and M.shape == (0, 150) and g.shape == (0,)


def test_aggregate():
    s = np.array([0.2, 0.4, 0.9, 0.1])
    g = np.array([0, 0, 0, 2])
    np.testing.assert_allclose(aggregate(s, g, 3, "mean"), [0.5, 0.5, 0.1])   # video 1: no windows
    np.testing.assert_allclose(aggregate(s, g, 3, "median"), [0.4, 0.5, 0.1])
    np.testing.assert_allclose(aggregate(s, g, 3, "max"), [0.9, 0.5, 0.1])
    assert aggregate(np.zeros(0), np.zeros(0, int), 0).shape == (0,)


# ----------------------------------------------------------------------------- feature view

def _blinking(n_blinks: int, seconds: float = 30.0, fps: float = 25.0) -> np.ndarray:
    t = np.arange(int(seconds * fps)) / fps
    ear = np.full(len(t), 0.3)
    for c in (np.arange(n_blinks) + 0.5) * seconds / max(n_blinks, 1):
        ear[np.abs(t - c) < 0.1] = 0.1                            # 200 ms closed
    return ear


def test_feature_view_counts_blinks():
    names = feature_names()
    blinking = features(_video(_blinking(10)))
    assert blinking.shape == (len(names),)
    f = dict(zip(names, blinking))
    assert f["n_blinks"] == 10 and f["blink_rate_per_min"] == pytest.approx(20.0, rel=0.01)
    assert f["ibi_mean_s"] == pytest.approx(3.0, abs=0.05) and f["face_fraction"] == 1.0
    still = dict(zip(names, features(_video(_blinking(0)))))
    assert still["n_blinks"] == 0 and still["ibi_mean_s"] == 0.0 and still["ibi_cv"] == 0.0
    faceless = dict(zip(names, features(_video(np.full(250, np.nan)))))
    assert faceless["face_fraction"] == 0.0 and faceless["blink_rate_per_min"] == 0.0
    assert feature_matrix([]).shape == (0, len(names))
    assert feature_matrix([_video(_blinking(3)), _video(_blinking(6))]).shape == (2, len(names))


def test_video_series_from_artifacts(tmp_path):
    t = np.arange(50) / 25.0
    ear = np.where(np.arange(50) == 7, np.nan, 0.3)
    io.write_parquet(pd.DataFrame({"frame": np.arange(50), "timestamp_s": t, "ear_mean": ear}),
                     tmp_path / "v.parquet")
    io.write_json({"n_blinks": 2}, tmp_path / "v.json")
    v = VideoSeries.from_artifacts("v", tmp_path / "v.parquet", tmp_path / "v.json", label=1)
    np.testing.assert_array_equal(v.t, t)
    assert np.isnan(v.ear[7]) and v.summary == {"n_blinks": 2} and v.label == 1
    assert VideoSeries.from_artifacts("v", tmp_path / "v.parquet", tmp_path / "missing.json").summary == {}


# ----------------------------------------------------------------------------- evaluation

def test_metrics_on_a_hand_computed_case():
    # scores sorted: 0.9 fake, 0.7 real, 0.6 fake, 0.5 real, 0.1 real
    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.5, 0.7, 0.6, 0.9]
    m = evaluation.metrics(y, s)
    assert (m["n"], m["n_fake"], m["n_real"]) == (5, 2, 3)
    assert m["auc"] == pytest.approx(5 / 6)       # fake 0.9 beats 3 reals, 0.6 beats 2 of 3
    assert m["ap"] == pytest.approx((1.0 + 2 / 3) / 2)   # precision 1 at recall .5, 2/3 at 1
    # ROC (fpr, fnr): (0,1) (0,.5) (1/3,.5) (1/3,0) ...: fpr - fnr crosses 0 a third of the way
    # from threshold 0.7 to 0.6, where fpr = fnr = 1/3.
    assert m["eer"] == pytest.approx(1 / 3)
    assert m["eer_threshold"] == pytest.approx(0.7 - (0.7 - 0.6) / 3)
    assert m["acc_0.5"] == pytest.approx(3 / 5)   # 0.5 and 0.7 called fake wrongly
    assert m["acc_eer"] == pytest.approx(3 / 5)   # >= 0.667 called fake: 0.7 wrong, 0.6 missed


def test_metrics_perfect_and_inverted():
    m = evaluation.metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert (m["auc"], m["eer"], m["ap"], m["acc_0.5"], m["acc_eer"]) == (1.0, 0.0, 1.0, 1.0, 1.0)
    assert 0.2 < m["eer_threshold"] <= 0.8
    m = evaluation.metrics([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])
    assert m["auc"] == 0.0 and m["eer"] == 1.0 and m["acc_0.5"] == 0.0


def test_roc_and_eer_on_a_tie_point():
    # ROC passes through fpr = fnr = 0.5 exactly at threshold 0.4
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert evaluation.metrics(y, s)["auc"] == pytest.approx(0.75)
    assert evaluation.eer(y, s) == pytest.approx((0.5, 0.4))
    r = evaluation.roc(y, s)
    assert list(r.columns) == ["fpr", "tpr", "threshold"]
    assert (r.iloc[0]["fpr"], r.iloc[0]["tpr"]) == (0.0, 0.0) and np.isnan(r.iloc[0]["threshold"])
    assert (r.iloc[-1]["fpr"], r.iloc[-1]["tpr"]) == (1.0, 1.0)


def test_one_class_set_gives_none():
    m = evaluation.metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert m["auc"] is None and m["eer"] is None and m["ap"] is None and m["acc_eer"] is None
    assert m["acc_0.5"] == pytest.approx(2 / 3) and m["n_fake"] == 3
    empty = evaluation.metrics([], [])
    assert empty["n"] == 0 and empty["acc_0.5"] is None and empty["auc"] is None


def test_metrics_reject_bad_scores():
    with pytest.raises(ValueError, match="shape"):
        evaluation.metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        evaluation.metrics([0, 1], [0.5, np.nan])


def test_frame_scores_grouped_by_video_id():
    frames = pd.DataFrame({"video_id": ["b", "a", "a", "b", "a"], "score": [0.9, 0.2, 0.6, 0.7, 0.1]})
    v = evaluation.frame_to_video(frames).set_index("video_id")
    assert list(v.index) == ["a", "b"]
    assert v.loc["a", "mean_prob"] == pytest.approx(0.3) and v.loc["a", "frac_fake"] == pytest.approx(1 / 3)
    assert v.loc["b", "mean_prob"] == pytest.approx(0.8) and v.loc["b", "frac_fake"] == 1.0
    assert v["n_frames"].tolist() == [3, 2]
