"""Prior variances ``k**`` of predictions, needed by the DTC and Nystrom variances.

For local energies ``e(q_i)`` with the kernel ``K(q, q') = delta^2 (q . q')^zeta`` (zero
across species), a force component and a virial component are linear functionals of
``e``; their prior variance contracts the descriptor gradients ``D`` with the mixed
second derivative of the kernel::

    d^2 K / dq dq' = delta^2 zeta [(zeta - 1) (q . q')^(zeta - 2) q' q^T + (q . q')^(zeta - 1) I]

so that ``D_r^T H D_s = c2 (D_r . q_s)(q_r . D_s) + c1 (D_r . D_s)``.

With ``isolated`` (``q0`` per species, see :class:`gapy.gp.SparseSet`) the kernel is
conditioned on ``e(q0) = 0``: ``K' = K - delta^2 a(q) a(q') / c0`` with
``a(q) = (q . q0)^zeta`` and ``c0 = (q0 . q0)^zeta``, so each prior loses
``delta^2 / c0 (sum of the functional applied to a)^2`` per species.

Every function works on blocks of atoms, so memory is ``O(block x n_atoms)``, never
``O(n_atoms^2)``: a 20,000-atom cell needs no more than a small one per block.
"""

import numpy as np

from ._variance_numba import force_priors
from .design import VOIGT

#: Entries of the atom-atom kernel held at once by the energy and virial priors.
_KERNEL_ENTRIES = 2**22


def _row_blocks(n_atoms: int, entries: int = _KERNEL_ENTRIES):
    """Slices of rows of the (n_atoms, n_atoms) kernel, each at most about ``entries``."""
    step = max(16, entries // max(n_atoms, 1))
    return [slice(start, start + step) for start in range(0, n_atoms, step)]


def _rows_by_target(neighbors: np.ndarray, n_atoms: int) -> np.ndarray:
    """Gradient rows acting on each atom, (n_atoms, most rows per atom), padded with ``-1``."""
    order = np.argsort(neighbors, kind="stable")
    counts = np.bincount(neighbors, minlength=n_atoms)
    slots = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = np.full((n_atoms, max(int(counts.max(initial=0)), 1)), -1)
    rows[neighbors[order], slots] = order
    return rows


def _coefficients(dots, same, zeta, delta):
    """``c1 = delta^2 zeta c^(zeta-1)`` and ``c2 = delta^2 zeta (zeta-1) c^(zeta-2)``."""
    first = delta**2 * zeta * dots ** (zeta - 1) * same
    second = delta**2 * zeta * (zeta - 1) * dots ** max(zeta - 2, 0) * same
    return first, second


def isolated_self_kernel(isolated: np.ndarray, zeta: int) -> np.ndarray:
    """``c0 = (q0 . q0)^zeta`` per species; ``inf`` for a zero ``q0`` (no correction)."""
    c0 = np.einsum("ij,ij->i", isolated, isolated) ** zeta
    return np.where(c0 > 0, c0, np.inf)


def isolated_terms(values, species, zeta, isolated):
    """``a_i = (q_i . q0)^zeta``, ``g_i = zeta (q_i . q0)^(zeta - 1)`` and ``1 / c0`` per atom."""
    q0 = isolated[species]
    dots = np.einsum("ij,ij->i", values, q0)
    return dots**zeta, zeta * dots ** (zeta - 1), 1.0 / isolated_self_kernel(isolated, zeta)[species]


def local_prior_variance(values, species, zeta, delta, isolated=None) -> np.ndarray:
    """Prior variance of every local energy: ``K(q_i, q_i)``, ndarray of shape (n_atoms,)."""
    prior = np.einsum("ij,ij->i", values, values) ** zeta
    if isolated is not None:
        a, _, inverse_c0 = isolated_terms(values, species, zeta, isolated)
        prior = prior - a**2 * inverse_c0
    return delta**2 * prior


def energy_prior_variance(values, species, zeta, delta, isolated=None) -> float:
    """Prior variance of a total energy: ``sum_ij K(q_i, q_j)``."""
    total = 0.0
    for rows in _row_blocks(len(values)):
        same = species[rows, None] == species[None, :]
        total += float(((values[rows] @ values.T) ** zeta * same).sum())
    if isolated is not None:
        a, _, inverse_c0 = isolated_terms(values, species, zeta, isolated)
        for s in np.unique(species):
            total -= a[species == s].sum() ** 2 * inverse_c0[species == s][0]
    return delta**2 * total


def force_prior_variance(values, species, grad, zeta, delta, isolated=None) -> np.ndarray:
    """Prior variance of every force component, ndarray of shape (n_targets * 3,).

    ``n_targets`` is ``len(grad.targets)`` for the gradients of a block of atoms, the
    number of atoms otherwise. The gradient rows that act on each atom are gathered into
    contiguous blocks, so the double sum over them is three small matrix products per
    atom (numba :func:`gapy.gp._variance_numba.force_priors`).
    """
    n_atoms = len(values) if grad.targets is None else len(grad.targets)
    out = np.zeros((n_atoms, 3))
    rows = _rows_by_target(grad.neighbors, n_atoms)
    force_priors(np.ascontiguousarray(grad.dpos, dtype=float), grad.centers, rows,
                 np.ascontiguousarray(values, dtype=float), np.asarray(species, dtype=np.int64),
                 int(zeta), float(delta), out)
    if isolated is not None:
        t = _isolated_force_sums(values, species, grad, zeta, isolated)
        weight = 1.0 / isolated_self_kernel(isolated, zeta)
        out -= delta**2 * (t**2 * weight[None, :, None]).sum(axis=1)
    return out.ravel()


def force_prior_covariance(values, species, grad, other, other_species, other_grad, zeta, delta,
                           isolated=None) -> np.ndarray:
    """Prior covariance of the forces of two structures, ndarray of shape (3 n_atoms, 3 n_other).

    Entry ``(3 m + a, 3 n + b)`` is ``Cov(F_ma, F'_nb)`` of atom ``m`` of the structure
    of ``values`` and atom ``n`` of the structure of ``other`` (the same arrays twice: the
    covariance of one structure's forces, whose diagonal is :func:`force_prior_variance`).
    ``grad`` and ``other_grad`` are whole-structure gradients (no ``targets``). The double
    sum over gradient rows runs one atom ``n`` at a time, over the rows acting on it:
    memory ``O(rows x n_features)``.
    """
    n_atoms, n_other = len(values), len(other)
    c1, c2 = _coefficients(values @ other.T, species[:, None] == other_species[None, :], zeta, delta)
    dpos = np.ascontiguousarray(grad.dpos, dtype=float)
    projected = dpos @ other.T  # (rows, 3, n_other): D_(i,m) . q'_j
    projected_other = other_grad.dpos @ values.T  # (rows', 3, n_atoms): D'_(j,n) . q_i
    centers = grad.centers
    out = np.zeros((n_atoms, 3, n_other, 3))
    rows_by_atom = _rows_by_target(other_grad.neighbors, n_other)
    for n in range(n_other):
        acting = rows_by_atom[n][rows_by_atom[n] >= 0]
        j = other_grad.centers[acting]
        # sum over rows (j, n): c1_ij D_(i,m) . D'_(j,n) + c2_ij (D_(i,m) . q'_j)(q_i . D'_(j,n))
        weighted = (c1[:, j] @ other_grad.dpos[acting].reshape(len(acting), -1)).reshape(n_atoms, 3, -1)
        pairs = np.einsum("raf,rbf->rab", dpos, weighted[centers])
        second = c2[:, j][:, :, None] * projected_other[acting].transpose(2, 0, 1)  # (n_atoms, k, 3)
        pairs += np.einsum("raj,rjb->rab", projected[:, :, j], second[centers])
        np.add.at(out[:, :, n, :], grad.neighbors, pairs)
    out = out.reshape(3 * n_atoms, 3 * n_other)
    if isolated is not None:
        sums = [_isolated_force_sums(v, s, g, zeta, isolated) for v, s, g in
                ((values, species, grad), (other, other_species, other_grad))]
        weight = 1.0 / isolated_self_kernel(isolated, zeta)
        out -= delta**2 * np.einsum("msa,s,nsb->manb", sums[0], weight, sums[1]).reshape(out.shape)
    return out


def _isolated_force_sums(values, species, grad, zeta, isolated) -> np.ndarray:
    """``t[m, s, a] = sum of g_i (D_(i,m),a . q0_s)`` over centres ``i`` of species ``s``, (n_atoms, n_species, 3)."""
    n_atoms = len(values) if grad.targets is None else len(grad.targets)
    _, g, _ = isolated_terms(values, species, zeta, isolated)
    q0 = isolated[species[grad.centers]]
    projected = np.einsum("raf,rf->ra", grad.dpos, q0) * g[grad.centers][:, None]
    n_species = len(isolated)
    t = np.zeros((n_atoms * n_species, 3))
    np.add.at(t, grad.neighbors * n_species + species[grad.centers], projected)
    return t.reshape(n_atoms, n_species, 3)


def voigt_strain(dstrain: np.ndarray) -> np.ndarray:
    """Symmetric strain gradients (n_atoms, 6, n_features) in Voigt order from (n_atoms, 3, 3, n_features)."""
    return np.stack([(dstrain[:, a, b] + dstrain[:, b, a]) / 2 for a, b in VOIGT], axis=1)


def virial_prior_variance(values, species, strain, zeta, delta, isolated=None) -> np.ndarray:
    """Prior variance of each Voigt virial component (xx, yy, zz, yz, xz, xy).

    ``strain`` holds the symmetric strain gradients of every atom, (n_atoms, 6,
    n_features), see :func:`voigt_strain`.
    """
    return np.diag(virial_prior_covariance(values, species, strain, values, species, strain, zeta, delta, isolated))


def virial_prior_covariance(values, species, strain, other, other_species, other_strain, zeta, delta,
                            isolated=None) -> np.ndarray:
    """Prior covariance of the Voigt virials of two structures, ndarray of shape (6, 6).

    Entry ``(k, l)`` is ``Cov(W_k, W'_l)`` of component ``k`` of the structure of
    ``values`` and component ``l`` of the structure of ``other`` (the same arrays twice:
    the covariance of one structure's virial, whose diagonal is
    :func:`virial_prior_variance`). Each ``strain`` is (n_atoms, 6, n_features), see
    :func:`voigt_strain`.
    """
    out = np.zeros((len(VOIGT), len(VOIGT)))
    other_strain = np.ascontiguousarray(other_strain.transpose(1, 0, 2))  # (6, n_other, F)
    for rows in _row_blocks(len(other), _KERNEL_ENTRIES // 8):  # 13 arrays of the block's size
        same = species[rows, None] == other_species[None, :]
        c1, c2 = _coefficients(values[rows] @ other.T, same, zeta, delta)
        d = strain[rows].transpose(1, 0, 2)  # (6, rows, F)
        # sum_ij c2 (D_ik . q'_j)(q_i . D'_jl) + c1 (D_ik . D'_jl), rows i of this block
        left = c2[None] * (d @ other.T)
        right = values[rows] @ other_strain.transpose(0, 2, 1)
        out += np.einsum("kij,lij->kl", left, right)
        out += np.einsum("kif,lif->kl", d, c1[None] @ other_strain)
    if isolated is not None:
        _, g, inverse_c0 = isolated_terms(values, species, zeta, isolated)
        _, g_other, _ = isolated_terms(other, other_species, zeta, isolated)
        projected = g[:, None] * np.einsum("ikf,if->ik", strain, isolated[species])
        projected_other = g_other[:, None] * np.einsum("ikf,if->ik", other_strain.transpose(1, 0, 2),
                                                       isolated[other_species])
        weight = 1.0 / isolated_self_kernel(isolated, zeta)
        for s in np.unique(np.concatenate([species, other_species])):
            out -= delta**2 * weight[s] * np.outer(projected[species == s].sum(axis=0),
                                                   projected_other[other_species == s].sum(axis=0))
    return out
