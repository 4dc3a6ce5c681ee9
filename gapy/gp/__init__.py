"""Sparse Gaussian process: arrays in, arrays out (no ASE)."""

from .sparse_gp import VARIANCE_KINDS, SparseGP

__all__ = ["SparseGP", "VARIANCE_KINDS"]
