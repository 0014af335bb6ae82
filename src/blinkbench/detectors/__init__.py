"""Deepfake detectors: blink-based (:mod:`.blink`, with EAR-series preparation in
:mod:`.blink.series`), frame-level (:mod:`.frame`), and what both share: training
(:mod:`.training`) and evaluation metrics (:mod:`.evaluation`); model files that hold data
only (:mod:`.modelfile`).
"""

# Both kinds register their detector registry with modelfile when imported; importing them
# here (light: NumPy and pandas; the detectors' heavy imports stay inside them) means any
# import from this package can read a model file of either kind.
from . import blink, frame  # noqa: F401
