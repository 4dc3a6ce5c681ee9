"""Error reports of a model on labelled structures: tables, CSV/JSON files and plots."""

from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from ase import Atoms

from .exceptions import GapyError
from .metrics import Comparison, compare, error_table, write_csv, write_json


def evaluate(model, frames: Sequence[Atoms], predictions: List[dict]) -> Tuple[Dict[str, Comparison], List[dict]]:
    """Compare predictions with the labels of ``frames`` (read with the model's label keys).

    Parameters
    ----------
    model : GAPRegressor
        Gives the label names (``energy_key``, ...).
    frames : sequence of ase.Atoms
        Labelled structures.
    predictions : list of dict
        :meth:`GAPRegressor.predict_all` of ``frames``.

    Returns
    -------
    comparisons : dict of str to Comparison
        By quantity (``"energy"``, ``"forces"``, ``"stress"``).
    rows : list of dict
        :func:`gapy.metrics.error_table` of the comparisons.

    Raises
    ------
    gapy.GapyError
        No structure has a label to compare with.
    ValueError
        ``frames`` and ``predictions`` differ in length, or a prediction lacks a
        quantity a structure has a label for.
    gapy.StructureError
        A label has the wrong shape or is not finite.

    See Also
    --------
    write_report : Write the tables and plots of the comparisons.

    Examples
    --------
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.datasets import load_si
    >>> from gapy.report import evaluate
    >>> train, test = load_si("train")[:4], load_si("test")[:2]
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(train)
    >>> comparisons, rows = evaluate(model, test, model.predict_all(test))
    >>> sorted(comparisons), [(row["quantity"], row["unit"]) for row in rows if row["config_type"] == "all"]
    (['energy', 'forces', 'stress'], [('energy', 'meV/atom'), ('forces', 'eV/A'), ('stress', 'GPa')])
    """
    comparisons = compare(frames, predictions, energy_key=model.energy_key, forces_key=model.forces_key,
                          stress_key=model.stress_key, virial_key=model.virial_key)
    if not comparisons:
        raise GapyError(
            f"no structure has a label to compare with (fields '{model.energy_key}', "
            f"'{model.forces_key}', '{model.stress_key}')"
        )
    return comparisons, error_table(comparisons)


def write_report(directory: Union[str, Path], comparisons: Dict[str, Comparison], rows: List[dict], info: dict,
                 title: str = "", plots: bool = True) -> List[Path]:
    """Write ``errors.csv``, ``errors.json`` (``info`` plus the rows) and the plots.

    Plots: ``parity_<quantity>.png`` for each quantity, and ``uncertainty.png`` when the
    comparisons carry standard deviations. Existing files of these names are
    overwritten.

    Parameters
    ----------
    directory : str or pathlib.Path
        Output directory, created (with its parents) if missing.
    comparisons : dict of str to Comparison
        By quantity, e.g. from :func:`evaluate`.
    rows : list of dict
        :func:`gapy.metrics.error_table` of ``comparisons``.
    info : dict
        JSON-serialisable entries written first in ``errors.json`` (e.g. the model and
        data files), followed by ``"errors": rows``.
    title : str, default=""
        Title of the plots.
    plots : bool, default=True
        Write the PNG plots (and import matplotlib); ``False``: only the tables.

    Returns
    -------
    list of pathlib.Path
        The files written: ``errors.csv``, ``errors.json``, then the plots.

    Raises
    ------
    TypeError
        ``info`` holds a value JSON cannot represent.

    See Also
    --------
    gapy.plots.parity_plot, gapy.plots.uncertainty_plot : The plots written.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from gapy.metrics import Comparison, error_table
    >>> from gapy.report import write_report
    >>> c = Comparison("energy", "meV/atom", np.zeros(2), np.array([3.0, -4.0]), None,
    ...                np.arange(2), np.array(["a", "b"]))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     written = write_report(tmp, {"energy": c}, error_table({"energy": c}), {"model": "gap.npz"})
    ...     [path.name for path in written]
    ['errors.csv', 'errors.json', 'parity_energy.png']
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "errors.csv", directory / "errors.json"]
    write_csv(rows, written[0])
    write_json({**info, "errors": rows}, written[1])
    if plots:
        from .plots import parity_plot, uncertainty_plot  # matplotlib: only when plotting

        for quantity, comparison in comparisons.items():
            path = directory / f"parity_{quantity}.png"
            parity_plot(comparison, path, title=title)
            written.append(path)
        if any(c.std is not None for c in comparisons.values()):
            path = directory / "uncertainty.png"
            uncertainty_plot(comparisons, path, title=title)
            written.append(path)
    return written
