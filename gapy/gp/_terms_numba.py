"""Numba kernels of the squared-exponential instance terms (rows and prior variances).

Everything here takes plain arrays; ``terms.py`` and ``term_variance.py`` check inputs.
All kernels leave out the factor ``delta^2``. ``inv_theta2[f] = 1 / theta_f^2``.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def scaled_squared_distances(values, sparse, factors, out):
    """``out[t, m] = sum_f (values[t, f] - sparse[m, f])^2 factors[f]``."""
    n_features = values.shape[1]
    for t in range(values.shape[0]):
        for m in range(sparse.shape[0]):
            out[t, m] = 0.0
        for f in range(n_features):
            x = values[t, f]
            scale = factors[f]
            for m in range(sparse.shape[0]):
                d = x - sparse[m, f]
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
def se_quadratic_forms(values, class_offsets, a, b, inv_theta2, with_b, out):
    """``out[l] += sum_(t, t') L_t,l L_t',l k`` for linear functionals of the latent ``g``.

    Each observable ``l`` is ``sum_t a[t, l] g(x_t) + b[t, l] . grad g(x_t)``; its prior
    variance is the double sum over instances of the same class of

        a a' k + k [a (u . b') - a' (u . b)] + k [b . (b' / theta^2) - (u . b)(u . b')]

    with ``u = (x_t - x_t') / theta^2`` (the kernel's mixed derivatives). Instances are
    sorted by class, class ``c`` being ``class_offsets[c]:class_offsets[c + 1]``; the sum
    runs over ``t <= t'`` with the off-diagonal terms doubled (the summand is symmetric).
    """
    n_features = values.shape[1]
    n_out = a.shape[1]
    u = np.empty(n_features)
    for c in range(len(class_offsets) - 1):
        for t in range(class_offsets[c], class_offsets[c + 1]):
            for t2 in range(t, class_offsets[c + 1]):
                q = 0.0
                for f in range(n_features):
                    d = values[t, f] - values[t2, f]
                    u[f] = d * inv_theta2[f]
                    q += d * u[f]
                k = math.exp(-0.5 * q)
                if t2 != t:
                    k *= 2.0
                for l in range(n_out):
                    term = a[t, l] * a[t2, l]
                    if with_b:
                        ub = 0.0
                        ub2 = 0.0
                        bb = 0.0
                        for f in range(n_features):
                            ub += u[f] * b[t, l, f]
                            ub2 += u[f] * b[t2, l, f]
                            bb += b[t, l, f] * b[t2, l, f] * inv_theta2[f]
                        term += a[t, l] * ub2 - a[t2, l] * ub + bb - ub * ub2
                    out[l] += k * term
