"""Orthonormal radial bases and the splined radial integrals of SOAP.

A neighbour at distance ``d`` adds a Gaussian of width ``sigma`` to the atomic density.
Its projection on ``R_n(r) Y_lm(r_hat)`` is ``I_nl(d) Y_lm(d_hat)`` with the radial
integral::

    I_nl(d) = 4 pi exp(-d^2 / 2 sigma^2) int_0^inf R_n(r) r^2 exp(-r^2 / 2 sigma^2)
              i_l(r d / sigma^2) dr

(``i_l``: modified spherical Bessel function of the first kind). Since ``I_nl(d) ~ d^l``
near zero, we tabulate ``I_nl(d) / d^l``, which is smooth on ``[0, r_cut]``, and multiply by
the solid harmonic ``d^l Y_lm``. The table is a cubic spline on a uniform grid, whose
coefficients are evaluated in numba (see ``evaluate_spline``).
"""

import numba
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import ive, roots_legendre


RADIAL_BASES = ("gaussian", "gto")


def gto_widths(n_max: int, r_cut: float) -> np.ndarray:
    """Widths ``sigma_n = r_cut * max(sqrt(n), 1) / n_max`` of the primitive GTOs."""
    n = np.arange(n_max)
    return r_cut * np.maximum(np.sqrt(n), 1.0) / n_max


def _primitives(kind: str, n_max: int, r_cut: float, atom_sigma: float):
    """Primitive radial functions, as a function of ``r`` returning (n_max, n_r)."""
    n = np.arange(n_max)
    if kind == "gto":
        alpha = 1.0 / (2.0 * gto_widths(n_max, r_cut) ** 2)
        return lambda r: r[None, :] ** n[:, None] * np.exp(-alpha[:, None] * r[None, :] ** 2)
    if kind == "gaussian":
        centers = r_cut * n / n_max
        return lambda r: np.exp(-((r[None, :] - centers[:, None]) ** 2) / (2.0 * atom_sigma**2))
    raise ValueError(f"radial_basis must be one of {RADIAL_BASES}, got {kind!r}")


def radial_basis(kind: str, n_max: int, r_cut: float, atom_sigma: float):
    """Return a function evaluating the orthonormal radial basis ``R_n(r)``, shape (n_max, n_r).

    ``kind="gto"``: primitives ``r^n exp(-r^2 / 2 sigma_n^2)`` (see ``gto_widths``);
    ``kind="gaussian"``: Gaussians of width ``atom_sigma`` centred at ``r_cut n / n_max``
    (equispaced, as QUIP's SOAP), which resolve every distance equally well.
    The primitives are orthonormalised with the symmetric (Loewdin) transform
    ``S^{-1/2}``, ``S`` being their overlap under the ``r^2 dr`` measure on ``[0, inf)``
    (Gauss-Legendre quadrature, converged to machine precision).
    """
    primitives = _primitives(kind, n_max, r_cut, atom_sigma)
    r_max = 3.0 * r_cut + 12.0 * atom_sigma
    nodes, weights = roots_legendre(2000)
    r = 0.5 * r_max * (nodes + 1.0)
    values = primitives(r)
    overlap = (values * (0.5 * r_max * weights * r**2)) @ values.T
    # normalise the primitives first: a unit diagonal keeps eigh accurate
    scale = 1.0 / np.sqrt(np.diag(overlap))
    overlap = overlap * np.outer(scale, scale)
    eigenvalues, eigenvectors = np.linalg.eigh(overlap)
    if eigenvalues.min() < 1e-12 * eigenvalues.max():
        raise ValueError(
            f"the {kind} radial basis is numerically degenerate for n_max={n_max}; use a "
            "smaller n_max"
        )
    transform = eigenvectors @ np.diag(eigenvalues**-0.5) @ eigenvectors.T * scale[None, :]

    def basis(r: np.ndarray) -> np.ndarray:
        return transform @ primitives(np.asarray(r, dtype=float))

    return basis


def _scaled_bessel_over_power(l: int, kappa: np.ndarray) -> np.ndarray:
    """``exp(-kappa) i_l(kappa) / kappa^l``, finite at ``kappa = 0``."""
    kappa = np.asarray(kappa, dtype=float)
    out = np.empty_like(kappa)
    small = kappa < 1e-3
    k = kappa[small]
    double_factorial = float(np.prod(np.arange(2 * l + 1, 0, -2)))
    # i_l(k)/k^l = (1 + k^2 / (2 (2l+3)) + O(k^4)) / (2l+1)!!
    out[small] = np.exp(-k) * (1.0 + k * k / (2.0 * (2 * l + 3))) / double_factorial
    k = kappa[~small]
    out[~small] = np.sqrt(np.pi / (2.0 * k)) * ive(l + 0.5, k) / k**l
    return out


def radial_integrals(distances, n_max, l_max, r_cut, atom_sigma, basis="gaussian", n_quad=None):
    """``I_nl(d) / d^l`` for each distance, shape (n_distances, n_max, l_max + 1).

    Computed by Gauss-Legendre quadrature over ``r`` in ``[0, r_cut + 10 sigma]``, beyond
    which the density of a neighbour inside the cutoff is below ``exp(-50)``; by default
    with 8 nodes per ``sigma`` (at least 150), converged to ~1e-13.
    """
    distances = np.asarray(distances, dtype=float)
    r_max = r_cut + 10.0 * atom_sigma
    if n_quad is None:
        n_quad = max(150, int(8 * r_max / atom_sigma))
    nodes, weights = roots_legendre(n_quad)
    r = 0.5 * r_max * (nodes + 1.0)
    w = 0.5 * r_max * weights
    basis = radial_basis(basis, n_max, r_cut, atom_sigma)(r) * (w * r**2)[None, :]
    s2 = atom_sigma**2
    gauss = np.exp(-((r[None, :] - distances[:, None]) ** 2) / (2.0 * s2))
    kappa = distances[:, None] * r[None, :] / s2
    out = np.empty((distances.size, n_max, l_max + 1))
    for l in range(l_max + 1):
        integrand = 4.0 * np.pi * gauss * _scaled_bessel_over_power(l, kappa) * (r / s2) ** l
        out[:, :, l] = integrand @ basis.T
    return out


def radial_spline(n_max, l_max, r_cut, atom_sigma, basis="gaussian", points_per_angstrom=100):
    """Cubic-spline table of ``I_nl(d) / d^l`` on ``[0, r_cut]``.

    Returns
    -------
    coefficients : ndarray of shape (n_intervals, 4, n_max, l_max + 1)
        Value on interval ``k`` at ``t = d - k * step`` is
        ``((c0 t + c1) t + c2) t + c3``.
    step : float
        Grid spacing in Angstrom.
    """
    n_points = max(int(points_per_angstrom * r_cut), 64) + 1
    grid = np.linspace(0.0, r_cut, n_points)
    values = radial_integrals(grid, n_max, l_max, r_cut, atom_sigma, basis)
    spline = CubicSpline(grid, values, axis=0)
    coefficients = np.ascontiguousarray(np.moveaxis(spline.c, 0, 1))
    return coefficients, grid[1] - grid[0]


@numba.njit(cache=True, nogil=True)
def evaluate_spline(coefficients, step, d, values, derivatives):
    """Fill ``values[n, l]`` and ``derivatives[n, l]`` from the spline at distance ``d``."""
    n_intervals = coefficients.shape[0]
    k = min(int(d / step), n_intervals - 1)
    t = d - k * step
    c = coefficients[k]
    for n in range(c.shape[1]):
        for l in range(c.shape[2]):
            values[n, l] = ((c[0, n, l] * t + c[1, n, l]) * t + c[2, n, l]) * t + c[3, n, l]
            derivatives[n, l] = (3.0 * c[0, n, l] * t + 2.0 * c[1, n, l]) * t + c[2, n, l]
