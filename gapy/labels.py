"""Read and check the DFT labels (energy, forces, stress/virial) of training structures."""

import hashlib
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
from ase import Atoms, units

from .exceptions import StructureError
from .gp.design import voigt
from .structures import structure_name

#: 1 eV/A^3 in GPa.
EV_PER_A3_IN_GPA = 1.0 / units.GPa
#: Stresses above this (eV/A^3, i.e. 160 GPa) are most likely in the wrong unit.
MAX_PLAUSIBLE_STRESS = 1.0
#: A 3x3 stress or virial whose ``|T - T^T|`` exceeds this fraction of its largest component
#: (plus 1e-4) is refused: symmetric up to numerical noise, or not a stress.
MAX_ASYMMETRY = 0.01
#: Energies per atom this far (eV) from the others' are outliers (:func:`outlying_energies`) ...
OUTLIER_ENERGY = 100.0
#: ... or this many median absolute deviations, when larger ...
OUTLIER_MADS = 1000.0
#: ... among at least this many structures with energies (or forces).
OUTLIER_MIN_STRUCTURES = 5
#: A structure whose force RMS is this many times the median structure's (:func:`outlying_forces`) ...
OUTLIER_FORCE_RATIO = 100.0
#: ... and above this (eV/A) is an outlier.
OUTLIER_FORCE = 10.0
#: Force RMS (eV/A) below which forces are all zero: crystals at equilibrium (perfect, or only strained),
#: below any DFT relaxation threshold. Such forces give no energy scale (:func:`gapy.recommend`).
ZERO_FORCES = 1e-4


class StressUnitWarning(RuntimeWarning):
    """A stress label so large that it is probably in GPa or kbar rather than eV/A^3.

    Examples
    --------
    >>> import warnings
    >>> from gapy.labels import StressUnitWarning
    >>> warnings.filterwarnings("ignore", category=StressUnitWarning)  # doctest: +SKIP
    """


class LabelConflictWarning(RuntimeWarning):
    """A label given twice with different values: :func:`read_labels` uses the first, and says so.

    Twice: in ``atoms.calc`` and in ``atoms.info``/``arrays``, or as a stress and a virial.

    Examples
    --------
    >>> import warnings
    >>> from gapy.labels import LabelConflictWarning
    >>> warnings.filterwarnings("ignore", category=LabelConflictWarning)  # doctest: +SKIP
    """


class EnergyOutlierWarning(RuntimeWarning):
    """Energies per atom far from all the others' (:func:`outlying_energies`): a unit or parsing slip.

    Examples
    --------
    >>> import warnings
    >>> from gapy.labels import EnergyOutlierWarning
    >>> warnings.filterwarnings("ignore", category=EnergyOutlierWarning)  # doctest: +SKIP
    """


class ForceOutlierWarning(RuntimeWarning):
    """Forces far larger than all the others' (:func:`outlying_forces`): a unit or parsing slip.

    Examples
    --------
    >>> import warnings
    >>> from gapy.labels import ForceOutlierWarning
    >>> warnings.filterwarnings("ignore", category=ForceOutlierWarning)  # doctest: +SKIP
    """


class RepeatedStructureWarning(RuntimeWarning):
    """Training structures with the same species, positions and cell (:func:`repeated_structures`).

    Examples
    --------
    >>> import warnings
    >>> from gapy.labels import RepeatedStructureWarning
    >>> warnings.filterwarnings("ignore", category=RepeatedStructureWarning)  # doctest: +SKIP
    """


class EnergyResidualWarning(RuntimeWarning):
    """Training energies the fitted model misses far more than the others' (a label slip), or all of them.

    Examples
    --------
    >>> import warnings
    >>> from gapy.labels import EnergyResidualWarning
    >>> warnings.filterwarnings("ignore", category=EnergyResidualWarning)  # doctest: +SKIP
    """


class CloseAtomsWarning(RuntimeWarning):
    """Training structures with atoms far closer than a bond (a broken geometry, or short-range data on purpose).

    Examples
    --------
    >>> import warnings
    >>> from gapy.labels import CloseAtomsWarning
    >>> warnings.filterwarnings("ignore", category=CloseAtomsWarning)  # doctest: +SKIP
    """


@dataclass
class Labels:
    """Labels of one structure; ``None`` where a label is missing.

    Made by :func:`read_labels`; every parameter is stored as an attribute of the same
    name.

    Parameters
    ----------
    energy : float or None
        Total energy (eV).
    forces : ndarray of shape (n_atoms, 3) or None
        Forces (eV/A).
    virial : ndarray of shape (6,) or None
        Virial ``-stress * volume`` (eV), Voigt order (xx, yy, zz, yz, xz, xy).
    force_weights : ndarray of shape (n_atoms,) or None
        Non-negative weight of each atom's force (from ``atoms.arrays``).
    """

    energy: Optional[float] = None
    forces: Optional[np.ndarray] = None
    virial: Optional[np.ndarray] = None
    force_weights: Optional[np.ndarray] = None


def _calculator_result(atoms: Atoms, key: str):
    calc = atoms.calc
    if calc is None:
        return None
    return getattr(calc, "results", {}).get(key)


def _finite(value, name: str, field: str, shape=None) -> np.ndarray:
    if np.asarray(value).dtype == bool:  # extxyz reads energy=T as True: not 1.0 eV
        raise StructureError(f"{name}: field '{field}' is a boolean ({value!r}), not a number")
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise StructureError(f"{name}: field '{field}' is not a number ({value!r})") from None
    if shape is not None and array.shape != shape:
        raise StructureError(f"{name}: field '{field}' has shape {array.shape}, expected {shape}")
    if not np.all(np.isfinite(array)):
        raise StructureError(f"{name}: field '{field}' contains NaN or inf")
    return array


def _warn_if_different(atoms: Atoms, name: str, field: str, used: np.ndarray, other, other_place: str,
                       used_place: Optional[str] = None) -> None:
    """Warn when ``other`` (the same label found a second time) differs from the ``used`` value."""
    if other is None or (used_place is None and _calculator_result(atoms, field) is None):
        return  # read from other_place itself: nothing else to compare with
    used_place = used_place or "atoms.calc.results"
    try:
        other = np.asarray(other, dtype=float)
        if other.shape in ((3, 3), (9,)) and np.shape(used) == (6,):
            other = voigt(other.reshape(3, 3))
        if other.shape != np.shape(used):
            difference = f"has shape {other.shape} in {other_place}, {np.shape(used)} in {used_place}"
        elif np.allclose(other, used, rtol=1e-8, atol=1e-6):
            return
        elif other.ndim == 0:
            difference = f"is {float(other):.10g} in {other_place} but {float(used):.10g} in {used_place}"
        else:
            difference = (f"differs between {other_place} and {used_place} by up to "
                          f"{np.abs(other - used).max():.6g}")
    except (TypeError, ValueError):
        difference = f"is {other!r} in {other_place} but a number in {used_place}"
    warnings.warn(f"{name}: field '{field}' {difference}; gapy uses {used_place} (see read_labels): remove the "
                  "wrong one", LabelConflictWarning, stacklevel=3)


def _symmetric_voigt(tensor: np.ndarray, name: str, field: str) -> np.ndarray:
    """Voigt vector of a 3x3 (or 9) stress or virial, refused unless it is symmetric.

    A clearly asymmetric tensor is not a stress: another layout (a Voigt vector padded
    to 9, a different order) that symmetrising would turn into wrong numbers.
    """
    tensor = tensor.reshape(3, 3)
    asymmetry = np.abs(tensor - tensor.T).max()
    if asymmetry > MAX_ASYMMETRY * np.abs(tensor).max() + 1e-4:
        raise StructureError(
            f"{name}: field '{field}' is not a symmetric 3x3 tensor (|T - T^T| up to {asymmetry:.3g}, components "
            f"up to {np.abs(tensor).max():.3g}): stress and virial are symmetric; is it in another layout? "
            f"(gapy reads 3x3, 9 values row by row, or Voigt xx yy zz yz xz xy)"
        )
    return voigt(tensor)


def read_labels(
    atoms: Atoms,
    index: Optional[int] = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    virial_key: str = "virial",
    force_weights_key: Optional[str] = None,
    warn: bool = True,
) -> Labels:
    """Labels from ``atoms.calc`` results, else from ``atoms.info`` / ``atoms.arrays``.

    The stress (eV/A^3, ASE sign: positive is tensile; 6 Voigt or 3x3) is converted to
    the virial ``-stress * volume``; a virial given directly (eV, 3x3 or 9 or Voigt 6, as
    QUIP's ``virial``) is used as it is. With ``force_weights_key``, per-atom force
    weights are read from ``atoms.arrays`` when present.

    Parameters
    ----------
    atoms : ase.Atoms
        A labelled structure.
    index : int, optional
        Its place in the data set, for error messages.
    energy_key : str, default="energy"
        Total energy (eV): ``atoms.calc.results`` or ``atoms.info``.
    forces_key : str, default="forces"
        Forces (eV/A): ``atoms.calc.results`` or ``atoms.arrays``.
    stress_key : str, default="stress"
        Stress (eV/A^3): ``atoms.calc.results`` or ``atoms.info``; takes precedence over
        the virial.
    virial_key : str, default="virial"
        Virial (eV): ``atoms.info``.
    force_weights_key : str, optional
        Per-atom force weights in ``atoms.arrays``; not read when ``None``.
    warn : bool, default=True
        Give the warnings below; False for a second reading of the same structure.

    Returns
    -------
    Labels
        The labels found; the virial in Voigt order (eV), from the stress if given.

    Raises
    ------
    TypeError
        ``atoms`` is not an ``ase.Atoms``.
    gapy.StructureError
        A label that is not a number (a boolean included), of the wrong shape, NaN or
        inf, a 3x3 stress or virial that is not symmetric (:data:`MAX_ASYMMETRY`), a
        stress on a non-periodic structure or with a zero-volume cell, forces in
        ``atoms.info`` (a value of the structure, not of its atoms), or a negative force
        weight.

    Warns
    -----
    StressUnitWarning
        A stress component above 1 eV/A^3 (160 GPa): probably given in GPa or kbar (a
        ``RuntimeWarning``).
    LabelConflictWarning
        A label given twice with different values: in ``atoms.calc.results`` and in
        ``atoms.info``/``atoms.arrays`` (the calculator's is used), or as a stress and a
        virial (the stress is used).

    Examples
    --------
    >>> from gapy.labels import read_labels
    >>> from ase.build import bulk
    >>> from ase.calculators.singlepoint import SinglePointCalculator
    >>> atoms = bulk("Si")
    >>> atoms.calc = SinglePointCalculator(atoms, energy=-10.0, stress=[0.01, 0.01, 0.01, 0, 0, 0])
    >>> labels = read_labels(atoms)
    >>> labels.energy, labels.forces, labels.virial[:3].round(3)  # virial = -stress * 40.03 A^3
    (-10.0, None, array([-0.4, -0.4, -0.4]))
    """
    name = structure_name(atoms, index)
    labels = Labels()
    compare = _warn_if_different if warn else (lambda *_: None)  # a label given twice
    energy = _calculator_result(atoms, energy_key)
    if energy is None:
        energy = atoms.info.get(energy_key)
    if energy is not None:
        labels.energy = float(_finite(energy, name, energy_key, shape=()))
        compare(atoms, name, energy_key, labels.energy, atoms.info.get(energy_key), "atoms.info")
    forces = _calculator_result(atoms, forces_key)
    if forces is None:
        forces = atoms.arrays.get(forces_key)
    if forces is None and forces_key in atoms.info:
        raise StructureError(f"{name}: field '{forces_key}' is in atoms.info ({np.size(atoms.info[forces_key])} "
                             "values for the structure), not an array of the atoms: in extended XYZ, forces are "
                             f"columns of the atom lines (Properties=species:S:1:pos:R:3:{forces_key}:R:3)")
    if forces is not None:
        labels.forces = _finite(forces, name, forces_key, shape=(len(atoms), 3))
        compare(atoms, name, forces_key, labels.forces, atoms.arrays.get(forces_key), "atoms.arrays")
    if force_weights_key is not None and force_weights_key in atoms.arrays:
        weights = _finite(atoms.arrays[force_weights_key], name, force_weights_key, shape=(len(atoms),))
        if np.any(weights < 0):
            raise StructureError(f"{name}: field '{force_weights_key}' has negative weights "
                                 f"(atoms {np.flatnonzero(weights < 0)[:10].tolist()})")
        labels.force_weights = weights
    stress = _calculator_result(atoms, stress_key)
    if stress is None:
        stress = atoms.info.get(stress_key)
    virial = atoms.info.get(virial_key)
    if stress is not None:
        stress = _finite(stress, name, stress_key)
        if stress.shape in ((3, 3), (9,)):
            stress = _symmetric_voigt(stress, name, stress_key)
        stress = _finite(stress, name, stress_key, shape=(6,))
        if warn and np.abs(stress).max() > MAX_PLAUSIBLE_STRESS:
            warnings.warn(
                f"{name}: field '{stress_key}' reaches {np.abs(stress).max():.3g} eV/A^3 "
                f"({np.abs(stress).max() * EV_PER_A3_IN_GPA:.3g} GPa): is it in GPa or kbar? gapy reads stresses "
                "in eV/A^3 (ASE units; 1 eV/A^3 = 160.2 GPa)", StressUnitWarning, stacklevel=2,
            )
        compare(atoms, name, stress_key, stress, atoms.info.get(stress_key), "atoms.info")
        labels.virial = -stress * _volume(atoms, name, stress_key)
        if virial is not None:
            compare(atoms, name, virial_key, labels.virial, virial, "atoms.info",
                               f"-{stress_key} * volume")
    elif virial is not None:
        virial = _finite(virial, name, virial_key)
        if virial.shape in ((3, 3), (9,)):
            virial = _symmetric_voigt(virial, name, virial_key)
        labels.virial = _finite(virial, name, virial_key, shape=(6,))
    return labels


def outlying_energies(energies: Sequence[float], compositions: Sequence[Sequence[float]]) -> np.ndarray:
    """Structures whose energy per atom lies far from all the others' (a unit or parsing slip).

    The rule cannot fire on physical data. Energies per atom of legitimate structures
    differ by a few eV (isolated atoms), tens of eV (dimers at short distance), and by
    up to 1e5 eV between species in all-electron codes. So each species first gets a
    reference energy per atom, fitted to all structures by least absolute deviations
    (robust to the outliers themselves); a structure is an outlier when its residual
    energy per atom lies more than ``max(100 eV, 1000 x MAD)`` from the median of the
    residuals (MAD: their median absolute deviation from the median). Nothing is
    flagged among fewer than 5 structures, nor the only structure with some species
    (that species' reference energy absorbs its error).

    Parameters
    ----------
    energies : sequence of float
        Total energy of each structure (eV).
    compositions : sequence of sequence of float
        Atoms of each species in each structure, shape (n_structures, n_species).

    Returns
    -------
    ndarray of int
        Positions in ``energies`` of the outliers, largest deviation first.

    Examples
    --------
    >>> from gapy.labels import outlying_energies
    >>> energies = [-29.1, -29.0, -14.4, 1e6, -28.9, -3.0]  # one energy in the wrong unit
    >>> compositions = [[8], [8], [4], [8], [8], [1]]
    >>> outlying_energies(energies, compositions)
    array([3])
    """
    energies = np.asarray(energies, dtype=float)
    if len(energies) < OUTLIER_MIN_STRUCTURES:
        return np.zeros(0, dtype=int)
    compositions = np.asarray(compositions, dtype=float)
    n_atoms = compositions.sum(axis=1)
    per_atom, fractions = energies / n_atoms, compositions / n_atoms[:, None]
    weights = np.ones(len(energies))
    for _ in range(50):  # least absolute deviations by iteratively reweighted least squares
        root = np.sqrt(weights)
        reference = np.linalg.lstsq(fractions * root[:, None], per_atom * root, rcond=None)[0]
        residual = per_atom - fractions @ reference
        weights = 1.0 / np.maximum(np.abs(residual), 1e-6)
    deviation = np.abs(residual - np.median(residual))
    far = np.flatnonzero(deviation > max(OUTLIER_ENERGY, OUTLIER_MADS * np.median(deviation)))
    return far[np.argsort(-deviation[far])]


def outlier_message(field: str, names: Sequence[str], energies: Sequence[float], n_atoms: Sequence[int],
                    outliers: Sequence[int]) -> str:
    """The warning of :func:`outlying_energies`' structures, named, with their energies per atom.

    Parameters
    ----------
    field : str
        Name of the energy label.
    names : sequence of str
        Name of each structure (:func:`gapy.structures.structure_name`).
    energies, n_atoms : sequence
        Energy (eV) and number of atoms of each structure.
    outliers : sequence of int
        Positions of the outliers, as :func:`outlying_energies` returns them.

    Returns
    -------
    str

    Examples
    --------
    >>> from gapy.labels import outlier_message
    >>> outlier_message("energy", ["structure 0 (Cu4)", "structure 1 (Cu4)"], [-14.0, 4e5], [4, 4], [1])[:62]
    "field 'energy' of 1 structure lies far from the others' (media"
    """
    per_atom = np.asarray(energies, dtype=float) / np.asarray(n_atoms, dtype=float)
    named = [f"{names[k]}: {per_atom[k]:.6g} eV/atom" for k in outliers[:5]]
    return (f"field '{field}' of {len(outliers)} structure{'s' if len(outliers) > 1 else ''} lies far from the "
            f"others' (median {np.median(per_atom):.6g} eV/atom; more than {OUTLIER_ENERGY:g} eV/atom and "
            f"{OUTLIER_MADS:g} median absolute deviations away, after per-species reference energies): "
            f"{'; '.join(named)}{' ...' if len(outliers) > 5 else ''}. A unit or parsing slip? One such energy "
            "spoils the whole fit: correct or remove it")


def outlying_forces(rms: Sequence[float]) -> np.ndarray:
    """Structures whose forces are far larger than the others' (a unit or parsing slip).

    A structure is an outlier when the root mean square of its force components exceeds
    both :data:`OUTLIER_FORCE` (10 eV/A) and :data:`OUTLIER_FORCE_RATIO` (100) times the
    median over structures; nothing is flagged among fewer than 5 structures. Forces in
    meV/A among forces in eV/A are 1000 times too large; physical data stay within a
    factor 10 or so of their median (mlearn Si: 2.3), except atoms pressed far closer
    than a bond (a dimer at a fraction of its bond length), which the warning mentions.
    One such structure sets the force noise and the kernel scale of the whole fit (EMT
    Cu with one structure's forces x 1000: test forces 41 eV/A off instead of 0.005).

    Parameters
    ----------
    rms : sequence of float
        Force RMS of each structure with forces (eV/A).

    Returns
    -------
    ndarray of int
        Positions in ``rms`` of the outliers, largest first.

    Examples
    --------
    >>> from gapy.labels import outlying_forces
    >>> outlying_forces([0.4, 0.5, 450.0, 0.3, 0.6, 0.0])  # one structure in meV/A
    array([2])
    """
    rms = np.asarray(rms, dtype=float)
    if len(rms) < OUTLIER_MIN_STRUCTURES:
        return np.zeros(0, dtype=int)
    far = np.flatnonzero(rms > max(OUTLIER_FORCE, OUTLIER_FORCE_RATIO * np.median(rms)))
    return far[np.argsort(-rms[far])]


def force_outlier_message(field: str, names: Sequence[str], rms: Sequence[float], outliers: Sequence[int]) -> str:
    """The warning of :func:`outlying_forces`' structures, named, with their force RMS.

    Parameters
    ----------
    field : str
        Name of the forces label.
    names : sequence of str
        Name of each structure with forces (:func:`gapy.structures.structure_name`).
    rms : sequence of float
        Force RMS of each of them (eV/A).
    outliers : sequence of int
        Positions of the outliers, as :func:`outlying_forces` returns them.

    Returns
    -------
    str

    Examples
    --------
    >>> from gapy.labels import force_outlier_message
    >>> force_outlier_message("forces", [f"structure {k}" for k in range(5)], [0.4, 0.5, 450, 0.3, 0.6], [2])[:60]
    "field 'forces' of 1 structure is far larger than the others'"
    """
    rms = np.asarray(rms, dtype=float)
    named = [f"{names[k]}: RMS {rms[k]:.4g} eV/A" for k in outliers[:5]]
    return (f"field '{field}' of {len(outliers)} structure{'s' if len(outliers) > 1 else ''} is far larger than the "
            f"others' (median RMS {np.median(rms):.4g} eV/A; more than {OUTLIER_FORCE_RATIO:g} x that and "
            f"{OUTLIER_FORCE:g} eV/A): {'; '.join(named)}{' ...' if len(outliers) > 5 else ''}. A unit or parsing "
            "slip (meV/A among eV/A)? One such structure sets the force noise and kernel scale of the whole fit: "
            "correct or remove it (atoms pressed far closer than a bond can have such forces)")


#: Decimals (of eV, eV/A) to which labels are compared for repeats: two calculations of one
#: structure that agree to round-off (1e-11 eV) are copies, not calculations that disagree.
LABEL_DECIMALS = 6


def digest(*values) -> str:
    """A short fingerprint of arrays and numbers (``None`` included), equal only for equal values.

    Parameters
    ----------
    *values : array-like or None
        What to fingerprint: a structure's numbers, positions, cell and pbc; or its labels.

    Returns
    -------
    str

    Examples
    --------
    >>> from gapy.labels import digest
    >>> digest([1.0, 2.0], None) == digest([1.0, 2.0], None), digest(1.0) == digest(1.0 + 1e-12)
    (True, False)
    """
    hasher = hashlib.blake2b(digest_size=16)
    for value in values:
        hasher.update(b"None" if value is None else np.ascontiguousarray(value, dtype=float).tobytes() + b"|")
    return hasher.hexdigest()


def geometry_digest(atoms: Atoms) -> str:
    """:func:`digest` of a structure's species, positions, cell and pbc.

    Positions and cell are rounded to :data:`LABEL_DECIMALS`, as files write them: equal
    for the same structure read from any file.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from gapy.labels import geometry_digest
    >>> atoms = bulk("Cu", cubic=True)
    >>> moved = atoms.copy()
    >>> moved.positions += 1e-9
    >>> geometry_digest(atoms) == geometry_digest(moved), geometry_digest(atoms) == geometry_digest(bulk("Cu"))
    (True, False)
    """
    return digest(atoms.numbers, *(np.round(array, LABEL_DECIMALS) + 0.0  # (+0.0: no -0.0)
                                   for array in (atoms.positions, atoms.cell.array)), atoms.pbc)


def repeated_structures(names: Sequence[str], geometries: Sequence[str], labels: Sequence[str],
                        energies_per_atom: Sequence[Optional[float]]) -> Optional[str]:
    """What to say of structures that repeat another's species, positions and cell, or ``None``.

    A copy with the same labels counts as another observation: the fit weighs the
    structure as many times as it appears, and the evidence takes the copies' exact
    agreement for small noise (EMT Cu, one structure 10 times: every sigma at the lower
    bound of its search). The same geometry with different labels is two calculations
    that disagree (other DFT settings, a sign or unit slip in one of them): the evidence
    takes the difference for noise.

    Parameters
    ----------
    names : sequence of str
        Name of each structure (:func:`gapy.structures.structure_name`).
    geometries, labels : sequence of str
        :func:`digest` of each structure's numbers, positions, cell and pbc, and of its labels.
    energies_per_atom : sequence of float or None
        Energy label per atom of each structure (eV/atom), ``None`` where missing.

    Returns
    -------
    str or None
        The message naming the first repeats of each kind; ``None`` when no geometry repeats.

    Examples
    --------
    >>> from gapy.labels import repeated_structures
    >>> names = [f"structure {k} (Cu4)" for k in range(4)]
    >>> print(repeated_structures(names, ["a", "b", "a", "a"], ["x", "y", "x", "z"], [-3.5, -3.4, -3.5, -3.0]))
    ... # doctest: +NORMALIZE_WHITESPACE
    1 structure repeats another's species, positions, cell and labels (structure 2 (Cu4) = structure 0 (Cu4)): each
    copy counts as one more observation, so the fit weighs it more and the evidence takes the copies' agreement for
    small noise; remove the copies (give weights with sample_weight or config_type_sigma). 1 structure has the positions
    of another but different labels (structure 3 (Cu4) vs structure 0 (Cu4): energies differ by up to 0.5 eV/atom): two
    calculations that disagree (other settings, a sign or unit slip)? The evidence takes the difference for noise
    """
    first: Dict[str, int] = {}
    copies, conflicts = [], []  # (repeat, first) pairs
    for k, geometry in enumerate(geometries):
        j = first.setdefault(geometry, k)
        if j != k:
            (copies if labels[k] == labels[j] else conflicts).append((k, j))
    if not copies and not conflicts:
        return None

    def listed(pairs, joiner):
        text = ", ".join(f"{names[k]} {joiner} {names[j]}" for k, j in pairs[:3])
        return text + (" ..." if len(pairs) > 3 else "")

    parts = []
    if copies:
        parts.append(f"{len(copies)} structure{' repeats' if len(copies) == 1 else 's repeat'} another's species, "
                     f"positions, cell and labels ({listed(copies, '=')}): each copy counts as one more observation, "
                     "so the fit weighs it more and the evidence takes the copies' agreement for small noise; remove "
                     "the copies (give weights with sample_weight or config_type_sigma)")
    if conflicts:
        gaps = [abs(energies_per_atom[k] - energies_per_atom[j]) for k, j in conflicts
                if energies_per_atom[k] is not None and energies_per_atom[j] is not None]
        gap = (f": energies differ by up to {max(gaps):.4g} eV/atom" if gaps and max(gaps) > 0
               else ": their forces or stress differ")
        parts.append(f"{len(conflicts)} structure{' has' if len(conflicts) == 1 else 's have'} the positions of "
                     f"another but different labels ({listed(conflicts, 'vs')}{gap}): two calculations that disagree "
                     "(other settings, a sign or unit slip)? The evidence takes the difference for noise")
    return ". ".join(parts)


def label_keys(atoms: Atoms) -> str:
    """The names a structure carries that could be labels, for "label not found" messages.

    Parameters
    ----------
    atoms : ase.Atoms
        A structure.

    Returns
    -------
    str
        Its ``atoms.info`` keys, ``atoms.arrays`` names (without ``numbers`` and
        ``positions``) and calculator results, as the error of a fit without a label
        lists them.

    Examples
    --------
    >>> from gapy.labels import label_keys
    >>> from ase.build import bulk
    >>> atoms = bulk("Cu")
    >>> atoms.info["dft_energy"] = -3.5
    >>> label_keys(atoms)
    "info keys ['dft_energy'], arrays [] and calculator results []"
    """
    arrays = sorted(name for name in atoms.arrays if name not in ("numbers", "positions"))
    results = sorted(getattr(atoms.calc, "results", None) or {})
    return f"info keys {sorted(atoms.info)}, arrays {arrays} and calculator results {results}"


#: The noise parameter of each label kind (:class:`~gapy.GAPRegressor`): None leaves that kind unfitted.
SIGMA_NAMES = {"energy": "sigma_energy", "forces": "sigma_force", "virial": "sigma_virial"}


def label_fields(energy_key: str, forces_key: str, stress_key: str, virial_key: str) -> Dict[str, str]:
    """How messages name the field each label kind is read from.

    Examples
    --------
    >>> from gapy.labels import label_fields
    >>> label_fields("energy", "forces", "stress", "virial")["virial"]
    "'stress' or 'virial'"
    """
    return {"energy": f"'{energy_key}'", "forces": f"'{forces_key}'", "virial": f"'{stress_key}' or '{virial_key}'"}


#: Words in the names of labels kept under other keys (QUIP's ``force``, ``REF_energy``, ``dft_virial``) ...
LABEL_WORDS = {"energy": ("energy",), "forces": ("force",), "virial": ("stress", "virial")}
#: ... and in names that are not labels (``forces_std``, ``force_weights``, a DFT ``energy_cutoff``).
NOT_LABEL_WORDS = ("_std", "weight", "cutoff", "tol", "conv", "smear")


def lookalike_labels(atoms: Atoms, kind: str) -> List[str]:
    """Names in ``atoms`` that look like labels of ``kind`` kept under another key.

    Parameters
    ----------
    atoms : ase.Atoms
        A structure.
    kind : {"energy", "forces", "virial"}
        The label kind.

    Returns
    -------
    list of str
        ``atoms.info`` keys holding one number (energy) or 6 or 9 numbers (stress, virial)
        and ``atoms.arrays`` of shape (n_atoms, 3) (forces) whose names contain a word of
        :data:`LABEL_WORDS` and none of :data:`NOT_LABEL_WORDS`.

    See Also
    --------
    label_key : The estimator parameter that names such a label.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from gapy.labels import lookalike_labels
    >>> atoms = bulk("Cu", cubic=True)
    >>> atoms.arrays["force"] = np.zeros((4, 3))
    >>> atoms.info["REF_energy"], atoms.info["energy_cutoff"] = -14.0, 520.0
    >>> lookalike_labels(atoms, "forces"), lookalike_labels(atoms, "energy")
    (['force'], ['REF_energy'])
    """
    def named(name: str) -> bool:
        lowered = name.lower()
        return any(word in lowered for word in LABEL_WORDS[kind]) and not any(
            word in lowered for word in NOT_LABEL_WORDS)

    if kind == "forces":
        return [name for name, value in atoms.arrays.items() if named(name) and np.shape(value) == (len(atoms), 3)]
    sizes = (1,) if kind == "energy" else (6, 9)
    return [name for name, value in atoms.info.items() if named(name) and not isinstance(value, (bool, str))
            and np.size(value) in sizes and np.issubdtype(np.asarray(value).dtype, np.number)]


def label_key(kind: str, name: str) -> str:
    """The :class:`~gapy.GAPRegressor` parameter that reads a label of ``kind`` named ``name``.

    Parameters
    ----------
    kind : {"energy", "forces", "virial"}
        The label kind.
    name : str
        The label's name (a stress, in eV/A^3, or a virial, in eV, for ``"virial"``).

    Returns
    -------
    str
        ``"energy_key"``, ``"forces_key"``, ``"virial_key"`` (a name with "virial") or ``"stress_key"``.

    Examples
    --------
    >>> from gapy.labels import label_key
    >>> label_key("virial", "dft_virial"), label_key("virial", "REF_stress")
    ('virial_key', 'stress_key')
    """
    if kind == "virial":
        return "virial_key" if "virial" in name.lower() else "stress_key"
    return f"{kind}_key"


def mixed_label_names(names: Sequence[str], lookalikes: Sequence[Dict[str, str]], fitted: Sequence[str],
                      keys: Dict[str, str], give=lambda parameter, value: f"{parameter}={value!r}",
                      without=lambda sigma: f"{sigma}=None") -> Optional[str]:
    """Why structures that keep a fitted label kind only under another name would lose it, or None.

    Parameters
    ----------
    names : sequence of str
        The structures (``structure_name``).
    lookalikes : sequence of dict
        Per structure: kind to the first name that looks like a label of that kind, for the
        kinds it lacks under ``keys``.
    fitted : sequence of str
        The label kinds fitted.
    keys : dict
        Kind to the name looked for (``{"forces": "forces", ...}``).
    give : callable, optional
        ``give(parameter, value)``: how the message asks for a parameter (``forces_key='force'``;
        the command line gives its flag).
    without : callable, optional
        ``without(sigma)``: how the message says to fit without the kind (``sigma_force=None``).

    Returns
    -------
    str or None
        A message naming the structures, the parameter to give and how to fit without that kind.
    """
    for kind in fitted:
        found = [(name, lacking[kind]) for name, lacking in zip(names, lookalikes) if kind in lacking]
        if found:
            first, other = found[0]
            parameter = label_key(kind, other)
            return (f"{len(found)} structure{'s have' if len(found) > 1 else ' has'} no {kind} under "
                    f"{keys[kind]!r} but {other!r} ({first}{', ...' if len(found) > 1 else ''}): its {kind} would be "
                    f"left out; give {give(parameter, other)} if every structure names it so, else rename the label "
                    f"in the file ({without(SIGMA_NAMES[kind])} fits without that kind)")
    return None


def _volume(atoms: Atoms, name: str, field: str) -> float:
    if not atoms.pbc.all():
        raise StructureError(f"{name}: field '{field}' given for a structure that is not periodic in all three "
                             f"directions (pbc={atoms.pbc.tolist()}): a stress needs the volume of a cell periodic "
                             "in 3D; leave it out for slabs, wires and clusters")
    volume = abs(atoms.cell.volume)
    if not volume > 1e-6:
        raise StructureError(f"{name}: field '{field}' given but the cell has zero volume (cell="
                             f"{atoms.cell.array.tolist()})")
    return volume


def stress_from_virial(virial_voigt: np.ndarray, atoms: Atoms) -> np.ndarray:
    """ASE stress (eV/A^3, Voigt) from the virial (eV, Voigt).

    Parameters
    ----------
    virial_voigt : ndarray of shape (6,)
        Virial ``-stress * volume`` in eV, Voigt order (xx, yy, zz, yz, xz, xy).
    atoms : ase.Atoms
        The periodic structure, for its volume (Angstrom^3).

    Returns
    -------
    ndarray of shape (6,)
        Stress in eV/A^3, Voigt order, ASE sign (positive is tensile).

    Examples
    --------
    >>> from gapy.labels import stress_from_virial
    >>> from ase.build import bulk
    >>> atoms = bulk("Si", a=4.0)  # volume 16 A^3
    >>> stress_from_virial([-1.6, -1.6, -1.6, 0, 0, 0], atoms)[:3]
    array([0.1, 0.1, 0.1])
    """
    return -np.asarray(virial_voigt) / abs(atoms.get_volume())
