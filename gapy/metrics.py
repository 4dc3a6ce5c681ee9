"""Errors of predicted energies, forces and stresses against reference labels.

:func:`compare` pairs reference labels with predictions in report units (energy in
meV/atom, force components in eV/A, stress components in GPa); :func:`error_table`
gives RMSE and MAE overall and per ``atoms.info["config_type"]``; :func:`format_table`,
:func:`write_csv` and :func:`write_json` present them.
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms

from .labels import EV_PER_A3_IN_GPA, read_labels, stress_from_virial

#: Report unit of each quantity.
UNITS = {"energy": "meV/atom", "forces": "eV/A", "stress": "GPa"}
#: ``config_type`` of structures that have none.
NO_CONFIG_TYPE = "(none)"
#: Group name of the rows over all structures.
ALL = "all"
#: Columns of :func:`error_table` rows, in order.
COLUMNS = ("quantity", "unit", "config_type", "n_structures", "n_values", "rmse", "mae", "z_rms",
           "within_2std")


@dataclass
class Comparison:
    """Reference and predicted values of one quantity, flattened over structures.

    Made by :func:`compare`; every parameter is stored as an attribute of the same name.

    Parameters
    ----------
    quantity : {"energy", "forces", "stress"}
        The quantity compared.
    unit : str
        ``"meV/atom"``, ``"eV/A"`` or ``"GPa"``: the unit of ``reference``,
        ``predicted`` and ``std``.
    reference : ndarray of shape (n_values,)
        Reference energies per atom, force components or Voigt stress components.
    predicted : ndarray of shape (n_values,)
        The predicted values, in the same order.
    std : ndarray of shape (n_values,) or None
        Predicted standard deviations, when the predictions have them.
    structure : ndarray of int of shape (n_values,)
        Index of the structure each value belongs to.
    config_type : ndarray of str of shape (n_values,)
        ``atoms.info["config_type"]`` of that structure, or ``"(none)"``.

    See Also
    --------
    compare : Build the comparisons of a data set.
    error_table : RMSE, MAE and calibration of comparisons.

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.metrics import Comparison
    >>> c = Comparison("energy", "meV/atom", np.zeros(2), np.array([3.0, -4.0]), None,
    ...                np.arange(2), np.array(["a", "b"]))
    >>> c.error
    array([ 3., -4.])
    """

    quantity: str
    unit: str
    reference: np.ndarray
    predicted: np.ndarray
    std: Optional[np.ndarray]
    structure: np.ndarray
    config_type: np.ndarray

    @property
    def error(self) -> np.ndarray:
        """Errors ``predicted - reference``, ndarray of shape (n_values,), in ``unit``.

        Examples
        --------
        >>> import numpy as np
        >>> from gapy.metrics import Comparison
        >>> c = Comparison("forces", "eV/A", np.array([0.1, 0.2]), np.array([0.3, 0.2]), None,
        ...                np.zeros(2, int), np.array(["bulk", "bulk"]))
        >>> c.error.round(3)
        array([0.2, 0. ])
        """
        return self.predicted - self.reference


def config_type_of(atoms: Atoms) -> str:
    """``atoms.info["config_type"]`` as a string, or ``"(none)"``.

    Parameters
    ----------
    atoms : ase.Atoms
        A structure.

    Returns
    -------
    str
        Its config_type; ``"(none)"`` when ``atoms.info`` has none (or it is ``None``).

    Examples
    --------
    >>> from gapy.metrics import config_type_of
    >>> from ase.build import bulk
    >>> atoms = bulk("Si")
    >>> config_type_of(atoms)
    '(none)'
    >>> atoms.info["config_type"] = "bulk"
    >>> config_type_of(atoms)
    'bulk'
    """
    value = atoms.info.get("config_type")
    return NO_CONFIG_TYPE if value is None else str(value)


def compare(
    frames: Sequence[Atoms],
    predictions: Sequence[dict],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    virial_key: str = "virial",
) -> Dict[str, Comparison]:
    """Pair the reference labels of ``frames`` with ``predictions``, in report units.

    Parameters
    ----------
    frames : sequence of ase.Atoms
        Structures with reference labels (read as :func:`gapy.labels.read_labels` does).
    predictions : sequence of dict
        One result of :meth:`GAPRegressor.predict_all` per structure (eV, eV/A,
        eV/A^3; ``*_std`` keys optional).
    energy_key : str, default="energy"
        Name of the energy label (eV).
    forces_key : str, default="forces"
        Name of the forces label (eV/A).
    stress_key : str, default="stress"
        Name of the stress label (eV/A^3).
    virial_key : str, default="virial"
        Name of the virial label (eV).

    Returns
    -------
    dict
        ``"energy"``, ``"forces"`` and ``"stress"`` :class:`Comparison` objects, each
        only if at least one structure has that label. Energies are per atom in
        meV/atom, forces in eV/A, stresses in GPa (from a stress label, or from a
        virial label of a structure periodic in all directions).

    Raises
    ------
    ValueError
        ``frames`` and ``predictions`` differ in length, or a prediction lacks a
        quantity the structure has a label for.
    gapy.StructureError
        A label has the wrong shape or is not finite.

    See Also
    --------
    error_table : RMSE, MAE and calibration of the comparisons.
    gapy.report.evaluate : Predict and compare in one call.

    Examples
    --------
    >>> from gapy.metrics import compare
    >>> from ase.build import bulk
    >>> from ase.calculators.singlepoint import SinglePointCalculator
    >>> atoms = bulk("Si")
    >>> atoms.calc = SinglePointCalculator(atoms, energy=-10.0)
    >>> comparisons = compare([atoms], [{"energy": -10.002}])
    >>> comparisons["energy"].unit, comparisons["energy"].error.round(6)
    ('meV/atom', array([-1.]))
    """
    if len(frames) != len(predictions):
        raise ValueError(f"{len(frames)} structures but {len(predictions)} predictions")
    collected = {quantity: {"reference": [], "predicted": [], "std": [], "structure": [], "config_type": []}
                 for quantity in UNITS}
    for k, (atoms, prediction) in enumerate(zip(frames, predictions)):
        labels = read_labels(atoms, k, energy_key, forces_key, stress_key, virial_key)
        n_atoms = len(atoms)
        pairs = {}
        if labels.energy is not None:
            pairs["energy"] = (labels.energy, "energy", 1000.0 / n_atoms)
        if labels.forces is not None:
            pairs["forces"] = (labels.forces, "forces", 1.0)
        if labels.virial is not None and atoms.pbc.all():  # a virial alone may come with a cluster
            pairs["stress"] = (stress_from_virial(labels.virial, atoms), "stress", EV_PER_A3_IN_GPA)
        for quantity, (reference, key, scale) in pairs.items():
            if key not in prediction:
                raise ValueError(f"structure {k}: the prediction has no {key!r} to compare with")
            reference = np.ravel(reference) * scale
            store = collected[quantity]
            store["reference"].append(reference)
            store["predicted"].append(np.ravel(prediction[key]) * scale)
            std = prediction.get(f"{key}_std")
            store["std"].append(None if std is None else np.ravel(std) * scale)
            store["structure"].append(np.full(reference.size, k))
            store["config_type"].append(np.full(reference.size, config_type_of(atoms), dtype=object))
    out = {}
    for quantity, store in collected.items():
        if not store["reference"]:
            continue
        stds = store["std"]
        out[quantity] = Comparison(
            quantity=quantity,
            unit=UNITS[quantity],
            reference=np.concatenate(store["reference"]),
            predicted=np.concatenate(store["predicted"]),
            std=None if any(s is None for s in stds) else np.concatenate(stds),
            structure=np.concatenate(store["structure"]),
            config_type=np.concatenate(store["config_type"]).astype(str),
        )
    return out


#: Range of the weight that :func:`noise_weight` fits: near 0 the stds of components that symmetry fixes
#: (no latent variance) would be zero.
NOISE_WEIGHT_RANGE = (1e-3, 1e3)


def noise_weight(error: np.ndarray, latent_std: np.ndarray, noise_std: np.ndarray) -> float:
    """The weight ``w`` of the noise in ``std^2 = a (latent^2 + w noise^2)`` most likely for ``error``.

    ``a`` is profiled out of the Gaussian likelihood. With ``std_noise`` a GAP's stds are
    nearly the fitted noise everywhere; on held-out data the latent stds often say better
    which structures are predicted well (mlearn Si: strained crystals 0.0025 eV/A off, AIMD
    frames 0.10, at force stds of 0.078 and 0.098 with the noise), and ``w`` weighs the two
    as the errors do (:meth:`gapy.GAPRegressor.calibrate`).

    Parameters
    ----------
    error, latent_std, noise_std : ndarray of shape (n_values,)
        Errors on held-out data, their predicted latent stds and the noise stds of their labels,
        in one unit.

    Returns
    -------
    float
        ``w`` within :data:`NOISE_WEIGHT_RANGE`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.uniform(0.01, 1.0, 2000)
    >>> errors = rng.normal(size=2000) * 2.0 * latent  # errors follow the latent stds alone
    >>> round(noise_weight(errors, latent, np.full(2000, 0.5)), 3)
    0.001
    >>> noise_weight(rng.normal(size=2000) * 0.5, latent, np.full(2000, 0.5)) > 10  # the noise alone
    True
    """
    from scipy.optimize import minimize_scalar

    latent, noise = np.square(latent_std), np.square(noise_std)
    keep = (latent + noise) > 0
    error, latent, noise = np.asarray(error)[keep], latent[keep], noise[keep]

    def profile(log_w: float) -> float:
        variance = latent + np.exp(log_w) * noise
        return float(np.sum(np.log(variance)) + len(error) * np.log(np.mean(error**2 / variance)))

    low, high = np.log(NOISE_WEIGHT_RANGE)
    return float(np.exp(minimize_scalar(profile, bounds=(low, high), method="bounded",
                                        options={"xatol": 1e-3}).x))


def standardized_errors(comparison: Comparison, mask: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """``error / std`` of the values (under ``mask``) predicted with some variance.

    Values with no predicted variance at all (forces fixed by symmetry; std below 1e-9
    of the largest) say nothing about calibration and are left out.

    Parameters
    ----------
    comparison : Comparison
        Values of one quantity, from :func:`compare`.
    mask : ndarray of bool of shape (n_values,), optional
        Values to keep (e.g. one config_type); by default all.

    Returns
    -------
    ndarray of shape (n_uncertain,) or None
        Standardised errors (dimensionless; standard normal for calibrated stds);
        ``None`` when the predictions have no stds.

    References
    ----------
    F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
    uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
    906 (2019).

    Examples
    --------
    >>> from gapy.metrics import Comparison, standardized_errors
    >>> import numpy as np
    >>> c = Comparison("forces", "eV/A", np.zeros(3), np.array([0.1, -0.4, 0.0]),
    ...                np.array([0.1, 0.2, 0.0]), np.zeros(3, int), np.array(["a"] * 3))
    >>> standardized_errors(c)  # the value with std 0 is left out
    array([ 1., -2.])
    """
    if comparison.std is None:
        return None
    error, std = comparison.error, comparison.std
    if mask is not None:
        error, std = error[mask], std[mask]
    uncertain = std > 1e-9 * comparison.std.max()
    return error[uncertain] / std[uncertain]


def largest_errors(comparison: Comparison, n: int = 3) -> List[Tuple[int, float, Optional[float]]]:
    """The ``n`` structures with the largest errors, largest first.

    A structure's error is its energy error (predicted minus reference), or the RMS of
    its force or stress components' errors; an unseen kind of structure (a surface
    reconstruction no training slab has) shows here before it shows in the RMSE.

    Parameters
    ----------
    comparison : Comparison
        Values of one quantity, from :func:`compare`.
    n : int, default=3
        How many structures.

    Returns
    -------
    list of tuple
        ``(structure, error, z)``: the structure's position in the compared frames, its
        error in ``comparison.unit``, and the RMS of its errors over their predicted stds
        (``None`` without stds).

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.metrics import Comparison, largest_errors
    >>> c = Comparison("energy", "meV/atom", np.zeros(3), np.array([1.0, -24.0, 2.0]),
    ...                np.array([5.0, 5.0, 5.0]), np.arange(3), np.array(["a"] * 3))
    >>> largest_errors(c, n=1)
    [(1, -24.0, 4.8)]
    """
    error = comparison.error
    structures, inverse = np.unique(comparison.structure, return_inverse=True)
    if comparison.quantity == "energy":  # one value per structure
        values = np.zeros(len(structures))
        values[inverse] = error
    else:
        values = np.sqrt(np.bincount(inverse, error**2) / np.bincount(inverse))
    rows = []
    for j in np.argsort(-np.abs(values), kind="stable")[:n]:  # the stds of these few structures only
        z = standardized_errors(comparison, inverse == j)
        rows.append((int(structures[j]), float(values[j]),
                     float(np.sqrt(np.mean(z**2))) if z is not None and len(z) else None))
    return rows


def error_table(comparisons: Dict[str, Comparison]) -> List[dict]:
    """RMSE and MAE of each quantity over all structures and per config_type.

    Where the predictions have standard deviations, two calibration measures say how
    honest they are: ``z_rms``, the RMS of ``error / std`` (1 for calibrated stds, above
    1 when the model is overconfident), and ``within_2std``, the fraction of errors
    within two standard deviations (0.954 for calibrated Gaussian errors). Both leave out
    values predicted with no variance at all (forces fixed by symmetry) and are ``None``
    without stds.

    Parameters
    ----------
    comparisons : dict of str to Comparison
        E.g. from :func:`compare`.

    Returns
    -------
    list of dict
        One row per quantity and group (``"all"`` first, then config_types in sorted
        order) with the keys of :data:`COLUMNS`; ``rmse`` and ``mae`` in ``unit``.

    Examples
    --------
    >>> from gapy.metrics import Comparison, error_table
    >>> import numpy as np
    >>> c = Comparison("energy", "meV/atom", np.zeros(2), np.array([3.0, -4.0]), None,
    ...                np.arange(2), np.array(["a", "b"]))
    >>> [(row["config_type"], round(row["rmse"], 3), row["mae"]) for row in error_table({"energy": c})]
    [('all', 3.536, 3.5), ('a', 3.0, 3.0), ('b', 4.0, 4.0)]
    """
    rows = []
    for quantity, comparison in comparisons.items():
        groups = [ALL] + sorted(set(comparison.config_type.tolist()))
        for group in groups:
            mask = np.ones(comparison.error.size, bool) if group == ALL else comparison.config_type == group
            error = comparison.error[mask]
            z_rms = within = None
            z = standardized_errors(comparison, mask)
            if z is not None and z.size:
                z_rms = float(np.sqrt(np.mean(z**2)))
                within = float(np.mean(np.abs(z) <= 2.0))
            rows.append({
                "quantity": quantity,
                "unit": comparison.unit,
                "config_type": group,
                "n_structures": int(np.unique(comparison.structure[mask]).size),
                "n_values": int(error.size),
                "rmse": float(np.sqrt(np.mean(error**2))),
                "mae": float(np.mean(np.abs(error))),
                "z_rms": z_rms,
                "within_2std": within,
            })
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """The rows of :func:`error_table` as an aligned text table.

    The calibration columns (``z_rms``, ``within_2std``) appear when some row has them.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`error_table`.

    Returns
    -------
    str
        A header line, a rule and one line per row (no trailing newline); RMSE and MAE
        with 4 significant digits, in each row's unit.

    Examples
    --------
    >>> from gapy.metrics import Comparison, error_table, format_table
    >>> import numpy as np
    >>> c = Comparison("energy", "meV/atom", np.zeros(2), np.array([3.0, -4.0]), None,
    ...                np.arange(2), np.array(["a", "a"]))
    >>> print(format_table(error_table({"energy": c})))
    quantity  unit      config_type  structures  values   RMSE  MAE
    --------  --------  -----------  ----------  ------  -----  ---
    energy    meV/atom  all                   2       2  3.536  3.5
    energy    meV/atom  a                     2       2  3.536  3.5
    """
    header = ["quantity", "unit", "config_type", "structures", "values", "RMSE", "MAE"]
    body = [
        [row["quantity"], row["unit"], row["config_type"], str(row["n_structures"]),
         str(row["n_values"]), f"{row['rmse']:.4g}", f"{row['mae']:.4g}"]
        for row in rows
    ]
    if any(row.get("z_rms") is not None for row in rows):
        header += ["RMS(err/std)", "|err|<2std"]
        for cells, row in zip(body, rows):
            calibrated = row.get("z_rms") is not None
            cells += [f"{row['z_rms']:.3g}" if calibrated else "-",
                      f"{row['within_2std']:.1%}" if calibrated else "-"]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    numeric = [False, False, False] + [True] * (len(header) - 3)

    def line(cells):
        return "  ".join(c.rjust(w) if right else c.ljust(w) for c, w, right in zip(cells, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(cells) for cells in body])


def write_csv(rows: Sequence[dict], path: Union[str, Path]) -> None:
    """Write the rows of :func:`error_table` as CSV with a header line.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`error_table`; the columns are :data:`COLUMNS`, in that order
        (missing calibration values are empty).
    path : str or pathlib.Path
        CSV file to write (overwritten).

    Examples
    --------
    >>> from gapy.metrics import Comparison, error_table, write_csv
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> c = Comparison("energy", "meV/atom", np.zeros(1), np.ones(1), None,
    ...                np.arange(1), np.array(["a"]))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_csv(error_table({"energy": c}), Path(tmp) / "errors.csv")
    ...     print((Path(tmp) / "errors.csv").read_text().strip())
    quantity,unit,config_type,n_structures,n_values,rmse,mae,z_rms,within_2std
    energy,meV/atom,all,1,1,1.0,1.0,,
    energy,meV/atom,a,1,1,1.0,1.0,,
    """
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in COLUMNS})


def write_json(report: dict, path: Union[str, Path]) -> None:
    """Write a report (a dict of JSON types, e.g. with ``"errors": error_table(...)``).

    Parameters
    ----------
    report : dict
        JSON-serialisable content (``None`` becomes ``null``).
    path : str or pathlib.Path
        JSON file to write (overwritten), indented by 2 spaces with a final newline.

    Raises
    ------
    TypeError
        ``report`` holds a value JSON cannot represent (e.g. a numpy array).

    Examples
    --------
    >>> from gapy.metrics import write_json
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_json({"model": "gap.npz", "errors": []}, Path(tmp) / "report.json")
    ...     json.loads((Path(tmp) / "report.json").read_text())
    {'model': 'gap.npz', 'errors': []}
    """
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
