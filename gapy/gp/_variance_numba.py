"""Numba kernels of the force rows and force prior variances (plain arrays only).

``variance.py`` and ``design.py`` check inputs and call these.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def force_priors(dpos, centers, rows, values, species, zeta, delta, out):
    """``out[j, a] = sum_rs c2[r, s] (D_ra . q_s)(q_r . D_sa) + c1[r, s] (D_ra . D_sa)``.

    ``rows[j]`` lists the gradient rows ``r`` acting on atom ``j`` (padded with ``-1``),
    ``D_ra = dpos[r, a]`` and ``q_r = values[centers[r]]``; ``c1`` and ``c2`` are the
    kernel coefficients of :func:`gapy.gp.variance._coefficients` (zero across species).
    Each atom's gradient rows are copied into contiguous blocks so that the Gram
    matrices are three small matrix products.
    """
    n_features = values.shape[1]
    first = delta * delta * zeta
    second = first * (zeta - 1)
    for j in range(rows.shape[0]):
        n = 0
        while n < rows.shape[1] and rows[j, n] >= 0:
            n += 1
        q = np.empty((n, n_features))
        d = np.empty((3, n, n_features))
        own_species = np.empty(n, dtype=np.int64)
        for k in range(n):
            row = rows[j, k]
            own_species[k] = species[centers[row]]
            q[k] = values[centers[row]]
            for a in range(3):
                d[a, k] = dpos[row, a]
        dots = q @ q.T
        c1 = np.zeros((n, n))
        c2 = np.zeros((n, n))
        for k in range(n):
            for m in range(n):
                if own_species[k] == own_species[m]:
                    c1[k, m] = first * dots[k, m] ** (zeta - 1)
                    c2[k, m] = second * dots[k, m] ** max(zeta - 2, 0)
        for a in range(3):
            gram = d[a] @ d[a].T
            cross = d[a] @ q.T
            total = 0.0
            for k in range(n):
                for m in range(n):
                    total += c2[k, m] * cross[k, m] * cross[m, k] + c1[k, m] * gram[k, m]
            out[j, a] = total


@numba.njit(cache=True, nogil=True, fastmath=True)
def subtract_pair_rows(projected, head, head_points, factor, centers, neighbors, out):
    """``out[neighbors[p], a] -= factor[centers[p]] * (projected[p, a] + head[p, a] @ head_points)``.

    For every pair ``p``: ``projected`` is (n_pairs, 3, M) (float32 or float64),
    ``head`` (n_pairs, 3, r) and ``head_points`` (r, M) a low-rank part added in float64
    (``r = 0``: none), ``factor`` (n_atoms, M) and ``out`` (n_targets, 3, M). The
    weighting by the kernel factor and the sum over centres of the force rows, in one
    pass over ``projected``.
    """
    n_sparse = out.shape[2]
    rank = head_points.shape[0]
    row = np.empty(n_sparse)
    for p in range(projected.shape[0]):
        i = centers[p]
        j = neighbors[p]
        for a in range(3):
            for m in range(n_sparse):
                row[m] = projected[p, a, m]
            for k in range(rank):
                weight = head[p, a, k]
                for m in range(n_sparse):
                    row[m] += weight * head_points[k, m]
            for m in range(n_sparse):
                out[j, a, m] -= factor[i, m] * row[m]
