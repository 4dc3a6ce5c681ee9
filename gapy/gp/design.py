"""Rows of the kernel matrix between observations and sparse points (arrays only).

For a structure with features ``q_i`` and the kernel ``K(i, m) = delta^2 k(q_i, x_m)``:

- local energies: ``K(i, m)``; total energy: ``sum_i K(i, m)``;
- forces: ``-d/dr_j sum_i K(i, m)``, one row per atom and Cartesian component;
- virial: ``-d/d eps sum_i K(i, m)``, six rows in Voigt order (xx, yy, zz, yz, xz, xy).

Force and virial rows contract the explicit descriptor gradients with the sparse points
through one matrix product, so no (pairs x sparse points x features) array is formed.
"""

from typing import NamedTuple, Optional

import numpy as np

from ..kernels import dot_product_kernel
from ._variance_numba import subtract_pair_rows

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: Gradient rows projected on the sparse points at once (bounds a temporary array).
_ROW_CHUNK = 512
#: Relative Frobenius norm of the sparse points left to float32 by mixed-precision force
#: rows (:func:`split_points`).
MIXED_TOLERANCE = 0.1


def kernel_rows(values, species, sparse, sparse_species, zeta, delta, grad=None):
    """Kernel rows of one structure.

    Parameters
    ----------
    values : ndarray of shape (n_atoms, n_features)
        Descriptor vector ``q_i`` of each atom (unit vectors).
    species : ndarray of int of shape (n_atoms,)
        Species index of each atom.
    sparse : ndarray of shape (M, n_features)
        Sparse points ``x_m``.
    sparse_species : ndarray of int of shape (M,)
        Species index of each sparse point.
    zeta : int
        Kernel exponent (a positive integer).
    delta : float
        Kernel scale in eV (prior standard deviation of a local energy).
    grad : SOAPGradients, optional
        Needed for force (``dpos``) and virial (``dstrain``) rows.

    Returns
    -------
    dict
        ``"energies"`` (n_atoms, M), ``"energy"`` (M,), and with ``grad``: ``"forces"``
        (n_atoms, 3, M) and, when ``grad.dstrain`` is set, ``"virial"`` (6, M). In eV^2
        per unit of the observation (eV, eV/A, eV): a row times the weights ``alpha``
        (1/eV) is the prediction.

    Examples
    --------
    >>> from gapy.gp import kernel_rows
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> from gapy import SOAP
    >>> values, grad = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3).compute(bulk("Si"), gradients=True)
    >>> species = np.zeros(2, dtype=int)
    >>> rows = kernel_rows(values, species, values[:1], species[:1], zeta=4, delta=1.0, grad=grad)
    >>> {name: block.shape for name, block in rows.items()}
    {'energies': (2, 1), 'energy': (1,), 'forces': (2, 3, 1), 'virial': (6, 1)}
    >>> rows["energies"].round(6).ravel()  # both atoms are equivalent to the sparse point
    array([1., 1.])
    """
    kernel, factor = dot_product_kernel(values, species, sparse, sparse_species, zeta)
    scale = delta**2
    rows = {"energies": scale * kernel, "energy": scale * kernel.sum(axis=0)}
    if grad is None:
        return rows
    rows.update(gradient_rows(scale * factor, sparse, grad, len(values)))
    return rows


class SplitPoints(NamedTuple):
    """Sparse points split for mixed-precision force rows: ``points = coefficients @ basis + residual``.

    Made by :func:`split_points`; :func:`gradient_rows` projects the descriptor
    gradients on the leading part in float64 and on the residual in float32.
    """

    #: (r, n_features) float64, orthonormal rows: the leading right singular vectors.
    basis: np.ndarray
    #: (r, M) float64: the points' coordinates on ``basis`` (transposed).
    coefficients: np.ndarray
    #: (M, n_features): what ``basis`` leaves of each point (float32 from :func:`split_points`).
    residual: np.ndarray


def split_points(points: np.ndarray, tolerance: float = MIXED_TOLERANCE) -> SplitPoints:
    """Split sparse points into a low-rank float64 part and a float32 residual.

    The rank is the smallest whose residual has at most ``tolerance`` of the points'
    Frobenius norm. SOAP vectors share a large common part, and a force row projects a
    descriptor gradient (orthogonal to its own, normalised vector) on points close to
    that vector: in float32 that difference of large numbers would lose ~1e-4 of
    relative accuracy, while the residual carries only ~``tolerance`` of the norm.

    Parameters
    ----------
    points : ndarray of shape (M, n_features)
        Sparse points.
    tolerance : float, default=MIXED_TOLERANCE
        Largest relative Frobenius norm of the residual.

    Returns
    -------
    SplitPoints
        ``basis`` (r, n_features), ``coefficients`` (r, M), ``residual`` (M, n_features).

    Examples
    --------
    >>> import numpy as np
    >>> from gapy.gp.design import split_points
    >>> points = 1.0 + 0.01 * np.random.default_rng(0).random((50, 6))
    >>> split = split_points(points)
    >>> split.basis.shape, split.residual.dtype
    ((1, 6), dtype('float32'))
    >>> bool(np.allclose(split.coefficients.T @ split.basis + split.residual, points, atol=1e-6))
    True
    """
    u, singular, vt = np.linalg.svd(points, full_matrices=False)
    tail = np.sqrt(np.cumsum(singular[::-1] ** 2)[::-1])  # norm of the residual of rank k, k = 0, 1, ...
    rank = int(np.argmax(np.append(tail, 0.0) <= tolerance * tail[0]))
    basis = vt[:rank]
    coefficients = (u[:, :rank] * singular[:rank]).T
    residual = (points - coefficients.T @ basis).astype(np.float32)
    return SplitPoints(np.ascontiguousarray(basis), np.ascontiguousarray(coefficients), residual)


def gradient_rows(factor, sparse, grad, n_atoms: int, split: Optional[SplitPoints] = None) -> dict:
    """Force and virial kernel rows from the kernel's gradient factor and descriptor gradients.

    Parameters
    ----------
    factor : ndarray of shape (n_atoms, M)
        ``dK(q_i, x_m) / d(q_i . x_m)`` of every atom (the second output of
        :func:`gapy.kernels.dot_product_kernel`, times ``delta^2``).
    sparse : ndarray of shape (M, n_features)
        Sparse points ``x_m``.
    grad : SOAPGradients
        Gradients of the whole structure, or of one block of atoms
        (``grad.targets``, from :meth:`gapy.SOAP.gradient_blocks`).
    n_atoms : int
        Atoms of the structure.
    split : SplitPoints, optional
        :func:`split_points` of ``sparse``: mixed-precision force rows (the gradients
        projected on the residual of the points in float32, ~2.4x faster; relative
        error of the force stds up to ~0.5 %, see ``docs/gp.md``). Default: float64.

    Returns
    -------
    dict
        ``"forces"`` (n_targets, 3, M): rows of the forces on the atoms ``grad.targets``
        (every atom without targets); with ``grad.dstrain``, ``"virial"`` (6, M): the
        part of the virial rows from the local energies of those atoms (summed over the
        blocks, the virial rows).

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> from gapy import SOAP
    >>> from gapy.gp import kernel_rows
    >>> from gapy.gp.design import gradient_rows
    >>> from gapy.kernels import dot_product_kernel
    >>> soap, atoms = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), bulk("Si", cubic=True)
    >>> atoms.rattle(0.05, seed=0)
    >>> values, grad = soap.compute(atoms, gradients=True)
    >>> species = np.zeros(8, dtype=int)
    >>> _, factor = dot_product_kernel(values, species, values[:3], species[:3], 2)
    >>> whole = kernel_rows(values, species, values[:3], species[:3], zeta=2, delta=1.0, grad=grad)
    >>> blocks = [gradient_rows(factor, values[:3], block, 8) for block in soap.gradient_blocks(atoms, True, 3)]
    >>> forces = np.zeros((8, 3, 3))
    >>> for block, rows in zip(soap.gradient_blocks(atoms, block_size=3), blocks):
    ...     forces[block.targets] = rows["forces"]
    >>> bool(np.allclose(forces, whole["forces"])), bool(np.allclose(sum(r["virial"] for r in blocks), whole["virial"]))
    (True, True)
    """
    m, n_features = len(sparse), sparse.shape[1]
    targets = np.arange(n_atoms) if grad.targets is None else grad.targets
    forces = np.zeros((len(targets), 3, m))
    factor = np.ascontiguousarray(factor, dtype=float)
    if split is None:  # float64 throughout, no low-rank part
        split = SplitPoints(np.zeros((0, n_features)), np.zeros((0, m)), sparse)
    # d K(i, m) / d r_j = factor[i, m] * (dpos[(i, j)] . x_m), summed over centres i
    for start in range(0, len(grad.neighbors), _ROW_CHUNK):
        chunk = slice(start, start + _ROW_CHUNK)
        dpos = grad.dpos[chunk].reshape(-1, n_features)
        n_pairs = len(dpos) // 3
        projected = (dpos.astype(split.residual.dtype, copy=False) @ split.residual.T).reshape(n_pairs, 3, m)
        head = (dpos @ split.basis.T).reshape(n_pairs, 3, len(split.basis))
        subtract_pair_rows(projected, head, split.coefficients, factor, grad.centers[chunk], grad.neighbors[chunk],
                           forces)
    rows = {"forces": forces}
    if grad.dstrain is not None:
        virial = np.zeros((3, 3, m))
        for start in range(0, len(targets), _ROW_CHUNK // 8):
            chunk = slice(start, start + _ROW_CHUNK // 8)
            strained = (grad.dstrain[chunk].reshape(-1, n_features) @ sparse.T).reshape(-1, 3, 3, m)
            virial -= np.einsum("iabm,im->abm", strained, factor[targets[chunk]])
        rows["virial"] = voigt(virial)
    return rows


def voigt(tensor: np.ndarray) -> np.ndarray:
    """Voigt vector (xx, yy, zz, yz, xz, xy) of the symmetric part of a 3x3 tensor.

    Works on a leading (3, 3) of any array: ``(3, 3, M)`` gives ``(6, M)``.

    Parameters
    ----------
    tensor : array-like of shape (3, 3, ...)
        A 3x3 tensor (e.g. a virial in eV or a stress in eV/A^3), or a stack of them
        along trailing axes.

    Returns
    -------
    ndarray of shape (6, ...)
        ``(t_xx, t_yy, t_zz, (t_yz + t_zy) / 2, (t_xz + t_zx) / 2, (t_xy + t_yx) / 2)``,
        in the unit of ``tensor`` (ASE's stress order).

    Examples
    --------
    >>> from gapy.gp import voigt
    >>> import numpy as np
    >>> voigt(np.arange(9.0).reshape(3, 3))
    array([0., 4., 8., 6., 4., 2.])
    """
    tensor = np.asarray(tensor)
    return np.array([(tensor[a, b] + tensor[b, a]) / 2 for a, b in VOIGT])
