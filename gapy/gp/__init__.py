"""Sparse Gaussian process: arrays in, arrays out (no ASE).

:func:`fit_sparse_gp` folds noise-scaled kernel rows into a :class:`SparseGP`, whose
:meth:`~SparseGP.rows` and :meth:`~SparseGP.predict` give means and variances.
"""

from .design import VOIGT, kernel_rows, voigt
from .fit import IncrementalQR, fit_sparse_gp, kmm_cholesky
from .sparse_gp import (FORCE_STD_PRECISIONS, VARIANCE_KINDS, SparseGP, SparseSet, check_force_std_precision,
                        check_variance_kind)

__all__ = [
    "FORCE_STD_PRECISIONS",
    "IncrementalQR",
    "SparseGP",
    "SparseSet",
    "VARIANCE_KINDS",
    "VOIGT",
    "check_force_std_precision",
    "check_variance_kind",
    "fit_sparse_gp",
    "kernel_rows",
    "kmm_cholesky",
    "voigt",
]
