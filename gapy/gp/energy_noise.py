"""The energy noise sigma by cross-validation of the energies.

The evidence weighs each kind of label by its likelihood. With many more force components
than energies it can set the energy noise far above the error the model makes on new
energies, leaving the energies loosely fitted: on the mlearn Ge, Li and Si sets it ended
on the upper bound of its search, and a half (Ge, Si) to a sixteenth (Li) of it lowered
the test energy errors by 14-45 % (``docs/gp.md``). Here every other hyperparameter keeps the
evidence's value, and ``sigma_energy`` is chosen among the evidence's value and its
halvings by ``K``-fold cross-validation over the structures' energies: each fold's
energies are left out of the fit (every structure's forces and stresses stay in) and
predicted. The score of a candidate is the mean over the label kinds of its error
divided by the lowest of all candidates (the held-out energies; the forces' and
virials' residuals in the fit, which a smaller energy noise raises), as
:func:`gapy.search.search_settings` weighs its quantities. The choice is the largest
sigma whose score is within one standard error of the lowest (the energies' part, from
the paired differences of the structures' held-out errors): where the score is flat, the
differences are noise and the evidence's value stands.

Cheap: with ``R0`` the factor of the fit without the energies (``K_MM``, forces,
virials) and ``W = A D R0^-1`` the energies' unit rows in its basis, the fit with the
energies ``T`` at noise ``sigma`` has ``u = R0 x = c0 + W_T^T v / sigma`` with
``(I + G_TT / sigma^2) v = (b_T - g_T) / sigma`` (``G = W W^T``, ``g = W c0``; the
predicted energies are ``W u``), so every fold and candidate costs one small solve in the
number of energies.
"""

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from .evidence import EvidenceStatistics, _posterior

#: Largest energy noise the evidence may choose, as a share of the spread of the energies per
#: atom beyond per-species constants: with many force labels it can prefer to leave the
#: energies unfitted (5-7 species: sigma_energy at its ceiling, test energies 0.1 eV/atom off; the
#: 38 structures of the bundled Si set: at a quarter of the spread, 72 meV/atom, test energies 9.5-12
#: meV/atom, at a tenth 4.4-5.1, forces the same; mlearn Si and Mo choose less than a tenth).
ENERGY_NOISE_SHARE = 0.1
#: Halvings of the evidence's energy sigma tried (the candidates are it and ``2^-k`` of it).
HALVINGS = 6
#: Folds of the cross-validation.
FOLDS = 5
#: Fewer energies than this leave the evidence's sigma as it is: the held-out errors of ten energies
#: per fold are too noisy to move away from it (the exploration benchmark's loop, refitted on 3-22 EMT
#: structures: metadynamics-driven models 0.055 against 0.044 eV/A on other phases with the
#: cross-validation, md/metad 1.50 against 1.85; ``benchmarks/README.md``).
MIN_ENERGIES = 50
#: Energies kept for the cross-validation at most (``G`` is their square); with more the
#: evidence's sigma is kept.
MAX_ENERGIES = 5000


@dataclass
class EnergyRows:
    """The energies' unit rows and targets, kept for the cross-validation.

    Parameters
    ----------
    rows : list of ndarray
        Unit kernel rows divided by their noise factors, ``a_i / s_i``, in blocks.
    targets : list of ndarray
        Targets divided by their noise factors, ``b_i / s_i``.
    scales : list of ndarray
        The noise factors ``s_i`` (``sqrt(N_atoms)`` without weights).
    n_atoms : list of ndarray
        The structures' numbers of atoms (held-out errors are per atom).
    weights : list of ndarray
        The structures' sample weights (held-out errors are averaged with them).
    overflow : bool, default=False
        More than :data:`MAX_ENERGIES` energies were offered: none are kept.

    Examples
    --------
    >>> import numpy as np
    >>> energies = EnergyRows()
    >>> energies.add(np.ones((2, 3)), np.array([4.0, 8.0]), np.array([2.0, 2.0]), np.array([4, 4]), np.ones(2))
    >>> energies.targets[0].tolist(), energies.overflow
    ([2.0, 4.0], False)
    """

    rows: List[np.ndarray] = field(default_factory=list)
    targets: List[np.ndarray] = field(default_factory=list)
    scales: List[np.ndarray] = field(default_factory=list)
    n_atoms: List[np.ndarray] = field(default_factory=list)
    weights: List[np.ndarray] = field(default_factory=list)
    overflow: bool = False

    def add(self, rows: np.ndarray, targets: np.ndarray, scales: np.ndarray, n_atoms: np.ndarray,
            weights: np.ndarray) -> None:
        """Keep energies, as :meth:`~gapy.gp.evidence.EvidenceStatistics.add` takes them.

        Parameters
        ----------
        rows : ndarray of shape (n, M)
            Unit kernel rows (delta = 1).
        targets : ndarray of shape (n,)
            Energies (minus ``e0``).
        scales : ndarray of shape (n,)
            Relative noise factors ``s_i``.
        n_atoms : ndarray of shape (n,)
            Atoms in each structure.
        weights : ndarray of shape (n,)
            Sample weight of each structure.

        Examples
        --------
        >>> import numpy as np
        >>> energies = EnergyRows()
        >>> energies.add(np.ones((1, 2)), np.array([3.0]), np.array([1.0]), np.array([1]), np.array([1.0]))
        >>> len(energies.rows)
        1
        """
        if self.overflow:
            return
        self.rows.append(np.atleast_2d(rows) / scales[:, None])
        self.targets.append(np.asarray(targets, dtype=float) / scales)
        self.scales.append(np.asarray(scales, dtype=float))
        self.n_atoms.append(np.asarray(n_atoms, dtype=float))
        self.weights.append(np.asarray(weights, dtype=float))
        if sum(len(t) for t in self.targets) > MAX_ENERGIES:
            self.rows, self.targets, self.scales, self.n_atoms, self.weights = [], [], [], [], []
            self.overflow = True


@dataclass
class EnergySigmaChoice:
    """What :func:`choose_energy_sigma` tried and chose.

    Parameters
    ----------
    sigma : float
        The chosen energy noise sigma.
    candidates : list of dict
        Per candidate: ``sigma``, ``energy`` (RMS of the held-out energy residuals per
        atom, eV/atom, weighted by the sample weights), ``forces`` and ``virial`` (RMS residuals in
        the fit, per noise factor) where fitted, and ``score``.
    reason : str
        Why this sigma.

    Examples
    --------
    >>> choice = EnergySigmaChoice(0.01, [], "the evidence's")
    >>> choice.as_dict()["sigma"]
    0.01
    """

    sigma: float
    candidates: List[Dict[str, float]]
    reason: str

    def as_dict(self) -> dict:
        """JSON-able form (for ``provenance_``).

        Returns
        -------
        dict
            ``sigma``, ``reason`` and ``candidates``.

        Examples
        --------
        >>> sorted(EnergySigmaChoice(0.01, [{"sigma": 0.01, "energy": 0.002}], "why").as_dict())
        ['candidates', 'reason', 'sigma']
        """
        return {"sigma": float(self.sigma), "reason": self.reason,
                "candidates": [{k: float(v) for k, v in c.items()} for c in self.candidates]}


def choose_energy_sigma(statistics: EvidenceStatistics, energies: EnergyRows, deltas: Dict[str, float],
                        sigmas: Dict[str, float], *, low: float = 0.0, jitter: float = 1e-8,
                        n_folds: int = FOLDS, seed: int = 0) -> EnergySigmaChoice:
    """The energy noise sigma by cross-validation of the energies (see the module).

    Parameters
    ----------
    statistics : EvidenceStatistics
        The observations of the fit, collected at ``delta = 1`` (an ``"energy"`` group).
    energies : EnergyRows
        The same energies, kept row by row.
    deltas : dict of str to float
        The deltas of the blocks of ``statistics`` (the evidence's).
    sigmas : dict of str to float
        The noise sigma of each group (the evidence's); ``sigmas["energy"]`` is the
        largest candidate.
    low : float, default=0.0
        No candidate below this.
    jitter : float, default=1e-8
        As in the fit.
    n_folds : int, default=5
        Folds over the energies.
    seed : int, default=0
        Seed of the folds.

    Returns
    -------
    EnergySigmaChoice
        The chosen sigma, every candidate's errors and score, and the reason.

    Examples
    --------
    Energies that the forces predict well (noise-free, one per structure) against
    a loose evidence value:

    >>> import numpy as np
    >>> from gapy.gp.evidence import EvidenceStatistics
    >>> rng = np.random.default_rng(0)
    >>> weights = rng.normal(size=6)
    >>> statistics, energies = EvidenceStatistics(np.eye(6)), EnergyRows()
    >>> forces = rng.normal(size=(60, 6))
    >>> statistics.add("forces", forces, forces @ weights + 0.05 * rng.normal(size=60), np.ones(60))
    >>> rows = rng.normal(size=(60, 6))  # at least MIN_ENERGIES
    >>> for part in (rows[:30], rows[30:]):
    ...     statistics.add("energy", part, part @ weights, np.ones(len(part)))
    ...     energies.add(part, part @ weights, np.ones(len(part)), np.ones(len(part)), np.ones(len(part)))
    >>> choice = choose_energy_sigma(statistics, energies, {"delta": 1.0}, {"forces": 0.05, "energy": 1.0})
    >>> choice.sigma < 1.0
    True
    """
    rows = np.vstack(energies.rows) if energies.rows else np.zeros((0, len(statistics.kmm)))
    targets = np.concatenate(energies.targets) if energies.targets else np.zeros(0)
    # held-out residuals (in units of the scaled targets) to eV/atom, and the weights of their mean
    per_atom = np.concatenate(energies.scales) / np.concatenate(energies.n_atoms) if energies.scales else np.zeros(0)
    importance = np.concatenate(energies.weights) if energies.weights else np.zeros(0)
    importance = importance / np.mean(importance) if len(importance) else importance
    largest = float(sigmas["energy"])
    least = max(MIN_ENERGIES, n_folds, 2)
    if energies.overflow or len(targets) < least:
        why = f"more than {MAX_ENERGIES} energies" if energies.overflow else f"fewer than {least} energies"
        return EnergySigmaChoice(largest, [], f"the evidence's ({why}: not cross-validated)")
    others = EvidenceStatistics(statistics.kmm, {k: v for k, v in statistics.groups.items() if k != "energy"},
                                statistics.blocks)
    factors, scale, _, _, r0, c0, _ = _posterior(others, deltas, sigmas, jitter)
    # W = A D R0^-1, its Gram matrix and the energies the fit without them predicts
    basis = solve_triangular(r0, (rows * scale).T, trans="T", lower=False).T
    gram, predicted = basis @ basis.T, basis @ c0
    folds = np.array_split(np.random.default_rng(seed).permutation(len(targets)), n_folds)
    candidates = [largest * 0.5**k for k in range(HALVINGS + 1) if largest * 0.5**k >= low] or [largest]
    table, squared = [], []
    for sigma in candidates:
        held_out = np.zeros(len(targets))
        for fold in folds:
            kept = np.setdiff1d(np.arange(len(targets)), fold)
            v = _small_solve(gram[np.ix_(kept, kept)], targets[kept] - predicted[kept], sigma)
            held_out[fold] = predicted[fold] + gram[np.ix_(fold, kept)] @ v / sigma
        squared.append(importance * ((held_out - targets) * per_atom) ** 2)
        row = {"sigma": sigma, "energy": float(np.sqrt(np.mean(squared[-1])))}
        v = _small_solve(gram, targets - predicted, sigma)
        weights = solve_triangular(r0, c0 + basis.T @ v / sigma, lower=False)  # x of predictions A D x
        for name, entry in others.groups.items():
            r_g, z_g = factors[name]
            residual = (entry["targets"] - z_g @ z_g) + np.sum((z_g - (r_g * scale) @ weights) ** 2)
            row[name] = float(np.sqrt(max(residual, 0.0) / max(entry["n"], 1)))
        table.append(row)
    kinds = [name for name in table[0] if name != "sigma"]
    lowest = {name: min(row[name] for row in table) for name in kinds}
    for row in table:
        row["score"] = float(np.mean([row[name] / lowest[name] if lowest[name] > 0 else 1.0 for name in kinds]))
    lowest_score = min(range(len(table)), key=lambda k: table[k]["score"])
    # the largest sigma whose score is within one standard error of the lowest (the energies' part, from the
    # paired per-structure differences): a flat score is noise, and the evidence's sigma the default
    for k, row in enumerate(table):
        difference = squared[k] - squared[lowest_score]
        error = np.std(difference, ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
        row["score_error"] = float(error / (2 * table[lowest_score]["energy"] * lowest["energy"] * len(kinds))
                                   if lowest["energy"] > 0 else 0.0)
    best = next(row for k, row in enumerate(table)
                if k == lowest_score or row["score"] - table[lowest_score]["score"] <= row["score_error"])
    reason = (f"{n_folds}-fold cross-validation of the {len(targets)} energies among the evidence's "
              f"{largest:.3g} and its halvings (the largest within one standard error of the lowest score, "
              f"{table[lowest_score]['sigma']:.3g}'s): held-out energy residuals "
              f"{table[0]['energy']:.3g} -> {best['energy']:.3g} eV/atom"
              + "".join(f", {name} residuals {table[0][name]:.3g} -> {best[name]:.3g}" for name in kinds
                        if name != "energy"))
    return EnergySigmaChoice(float(best["sigma"]), table, reason)


def _small_solve(gram: np.ndarray, residual: np.ndarray, sigma: float) -> np.ndarray:
    """``v = (I + G / sigma^2)^-1 residual / sigma``."""
    system = np.eye(len(gram)) + gram / sigma**2
    return cho_solve(cho_factor(system), residual / sigma)


def energy_spread(compositions, energies, singles) -> float:
    """Standard deviation (eV/atom) of the energies per atom less a least-squares fit on the
    compositions (what per-species constants leave), single atoms left out; 0 without two."""
    rows = [row for row, single in enumerate(singles) if single is None]
    if len(rows) < 2:
        return 0.0
    counts = np.array([compositions[row] for row in rows], dtype=float)
    values = np.array([energies[row] for row in rows], dtype=float)
    residual = values - counts @ np.linalg.lstsq(counts, values, rcond=None)[0]
    return float(np.std(residual / counts.sum(axis=1)))
