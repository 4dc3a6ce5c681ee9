"""Real solid harmonics ``r**l * Y_lm`` and their Cartesian gradients, in numba.

Real spherical harmonics are orthonormal on the unit sphere. For ``m > 0``::

    Y_lm  = F_lm * Q_l^m(z, r) * Re[(x + i y)^m] / r^l
    Y_l-m = F_lm * Q_l^m(z, r) * Im[(x + i y)^m] / r^l
    Y_l0  = F_l0 * Q_l^0(z, r) / r^l

with ``F_lm = sqrt((2l+1)/(2 pi) (l-m)!/(l+m)!)``, ``F_l0 = sqrt((2l+1)/(4 pi))`` and the
polynomials ``Q`` from the recursion of Legendre functions (as in sphericart, Bigi et al.,
J. Chem. Phys. 159, 064802 (2023)). Values are stored at index ``l*l + l + m``.
"""

import math
from functools import lru_cache

import numba
import numpy as np


@lru_cache(maxsize=None)
def solid_harmonic_prefactors(l_max: int) -> np.ndarray:
    """Return ``F[l, m]`` for ``0 <= m <= l <= l_max`` (cached, read-only)."""
    prefactors = np.zeros((l_max + 1, l_max + 1))
    for l in range(l_max + 1):
        prefactors[l, 0] = math.sqrt((2 * l + 1) / (4 * math.pi))
        for m in range(1, l + 1):
            ratio = math.factorial(l - m) / math.factorial(l + m)
            prefactors[l, m] = math.sqrt((2 * l + 1) / (2 * math.pi) * ratio)
    prefactors.flags.writeable = False
    return prefactors


@numba.njit(cache=True, nogil=True, fastmath=False)
def solid_harmonics(x, y, z, prefactors, q, cs, values, gradients, with_gradients):
    """Fill ``values[lm]`` (and ``gradients[lm, xyz]``) with real solid harmonics.

    ``q`` of shape (l_max+1, l_max+1) and ``cs`` of shape (2, l_max+1) are scratch space.
    """
    l_max = prefactors.shape[0] - 1
    r2 = x * x + y * y + z * z
    # Q_l^m with Q_m^m = (-1)^m (2m-1)!!, Q_{m+1}^m = (2m+1) z Q_m^m
    q[0, 0] = 1.0
    for m in range(1, l_max + 1):
        q[m, m] = -(2 * m - 1) * q[m - 1, m - 1]
    for m in range(0, l_max):
        q[m + 1, m] = (2 * m + 1) * z * q[m, m]
    for m in range(0, l_max + 1):
        for l in range(m + 2, l_max + 1):
            q[l, m] = ((2 * l - 1) * z * q[l - 1, m] - (l + m - 1) * r2 * q[l - 2, m]) / (l - m)
    # cs[0, m] + i cs[1, m] = (x + i y)^m
    cs[0, 0] = 1.0
    cs[1, 0] = 0.0
    for m in range(1, l_max + 1):
        cs[0, m] = x * cs[0, m - 1] - y * cs[1, m - 1]
        cs[1, m] = x * cs[1, m - 1] + y * cs[0, m - 1]

    for l in range(l_max + 1):
        center = l * l + l
        values[center] = prefactors[l, 0] * q[l, 0]
        for m in range(1, l + 1):
            values[center + m] = prefactors[l, m] * q[l, m] * cs[0, m]
            values[center - m] = prefactors[l, m] * q[l, m] * cs[1, m]

    if not with_gradients:
        return
    # dQ_l^m/dx = x Q_{l-1}^{m+1}, dQ_l^m/dy = y Q_{l-1}^{m+1}, dQ_l^m/dz = (l+m) Q_{l-1}^m
    # d(cs)/dx = m cs_{m-1}, dc_m/dy = -m s_{m-1}, ds_m/dy = m c_{m-1}
    for l in range(l_max + 1):
        center = l * l + l
        for m in range(0, l + 1):
            f = prefactors[l, m]
            q_lm = q[l, m]
            dq_up = q[l - 1, m + 1] if (l >= 1 and m + 1 <= l - 1) else 0.0
            dq_z = (l + m) * q[l - 1, m] if (l >= 1 and m <= l - 1) else 0.0
            if m == 0:
                gradients[center, 0] = f * x * dq_up
                gradients[center, 1] = f * y * dq_up
                gradients[center, 2] = f * dq_z
            else:
                c_m = cs[0, m]
                s_m = cs[1, m]
                c_m1 = cs[0, m - 1]
                s_m1 = cs[1, m - 1]
                gradients[center + m, 0] = f * (x * dq_up * c_m + q_lm * m * c_m1)
                gradients[center + m, 1] = f * (y * dq_up * c_m - q_lm * m * s_m1)
                gradients[center + m, 2] = f * dq_z * c_m
                gradients[center - m, 0] = f * (x * dq_up * s_m + q_lm * m * s_m1)
                gradients[center - m, 1] = f * (y * dq_up * s_m + q_lm * m * c_m1)
                gradients[center - m, 2] = f * dq_z * s_m
