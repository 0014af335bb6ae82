"""The one label mapping: manifest label -> class index (the positive class, 1, is fake).

Iterating gives the labels in class order (``real``, ``fake``); ``label in LABELS`` checks a
label; ``LABELS[label]`` is its class index (what detectors are trained and scored on).
"""

LABELS: dict[str, int] = {"real": 0, "fake": 1}
