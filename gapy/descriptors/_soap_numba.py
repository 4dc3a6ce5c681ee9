"""Numba kernels of the SOAP power spectrum and its position and strain gradients.

Everything here takes plain arrays; ``soap.py`` checks inputs and builds them.

Notation: ``k = species * n_max + n`` indexes a (species, radial function) channel; the
density expansion of one centre is ``c[k, lm]``. Features are ordered ``(k1, k2, l)`` with
``k1 <= k2``, ``l`` fastest::

    p[k1, k2, l] = w(k1, k2) / sqrt(2l + 1) * sum_m c[k1, lm] c[k2, lm],
    w = 1 if k1 == k2 else sqrt(2)

so that ``p . p'`` equals the sum over all ordered channel pairs, each ``l`` weighted by
``1 / (2l + 1)`` (as QUIP and featomic).
"""

import math

import numba
import numpy as np

from ._radial import evaluate_spline
from ._ylm import solid_harmonics


@numba.njit(cache=True, nogil=True)
def cosine_cutoff(d, r_cut, width):
    """Smooth cutoff: 1 below ``r_cut - width``, cosine down to 0 at ``r_cut``."""
    r_inner = r_cut - width
    if d <= r_inner:
        return 1.0, 0.0
    if d >= r_cut:
        return 0.0, 0.0
    phase = math.pi * (d - r_inner) / width
    return 0.5 * (1.0 + math.cos(phase)), -0.5 * math.pi / width * math.sin(phase)


@numba.njit(cache=True, nogil=True)
def radial_scaling(d, weight, dweight, radius, exponent):
    """``weight / (1 + (d / radius)^exponent)`` and its derivative in ``d``."""
    t = (d / radius) ** exponent
    u = 1.0 / (1.0 + t)
    du = -exponent * t / (d * (1.0 + t) ** 2)
    return weight * u, dweight * u + weight * du


@numba.njit(cache=True, nogil=True)
def make_scratch(n_max, l_max):
    """Scratch arrays for ``expand_density``: radial values, derivatives, harmonics."""
    n_lm = (l_max + 1) * (l_max + 1)
    l_of_lm = np.empty(n_lm, dtype=np.int64)
    for l in range(l_max + 1):
        for lm in range(l * l, (l + 1) * (l + 1)):
            l_of_lm[lm] = l
    return (
        np.empty((n_max, l_max + 1)),
        np.empty((n_max, l_max + 1)),
        np.empty(n_lm),
        np.empty((n_lm, 3)),
        np.zeros((l_max + 1, l_max + 1)),
        np.zeros((2, l_max + 1)),
        l_of_lm,
    )


@numba.njit(cache=True, nogil=True, fastmath=True)
def expand_density(start, n_neighbors, pair_vectors, pair_species, center_species, basis,
                   scratch, coeffs, dcoeffs, with_gradients, slots, with_values=True):
    """Density expansion ``coeffs[lm, k]`` of one centre and its pair gradients.

    ``basis = (spline_coefficients, spline_step, ylm_prefactors, r_cut, cutoff_width,
    center_weight, scaling_radius, scaling_exponent)`` (``scaling_radius = 0``: no
    radial scaling). With gradients, ``dcoeffs[lm, (slots[jj] * 3 + a) * n_max + n]``
    receives ``d c[(species(jj), n), lm] / d r_ij[a]`` for the neighbours ``jj`` of the
    centre with ``slots[jj] >= 0`` (no gradient for the others). Without
    ``with_values``, ``coeffs`` is left as it is (known already) and only the
    neighbours with a slot are visited.
    """
    (spline_coefficients, spline_step, ylm_prefactors, r_cut, cutoff_width, center_weight,
     scaling_radius, scaling_exponent) = basis
    radial, radial_d, ylm, ylm_grad, q_scratch, cs_scratch, l_of_lm = scratch
    n_max = radial.shape[0]
    n_lm = ylm.shape[0]
    if with_values:
        coeffs[:, :] = 0.0
        # the central atom's own Gaussian (d = 0: l = 0 only)
        evaluate_spline(spline_coefficients, spline_step, 0.0, radial, radial_d)
        for n in range(n_max):
            coeffs[0, center_species * n_max + n] += center_weight * radial[n, 0] * ylm_prefactors[0, 0]

    for jj in range(n_neighbors):
        if not with_values and slots[jj] < 0:
            continue
        p = start + jj
        x = pair_vectors[p, 0]
        y = pair_vectors[p, 1]
        z = pair_vectors[p, 2]
        d = math.sqrt(x * x + y * y + z * z)
        fc, dfc = cosine_cutoff(d, r_cut, cutoff_width)
        if scaling_radius > 0.0:
            fc, dfc = radial_scaling(d, fc, dfc, scaling_radius, scaling_exponent)
        pair_gradients = with_gradients and slots[jj] >= 0
        evaluate_spline(spline_coefficients, spline_step, d, radial, radial_d)
        solid_harmonics(x, y, z, ylm_prefactors, q_scratch, cs_scratch, ylm, ylm_grad,
                        pair_gradients)
        base = pair_species[p] * n_max
        if with_values:
            for lm in range(n_lm):
                l = l_of_lm[lm]
                for n in range(n_max):
                    coeffs[lm, base + n] += fc * radial[n, l] * ylm[lm]
        if pair_gradients:
            ux = x / d
            uy = y / d
            uz = z / d
            for lm in range(n_lm):
                l = l_of_lm[lm]
                for n in range(n_max):
                    g = radial[n, l]
                    radial_part = (dfc * g + fc * radial_d[n, l]) * ylm[lm]
                    fg = fc * g
                    column = slots[jj] * 3 * n_max + n
                    dcoeffs[lm, column] = radial_part * ux + fg * ylm_grad[lm, 0]
                    dcoeffs[lm, column + n_max] = radial_part * uy + fg * ylm_grad[lm, 1]
                    dcoeffs[lm, column + 2 * n_max] = radial_part * uz + fg * ylm_grad[lm, 2]


@numba.njit(cache=True, nogil=True, fastmath=True)
def power_spectrum(coeffs, l_max, normalize, out):
    """Fill ``out`` with the power spectrum of ``coeffs[lm, k]``; return the raw norm."""
    n_channels = coeffs.shape[1]
    sqrt2 = math.sqrt(2.0)
    f = 0
    for k1 in range(n_channels):
        for k2 in range(k1, n_channels):
            w = 1.0 if k1 == k2 else sqrt2
            for l in range(l_max + 1):
                acc = 0.0
                for lm in range(l * l, (l + 1) * (l + 1)):
                    acc += coeffs[lm, k1] * coeffs[lm, k2]
                out[f] = w * acc / math.sqrt(2.0 * l + 1.0)
                f += 1
    norm = 0.0
    for f in range(out.shape[0]):
        norm += out[f] * out[f]
    norm = math.sqrt(norm)
    if normalize and norm > 0.0:
        for f in range(out.shape[0]):
            out[f] /= norm
    return norm


@numba.njit(cache=True, nogil=True)
def gradient_rows(center_offsets, pair_neighbors):
    """Rows of the sparse position gradients: one per distinct (centre, neighbour).

    Pairs are sorted by centre, then neighbour; each centre also gets a row for its own
    position. Returns ``row_centers``, ``row_neighbors`` (sorted the same way),
    ``pair_rows`` (row of each pair, ``-1`` for images of the centre itself) and
    ``self_rows`` (row of each centre's own position).
    """
    n_atoms = center_offsets.shape[0] - 1
    n_pairs = pair_neighbors.shape[0]
    row_centers = np.empty(n_pairs + n_atoms, dtype=np.int64)
    row_neighbors = np.empty(n_pairs + n_atoms, dtype=np.int64)
    pair_rows = np.empty(n_pairs, dtype=np.int64)
    self_rows = np.empty(n_atoms, dtype=np.int64)
    n_rows = 0
    for i in range(n_atoms):
        first_row = n_rows
        self_done = False
        for p in range(center_offsets[i], center_offsets[i + 1]):
            j = pair_neighbors[p]
            if j == i:
                pair_rows[p] = -1
                continue
            if not self_done and j > i:
                self_rows[i] = n_rows
                row_centers[n_rows] = i
                row_neighbors[n_rows] = i
                n_rows += 1
                self_done = True
            if n_rows == first_row or row_neighbors[n_rows - 1] != j:
                row_centers[n_rows] = i
                row_neighbors[n_rows] = j
                n_rows += 1
            pair_rows[p] = n_rows - 1
        if not self_done:
            self_rows[i] = n_rows
            row_centers[n_rows] = i
            row_neighbors[n_rows] = i
            n_rows += 1
    return row_centers[:n_rows].copy(), row_neighbors[:n_rows].copy(), pair_rows, self_rows


@numba.njit(cache=True, nogil=True)
def block_gradient_rows(center_offsets, pair_neighbors, target_index):
    """Rows of the position gradients with respect to the atoms of one block.

    ``target_index[j]`` is atom ``j``'s place in the block, ``-1`` outside it. The
    centres are the block's atoms and every atom with a neighbour in it. Returns
    ``centers`` (sorted), ``row_centers``, ``row_neighbors`` (places in the block),
    ``pair_rows`` (row of each pair; ``-1`` for images of the centre itself, ``-2`` for
    a neighbour outside the block) and ``self_rows`` (``-1`` for centres outside it).
    """
    n_atoms = center_offsets.shape[0] - 1
    n_pairs = pair_neighbors.shape[0]
    is_center = target_index >= 0
    for i in range(n_atoms):
        if not is_center[i]:
            for p in range(center_offsets[i], center_offsets[i + 1]):
                if target_index[pair_neighbors[p]] >= 0:
                    is_center[i] = True
                    break
    centers = np.flatnonzero(is_center)
    row_centers = np.empty(n_pairs + n_atoms, dtype=np.int64)
    row_neighbors = np.empty(n_pairs + n_atoms, dtype=np.int64)
    pair_rows = np.full(n_pairs, -2, dtype=np.int64)
    self_rows = np.full(n_atoms, -1, dtype=np.int64)
    last_row = np.full(n_atoms, -1, dtype=np.int64)  # row of (i, j) for the current centre i
    n_rows = 0
    for i in centers:
        if target_index[i] >= 0:
            self_rows[i] = n_rows
            row_centers[n_rows] = i
            row_neighbors[n_rows] = target_index[i]
            n_rows += 1
        first_row = n_rows
        for p in range(center_offsets[i], center_offsets[i + 1]):
            j = pair_neighbors[p]
            if j == i:
                pair_rows[p] = -1
            elif target_index[j] >= 0:
                if last_row[j] < first_row:
                    last_row[j] = n_rows
                    row_centers[n_rows] = i
                    row_neighbors[n_rows] = target_index[j]
                    n_rows += 1
                pair_rows[p] = last_row[j]
    return centers, row_centers[:n_rows].copy(), row_neighbors[:n_rows].copy(), pair_rows, self_rows


@numba.njit(cache=True, nogil=True)
def _max_neighbors(center_offsets, centers, first, last):
    result = 0
    for c in range(first, last):
        i = centers[c]
        result = max(result, center_offsets[i + 1] - center_offsets[i])
    return result


@numba.njit(cache=True, nogil=True, fastmath=True)
def compute_soap(centers, first, last, center_offsets, pair_vectors, pair_species,
                 pair_rows, self_rows, strain_rows, atom_species, n_species, basis, normalize,
                 with_gradients, with_strain, values, dpos, dstrain, known_coeffs, known):
    """Compute features (and gradients) of the centres ``centers[first:last]``.

    Pairs are sorted by centre: those of centre ``i`` are
    ``center_offsets[i]:center_offsets[i + 1]``, with vectors ``r_j - r_i`` (periodic
    image included) and the neighbour's species index. ``pair_rows[p]`` is the row of
    ``dpos`` that receives ``d values[i] / d r_j`` (``-1`` when ``j`` is an image of
    ``i``, ``-2`` when it is not wanted), ``self_rows[i]`` the row of
    ``d values[i] / d r_i`` and ``strain_rows[i]`` that of ``dstrain`` (``-1``: not
    wanted). Pair gradients that no output needs are not computed. ``known_coeffs``
    (n_atoms, n_lm, n_channels) keeps the expansion of each centre across calls (the
    blocks of :meth:`gapy.SOAP.gradient_blocks`), ``known[i]`` telling which are set;
    an empty ``known_coeffs`` keeps nothing.
    """
    n_max = basis[0].shape[2]
    l_max = basis[0].shape[3] - 1
    n_lm = (l_max + 1) * (l_max + 1)
    n_channels = n_species * n_max
    n_features = values.shape[1]
    scratch = make_scratch(n_max, l_max)
    dpower = np.empty((3, n_features))
    self_grad = np.empty((3, n_features))
    strain_grad = np.empty((3, 3, n_features))
    # dcoeffs is stored flat with the row length of the current centre so that each l
    # block is a contiguous (2l+1, n_columns) matrix: one matrix product per l then
    # contracts all neighbour gradients with the expansion.
    coeffs = np.empty((n_lm, n_channels))
    max_neighbors = _max_neighbors(center_offsets, centers, first, last)
    max_columns = max_neighbors * 3 * n_max if with_gradients else 0
    slots = np.empty(max_neighbors, dtype=np.int64)
    dcoeffs_buffer = np.empty(n_lm * max_columns)
    contracted_buffer = np.empty((l_max + 1) * max_columns * n_channels)
    sqrt2 = math.sqrt(2.0)

    for c in range(first, last):
        i = centers[c]
        start = center_offsets[i]
        n_neighbors = center_offsets[i + 1] - start
        self_row = self_rows[i]
        strain_row = strain_rows[i] if with_strain else -1
        # gradient columns of the pairs some output needs: all of them for the centre's
        # own row or strain row, else (a halo centre of a block) those in pair_rows
        n_wanted = 0
        for jj in range(n_neighbors):
            if self_row >= 0 or strain_row >= 0 or pair_rows[start + jj] >= 0:
                slots[jj] = n_wanted
                n_wanted += 1
            else:
                slots[jj] = -1
        n_columns = n_wanted * 3 * n_max if with_gradients else 0
        dcoeffs = dcoeffs_buffer[:n_lm * n_columns].reshape((n_lm, n_columns))
        keep = known_coeffs.shape[0] > 0
        if keep and known[i]:
            coeffs[:, :] = known_coeffs[i]
        expand_density(start, n_neighbors, pair_vectors, pair_species, atom_species[i],
                       basis, scratch, coeffs, dcoeffs, with_gradients, slots, not (keep and known[i]))
        if keep and not known[i]:
            known_coeffs[i] = coeffs
            known[i] = True
        norm = power_spectrum(coeffs, l_max, normalize, values[i])
        if not normalize or norm == 0.0:
            norm = 1.0
        if not with_gradients or n_neighbors == 0:
            continue

        # contracted[l, (jj, a, n), k] = sum_m dc[n(jj), lm] / dr_ij[a] * c[k, lm]
        contracted = contracted_buffer[:(l_max + 1) * n_columns * n_channels].reshape(
            (l_max + 1, n_columns, n_channels)
        )
        for l in range(l_max + 1):
            lm_block = dcoeffs[l * l:(l + 1) * (l + 1)]
            np.dot(lm_block.T, np.ascontiguousarray(coeffs[l * l:(l + 1) * (l + 1)]), contracted[l])

        self_grad[:, :] = 0.0
        strain_grad[:, :, :] = 0.0
        # gradient of the power spectrum with respect to each neighbour vector
        for jj in range(n_neighbors):
            p = start + jj
            pair_row = pair_rows[p]
            if pair_row < 0 and strain_row < 0 and (pair_row == -1 or self_row < 0):
                continue  # wanted neither in dpos, nor in the centre's own row, nor in dstrain
            s = pair_species[p]
            f = 0
            for k1 in range(n_channels):
                s1 = k1 // n_max
                n1 = k1 - s1 * n_max
                for k2 in range(k1, n_channels):
                    s2 = k2 // n_max
                    n2 = k2 - s2 * n_max
                    w = 1.0 if k1 == k2 else sqrt2
                    for l in range(l_max + 1):
                        for a in range(3):
                            row = (slots[jj] * 3 + a) * n_max
                            acc = 0.0
                            if s1 == s:
                                acc += contracted[l, row + n1, k2]
                            if s2 == s:
                                acc += contracted[l, row + n2, k1]
                            dpower[a, f] = w * acc / math.sqrt(2.0 * l + 1.0)
                        f += 1
            if normalize:
                # d(p/|p|) = (dp - v (v . dp)) / |p| with v = p/|p|
                for a in range(3):
                    projection = 0.0
                    for f in range(n_features):
                        projection += values[i, f] * dpower[a, f]
                    for f in range(n_features):
                        dpower[a, f] = (dpower[a, f] - values[i, f] * projection) / norm
            if pair_row >= 0:
                for a in range(3):
                    for f in range(n_features):
                        dpos[pair_row, a, f] += dpower[a, f]
            if pair_row != -1:
                for a in range(3):
                    for f in range(n_features):
                        self_grad[a, f] -= dpower[a, f]
            if strain_row >= 0:
                for a in range(3):
                    for b in range(3):
                        r_b = pair_vectors[p, b]
                        for f in range(n_features):
                            strain_grad[a, b, f] += dpower[a, f] * r_b
        if self_row >= 0:
            for a in range(3):
                for f in range(n_features):
                    dpos[self_row, a, f] += self_grad[a, f]
        if strain_row >= 0:
            dstrain[strain_row] = strain_grad


@numba.njit(cache=True, nogil=True, fastmath=True)
def contract_soap_gradients(center_offsets, pair_vectors, pair_species, pair_neighbors,
                            atom_species, n_species, basis, normalize, weights, forces,
                            virial):
    """Reverse mode: ``sum_i weights[i] . d values[i] / d r`` without full gradients.

    For a scalar ``E = sum_i e(values[i])`` with ``weights[i] = de / d values[i]``, adds
    ``-dE/dr_j`` to ``forces[j]`` and ``-dE/d eps`` to ``virial``. The gradient is taken
    back to the density coefficients once per centre (``dE/dc = H c``), then to each
    neighbour vector: no (pairs x features) array is ever formed.
    """
    n_atoms = weights.shape[0]
    n_features = weights.shape[1]
    n_max = basis[0].shape[2]
    l_max = basis[0].shape[3] - 1
    n_lm = (l_max + 1) * (l_max + 1)
    n_channels = n_species * n_max
    scratch = make_scratch(n_max, l_max)
    sqrt2 = math.sqrt(2.0)
    coeffs = np.empty((n_lm, n_channels))
    max_neighbors = _max_neighbors(center_offsets, np.arange(n_atoms), 0, n_atoms)
    max_columns = max_neighbors * 3 * n_max
    slots = np.arange(max_neighbors)  # every pair's gradient columns, in order
    dcoeffs_buffer = np.empty(n_lm * max_columns)
    power = np.empty(n_features)
    h = np.empty(n_features)
    # symmetric[l, k1, k2] = dE/dp[k1, k2, l] * w, doubled on the diagonal
    symmetric = np.empty((l_max + 1, n_channels, n_channels))
    dcoeff_energy = np.empty((n_lm, n_channels))

    for i in range(n_atoms):
        start = center_offsets[i]
        n_neighbors = center_offsets[i + 1] - start
        if n_neighbors == 0:
            continue
        n_columns = n_neighbors * 3 * n_max
        dcoeffs = dcoeffs_buffer[:n_lm * n_columns].reshape((n_lm, n_columns))
        expand_density(start, n_neighbors, pair_vectors, pair_species, atom_species[i],
                       basis, scratch, coeffs, dcoeffs, True, slots)
        norm = power_spectrum(coeffs, l_max, normalize, power)
        # dE/dp from dE/dv, v = p / |p|
        projection = 0.0
        if normalize and norm > 0.0:
            for f in range(n_features):
                projection += weights[i, f] * power[f]
            for f in range(n_features):
                h[f] = (weights[i, f] - power[f] * projection) / norm
        else:
            for f in range(n_features):
                h[f] = weights[i, f]
        f = 0
        for k1 in range(n_channels):
            for k2 in range(k1, n_channels):
                for l in range(l_max + 1):
                    weighted = h[f] / math.sqrt(2.0 * l + 1.0)
                    if k1 == k2:
                        symmetric[l, k1, k1] = 2.0 * weighted
                    else:
                        symmetric[l, k1, k2] = sqrt2 * weighted
                        symmetric[l, k2, k1] = sqrt2 * weighted
                    f += 1
        # dE/dc[lm, k] = sum_k2 symmetric[l, k, k2] c[lm, k2]
        for lm in range(n_lm):
            l = scratch[6][lm]
            for k in range(n_channels):
                acc = 0.0
                for k2 in range(n_channels):
                    acc += symmetric[l, k, k2] * coeffs[lm, k2]
                dcoeff_energy[lm, k] = acc
        for jj in range(n_neighbors):
            p = start + jj
            base = pair_species[p] * n_max
            gx = 0.0
            gy = 0.0
            gz = 0.0
            column = jj * 3 * n_max
            for lm in range(n_lm):
                for n in range(n_max):
                    e = dcoeff_energy[lm, base + n]
                    gx += e * dcoeffs[lm, column + n]
                    gy += e * dcoeffs[lm, column + n_max + n]
                    gz += e * dcoeffs[lm, column + 2 * n_max + n]
            j = pair_neighbors[p]
            forces[j, 0] -= gx
            forces[j, 1] -= gy
            forces[j, 2] -= gz
            forces[i, 0] += gx
            forces[i, 1] += gy
            forces[i, 2] += gz
            for b in range(3):
                r_b = pair_vectors[p, b]
                virial[0, b] -= gx * r_b
                virial[1, b] -= gy * r_b
                virial[2, b] -= gz * r_b
