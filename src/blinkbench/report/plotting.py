"""Figures: EAR over time with blink and closure events marked, ROC curves, the study's eps sweep."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from blinkbench.core.io import atomic_path  # noqa: E402


def plot_ear(ear: pd.DataFrame, events: pd.DataFrame, out_png, title: str = "", truth: pd.DataFrame | None = None) -> None:
    """EAR (left, right, mean) against time; blinks shaded orange, closures red; optional
    ground-truth events drawn as green bars under the curve."""
    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=110)
    t = ear["timestamp_s"].to_numpy()
    ax.plot(t, ear["ear_left"], lw=0.6, alpha=0.5, label="left eye")
    ax.plot(t, ear["ear_right"], lw=0.6, alpha=0.5, label="right eye")
    ax.plot(t, ear["ear_mean"], lw=1.3, color="k", label="mean")
    for kind, color in (("blink", "tab:orange"), ("closure", "tab:red")):
        sel = events[events["kind"] == kind] if len(events) else events
        for i, ev in enumerate(sel.itertuples()):
            ax.axvspan(ev.start_s, ev.end_s, color=color, alpha=0.3, lw=0, label=kind if i == 0 else None)
    if truth is not None and len(truth):
        fps = 1.0 / np.median(np.diff(t)) if len(t) > 1 else 25.0
        y = np.nanmin(ear["ear_mean"]) if np.isfinite(ear["ear_mean"]).any() else 0
        for i, tr in enumerate(truth.itertuples()):
            ax.plot([tr.start_frame / fps, (tr.end_frame + 1) / fps], [y * 0.9] * 2, color="tab:green", lw=3,
                    label="ground truth" if i == 0 else None)
    no_face = ~ear["face_present"].to_numpy(bool)
    if no_face.any():
        ax.fill_between(t, 0, 1, where=no_face, transform=ax.get_xaxis_transform(), color="0.85", label="no face")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("EAR")
    ax.set_title(title, fontsize=9, loc="right")
    ax.legend(fontsize=7, ncol=7, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
    ax.margins(x=0)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_roc(curves: dict[str, pd.DataFrame], out_png, title: str = "") -> None:
    """ROC curves, one per detector (label -> DataFrame with fpr, tpr), with the chance line."""
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    for label, r in curves.items():
        if len(r):
            ax.plot(r["fpr"], r["tpr"], lw=1.2, label=label, drawstyle="steps-post")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake called fake)",
           xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p")


def detector_styles(detectors, target: str | None = None) -> dict[str, dict]:
    """A line style per detector, distinct within its family and the same in every panel:
    colours from tab10 (up to 10 detectors in the family) or tab20, markers cycling with a
    period coprime to the colours', so two lines never share colour and marker; the
    attacked ``target`` drawn black, thick and on top."""
    out = {}
    for family in ("frame/", "blink/"):
        names = sorted(d for d in detectors if d.startswith(family) and d != target)
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        n_colours = 10 if len(names) <= 10 else 20
        for i, d in enumerate(names):
            out[d] = {"color": cmap(i % n_colours), "marker": MARKERS[i % (len(MARKERS) - 1)], "lw": 1.2,
                      "ms": 4, "ls": "-" if family == "frame/" else "--", "zorder": 2,
                      "label": d.split("/", 1)[1]}
    others = sorted(d for d in detectors if d not in out and d != target)      # a family not named above
    for i, d in enumerate(others):
        out[d] = {"color": plt.get_cmap("tab20")(i % 20), "marker": MARKERS[i % len(MARKERS)], "lw": 1.2, "ms": 4,
                  "ls": ":", "zorder": 2, "label": d}
    if target is not None and target in set(detectors):
        out[target] = {"color": "black", "marker": "o", "lw": 3.0, "ms": 6, "ls": "-", "zorder": 5,
                       "label": f"{target.split('/', 1)[-1]} (attacked)"}
    return out


def plot_eps_sweep(df: pd.DataFrame, out_png, title: str = "", target: str | None = None) -> None:
    """Detection rate of fake videos against eps (``df``: variant, eps, detector,
    detection_rate): one column of panels per compression variant, frame detectors in the
    top row and blink detectors in the bottom one (each row with its own legend outside
    the plot), one colour-and-marker per detector kept across panels, the attacked
    detector ``target`` (``frame/<name>``) thick and black."""
    variants = list(dict.fromkeys(df["variant"]))
    families = [(f, name) for f, name in (("frame/", "frame detectors"), ("blink/", "blink detectors"))
                if df["detector"].str.startswith(f).any()]
    rest = ~df["detector"].str.startswith(("frame/", "blink/"))
    if rest.any() or not families:
        families.append(("", "other detectors"))
    styles = detector_styles(list(dict.fromkeys(df["detector"])), target)
    fig, axes = plt.subplots(len(families), len(variants), figsize=(4.6 * len(variants) + 2.4, 3.6 * len(families)),
                             dpi=110, squeeze=False, sharex=True, sharey=True)
    for row, (prefix, fam_name) in enumerate(families):
        fam = df[rest] if prefix == "" else df[df["detector"].str.startswith(prefix)]
        for col, v in enumerate(variants):
            ax = axes[row][col]
            sub = fam[fam["variant"] == v]
            for det in sorted(set(sub["detector"]), key=lambda d: (d != target, d)):    # the target first
                g = sub[sub["detector"] == det].sort_values("eps")
                st = styles[det]
                ax.plot(g["eps"], g["detection_rate"], ls=st["ls"], marker=st["marker"], ms=st["ms"], lw=st["lw"],
                        color=st["color"], zorder=st["zorder"], label=st["label"])
            ax.set(ylim=(-0.03, 1.03))
            ax.grid(alpha=0.3, lw=0.5)
            if row == 0:
                ax.set_title(f"compression: {v}", fontsize=10)
            if row == len(families) - 1:
                ax.set_xlabel("eps (L-inf, 0-255 levels)")
            if col == 0:
                ax.set_ylabel(f"{fam_name}:\nfake videos detected")
        handles, labels = {}, []
        for ax in axes[row]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in handles:
                    handles[lab] = h
                    labels.append(lab)
        if handles:
            axes[row][-1].legend([handles[lab] for lab in labels], labels, fontsize=7, loc="center left",
                                 bbox_to_anchor=(1.02, 0.5), frameon=False, title=fam_name, title_fontsize=8,
                                 ncol=1 if len(labels) <= 12 else 2)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
