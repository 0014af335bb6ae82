"""Model files that hold data only: loading one never runs code from it.

A model file (``data/models/{blink,frame}/<detector>/<train>.zip``) is an uncompressed zip
written with fixed timestamps and member order, so two identical fits give identical bytes
(DVC hashes them). Its members:

- ``model.json``: the header (format, ``kind`` blink/frame, detector ``name``, ``status``
  ok/error and the training ``error``, ``describe()`` for people) and every attribute of
  the fitted detector that JSON holds exactly (hyper-parameters, fit info, network specs;
  the series configuration as its fields);
- ``weights.safetensors`` (neural detectors): the network's state dict as safetensors,
  loaded into a network rebuilt from the spec in ``model.json``;
- ``estimators.skops`` (classical and forensic detectors): the fitted scikit-learn,
  sktime, tslearn and pyts objects as skops, loaded with an explicit allow-list of types
  (:data:`TRUSTED`, on top of skops' own list of scikit-learn and NumPy types); the skops
  archive is made byte-stable (its ``id()``-based object ids and file names renumbered in
  order, fixed timestamps).

The detector's class comes from the registry by the header's name, never from the file.
Anything else is refused with :class:`ModelFileError` before any of it is interpreted: a
pickle (the old format), another zip, unknown or compressed members, an unknown detector
name, a type outside the allow-list, weights that do not fit the rebuilt network. A file
that records a failed training raises :class:`UntrainedModel`.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

from blinkbench.core import io

FORMAT = "blinkbench-model"
VERSION = 2
KINDS = ("blink", "frame")
# kind -> the registry its detector classes come from. Each kind's base module registers its
# own when imported, and importing any of ``blinkbench.detectors`` imports both (the package
# ``__init__``), so this module never imports the detectors it reads (no import circle).
REGISTRIES: dict[str, Any] = {}
HEADER, WEIGHTS, ESTIMATORS = "model.json", "weights.safetensors", "estimators.skops"
MEMBERS = (HEADER, WEIGHTS, ESTIMATORS)
MAX_HEADER_BYTES = 64 << 20
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ATTR = re.compile(r"^[a-z][a-z0-9_]*$")

# Types the fitted estimators are made of that skops does not trust by default: exactly
# those of the registered detectors (and the forensic classifiers' rf/svm/gb variants).
# skops rebuilds them from their data (``__new__`` + state); none is a function or callable.
TRUSTED = [
    "pyts.classification._learning_shapelets.CrossEntropyLearningShapelets",
    "pyts.classification._learning_shapelets.LearningShapelets",
    "pyts.classification._tsbf.IntervalFeatureExtractor",
    "pyts.classification._tsbf.TSBF",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sktime.classification.dictionary_based._weasel.WEASEL",
    "sktime.classification.interval_based._tsf.TimeSeriesForestClassifier",
    "sktime.transformations.dictionary_based._sfa_fast.SFAFast",
    "sktime.transformations.rocket._minirocket.MiniRocket",
    "sktime.transformations.rocket._rocket.Rocket",
    "tslearn.neighbors.neighbors.KNeighborsTimeSeriesClassifier",
    "tslearn.svm.svm.TimeSeriesSVC",
]


class ModelFileError(ValueError):
    """A file that is not a blinkbench model file, or one this version refuses to load."""


class UntrainedModel(ValueError):
    """A model file that records why training failed instead of a fitted detector."""


# ---------------------------------------------------------------------------- writing

def _exact_json(v: Any) -> bool:
    """True when JSON gives ``v`` back with the same types (no tuples, NumPy scalars, NaN)."""
    if v is None or isinstance(v, (bool, str)):
        return True
    if type(v) is int:
        return True
    if type(v) is float:
        return v == v and abs(v) != float("inf")
    if type(v) is list:
        return all(_exact_json(x) for x in v)
    if type(v) is dict:
        return all(type(k) is str and _exact_json(x) for k, x in v.items())
    return False


def _canonical_skops(blob: bytes) -> bytes:
    """The same skops archive with deterministic bytes: the ``__id__`` memo keys and the
    array file names (``id()`` values and UUIDs at save time) renumbered in order of first
    appearance, members sorted, fixed timestamps."""
    src = zipfile.ZipFile(_io.BytesIO(blob))
    schema = json.loads(src.read("schema.json"))
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def new_id(old: int) -> int:
        return ids.setdefault(old, len(ids) + 1)

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "__id__" and type(v) is int:
                    node[k] = new_id(v)
                elif k == "file" and isinstance(v, str):
                    if v not in files:
                        stem, dot, ext = v.partition(".")
                        files[v] = (f"{new_id(int(stem))}" if stem.isdigit() else f"f{len(files)}") + dot + ext
                    node[k] = files[v]
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    others = set(src.namelist()) - {"schema.json"}
    if others != set(files):
        raise RuntimeError(f"skops archive members not referenced by its schema: {sorted(others - set(files))}")
    members = {"schema.json": json.dumps(schema, indent=1, sort_keys=False).encode()}
    members.update({files[n]: src.read(n) for n in others})
    return _zip(members)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            z.writestr(info, members[name])
    return buf.getvalue()


def _header(kind: str, name: str, status: str = "ok", error: str = "", **more) -> dict:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {"format": FORMAT, "version": VERSION, "kind": kind, "name": name, "status": status, "error": error, **more}


def _write(path: str | Path, header: dict, extra: dict[str, bytes]) -> None:
    body = json.dumps(header, indent=1, sort_keys=True, default=io._json_default).encode()
    data = _zip({HEADER: body, **extra})
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save(det, path: str | Path, kind: str) -> None:
    """Write a fitted detector (see the module docstring for the layout)."""
    from blinkbench.detectors.blink.series import SeriesConfig

    state, series, rest = {}, {}, {}
    for k, v in det.__dict__.items():
        if k == "net_":
            continue
        if isinstance(v, SeriesConfig):
            series[k] = v.as_dict()
        elif _exact_json(v):
            state[k] = v
        else:
            rest[k] = v
    extra: dict[str, bytes] = {}
    net = det.__dict__.get("net_")
    if net is not None:
        from safetensors.torch import save as st_save

        extra[WEIGHTS] = st_save({k: t.detach().cpu().contiguous() for k, t in net.state_dict().items()})
    if rest:
        import skops.io

        extra[ESTIMATORS] = _canonical_skops(skops.io.dumps(rest))
    header = _header(kind, det.name, describe=det.describe(), state=state, series=series)
    _write(path, header, extra)


def save_failure(path: str | Path, name: str, error: str, kind: str = "blink") -> None:
    """A model file recording that training ``name`` failed (loading it raises
    :class:`UntrainedModel`), so the run goes on and the evaluation shows why."""
    _write(path, _header(kind, name, status="error", error=error), {})


# ---------------------------------------------------------------------------- reading

@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[zipfile.ZipFile, dict]]:
    """The open zip and its checked header; the file is opened once (one handle)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head[:1] == b"\x80":
            raise ModelFileError(f"{path}: a Python pickle (the old model format): pickles can run code when "
                                 "loaded, so blinkbench refuses them; retrain the model (train_blink/train_frame)")
        if head != b"PK\x03\x04":
            raise ModelFileError(f"{path}: not a blinkbench model file (format {FORMAT} {VERSION})")
        fh.seek(0)
        try:
            z = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelFileError(f"{path}: not a readable blinkbench model file: {exc}") from None
        with z:
            yield z, _check(path, z)


def _read(path: Path, z: zipfile.ZipFile, name: str) -> bytes:
    try:
        return z.read(name)
    except Exception as exc:  # CRC mismatch, truncation, bad local header: the file's fault
        raise ModelFileError(f"{path}: damaged member {name}: {type(exc).__name__}: {exc}") from None


def _check(path: Path, z: zipfile.ZipFile) -> dict:
    infos = z.infolist()
    names = [i.filename for i in infos]
    bad = [n for n in names if n not in MEMBERS]
    if bad or len(set(names)) != len(names) or HEADER not in names:
        raise ModelFileError(f"{path}: not a blinkbench model file (members {names[:5]}; expected "
                             f"{HEADER} and optionally {WEIGHTS}, {ESTIMATORS})")
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
        raise ModelFileError(f"{path}: compressed members are refused (model files are stored uncompressed)")
    if z.getinfo(HEADER).file_size > MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: {HEADER} is larger than {MAX_HEADER_BYTES} bytes")
    try:
        header = json.loads(_read(path, z, HEADER))
    except ValueError as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: unreadable {HEADER}: {exc}") from None
    if (not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION
            or header.get("kind") not in KINDS or not isinstance(header.get("name"), str)):
        raise ModelFileError(f"{path}: not a blinkbench model file (format {FORMAT} {VERSION})")
    return header


def read_header(path: str | Path) -> dict:
    """The header of a model file (checked as :func:`load` does, nothing else read)."""
    with _opened(Path(path)) as (_, header):
        return header


def load(path: str | Path, kind: str | None = None):
    """The detector in a model file (of ``kind`` blink/frame when given)."""
    path = Path(path)
    with _opened(path) as (z, header):
        if header.get("status") != "ok":
            raise UntrainedModel(f"{path}: {header['name']} was not trained: {header.get('error') or 'unknown reason'}")
        if kind is not None and header["kind"] != kind:
            raise ModelFileError(f"{path}: a {header['kind']} detector file, expected a {kind} detector")
        cls = _detector_class(path, header)
        attrs = _json_state(path, header)
        names = set(z.namelist())
        if ESTIMATORS in names:
            getattr(cls, "_before_load", lambda: None)()
            attrs.update(_estimators(path, _read(path, z, ESTIMATORS)))
        det = _instantiate(path, cls, attrs)
        if hasattr(det, "_rebuild_net"):
            if WEIGHTS not in names:
                raise ModelFileError(f"{path}: {header['name']} needs {WEIGHTS}")
            _load_weights(path, det, _read(path, z, WEIGHTS))
        elif WEIGHTS in names:
            raise ModelFileError(f"{path}: {header['name']} has no network, but the file holds weights")
    det._after_load()
    return det


def _detector_class(path: Path, header: dict):
    try:
        return REGISTRIES[header["kind"]].get(header["name"])
    except KeyError as exc:
        raise ModelFileError(f"{path}: {exc.args[0]}") from None


def _json_state(path: Path, header: dict) -> dict:
    from blinkbench.detectors.blink.series import SeriesConfig

    state, series = header.get("state"), header.get("series", {})
    if not isinstance(state, dict) or not isinstance(series, dict):
        raise ModelFileError(f"{path}: {HEADER} has no detector state")
    attrs = dict(state)
    try:
        for k, v in series.items():
            attrs[k] = SeriesConfig.from_params(v)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: bad series configuration: {exc}") from None
    return attrs


def _instantiate(path: Path, cls, attrs: dict):
    bad = [k for k in attrs if not isinstance(k, str) or not _ATTR.match(k)]
    if (bad or not isinstance(attrs.get("hyper"), dict) or type(attrs.get("seed")) is not int
            or attrs.get("fitted_") is not True):
        raise ModelFileError(f"{path}: bad detector state (attributes {bad[:5]}; a fitted detector with hyper "
                             "and seed expected)")
    unknown = set(attrs["hyper"]) - set(cls.default_hyper())
    if unknown:
        raise ModelFileError(f"{path}: unknown hyper-parameter(s) {sorted(unknown)} for {cls.name}")
    det = cls.__new__(cls)
    det.__dict__.update(attrs)
    return det


def _estimators(path: Path, blob: bytes) -> dict:
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        untrusted = set(skops.io.get_untrusted_types(data=blob)) - set(TRUSTED)
        if untrusted:
            raise ModelFileError(f"{path}: {ESTIMATORS} holds types outside the allow-list, refused: "
                                 f"{sorted(untrusted)}")
        out = skops.io.loads(blob, trusted=TRUSTED)
    except ModelFileError:
        raise
    except UntrustedTypesFoundException as exc:
        raise ModelFileError(f"{path}: {ESTIMATORS} holds types outside the allow-list, refused: {exc}") from None
    except Exception as exc:  # a damaged archive: any parse error is the file's fault
        raise ModelFileError(f"{path}: unreadable {ESTIMATORS}: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, dict) or not all(isinstance(k, str) and _ATTR.match(k) for k in out):
        raise ModelFileError(f"{path}: {ESTIMATORS} is not a dict of detector attributes")
    return out


def _load_weights(path: Path, det, blob: bytes) -> None:
    """Weights into a network rebuilt from the stored spec. The spec is checked on the meta
    device first (no memory), so a spec that does not fit the weights (say, a huge layer
    in a small file) is refused before a real network is allocated."""
    import torch
    from safetensors.torch import load as st_load

    try:
        sd = st_load(blob)               # tensors of at most the file's own size
    except Exception as exc:
        raise ModelFileError(f"{path}: unreadable {WEIGHTS}: {exc}") from None
    for key in ("net_spec_", "net_args_"):
        spec = det.__dict__.get(key)
        if isinstance(spec, dict) and "checkpoint" in spec:   # loading must not read other files
            raise ModelFileError(f"{path}: the stored network spec names a checkpoint file; refused")
    try:
        with torch.device("meta"):
            shapes = {k: (tuple(t.shape), t.dtype) for k, t in det._rebuild_net().state_dict().items()}
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot rebuild the network from the stored spec: {exc}") from None
    missing, unexpected = set(shapes) - set(sd), set(sd) - set(shapes)
    other = sorted(k for k in set(shapes) & set(sd) if shapes[k] != (tuple(sd[k].shape), sd[k].dtype))
    if missing or unexpected or other:
        raise ModelFileError(f"{path}: weights do not fit the {det.name} network: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}, other shape/dtype {other[:5]}")
    net = det._rebuild_net()
    net.load_state_dict(sd, strict=True)
    det.net_ = net.eval()
