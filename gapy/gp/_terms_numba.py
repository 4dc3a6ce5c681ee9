"""Numba kernels of the squared-exponential instance terms (rows and prior variances).

Everything here takes plain arrays; ``terms.py`` and ``term_variance.py`` check inputs.
All kernels leave out the factor ``delta^2``. ``inv_theta2[f] = 1 / theta_f^2``.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def se_rows(values, classes, weights, atoms, shares, dvalues, dweights, dvalues_strain,
            dweights_strain, sparse, class_offsets, inv_theta2, with_gradients, with_strain,
            energies, forces, virial):
    """Accumulate local-energy, force and (3 x 3) virial rows in place.

    ``sparse`` is sorted by class; the points of class ``c`` are
    ``class_offsets[c]:class_offsets[c + 1]``. For instance ``t`` and sparse point ``m``
    the kernel is ``K = w_t k(x_t, s_m)``; then ``energies[atoms[t, s], m] += shares[s] K``,
    ``forces[atoms[t, s], :, m] -= dK / dr_(t, s)`` and ``virial[:, :, m] -= dK / d eps``.
    """
    n_instances, n_features = values.shape
    n_slots = atoms.shape[1]
    n_sparse = sparse.shape[0]
    kernel = np.empty(n_sparse)
    dkernel = np.empty((n_features, n_sparse))  # d K / d x_f
    for t in range(n_instances):
        c = classes[t]
        if c < 0 or c >= len(class_offsets) - 1:
            continue
        start = class_offsets[c]
        stop = class_offsets[c + 1]
        if start == stop:
            continue
        w = weights[t]
        for m in range(start, stop):
            q = 0.0
            for f in range(n_features):
                d = values[t, f] - sparse[m, f]
                q += d * d * inv_theta2[f]
            kernel[m] = math.exp(-0.5 * q)
        if with_gradients:
            for f in range(n_features):
                scale = -w * inv_theta2[f]
                x = values[t, f]
                for m in range(start, stop):
                    dkernel[f, m] = scale * kernel[m] * (x - sparse[m, f])
        for s in range(n_slots):
            atom = atoms[t, s]
            share = shares[s] * w
            if share != 0.0:
                for m in range(start, stop):
                    energies[atom, m] += share * kernel[m]
            if not with_gradients:
                continue
            for a in range(3):
                dw = dweights[t, s, a]
                for m in range(start, stop):
                    forces[atom, a, m] -= kernel[m] * dw
                for f in range(n_features):
                    dx = dvalues[t, s, a, f]
                    for m in range(start, stop):
                        forces[atom, a, m] -= dkernel[f, m] * dx
        if not with_strain:
            continue
        for a in range(3):
            for b in range(3):
                dw = dweights_strain[t, a, b]
                for m in range(start, stop):
                    virial[a, b, m] -= kernel[m] * dw
                for f in range(n_features):
                    dx = dvalues_strain[t, a, b, f]
                    for m in range(start, stop):
                        virial[a, b, m] -= dkernel[f, m] * dx


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
