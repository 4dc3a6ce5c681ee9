"""The evidence (log marginal likelihood) of the sparse GP and its gradient in the kernel
scale ``delta`` and the noise sigmas of each kind of observation.

The DTC model of ``N`` observations ``y`` is ``y ~ N(0, Q + Lambda)`` with
``Q = K_NM K_MM^-1 K_MN`` (Quinonero-Candela and Rasmussen, JMLR 6, 1939 (2005)). Every
kernel row scales as ``delta^2`` and the noise of observation ``i`` of group ``g``
(energies, forces, virials) is ``sigma_g s_i``, with fixed relative factors ``s_i``
(``sqrt(N_atoms)``, sample and per-atom weights). So sufficient statistics collected once
from the unit rows ``a_i = k_i(delta=1) / s_i`` and targets ``b_i = y_i / s_i``,

    G_g = sum_i a_i a_i^T,  h_g = sum_i a_i b_i,  beta_g = sum_i b_i^2,  n_g,  sum_i log s_i,

give the evidence at any ``(delta, sigma_g)`` without a refit: each group is kept as the
triangular factor of a running QR factorisation of its rows (never ``A^T A``), and one
QR factorisation of the small stacked system per evaluation gives ``P = R^T R``. With ``P = delta^2 K0 + sum_g delta^4 / sigma_g^2 G_g`` (``K0`` the unit
``K_MM``, ``P = R^T R`` of the fit) and ``c = R^-T sum_g delta^2 / sigma_g^2 h_g``::

    log p(y) = -1/2 (sum_g beta_g / sigma_g^2 - |c|^2)
               - 1/2 (sum_g n_g log sigma_g^2 + 2 sum_i log s_i + log|P| - log|delta^2 K0|)
               - N/2 log(2 pi)

The gradient uses ``tr(C^-1 Lambda_g) = n_g - delta^4 / sigma_g^2 tr(P^-1 G_g)`` and the
scaled residuals ``|Lambda_g^-1/2 (y_g - K_gM alpha)|^2``; the derivative in
``log delta^2`` follows from ``tr(C^-1 C) = N``.
"""

import warnings
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.linalg import cholesky, qr, solve_triangular
from scipy.optimize import minimize

from ..exceptions import SingularKernelError
from .fit import IncrementalQR


@dataclass
class EvidenceStatistics:
    """Sufficient statistics of the observations for the evidence (see the module).

    Each group's unit rows and targets are compressed by a running QR factorisation
    (``A_g = Q_g R_g``, ``z_g = Q_g^T b_g``), never by forming ``A_g^T A_g``: the evidence
    then stays as well conditioned as the fit itself.

    Attributes
    ----------
    kmm : ndarray of shape (M, M)
        ``K_MM`` at ``delta = 1`` (no jitter).
    groups : dict of str to dict
        Per group (``"energy"``, ``"forces"``, ``"virial"``): ``"qr"`` (the running
        factorisation), ``"targets"`` (sum of squared unit targets), ``"n"`` and
        ``"log_scale"`` (sum of ``log s_i``).
    """

    kmm: np.ndarray
    groups: Dict[str, dict] = field(default_factory=dict)

    def add(self, group: str, rows: np.ndarray, targets: np.ndarray, scales: np.ndarray) -> None:
        """Add observations of ``group``: unit kernel rows (delta = 1) and raw targets,
        each divided by its relative noise factor ``scales`` (``s_i``) here."""
        rows = np.atleast_2d(rows) / scales[:, None]
        targets = np.asarray(targets, dtype=float) / scales
        m = len(self.kmm)
        entry = self.groups.setdefault(group, {"qr": IncrementalQR(np.zeros((m, m))), "targets": 0.0, "n": 0,
                                               "log_scale": 0.0})
        entry["qr"].add(rows, targets)
        entry["targets"] += float(targets @ targets)
        entry["n"] += len(targets)
        entry["log_scale"] += float(np.log(scales).sum())

    def factors(self) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """``(R_g, z_g)`` of each group."""
        out = {}
        for name, entry in self.groups.items():
            entry["qr"].fold()
            out[name] = (entry["qr"].r_factor, entry["qr"].rhs)
        return out


def log_marginal_likelihood(statistics: EvidenceStatistics, delta: float, sigmas: Dict[str, float],
                            jitter: float = 1e-8) -> Tuple[float, Dict[str, float]]:
    """Evidence and its gradient.

    Parameters
    ----------
    statistics : EvidenceStatistics
    delta : float
        Kernel scale (eV).
    sigmas : dict of str to float
        Noise of each group of ``statistics`` (eV, eV/A, eV per atom, as the fit's).
    jitter : float, default=1e-8
        Added to the diagonal of ``delta^2 K_MM``, as in the fit.

    Returns
    -------
    value : float
        ``log p(y)``.
    gradient : dict of str to float
        Derivatives with respect to ``log delta`` (key ``"delta"``) and ``log sigma_g``
        (keys of ``sigmas``).

    Raises
    ------
    SingularKernelError
        ``K_MM`` is not positive definite with the jitter.
    """
    d2 = delta**2
    groups = statistics.groups
    factors = statistics.factors()
    m = len(statistics.kmm)
    try:
        lower = cholesky(d2 * statistics.kmm + jitter * np.eye(m), lower=True)
    except np.linalg.LinAlgError as error:
        raise SingularKernelError("K_MM is not positive definite at this delta; increase the jitter") from error
    # the stacked system [delta^2 / sigma_g R_g | z_g / sigma_g ; L^T | 0], as the fit's
    stacked = np.zeros(((len(groups) + 1) * m, m + 1))
    for k, (name, (r_g, z_g)) in enumerate(factors.items()):
        stacked[k * m:(k + 1) * m, :m] = d2 / sigmas[name] * r_g
        stacked[k * m:(k + 1) * m, m] = z_g / sigmas[name]
    stacked[len(groups) * m:, :m] = lower.T
    (upper,) = qr(stacked, mode="r", overwrite_a=True, check_finite=False)
    r_factor, c = upper[:m, :m], upper[:m, m]
    diagonal = np.abs(np.diag(r_factor))
    if not np.all(diagonal > 0):
        raise SingularKernelError("K_MM + K_MN Lambda^-1 K_NM is singular at these hyperparameters")
    alpha = solve_triangular(r_factor, c, lower=False)  # local energy = delta^2 k0 . alpha
    fit_term = float(c @ c)
    data_term = sum(entry["targets"] / sigmas[name] ** 2 for name, entry in groups.items())
    n_total = sum(entry["n"] for entry in groups.values())
    log_det = 2 * np.log(diagonal).sum() - 2 * np.log(np.diag(lower)).sum()  # log|P| - log|K_MM|
    log_noise = sum(entry["n"] * np.log(sigmas[name] ** 2) + 2 * entry["log_scale"] for name, entry in groups.items())
    value = -0.5 * (data_term - fit_term) - 0.5 * (log_noise + log_det) - 0.5 * n_total * np.log(2 * np.pi)

    gradient = {}
    d_total_quadratic = 0.0  # y^T C^-1 Lambda C^-1 y summed over groups
    d_total_trace = 0.0
    for name, entry in groups.items():
        r_g, z_g = factors[name]
        s2 = sigmas[name] ** 2
        # scaled residuals of group g: |b_g - A_g alpha|^2, from its QR compression
        residual = ((entry["targets"] - z_g @ z_g) + np.sum((z_g - d2 * r_g @ alpha) ** 2)) / s2
        # tr(C^-1 Lambda_g) = n_g - delta^4 / sigma_g^2 tr(P^-1 R_g^T R_g)
        projected = solve_triangular(r_factor, r_g.T, trans="T", lower=False)
        trace = entry["n"] - d2**2 / s2 * float(np.sum(projected**2))
        # d log p / d log sigma_g^2 = 1/2 y^T C^-1 Lambda_g C^-1 y - 1/2 tr(C^-1 Lambda_g)
        gradient[name] = residual - trace  # per log sigma_g
        d_total_quadratic += residual
        d_total_trace += trace
    # d C / d log delta^2 = Q = C - Lambda (up to the jitter)
    quadratic = data_term - fit_term  # y^T C^-1 y
    gradient["delta"] = (quadratic - d_total_quadratic) - (n_total - d_total_trace)
    return float(value), gradient


@dataclass
class OptimizationResult:
    """Outcome of :func:`maximize_evidence`.

    Attributes
    ----------
    delta : float
    sigmas : dict of str to float
    log_marginal_likelihood : float
    converged : bool
    at_bounds : list of str
        Parameters that ended on a bound of the search.
    """

    delta: float
    sigmas: Dict[str, float]
    log_marginal_likelihood: float
    converged: bool
    at_bounds: Sequence[str]


def maximize_evidence(statistics: EvidenceStatistics, delta: float, sigmas: Dict[str, float], *,
                      bounds: Optional[Dict[str, Tuple[float, float]]] = None, fixed: Sequence[str] = (),
                      jitter: float = 1e-8) -> OptimizationResult:
    """The ``delta`` and noise sigmas that maximise the evidence (L-BFGS-B in log space).

    Parameters
    ----------
    statistics : EvidenceStatistics
    delta, sigmas : float, dict
        Starting point.
    bounds : dict, optional
        ``name: (low, high)`` for ``"delta"`` and the sigmas; default a factor 100 around
        the start.
    fixed : sequence of str
        Parameters kept at their starting values.
    jitter : float, default=1e-8

    Returns
    -------
    OptimizationResult
        The best point found; a warning says when the optimiser did not converge and
        which parameters hit a bound.
    """
    start = {"delta": float(delta), **{k: float(v) for k, v in sigmas.items()}}
    names = [name for name in start if name not in fixed]
    bounds = {**{name: (value / 100, value * 100) for name, value in start.items()}, **(bounds or {})}
    best = {"value": -np.inf, "point": dict(start)}
    n_total = max(sum(entry["n"] for entry in statistics.groups.values()), 1)

    def objective(log_values):
        point = dict(start)
        point.update(zip(names, np.exp(log_values)))
        try:
            value, gradient = log_marginal_likelihood(statistics, point["delta"],
                                                      {k: point[k] for k in sigmas}, jitter)
        except SingularKernelError:  # a trial point too far out: make the line search step back
            return np.inf, np.zeros(len(names))
        if value > best["value"]:
            best.update(value=value, point=point)
        # per observation: the first L-BFGS-B step is the gradient itself, so keep it O(1)
        return -value / n_total, -np.array([gradient[name] for name in names]) / n_total

    result = minimize(objective, np.log([start[name] for name in names]), jac=True, method="L-BFGS-B",
                      bounds=[tuple(np.log(bounds[name])) for name in names])
    point = best["point"]
    at_bounds = [name for name in names
                 if np.isclose(np.log(point[name]), np.log(bounds[name][0]), atol=1e-3)
                 or np.isclose(np.log(point[name]), np.log(bounds[name][1]), atol=1e-3)]
    if not result.success:
        warnings.warn(f"evidence maximisation did not converge ({result.message}); keeping the best point "
                      f"found", RuntimeWarning, stacklevel=2)
    if at_bounds:
        warnings.warn(f"evidence maximisation: {', '.join(at_bounds)} ended on a bound of the search "
                      f"{ {name: bounds[name] for name in at_bounds} }", RuntimeWarning, stacklevel=2)
    return OptimizationResult(delta=point["delta"], sigmas={k: point[k] for k in sigmas},
                              log_marginal_likelihood=float(best["value"]), converged=bool(result.success),
                              at_bounds=at_bounds)
