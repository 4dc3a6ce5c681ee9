"""Normalised dot-product (polynomial) kernel ``k(q, x) = delta^2 (q . x)^zeta``.

Descriptors are unit vectors (``SOAP(normalize=True)``), so ``k(q, q) = delta^2``. The
kernel between environments of different central species is zero.
"""

import numpy as np


def check_zeta(zeta) -> int:
    """``zeta`` must be a positive integer (a real power of a negative dot product is NaN)."""
    if isinstance(zeta, bool) or int(zeta) != zeta or zeta < 1:
        raise ValueError(f"zeta must be a positive integer, got {zeta!r}")
    return int(zeta)


def species_mask(species: np.ndarray, sparse_species: np.ndarray) -> np.ndarray:
    """``mask[i, m] = 1.0`` where environment ``i`` and sparse point ``m`` share a species."""
    return (species[:, None] == sparse_species[None, :]).astype(float)


def dot_product_kernel(values, species, sparse, sparse_species, zeta: int):
    """Kernel (without ``delta^2``) and its derivative factor.

    Parameters
    ----------
    values : ndarray of shape (n, n_features)
    species : ndarray of int of shape (n,)
    sparse : ndarray of shape (m, n_features)
    sparse_species : ndarray of int of shape (m,)
    zeta : int

    Returns
    -------
    kernel : ndarray of shape (n, m)
        ``(q_i . x_m)^zeta``, zero across species.
    factor : ndarray of shape (n, m)
        ``zeta (q_i . x_m)^(zeta - 1)``, zero across species, so that
        ``d kernel[i, m] / d q_i = factor[i, m] * x_m``.
    """
    dots = values @ sparse.T
    mask = species_mask(species, sparse_species)
    power = dots ** (zeta - 1) * mask
    return power * dots, zeta * power
