"""Plotting helpers shared by the notebooks (introduced in notebooks/00).

Every figure uses matplotlib's colour-blind-safe ``tableau-colorblind10`` palette, and
curves get markers or line styles as well as colours. Each helper returns the
``Axes`` (or ``Figure``) so a notebook can add its own title stating the finding.
"""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np

plt.style.use("tableau-colorblind10")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")


def image_grid(images, labels=None, ncols: int = 10, cmap: str = "gray", title: str | None = None,
               size: float = 1.0):
    """Show ``images`` (``(N, H, W)`` or ``(N, H, W, C)``) in a grid, each captioned by its label.

    ``labels`` is a sequence of N strings or numbers, or None. Returns the figure.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    caption_lines = max((str(label).count("\n") + 1 for label in labels), default=0) if labels is not None else 0
    row_height = size * (1.0 + 0.18 * caption_lines)  # room for each row's captions
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, row_height * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap if images.ndim == 3 else None)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_curves(history: dict[str, list[float]], xlabel: str = "epoch", ylabel: str = "",
                    title: str = "", ax=None, best: str | None = None, mode: str = "max"):
    """Plot named curves, e.g. ``{"train loss": [...], "val loss": [...]}``, one marker each.

    ``best`` names a curve whose best point (``mode`` ``"max"`` or ``"min"``) is marked.
    Epochs are numbered from 1. Returns the axes.
    """
    if not history:
        raise ValueError("history is empty: pass a dict of name -> list of values")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for (name, values), marker, ls in zip(history.items(), itertools.cycle(MARKERS), itertools.cycle(LINESTYLES)):
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, marker=marker, linestyle=ls, label=name, markersize=4)
    if best is not None:
        values = np.asarray(history[best])
        i = int(np.argmax(values) if mode == "max" else np.argmin(values))
        ax.axvline(i + 1, color="gray", linestyle=":", linewidth=1)
        # Keep the label inside the axes: left of late points, below a maximum, above a minimum.
        late = i + 1 > len(values) / 2
        ax.annotate(f"best {best}: epoch {i + 1}", (i + 1, values[i]), textcoords="offset points",
                    xytext=(-5 if late else 5, -12 if mode == "max" else 5), ha="right" if late else "left",
                    fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def decision_boundary(predict, X, y, ax=None, title: str = "", resolution: int = 200,
                      margin: float = 0.5, levels=(0.5,)):
    """Shade where ``predict`` says class 1 and draw the points ``X: (N, 2)``, ``y: (N,)``.

    ``predict`` maps a ``(M, 2)`` array to ``(M,)`` scores (probabilities for two
    classes, or class indices for more). The contour at ``levels`` is the boundary.
    Returns the axes.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must be (N, 2) to draw a 2-D boundary, got shape {X.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    x0 = np.linspace(X[:, 0].min() - margin, X[:, 0].max() + margin, resolution)
    x1 = np.linspace(X[:, 1].min() - margin, X[:, 1].max() + margin, resolution)
    g0, g1 = np.meshgrid(x0, x1)
    scores = np.asarray(predict(np.c_[g0.ravel(), g1.ravel()]), dtype=float).reshape(g0.shape)
    # Probabilities are shaded on a fixed 0..1 scale, so an unsure model (all scores
    # near 0.5) looks unsure instead of being stretched into a confident two-colour split.
    is_probability = scores.min() >= 0 and scores.max() <= 1
    ax.contourf(g0, g1, scores, levels=np.linspace(0, 1, 21) if is_probability else 20, cmap="RdBu_r", alpha=0.35)
    drawn = [lv for lv in levels if scores.min() < lv < scores.max()]  # a level the scores never cross has no line
    if len(np.unique(y)) <= 2 and drawn:
        ax.contour(g0, g1, scores, levels=drawn, colors="k", linewidths=1.5)
    for cls, marker in zip(np.unique(y), itertools.cycle(MARKERS)):
        ax.scatter(*X[y == cls].T, marker=marker, edgecolor="k", linewidth=0.5, s=30, label=f"class {cls}")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return ax
