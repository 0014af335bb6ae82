"""The one label mapping: manifest label -> class index (the positive class, 1, is fake).

Iterating gives the labels in class order (``real``, ``fake``); ``label in LABELS`` checks a
label; ``LABELS[label]`` is its class index (what detectors are trained and scored on), and
:func:`label_of` goes back from an index (e.g. a dataset's 0/1 column) to the label.
Nothing else in the package spells the pair out (``tests/test_conventions.py``).
"""

LABELS: dict[str, int] = {"real": 0, "fake": 1}


def label_of(index: int) -> str:
    """The label of class ``index`` (0 -> ``"real"``, 1 -> ``"fake"``); ``ValueError`` otherwise."""
    for label, i in LABELS.items():
        if i == index:
            return label
    raise ValueError(f"class index must be one of {sorted(LABELS.values())}, got {index!r}")
