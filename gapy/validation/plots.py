"""Validation plots (PNG, matplotlib's Agg canvas, no pyplot): EOS, phonons, NEB profile.

Each takes ``report.curves[family]``: a dict with a ``"model"`` and, if computed, a
``"reference"`` entry.
"""

from pathlib import Path
from typing import Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_STYLE = {"model": dict(color="tab:blue", label="model"),
          "reference": dict(color="black", label="reference", linestyle="--")}


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def eos_plot(curves: dict, path: Union[str, Path], title: str = "") -> None:
    """Energy per atom against volume per atom, the model's +-2 std band shaded.

    Energies of each side are shifted to their own minimum (eV/atom).
    """
    figure = _figure(5.0, 4.0)
    axes = figure.add_subplot()
    for side in ("reference", "model"):
        data = curves.get(side)
        if not data:
            continue
        volumes, energies = np.asarray(data["volumes"]), np.asarray(data["energies"])
        shifted = energies - energies.min()
        style = _STYLE[side]
        axes.plot(volumes, shifted, marker="o", markersize=4, **style)
        if "energy_std" in data:
            std = np.asarray(data["energy_std"])
            axes.fill_between(volumes, shifted - 2 * std, shifted + 2 * std, color=style["color"], alpha=0.25,
                              label="model +-2 std")
    axes.set_xlabel("volume (A^3/atom)")
    axes.set_ylabel("energy - minimum (eV/atom)")
    axes.legend()
    if title:
        axes.set_title(f"{title}: equation of state")
    figure.savefig(path, dpi=120)


def phonon_plot(curves: dict, path: Union[str, Path], title: str = "") -> None:
    """Phonon dispersion (THz) of the model over the reference's."""
    figure = _figure(6.0, 4.0)
    axes = figure.add_subplot()
    data = curves.get("model") or curves.get("reference")
    for side in ("reference", "model"):
        if not curves.get(side):
            continue
        bands = np.asarray(curves[side]["bands"])
        x = np.asarray(curves[side]["x"])
        lines = axes.plot(x, bands, **{k: v for k, v in _STYLE[side].items() if k != "label"}, linewidth=1.2)
        lines[0].set_label(_STYLE[side]["label"])
    ticks = list(data["ticks"])
    axes.set_xticks(ticks, [label.replace("G", "Γ") for label in data["labels"]])
    axes.set_xlim(ticks[0], ticks[-1])
    axes.set_ylabel("frequency (THz)")
    axes.grid(axis="x")
    axes.legend()
    if title:
        axes.set_title(f"{title}: phonons")
    figure.savefig(path, dpi=120)


def neb_plot(curves: dict, path: Union[str, Path], title: str = "") -> None:
    """NEB energy profile relative to the start (eV), the model's +-2 std as error bars."""
    figure = _figure(5.0, 4.0)
    axes = figure.add_subplot()
    for side in ("reference", "model"):
        data = curves.get(side)
        if not data:
            continue
        x = np.asarray(data["path"])
        x = x / x[-1] if x[-1] > 0 else x
        style = _STYLE[side]
        axes.plot(x, data["energies"], marker="o", markersize=4, **style)
        if "energy_std" in data:
            axes.errorbar(x, data["energies"], yerr=2 * np.asarray(data["energy_std"]), fmt="none",
                          color=style["color"], capsize=3)
    axes.set_xlabel("reaction coordinate (normalised path length)")
    axes.set_ylabel("energy - start (eV)")
    axes.legend()
    if title:
        axes.set_title(f"{title}: vacancy migration")
    figure.savefig(path, dpi=120)
