"""Parity and uncertainty plots of :class:`gapy.metrics.Comparison` objects, and coverage
maps of :class:`gapy.coverage.CoverageMap` (PNG files).

Figures are drawn on matplotlib's Agg canvas directly, without ``pyplot``: no display,
no global state, safe in scripts, threads and on clusters.
"""

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

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
        One quantity (from :func:`gapy.metrics.compare`); axes in its ``unit``.
    path : str or Path
        PNG file to write (overwritten).
    title : str, default=""
        Figure title, e.g. the data file; none if empty.

    See Also
    --------
    gapy.report.write_report : Writes this plot for every quantity.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from gapy.metrics import Comparison
    >>> from gapy.plots import parity_plot
    >>> c = Comparison("forces", "eV/A", np.array([0.1, -0.2, 0.3]), np.array([0.12, -0.25, 0.28]),
    ...                None, np.zeros(3, int), np.array(["bulk"] * 3))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     parity_plot(c, Path(tmp) / "parity_forces.png", title="test set")
    ...     (Path(tmp) / "parity_forces.png").exists()
    True
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
    comparisons : dict of str to Comparison
        From :func:`gapy.metrics.compare` on predictions with ``return_std=True``;
        comparisons without standard deviations are left out.
    path : str or Path
        PNG file to write (overwritten).
    title : str, default=""
        Figure title; none if empty.

    Raises
    ------
    ValueError
        No comparison has standard deviations.

    References
    ----------
    F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
    uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
    906 (2019).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from gapy.metrics import Comparison
    >>> from gapy.plots import uncertainty_plot
    >>> c = Comparison("forces", "eV/A", np.array([0.1, -0.2, 0.3]), np.array([0.12, -0.25, 0.28]),
    ...                np.array([0.02, 0.03, 0.01]), np.zeros(3, int), np.array(["bulk"] * 3))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     uncertainty_plot({"forces": c}, Path(tmp) / "uncertainty.png")
    ...     (Path(tmp) / "uncertainty.png").exists()
    True
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


def coverage_plot(
    train: np.ndarray,
    path: Union[str, Path],
    *,
    config_type: Optional[Sequence[str]] = None,
    new: Optional[np.ndarray] = None,
    values: Optional[np.ndarray] = None,
    value_label: str = "distance to the training set",
    explained_variance_ratio: Optional[Sequence[float]] = None,
    title: str = "",
) -> None:
    """Training points coloured by config_type and new points coloured by a value (PNG).

    Draws the first two columns (principal components), e.g. of
    :attr:`gapy.coverage.CoverageMap.embedding_` and of ``CoverageMap.transform(new)``.

    Parameters
    ----------
    train : ndarray of shape (n_train, n_components >= 2)
        Coordinates of the training rows, drawn as small dots.
    path : str or Path
        PNG file to write.
    config_type : sequence of str of shape (n_train,), optional
        Colours the training points (one colour, "training", if omitted).
    new : ndarray of shape (n_new, n_components >= 2), optional
        Coordinates of new rows, drawn as crosses on top.
    values : ndarray of shape (n_new,), optional
        Colours the new points (viridis, with a colour bar), e.g. distances or
        predicted standard deviations; non-finite values are drawn in red.
    value_label : str, default="distance to the training set"
        Colour bar label (give the unit).
    explained_variance_ratio : sequence of float, optional
        Shown in the axis labels as percentages, e.g.
        ``CoverageMap.pca_.explained_variance_ratio_``.
    title : str, default=""
        Figure title; none if empty.

    Raises
    ------
    ValueError
        Fewer than two columns, or lengths that do not match.

    See Also
    --------
    gapy.coverage.CoverageMap : Computes the coordinates and distances.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ase.build import bulk
    >>> from gapy import SOAP
    >>> from gapy.coverage import CoverageMap
    >>> from gapy.plots import coverage_plot
    >>> coverage = CoverageMap(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3))
    >>> coverage = coverage.fit([bulk("Si", cubic=True), bulk("Si", "fcc", a=3.9)])
    >>> new = [bulk("Si", "bcc", a=3.1)]
    >>> coordinates, distance = coverage.transform(new, return_distance=True)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     coverage_plot(coverage.embedding_, Path(tmp) / "coverage.png", new=coordinates,
    ...                   values=distance, explained_variance_ratio=coverage.pca_.explained_variance_ratio_)
    ...     (Path(tmp) / "coverage.png").exists()
    True
    """
    train = np.asarray(train, dtype=float)
    if train.ndim != 2 or train.shape[1] < 2:
        raise ValueError(f"train must have shape (n_points, >=2), got {train.shape}")
    if config_type is None:
        labels = np.full(len(train), "training", dtype=object)
    else:
        labels = np.asarray(config_type, dtype=object)
    if labels.shape != (len(train),):
        raise ValueError(f"config_type has {labels.size} entries for {len(train)} training points")
    figure = _figure(6.4 if new is not None and values is not None else 5.4, 4.8)
    axes = figure.add_subplot()
    for group in sorted(set(labels.tolist())):
        mask = labels == group
        axes.scatter(train[mask, 0], train[mask, 1], s=5, alpha=0.5, label=str(group), rasterized=True)
    if new is not None:
        new = np.asarray(new, dtype=float)
        if new.ndim != 2 or new.shape[1] < 2:
            raise ValueError(f"new must have shape (n_points, >=2), got {new.shape}")
        if values is None:
            axes.scatter(new[:, 0], new[:, 1], s=14, marker="x", color="black", label="new", rasterized=True)
        else:
            values = np.asarray(values, dtype=float)
            if values.shape != (len(new),):
                raise ValueError(f"values has shape {values.shape}, expected ({len(new)},)")
            finite = np.isfinite(values)
            points = axes.scatter(new[finite, 0], new[finite, 1], c=values[finite], s=14, marker="x",
                                  cmap="viridis", label="new", rasterized=True)
            if (~finite).any():
                axes.scatter(new[~finite, 0], new[~finite, 1], s=14, marker="x", color="red",
                             label="new (no value)", rasterized=True)
            figure.colorbar(points, ax=axes, label=value_label)
    ratio = list(explained_variance_ratio) if explained_variance_ratio is not None else None
    for set_label, axis in ((axes.set_xlabel, 0), (axes.set_ylabel, 1)):
        text = f"PC{axis + 1}"
        if ratio is not None and len(ratio) > axis:
            text += f" ({100 * ratio[axis]:.1f} % of variance)"
        set_label(text)
    axes.legend(loc="best", fontsize="small", markerscale=2)
    if title:
        axes.set_title(title)
    figure.savefig(path, dpi=120)


def learning_curve_plot(rows: Sequence[dict], path: Union[str, Path], title: str = "") -> None:
    """Active learning at a glance: uncertainty and test errors against training-set size (PNG).

    Parameters
    ----------
    rows : sequence of dict
        :func:`gapy.sampling.history_rows` (``n_train``, ``max_score``,
        ``median_score``, ``test_force_rmse``, ``test_energy_rmse``).
    path : str or Path
        PNG file to write (overwritten).
    title : str, default=""
        Figure title; none if empty.

    Notes
    -----
    One panel: the largest and median candidate scores per iteration, log scale. When a
    row has ``test_force_rmse``, a second panel: the test force RMSE (eV/A) and, on a
    second axis, the test energy RMSE (meV/atom). The ``"final"`` row of
    :func:`~gapy.sampling.history_rows` adds its test errors, without scores.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from gapy.plots import learning_curve_plot
    >>> from gapy.sampling import Iteration, history_rows
    >>> history = [Iteration(n_train=n, n_candidates=20, max_score=0.5 / n, median_score=0.1 / n,
    ...                      selected_scores=np.array([0.5 / n]), md_stopped=0,
    ...                      test_energy_rmse=0.01 / n, test_force_rmse=0.2 / n)
    ...            for n in (4, 8, 12)]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     learning_curve_plot(history_rows(history), Path(tmp) / "learning.png", title="Cu")
    ...     (Path(tmp) / "learning.png").exists()
    True
    """
    with_test = any(row.get("test_force_rmse") is not None for row in rows)
    figure = _figure(9.0 if with_test else 5.0, 3.8)
    panels = figure.subplots(1, 2 if with_test else 1, squeeze=False)[0]

    def series(key):
        points = [(row["n_train"], row[key]) for row in rows if row.get(key) is not None]
        return np.array(points, dtype=float).reshape(-1, 2)

    axes = panels[0]
    for key, label in (("max_score", "largest"), ("median_score", "median")):
        points = series(key)
        axes.plot(points[:, 0], points[:, 1], marker="o", label=f"{label} candidate score")
    axes.set_xlabel("training structures")
    axes.set_ylabel("uncertainty score")
    axes.set_yscale("log")
    axes.legend(fontsize="small")
    if with_test:
        axes = panels[1]
        points = series("test_force_rmse")
        axes.plot(points[:, 0], points[:, 1], marker="o", color="C2", label="forces (eV/A)")
        axes.set_xlabel("training structures")
        axes.set_ylabel("test force RMSE (eV/A)")
        axes.set_yscale("log")
        energy = series("test_energy_rmse")
        if len(energy):
            twin = axes.twinx()
            twin.plot(energy[:, 0], 1000 * energy[:, 1], marker="s", color="C3", label="energy (meV/atom)")
            twin.set_ylabel("test energy RMSE (meV/atom)")
            twin.set_yscale("log")
            lines = axes.get_lines() + twin.get_lines()
            axes.legend(lines, [line.get_label() for line in lines], fontsize="small")
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=120)
