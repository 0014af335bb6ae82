"""The rule baseline: a video is suspicious when its blink rate lies outside the human range.

Humans blink about 15-20 times a minute at rest and up to about 26 while talking, far fewer
while reading; early deepfakes blinked rarely or never (Li et al., "In Ictu Oculi", 2018).
The score is a soft distance outside ``[rate_low, rate_high]`` blinks/min:

    p_fake = sigmoid((rate_low - rate) / softness) + sigmoid((rate - rate_high) / softness)

(clipped to 1), so inside the range it is near 0 and it rises smoothly outside; a video with
no face time (rate undefined) gets 0.5. Nothing is learned: ``fit`` only checks its input.
"""

from __future__ import annotations

import numpy as np

from blinkbench.detectors.blink.series import feature_names
from .base import FeatureDetector, register

_RATE = feature_names().index("blink_rate_per_min")
_FACE = feature_names().index("face_fraction")


@register("blink_rate_rule")
class BlinkRateRule(FeatureDetector):
    family = "rule"

    @classmethod
    def default_hyper(cls):
        return {"rate_low": 7.0, "rate_high": 35.0, "softness": 2.0}

    def _fit_features(self, F, y):
        pass

    def _predict_features(self, F):
        h = self.hyper
        rate = F[:, _RATE]
        z_low = np.clip((h["rate_low"] - rate) / h["softness"], -50, 50)
        z_high = np.clip((rate - h["rate_high"]) / h["softness"], -50, 50)
        p = np.minimum(1.0, 1 / (1 + np.exp(-z_low)) + 1 / (1 + np.exp(-z_high)))
        return np.where(F[:, _FACE] > 0, p, 0.5)
