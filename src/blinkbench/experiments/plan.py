"""What the experiments run on: the detectors enabled and the datasets they train and test on."""

from __future__ import annotations

from blinkbench.core.config import ParamsError


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
            from blinkbench.detectors.blink import available, create

            make = lambda name, hyper: create(name, series=d["series"], **hyper)  # noqa: E731
        else:
            from blinkbench.detectors.frame import available, create

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
