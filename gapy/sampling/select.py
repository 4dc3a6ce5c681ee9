"""Which structures are worth a reference calculation: uncertainty scores and selection.

:func:`uncertainty_scores` rates structures by the model's own predictive standard
deviation; :func:`select_structures` picks the uncertain ones that are also different
from each other (uncertainty-weighted farthest-point sampling on structure
fingerprints), so that a batch of DFT calculations is not spent on ten near-copies of
the same frame.
"""

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from ase import Atoms
from sklearn.utils.validation import check_is_fitted

from .._validation import check_choice, check_integer, check_number
from ..kernels import kernel_distance_squared, mean_unit_rows
from ..sparsify import _first_occurrences, fps_points

logger = logging.getLogger(__name__)

#: Kinds of uncertainty score, see :func:`uncertainty_scores`.
SCORES = ("forces", "energy", "energies")
#: Unit of each score.
SCORE_UNITS = {"forces": "eV/A", "energy": "eV/atom", "energies": "eV"}
#: Kernel distance between fingerprints below which two structures count as the same one
#: (a repeated snapshot, or a copy with permuted atoms or shifted by a lattice vector: round-off
#: gives ~1e-8; positions moved by 1e-4 A give ~6e-6) in the diverse selection.
SAME_STRUCTURE_DISTANCE = 1e-6


def uncertainty_scores(model, frames: Sequence[Atoms], score: str = "forces",
                       variance: Optional[str] = None) -> np.ndarray:
    """Uncertainty of the model on each structure, from its predictive variance.

    Parameters
    ----------
    model : GAPRegressor
        A fitted model.
    frames : sequence of ase.Atoms
        Candidate structures (no labels needed).
    score : {"forces", "energy", "energies"}, default="forces"
        ``"forces"``: largest force-component standard deviation (eV/A), the usual
        active-learning signal; ``"energy"``: total-energy standard deviation per atom
        (eV/atom); ``"energies"``: largest local-energy standard deviation (eV), the
        cheapest (no gradients).
    variance : {"sor", "dtc", "local"}, optional
        Kind of variance (default: the model's).

    Returns
    -------
    ndarray of shape (n_frames,)
        Score of each structure, in the unit of ``score`` (:data:`SCORE_UNITS`); larger
        is more uncertain. Includes the calibration of
        :meth:`~gapy.GAPRegressor.calibrate`, if any.

    Raises
    ------
    ValueError
        ``score`` or ``variance`` is not one of the allowed values.
    sklearn.exceptions.NotFittedError
        ``model`` is not fitted.

    See Also
    --------
    select_structures : Choose uncertain and diverse structures by these scores.

    References
    ----------
    F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
    uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
    906 (2019).

    Examples
    --------
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.datasets import load_si
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
    >>> from gapy.sampling import uncertainty_scores
    >>> scores = uncertainty_scores(model, load_si("test")[:3])  # eV/A
    >>> scores.shape, bool((scores > 0).all())
    ((3,), True)
    """
    check_choice("score", score, SCORES)
    check_is_fitted(model, "gp_")
    properties = ("energy", "energies", "forces") if score == "forces" else ("energy", "energies")
    results = model.predict_all(frames, return_std=True, variance=variance, properties=properties)
    if score == "forces":
        return np.array([r["forces_std"].max() for r in results])
    if score == "energy":
        return np.array([r["energy_std"] / len(r["energies"]) for r in results])
    return np.array([r["energies_std"].max() for r in results])


def structure_fingerprints(descriptor, frames: Sequence[Atoms], n_jobs: int = 1) -> np.ndarray:
    """One unit vector per structure: the mean of its atoms' unit descriptor vectors, renormalised.

    The same fingerprint as :class:`gapy.coverage.CoverageMap` with ``level="structures"``
    (see :func:`gapy.kernels.mean_unit_rows`).

    Parameters
    ----------
    descriptor : SOAP
        Gives the atoms' vectors, e.g. a fitted model's ``descriptor_``.
    frames : sequence of ase.Atoms
        The structures.
    n_jobs : int, default=1
        Threads.

    Returns
    -------
    ndarray of shape (n_frames, n_features)
        One unit vector per structure.

    Raises
    ------
    gapy.StructureError
        A structure has a species the descriptor does not know, or a bad geometry.

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> from gapy import SOAP
    >>> from gapy.sampling import structure_fingerprints
    >>> fingerprints = structure_fingerprints(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3),
    ...                                       [bulk("Si"), bulk("Si", cubic=True)])
    >>> fingerprints.shape, np.linalg.norm(fingerprints, axis=1).round(6)
    ((2, 40), array([1., 1.]))
    """
    values = descriptor.compute_many(frames, n_jobs=n_jobs)
    groups = np.concatenate([np.full(len(v), k) for k, v in enumerate(values)])
    return mean_unit_rows(np.concatenate(values), groups, len(values))


@dataclass
class Selection:
    """Structures chosen by :func:`select_structures`.

    Every parameter is stored as an attribute of the same name.

    Parameters
    ----------
    indices : ndarray of int of shape (n_chosen,)
        Chosen structures (indices into the candidates), most uncertain first.
    scores : ndarray of shape (n_frames,)
        Uncertainty score of every candidate structure (units of the score, see
        :data:`SCORE_UNITS`).

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.sampling import Selection
    >>> selection = Selection(indices=np.array([2, 0]), scores=np.array([0.3, 0.1, 0.5]))
    >>> selection.scores[selection.indices]
    array([0.5, 0.3])
    """

    indices: np.ndarray
    scores: np.ndarray


def select_structures(
    model,
    frames: Sequence[Atoms],
    n: int,
    *,
    score: str = "forces",
    threshold: Optional[float] = None,
    diverse: bool = True,
    zeta: Optional[int] = None,
    variance: Optional[str] = None,
) -> Selection:
    """Choose up to ``n`` uncertain and mutually different structures to label.

    Structures whose score does not exceed ``threshold`` are never chosen. With
    ``diverse`` the first choice is the most uncertain structure and each next one
    maximises ``score * distance to the structures already chosen`` (kernel distance
    between :func:`structure_fingerprints`), so that near-duplicates (consecutive MD
    frames) are not all taken, and structures with the same fingerprint (kernel distance
    below :data:`SAME_STRUCTURE_DISTANCE`: a snapshot given twice, a copy with permuted
    atoms) are never both taken: fewer than ``n`` are chosen when fewer different ones
    are eligible. Otherwise the ``n`` highest scores are taken.

    Parameters
    ----------
    model : GAPRegressor
        A fitted model; its descriptor gives the fingerprints.
    frames : sequence of ase.Atoms
        Candidates.
    n : int
        Largest number of structures to choose.
    score : {"forces", "energy", "energies"}, default="forces"
        See :func:`uncertainty_scores`.
    threshold : float, optional
        Only structures with a larger score are eligible (units of ``score``).
    diverse : bool, default=True
        Spread the choice out in descriptor space, never two copies of a structure.
    zeta : int, optional
        Kernel exponent of the fingerprint distance (default: the model's ``zeta``).
    variance : {"sor", "dtc", "local"}, optional
        Kind of variance (default: the model's).

    Returns
    -------
    Selection
        The chosen indices (at most ``n``, none when no structure passes ``threshold``)
        and the scores of all candidates.

    Raises
    ------
    TypeError
        ``n`` or ``threshold`` is not a number.
    ValueError
        ``n`` is not a positive integer, ``threshold`` is not finite, or ``score`` or
        ``variance`` is not one of the allowed values.
    sklearn.exceptions.NotFittedError
        ``model`` is not fitted.

    References
    ----------
    G. Imbalzano, A. Anelli, D. Giofré, S. Klees, J. Behler and M. Ceriotti, "Automatic
    selection of atomic fingerprints and reference configurations for machine-learning
    potentials", J. Chem. Phys. 148, 241730 (2018) (farthest-point sampling).

    Examples
    --------
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.datasets import load_si
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
    >>> from gapy.sampling import select_structures
    >>> selection = select_structures(model, load_si("test")[:3], 2)
    >>> len(selection.indices), selection.scores.shape
    (2, (3,))
    >>> bool(selection.scores[selection.indices[0]] == selection.scores.max())
    True
    """
    check_integer("n", n, 1)
    check_number("threshold", threshold, allow_none=True)
    frames = list(frames)
    scores = uncertainty_scores(model, frames, score, variance)
    eligible = np.flatnonzero(scores > (threshold if threshold is not None else -np.inf))
    if diverse and len(eligible) > 1:
        fingerprints = structure_fingerprints(model.descriptor_, [frames[k] for k in eligible], model.n_jobs)
        zeta = model.gp_.zeta if zeta is None else zeta
        rows = _most_uncertain_copies(fingerprints, scores[eligible])
        rows = rows[_weighted_fps(fingerprints[rows], scores[eligible][rows], n, zeta)]
        chosen = eligible[rows[_without_copies(fingerprints[rows], scores[eligible][rows], zeta)]]
    elif len(eligible) <= n:
        chosen = eligible
    else:
        chosen = eligible[np.argsort(scores[eligible])[::-1][:n]]
    chosen = chosen[np.argsort(scores[chosen], kind="stable")[::-1]]
    return Selection(indices=chosen, scores=scores)


def select_per_run(model, frames: Sequence[Atoms], runs: Sequence[int], n: int, *, score: str = "forces",
                   threshold: Optional[float] = None) -> tuple:
    """Uncertain and diverse structures, the labels shared out evenly among the MD runs.

    ``selection="per_run"`` of :func:`gapy.sampling.active_learning`. With one pool for all runs, the
    run whose structures are furthest from the training data (a strongly expanded cell,
    the hottest temperature) takes every label; here each run gets ``n // n_runs``
    labels, the runs with the most uncertain structure one more until ``n`` are shared
    out, and a run with fewer eligible structures than its share passes the rest on to
    the next most uncertain runs. Within a run the choice is that of
    :func:`select_structures` (uncertainty-weighted farthest-point sampling); copies of a
    structure (the same fingerprint, in one run or several) count once, as the most
    uncertain of them.

    Parameters
    ----------
    model : GAPRegressor
        A fitted model.
    frames : sequence of ase.Atoms
        Candidates of all runs.
    runs : sequence of int
        Run of each candidate (any labels; one per frame).
    n : int
        Largest number of structures to choose.
    score : {"forces", "energy", "energies"}, default="forces"
        See :func:`uncertainty_scores`.
    threshold : float, optional
        Only structures with a larger score are eligible.

    Returns
    -------
    scores : ndarray of shape (n_frames,)
        Score of every candidate.
    indices : ndarray of int
        Chosen candidates (at most ``n``), most uncertain first.

    Raises
    ------
    ValueError
        ``runs`` does not have one entry per frame, or ``n`` is not a positive integer.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.sampling import label_structures, select_per_run
    >>> atoms = bulk("Cu", cubic=True)
    >>> atoms.rattle(0.05, seed=0)
    >>> model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=4).fit(
    ...     label_structures([atoms], EMT()))
    >>> frames = []
    >>> for k in range(6):  # run 0: slightly rattled; run 1: strongly rattled (more uncertain)
    ...     copy = bulk("Cu", cubic=True)
    ...     copy.rattle(0.02 if k < 3 else 0.2, seed=k)
    ...     frames.append(copy)
    >>> scores, indices = select_per_run(model, frames, [0, 0, 0, 1, 1, 1], 2)
    >>> sorted(int(k) // 3 for k in indices)  # one label from each run
    [0, 1]
    """
    check_integer("n", n, 1)
    frames, runs = list(frames), np.asarray(runs)
    if runs.shape != (len(frames),):
        raise ValueError(f"runs: give one run per frame ({len(frames)}), got shape {runs.shape}")
    scores = uncertainty_scores(model, frames, score)
    eligible = scores > (threshold if threshold is not None else -np.inf)
    candidates = np.flatnonzero(eligible)
    if not len(candidates):
        return scores, np.zeros(0, dtype=int)
    row_of = np.full(len(frames), -1)
    row_of[candidates] = np.arange(len(candidates))
    fingerprints = structure_fingerprints(model.descriptor_, [frames[k] for k in candidates], model.n_jobs)
    zeta = model.gp_.zeta
    eligible[:] = False  # copies of a structure, in one run or several: only the most uncertain
    eligible[candidates[_most_uncertain_copies(fingerprints, scores[candidates])]] = True
    names = np.unique(runs)
    # the runs with the most uncertain structure first; each gets its share, shortfalls go on
    order = sorted(names, key=lambda name: -scores[runs == name].max())
    shares = {name: n // len(names) + (rank < n % len(names)) for rank, name in enumerate(order)}
    chosen, left = [], 0
    for name in order + order:  # the second pass fills what the first left over
        members = np.flatnonzero((runs == name) & eligible)
        members = members[~np.isin(members, chosen)]
        want = shares.pop(name, 0) + left
        take = min(want, len(members))
        left = want - take
        if take == len(members):
            chosen += members.tolist()
        elif take:
            chosen += members[_weighted_fps(fingerprints[row_of[members]], scores[members], take, zeta)].tolist()
    indices = np.array(chosen, dtype=int)
    indices = indices[_without_copies(fingerprints[row_of[indices]], scores[indices], zeta)]
    return scores, indices[np.argsort(scores[indices], kind="stable")[::-1]]


def _weighted_fps(fingerprints: np.ndarray, scores: np.ndarray, n: int, zeta: int) -> np.ndarray:
    """Rows of ``n`` of the fingerprints (all if not more): uncertainty-weighted farthest-point sampling."""
    if len(fingerprints) <= n:
        return np.arange(len(fingerprints))
    return fps_points(fingerprints, n, zeta=zeta, weights=scores)


def _most_uncertain_copies(fingerprints: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Sorted rows: of each set of equal fingerprints (to 12 decimals), the most uncertain."""
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[_first_occurrences(fingerprints, order)])


def _without_copies(fingerprints: np.ndarray, scores: np.ndarray, zeta: int) -> np.ndarray:
    """Sorted rows farther than SAME_STRUCTURE_DISTANCE from every more uncertain row kept: drops
    the copies equal up to round-off (permuted atoms) that ``_most_uncertain_copies`` left apart."""
    order = np.argsort(-scores, kind="stable")
    distance = kernel_distance_squared(fingerprints[order], fingerprints[order], zeta)
    kept = []
    for i in range(len(order)):
        if not kept or distance[i, kept].min() > SAME_STRUCTURE_DISTANCE ** 2:
            kept.append(i)
    return np.sort(order[kept])
