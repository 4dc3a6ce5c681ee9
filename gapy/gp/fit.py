"""Fit a sparse GP: numerically stable, memory-bounded solution of the DTC equations.

The weights minimise ``|Lambda^{-1/2} (y - K_NM alpha)|^2 + alpha^T K_MM alpha``, i.e. the
least-squares problem ``[Lambda^{-1/2} K_NM; L^T] alpha = [Lambda^{-1/2} y; 0]`` with
``K_MM = L L^T``. It is solved by QR, never by forming the ill-conditioned normal matrix:
rows arrive in blocks and each block is folded into the running triangular factor
``R`` (``R^T R = K_MM + K_MN Lambda^{-1} K_NM``), so memory is ``O(M^2 + block)``.
"""

from typing import Iterable, Tuple

import numpy as np
from scipy.linalg import cho_factor, qr, solve_triangular

from ..exceptions import SingularKernelError
from .sparse_gp import SparseGP, SparseSet


def kmm_cholesky(kmm: np.ndarray, jitter: float) -> np.ndarray:
    """Lower Cholesky factor of ``kmm + jitter * I`` with a helpful error."""
    try:
        factor, _ = cho_factor(kmm + jitter * np.eye(len(kmm)), lower=True)
    except np.linalg.LinAlgError as error:
        raise SingularKernelError(
            f"K_MM ({len(kmm)} sparse points) is not positive definite with "
            f"sparse_jitter={jitter:g}: there are (near-)duplicate sparse points; increase "
            "sparse_jitter or ask for fewer sparse points"
        ) from error
    return np.tril(factor)


class IncrementalQR:
    """Running QR factorisation of the stacked, noise-scaled sparse GP system.

    Parameters
    ----------
    kmm_factor : ndarray of shape (M, M)
        Lower Cholesky factor ``L`` of ``K_MM``; the prior rows ``L^T``.
    block_rows : int
        Rows buffered before each QR update.
    """

    def __init__(self, kmm_factor: np.ndarray, block_rows: int = 4096):
        m = len(kmm_factor)
        self.r_factor = np.array(kmm_factor.T)
        self.rhs = np.zeros(m)
        self.block_rows = int(block_rows)
        self._rows = []
        self._targets = []
        self._buffered = 0
        self.n_rows = 0

    def add(self, rows: np.ndarray, targets: np.ndarray) -> None:
        """Add observations ``rows @ alpha ~ targets``, already divided by their sigma."""
        if len(rows) == 0:
            return
        self._rows.append(np.asarray(rows, dtype=float))
        self._targets.append(np.asarray(targets, dtype=float))
        self._buffered += len(rows)
        self.n_rows += len(rows)
        if self._buffered >= self.block_rows:
            self.fold()

    def fold(self) -> None:
        """Fold the buffered rows into the factor now."""
        if not self._buffered:
            return
        m = len(self.rhs)
        stacked = np.empty((m + self._buffered, m + 1))
        stacked[:m, :m] = self.r_factor
        stacked[:m, m] = self.rhs
        stacked[m:, :m] = np.concatenate(self._rows)
        stacked[m:, m] = np.concatenate(self._targets)
        self._rows, self._targets, self._buffered = [], [], 0
        (upper,) = qr(stacked, mode="r", overwrite_a=True, check_finite=False)
        self.r_factor = np.triu(upper[:m, :m])
        self.rhs = upper[:m, m].copy()

    def solve(self) -> np.ndarray:
        """Weights ``alpha = R^{-1} Q^T b``; afterwards ``r_factor`` is final."""
        self.fold()
        # QR leaves signs free; make the diagonal positive (R is then a Cholesky factor)
        signs = np.where(np.diag(self.r_factor) < 0, -1.0, 1.0)
        self.r_factor *= signs[:, None]
        self.rhs *= signs
        return solve_triangular(self.r_factor, self.rhs, lower=False)


def fit_sparse_gp(
    basis: SparseSet,
    row_blocks: Iterable[Tuple[np.ndarray, np.ndarray]],
    *,
    jitter: float = 1e-8,
    block_rows: int = 4096,
) -> SparseGP:
    """Fit the weights of a sparse GP to noise-scaled observations.

    Parameters
    ----------
    basis : SparseSet
        Sparse points and kernel; ``basis.rows`` gives the kernel rows of a structure.
    row_blocks : iterable of (rows, targets)
        Kernel rows against the sparse points (n, M) and their targets (n,), both already
        divided by the noise sigma of each observation; consumed once, block by block,
        so the observations are never all in memory.
    jitter : float, default=1e-8
        Added to the diagonal of ``K_MM``.
    block_rows : int, default=4096
        Rows buffered before each QR update (memory bound).

    Returns
    -------
    SparseGP
        ``basis`` with the fitted weights and the factors the variances need.

    Raises
    ------
    SingularKernelError
        ``K_MM`` is not positive definite with ``jitter``.
    ValueError
        ``row_blocks`` holds no observation.
    """
    kmm_factor = kmm_cholesky(basis.kernel_matrix(), jitter)
    solver = IncrementalQR(kmm_factor, block_rows)
    for rows, targets in row_blocks:
        solver.add(rows, targets)
    if solver.n_rows == 0:
        raise ValueError("the training structures have no label to fit (energy, forces or stress)")
    alpha = solver.solve()
    return SparseGP(**vars(basis), alpha=alpha, r_factor=solver.r_factor, kmm_factor=kmm_factor,
                    n_observations=solver.n_rows)
