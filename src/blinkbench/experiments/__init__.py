"""Experiments over datasets: what runs on what (:mod:`.plan`), the train/evaluate protocol
(:mod:`.protocol`), the resiliency study (:mod:`.study`) and the blink-path study
(:mod:`.blink_study`).
"""
