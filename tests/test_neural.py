"""The neural blink detectors: the seven networks, the by-video split, and the Lightning fit
(seeded, quiet, no files, exact save/load, a differentiable network for the attacks).

Learning itself (AUC on a separable task) is checked for every detector by
``tests/test_detectors.py``; here each detector is fitted on a small blinking/non-blinking set.
Torch runs on one thread in this module (restored afterwards): the machine's two cores are
shared, and tiny networks gain nothing from a second thread.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from blinkbench.detectors.blink import Detector, create, get, nets
from blinkbench.detectors.blink.neural import NeuralWindowDetector, WindowDataModule, split_by_video
from blinkbench.detectors.blink.series import VideoSeries, window_batch

NEURAL = ["fcn", "resnet1d", "inceptiontime", "lstm_fcn", "bilstm", "mlp", "cnn1d"]
# Small widths so shape and gradient checks are instant.
NET_KW = {"fcn": {"filters": (4, 8, 4)}, "resnet1d": {"filters": (4, 8, 8)},
          "inceptiontime": {"filters": 4, "depth": 3, "bottleneck": 4},
          "lstm_fcn": {"hidden": 4, "filters": (4, 8, 4)}, "bilstm": {"hidden": 4},
          "mlp": {"hidden": (8, 8)}, "cnn1d": {"filters": (3, 4)}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def blink_videos(n_per_class: int, seed: int, seconds: float = 16.0, fps: float = 25.0):
    """Real videos: EAR ~0.3 with 15-20 blinks/min dipping to ~0.1 for 100-400 ms; fake: no blinks."""
    rng = np.random.default_rng(seed)
    videos = []
    t = np.arange(int(seconds * fps)) / fps
    for i in range(2 * n_per_class):
        fake = i % 2 == 1
        ear = 0.3 + rng.normal(0, 0.008, len(t))
        s = rng.uniform(0, 2)
        while not fake and s < seconds:
            dur = rng.uniform(0.1, 0.4)
            inside = (t >= s) & (t <= s + dur)
            ear[inside] = 0.3 - 0.2 * np.sin(np.pi * (t[inside] - s) / dur)
            s += dur + rng.exponential(60 / rng.uniform(15, 20))
        videos.append(VideoSeries(f"s{seed}_{i}", t, ear, label=int(fake)))
    return videos, np.array([v.label for v in videos])


@pytest.fixture(scope="module")
def data():
    train, y_train = blink_videos(6, seed=0)
    test, _ = blink_videos(3, seed=1)
    return train, y_train, test


# -- networks ---------------------------------------------------------------------------
def test_every_network_is_covered():
    assert set(NET_KW) == set(nets.NETS) == set(NEURAL)


@pytest.mark.parametrize("in_channels", [1, 2])
@pytest.mark.parametrize("length", [50, 150])
@pytest.mark.parametrize("arch", NEURAL)
def test_one_logit_per_window(arch, length, in_channels):
    torch.manual_seed(0)
    net = nets.build(arch, in_channels, length, **NET_KW[arch])
    x = torch.randn(5, in_channels, length)
    assert net(x).shape == (5,)
    net.eval()
    out = net(x[:1])                                   # eval mode, batch of one
    assert out.shape == (1,) and torch.isfinite(out).all()


@pytest.mark.parametrize("arch", NEURAL)
def test_gradient_reaches_the_input(arch):
    torch.manual_seed(0)
    net = nets.build(arch, 1, 150, **NET_KW[arch]).eval()
    x = (1 + 0.1 * torch.randn(3, 1, 150)).requires_grad_(True)
    net(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(dim=(1, 2)) > 0).all()    # every window gets a gradient


def test_inception_kernels_are_odd_and_fit_the_window():
    net = nets.build("inceptiontime", 1, 15, filters=4, depth=3, kernel_size=39)
    assert net.kernel_sizes == [15, 7, 3]
    assert nets.InceptionTime(kernel_size=39).kernel_sizes == [39, 19, 9]
    assert net(torch.randn(2, 1, 15)).shape == (2,)


def test_lstm_fcn_dimension_shuffle_is_built_for_one_length():
    with pytest.raises(ValueError, match="length"):
        nets.LSTMFCN(shuffle=True)
    net = nets.build("lstm_fcn", 1, 50, hidden=4, filters=(4, 8, 4))
    with pytest.raises(ValueError, match="50 samples"):
        net(torch.randn(2, 1, 60))
    plain = nets.build("lstm_fcn", 1, None, hidden=4, filters=(4, 8, 4), shuffle=False)
    assert plain(torch.randn(2, 1, 60)).shape == plain(torch.randn(2, 1, 50)).shape == (2,)


def test_reference_networks_shapes():
    with pytest.raises(ValueError, match="length"):
        nets.build("cnn1d", 1, None, **NET_KW["cnn1d"])
    with pytest.raises(ValueError, match="50 samples"):
        nets.build("cnn1d", 1, 50, **NET_KW["cnn1d"])(torch.randn(2, 1, 60))
    with pytest.raises(ValueError, match="dropout"):
        nets.MLP(hidden=(8, 8), dropout=(0.1,), length=50)
    # Wang et al.'s MLP (the registered one) sees the flattened window of one length.
    with pytest.raises(ValueError, match="length"):
        nets.build("mlp", 1, None, **NET_KW["mlp"])
    flat = nets.build("mlp", 2, 50, **NET_KW["mlp"])
    assert flat.body[1].in_features == 2 * 50
    with pytest.raises(ValueError, match="50 samples"):
        flat(torch.randn(2, 2, 60))
    # The reference code's per-time-step MLP scores the distribution of values over time,
    # not their order, and takes any length.
    mlp = nets.build("mlp", 1, None, flatten=False, **NET_KW["mlp"]).eval()
    x = torch.randn(2, 1, 40)
    assert torch.allclose(mlp(x), mlp(x.flip(-1)), atol=1e-6) and mlp(x[..., :25]).shape == (2,)
    # Time-CNN: pooling by 3 twice, a short last block kept: 50 -> 17 -> 6 samples of 4 filters.
    assert nets.build("cnn1d", 1, 50, filters=(3, 4)).head.in_features == 4 * 6
    pool = nets.TimeCNN(length=4, filters=(1,), pool=3).pool
    assert torch.allclose(pool(torch.tensor([[[1.0, 2.0, 3.0, 10.0]]])), torch.tensor([[[2.0, 10.0]]]))
    # Keras' initialisation (Glorot-uniform weights, zero biases) unless asked otherwise.
    cnn = nets.build("cnn1d", 1, 50, filters=(3, 4))
    assert all(float(c.bias.abs().max()) == 0 for c in cnn.convs) and float(cnn.head.bias.abs().max()) == 0
    assert float(nets.build("cnn1d", 1, 50, filters=(3, 4), keras_init=False).head.bias.abs().max()) > 0


def test_reference_networks_centre_their_input():
    """The cure for the reference networks not learning: each input channel is batch-normalised
    first, so a median-normalised EAR window (near 1, dips of a few samples) reaches the layers
    centred and scaled; an offset added to every window changes nothing in training mode."""
    torch.manual_seed(0)
    x = 1 + 0.1 * torch.randn(8, 1, 50)
    for arch in ("mlp", "cnn1d"):
        net = nets.build(arch, 1, 50, **NET_KW[arch])
        net.train()
        torch.manual_seed(1)
        a = net(x)
        torch.manual_seed(1)
        b = net(x + 5.0)
        assert torch.allclose(a, b, atol=1e-4), arch
        raw = nets.build(arch, 1, 50, input_norm=False, **NET_KW[arch]).train()
        torch.manual_seed(1)
        c = raw(x)
        torch.manual_seed(1)
        assert not torch.allclose(c, raw(x + 5.0), atol=1e-4), arch


def test_unknown_network_is_named():
    with pytest.raises(KeyError, match="unknown network"):
        nets.build("transformer")


def test_recalibrated_batchnorm_holds_the_population_statistics():
    torch.manual_seed(0)
    net = nets.build("lstm_fcn", 1, 30, hidden=4, filters=(3, 4, 3)).train()
    x = 5 + 2 * torch.randn(64, 1, 30)
    nets.recalibrate_batchnorm(net, x, batch_size=64)
    first = net.fcn.blocks[0]
    z = first.conv(F.pad(x, first.pad)).detach()
    assert torch.allclose(first.bn.running_mean, z.mean(dim=(0, 2)), atol=1e-4)
    assert torch.allclose(first.bn.running_var, z.var(dim=(0, 2)), rtol=1e-4)
    assert net.training and first.bn.momentum == 0.1     # mode and momentum restored
    net.eval()
    a = net(x[:4])
    assert torch.equal(a, net(x[:4]))                  # dropout was left alone: eval is exact


# -- the by-video split -----------------------------------------------------------------
def _windows(n_videos: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, n_videos)
    groups = np.repeat(np.arange(n_videos), counts)
    y = groups % 2                                       # a video's windows share its label
    X = rng.normal(1, 0.1, (len(groups), 20)).astype(np.float32)
    return X, np.ones_like(X, bool), y, groups


def test_split_holds_out_whole_videos_of_both_classes():
    X, M, y, g = _windows()
    splits = set()
    for seed in range(6):
        tr, va = split_by_video(g, y, 0.25, seed)
        assert set(g[tr]).isdisjoint(g[va])
        assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(g)))
        assert set(y[va]) == set(y[tr]) == {0, 1}
        assert len(set(g[va])) == 4                      # round(0.25 x 6) videos per class
        again = split_by_video(g, y, 0.25, seed)
        assert np.array_equal(tr, again[0]) and np.array_equal(va, again[1])
        splits.add(tuple(va))
    assert len(splits) > 1                               # the seed decides which videos


def test_split_never_empties_training():
    g, y = np.array([0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 1])
    assert len(split_by_video(g, y, 0.5, 0)[1]) == 0     # one video per class: no validation
    g, y = np.arange(6), np.array([0, 0, 0, 1, 1, 1])
    tr, va = split_by_video(g, y, 0.9, 0)
    assert set(y[tr]) == {0, 1} and len(va) == 4
    assert len(split_by_video(g, y, 0.0, 0)[1]) == 0


def test_datamodule_serves_its_split():
    X, M, y, g = _windows()
    dm = WindowDataModule(X, M, y, g, batch_size=8, val_fraction=0.25, seed=3, mask_channel=True)
    dm.setup("fit")
    tr, va = split_by_video(g, y, 0.25, 3)
    assert np.array_equal(dm.train_idx, tr) and np.array_equal(dm.val_idx, va)
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape == (len(va), 2, 20)                  # EAR + mask channels
    assert torch.equal(xv[:, 0], torch.from_numpy(X[va])) and torch.equal(yv, torch.from_numpy(y[va]).float())
    assert sum(len(b[1]) for b in dm.train_dataloader()) == len(tr)
    first = [next(iter(WindowDataModule(X, M, y, g, batch_size=8, seed=3).train_dataloader()))[1]
             for _ in range(2)]
    assert torch.equal(*first)                           # seeded shuffling
    with pytest.raises(ValueError, match="NaN"):
        WindowDataModule(np.full_like(X, np.nan), M, y, g)


# -- the detectors -----------------------------------------------------------------------
@pytest.mark.parametrize("name", NEURAL)
def test_fit_is_seeded_quiet_and_round_trips_exactly(name, data, tmp_path, monkeypatch, capfd):
    train, y_train, test = data
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    det_flag = torch.are_deterministic_algorithms_enabled()
    capfd.readouterr()

    a, b = (create(name, seed=5, **get(name).test_params).fit(train, y_train) for _ in range(2))
    p = a.predict_proba(test)
    assert np.array_equal(p, b.predict_proba(test))

    out = capfd.readouterr()
    assert "GPU available" not in out.out + out.err and "Seed set" not in out.out + out.err
    assert os.listdir(cwd) == []                         # no lightning_logs, no checkpoints
    assert torch.are_deterministic_algorithms_enabled() == det_flag
    assert a.family == "neural" and isinstance(a, NeuralWindowDetector)
    info = a.fit_info_
    if a.hyper["val_fraction"] > 0:
        assert info["n_val_videos"] >= 2 and info["best_epoch"] is not None
        assert {"train_loss", "val_loss", "val_acc"} <= set(a.history_[info["best_epoch"]])
    else:                                                # trained as the reference: fixed epochs
        assert info["n_val_videos"] == 0 and info["best_epoch"] is None
        assert len(a.history_) == a.hyper["epochs"] and "train_loss" in a.history_[-1]

    path = tmp_path / "det.zip"
    a.save(path)
    assert b"lightning" not in path.read_bytes()         # the net as a state dict, no Trainer
    back = Detector.load(path)
    assert np.array_equal(back.predict_proba(test), p)

    net = back.network()
    assert not net.training
    X, M, _ = window_batch(test, back.series)
    x = torch.from_numpy(X[:4]).requires_grad_(True)
    logits = back.window_logits(x)
    assert logits.shape == (4,)
    assert np.allclose(torch.sigmoid(logits).detach().numpy(), back._predict_windows(X[:4], M[:4]), atol=1e-6)
    logits.sum().backward()
    assert (x.grad.abs().sum(dim=1) > 0).all()


def test_mask_channel_and_no_validation(data):
    train, y_train, test = data
    det = create("fcn", seed=0, mask_channel=True, val_fraction=0.0, epochs=2, filters=[4, 8, 4]).fit(train, y_train)
    assert det.network().blocks[0].conv.in_channels == 2
    assert det.fit_info_["n_val_windows"] == 0 and det.fit_info_["best_epoch"] is None
    assert len(det.history_) == 2                        # no early stopping without validation
    X, M, _ = window_batch(test, det.series)
    p = det._predict_windows(X, M)
    with torch.no_grad():
        q = torch.sigmoid(det.window_logits(torch.from_numpy(X), torch.from_numpy(M))).numpy()
    assert np.allclose(p, q, atol=1e-6)
    with pytest.raises(ValueError, match="expected windows"):
        det.window_logits(torch.zeros(2, 2, X.shape[1]))


def test_network_before_fit_is_refused():
    with pytest.raises(RuntimeError, match="before fit"):
        create("bilstm").network()
