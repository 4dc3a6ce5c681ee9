"""Rows of the kernel matrix between observations and sparse points (arrays only).

For a structure with features ``q_i`` and the kernel ``K(i, m) = delta^2 k(q_i, x_m)``:

- local energies: ``K(i, m)``; total energy: ``sum_i K(i, m)``;
- forces: ``-d/dr_j sum_i K(i, m)``, one row per atom and Cartesian component;
- virial: ``-d/d eps sum_i K(i, m)``, six rows in Voigt order (xx, yy, zz, yz, xz, xy).

Force and virial rows contract the explicit descriptor gradients with the sparse points
through one matrix product, so no (pairs x sparse points x features) array is formed.
"""

import numpy as np
import scipy.sparse

from ..kernels import dot_product_kernel

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def kernel_rows(values, species, sparse, sparse_species, zeta, delta, grad=None):
    """Kernel rows of one structure.

    Parameters
    ----------
    values : ndarray of shape (n_atoms, n_features)
    species : ndarray of int of shape (n_atoms,)
    sparse : ndarray of shape (M, n_features)
    sparse_species : ndarray of int of shape (M,)
    zeta : int
    delta : float
    grad : SOAPGradients, optional
        Needed for force (``dpos``) and virial (``dstrain``) rows.

    Returns
    -------
    dict
        ``"energies"`` (n_atoms, M), ``"energy"`` (M,), and with ``grad``: ``"forces"``
        (n_atoms, 3, M) and, when ``grad.dstrain`` is set, ``"virial"`` (6, M).
    """
    kernel, factor = dot_product_kernel(values, species, sparse, sparse_species, zeta)
    scale = delta**2
    rows = {"energies": scale * kernel, "energy": scale * kernel.sum(axis=0)}
    if grad is None:
        return rows
    n_atoms, m = len(values), len(sparse)
    n_features = values.shape[1]
    # d K(i, m) / d r_j = factor[i, m] * (dpos[(i, j)] . x_m)
    projected = (grad.dpos.reshape(-1, n_features) @ sparse.T).reshape(-1, 3, m)
    projected *= factor[grad.centers][:, None, :]
    gather = scipy.sparse.csr_matrix(
        (np.ones(len(grad.neighbors)), (grad.neighbors, np.arange(len(grad.neighbors)))),
        shape=(n_atoms, len(grad.neighbors)),
    )
    rows["forces"] = -scale * (gather @ projected.reshape(len(grad.neighbors), 3 * m)).reshape(n_atoms, 3, m)
    if grad.dstrain is not None:
        strained = (grad.dstrain.reshape(-1, n_features) @ sparse.T).reshape(n_atoms, 9, m)
        virial = -scale * np.einsum("iam,im->am", strained, factor).reshape(3, 3, m)
        rows["virial"] = voigt(virial)
    return rows


def voigt(tensor: np.ndarray) -> np.ndarray:
    """Voigt vector (xx, yy, zz, yz, xz, xy) of the symmetric part of a 3x3 tensor.

    Works on a leading (3, 3) of any array: ``(3, 3, M)`` gives ``(6, M)``.
    """
    tensor = np.asarray(tensor)
    return np.array([(tensor[a, b] + tensor[b, a]) / 2 for a, b in VOIGT])
