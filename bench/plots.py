"""Matplotlib helpers for the measures' PNG plots (headless: the Agg backend, chosen on first use)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figure(figsize=(7, 4)):
    """A new figure with one axes: ``(fig, ax)``."""
    return pyplot().subplots(figsize=figsize)


def finish(fig, ax, path: Path, *, xlabel: str, ylabel: str, title: str) -> Path:
    """Label the axes, add the legend, and save the figure to ``path``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save(fig, path)


def counts(ax, times, label):
    """A step line: how many events happened by each time (``times`` sorted)."""
    ax.step(times, range(1, len(times) + 1), where="post", label=label)


def cdf(ax, values, label):
    xs = sorted(values)
    if not xs:
        return
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=label)


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
