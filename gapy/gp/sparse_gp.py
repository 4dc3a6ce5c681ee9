"""The fitted sparse GP: sparse points, weights and what the predictive variance needs.

Arrays only; no ASE. The estimator builds kernel rows (``design.kernel_rows``) and asks
this object for means and variances.
"""

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from ..kernels import dot_product_kernel

#: Kinds of predictive variance, see :meth:`SparseGP.variance`.
VARIANCE_KINDS = ("sor", "dtc", "local")


@dataclass
class SparseGP:
    """A fitted projected-process (DTC) Gaussian process.

    Attributes
    ----------
    sparse : ndarray of shape (M, n_features)
        Sparse points (descriptor vectors).
    sparse_species : ndarray of int of shape (M,)
        Species index of each sparse point.
    zeta : int
        Kernel exponent.
    delta : float
        Kernel scale (eV): ``k(q, q) = delta^2``.
    alpha : ndarray of shape (M,)
        Weights: a local energy is ``sum_m alpha_m K(q, x_m)``.
    r_factor : ndarray of shape (M, M)
        Upper triangular ``R`` with ``R^T R = K_MM + K_MN Lambda^-1 K_NM``, the
        posterior precision of the weights.
    kmm_factor : ndarray of shape (M, M)
        Lower Cholesky factor ``L`` of ``K_MM`` (with jitter).
    """

    sparse: np.ndarray
    sparse_species: np.ndarray
    zeta: int
    delta: float
    alpha: np.ndarray
    r_factor: np.ndarray
    kmm_factor: np.ndarray

    def local_kernel(self, values, species):
        """``K(q_i, x_m)`` (with ``delta^2``) and ``dK/dq_i = factor[i, m] x_m``."""
        kernel, factor = dot_product_kernel(values, species, self.sparse, self.sparse_species, self.zeta)
        scale = self.delta**2
        return scale * kernel, scale * factor

    def energy_gradient_weights(self, factor: np.ndarray) -> np.ndarray:
        """``d e_i / d q_i`` for every atom, from the kernel derivative factor."""
        return (factor * self.alpha) @ self.sparse

    def variance(self, rows: np.ndarray, kind: str = "sor", prior=None) -> np.ndarray:
        """Predictive variance of observations with kernel rows ``rows`` (n, M).

        Parameters
        ----------
        rows : ndarray of shape (n, M)
        kind : {"sor", "dtc", "local"}
            ``"sor"``: ``k* Sigma k*^T`` with ``Sigma = (K_MM + K_MN Lambda^-1 K_NM)^-1``,
            the posterior variance of the projected process (subset of regressors);
            ``"local"``: the Nystrom residual ``k** - k* K_MM^-1 k*^T`` (QUIP's
            ``local_gap_variance``); ``"dtc"``: their sum.
        prior : ndarray of shape (n,), optional
            Prior variances ``k**``; needed for ``"dtc"`` and ``"local"``.

        Returns
        -------
        ndarray of shape (n,)
            Variances (eV^2 for energies), clipped at zero.
        """
        if kind not in VARIANCE_KINDS:
            raise ValueError(f"variance must be one of {VARIANCE_KINDS}, got {kind!r}")
        rows = np.atleast_2d(rows)
        out = np.zeros(len(rows))
        if kind in ("sor", "dtc"):
            projected = solve_triangular(self.r_factor, rows.T, trans="T", lower=False)
            out += (projected**2).sum(axis=0)
        if kind in ("dtc", "local"):
            if prior is None:
                raise ValueError(f"variance kind {kind!r} needs the prior variances")
            explained = solve_triangular(self.kmm_factor, rows.T, lower=True)
            out += np.asarray(prior) - (explained**2).sum(axis=0)
        return np.maximum(out, 0.0)
