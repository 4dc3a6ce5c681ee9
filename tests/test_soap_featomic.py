"""SOAP against featomic, an independent implementation (skipped without featomic).

With ``radial_basis="gto"`` gapy and featomic expand the same density on the same span of
Gaussian-type orbitals, but orthonormalise them differently, so single features differ
by an orthogonal change of radial basis. Its invariants agree: the eigenvalues of each
``P_l[n1, n2] = sum_m c_n1lm c_n2lm / sqrt(2l+1)``, up to featomic's normalisation of the
Gaussian density, ``(pi sigma^2)^(-3/4)`` per density, squared in ``P``, and its sign
``(-1)^l`` from the Clebsch-Gordan coupling.
"""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from gapy import SOAP

featomic = pytest.importorskip("featomic")

N_MAX, L_MAX, R_CUT, SIGMA, WIDTH = 4, 4, 3.8, 0.5, 0.8


def featomic_matrices(atoms):
    calculator = featomic.SoapPowerSpectrum(
        cutoff=featomic.cutoff.Cutoff(radius=R_CUT, smoothing=featomic.cutoff.ShiftedCosine(width=WIDTH)),
        density=featomic.density.Gaussian(width=SIGMA),
        basis=featomic.basis.TensorProduct(max_angular=L_MAX, radial=featomic.basis.Gto(max_radial=N_MAX - 1)),
    )
    block = calculator.compute(atoms).block(0)
    out = np.zeros((len(atoms), L_MAX + 1, N_MAX, N_MAX))
    atom_index = block.samples.column("atom")
    for column, (l, n1, n2) in enumerate(block.properties.values):
        # featomic couples m and -m with the Clebsch-Gordan sign (-1)^l
        out[atom_index, l, n1, n2] = (-1) ** l * block.values[:, column]
    return out


def gapy_matrices(atoms):
    soap = SOAP(["Si"], r_cut=R_CUT, n_max=N_MAX, l_max=L_MAX, atom_sigma=SIGMA,
                cutoff_width=WIDTH, normalize=False, radial_basis="gto")
    values = soap.compute(atoms)
    out = np.zeros((len(atoms), L_MAX + 1, N_MAX, N_MAX))
    for k, (_, n1, _, n2, l) in enumerate(soap.feature_labels()):
        weight = 1.0 if n1 == n2 else np.sqrt(2.0)
        out[:, l, n1, n2] = out[:, l, n2, n1] = values[:, k] / weight
    return out


@pytest.mark.parametrize("system", ["cluster", "crystal"])
def test_power_spectrum_invariants_equal_featomic(system):
    if system == "cluster":
        atoms = Atoms("Si5", positions=[[0, 0, 0], [2.1, 0.3, -0.2], [-0.4, 1.9, 0.8],
                                        [0.9, -1.2, 2.6], [2.4, 2.0, 1.1]])
    else:
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.rattle(0.1, seed=4)
    ours = np.linalg.eigvalsh(gapy_matrices(atoms))
    theirs = np.linalg.eigvalsh(featomic_matrices(atoms))
    normalisation = (np.pi * SIGMA**2) ** 1.5
    significant = np.abs(theirs) > 1e-6 * np.abs(theirs).max()
    assert significant.sum() > len(atoms) * (L_MAX + 1)  # more than one eigenvalue per block
    np.testing.assert_allclose(ours[significant], normalisation * theirs[significant], rtol=1e-6)
