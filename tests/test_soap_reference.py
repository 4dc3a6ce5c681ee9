"""SOAP against independent references.

1. A slow reference that integrates the smooth neighbour density numerically on a 3D
   grid against the radial basis and scipy's complex spherical harmonics: checks the
   radial integrals, their spline, the real harmonics, the cutoff and the power spectrum.
2. The building blocks on their own: harmonics orthonormal and differentiable, radial basis
   orthonormal, spline equal to direct quadrature.
"""

import numpy as np
import pytest
from ase import Atoms
from scipy.special import sph_harm_y

from gapy import SOAP
from gapy.descriptors._radial import evaluate_spline, radial_basis, radial_integrals, radial_spline
from gapy.descriptors._ylm import solid_harmonic_prefactors, solid_harmonics


def reference_power_spectrum(atoms, soap, n_radial=120, n_theta=90, n_phi=180):
    """Power spectrum of every atom by direct numerical integration (slow)."""
    r_max = soap.r_cut + 6 * soap.atom_sigma + 6.0
    nodes, weights = np.polynomial.legendre.leggauss(n_radial)
    radii = 0.5 * r_max * (nodes + 1.0)
    radial_weights = 0.5 * r_max * weights * radii**2
    basis = radial_basis(soap.radial_basis, soap.n_max, soap.r_cut, soap.atom_sigma)(radii)  # (n, r)
    cos_theta, theta_weights = np.polynomial.legendre.leggauss(n_theta)
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    theta = np.arccos(cos_theta)
    tt, pp = np.meshgrid(theta, phi, indexing="ij")
    angular_weights = (theta_weights[:, None] * np.full(n_phi, 2 * np.pi / n_phi)).ravel()
    directions = np.stack(
        [np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], axis=-1
    ).reshape(-1, 3)
    harmonics = [
        [sph_harm_y(l, m, tt, pp).ravel() for m in range(-l, l + 1)] for l in range(soap.l_max + 1)
    ]
    species = list(soap.atomic_numbers)
    features = []
    for i in range(len(atoms)):
        vectors = atoms.positions - atoms.positions[i]
        distances = np.linalg.norm(vectors, axis=1)
        inside = distances < soap.r_cut
        inner = soap.r_cut - soap.cutoff_width
        phase = np.clip((distances - inner) / soap.cutoff_width, 0.0, 1.0)
        weight = 0.5 * (1 + np.cos(np.pi * phase)) * inside
        if soap.scaling_radius is not None:
            weight /= 1 + (distances / soap.scaling_radius) ** soap.scaling_exponent
        weight[i] = soap.center_weight
        coefficients = np.zeros((len(species), soap.n_max, (soap.l_max + 1) ** 2), dtype=complex)
        for s, z in enumerate(species):
            members = np.flatnonzero((atoms.numbers == z) & (weight != 0))
            for k, r in enumerate(radii):
                points = r * directions  # (n_angles, 3)
                squared = ((points[:, None, :] - vectors[None, members, :]) ** 2).sum(-1)
                density = np.exp(-squared / (2 * soap.atom_sigma**2)) @ weight[members]
                for l in range(soap.l_max + 1):
                    for m, y in enumerate(harmonics[l]):
                        projection = (angular_weights * density * np.conj(y)).sum()
                        coefficients[s, :, l * l + m] += radial_weights[k] * basis[:, k] * projection
        channels = coefficients.reshape(len(species) * soap.n_max, -1)
        row = []
        for k1 in range(len(channels)):
            for k2 in range(k1, len(channels)):
                w = 1.0 if k1 == k2 else np.sqrt(2.0)
                for l in range(soap.l_max + 1):
                    block = slice(l * l, (l + 1) ** 2)
                    power = np.real(np.vdot(channels[k1, block], channels[k2, block]))
                    row.append(w * power / np.sqrt(2 * l + 1))
        features.append(row)
    return np.array(features)


@pytest.mark.parametrize("basis, scaling_radius", [("gaussian", None), ("gto", None), ("gaussian", 2.2)])
def test_soap_matches_direct_numerical_integration(basis, scaling_radius):
    atoms = Atoms(
        "Si2GeSi",
        positions=[[0, 0, 0], [2.1, 0.3, -0.2], [-0.4, 1.9, 0.8], [0.9, -1.2, 2.6]],
    )
    soap = SOAP(["Si", "Ge"], r_cut=3.2, n_max=3, l_max=3, atom_sigma=0.6, cutoff_width=0.8,
                center_weight=0.7, normalize=False, radial_basis=basis, scaling_radius=scaling_radius,
                scaling_exponent=3.0)
    reference = reference_power_spectrum(atoms, soap)
    values = soap.compute(atoms)
    assert np.abs(reference).max() > 1e-2
    # atom 3 is 3.0 A from atom 0: inside the cosine transition region
    np.testing.assert_allclose(values, reference, rtol=0, atol=1e-7 * np.abs(reference).max())


def test_solid_harmonics_are_orthonormal_and_differentiable():
    l_max = 7
    prefactors = solid_harmonic_prefactors(l_max)
    q, cs = np.zeros((l_max + 1, l_max + 1)), np.zeros((2, l_max + 1))
    values, grads = np.zeros((l_max + 1) ** 2), np.zeros(((l_max + 1) ** 2, 3))
    cos_theta, weights = np.polynomial.legendre.leggauss(20)
    phis = 2 * np.pi * np.arange(40) / 40
    samples, sample_weights = [], []
    for c, w in zip(cos_theta, weights):
        s = np.sqrt(1 - c * c)
        for phi in phis:
            solid_harmonics(s * np.cos(phi), s * np.sin(phi), c, prefactors, q, cs, values, grads, False)
            samples.append(values.copy())
            sample_weights.append(w * 2 * np.pi / 40)
    samples = np.array(samples)
    gram = (samples * np.array(sample_weights)[:, None]).T @ samples
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-12)

    point = np.array([0.3, -1.1, 0.7])
    solid_harmonics(*point, prefactors, q, cs, values, grads, True)
    analytic = grads.copy()
    for a in range(3):
        step = np.zeros(3)
        step[a] = 1e-6
        solid_harmonics(*(point + step), prefactors, q, cs, values, grads, False)
        plus = values.copy()
        solid_harmonics(*(point - step), prefactors, q, cs, values, grads, False)
        numeric = (plus - values) / 2e-6
        np.testing.assert_allclose(analytic[:, a], numeric, atol=1e-7 * np.abs(numeric).max())


@pytest.mark.parametrize("kind", ["gaussian", "gto"])
def test_radial_basis_is_orthonormal(kind):
    r = np.linspace(0, 40, 400001)
    basis = radial_basis(kind, 8, 5.0, 0.5)(r)
    overlap = (basis * r**2) @ basis.T * (r[1] - r[0])
    np.testing.assert_allclose(overlap, np.eye(8), atol=1e-8)


@pytest.mark.parametrize(
    "n_max, l_max, r_cut, sigma, basis", [(8, 8, 5.4, 0.5, "gaussian"), (4, 6, 3.0, 0.3, "gto")]
)
def test_spline_matches_direct_radial_integrals(n_max, l_max, r_cut, sigma, basis):
    coefficients, step = radial_spline(n_max, l_max, r_cut, sigma, basis)
    distances = np.random.default_rng(0).uniform(0, r_cut, 300)
    direct = radial_integrals(distances, n_max, l_max, r_cut, sigma, basis)
    values, derivatives = np.zeros((n_max, l_max + 1)), np.zeros((n_max, l_max + 1))
    splined = []
    for d in distances:
        evaluate_spline(coefficients, step, d, values, derivatives)
        splined.append(values.copy())
    scale = np.abs(direct).max(axis=(0, 1))
    assert np.all(np.abs(np.array(splined) - direct).max(axis=(0, 1)) < 1e-7 * scale)
    # derivative of the spline against differences of the direct integrals
    d0 = 2.345
    evaluate_spline(coefficients, step, d0, values, derivatives)
    numeric = (radial_integrals([d0 + 1e-5], n_max, l_max, r_cut, sigma, basis)
               - radial_integrals([d0 - 1e-5], n_max, l_max, r_cut, sigma, basis))[0] / 2e-5
    np.testing.assert_allclose(derivatives, numeric, atol=1e-5 * np.abs(numeric).max())
