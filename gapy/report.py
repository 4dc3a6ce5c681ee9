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
    GapyError
        No structure has a label to compare with.
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
    comparisons carry standard deviations.

    Returns
    -------
    list of Path
        The files written.
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
