"""Checks of a training set after pass 1 of :meth:`gapy.GAPRegressor.fit`: labels, config types, repeats, species.

Each takes pass 1's summaries of the structures (``gapy.estimator._Summary``) and the
settings it checks them against, and warns (or raises) with a message that says what to fix.
"""

import difflib
import logging
import warnings
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from scipy.linalg import cholesky, solve_triangular

from .exceptions import StructureError
from .labels import (ZERO_FORCES, CloseAtomsWarning, EnergyOutlierWarning, EnergyResidualWarning,
                     ForceOutlierWarning, RepeatedStructureWarning, force_outlier_message, label_fields,
                     outlier_message, outlying_energies, outlying_forces, repeated_structures)

if TYPE_CHECKING:
    from .estimator import _Summary

logger = logging.getLogger(__name__)

#: A species with fewer atoms than ``RARE_SPECIES`` in the training data, and fewer than ``RARE_SPECIES_SHARE``
#: of the most common species', is named in a warning: its ``e0``, local energies and pairs are fitted to those
#: few atoms (EMT Cu-Ni with Au in 6 atoms of 4 of 50 structures: test structures with one Au atom were 0.5-2.8
#: eV off, at 2-12 predicted stds).
RARE_SPECIES, RARE_SPECIES_SHARE = 100, 0.05
#: :class:`EnergyResiduals`: a structure is named when its energy residual lies more than this many robust
#: standard deviations (1.4826 x the median absolute deviation) from the median residual ...
RESIDUAL_OUTLIER_FACTOR = 10.0
#: ... and more than this (eV/atom) from it: a model that misses a structure by less may simply not know it
#: (mlearn Ge's training slabs are fitted to 17 meV/atom, the other structures to 1-2).
RESIDUAL_OUTLIER_FLOOR = 0.1
#: Fitted virials whose correlation with what the other labels imply (:meth:`LeaveOut.agreement`) is at most this
#: are of the opposite sign (EMT Cu, mlearn Si and Mo: +0.96 to +1.00 as given, -0.96 to -1.00 flipped) ...
OPPOSITE_AGREEMENT = -0.5
#: ... when that prediction lies this many of its stds on the other side: with a few structures the other labels
#: say little (3 bundled Si structures with a small descriptor: -0.70 at 4.0 stds, as given; 2-3 cells of one
#: volume: -1.00 at 1.9; flipped: 6 EMT Cu cells 7.0, 12 cells 102, mlearn Si 102). The traceless part is
#: compared first (:func:`warn_opposite_virials`).
OPPOSITE_STDS = 5.0
#: ... and the whole virial, when its traceless part says nothing, only when the volumes per atom of the structures
#: differ by this share or more: at one volume the energies and forces do not fix the trace (correct stresses of
#: rattled Cu cells of one volume were called flipped, -1.00 at 5.7 stds).
VOLUME_SPREAD = 0.05
#: Kernel rows of one label kind kept during a fit for the checks after it at most (bytes); beyond, they are skipped.
RESIDUAL_ROWS_BUDGET = 64 * 2**20


def check_labels(summaries: Sequence["_Summary"], keys: Tuple[set, set, set], *, sigma_energy: Optional[float],
                 sigma_force: Optional[float], sigma_virial: Optional[float], energy_key: str, forces_key: str,
                 stress_key: str, virial_key: str) -> Dict[str, int]:
    """Count the labels that will be fitted; refuse a fitted kind that no structure has.

    Labels under another name (QUIP's ``force`` array, ``energy`` under another info
    key) would otherwise be silently left out. Structures without any fitted label are
    named in a warning.

    Parameters
    ----------
    summaries : sequence of _Summary
        The structures that are fitted.
    keys : tuple of set
        The info keys, array names and calculator results found in the structures (for the message).
    sigma_energy, sigma_force, sigma_virial, energy_key, forces_key, stress_key, virial_key
        The estimator's parameters: the kinds fitted and the names of their fields.

    Returns
    -------
    dict
        Number of values of each fitted kind (``"energy"``, ``"forces"``, ``"virial"``).
    """
    fields = label_fields(energy_key, forces_key, stress_key, virial_key)
    kinds = {  # kind: (sigma, field names, the key to name it, how to turn it off)
        "energy": (sigma_energy, fields["energy"], "energy_key", "sigma_energy"),
        "forces": (sigma_force, fields["forces"], "forces_key", "sigma_force"),
        "virial": (sigma_virial, fields["virial"], "stress_key", "sigma_virial"),
    }
    unused = [f"; {n} structures have field {fields}, fitted when {sigma_name} is set" for kind, (
        sigma, fields, _, sigma_name) in kinds.items() if sigma is None
        for n in [sum(summary.label_sizes[kind] is not None for summary in summaries)] if n]
    counts = {}
    for kind, (sigma, fields, key_name, sigma_name) in kinds.items():
        if sigma is None:
            continue
        found = [summary.label_sizes[kind] for summary in summaries if summary.label_sizes[kind] is not None]
        counts[kind] = int(sum(found))
        if not found:
            info_keys, array_keys, calc_keys = (sorted(set(names) - {"numbers", "positions"}) for names in keys)
            raise StructureError(
                f"{sigma_name}={sigma} but no training structure has field {fields}; found info keys "
                f"{info_keys}, arrays {array_keys} and calculator results {calc_keys}: name the label with "
                f"{key_name}=..., or set {sigma_name}=None to fit without it{''.join(unused)}"
            )
    unlabelled = [summary for summary in summaries
                  if all(summary.label_sizes[kind] is None for kind in counts)]
    if unlabelled:
        message = (f"{len(unlabelled)} training structures have no label to fit and are left out: "
                   f"{[summary.name for summary in unlabelled[:5]]}"
                   + (" ..." if len(unlabelled) > 5 else "") + "".join(unused))
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=4)
    logger.info("fitting %s", ", ".join(f"{n} {kind} values" for kind, n in counts.items()))
    return counts


def check_energies(summaries: Sequence["_Summary"], energy_key: str) -> None:
    """Warn of energies per atom far from all the others' (:func:`gapy.labels.outlying_energies`), or all
    equal while the forces are not zero (placeholders); ``energy_key`` names the field."""
    labelled = [summary for summary in summaries if summary.energy is not None and summary.weight > 0]
    distinct = list({summary.geometry: summary for summary in labelled}.values())  # (copies: gapy.labels)
    per_atom = np.array([summary.energy / summary.n_atoms for summary in distinct])
    moving = [summary for summary in distinct if (summary.force_rms or 0.0) >= ZERO_FORCES]
    if len(distinct) >= 3 and moving and np.ptp(per_atom) <= 1e-9 * max(1.0, abs(per_atom[0])):
        warnings.warn(
            f"field '{energy_key}' is {per_atom[0]:.10g} eV/atom in all {len(distinct)} structures, though "
            f"the forces of {len(moving)} of them are not zero (e.g. {moving[0].name}, RMS "
            f"{moving[0].force_rms:.3g} eV/A): placeholder energies (a parser's default)? They contradict the "
            "forces; fit without them (sigma_energy=None) if they are not real", RuntimeWarning, stacklevel=4)
    outliers = outlying_energies([summary.energy for summary in labelled],
                                 [summary.composition for summary in labelled])
    if len(outliers):
        warnings.warn(outlier_message(energy_key, [summary.name for summary in labelled],
                                      [summary.energy for summary in labelled],
                                      [summary.n_atoms for summary in labelled], outliers),
                      EnergyOutlierWarning, stacklevel=4)


def check_forces(summaries: Sequence["_Summary"], forces_key: str) -> None:
    """Warn of forces far larger than all the others' (:func:`gapy.labels.outlying_forces`); ``forces_key`` names
    the field."""
    labelled = [summary for summary in summaries if summary.force_rms is not None and summary.weight > 0]
    rms = [summary.force_rms for summary in labelled]
    outliers = outlying_forces(rms)
    if len(outliers):
        warnings.warn(force_outlier_message(forces_key, [summary.name for summary in labelled], rms,
                                            outliers), ForceOutlierWarning, stacklevel=4)


def check_repeats(summaries: Sequence["_Summary"]) -> None:
    """Warn of structures that repeat another's geometry (:func:`gapy.labels.repeated_structures`)."""
    weighted = [summary for summary in summaries if summary.weight > 0]
    message = repeated_structures(
        [summary.name for summary in weighted], [summary.geometry for summary in weighted],
        [summary.label_digest for summary in weighted],
        [None if summary.energy is None else summary.energy / summary.n_atoms for summary in weighted])
    if message:
        warnings.warn(message, RepeatedStructureWarning, stacklevel=4)


def check_close_atoms(summaries: Sequence["_Summary"]) -> None:
    """Warn of fitted structures with atoms closer than :data:`gapy.structures.CLOSE_FACTOR` times the sum of
    their covalent radii."""
    close = [f"{summary.name}: {summary.close_pair}" for summary in summaries if summary.close_pair]
    if close:
        warnings.warn(
            f"{len(close)} training structure{'s have' if len(close) > 1 else ' has'} atoms far closer than a bond "
            f"({'; '.join(close[:3])}{'; ...' if len(close) > 3 else ''}): a broken geometry gives that (positions "
            "in the wrong units, a wrong cell, an atom written twice), and its labels are then wrong too; the ZBL "
            "core and the 2-body term start from the shortest distance in the data. Fix or remove such structures; "
            "if they are short-range data on purpose (dimer curves for the repulsive wall), ignore this warning",
            CloseAtomsWarning, stacklevel=4)


class KeptObservations:
    """Observations of one label kind (kernel rows, targets and noise sigmas, in eV) kept
    during pass 2 of a fit, within :data:`RESIDUAL_ROWS_BUDGET`; beyond it nothing is kept
    (``complete`` is False) and the checks that need them are skipped."""

    def __init__(self) -> None:
        self.rows: List[np.ndarray] = []
        self.targets: List[np.ndarray] = []
        self.sigmas: List[np.ndarray] = []
        self.n_rows = 0
        self.complete = True

    def keep(self, rows: np.ndarray, targets: np.ndarray, sigmas: np.ndarray) -> bool:
        """Keep the observations (float64 copies); False once the budget is exceeded."""
        if not self.complete:
            return False
        if (self.n_rows + len(rows)) * rows.shape[1] * 8 > RESIDUAL_ROWS_BUDGET:
            self.__init__()
            self.complete = False
            return False
        self.rows.append(np.array(rows, dtype=float))
        self.targets.append(np.array(targets, dtype=float))
        self.sigmas.append(np.array(sigmas, dtype=float))
        self.n_rows += len(rows)
        return True

    def misses(self, alpha: np.ndarray) -> np.ndarray:
        """Fitted minus label, one per observation kept."""
        return np.concatenate(self.rows) @ alpha - np.concatenate(self.targets)

    def unfitted_share(self, alpha: np.ndarray) -> Optional[float]:
        """RMS of the residuals as a share of the RMS of the labels, both per unit noise (as
        :func:`gapy.gp.evidence.residual_shares`); None when nothing (or not all) was kept or
        the labels lie within their noise (an RMS below one sigma: nothing to fit, as energies
        of cells of one volume rattled a little)."""
        if not self.complete or not self.n_rows:
            return None
        sigmas = np.concatenate(self.sigmas)
        labels = np.sum((np.concatenate(self.targets) / sigmas) ** 2)
        if labels <= self.n_rows:
            return None
        return float(np.sqrt(np.sum((self.misses(alpha) / sigmas) ** 2) / labels))


class LeaveOut(NamedTuple):
    """What a fit predicts for some of its observations without them (:func:`leave_out`), per unit noise."""

    without: np.ndarray  # the prediction, one per observation
    labels: np.ndarray  # the labels
    whitened: np.ndarray  # L^-1 W^T (M, n_observations): the prediction's covariance is its Gram matrix

    def agreement(self, projection: Optional[np.ndarray] = None) -> Optional[Tuple[float, float]]:
        """The correlation of the prediction with the labels, and its projection on them in units
        of its std; ``projection`` (symmetric, idempotent, the size of one structure's block)
        compares that part of each block. None when either side is zero."""
        without, labels = self.without, self.labels
        if projection is not None:
            def project(values):
                return (values.reshape(-1, len(projection)) @ projection).ravel()

            without, labels = project(without), project(labels)  # (w . P l = P w . P l: P idempotent)
        norms = np.linalg.norm(without) * np.linalg.norm(labels)
        spread = float(np.sum((self.whitened @ labels) ** 2))
        if not (norms > 0 and np.isfinite(norms) and spread > 0):
            return None
        return float(without @ labels / norms), float(without @ labels / np.sqrt(spread))


def leave_out(kept: KeptObservations, r_factor: np.ndarray, alpha: np.ndarray) -> Optional[LeaveOut]:
    """What the fit predicts for the kept observations without them, and its covariance.

    With ``A`` the kept rows and ``b`` their labels (per unit noise), ``R^T R`` the fit's
    posterior precision and ``W = A R^-1``, the fit without them has the precision
    ``R^T (I - W^T W) R`` and predicts ``W (I - W^T W)^-1 (R alpha - W^T b)``, with covariance
    ``W (I - W^T W)^-1 W^T``: ``O(n M^2 + M^3)`` for ``n`` observations and ``M`` sparse
    points, no second pass over the data. None when not every row was kept or ``I - W^T W``
    is not positive definite (labels that pin down some direction alone).
    """
    if not kept.complete or not kept.n_rows:
        return None
    sigmas = np.concatenate(kept.sigmas)
    labels = np.concatenate(kept.targets) / sigmas
    whitened_rows = solve_triangular(r_factor, (np.concatenate(kept.rows) / sigmas[:, None]).T,
                                     trans="T")  # W^T = R^-T A^T, (M, n)
    try:
        factor = cholesky(np.eye(len(r_factor)) - whitened_rows @ whitened_rows.T, lower=True)
    except np.linalg.LinAlgError:
        return None
    whitened = solve_triangular(factor, whitened_rows, lower=True)  # L^-1 W^T
    inner = solve_triangular(factor, r_factor @ alpha - whitened_rows @ labels, lower=True)
    return LeaveOut(whitened.T @ inner, labels, whitened)


#: The traceless (deviatoric) part of a virial in Voigt order (xx, yy, zz, yz, xz, xy).
DEVIATORIC = np.eye(6)
DEVIATORIC[:3, :3] -= 1.0 / 3.0


def warn_opposite_virials(virials: KeptObservations, volumes: Sequence[float], gp, field: str) -> bool:
    """Warn when the fitted virials have the opposite sign of those the other labels imply; True if so.

    ``volumes`` are the volumes per atom of the structures kept. The traceless part is
    compared first (:meth:`LeaveOut.agreement`): the forces determine it even at one
    volume, where the trace, a volume derivative, is not determined and its prediction is
    confidently wrong (EMT Ni, rattled cells of one volume: -0.83 as given, +0.83 flipped;
    traceless +0.98 and -0.98). When the traceless part is inconclusive (within
    :data:`OPPOSITE_STDS` stds either way: no shear, as in unrattled cells under hydrostatic
    strain, or cells rattled too little) the whole virial decides, only if the volumes per
    atom differ by :data:`VOLUME_SPREAD` or more, so that the energies fix the trace.
    Opposite: a correlation at most :data:`OPPOSITE_AGREEMENT` and :data:`OPPOSITE_STDS`
    stds on the other side.
    """
    found = leave_out(virials, gp.r_factor, gp.alpha)
    if found is None:
        return False
    traceless = found.agreement(DEVIATORIC)
    if traceless is not None and abs(traceless[1]) >= OPPOSITE_STDS:
        agreement = traceless
    elif len(volumes) and max(volumes) >= (1.0 + VOLUME_SPREAD) * min(volumes):
        agreement = found.agreement()
    else:
        return False
    if agreement is None or agreement[0] > OPPOSITE_AGREEMENT or agreement[1] > -OPPOSITE_STDS:
        return False
    warnings.warn(
        f"the stresses of the training structures (field {field}) have the opposite sign of those the energies "
        f"and forces imply (correlation {agreement[0]:.2f} with what the fit predicts without them): ASE's stress "
        "is positive when tensile, the opposite of VASP's pressure; flip their sign, or leave them out "
        "(sigma_virial=None)", RuntimeWarning, stacklevel=4)
    return True


def unfitted_message(field: str, share: float, sigma_name: str, sigma: float, where: str = "") -> str:
    """The warning of a label kind that a fit leaves practically as it is (share of at least 1)."""
    prefix = f"{where}: " if where else ""
    return (f"{prefix}the fit leaves the labels of field {field} practically as they are (their residuals' RMS is "
            f"{share:.2g} x theirs; {sigma_name} = {sigma:.3g}): they disagree with the other labels (a sign "
            "convention: ASE's stress is positive when tensile, the opposite of VASP's pressure, forces are -dE/dx; "
            "a unit slip; an outlier) or the model cannot describe them (a descriptor too small, too few sparse "
            "points)")


class EnergyResiduals:
    """The energies of a fit, kept during its pass 2 to check their residuals after it.

    One energy stored per atom instead of per structure (mlearn Si, 38 structures) bent a fit
    so far that its force errors rose from 0.1 to 3.3 eV/A, while the evidence's warnings
    blamed the forces; the structure itself was missed by 184 meV/atom, 20 robust standard
    deviations from the others' median. :meth:`check` names such structures. The kernel
    rows are kept in float64 (their products cancel to far below their size), within
    :data:`RESIDUAL_ROWS_BUDGET`; beyond it nothing is kept or checked.
    """

    def __init__(self) -> None:
        self.kept = KeptObservations()
        self.names: List[str] = []
        self.n_atoms: List[int] = []

    def keep(self, name: str, n_atoms: int, rows: np.ndarray, targets: np.ndarray, sigmas: np.ndarray) -> None:
        """Keep one structure's energy observation (kernel row, target and noise sigma, in eV)."""
        if self.kept.keep(rows[:1], targets[:1], sigmas[:1]):
            self.names.append(name)
            self.n_atoms.append(int(n_atoms))
        else:
            self.names, self.n_atoms = [], []

    def check(self, alpha: np.ndarray) -> None:
        """Warn of structures whose energy residual per atom (fitted minus label) lies far from
        all the others' (:data:`RESIDUAL_OUTLIER_FACTOR` robust stds and :data:`RESIDUAL_OUTLIER_FLOOR`
        from their median) and beyond three of its own noise sigmas (a structure given a large
        sigma on purpose is not named); or, when the median residual itself is beyond
        :data:`RESIDUAL_OUTLIER_FLOOR`, of the energies missed as a whole."""
        if not self.kept.complete or len(self.names) < 5:
            return
        sigmas = np.concatenate(self.kept.sigmas)
        misses = self.kept.misses(alpha)
        residuals = misses / np.array(self.n_atoms)
        offset = np.median(residuals)
        deviation = residuals - offset
        spread = 1.4826 * np.median(np.abs(deviation))
        # every energy missed as a whole: a structure is named only when it stands out further than that
        whole = abs(offset) > RESIDUAL_OUTLIER_FLOOR
        least = max(RESIDUAL_OUTLIER_FACTOR * spread, RESIDUAL_OUTLIER_FLOOR, abs(offset) if whole else 0.0)
        far = [k for k in np.argsort(-np.abs(deviation))
               if abs(misses[k]) > 3.0 * sigmas[k] and abs(deviation[k]) > least]
        named = ", ".join(f"{self.names[k]} {1000 * residuals[k]:+.0f} meV/atom" for k in far[:5]) + (
            ", ..." if len(far) > 5 else "")
        some = f"{len(far)} training structure{'s' if len(far) > 1 else ''}"
        if whole:
            warnings.warn(
                f"the fitted model misses the energies of the training structures as a whole (median residual "
                f"{1000 * offset:+.0f} meV/atom" + (f"; {some} far more: {named}" if far else "") + "): they are "
                "hardly fitted, as with a sigma_energy so large that the forces outweigh them (maximize_evidence can "
                "choose that when its bounds allow: give bounds={'sigma_energy': ...})" + (
                    ", energies on another scale than e0, or a label slip in the structures named, which shifts e0 "
                    "and bends the fit" if far else ", or energies on another scale than e0"),
                EnergyResidualWarning, stacklevel=4)
        elif far:
            warnings.warn(
                f"the fitted model misses the energy of {some} far more than all the others' ({named}): a label slip "
                "(an energy per atom stored as the total, another unit or DFT setup, an unconverged calculation) "
                "bends the whole fit, forces included, and can make it miss other structures too; check those "
                "labels, the first named first, or leave the structures out (in a small set a structure unlike "
                "all the others, a lone dimer or molecule, can be missed so too without a slip)",
                EnergyResidualWarning, stacklevel=4)


def check_config_types(summaries: Sequence["_Summary"], config_type_sigma: Optional[dict]) -> None:
    """Warn of ``config_type_sigma`` keys that no training structure has (a typo is otherwise silent)."""
    found = {summary.config_type for summary in summaries if summary.config_type is not None}
    unknown = [name for name in (config_type_sigma or {}) if name not in found]
    if unknown:
        hints = [f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name) for name in unknown
                 for close in [difflib.get_close_matches(str(name), [str(f) for f in found], n=1)]]
        warnings.warn(f"config_type_sigma names config types that no training structure has: "
                      f"{', '.join(hints)}; they change nothing (config types in the data: "
                      f"{', '.join(sorted(map(str, found))) or 'none'})", UserWarning, stacklevel=4)


def warn_rare_species(summaries: Sequence["_Summary"], seen: Dict[int, int], symbols: Dict[int, str]) -> None:
    """Warn of species with few atoms beside a common one (:data:`RARE_SPECIES`), with their counts.

    ``seen`` counts the fitted atoms of each species index, ``symbols`` names the indices.
    """
    most = max(seen.values(), default=0)
    rare = [s for s, n in sorted(seen.items()) if 0 < n < RARE_SPECIES and n < RARE_SPECIES_SHARE * most]
    if not rare:
        return
    used = [summary for summary in summaries if summary.used]
    described = [f"{symbols[s]}: {seen[s]} atoms in {sum(summary.composition[s] > 0 for summary in used)} of "
                 f"the {len(used)} structures" for s in rare]
    common = max(seen, key=seen.get)
    warnings.warn(f"few atoms of some species in the training data ({'; '.join(described)}; {symbols[common]}: "
                  f"{most}): their e0, local energies and pairs are fitted to those few atoms, so structures with "
                  "them can be predicted poorly, by more than their predicted stds say (see RARE_SPECIES); add "
                  "structures with more of them", RuntimeWarning, stacklevel=4)
