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
    """Lower Cholesky factor of ``kmm + jitter * I`` with a helpful error.

    Parameters
    ----------
    kmm : ndarray of shape (M, M)
        Kernel matrix of the sparse points (eV^2), symmetric.
    jitter : float
        Added to the diagonal (eV^2), the model's ``sparse_jitter``.

    Returns
    -------
    ndarray of shape (M, M)
        Lower triangular ``L`` with ``L L^T = kmm + jitter * I``.

    Raises
    ------
    gapy.exceptions.SingularKernelError
        ``kmm + jitter * I`` is not positive definite (near-duplicate sparse points).

    Examples
    --------
    >>> from gapy.gp import kmm_cholesky
    >>> import numpy as np
    >>> kmm = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> factor = kmm_cholesky(kmm, jitter=1e-8)
    >>> bool(np.allclose(factor @ factor.T, kmm))
    True
    >>> kmm_cholesky(np.ones((2, 2)), jitter=0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gapy.exceptions.SingularKernelError: K_MM (2 sparse points) is not positive definite with sparse_jitter=0: ...
    """
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
    block_rows : int, default=4096
        Rows buffered before each QR update; memory is ``O((M + block_rows) M)``.

    Attributes
    ----------
    r_factor : ndarray of shape (M, M)
        The running upper triangular factor ``R``; final after :meth:`solve`, when
        ``R^T R = K_MM + sum rows^T rows``.
    n_rows : int
        Observation rows added so far.

    Examples
    --------
    Weights of the regularised least-squares problem, two blocks at a time:

    >>> from gapy.gp import IncrementalQR
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> kmm, rows, targets = np.eye(3), rng.normal(size=(5, 3)), rng.normal(size=5)
    >>> solver = IncrementalQR(np.linalg.cholesky(kmm), block_rows=2)
    >>> solver.add(rows[:2], targets[:2])
    >>> solver.add(rows[2:], targets[2:])
    >>> alpha = solver.solve()
    >>> bool(np.allclose(alpha, np.linalg.solve(kmm + rows.T @ rows, rows.T @ targets)))
    True
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
        """Add observations ``rows @ alpha ~ targets``, already divided by their sigma.

        Rows are buffered and folded into the factor once ``block_rows`` have gathered.

        Parameters
        ----------
        rows : ndarray of shape (n, M)
            Kernel rows against the sparse points, divided by each observation's noise
            sigma.
        targets : ndarray of shape (n,)
            Observed values (minus ``e0`` for energies), divided by the same sigmas.

        Examples
        --------
        >>> from gapy.gp import IncrementalQR
        >>> import numpy as np
        >>> solver = IncrementalQR(np.eye(2))
        >>> solver.add(np.ones((3, 2)), np.zeros(3))
        >>> solver.n_rows
        3
        """
        if len(rows) == 0:
            return
        self._rows.append(np.asarray(rows, dtype=float))
        self._targets.append(np.asarray(targets, dtype=float))
        self._buffered += len(rows)
        self.n_rows += len(rows)
        if self._buffered >= self.block_rows:
            self.fold()

    def fold(self) -> None:
        """Fold the buffered rows into the factor now.

        :meth:`add` does this by itself every ``block_rows`` rows and :meth:`solve` at
        the end; afterwards ``R^T R = L L^T + sum rows^T rows`` and ``rhs = Q^T b``
        (the signs of the rows of ``R`` are made positive only by :meth:`solve`).

        Examples
        --------
        >>> from gapy.gp import IncrementalQR
        >>> import numpy as np
        >>> solver = IncrementalQR(np.eye(2))  # block_rows=4096: the rows stay buffered
        >>> solver.add(np.ones((3, 2)), np.zeros(3))
        >>> solver.fold()
        >>> bool(np.allclose(solver.r_factor.T @ solver.r_factor, np.eye(2) + 3 * np.ones((2, 2))))
        True
        """
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
        """Weights ``alpha = R^{-1} Q^T b``; afterwards ``r_factor`` is final.

        Returns
        -------
        ndarray of shape (M,)
            The weights ``alpha`` (1/eV for kernels in eV^2 and targets in eV), which
            minimise ``|rows alpha - targets|^2 + alpha^T K_MM alpha``.

        Examples
        --------
        >>> from gapy.gp import IncrementalQR
        >>> import numpy as np
        >>> solver = IncrementalQR(np.eye(2))
        >>> solver.add(np.eye(2), np.array([2.0, 4.0]))
        >>> solver.solve()  # (I + I) alpha = (2, 4)
        array([1., 2.])
        """
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
    gapy.exceptions.SingularKernelError
        ``K_MM`` is not positive definite with ``jitter``.
    ValueError
        ``row_blocks`` holds no observation.

    Examples
    --------
    Local energies observed directly, with a noise sigma of 0.01 eV:

    >>> from gapy.gp import SparseSet, fit_sparse_gp
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 3))
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> species = np.zeros(50, dtype=int)
    >>> basis = SparseSet(x[:10], species[:10], zeta=2, delta=1.0)
    >>> rows = basis.rows(x, species)["energies"]
    >>> gp = fit_sparse_gp(basis, [(rows / 0.01, x[:, 0] / 0.01)])
    >>> gp.alpha.shape, gp.n_observations
    ((10,), 50)
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
