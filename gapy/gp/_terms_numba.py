"""Numba kernels of the squared-exponential instance terms (rows and prior variances).

Everything here takes plain arrays; ``terms.py`` and ``term_variance.py`` check inputs.
"""

import numba


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
