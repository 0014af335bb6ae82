"""The step table: every pipeline step described once — its name, the params sections it
reads, its inputs and outputs, the code it depends on, the model files params name for it,
and its DVC form. Everything else is derived from it:

- ``dvc.yaml`` is generated from it (:mod:`blinkbench.core.dvcgen`, ``blinkbench dvc-yaml``;
  a test and the ``validate_params`` stage check the committed file equals the generated one);
- the Snakemake rules take their params (rerun triggers) and model-file inputs from it
  (``rules/common.smk``: ``step_params``, ``model_files``);
- each step's entry point sees only its own sections (:func:`step_view`): reading an
  undeclared section raises :class:`UndeclaredParams`, so the table cannot drift from the
  code without a test failing; the view is read-only, and typed: :mod:`blinkbench.core.params_types`
  (generated from the schema and this table, ``blinkbench params-types``) gives each step a
  ``<Step>Params`` TypedDict, so a type checker flags an undeclared or wrongly typed read too;
- the per-video stamps hash exactly the declared sections (:func:`section_values`; for
  ``landmarks`` only the active backend's options).

Params keys are dotted paths into params.yaml (``detectors.series``); ``{dataset}`` stands
for the dataset a per-dataset step runs on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, NoReturn, cast

from blinkbench.core import params_types

GUARD_OUT = "logs/dvc/params_valid.txt"   # every DVC stage depends on it (params validated first)


@dataclass(frozen=True)
class DvcStage:
    """How a step runs under DVC (one batch per dataset or per matrix item)."""

    cmd: str
    deps: tuple[str, ...]                   # data inputs (DVC templates: ${key}, ${item.x}, ${section.key})
    outs: tuple[Any, ...]                   # str, or (path, {"persist": True, ...})
    foreach: str | None = None              # "${datasets}": one stage per dataset
    matrix: tuple[tuple[str, str], ...] = ()  # (axis, "${params.list}") pairs
    name: str | None = None                 # default: the step's name
    params: tuple[str, ...] | None = None   # default: the step's sections (narrower for a special case)
    extra_params: tuple[str, ...] = ()      # what only the DVC form reads (e.g. the attack stage compresses)
    comment: str = ""                       # lines written above the stage


@dataclass(frozen=True)
class StepSpec:
    """One step: the contract Snakemake, DVC and the entry points share."""

    name: str
    params: tuple[str, ...]                 # params sections it reads (``{dataset}`` = its dataset)
    per_video: bool
    outputs: tuple[str, ...]                # keys of paths.PATTERNS
    code: tuple[str, ...] = ()              # source files/packages its result depends on
    dvc: tuple[DvcStage, ...] = ()          # its DVC stage(s); none: Snakemake only
    doc: str = ""
    model_params: tuple[str, ...] = field(default=())  # params holding model paths it reads (documentation)


_SRC = "src/blinkbench/"


def _code(*names: str) -> tuple[str, ...]:
    return tuple(_SRC + n for n in names)


_PER_VIDEO = "${datasets}"
_BLINK_DATA = ("data/manifests/${item.%s}.parquet", "data/ear/${item.%s}", "data/blinks/${item.%s}")
_MODEL_MATRIX = (("detector", "${detectors.enabled}"), ("train", "${detectors.train_on}"))
_FRAME_MATRIX = (("detector", "${frame_detectors.enabled}"), ("train", "${frame_detectors.train_on}"))
_SET_MATRIX = (("target", "${attacks.targets}"), ("method", "${attacks.methods}"), ("eps", "${attacks.eps}"))
_PIPELINE = ("faces", "landmarks", "blinks")   # what re-running the blink path on a new video reads
_BLINK_PLAN = ("detectors.enabled", "detectors.train_on", "detectors.test_on", "datasets")
_FRAME_PLAN = ("frame_detectors.enabled", "frame_detectors.train_on", "frame_detectors.test_on")
_DEFENCE_PLAN = ("defence.enabled", "defence.dataset", "defence.detectors", "defence.algorithms", "defence.variants")
_ATTACK_CODE = _code("attacks/frame", "attacks/perceptual.py", "video/compress.py", "video/lossless.py",
                     "experiments/study.py")
_BLINK_ATTACK_CODE = _code("attacks/blink", "attacks/perceptual.py", "video/lossless.py", "mesh_torch",
                           "experiments/blink_study.py")
_STUDY_SET = "data/adversarial/${attacks.dataset}/${item.target}/${item.method}/eps${item.eps}"
_LB = "data/blink_attacks/${blink_attacks.dataset}/landmark_breaker"


def _per_video(step: str, outs: tuple[str, ...], deps: tuple[str, ...]) -> DvcStage:
    return DvcStage(f"blinkbench {step} --params params.yaml --dataset ${{key}}", deps,
                    tuple((o, {"persist": True}) for o in outs), foreach=_PER_VIDEO)


STEPS: dict[str, StepSpec] = {
    s.name: s
    for s in [
        StepSpec("demo", ("demo", "base"), False, (), _code("datasets/demo.py", "video/codec.py"), (
            # --root: the folder this stage declares as its output (the Snakemake rule passes it too)
            DvcStage("blinkbench demo --params params.yaml --root data/raw/demo", (), ("data/raw/demo",)),)),
        StepSpec("manifest", ("datasets.{dataset}", "splits", "base"), False, ("manifest",),
                 _code("datasets", "video/codec.py"), (
                     DvcStage("blinkbench manifest --params params.yaml --dataset ${key}", ("${item.root}",),
                              ("data/manifests/${key}.parquet",), foreach=_PER_VIDEO),)),
        StepSpec("faces", ("faces",), True, ("faces", "crops"),
                 _code("spine/faces.py", "video/codec.py", "spine/steps.py", "core/steps_table.py"), (
                     _per_video("faces", ("data/faces/${key}", "data/crops/${key}"),
                                ("data/manifests/${key}.parquet", "${item.root}")),)),
        StepSpec("landmarks", ("landmarks",), True, ("landmarks",),
                 _code("spine/landmarks", "video/codec.py", "spine/steps.py", "core/steps_table.py"), (
                     _per_video("landmarks", ("data/landmarks/${key}",), ("data/faces/${key}", "${item.root}")),),
                 model_params=("landmarks.pfld_model",)),
        StepSpec("ear", (), True, ("ear",), _code("spine/ear.py", "spine/steps.py"), (
            _per_video("ear", ("data/ear/${key}",), ("data/landmarks/${key}",)),)),
        StepSpec("blinks", ("blinks",), True, ("blinks", "blink_summary"),
                 _code("spine/blinks.py", "spine/steps.py", "core/steps_table.py"), (
                     _per_video("blinks", ("data/blinks/${key}",), ("data/ear/${key}",)),)),
        StepSpec("train_blink", ("detectors.series", "detectors.hyper", "base"), False,
                 ("blink_model", "blink_model_info"),
                 _code("detectors/blink", "experiments/protocol.py", "detectors/modelfile.py"), (
                     DvcStage("blinkbench train_blink --params params.yaml --detector ${item.detector} --train ${item.train}",
                              tuple(d % "train" for d in _BLINK_DATA),
                              ("data/models/blink/${item.detector}/${item.train}.zip",
                               "data/models/blink/${item.detector}/${item.train}.json"),
                              matrix=_MODEL_MATRIX,
                              comment="Blink detectors: the matrix expands to one stage per (detector, training dataset), e.g.\n"
                                      "train_blink@minirocket-demo, and one per (detector, training, test dataset)."),)),
        StepSpec("evaluate_blink", ("detectors.min_face_s",), False, ("blink_scores", "blink_eval", "blink_roc"),
                 _code("experiments/protocol.py", "detectors/evaluation.py"), (
                     DvcStage("blinkbench evaluate_blink --params params.yaml --detector ${item.detector} --train ${item.train}"
                              " --test ${item.test}",
                              ("data/models/blink/${item.detector}/${item.train}.zip",
                               *(d % "test" for d in _BLINK_DATA)),
                              tuple(f"data/evaluations/blink/${{item.detector}}/${{item.train}}/${{item.test}}{ext}"
                                    for ext in (".parquet", ".json", ".roc.csv")),
                              matrix=(*_MODEL_MATRIX, ("test", "${detectors.test_on}"))),)),
        StepSpec("select_blink", ("detectors.best_of", "detectors.enabled", "detectors.series", "detectors.hyper",
                                  "landmarks.backend", "base"), False, ("blink_selection",),
                 _code("detectors/blink", "experiments/selection.py", "experiments/protocol.py"), (
                     DvcStage("blinkbench select_blink --params params.yaml --train ${item.train}",
                              tuple(d % "train" for d in _BLINK_DATA), ("data/selection/blink/${item.train}.json",),
                              matrix=(("train", "${detectors.train_on}"),),
                              comment="Best-of selection per training dataset (detectors.best_of); a record saying "
                                      "\"disabled\"\nwhen it is off."),)),
        StepSpec("train_frame", ("frame_detectors.hyper", "frame_detectors.val_fraction", "base"), False,
                 ("frame_model", "frame_model_info"),
                 _code("detectors/frame", "experiments/protocol.py", "detectors/modelfile.py"), (
                     DvcStage("blinkbench train_frame --params params.yaml --detector ${item.detector} --train ${item.train}",
                              ("data/manifests/${item.train}.parquet", "data/crops/${item.train}"),
                              ("data/models/frame/${item.detector}/${item.train}.zip",
                               "data/models/frame/${item.detector}/${item.train}.json"),
                              matrix=_FRAME_MATRIX,
                              comment="Frame detectors on the face crops: the same two stages over frame_detectors."),),
                 model_params=("frame_detectors.hyper.<detector>.checkpoint",)),
        StepSpec("evaluate_frame", (), False, ("frame_scores", "frame_eval", "frame_roc"),
                 _code("experiments/protocol.py", "detectors/evaluation.py"), (
                     DvcStage("blinkbench evaluate_frame --params params.yaml --detector ${item.detector} --train ${item.train}"
                              " --test ${item.test}",
                              ("data/models/frame/${item.detector}/${item.train}.zip",
                               "data/manifests/${item.test}.parquet", "data/crops/${item.test}"),
                              tuple(f"data/evaluations/frame/${{item.detector}}/${{item.train}}/${{item.test}}{ext}"
                                    for ext in (".parquet", ".json", ".roc.csv")),
                              matrix=(*_FRAME_MATRIX, ("test", "${frame_detectors.test_on}"))),)),
        StepSpec("attack", ("attacks.params", "attacks.batch_size", "attacks.dataset", "attacks.labels",
                            "attacks.models_trained_on", "faces.crops", "base"), False, ("adversarial",), _ATTACK_CODE, (
            DvcStage("blinkbench attack --params params.yaml --target ${item.target} --method ${item.method}"
                     " --eps ${item.eps} --all",
                     ("data/manifests/${attacks.dataset}.parquet", "data/faces/${attacks.dataset}",
                      "data/models/frame/${item.target}/${attacks.models_trained_on}.zip"),
                     (_STUDY_SET,), matrix=_SET_MATRIX, extra_params=("attacks.compressions",),
                     comment="The resiliency study (blinkbench.experiments.study): one stage per (target, method, eps) "
                             "attacks every\nselected video and writes its compressions; the clean reference is its own "
                             "stage."),
            # The clean reference: no model and no attack settings (an eps-0 pass), so only these.
            DvcStage("blinkbench attack --params params.yaml --target clean --method none --eps 0 --all",
                     ("data/manifests/${attacks.dataset}.parquet", "data/faces/${attacks.dataset}"),
                     ("data/adversarial/${attacks.dataset}/clean/none/eps0",), name="attack_clean",
                     params=("attacks.batch_size", "attacks.dataset", "attacks.labels", "faces.crops", "base"),
                     extra_params=("attacks.compressions",)),
        )),
        StepSpec("compress", (), False, ("adversarial",), _code("video/compress.py", "experiments/study.py"),
                 doc="Snakemake only: DVC's attack stage writes the compressions itself."),
        StepSpec("rescore", ("attacks.dataset", "attacks.labels", "attacks.models_trained_on", "detectors.min_face_s",
                             *_BLINK_PLAN, *_FRAME_PLAN, *_DEFENCE_PLAN, *_PIPELINE), False, ("study",),
                 _code("experiments/study.py", "spine/steps.py", "core/steps_table.py"), tuple(
                     DvcStage(f"blinkbench rescore --params params.yaml {args}",
                              (src, "data/blinks/${attacks.dataset}", "data/models"),
                              (src.replace("data/adversarial/", "data/study/"),), matrix=matrix, name=name,
                              extra_params=("attacks.compressions",))  # the DVC form scores every variant
                     for name, args, src, matrix in (
                         ("rescore", "--target ${item.target} --method ${item.method} --eps ${item.eps}", _STUDY_SET,
                          _SET_MATRIX),
                         ("rescore_clean", "--target clean --method none --eps 0",
                          "data/adversarial/${attacks.dataset}/clean/none/eps0", ()))),
                 model_params=("landmarks.pfld_model",)),
        StepSpec("ear_attack", ("blink_attacks.dataset", "blink_attacks.ear", "blink_attacks.max_videos",
                                "blink_attacks.models_trained_on", *_BLINK_PLAN, *_PIPELINE, "base"),
                 False, ("ear_attack",), _BLINK_ATTACK_CODE, (
                     DvcStage("blinkbench ear_attack --params params.yaml --mode ${item.mode} --all",
                              ("data/manifests/${blink_attacks.dataset}.parquet", "data/raw", "data/models/blink"),
                              ("data/blink_attacks/${blink_attacks.dataset}/${item.mode}",),
                              matrix=(("mode", "${blink_attacks.modes}"),),
                              comment="Attacks on the blink path itself (blinkbench.experiments.blink_study)."),),
                 model_params=("landmarks.pfld_model",)),
        StepSpec("landmark_breaker", ("blink_attacks.dataset", "blink_attacks.landmark_breaker", "landmarks.pfld_model",
                                      "base"), False, ("landmark_breaker",), _BLINK_ATTACK_CODE, (
            DvcStage("blinkbench landmark_breaker --params params.yaml",
                     ("data/manifests/${blink_attacks.dataset}.parquet", "data/crops/${blink_attacks.dataset}"),
                     tuple(f"{_LB}{s}" for s in (".json", "_white_box.csv", "_transfer.csv", "_compression.csv",
                                                 "_ablation.csv", "_per_image.csv", "_images.csv"))),),
                 model_params=("blink_attacks.landmark_breaker.pfld_model", "landmarks.pfld_model")),
        StepSpec("posttrain", ("defence.dataset", "defence.tau", "defence.neighbourhood", "defence.sgd",
                               "defence.evaluate", "base"), False, ("frame_model", "defence"),
                 _code("defence", "attacks/frame", "detectors/frame", "detectors/modelfile.py"), (
                     DvcStage("blinkbench posttrain --params params.yaml --detector ${item.detector} --algorithm "
                              "${item.algorithm} --variant ${item.variant}",
                              ("data/manifests/${defence.dataset}.parquet", "data/crops/${defence.dataset}",
                               "data/models/frame/${item.detector}/${defence.dataset}.zip"),
                              ("data/models/frame/${item.detector}-pt-${item.algorithm}-${item.variant}/${defence.dataset}.zip",
                               "data/evaluations/defence/${defence.dataset}/${item.detector}/${item.algorithm}-${item.variant}.json"),
                              matrix=(("detector", "${defence.detectors}"), ("algorithm", "${defence.algorithms}"),
                                      ("variant", "${defence.variants}")),
                              comment="Adaptive post-training defence (blinkbench.defence.posttrain): per (CNN detector, "
                                      "algorithm,\nvariant); the defended model is a frame model file the study can attack "
                                      "or re-score with."),)),
        StepSpec("report", ("report", "detectors", "frame_detectors", "attacks", "blink_attacks", "defence", "datasets",
                            "base"), False, ("report", "metrics"),
                 _code("report/build.py", "report/defence.py", "report/reference.py", "report/best_of.py",
                       "experiments/noise_effect.py", "report/plotting.py",
                       "report/render.py", "report/templates"), (
                     DvcStage("blinkbench report --params params.yaml",
                              ("data/manifests", "data/landmarks", "data/ear", "data/blinks", "data/evaluations",
                               "data/selection", "data/study", "data/blink_attacks"),
                              ("data/reports",),
                              comment="data/reports is cached, so `dvc push`/`dvc pull` carry the report and metrics too."),)),
    ]
}


# ---------------------------------------------------------------------------- params of a step

def sections(step: str, dataset: str | None = None) -> tuple[str, ...]:
    """The params keys ``step`` reads; ``{dataset}`` bound to ``dataset`` (left out when None)."""
    out = []
    for key in STEPS[step].params:
        if "{dataset}" in key:
            if dataset is None:
                continue
            key = key.replace("{dataset}", dataset)
        out.append(key)
    return tuple(out)


def _get(params: Mapping, key: str, default=None):
    cur: Any = params
    for k in key.split("."):
        if not isinstance(cur, Mapping) or k not in cur:
            return default
        cur = cur[k]
    return cur


LANDMARK_OPTIONS = {  # backend -> the landmarks options it reads (besides backend and crop_scale)
    "mediapipe": ("min_detection_confidence", "min_tracking_confidence"),
    "mediapipe_tflite": ("min_tracking_confidence", "tflite"),
    "pfld": ("pfld_model",),
}


def active_landmarks(cfg: Mapping) -> dict:
    """The ``landmarks`` options the active backend reads: what its outputs depend on (an
    option of another backend changes nothing, so it must not rerun anything)."""
    keep = ("backend", "crop_scale", *LANDMARK_OPTIONS.get(cfg.get("backend"), ()))
    return {k: copy.deepcopy(cfg[k]) for k in keep if k in cfg}


def section_values(params: Mapping, step: str, dataset: str | None = None) -> dict[str, Any]:
    """key -> value of every section ``step`` reads (its rerun trigger and stamp input);
    ``landmarks`` narrowed to the active backend's options."""
    out = {}
    for key in sections(step, dataset):
        val = _get(params, key)
        if key == "landmarks" and isinstance(val, Mapping):
            val = active_landmarks(val)
        out[key] = copy.deepcopy(dict(val)) if isinstance(val, Mapping) else copy.deepcopy(val)
    return out


class UndeclaredParams(KeyError):
    """A step read a params section its table entry does not declare."""

    def __str__(self) -> str:  # KeyError's str() is the repr of its argument
        return str(self.args[0])


class ReadOnlyParams(TypeError):
    """A step tried to change its params view (it is the step's input, not its scratch space:
    a changed copy is ``copy.deepcopy(view)``, a plain dict)."""


def _read_only(self, *args, **kwargs) -> NoReturn:
    raise ReadOnlyParams(f"{self._where} is read-only: a step's params view is its input "
                         "(copy.deepcopy(view) is a plain dict to change)")


class _Section(dict):
    """A whole params section inside a view: a plain dict to read (``get`` with a default,
    ``in``, iteration as before) that cannot be changed, its nested sections neither.
    Copies, deep copies and pickles are plain dicts."""

    def __init__(self, data: Mapping, where: str):
        super().__init__((k, _frozen(v, f"{where}.{k}")) for k, v in data.items())
        self._where = where

    def __reduce__(self):
        return (dict, (dict(self),))

    __setitem__ = __delitem__ = __ior__ = setdefault = pop = popitem = clear = update = _read_only


def _frozen(value: Any, where: str) -> Any:
    """A view's own copy of ``value``: mappings read-only (nested too), the rest deep-copied."""
    return _Section(value, where) if isinstance(value, Mapping) else copy.deepcopy(value)


class ParamsView(dict):
    """The params a step may read: a dict holding only its declared sections. Reading any
    other key (``[]``, ``get``, ``in``) raises :class:`UndeclaredParams` naming the step and
    the section, so a table that has drifted from the code fails the step's tests. It is
    read-only (nested sections too): changing it raises :class:`ReadOnlyParams`, so a step
    cannot hand a modified section downstream unnoticed."""

    def __init__(self, data: Mapping, tree: dict, step: str, prefix: str = ""):
        super().__init__()
        self._step, self._prefix, self._allowed = step, prefix, frozenset(tree)
        self._where = f"step {step!r}: params view" + (f" {prefix[:-1]}" if prefix else "")
        for k, sub in tree.items():
            if k not in data:
                continue
            v = data[k]
            if sub is True or not isinstance(v, Mapping):
                dict.__setitem__(self, k, _frozen(v, f"step {step!r}: params section {prefix}{k}"))
            else:
                dict.__setitem__(self, k, ParamsView(v, sub, step, f"{prefix}{k}."))

    def _check(self, key) -> None:
        if key not in self._allowed:
            raise UndeclaredParams(f"step {self._step!r} read params section {self._prefix}{key!r} not in its "
                                   f"table entry (blinkbench.core.steps_table.STEPS[{self._step!r}].params)")

    def __missing__(self, key):
        self._check(key)
        raise KeyError(key)

    def get(self, key, default=None):
        self._check(key)
        return dict.get(self, key, default)

    def __contains__(self, key) -> bool:
        self._check(key)
        return dict.__contains__(self, key)

    def __reduce__(self):  # pickles / deep-copies as the plain dict it holds
        return (dict, (dict(self),))

    __setitem__ = __delitem__ = __ior__ = setdefault = pop = popitem = clear = update = _read_only


def _tree(keys: tuple[str, ...]) -> dict:
    tree: dict = {}
    for key in keys:
        node = tree
        parts = key.split(".")
        for p in parts[:-1]:
            if node.get(p) is True:
                break
            node = node.setdefault(p, {})
        else:
            node[parts[-1]] = True
    return tree


def dvc_extra(step: str) -> tuple[str, ...]:
    """Sections only the step's DVC form reads (its batch over a whole set: the attack stage
    also compresses, the rescore stage scores every compression variant)."""
    return tuple(dict.fromkeys(k for st in STEPS[step].dvc for k in st.extra_params))


def _step_view(params: Mapping, step: str, dataset: str | None = None, dvc_form: bool = False) -> ParamsView:
    if isinstance(params, ParamsView) and params._step == step and not dvc_form:
        return params
    return ParamsView(params, _tree(sections(step, dataset) + (dvc_extra(step) if dvc_form else ())), step)


_step_view.__name__ = _step_view.__qualname__ = "step_view"
_step_view.__doc__ = """``params`` restricted to the sections ``step`` declares (``{dataset}`` bound to
    ``dataset``; with ``dvc_form``, plus :func:`dvc_extra`): what the step's entry point receives,
    a read-only :class:`ParamsView`. Typed by :class:`blinkbench.core.params_types.StepView`:
    for a step named by a literal, its ``<Step>Params`` TypedDict."""
step_view = cast(params_types.StepView, _step_view)


# ---------------------------------------------------------------------------- model files

def model_files(params: Mapping, step: str, detector: str | None = None) -> list[str]:
    """Model files a step reads that params name by path: the PFLD model (``landmarks``
    with the pfld backend, and the steps that re-extract landmarks; the Landmark Breaker's
    transfer target) and a frame detector's ``checkpoint``. Snakemake rules declare them as
    inputs and DVC stages as deps, so replacing one reruns the step (the per-video stamps
    hash the PFLD model too)."""
    lm = params["landmarks"]
    pfld = lm.get("pfld_model") if lm.get("backend") == "pfld" else None
    if step in ("landmarks", "ear_attack", "rescore"):
        files = [pfld]
    elif step == "landmark_breaker":
        files = [(params["blink_attacks"].get("landmark_breaker") or {}).get("pfld_model") or lm.get("pfld_model")]
    elif step == "train_frame":
        hyper = params["frame_detectors"].get("hyper") or {}
        names = [detector] if detector else list(params["frame_detectors"].get("enabled") or [])
        files = [(hyper.get(d) or {}).get("checkpoint") for d in names]
    else:
        files = []
    return [str(f) for f in files if f]
