"""Normalised dot-product (polynomial) kernel ``k(q, x) = delta^2 (q . x)^zeta``.

Descriptors are unit vectors (``SOAP(normalize=True)``), so ``k(q, q) = delta^2``. The
kernel between environments of different central species is zero.
"""

import numpy as np

from ._validation import check_integer


def check_zeta(zeta) -> int:
    """``zeta`` must be a positive integer (a real power of a negative dot product is NaN).

    Parameters
    ----------
    zeta : int
        Kernel exponent to check; a float with an integer value (``4.0``) is accepted.

    Returns
    -------
    int
        ``zeta`` as an ``int``.

    Raises
    ------
    TypeError
        ``zeta`` is not a number (or is a bool).
    ValueError
        ``zeta`` is not a whole number, or is below 1.

    Examples
    --------
    >>> from gapy.kernels import check_zeta
    >>> check_zeta(4.0)
    4
    """
    return check_integer("zeta", zeta, 1)


def species_mask(species: np.ndarray, sparse_species: np.ndarray) -> np.ndarray:
    """``mask[i, m] = 1.0`` where environment ``i`` and sparse point ``m`` share a species.

    Parameters
    ----------
    species : ndarray of int of shape (n,)
        Species of each environment.
    sparse_species : ndarray of int of shape (m,)
        Species of each sparse point.

    Returns
    -------
    ndarray of shape (n, m)
        1.0 where the species agree, 0.0 elsewhere.

    Examples
    --------
    >>> from gapy.kernels import species_mask
    >>> import numpy as np
    >>> species_mask(np.array([0, 1]), np.array([0, 0, 1]))
    array([[1., 1., 0.],
           [0., 0., 1.]])
    """
    return (species[:, None] == sparse_species[None, :]).astype(float)


def check_theta(theta, n_features: int) -> np.ndarray:
    """Length scales as an array of shape (n_features,), each finite and > 0.

    ``theta`` is one number (used for every feature) or one per feature, in the units of
    the features.
    """
    if np.ndim(theta) == 0 and not isinstance(theta, (bool, np.bool_, str)):
        theta = np.full(n_features, theta)
    try:
        theta = np.asarray(theta, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"theta must be a number or {n_features} numbers, got {theta!r}") from None
    if theta.shape != (n_features,):
        raise ValueError(f"theta must be a number or {n_features} numbers, got shape {theta.shape}")
    if not (np.isfinite(theta).all() and (theta > 0).all()):
        raise ValueError(f"theta must be finite and > 0, got {theta.tolist()}")
    return theta


def squared_exponential_kernel(values, classes, sparse, sparse_classes, theta) -> np.ndarray:
    """Squared-exponential kernel (without ``delta^2``), zero across classes.

    Parameters
    ----------
    values : ndarray of shape (n, n_features)
        Features of the instances ``x_i`` (e.g. ``Instances.values``).
    classes : ndarray of int of shape (n,)
        Class of each ``x_i``.
    sparse : ndarray of shape (m, n_features)
        Features of the sparse points ``s_m``.
    sparse_classes : ndarray of int of shape (m,)
        Class of each sparse point.
    theta : float or ndarray of shape (n_features,)
        Length scale of each feature, in the units of the features.

    Returns
    -------
    ndarray of shape (n, m)
        ``exp(-sum_f (values[i, f] - sparse[m, f])^2 / (2 theta_f^2))`` where the classes
        agree, else 0.

    Raises
    ------
    ValueError
        ``theta`` is not one number or ``n_features`` numbers, all finite and > 0.

    Examples
    --------
    >>> squared_exponential_kernel(np.array([[1.0]]), np.array([0]), np.array([[1.0], [2.0]]),
    ...                            np.array([0, 1]), 1.0)
    array([[1., 0.]])
    """
    values = np.asarray(values, dtype=float)
    sparse = np.asarray(sparse, dtype=float)
    theta = check_theta(theta, values.shape[1])
    squared = np.zeros((len(values), len(sparse)))
    for f in range(values.shape[1]):  # differences, not |a|^2 + |b|^2 - 2 a.b: exact at a == b
        squared += ((values[:, f, None] - sparse[None, :, f]) / theta[f]) ** 2
    return np.exp(-0.5 * squared) * species_mask(np.asarray(classes), np.asarray(sparse_classes))


def dot_product_kernel(values, species, sparse, sparse_species, zeta: int):
    """Kernel (without ``delta^2``) and its derivative factor.

    Parameters
    ----------
    values : ndarray of shape (n, n_features)
        Descriptor vectors ``q_i`` (unit vectors).
    species : ndarray of int of shape (n,)
        Species of each ``q_i``.
    sparse : ndarray of shape (m, n_features)
        Sparse points ``x_m`` (unit vectors).
    sparse_species : ndarray of int of shape (m,)
        Species of each sparse point.
    zeta : int
        Kernel exponent, a positive integer (not checked here; see :func:`check_zeta`).

    Returns
    -------
    kernel : ndarray of shape (n, m)
        ``(q_i . x_m)^zeta``, zero across species.
    factor : ndarray of shape (n, m)
        ``zeta (q_i . x_m)^(zeta - 1)``, zero across species, so that
        ``d kernel[i, m] / d q_i = factor[i, m] * x_m``.

    Examples
    --------
    >>> from gapy.kernels import dot_product_kernel
    >>> import numpy as np
    >>> q = np.array([[0.6, 0.8]])
    >>> kernel, factor = dot_product_kernel(q, np.array([0]), np.eye(2), np.array([0, 1]), zeta=2)
    >>> kernel.round(3), factor.round(3)
    (array([[0.36, 0.  ]]), array([[1.2, 0. ]]))
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
        First set of vectors (usually unit vectors).
    b : ndarray of shape (m, n_features)
        Second set of vectors.
    zeta : int
        Kernel exponent, a positive integer (not checked here; see :func:`check_zeta`).

    Returns
    -------
    ndarray of shape (n, m)
        ``2 - 2 (a . b)^zeta`` for unit vectors; not clipped (round-off can make it
        slightly negative).

    Examples
    --------
    >>> from gapy.kernels import kernel_distance_squared
    >>> import numpy as np
    >>> kernel_distance_squared(np.eye(2), np.array([[1.0, 0.0]]), zeta=4)
    array([[0.],
           [2.]])
    """
    kaa = np.einsum("ij,ij->i", a, a) ** zeta
    kbb = np.einsum("ij,ij->i", b, b) ** zeta
    return kaa[:, None] + kbb[None, :] - 2.0 * (a @ b.T) ** zeta


def unit_rows(values: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero).

    Parameters
    ----------
    values : ndarray of shape (n, n_features)
        Row vectors.

    Returns
    -------
    ndarray of shape (n, n_features)
        Each row divided by its Euclidean norm (a new array).

    Examples
    --------
    >>> from gapy.kernels import unit_rows
    >>> import numpy as np
    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
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
        Number of groups (structures), the rows of the result.

    Returns
    -------
    ndarray of shape (n_groups, n_features)
        Unit vectors; zero for a group without rows.

    Examples
    --------
    >>> from gapy.kernels import mean_unit_rows
    >>> import numpy as np
    >>> values = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    >>> mean_unit_rows(values, np.array([0, 0, 2]), 3).round(3)
    array([[0.707, 0.707],
           [0.   , 0.   ],
           [0.   , 1.   ]])
    """
    sums = np.zeros((n_groups, values.shape[1]))
    np.add.at(sums, groups, unit_rows(values))
    return unit_rows(sums)
