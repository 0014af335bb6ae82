"""Deepfake detectors: blink-based (:mod:`.blink`, with EAR-series preparation in
:mod:`.blink.series`), frame-level (:mod:`.frame`), and what both share: training
(:mod:`.training`) and evaluation metrics (:mod:`.evaluation`).
"""
