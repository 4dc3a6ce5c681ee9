"""Parity and uncertainty plots of :class:`gapy.metrics.Comparison` objects (PNG files).

Figures are drawn on matplotlib's Agg canvas directly, without ``pyplot``: no display,
no global state, safe in scripts, threads and on clusters.
"""

from pathlib import Path
from typing import Dict, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import Comparison

_LABELS = {"energy": "energy per atom", "forces": "force component", "stress": "stress component"}


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def parity_plot(comparison: Comparison, path: Union[str, Path], title: str = "") -> None:
    """Predicted against reference values, coloured by config_type, with RMSE and MAE.

    Parameters
    ----------
    comparison : Comparison
        One quantity (from :func:`gapy.metrics.compare`).
    path : str or Path
        PNG file to write.
    title : str, optional
        Figure title, e.g. the data file.
    """
    figure = _figure(5.0, 4.6)
    axes = figure.add_subplot()
    for config_type in sorted(set(comparison.config_type.tolist())):
        mask = comparison.config_type == config_type
        axes.scatter(comparison.reference[mask], comparison.predicted[mask], s=6, alpha=0.6,
                     label=config_type, rasterized=True)
    values = np.concatenate([comparison.reference, comparison.predicted])
    low, high = values.min(), values.max()
    pad = 0.05 * (high - low) if high > low else 1.0
    limits = (low - pad, high + pad)
    axes.plot(limits, limits, color="black", linewidth=0.8)
    axes.set_xlim(limits)
    axes.set_ylim(limits)
    axes.set_aspect("equal")
    name, unit = _LABELS[comparison.quantity], comparison.unit
    axes.set_xlabel(f"reference {name} ({unit})")
    axes.set_ylabel(f"predicted {name} ({unit})")
    error = comparison.error
    axes.text(0.03, 0.97, f"RMSE {np.sqrt(np.mean(error**2)):.3g} {unit}\nMAE {np.mean(np.abs(error)):.3g} {unit}",
              transform=axes.transAxes, va="top")
    axes.legend(loc="lower right", fontsize="small", markerscale=2)
    if title:
        axes.set_title(title)
    figure.savefig(path, dpi=120)


def uncertainty_plot(comparisons: Dict[str, Comparison], path: Union[str, Path], title: str = "") -> None:
    """Absolute error against predicted standard deviation, log-log, one panel per quantity.

    A calibrated model scatters around the line ``|error| = std``; the fraction of
    errors within two standard deviations (95 % for Gaussian errors) is printed.
    The axes span four decades below the largest value; smaller values (such as force
    components that vanish by symmetry) are drawn at the lower edge.

    Parameters
    ----------
    comparisons : dict of Comparison
        From :func:`gapy.metrics.compare` on predictions with ``return_std=True``.
    path : str or Path
        PNG file to write.
    title : str, optional
        Figure title.

    Raises
    ------
    ValueError
        No comparison has standard deviations.
    """
    with_std = [c for c in comparisons.values() if c.std is not None]
    if not with_std:
        raise ValueError("no standard deviations to plot: predict with return_std=True")
    figure = _figure(4.2 * len(with_std), 4.2)
    for position, comparison in enumerate(with_std, start=1):
        axes = figure.add_subplot(1, len(with_std), position)
        error = np.abs(comparison.error)
        std = comparison.std
        largest = max(error.max(), std.max())
        floor = 1e-4 * largest if largest > 0 else 1e-12
        x, y = np.maximum(std, floor), np.maximum(error, floor)
        for config_type in sorted(set(comparison.config_type.tolist())):
            mask = comparison.config_type == config_type
            axes.scatter(x[mask], y[mask], s=6, alpha=0.6, label=config_type, rasterized=True)
        limits = (0.7 * floor, 1.5 * max(x.max(), y.max()))
        axes.plot(limits, limits, color="black", linewidth=0.8)
        axes.set_xlim(limits)
        axes.set_ylim(limits)
        axes.set_xscale("log")
        axes.set_yscale("log")
        unit = comparison.unit
        axes.set_xlabel(f"predicted std ({unit})")
        axes.set_ylabel(f"|error| ({unit})")
        axes.set_title(_LABELS[comparison.quantity])
        within = np.mean(error <= 2 * std)
        axes.text(0.03, 0.97, f"|error| \u2264 2 std: {within:.0%}", transform=axes.transAxes, va="top")
        axes.legend(loc="lower right", fontsize="small", markerscale=2)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=120)
