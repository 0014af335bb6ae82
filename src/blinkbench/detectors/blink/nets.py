"""The time-series networks behind the neural blink detectors, as plain ``nn.Module``s.

Each takes a batch of EAR windows ``(batch, C, L)`` and returns one logit per window,
shape ``(batch,)`` (positive = fake). ``C`` is 1 (the EAR values) or 2 when the observed-mask
is fed as a second channel (``in_channels=2``); masked samples already carry the video's
open-eye level (``series.prepare``), so one channel is the default.

The modules are plain PyTorch (no Lightning), differentiable end to end with respect to the
input (no in-place activations, no ``no_grad`` inside), and work in eval mode on a batch of
one, so the attacks can back-propagate to the EAR series and export can trace them.

- :class:`FCN` - Wang, Yan & Oates 2017, "Time series classification from scratch with deep
  neural networks: a strong baseline": three conv blocks (128 k8, 256 k5, 128 k3) with batch
  norm and ReLU, global average pooling, linear.
- :class:`ResNet1D` - same paper: three residual blocks (64, 128, 128 filters), each three
  convs k8/k5/k3, with a 1x1-conv (or batch-norm only) shortcut.
- :class:`InceptionTime` - Ismail Fawaz et al. 2020: inception modules (bottleneck 1x1, three
  convs of kernel sizes k, k/2, k/4 made odd, a max-pool + 1x1 branch), a residual shortcut
  every three modules.
- :class:`LSTMFCN` - Karim et al. 2018: an LSTM branch and the FCN branch, concatenated. With
  ``shuffle=True`` (the paper's *dimension shuffle*) the LSTM reads the window as ``C`` time
  steps of ``L`` features (so it is built for one window length); with ``shuffle=False`` it
  reads ``L`` steps of ``C`` features (any length).
- :class:`BiLSTM` - a bidirectional LSTM whose head sees the time-averaged outputs and the
  final hidden states of both directions.
- :class:`MLP` and :class:`TimeCNN` - the reference study's multilayer perceptron (Wang et
  al.'s, over the flattened window; or per time step and averaged, as the reference's code
  runs it) and 1-D CNN (Zhao et al. 2017); both batch-normalise their input and are built
  for one window length.

:func:`build` makes any of them by name (``NETS``), passing ``length`` to the ones that use it.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def to_input(X, M, mask_channel: bool) -> torch.Tensor:
    """Windows ``(n, L)`` (and masks, or None) as the networks' float32 input ``(n, C, L)``.
    Here, not beside the training code, so that predicting does not import Lightning."""
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).unsqueeze(1)
    if mask_channel:
        m = torch.ones_like(x) if M is None else torch.from_numpy(np.asarray(M, dtype=np.float32)).unsqueeze(1)
        x = torch.cat([x, m], dim=1)
    return x


class ConvBlock(nn.Module):
    """Conv1d keeping the length -> BatchNorm -> optional ReLU. Even kernels (k8) are padded
    explicitly, one more sample on the right, as Keras' ``padding='same'`` does."""

    def __init__(self, c_in: int, c_out: int, kernel: int, relu: bool = True):
        super().__init__()
        self.pad = ((kernel - 1) // 2, kernel // 2)
        self.conv = nn.Conv1d(c_in, c_out, kernel)
        self.bn = nn.BatchNorm1d(c_out)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(F.pad(x, self.pad)))
        return F.relu(x) if self.relu else x


class FCN(nn.Module):
    def __init__(self, in_channels: int = 1, filters: Sequence[int] = (128, 256, 128),
                 kernels: Sequence[int] = (8, 5, 3)):
        super().__init__()
        if len(filters) != len(kernels):
            raise ValueError("FCN: filters and kernels differ in length")
        chans = [in_channels, *filters]
        self.blocks = nn.Sequential(*[ConvBlock(a, b, k) for a, b, k in zip(chans[:-1], chans[1:], kernels)])
        self.out_features = chans[-1]
        self.head = nn.Linear(self.out_features, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled feature vector (batch, filters[-1])."""
        return self.blocks(x).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernels: Sequence[int] = (8, 5, 3)):
        super().__init__()
        chans = [c_in] + [c_out] * len(kernels)
        n = len(kernels)
        self.convs = nn.Sequential(*[ConvBlock(chans[i], chans[i + 1], k, relu=i < n - 1)
                                     for i, k in enumerate(kernels)])
        # Wang et al.: a 1x1 conv when the width changes, batch norm alone otherwise.
        self.shortcut = (nn.Sequential(nn.Conv1d(c_in, c_out, 1), nn.BatchNorm1d(c_out))
                         if c_in != c_out else nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs(x) + self.shortcut(x))


class ResNet1D(nn.Module):
    def __init__(self, in_channels: int = 1, filters: Sequence[int] = (64, 128, 128),
                 kernels: Sequence[int] = (8, 5, 3)):
        super().__init__()
        chans = [in_channels, *filters]
        self.blocks = nn.Sequential(*[ResidualBlock(a, b, kernels) for a, b in zip(chans[:-1], chans[1:])])
        self.head = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=-1)).squeeze(-1)


def _odd(k: int) -> int:
    return max(1, k if k % 2 else k - 1)


class InceptionModule(nn.Module):
    def __init__(self, c_in: int, filters: int, kernel_sizes: Sequence[int], bottleneck: int):
        super().__init__()
        # Fawaz et al. skip the bottleneck on a univariate input.
        self.bottleneck = nn.Conv1d(c_in, bottleneck, 1, bias=False) if c_in > 1 and bottleneck > 0 else None
        c_b = bottleneck if self.bottleneck is not None else c_in
        self.convs = nn.ModuleList([nn.Conv1d(c_b, filters, k, padding=k // 2, bias=False) for k in kernel_sizes])
        self.pool = nn.MaxPool1d(3, stride=1, padding=1)
        self.pool_conv = nn.Conv1d(c_in, filters, 1, bias=False)
        self.out_channels = filters * (len(kernel_sizes) + 1)
        self.bn = nn.BatchNorm1d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x) if self.bottleneck is not None else x
        branches = [conv(z) for conv in self.convs] + [self.pool_conv(self.pool(x))]
        return F.relu(self.bn(torch.cat(branches, dim=1)))


class InceptionTime(nn.Module):
    """One InceptionTime network (the paper ensembles five; one seed here).

    ``kernel_size`` is the largest kernel (39 -> 39/19/9 as in the paper's 40/20/10, made
    odd so padding stays symmetric); when ``length`` is given, kernels longer than the
    window are shortened to it."""

    def __init__(self, in_channels: int = 1, filters: int = 32, depth: int = 6, kernel_size: int = 39,
                 bottleneck: int = 32, residual: bool = True, length: int | None = None):
        super().__init__()
        k = _odd(min(kernel_size, length) if length else kernel_size)
        self.kernel_sizes = [_odd(k // 2 ** i) for i in range(3)]
        self.residual = residual
        self.blocks = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        c, c_res = in_channels, in_channels
        for d in range(depth):
            m = InceptionModule(c, filters, self.kernel_sizes, bottleneck)
            self.blocks.append(m)
            c = m.out_channels
            if residual and d % 3 == 2:
                self.shortcuts.append(nn.Sequential(nn.Conv1d(c_res, c, 1, bias=False), nn.BatchNorm1d(c)))
                c_res = c
        self.head = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res, s = x, 0
        for d, m in enumerate(self.blocks):
            x = m(x)
            if self.residual and d % 3 == 2:
                x = F.relu(x + self.shortcuts[s](res))
                res, s = x, s + 1
        return self.head(x.mean(dim=-1)).squeeze(-1)


class LSTMFCN(nn.Module):
    """LSTM branch (last hidden state, dropout) concatenated with the FCN branch (pooled)."""

    def __init__(self, in_channels: int = 1, hidden: int = 8, dropout: float = 0.8, shuffle: bool = True,
                 filters: Sequence[int] = (128, 256, 128), kernels: Sequence[int] = (8, 5, 3),
                 length: int | None = None):
        super().__init__()
        if shuffle and not length:
            raise ValueError("LSTMFCN: the dimension shuffle needs the window length")
        self.shuffle = shuffle
        self.length = length
        self.lstm = nn.LSTM(length if shuffle else in_channels, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fcn = FCN(in_channels, filters, kernels)
        self.head = nn.Linear(hidden + self.fcn.out_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shuffle and x.shape[-1] != self.length:
            raise ValueError(f"LSTMFCN built for windows of {self.length} samples, got {x.shape[-1]}")
        # shuffle: C steps of L features; plain: L steps of C features.
        _, (h, _) = self.lstm(x if self.shuffle else x.transpose(1, 2))
        z = torch.cat([self.dropout(h[-1]), self.fcn.features(x)], dim=1)
        return self.head(z).squeeze(-1)


class BiLSTM(nn.Module):
    """Bidirectional LSTM over the window's time steps. The input is first batch-normalised
    per channel (an EAR dip of a few samples is then a large deviation rather than a few
    hundredths around the open-eye level); the head sees the mean- and max-pooled outputs
    (max pooling catches a short blink anywhere in the window) and the final hidden states
    of both directions."""

    def __init__(self, in_channels: int = 1, hidden: int = 64, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_channels)
        self.lstm = nn.LSTM(in_channels, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(6 * hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, _) = self.lstm(self.norm(x).transpose(1, 2))   # out (B, L, 2H); h (2*layers, B, H)
        z = torch.cat([out.mean(dim=1), out.amax(dim=1), h[-2], h[-1]], dim=1)
        return self.head(z).squeeze(-1)


class MLP(nn.Module):
    """The multilayer perceptron of the blink-resiliency reference study (Wang, Yan & Oates
    2017, via Fawaz et al.'s dl-4-tsc, which the reference cites): per hidden layer
    ``dropout[i]`` -> linear ``hidden[i]`` -> ReLU, a last ``dropout[-1]``, a linear head.

    - ``flatten=True`` (the registered ``mlp``): the layers see the whole window flattened,
      as in Wang et al. and dl-4-tsc; built for one window length.
    - ``flatten=False``: the form the reference's Keras code actually runs (its ``Flatten``
      is missing, so ``Dense`` acts on each time step's channels) - outputs averaged over
      time, then the head. That is a linear function of the window's *distribution* of EAR
      values, blind to their order: it cannot rank "many short blinks" (real) above both
      "no blinks" and "few long closures" (fake) on the unit tests' synthetic task (test
      AUC about 0.78 after 30 epochs). Takes any window length.

    ``input_norm`` (default) batch-normalises each input channel first, as :class:`BiLSTM`
    does: a median-normalised EAR window sits near 1 with dips of a few samples, and fed
    un-centred the flat MLP never left the loss of a constant guess (BCE 0.693) under Adam,
    with or without input dropout; Wang et al. z-normalise every series for the same reason."""

    def __init__(self, in_channels: int = 1, hidden: Sequence[int] = (500, 500),
                 dropout: Sequence[float] = (0.1, 0.2, 0.3), flatten: bool = True, input_norm: bool = True,
                 length: int | None = None):
        super().__init__()
        if len(dropout) != len(hidden) + 1:
            raise ValueError("MLP: one dropout rate per hidden layer plus one before the output")
        if flatten and not length:
            raise ValueError("MLP: flatten needs the window length")
        self.flatten = flatten
        self.length = length
        self.norm = nn.BatchNorm1d(in_channels) if input_norm else nn.Identity()
        layers: list[nn.Module] = []
        width = in_channels * length if flatten else in_channels
        for h, p in zip(hidden, dropout):
            layers += [nn.Dropout(p), nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Dropout(dropout[-1]))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.flatten:
            if x.shape[-1] != self.length:
                raise ValueError(f"MLP built for windows of {self.length} samples, got {x.shape[-1]}")
            return self.head(self.body(x.flatten(1))).squeeze(-1)
        return self.head(self.body(x.transpose(1, 2)).mean(dim=1)).squeeze(-1)


class TimeCNN(nn.Module):
    """The 1-D CNN of the reference study (Time-CNN, Zhao et al. 2017, as in Fawaz et al.'s
    benchmark): per stage a convolution of ``kernel`` keeping the length and a sigmoid, then
    average pooling by ``pool`` (a short last block is averaged over what it has; the
    reference's Keras default, ``padding='valid'``, would drop it); the stages' output
    flattened into a linear layer. Built for one window length.

    ``keras_init`` (default) initialises as the reference's Keras layers do (Glorot-uniform
    weights, zero biases); ``input_norm`` (default) batch-normalises each input channel
    first (see :class:`MLP`). Even so the two sigmoid stages sit on a plateau (loss of a
    constant guess) for the first ~15-20 epochs on the synthetic task before they learn;
    its detector (``cnn1d``) trains a fixed number of epochs, as the reference does."""

    def __init__(self, in_channels: int = 1, filters: Sequence[int] = (6, 12), kernel: int = 7, pool: int = 3,
                 input_norm: bool = True, keras_init: bool = True, length: int | None = None):
        super().__init__()
        if not length:
            raise ValueError("TimeCNN: needs the window length")
        self.norm = nn.BatchNorm1d(in_channels) if input_norm else nn.Identity()
        self.length = length
        self.pad = ((kernel - 1) // 2, kernel // 2)
        chans = [in_channels, *filters]
        self.convs = nn.ModuleList([nn.Conv1d(a, b, kernel) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = nn.AvgPool1d(pool, ceil_mode=True)
        n = length
        for _ in filters:
            n = -(-n // pool)
        self.head = nn.Linear(chans[-1] * n, 1)
        if keras_init:
            for m in [*self.convs, self.head]:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.length:
            raise ValueError(f"TimeCNN built for windows of {self.length} samples, got {x.shape[-1]}")
        x = self.norm(x)
        for conv in self.convs:
            x = self.pool(torch.sigmoid(conv(F.pad(x, self.pad))))
        return self.head(x.flatten(1)).squeeze(-1)


NETS: dict[str, type[nn.Module]] = {"fcn": FCN, "resnet1d": ResNet1D, "inceptiontime": InceptionTime,
                                    "lstm_fcn": LSTMFCN, "bilstm": BiLSTM, "mlp": MLP, "cnn1d": TimeCNN}


def build(arch: str, in_channels: int = 1, length: int | None = None, **kwargs) -> nn.Module:
    """The network ``arch`` for windows of ``length`` samples with ``in_channels`` channels."""
    try:
        cls = NETS[arch]
    except KeyError:
        raise KeyError(f"unknown network {arch!r}; available: {', '.join(NETS)}") from None
    if "length" in inspect.signature(cls).parameters:
        kwargs["length"] = length
    return cls(in_channels=in_channels, **kwargs)


def recalibrate_batchnorm(net: nn.Module, x: torch.Tensor, batch_size: int = 512) -> None:
    """Re-estimate every batch-norm layer's running mean/variance on inputs ``x`` with the
    network's current weights ("precise BN", Wu & Johnson 2021).

    The running averages Lightning leaves behind mix statistics of many past weight states
    (momentum 0.1); on small training sets that lag makes eval-mode outputs, hence the
    validation loss used for early stopping, differ wildly from what training optimised.
    Only batch-norm layers run in train mode here (dropout stays off); no gradient."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(x) == 0:
        return
    was_training = net.training
    momenta = [bn.momentum for bn in bns]
    net.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None          # cumulative average over the batches below
        bn.train()
    try:
        with torch.no_grad():
            # Equal-sized chunks: the cumulative average weighs every batch the same.
            dev = bns[0].running_mean.device      # inputs follow the network's device
            for chunk in torch.tensor_split(x, -(-len(x) // batch_size)):
                net(chunk.to(dev))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        net.train(was_training)
