"""Figures: EAR over time with blink and closure events marked."""

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


def plot_eps_sweep(df: pd.DataFrame, out_png, title: str = "") -> None:
    """Detection rate of fake videos against eps: one panel per compression variant, frame
    detectors solid, blink detectors dashed (``df``: variant, eps, detector, detection_rate)."""
    variants = list(dict.fromkeys(df["variant"]))
    fig, axes = plt.subplots(1, len(variants), figsize=(5.2 * len(variants), 4), dpi=110, squeeze=False)
    for ax, v in zip(axes[0], variants):
        sub = df[df["variant"] == v]
        for det, g in sub.groupby("detector", sort=True):
            g = g.sort_values("eps")
            blink = det.startswith("blink/")
            ax.plot(g["eps"], g["detection_rate"], ls="--" if blink else "-", marker="o", ms=3, lw=1,
                    label=det.split("/", 1)[1] + (" (blink)" if blink else ""))
        ax.set(xlabel="eps (L-inf, 0-255 levels)", ylabel="fake videos detected", ylim=(-0.03, 1.03),
               title=f"compression: {v}")
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
