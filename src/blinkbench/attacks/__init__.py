"""Attacks: on the frame detectors (:mod:`.frame`), on the blink path (:mod:`.blink`), and the one
perceptual-cost module both report with (:mod:`.perceptual`).
"""
