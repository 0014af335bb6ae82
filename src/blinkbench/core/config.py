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
