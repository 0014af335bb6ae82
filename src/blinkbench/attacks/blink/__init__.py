"""Attacks on the blink path itself: the landmark extractor and the EAR series.

- :mod:`.landmark_breaker`: Landmark Breaker (Sun et al., WIFS 2020) on the differentiable
  Face Mesh port: heat-map cosine MI-FGSM with FGSM / I-FGSM baselines and input-diversity,
  mixture and ensemble variants (:func:`make_attack`), and the paper-form evaluation on face
  crops: white box, transfer to MediaPipe's runtime and PFLD, compression
  (:func:`run_landmark_breaker_eval`).
- :mod:`.ear_attack`: blink suppression and injection on whole videos through the port, with
  temporally consistent perturbations (shared, keyframes, envelope), written losslessly and
  scored after the real pipeline's re-extraction and compression (:func:`run_ear_attack`).
"""

from .ear_attack import MODES, PERTURBATIONS, EarAttackParams, run_ear_attack
from .landmark_breaker import ATTACKS, HeatmapAttack, LandmarkBreakerEval, make_attack, run_landmark_breaker_eval

__all__ = ["ATTACKS", "HeatmapAttack", "make_attack", "LandmarkBreakerEval", "run_landmark_breaker_eval",
           "EarAttackParams", "MODES", "PERTURBATIONS", "run_ear_attack"]
