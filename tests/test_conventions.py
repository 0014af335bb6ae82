"""One convention per name (issue 11 point 4): one two-class view of the detectors' logit,
one label mapping, one PSNR/SSIM module, one registrar. Each test checks the single
definition is the one every user gets, and that it behaves as its callers relied on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "blinkbench"


def _defined_classes(name: str) -> list[str]:
    """Modules under src/ that define a class called ``name``."""
    out = []
    for p in sorted(SRC.rglob("*.py")):
        tree = ast.parse(p.read_text(), str(p))
        if any(isinstance(n, ast.ClassDef) and n.name == name for n in ast.walk(tree)):
            out.append(str(p.relative_to(SRC)))
    return out


# ---------------------------------------------------------------------- TwoClassLogits

def test_two_class_logits_is_defined_once_and_the_attacks_use_it():
    from blinkbench.attacks.frame import TwoClassLogits as from_attacks_pkg
    from blinkbench.attacks.frame.base import TwoClassLogits as from_attacks
    from blinkbench.detectors.frame.nets import TwoClassLogits
    assert _defined_classes("TwoClassLogits") == ["detectors/frame/nets.py"]
    assert from_attacks is TwoClassLogits and from_attacks_pkg is TwoClassLogits


@pytest.mark.parametrize("shape", [(5,), (5, 1)])
def test_two_class_logits_gives_zero_and_z_with_sigmoid_probabilities(shape):
    from blinkbench.detectors.frame.nets import TwoClassLogits

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x.sum(dim=(1, 2, 3)).reshape(shape) - 3.0

    x = torch.rand(5, 3, 4, 4)
    z = x.sum(dim=(1, 2, 3)) - 3.0
    two = TwoClassLogits(Fixed())(x)
    assert two.shape == (5, 2)
    assert torch.equal(two[:, 0], torch.zeros(5)) and torch.equal(two[:, 1], z)
    assert torch.allclose(torch.softmax(two, 1)[:, 1], torch.sigmoid(z), atol=1e-6)
