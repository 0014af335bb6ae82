"""params.yaml loading and validation (the same JSON schema Snakemake validates against)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

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
    if bad := next(_non_finite(params), None):  # first: a schema bound would hide it (inf > max)
        raise ParamsError(f"{source}: invalid parameter at '{bad[0]}': {bad[1]}")
    validator = _Validator(schema())
    # Two passes: the first fills nested defaults, the second reports errors on the result.
    for _ in validator.iter_errors(params):
        pass
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ParamsError(f"{source}: invalid parameter at '{where}': {err.message}")
    if bad := next(_bad_references(params), None):
        raise ParamsError(f"{source}: invalid parameter at '{bad[0]}': {bad[1]}")
    return params


def _non_finite(obj: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """NaN and infinity pass every JSON-schema bound (``nan < 0`` is False), and YAML spells
    them ``.nan`` and ``.inf``: refuse them anywhere, hyper-parameter overrides included."""
    if isinstance(obj, float) and not math.isfinite(obj):
        yield where or "(top level)", f"{obj!r} is not a finite number"
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _non_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _non_finite(v, f"{where}.{i}")


def _bad_references(params: dict) -> Iterator[tuple[str, str]]:
    """Names that must refer to something configured (the schema checks their spelling):
    datasets in train_on/test_on and the attacked datasets, attack targets among the enabled
    frame detectors. The attack sections are checked when enabled and datasets are set."""
    names = sorted(params["datasets"])
    for section in ("detectors", "frame_detectors"):
        for key in ("train_on", "test_on"):
            bad = [x for x in params[section].get(key) or [] if x not in params["datasets"]]
            if bad:
                yield f"{section}.{key}", f"{bad} not in datasets ({names})"
    if not names:
        return
    for section in ("attacks", "blink_attacks"):
        sec = params[section]
        if not sec["enabled"]:
            continue
        for key in ("dataset", "models_trained_on"):
            if sec[key] not in params["datasets"]:
                yield f"{section}.{key}", f"{sec[key]!r} not in datasets ({names})"
    atk = params["attacks"]
    if atk["enabled"]:
        plain = [t for t in atk["targets"] if "-pt-" not in t]
        bad = [t for t in plain if t not in params["frame_detectors"]["enabled"]]
        if bad:
            yield "attacks.targets", f"{bad} not in frame_detectors.enabled: their models are never trained"
        dfc = params.get("defence", {})
        for t in atk["targets"]:
            if "-pt-" not in t:
                continue
            det, alg, var = t.split("-pt-")[0], *t.split("-pt-")[1].split("-")
            if not (dfc.get("enabled") and det in dfc["detectors"] and alg in dfc["algorithms"]
                    and var in dfc["variants"] and det in params["frame_detectors"]["enabled"]
                    and dfc["dataset"] == atk["models_trained_on"]):
                yield "attacks.targets", (f"{t!r}: a defended model the defence section does not make (it needs "
                                          f"defence.enabled, {det} in defence.detectors and frame_detectors.enabled, "
                                          f"{alg} and {var} in defence.algorithms/variants, and defence.dataset = "
                                          "attacks.models_trained_on)")
        yield from preset_problems(atk, list(params["frame_detectors"]["enabled"]))
        yield from eps_sweep_problems(atk)


def unprojected_methods(attacks: dict) -> list[str]:
    """The ``attacks.methods`` whose result ignores eps: those with a ``project`` switch
    (minimal-L2 CW-L2 and DeepFool, FakeRetouch) that is off in ``attacks.params.<method>``
    (the schema's default where the params do not say; it is the attack class's default
    too). eps only switches such an attack on, so every eps gives the same videos."""
    props = schema()["properties"]["attacks"]["properties"]["params"]["properties"]
    out = []
    for m in attacks["methods"]:
        spec = props.get(m) or {}
        if "$ref" in spec:
            spec = schema()["$defs"][spec["$ref"].rsplit("/", 1)[1]]
        switch = (spec.get("properties") or {}).get("project")
        if switch is None:
            continue
        if not (attacks.get("params") or {}).get(m, {}).get("project", switch.get("default", False)):
            out.append(m)
    return out


def eps_sweep_problems(attacks: dict) -> Iterator[tuple[str, str]]:
    """An unprojected method (:func:`unprojected_methods`) with more than one eps would run
    the same attack once per eps and label identical results eps1, eps2, ...: refused, so
    Snakemake and DVC (both validate first; DVC's attack and rescore stages are a matrix over
    attacks.eps) never run or report such duplicates."""
    eps = list(attacks["eps"])
    if len(eps) <= 1:
        return
    for m in unprojected_methods(attacks):
        yield (f"attacks.params.{m}.project",
               f"{m} runs unprojected (project false: its result ignores eps), so attacks.eps {eps} would give "
               f"{len(eps)} identical sets labelled by eps; set attacks.params.{m}.project: true to make eps its "
               f"L-inf budget, or run {m} in a study with a single eps")


# Named study protocols (``attacks.preset``). A preset names what the ``attacks`` section must
# contain; it fills nothing in, so DVC (which reads params.yaml literally) and Snakemake run
# exactly the sets written there. ``reference``: the blink-resiliency reference study
# (Mole1424/3rd-year-project, main.py): FGSM at eps 0.05 and 0.1 of the [0, 1] pixel range
# (12.75 and 25.5 in 0-255 levels) against each of its CNNs in turn (and Meso4, this
# project's own baseline), every other detector re-scoring. ``targets``: every one of these
# CNNs that frame_detectors.enabled trains, and nothing else. configs/reference.yaml sets it.
STUDY_PRESETS: dict[str, dict] = {
    "reference": {"methods": ["fgsm"], "eps": [12.75, 25.5],
                  "targets": ["vgg19", "resnet50", "xception", "efficientnet_b4", "meso4"]},
}


def preset_problems(attacks: dict, frame_enabled: list[str]) -> Iterator[tuple[str, str]]:
    """(key, message) for each way ``attacks`` departs from its ``preset`` (none without one)."""
    name = attacks.get("preset")
    if not name:
        return
    pre = STUDY_PRESETS[name]
    if missing := [m for m in pre["methods"] if m not in attacks["methods"]]:
        yield "attacks.methods", f"preset {name!r} needs {missing}"
    have = [float(e) for e in attacks["eps"]]
    if missing := [e for e in pre["eps"] if not any(math.isclose(e, h) for h in have)]:
        yield "attacks.eps", f"preset {name!r} needs {missing} (0-255 levels)"
    want = [t for t in pre["targets"] if t in frame_enabled]
    if not want:
        yield "attacks.targets", f"preset {name!r} attacks {pre['targets']}: enable at least one in frame_detectors.enabled"
    elif sorted(attacks["targets"]) != sorted(want):
        yield "attacks.targets", (f"preset {name!r} attacks each of its CNNs that is enabled, in turn: expected "
                                  f"{want}, got {list(attacks['targets'])}")


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
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text: {exc}") from None
    return validate(params, source=str(path))


def section(params: dict, *keys: str) -> Any:
    """A deep copy of one params section (so callers cannot mutate shared config)."""
    out: Any = params
    for k in keys:
        out = out[k]
    return copy.deepcopy(out)


def frozen_text(params: dict) -> str:
    """The YAML every job of a Snakemake run reads: ``params`` (validated, defaults filled)
    as plain sorted YAML, with a header naming its writer."""
    plain = json.loads(json.dumps(params))  # Snakemake hands OrderedDicts; YAML wants dicts
    header = "# Written by Snakemake (rules/common.smk): the params of the runs whose config hashes to this file's name.\n"
    return header + yaml.safe_dump(plain, sort_keys=True)


def frozen_path(params: dict, folder: str | os.PathLike = "logs/params") -> Path:
    """``folder/<sha256 of the content>.yaml``: one file per distinct config, so a dry run,
    ``--lint`` or ``--report`` with another ``--config`` makes (at most) a new file and never
    changes the params of jobs that are already running."""
    digest = hashlib.sha256(frozen_text(params).encode()).hexdigest()[:16]
    return Path(folder) / f"{digest}.yaml"


def write_frozen(params: dict, folder: str | os.PathLike = "logs/params") -> Path:
    """Write :func:`frozen_path` if absent (atomically) and return it. An existing file is
    never rewritten: its name is its content."""
    from . import io

    path = frozen_path(params, folder)
    if not path.is_file():
        with io.atomic_path(path) as tmp:
            tmp.write_text(frozen_text(params))
    return path
