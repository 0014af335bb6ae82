"""Helpers for tests and benchmarks (the synthetic EAR task, :mod:`.synthetic`); nothing in the
pipeline imports them.
"""
