"""params.yaml loading and validation (the same JSON schema Snakemake validates against)."""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(str(resources.files("blinkbench") / "schema" / "params.schema.json"))


class ParamsError(ValueError):
    """A params file that does not match the schema; the message names the offending key."""


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _fill_defaults(validator_cls):
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def validate(params: dict, source: str = "params") -> dict:
    """Validate in place, filling defaults; raise ParamsError naming the first bad key."""
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping at top level, got {type(params).__name__}")
    validator = _Validator(schema())
    # Two passes: the first fills nested defaults, the second reports errors on the result.
    for _ in validator.iter_errors(params):
        pass
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ParamsError(f"{source}: invalid parameter at '{where}': {err.message}")
    return params


def defaults(name: str) -> dict:
    """The schema's default values of one top-level params section."""
    props = schema()["properties"][name].get("properties", {})
    return {k: copy.deepcopy(v["default"]) for k, v in props.items() if "default" in v}


def detector_plan(params: dict, check_registry: bool = False, section: str = "detectors") -> tuple[list[str], list[str], list[str]]:
    """(enabled detectors, training datasets, test datasets) of ``section`` (``detectors``:
    blink-based, ``frame_detectors``: frame-level) with ``null`` resolved to every configured
    dataset. Raises ParamsError for a dataset that is not configured and, with
    ``check_registry``, for an unknown detector name or hyper-parameter (this imports the
    detector modules, so only the workflow's parse step asks for it)."""
    d = params[section]
    names = sorted(params["datasets"])
    train = list(d["train_on"]) if d.get("train_on") is not None else names
    test = list(d["test_on"]) if d.get("test_on") is not None else names
    for key, lst in (("train_on", train), ("test_on", test)):
        bad = [x for x in lst if x not in params["datasets"]]
        if bad:
            raise ParamsError(f"invalid parameter at '{section}.{key}': {bad} not in datasets ({names})")
    if check_registry:
        if section == "detectors":
            from .detectors import available, create

            make = lambda name, hyper: create(name, series=d["series"], **hyper)  # noqa: E731
        else:
            from .frames import available, create

            make = lambda name, hyper: create(name, **hyper)  # noqa: E731
        known = available()
        for key, lst in (("enabled", d["enabled"]), ("hyper", list(d.get("hyper", {})))):
            bad = [x for x in lst if x not in known]
            if bad:
                raise ParamsError(f"invalid parameter at '{section}.{key}': unknown detector(s) {bad}; known: {known}")
        for name, hyper in d.get("hyper", {}).items():
            try:
                make(name, hyper)
            except (TypeError, ValueError) as exc:
                raise ParamsError(f"invalid parameter at '{section}.hyper.{name}': {exc}") from None
    return list(d["enabled"]), train, test


def load(path: str | os.PathLike = "params.yaml") -> dict:
    """Read and validate a params file; defaults are filled for omitted keys."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return validate(params, source=str(path))


def section(params: dict, *keys: str) -> Any:
    """A deep copy of one params section (so callers cannot mutate shared config)."""
    out: Any = params
    for k in keys:
        out = out[k]
    return copy.deepcopy(out)
