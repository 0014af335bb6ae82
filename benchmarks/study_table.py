#!/usr/bin/env python
"""The resiliency study of a finished run as one Markdown table (a script, not a test).

    python benchmarks/study_table.py --workdir DIR [--dataset shared] [--target meso4] [--method fgsm]

Reads what the run wrote, nothing else: the per-set study JSONs
(``data/study/<dataset>/<target>/<method>/eps<eps>/<variant>.json`` and the clean reference
``data/study/<dataset>/clean/none/eps0/<variant>.json``) and the report's ``metrics.json``
(``study.fooled_target``, ``study.attack_success_rate_videos``). One row per (compression,
eps), the clean eps 0 first under each compression. Columns:

- the attacked frame detector's detection rate of the fakes (share of fake videos it calls
  fake), then every other frame detector's (transfer) unless ``--frame`` narrows them;
- ``success (seed 003)``: the attack success rate per video as seed 003 counts it (a fake is
  fooled when fewer than half its frames are called fake, whether or not the detector
  caught it clean);
- ``fooled / caught clean``: of the fakes the target detects clean under the same
  compression, how many it no longer detects (the figure that says the attack moved its
  target);
- each blink detector's detection rate over the fakes it gives a verdict on, with that
  coverage in brackets where some fakes have too little face (``insufficient``), unless
  ``--blink`` narrows them;
- ``<first blink detector> on the fooled``: its detection rate on exactly the fooled
  videos, clean -> attacked;
- blink change: mean change of the blink count per video, attacked minus clean;
- PSNR / SSIM in the face box (mean over frames) and the L-inf reached, lossless rows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from _common import parser

VARIANTS = ["none", "jpeg75", "jpeg50", "h264_crf23", "mpeg4_h264"]
LABEL = {"none": "lossless", "jpeg75": "JPEG 75", "jpeg50": "JPEG 50", "h264_crf23": "H.264 CRF 23",
         "mpeg4_h264": "MPEG-4 + H.264"}


def _num(x, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _eps_of(p: Path) -> float:
    return float(re.fullmatch(r"eps(.+)", p.name).group(1))


def load_sets(root: Path, dataset: str, target: str, method: str) -> dict[tuple[str, float], dict]:
    """(variant, eps) -> that set's study JSON; eps 0 is the clean reference."""
    out: dict[tuple[str, float], dict] = {}
    base = root / "data" / "study" / dataset
    for variant_file in sorted((base / "clean" / "none" / "eps0").glob("*.json")):
        out[(variant_file.stem, 0.0)] = json.loads(variant_file.read_text())
    for eps_dir in sorted((base / target / method).glob("eps*")):
        for variant_file in sorted(eps_dir.glob("*.json")):
            out[(variant_file.stem, _eps_of(eps_dir))] = json.loads(variant_file.read_text())
    return out


def _eps_key(eps: float) -> str:
    return f"eps{eps:g}"


def table(root: Path, dataset: str, target: str, method: str, frame: list[str] | None = None,
          blink: list[str] | None = None) -> str:
    sets = load_sets(root, dataset, target, method)
    if not sets:
        raise SystemExit(f"no study JSONs under {root / 'data/study' / dataset}")
    metrics = json.loads((root / "data/reports/metrics.json").read_text()).get("study", {})
    fooled = metrics.get("fooled_target", {}).get(target, {}).get(method, {})
    success = metrics.get("attack_success_rate_videos", {}).get(target, {}).get(method, {})
    names = sorted({k for s in sets.values() for k in s["summary"] if "/" in k})
    frames = [f"frame/{n}" for n in frame] if frame else [n for n in names if n.startswith("frame/")]
    frames = [f"frame/{target}"] + [n for n in frames if n != f"frame/{target}"]
    blinks = [f"blink/{n}" for n in blink] if blink else [n for n in names if n.startswith("blink/")]
    head = (["compression", "eps"] + [n.split("/", 1)[1] + (" (attacked)" if n == f"frame/{target}" else "")
                                      for n in frames]
            + ["success (seed 003)", "fooled / caught clean"] + [n.split("/", 1)[1] for n in blinks]
            + [f"{blinks[0].split('/', 1)[1]} on the fooled" if blinks else "blink on the fooled",
               "blink change", "PSNR / SSIM / L-inf"])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in [v for v in VARIANTS if any(k[0] == v for k in sets)]:
        for eps in sorted(e for v, e in sets if v == variant):
            summ = sets[(variant, eps)]["summary"]
            cells = [LABEL.get(variant, variant), f"{eps:g}"]
            for n in frames:
                d = summ.get(n) or {}
                cells.append(_num(d.get("detection_rate")))
            ft = fooled.get(_eps_key(eps), {}).get(variant) if eps else None
            sr = success.get(_eps_key(eps), {}).get(variant) if eps else None
            cells.append(_num(sr))
            cells.append(f"{ft['n_fooled']} / {ft['n_detected_clean']}" if ft else "-")
            for n in blinks:
                d = summ.get(n) or {}
                cov = d.get("coverage")
                cells.append("-" if d.get("detection_rate") is None else
                             f"{d['detection_rate']:.2f} ({cov * 100:.0f} %)" if cov is not None and cov < 1
                             else _num(d["detection_rate"]))
            on = (ft or {}).get("detection_rate_on_fooled", {}).get(blinks[0]) if blinks and ft else None
            cells.append(f"{_num(on.get('clean'))} -> {_num(on.get('attacked'))}" if on else "-")
            bp = summ.get("blink_path") or {}
            cells.append(_num(bp.get("mean_blink_change")) if eps else "-")
            per = summ.get("perceptual") or {}
            cells.append(f"{per['psnr_mean']:.1f} dB / {per['ssim_mean']:.3f} / {per.get('linf_max', 0):g}"
                         if eps and variant == "none" and per.get("psnr_mean") is not None else "-")
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--workdir", type=Path, default=Path("."), help="a finished run's project folder")
    ap.add_argument("--dataset", default="shared")
    ap.add_argument("--target", default="meso4")
    ap.add_argument("--method", default="fgsm")
    ap.add_argument("--frame", nargs="*", help="frame detectors to show (default: every one in the study)")
    ap.add_argument("--blink", nargs="*", help="blink detectors to show, the first one also on the fooled "
                                               "(default: every one in the study)")
    a = ap.parse_args(argv)
    print(table(a.workdir, a.dataset, a.target, a.method, a.frame, a.blink))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
