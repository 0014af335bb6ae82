"""The one registrar for every plug-in kind (blink detectors, frame detectors, frame attacks,
landmark attacks, landmark backends): registration of classes by name (a class, not a factory,
so what it declares, e.g. a landmark backend's ``n_points``, is known without building it),
lookup that imports plug-in modules only as far as needed, and hyper-parameters checked
against declared defaults."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Sequence


class Registry(dict):
    """Name -> class of one plug-in kind (``what``: "detector", "attack"...), a plain dict plus:

    - ``register(name)``: class decorator (sets ``cls.name``; a second class under one name fails);
      ``alias(name, target)``: a second name for a registered class;
    - ``modules``: the modules that register plug-ins when imported, set by the kind's package
      ``__init__`` (the registry itself sits in a base module those modules import);
    - ``get(name)`` imports ``modules`` in order only until ``name`` appears (a cheap detector
      never pays for torch), ``available()`` imports them all, ``create(name, ...)`` builds one.
    """

    def __init__(self, what: str, modules: Sequence[str] = ()):
        super().__init__()
        self.what = what
        self.modules = tuple(modules)

    def register(self, name: str):
        def deco(cls):
            if name in self and self[name] is not cls:
                raise ValueError(f"{self.what} name {name!r} registered twice")
            cls.name = name
            self[name] = cls
            return cls

        return deco

    def alias(self, name: str, target: str) -> None:
        """Make ``name`` a second name of the class registered as ``target`` (its ``name``
        stays ``target``)."""
        if name in self and self[name] is not self[target]:
            raise ValueError(f"{self.what} name {name!r} registered twice")
        self[name] = self[target]

    def available(self) -> list[str]:
        """Names of every plug-in, in registration order."""
        for m in self.modules:
            importlib.import_module(m)
        return list(self)

    def get(self, name: str):
        """The class registered as ``name`` (KeyError listing the known names otherwise; unlike
        ``dict.get`` there is no default: an unknown plug-in is an error)."""
        return lookup(self, self.modules, name, self.what)

    def create(self, name: str, *args: Any, **kwargs: Any):
        """The plug-in ``name`` built with these arguments."""
        return self.get(name)(*args, **kwargs)


def lookup(registry: dict, modules: Sequence[str], name: str, what: str):
    """The class registered as ``name``, importing ``modules`` in order until it appears
    (so a cheap detector never pays for importing torch or sktime)."""
    for m in modules:
        if name in registry:
            break
        importlib.import_module(m)
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; available: {', '.join(registry)}") from None


class HyperParams:
    """``__init__`` stores the seed and hyper-parameters only (as in scikit-learn): unknown
    names fail at once with the known ones listed; omitted ones take ``default_hyper()``."""

    name: ClassVar[str] = "?"
    # Small hyper-parameters that make fit fast enough for the unit tests (like sktime's
    # get_test_params): the table-driven tests build every detector with these.
    test_params: ClassVar[dict[str, Any]] = {}

    def _set_hyper(self, seed: int, hyper: dict[str, Any]) -> None:
        self.seed = int(seed)
        known = self.default_hyper()
        unknown = set(hyper) - set(known)
        if unknown:
            raise TypeError(f"{self.name}: unknown hyper-parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        self.hyper = {**known, **hyper}
        self.fitted_ = False

    @classmethod
    def default_hyper(cls) -> dict[str, Any]:
        """Every hyper-parameter this detector takes, with its default."""
        return {}
