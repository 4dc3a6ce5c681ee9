"""Numba kernels of the squared-exponential instance terms (rows and prior variances).

Everything here takes plain arrays; ``terms.py`` and ``term_variance.py`` check inputs.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def scaled_squared_distances(values, sparse_t, factors, out):
    """``out[t, m] = sum_f (values[t, f] - sparse_t[f, m])^2 factors[f]``.

    ``sparse_t`` is the transposed (n_features, M) array, so the inner loop is contiguous.
    """
    n_features = values.shape[1]
    n_sparse = sparse_t.shape[1]
    for t in range(values.shape[0]):
        for m in range(n_sparse):
            out[t, m] = 0.0
        for f in range(n_features):
            x = values[t, f]
            scale = factors[f]
            for m in range(n_sparse):
                d = x - sparse_t[f, m]
                out[t, m] += d * d * scale


@numba.njit(cache=True, nogil=True, fastmath=True)
def scatter_rows(kernel, atoms, coefficients, out):
    """``out[r, atoms[t, s], :] += coefficients[t, s, r] * kernel[t, :]`` for all t, s, r.

    Each update is an axpy along the sparse points (contiguous, vectorised); zero
    coefficients are skipped.
    """
    n_slots = atoms.shape[1]
    n_rows = coefficients.shape[2]
    n_sparse = kernel.shape[1]
    for t in range(kernel.shape[0]):
        for s in range(n_slots):
            atom = atoms[t, s]
            for r in range(n_rows):
                c = coefficients[t, s, r]
                if c != 0.0:
                    for m in range(n_sparse):
                        out[r, atom, m] += c * kernel[t, m]


@numba.njit(cache=True, nogil=True, fastmath=True)
def scatter_forces(kernel, atoms, alpha, beta, prime_t, forces):
    """``forces[atoms[t, s], a, :] -= kernel[t, :] (alpha[t, s, a] + beta[t, s, a] . prime_t)``.

    ``beta`` is (n, n_slots, 3, F) and ``prime_t`` (F, M), with F a multiple of 3 (padded
    with zeros), so each inner loop forms the full derivative before its single store.
    """
    n_slots = atoms.shape[1]
    n_features = prime_t.shape[0]
    n_sparse = kernel.shape[1]
    for t in range(kernel.shape[0]):
        for s in range(n_slots):
            atom = atoms[t, s]
            for a in range(3):
                for f in range(0, n_features, 3):
                    c = alpha[t, s, a] if f == 0 else 0.0
                    b0 = beta[t, s, a, f]
                    b1 = beta[t, s, a, f + 1]
                    b2 = beta[t, s, a, f + 2]
                    if c == 0.0 and b0 == 0.0 and b1 == 0.0 and b2 == 0.0:
                        continue
                    for m in range(n_sparse):
                        forces[atom, a, m] -= kernel[t, m] * (
                            c + b0 * prime_t[f, m] + b1 * prime_t[f + 1, m] + b2 * prime_t[f + 2, m]
                        )


@numba.njit(cache=True, nogil=True, fastmath=True)
def gradient_coefficients(values, weights, dvalues, dweights, dvalues_strain, dweights_strain,
                          inv_theta2, with_strain, alpha, beta, strain):
    """Coefficients of the force and virial rows of each instance (see ``terms._add_block``).

    For a component with derivatives ``dw`` and ``dx``: ``alpha = dw - w x . dx / theta^2``
    and ``beta_f = w dx_f``. Fills ``alpha`` (n, slots, 3), ``beta`` (n, slots, 3, F_pad)
    and, with strain, ``strain`` (n, 6, 1 + F): ``[alpha, beta]`` of the symmetrised
    strain derivatives in Voigt order (xx, yy, zz, yz, xz, xy).
    """
    n_features = values.shape[1]
    n_slots = dvalues.shape[1]
    first = (0, 1, 2, 1, 0, 0)
    second = (0, 1, 2, 2, 2, 1)
    for t in range(values.shape[0]):
        w = weights[t]
        for s in range(n_slots):
            for a in range(3):
                slope = 0.0
                for f in range(n_features):
                    slope += values[t, f] * inv_theta2[f] * dvalues[t, s, a, f]
                    beta[t, s, a, f] = w * dvalues[t, s, a, f]
                alpha[t, s, a] = dweights[t, s, a] - w * slope
        if not with_strain:
            continue
        for v in range(6):
            p = first[v]
            q = second[v]
            slope = 0.0
            for f in range(n_features):
                dx = 0.5 * (dvalues_strain[t, p, q, f] + dvalues_strain[t, q, p, f])
                slope += values[t, f] * inv_theta2[f] * dx
                strain[t, v, 1 + f] = w * dx
            strain[t, v, 0] = 0.5 * (dweights_strain[t, p, q] + dweights_strain[t, q, p]) - w * slope


@numba.njit(cache=True, nogil=True, fastmath=True)
def grouped_gradient_quadratic_forms(values, classes, a, b, bounds, factors, out):
    """``out[g, o] = sum_(p, q in group g, same class) L_o[p] K L_o[q]`` for ``L = a g + b . grad g``.

    With ``u = (x_p - x_q) / theta^2`` and ``k`` the kernel, the summand is
    ``k [a_p a_q + a_p b_q.u - a_q b_p.u + b_p.b_q / theta^2 - (b_p.u)(b_q.u)]``.
    ``a`` has shape (n, n_obs), ``b`` (n, n_obs, F); group ``g`` is rows
    ``bounds[g]:bounds[g + 1]`` (the instance slots that hold one atom: its force components,
    or with ``b = 0`` its local energy).
    """
    n_features = values.shape[1]
    n_obs = a.shape[1]
    u = np.empty(n_features)
    for g in range(len(bounds) - 1):
        for o in range(n_obs):
            out[g, o] = 0.0
        for p in range(bounds[g], bounds[g + 1]):
            for o in range(n_obs):
                diagonal = a[p, o] * a[p, o]
                for f in range(n_features):
                    diagonal += b[p, o, f] * b[p, o, f] * factors[f]
                out[g, o] += diagonal
            for q in range(p + 1, bounds[g + 1]):
                if classes[q] != classes[p]:
                    continue
                d = 0.0
                for f in range(n_features):
                    diff = values[p, f] - values[q, f]
                    u[f] = diff * factors[f]
                    d += diff * u[f]
                k = np.exp(-0.5 * d)
                for o in range(n_obs):
                    bu_p = 0.0
                    bu_q = 0.0
                    bb = 0.0
                    for f in range(n_features):
                        bu_p += b[p, o, f] * u[f]
                        bu_q += b[q, o, f] * u[f]
                        bb += b[p, o, f] * b[q, o, f] * factors[f]
                    out[g, o] += 2.0 * k * (a[p, o] * a[q, o] + a[p, o] * bu_q - a[q, o] * bu_p + bb - bu_p * bu_q)
