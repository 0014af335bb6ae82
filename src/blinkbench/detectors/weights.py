"""Pickling of the torch-network detectors (blink networks, frame CNNs) as weights, not as
live modules. Apart from :mod:`.training` (which needs Lightning) so that the detector
classes import without torch; torch is imported when weights are restored."""

from __future__ import annotations


class PicklesNetAsWeights:
    """A detector whose fitted ``self.net_`` is rebuilt from its spec (``_rebuild_net()``)
    plus its weights, never kept as a live module, Trainer or DataModule.

    Model files: :mod:`blinkbench.detectors.modelfile` stores the state dict as safetensors and the
    spec as JSON, and loads them back into a rebuilt network in eval mode (never a pickle).
    In memory, ``copy.deepcopy`` (and in-process pickling, e.g. to a worker) goes through
    ``__getstate__``/``__setstate__`` below, which carry the weights as NumPy arrays."""

    def _rebuild_net(self):  # -> nn.Module with the saved architecture
        raise NotImplementedError

    def __getstate__(self):
        state = self.__dict__.copy()
        net = state.pop("net_", None)
        if net is not None:
            state["net_weights_"] = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        return state

    def __setstate__(self, state):
        weights = state.pop("net_weights_", None)
        self.__dict__.update(state)
        if weights is not None:
            import torch

            net = self._rebuild_net()
            net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            self.net_ = net.eval()

    def _after_load(self):
        if self.fitted_:
            self.net_.eval()
