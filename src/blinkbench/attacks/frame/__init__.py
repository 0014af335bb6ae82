"""Adversarial attacks on the frame detectors, applied to whole videos through the face
track, written losslessly, plus compression variants of the result.

    from blinkbench.attacks.frame import create, available, attack_video
    from blinkbench.video.compress import compress_video

    atk = create("pgd", **params["attacks"]["pgd"])          # or attack_video(..., "pgd", params)
    stats = attack_video(video, track, det.network(), "pgd", params["attacks"]["pgd"], "adv.mkv")
    compress_video("adv.mkv", "adv_c23.mp4", "h264_crf23")
"""

from __future__ import annotations

from .base import (REGISTRY, Attack, CarliniWagnerL2, DeepFoolL2, FGSM, FoolboxAttack, MinimalNormAttack, PGD, TwoClassLogits,
                   available, create, defaults, get, project, register)
from .fakeretouch import FakeRetouch
from .eot import EOTPGD
from .nes import NES
from .video import attack_box, attack_video, stats_path

__all__ = ["REGISTRY", "Attack", "FoolboxAttack", "MinimalNormAttack", "FGSM", "PGD", "CarliniWagnerL2", "DeepFoolL2", "FakeRetouch",
           "EOTPGD", "NES",
           "TwoClassLogits", "available", "create", "defaults", "get", "project", "register",
           "attack_box", "attack_video", "stats_path"]
