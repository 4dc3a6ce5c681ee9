"""Numba kernel enumerating the triplets of ``threebody.py`` with their gradients.

Everything here takes plain arrays; ``threebody.py`` checks inputs and builds them.

A triplet is a centre ``i`` and two of its neighbour pairs ``p < q`` (slots 1 and 2),
with vectors ``v1 = r_j - r_i``, ``v2 = r_k - r_i`` (periodic images included) and
``v3 = v2 - v1``. Features: ``x = (r1 + r2, (r1 - r2)^2, r3)``; weight
``w = f_c(r1) f_c(r2)``.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def count_triplets(offsets):
    """Number of triplets: ``sum_i c_i (c_i - 1) / 2`` over the neighbour counts ``c_i``."""
    total = 0
    for i in range(len(offsets) - 1):
        c = offsets[i + 1] - offsets[i]
        total += c * (c - 1) // 2
    return total


@numba.njit(cache=True, nogil=True)
def fill_triplets(offsets, neighbors, vectors, distances, cutoff, dcutoff, species, n_species,
                  with_gradients, with_strain, values, classes, weights, atoms,
                  dvalues, dweights, dvalues_strain, dweights_strain):
    """Fill the triplet arrays (shapes as in ``Instances``) in place.

    ``distances``, ``cutoff`` and ``dcutoff`` are per neighbour pair.
    """
    n_pair_classes = n_species * (n_species + 1) // 2
    t = 0
    for i in range(len(offsets) - 1):
        for p in range(offsets[i], offsets[i + 1]):
            j = neighbors[p]
            r1 = distances[p]
            u1 = vectors[p] / r1
            for q in range(p + 1, offsets[i + 1]):
                k = neighbors[q]
                r2 = distances[q]
                u2 = vectors[q] / r2
                v3 = vectors[q] - vectors[p]
                r3 = np.sqrt(v3[0] * v3[0] + v3[1] * v3[1] + v3[2] * v3[2])
                u3 = v3 / r3
                twice = 2.0 * (r1 - r2)
                values[t, 0] = r1 + r2
                values[t, 1] = (r1 - r2) * (r1 - r2)
                values[t, 2] = r3
                a = species[j]
                b = species[k]
                low = min(a, b)
                high = max(a, b)
                classes[t] = species[i] * n_pair_classes + low * n_species - low * (low - 1) // 2 + high - low
                w1 = cutoff[p] * dcutoff[q]  # f_c(r1) f_c'(r2)
                w2 = dcutoff[p] * cutoff[q]  # f_c'(r1) f_c(r2)
                weights[t] = cutoff[p] * cutoff[q]
                atoms[t, 0] = i
                atoms[t, 1] = j
                atoms[t, 2] = k
                if with_gradients:
                    for c in range(3):
                        # slot 1 (j): dr1 = u1, dr3 = -u3; slot 2 (k): dr2 = u2, dr3 = u3
                        dvalues[t, 1, c, 0] = u1[c]
                        dvalues[t, 1, c, 1] = twice * u1[c]
                        dvalues[t, 1, c, 2] = -u3[c]
                        dvalues[t, 2, c, 0] = u2[c]
                        dvalues[t, 2, c, 1] = -twice * u2[c]
                        dvalues[t, 2, c, 2] = u3[c]
                        dweights[t, 1, c] = w2 * u1[c]
                        dweights[t, 2, c] = w1 * u2[c]
                        # the centre: minus the sum (translation invariance)
                        for f in range(3):
                            dvalues[t, 0, c, f] = -dvalues[t, 1, c, f] - dvalues[t, 2, c, f]
                        dweights[t, 0, c] = -dweights[t, 1, c] - dweights[t, 2, c]
                if with_strain:
                    # v -> (1 + eps) v, so d r / d eps[a, b] = u_a v_b for each vector
                    for c in range(3):
                        for d in range(3):
                            s1 = u1[c] * vectors[p, d]
                            s2 = u2[c] * vectors[q, d]
                            dvalues_strain[t, c, d, 0] = s1 + s2
                            dvalues_strain[t, c, d, 1] = twice * (s1 - s2)
                            dvalues_strain[t, c, d, 2] = u3[c] * v3[d]
                            dweights_strain[t, c, d] = w2 * s1 + w1 * s2
                t += 1
