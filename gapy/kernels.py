"""Normalised dot-product (polynomial) kernel ``k(q, x) = delta^2 (q . x)^zeta``.

Descriptors are unit vectors (``SOAP(normalize=True)``), so ``k(q, q) = delta^2``. The
kernel between environments of different central species is zero.
"""

import numpy as np

from ._validation import check_integer


def check_zeta(zeta) -> int:
    """``zeta`` must be a positive integer (a real power of a negative dot product is NaN)."""
    return check_integer("zeta", zeta, 1)


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


def kernel_distance_squared(a: np.ndarray, b: np.ndarray, zeta: int) -> np.ndarray:
    """Squared kernel distance ``k(a, a) + k(b, b) - 2 k(a, b)``, where ``k(a, b) = (a @ b)^zeta``.

    Parameters
    ----------
    a : ndarray of shape (n, n_features)
    b : ndarray of shape (m, n_features)
    zeta : int

    Returns
    -------
    ndarray of shape (n, m)
        ``2 - 2 (a . b)^zeta`` for unit vectors; not clipped (round-off can make it
        slightly negative).
    """
    kaa = np.einsum("ij,ij->i", a, a) ** zeta
    kbb = np.einsum("ij,ij->i", b, b) ** zeta
    return kaa[:, None] + kbb[None, :] - 2.0 * (a @ b.T) ** zeta


def unit_rows(values: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norms > 0, norms, 1.0)


def mean_unit_rows(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Structure fingerprints: per group, the mean of its unit rows, scaled to unit length.

    Parameters
    ----------
    values : ndarray of shape (n, n_features)
        E.g. the SOAP vectors of every atom of several structures.
    groups : ndarray of int of shape (n,)
        The group (structure) of each row, ``0 <= groups < n_groups``.
    n_groups : int

    Returns
    -------
    ndarray of shape (n_groups, n_features)
        Zero for a group without rows.
    """
    sums = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, groups, unit_rows(values))
    return unit_rows(sums)
