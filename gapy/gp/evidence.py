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
QR factorisation of the small stacked system per evaluation gives ``P = R^T R``. With
``P = delta^2 K0 + sum_g delta^4 / sigma_g^2 G_g`` (``K0`` the unit ``K_MM``, ``P = R^T R``
of the fit) and ``c = R^-T sum_g delta^2 / sigma_g^2 h_g``::

    log p(y) = -1/2 (sum_g beta_g / sigma_g^2 - |c|^2)
               - 1/2 (sum_g n_g log sigma_g^2 + 2 sum_i log s_i + log|P| - log|delta^2 K0|)
               - N/2 log(2 pi)

The gradient uses ``tr(C^-1 Lambda_g) = n_g - delta^4 / sigma_g^2 tr(P^-1 G_g)`` and the
scaled residuals ``|Lambda_g^-1/2 (y_g - K_gM alpha)|^2``; the derivative in
``log delta^2`` follows from ``tr(C^-1 C) = N``.

A model with extra terms (2-body, 3-body) has one ``delta`` per term: its rows are the
terms' rows side by side and ``K_MM`` is block-diagonal, so each block of columns
scales with its own ``delta`` (``EvidenceStatistics.blocks``). With ``D`` the diagonal
of the columns' deltas the model is that of rows ``A D`` and ``K_MM = K0``; the
derivative in ``log delta_b^2`` is ``y^T C^-1 Q_b C^-1 y - tr(C^-1 Q_b)`` with
``Q_b`` the block's part of ``Q``, which the fit's ``alpha`` and ``P^-1`` give:
``alpha_b^T K0_b alpha_b`` and ``m_b - tr([P^-1]_bb K0_b)``.
"""

import warnings
from dataclasses import dataclass, field
from typing import Collection, Dict, Optional, Sequence, Tuple, Union

import numpy as np
from scipy.linalg import cholesky, qr, solve_triangular
from scipy.optimize import minimize

from ..exceptions import SingularKernelError
from .fit import IncrementalQR


#: The default search window: a factor this either way of each starting value.
SEARCH_WINDOW = 100
#: Fewer observations than this per optimised parameter make :func:`maximize_evidence` warn: the
#: parameters are then barely determined (one energy alone put every delta on its lower bound).
MIN_OBSERVATIONS_PER_PARAMETER = 5


@dataclass
class EvidenceStatistics:
    """Sufficient statistics of the observations for the evidence (see the module).

    Each group's unit rows and targets are compressed by a running QR factorisation
    (``A_g = Q_g R_g``, ``z_g = Q_g^T b_g``), never by forming ``A_g^T A_g``: the evidence
    then stays as well conditioned as the fit itself.

    Every parameter is stored as an attribute of the same name.

    Parameters
    ----------
    kmm : ndarray of shape (M, M)
        ``K_MM`` at ``delta = 1`` (no jitter), in units of ``delta^2``.
    groups : dict of str to dict, default={}
        Per group (``"energy"``, ``"forces"``, ``"virial"``): ``"qr"`` (the running
        factorisation), ``"targets"`` (sum of squared unit targets), ``"n"`` and
        ``"log_scale"`` (sum of ``log s_i``). Normally left empty and filled by
        :meth:`add`.
    blocks : dict of str to slice, optional
        Columns that share one ``delta`` (the SOAP term and each extra term of a model,
        whose ``K_MM`` is block-diagonal); ``None``: one block ``"delta"`` of all columns.

    References
    ----------
    C. E. Rasmussen and C. K. I. Williams, Gaussian Processes for Machine Learning
    (MIT Press, 2006), ch. 5.

    J. Quiñonero-Candela and C. E. Rasmussen, "A unifying view of sparse approximate
    Gaussian process regression", J. Mach. Learn. Res. 6, 1939 (2005).

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.gp.evidence import EvidenceStatistics
    >>> rng = np.random.default_rng(0)
    >>> rows = rng.normal(size=(40, 3))  # unit kernel rows of 40 energies against M = 3 points
    >>> targets = rows @ [0.5, -1.0, 0.2] + 0.1 * rng.normal(size=40)
    >>> statistics = EvidenceStatistics(np.eye(3))  # K_MM at delta = 1
    >>> statistics.add("energy", rows, targets, np.ones(40))
    >>> statistics.groups["energy"]["n"]
    40
    """

    kmm: np.ndarray
    groups: Dict[str, dict] = field(default_factory=dict)
    blocks: Optional[Dict[str, slice]] = None

    def block_slices(self) -> Dict[str, slice]:
        """The column blocks that share one ``delta`` (:attr:`blocks`, or all columns).

        Returns
        -------
        dict of str to slice
            Block name to columns of ``K_MM``.

        Examples
        --------
        >>> import numpy as np
        >>> from gapy.gp.evidence import EvidenceStatistics
        >>> EvidenceStatistics(np.eye(3)).block_slices()
        {'delta': slice(None, None, None)}
        """
        return dict(self.blocks) if self.blocks else {"delta": slice(None)}

    def add(self, group: str, rows: np.ndarray, targets: np.ndarray, scales: np.ndarray) -> None:
        """Add observations of ``group``: unit kernel rows (delta = 1) and raw targets.

        Rows and targets are divided here by their relative noise factors ``scales``
        (``s_i``), so that the noise of observation ``i`` is ``sigma_group s_i``.

        Parameters
        ----------
        group : str
            Name of the group sharing one noise sigma (``"energy"``, ``"forces"``,
            ``"virial"``).
        rows : ndarray of shape (n, M)
            Kernel rows against the sparse points at ``delta = 1``; one row (M,) is
            taken as (1, M).
        targets : ndarray of shape (n,)
            Observed values (minus ``e0`` for energies), not divided by anything.
        scales : ndarray of shape (n,)
            Relative noise factor ``s_i`` > 0 of each observation (``sqrt(N_atoms)``,
            sample weights, ...).

        Examples
        --------
        >>> import numpy as np
        >>> from gapy.gp.evidence import EvidenceStatistics
        >>> statistics = EvidenceStatistics(np.eye(2))
        >>> statistics.add("forces", np.ones((3, 2)), np.array([1.0, 2.0, 3.0]), np.full(3, 2.0))
        >>> statistics.add("forces", np.ones((1, 2)), np.array([4.0]), np.ones(1))
        >>> entry = statistics.groups["forces"]
        >>> entry["n"], entry["targets"]  # (1 + 4 + 9) / 4 + 16
        (4, 19.5)
        """
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
        """``(R_g, z_g)`` of each group.

        Folds the rows still buffered in each group's factorisation first.

        Returns
        -------
        dict of str to tuple of ndarray
            For each group of ``n_g`` observations, the upper triangular ``R_g`` of shape
            (r, M) and ``z_g = Q_g^T b_g`` of shape (r,), ``r = min(n_g, M)``, with
            ``R_g^T R_g = A_g^T A_g`` and ``R_g^T z_g = A_g^T b_g`` for the scaled rows
            ``A_g`` and targets ``b_g`` (the rows of ``R_g`` below ``n_g`` are zero: a group
            with fewer observations than sparse points costs its observations only).

        Examples
        --------
        >>> import numpy as np
        >>> from gapy.gp.evidence import EvidenceStatistics
        >>> rng = np.random.default_rng(0)
        >>> rows = rng.normal(size=(40, 3))  # unit kernel rows of 40 energies against M = 3 points
        >>> targets = rows @ [0.5, -1.0, 0.2] + 0.1 * rng.normal(size=40)
        >>> statistics = EvidenceStatistics(np.eye(3))  # K_MM at delta = 1
        >>> statistics.add("energy", rows, targets, np.ones(40))
        >>> r_g, z_g = statistics.factors()["energy"]
        >>> bool(np.allclose(r_g.T @ r_g, rows.T @ rows)), bool(np.allclose(r_g.T @ z_g, rows.T @ targets))
        (True, True)
        """
        out = {}
        for name, entry in self.groups.items():
            entry["qr"].fold()
            rank = min(entry["n"], len(self.kmm))
            out[name] = (entry["qr"].r_factor[:rank], entry["qr"].rhs[:rank])
        return out


def log_marginal_likelihood(statistics: EvidenceStatistics, delta: Union[float, Dict[str, float]],
                            sigmas: Dict[str, float], jitter: float = 1e-8) -> Tuple[float, Dict[str, float]]:
    """Evidence and its gradient.

    Parameters
    ----------
    statistics : EvidenceStatistics
        The observations, collected at ``delta = 1``.
    delta : float or dict of str to float
        Kernel scale (eV); a dict gives one per block of :attr:`EvidenceStatistics.blocks`
        (the SOAP term and each extra term of a model).
    sigmas : dict of str to float
        Noise of each group of ``statistics`` (eV, eV/A, eV per atom, as the fit's).
    jitter : float, default=1e-8
        Added to the diagonal of ``delta^2 K_MM``, as in the fit.

    Returns
    -------
    value : float
        ``log p(y)``.
    gradient : dict of str to float
        Derivatives with respect to the log of each ``delta`` (the block names; ``"delta"``
        for a float) and ``log sigma_g`` (keys of ``sigmas``).

    Raises
    ------
    SingularKernelError
        ``K_MM`` is not positive definite with the jitter, or the posterior precision
        ``K_MM + K_MN Lambda^-1 K_NM`` is singular.

    References
    ----------
    C. E. Rasmussen and C. K. I. Williams, Gaussian Processes for Machine Learning
    (MIT Press, 2006), ch. 5.

    J. Quiñonero-Candela and C. E. Rasmussen, "A unifying view of sparse approximate
    Gaussian process regression", J. Mach. Learn. Res. 6, 1939 (2005).

    Examples
    --------
    With ``K_MM = I`` the model is ``y ~ N(0, delta^2 A A^T + sigma^2 I)``:

    >>> import numpy as np
    >>> from gapy.gp.evidence import EvidenceStatistics, log_marginal_likelihood
    >>> rng = np.random.default_rng(0)
    >>> rows = rng.normal(size=(40, 3))  # unit kernel rows of 40 energies against M = 3 points
    >>> targets = rows @ [0.5, -1.0, 0.2] + 0.1 * rng.normal(size=40)
    >>> statistics = EvidenceStatistics(np.eye(3))  # K_MM at delta = 1
    >>> statistics.add("energy", rows, targets, np.ones(40))
    >>> value, gradient = log_marginal_likelihood(statistics, 1.0, {"energy": 0.1})
    >>> from scipy.stats import multivariate_normal
    >>> exact = multivariate_normal(np.zeros(40), rows @ rows.T + 0.01 * np.eye(40)).logpdf(targets)
    >>> bool(np.isclose(value, exact))
    True
    >>> step = 1e-5  # the gradient is in log delta
    >>> up = log_marginal_likelihood(statistics, np.exp(step), {"energy": 0.1})[0]
    >>> down = log_marginal_likelihood(statistics, np.exp(-step), {"energy": 0.1})[0]
    >>> bool(np.isclose(gradient["delta"], (up - down) / (2 * step), rtol=1e-4))
    True
    """
    blocks = statistics.block_slices()
    groups = statistics.groups
    factors, scale, kmm, lower, r_factor, c, alpha = _posterior(statistics, delta, sigmas, jitter)
    m = len(kmm)
    diagonal = np.abs(np.diag(r_factor))
    fit_term = float(c @ c)
    data_term = sum(entry["targets"] / sigmas[name] ** 2 for name, entry in groups.items())
    n_total = sum(entry["n"] for entry in groups.values())
    log_det = 2 * np.log(diagonal).sum() - 2 * np.log(np.diag(lower)).sum()  # log|P| - log|K_MM|
    log_noise = sum(entry["n"] * np.log(sigmas[name] ** 2) + 2 * entry["log_scale"] for name, entry in groups.items())
    value = -0.5 * (data_term - fit_term) - 0.5 * (log_noise + log_det) - 0.5 * n_total * np.log(2 * np.pi)

    gradient = {}
    noise_quadratic = 0.0  # y^T C^-1 Lambda C^-1 y summed over groups
    noise_trace = 0.0  # tr(C^-1 Lambda) summed over groups
    for name, entry in groups.items():
        r_g, z_g = factors[name]
        s2 = sigmas[name] ** 2
        scaled = r_g * scale
        # scaled residuals of group g: |b_g - A_g D alpha|^2, from its QR compression
        residual = ((entry["targets"] - z_g @ z_g) + np.sum((z_g - scaled @ alpha) ** 2)) / s2
        # tr(C^-1 Lambda_g) = n_g - tr(P^-1 D G_g D) / sigma_g^2
        projected = solve_triangular(r_factor, scaled.T, trans="T", lower=False)
        trace = entry["n"] - float(np.sum(projected**2)) / s2
        # d log p / d log sigma_g^2 = 1/2 y^T C^-1 Lambda_g C^-1 y - 1/2 tr(C^-1 Lambda_g)
        gradient[name] = residual - trace  # per log sigma_g
        noise_quadratic += residual
        noise_trace += trace
    # d C / d log delta_b^2 = Q_b, the block's part of Q = C - Lambda (up to the jitter):
    # y^T C^-1 Q_b C^-1 y = alpha_b^T K0_b alpha_b, tr(C^-1 Q_b) = m_b - tr([P^-1]_bb K0_b);
    # the largest block takes what the others leave of y^T C^-1 Q C^-1 y and tr(C^-1 Q)
    kernel_quadratic = (data_term - fit_term) - noise_quadratic
    kernel_trace = n_total - noise_trace
    largest = max(blocks, key=lambda name: _width(blocks[name], m))
    for name, columns in blocks.items():
        if name == largest:
            continue
        block_alpha = alpha[columns]
        quadratic = float(block_alpha @ kmm[columns, columns] @ block_alpha)
        projected = solve_triangular(r_factor, lower[:, columns], trans="T", lower=False)
        trace = _width(columns, m) - float(np.sum(projected**2))
        gradient[name] = quadratic - trace
        kernel_quadratic -= quadratic
        kernel_trace -= trace
    gradient[largest] = kernel_quadratic - kernel_trace
    return float(value), gradient


def _posterior(statistics: EvidenceStatistics, delta, sigmas: Dict[str, float], jitter: float):
    """The posterior of the weights at these hyperparameters, in the units of the unit rows.

    Returns the groups' ``(R_g, z_g)``, the delta ``D`` of each column, the jittered unit
    ``K0``, its Cholesky factor, the factor ``R`` of ``P = R^T R``, ``c`` and ``alpha``
    (predictions are ``A D alpha``).
    """
    blocks = statistics.block_slices()
    deltas = _deltas(delta, blocks)
    factors = statistics.factors()
    m = len(statistics.kmm)
    scale = np.empty(m)  # D: the delta of each column
    for name, columns in blocks.items():
        scale[columns] = deltas[name]
    # delta^2 K_MM + jitter = D (K0 + jitter D^-2) D: everything below is in the units of
    # the unit rows A D and the jittered unit K0 (the same model, see the module)
    kmm = statistics.kmm + np.diag(jitter / scale**2)
    try:
        lower = cholesky(kmm, lower=True)
    except np.linalg.LinAlgError as error:
        raise SingularKernelError("K_MM is not positive definite at this delta; increase the jitter") from error
    stacked = np.zeros((sum(len(z_g) for _, z_g in factors.values()) + m, m + 1))
    start = 0
    for name, (r_g, z_g) in factors.items():
        rows = slice(start, start + len(z_g))
        stacked[rows, :m] = r_g * (scale / sigmas[name])
        stacked[rows, m] = z_g / sigmas[name]
        start = rows.stop
    stacked[start:, :m] = lower.T
    (upper,) = qr(stacked, mode="r", overwrite_a=True, check_finite=False)
    r_factor, c = upper[:m, :m], upper[:m, m]
    if not np.all(np.abs(np.diag(r_factor)) > 0):
        raise SingularKernelError("K_MM + K_MN Lambda^-1 K_NM is singular at these hyperparameters")
    alpha = solve_triangular(r_factor, c, lower=False)
    return factors, scale, kmm, lower, r_factor, c, alpha


def _deltas(delta, blocks: Dict[str, slice]) -> Dict[str, float]:
    """``delta`` as one value per block (a float is the value of the single block)."""
    if isinstance(delta, dict):
        if set(delta) != set(blocks):
            raise ValueError(f"delta must give the blocks {sorted(blocks)}, got {sorted(delta)}")
        return {name: float(value) for name, value in delta.items()}
    if len(blocks) != 1:
        raise ValueError(f"the statistics have blocks {sorted(blocks)}: give delta as a dict of them")
    return {next(iter(blocks)): float(delta)}


def _width(columns: slice, m: int) -> int:
    return len(range(*columns.indices(m)))


@dataclass
class OptimizationResult:
    """Outcome of :func:`maximize_evidence`.

    Every parameter is stored as an attribute of the same name.

    Parameters
    ----------
    delta : float
        The chosen kernel scale (eV) of the first block (the SOAP term's).
    sigmas : dict of str to float
        The chosen noise sigma of each group (units of the group's observations).
    log_marginal_likelihood : float
        The evidence ``log p(y)`` at that point.
    converged : bool
        Whether L-BFGS-B reported success.
    at_bounds : list of str
        Parameters that ended on a bound of the search.
    deltas : dict of str to float, optional
        The chosen delta of every block (``{"delta": delta}`` for one block).
    at_lower_bounds : list of str, default=[]
        Those of ``at_bounds`` on their lower bound.

    Examples
    --------
    >>> from gapy.gp.evidence import OptimizationResult
    >>> result = OptimizationResult(delta=0.7, sigmas={"energy": 0.1}, log_marginal_likelihood=25.9,
    ...                             converged=True, at_bounds=[])
    >>> result.converged and not result.at_bounds
    True
    """

    delta: float
    sigmas: Dict[str, float]
    log_marginal_likelihood: float
    converged: bool
    at_bounds: Sequence[str]
    deltas: Optional[Dict[str, float]] = None
    at_lower_bounds: Sequence[str] = field(default_factory=list)

    def __post_init__(self):
        if self.deltas is None:
            self.deltas = {"delta": self.delta}


def residual_shares(statistics: EvidenceStatistics, delta: Union[float, Dict[str, float]],
                    sigmas: Dict[str, float], jitter: float = 1e-8) -> Dict[str, float]:
    """RMS of each group's residuals after the fit, as a share of the RMS of its targets.

    Both are per unit noise factor (``b_i - a_i alpha`` and ``b_i``). Near 1 the model
    leaves the group's labels as they are, practically unfitted (labels that disagree
    with the others, which the evidence gives a large noise); a good fit leaves a few
    per cent.

    Parameters
    ----------
    statistics : EvidenceStatistics
        The observations, collected at ``delta = 1``.
    delta : float or dict of str to float
        Kernel scale(s), as for :func:`log_marginal_likelihood`.
    sigmas : dict of str to float
        Noise sigma of each group.
    jitter : float, default=1e-8
        Added to the diagonal of ``delta^2 K_MM``, as in the fit.

    Returns
    -------
    dict of str to float
        The share of each group whose targets are not all zero.

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.gp.evidence import EvidenceStatistics, residual_shares
    >>> rng = np.random.default_rng(0)
    >>> rows = rng.normal(size=(40, 3))
    >>> statistics = EvidenceStatistics(np.eye(3))
    >>> statistics.add("forces", rows, rows @ [0.5, -1.0, 0.2], np.ones(40))
    >>> statistics.add("virial", rows[:10], -rows[:10] @ [0.5, -1.0, 0.2], np.ones(10))  # the wrong sign
    >>> {name: round(share, 2) for name, share in residual_shares(statistics, 1.0, {"forces": 0.1,
    ...                                                                             "virial": 5.0}).items()}
    {'forces': 0.0, 'virial': 2.0}
    """
    factors, scale, _, _, _, _, alpha = _posterior(statistics, delta, sigmas, jitter)
    shares = {}
    for name, entry in statistics.groups.items():
        r_g, z_g = factors[name]
        if entry["targets"] > 1e-12 * entry["n"]:  # (labels not all zero)
            residual = (entry["targets"] - z_g @ z_g) + np.sum((z_g - (r_g * scale) @ alpha) ** 2)
            shares[name] = float(np.sqrt(max(residual, 0.0) / entry["targets"]))
    return shares


def maximize_evidence(statistics: EvidenceStatistics, delta: Union[float, Dict[str, float]],
                      sigmas: Dict[str, float], *,
                      bounds: Optional[Dict[str, Tuple[float, float]]] = None, fixed: Sequence[str] = (),
                      jitter: float = 1e-8, warn_bounds: bool = True) -> OptimizationResult:
    """The ``delta`` and noise sigmas that maximise the evidence (L-BFGS-B in log space).

    Parameters
    ----------
    statistics : EvidenceStatistics
        The observations, collected at ``delta = 1``.
    delta : float or dict of str to float
        Starting kernel scale (eV), or one per block of ``statistics`` (as
        :func:`log_marginal_likelihood`).
    sigmas : dict of str to float
        Starting noise sigma of each group of ``statistics``.
    bounds : dict, optional
        ``name: (low, high)`` for the deltas (``"delta"`` or the block names) and the
        sigmas (names as the keys of ``sigmas``); default a factor 100 around the start.
    fixed : sequence of str, default=()
        Parameters kept at their starting values.
    jitter : float, default=1e-8
        Added to the diagonal of ``delta^2 K_MM``, as in the fit.
    warn_bounds : bool, default=True
        Warn of parameters on a bound of the search (:func:`warn_at_bounds`); ``False``
        leaves that to the caller (which may answer some of them).

    Returns
    -------
    OptimizationResult
        The best point found.

    Warns
    -----
    RuntimeWarning
        The optimiser did not converge, parameters ended on a bound of the search, or
        there are fewer than :data:`MIN_OBSERVATIONS_PER_PARAMETER` observations per
        parameter optimised (one energy for a delta and a sigma).

    References
    ----------
    C. E. Rasmussen and C. K. I. Williams, Gaussian Processes for Machine Learning
    (MIT Press, 2006), ch. 5.

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.gp.evidence import EvidenceStatistics, maximize_evidence
    >>> rng = np.random.default_rng(0)
    >>> rows = rng.normal(size=(40, 3))  # unit kernel rows of 40 energies against M = 3 points
    >>> targets = rows @ [0.5, -1.0, 0.2] + 0.1 * rng.normal(size=40)
    >>> statistics = EvidenceStatistics(np.eye(3))  # K_MM at delta = 1
    >>> statistics.add("energy", rows, targets, np.ones(40))
    >>> result = maximize_evidence(statistics, delta=1.0, sigmas={"energy": 1.0})
    >>> result.converged, round(float(result.sigmas["energy"]), 3)  # the noise was 0.1
    (True, 0.096)
    """
    deltas = _deltas(delta, statistics.block_slices())
    start = {**deltas, **{k: float(v) for k, v in sigmas.items()}}
    names = [name for name in start if name not in fixed]
    n_observations = sum(entry["n"] for entry in statistics.groups.values())
    if n_observations < MIN_OBSERVATIONS_PER_PARAMETER * len(names):
        warnings.warn(f"evidence maximisation: {n_observations} observations for {len(names)} parameters "
                      f"({', '.join(names)}): too few to determine them (fewer than {MIN_OBSERVATIONS_PER_PARAMETER} "
                      "per parameter); keep some as they are (fixed) or add data", RuntimeWarning, stacklevel=2)
    given = set(bounds or {})
    bounds = {**{name: (value / SEARCH_WINDOW, value * SEARCH_WINDOW) for name, value in start.items()},
              **(bounds or {})}
    best = {"value": -np.inf, "point": dict(start)}
    n_total = max(sum(entry["n"] for entry in statistics.groups.values()), 1)
    as_given = (lambda point: {k: point[k] for k in deltas}) if isinstance(delta, dict) else (
        lambda point: point[next(iter(deltas))])

    def objective(log_values):
        point = dict(start)
        point.update(zip(names, np.exp(log_values)))
        try:
            value, gradient = log_marginal_likelihood(statistics, as_given(point),
                                                      {k: point[k] for k in sigmas}, jitter)
        except SingularKernelError:  # a trial point too far out: make the line search step back
            return np.inf, np.zeros(len(names))
        if value > best["value"]:
            best.update(value=value, point=point)
        # per observation: the first L-BFGS-B step is the gradient itself, so keep it O(1)
        return -value / n_total, -np.array([gradient[name] for name in names]) / n_total

    if not names:  # everything kept: the evidence at the start (L-BFGS-B refuses no variables)
        value = log_marginal_likelihood(statistics, as_given(start), {k: start[k] for k in sigmas}, jitter)[0]
        return OptimizationResult(delta=deltas[next(iter(deltas))], sigmas={k: start[k] for k in sigmas},
                                  log_marginal_likelihood=float(value), converged=True, at_bounds=[], deltas=deltas)
    result = minimize(objective, np.log([start[name] for name in names]), jac=True, method="L-BFGS-B",
                      bounds=[tuple(np.log(bounds[name])) for name in names])
    point = best["point"]
    lower = [name for name in names if np.isclose(np.log(point[name]), np.log(bounds[name][0]), atol=1e-3)]
    at_bounds = [name for name in names
                 if name in lower or np.isclose(np.log(point[name]), np.log(bounds[name][1]), atol=1e-3)]
    if not result.success:
        reason = str(result.message).strip().rstrip(":")
        if reason.startswith("ABNORMAL"):  # L-BFGS-B's line search found no better point
            reason = "the line search found no better point"
        warnings.warn(f"evidence maximisation did not converge ({reason}, after {result.nfev} evaluations); "
                      "keeping the best point found", RuntimeWarning, stacklevel=2)
    chosen = {k: point[k] for k in deltas}
    found = OptimizationResult(delta=chosen[next(iter(deltas))], sigmas={k: point[k] for k in sigmas},
                               log_marginal_likelihood=float(best["value"]), converged=bool(result.success),
                               at_bounds=at_bounds, deltas=chosen, at_lower_bounds=lower)
    if warn_bounds:
        warn_at_bounds(found, given, stacklevel=2)
    return found


def warn_at_bounds(result: OptimizationResult, given: Collection[str] = (), answered: Collection[str] = (),
                   stacklevel: int = 2) -> None:
    """Warn of the parameters of ``result`` that ended on a bound of the search.

    Parameters
    ----------
    result : OptimizationResult
        What :func:`maximize_evidence` found.
    given : collection of str, default=()
        Parameters whose bounds the user gave (no advice to widen the default ones).
    answered : collection of str, default=()
        Parameters on a bound that the caller has dealt with: not named.
    stacklevel : int, default=2
        As in :func:`warnings.warn`, from the caller of this function.

    Warns
    -----
    RuntimeWarning
        One warning naming every such parameter, its bound and what it means.

    Examples
    --------
    >>> import warnings
    >>> result = OptimizationResult(delta=1.0, sigmas={"energy": 0.5}, log_marginal_likelihood=0.0,
    ...                             converged=True, at_bounds=["energy"])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_at_bounds(result)
    ...     warn_at_bounds(result, answered=["energy"])
    >>> len(caught), "noise sigma of energy at its upper bound 0.5" in str(caught[0].message)
    (1, True)
    """
    at_bounds = [name for name in result.at_bounds if name not in answered]
    if not at_bounds:
        return
    point = {**result.deltas, **result.sigmas}
    lower = set(result.at_lower_bounds)
    described = ", ".join(f"{name if name in result.deltas else 'the noise sigma of ' + name} at its "
                          f"{'lower' if name in lower else 'upper'} bound {point[name]:.3g}" for name in at_bounds)
    # a noise sigma on its upper bound is not to be widened: that would fit its labels more loosely still
    widen = [name for name in at_bounds if name not in given and (name in result.deltas or name in lower)]
    hint = ("" if not widen else
            f"; the search spans {SEARCH_WINDOW:g}x either way of the starting value: start nearer or give wider "
            "bounds")
    if any(name in result.sigmas for name in lower & set(at_bounds)):
        hint += (" (a noise sigma on its lower bound: the labels are fitted as closely as the search allows, as "
                 "with noise-free labels such as EMT's or copies of structures; the model then depends on the "
                 "bound)")
    if any(name in result.sigmas and name not in lower for name in at_bounds):
        hint += (" (a noise sigma on its upper bound: the evidence would fit those labels more loosely still, "
                 "as it can when other labels far outnumber them; to weigh them more, give that sigma by hand "
                 "and keep it fixed)")
    warnings.warn(f"evidence maximisation: {described} of the search{hint}", RuntimeWarning,
                  stacklevel=stacklevel + 1)
