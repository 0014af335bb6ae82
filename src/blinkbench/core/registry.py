"""What the two detector families share: registration by name, lookup that imports family
modules only as far as needed, and hyper-parameters checked against declared defaults."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Sequence


def registrar(registry: dict, what: str):
    """A ``@register(name)`` class decorator writing into ``registry``."""

    def register(name: str):
        def deco(cls):
            if name in registry and registry[name] is not cls:
                raise ValueError(f"{what} name {name!r} registered twice")
            cls.name = name
            registry[name] = cls
            return cls

        return deco

    return register


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
