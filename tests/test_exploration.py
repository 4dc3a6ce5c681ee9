"""Biased exploration (metadynamics in descriptor space, uncertainty bias) and the
active-learning loop that survives failures and kills."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from gapy import GAPCalculator, GAPRegressor, SOAP, StructureError
from gapy.gp import voigt
from gapy.sampling import DescriptorMetadynamics, UncertaintyBias, label_structures, run_md
from gapy.testing import assert_allclose_relative, finite_difference_positions, finite_difference_strain


def cu8(rattle: float, seed: int):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(rattle, seed=seed)
    return atoms


SETTINGS = GAPRegressor(SOAP(["Cu"], r_cut=4.5, n_max=4, l_max=3), n_sparse=16, sigma_energy=0.001,
                        sigma_force=0.01, random_state=0)


@pytest.fixture(scope="module")
def model():
    return SETTINGS.fit(label_structures([cu8(0.02, seed) for seed in range(2)], EMT()))


def _property(calc, name):
    def evaluate(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return calc.get_property(name, atoms)
    return evaluate


def check_bias_gradients(calc, model, atoms):
    """Forces and stress of the biased calculator against finite differences of its
    energy; the bias part alone against those of ``bias_energy`` (and not tiny)."""
    atoms = atoms.copy()
    atoms.calc = calc
    forces, stress = atoms.get_forces(), atoms.get_stress()
    plain = atoms.copy()
    plain.calc = GAPCalculator(model)
    bias_forces, bias_stress = forces - plain.get_forces(), stress - plain.get_stress()
    step, volume = 1e-4, atoms.get_volume()
    assert_allclose_relative(forces, -finite_difference_positions(_property(calc, "energy"), atoms, step), 1e-5,
                             "forces")
    assert_allclose_relative(bias_forces, -finite_difference_positions(_property(calc, "bias_energy"), atoms, step),
                             1e-5, "bias forces")
    assert_allclose_relative(stress, voigt(finite_difference_strain(_property(calc, "energy"), atoms, step)) / volume,
                             1e-5, "stress")
    assert_allclose_relative(
        bias_stress, voigt(finite_difference_strain(_property(calc, "bias_energy"), atoms, step)) / volume,
        1e-5, "bias stress")
    assert np.abs(bias_forces).max() > 0.01  # the bias does push
    assert atoms.get_potential_energy() == pytest.approx(
        plain.get_potential_energy() + calc.results["bias_energy"])


@pytest.mark.parametrize("collective_variable", ["atoms", "structure"])
def test_metadynamics_forces_and_stress_match_finite_differences(model, collective_variable):
    calc = DescriptorMetadynamics(model, height=0.05, width=0.1, stride=0,
                                  collective_variable=collective_variable)
    calc.deposit(cu8(0.1, 3))
    calc.deposit(cu8(0.12, 4))
    assert calc.n_deposits == 2 and len(calc.heights) == (16 if collective_variable == "atoms" else 2)
    check_bias_gradients(calc, model, cu8(0.1, 7))


@pytest.mark.parametrize("variance", ["dtc", "sor", "local"])
def test_uncertainty_bias_forces_and_stress_match_finite_differences(model, variance):
    calc = UncertaintyBias(model, strength=0.1, variance_scale=1e-3, variance=variance)
    atoms = cu8(0.1, 7)
    check_bias_gradients(calc, model, atoms)
    # the bias is N A (exp(-mean variance / B) - 1) of the model's own local-energy variances
    stds = model.predict_all([atoms], return_std=("energies",), variance=variance)[0]["energies_std"]
    np.testing.assert_allclose(calc.local_variances(atoms), stds**2, rtol=1e-6, atol=1e-12)
    atoms.calc = calc
    assert calc.get_property("bias_energy", atoms) == pytest.approx(8 * 0.1 * (np.exp(-np.mean(stds**2) / 1e-3) - 1))


def test_metadynamics_deposits_every_stride_and_well_tempered_heights_shrink(model):
    calc = DescriptorMetadynamics(model, height=0.01, width=0.05, stride=5)
    snapshots, stopped = run_md(calc, cu8(0.0, 0), steps=20, interval=5, temperature=300, random_state=0)
    assert not stopped and len(snapshots) == 4
    assert calc.n_deposits == calc.n_calculations // 5 >= 4
    tempered = DescriptorMetadynamics(model, height=0.01, width=0.05, stride=0, bias_temperature=1000.0)
    crystal = cu8(0.0, 0)
    tempered.deposit(crystal)
    tempered.deposit(crystal)  # on top of the first: 8 Gaussians of 0.01 eV already at each atom
    first, second = tempered.heights[:8], tempered.heights[8:]
    np.testing.assert_allclose(first, 0.01)
    np.testing.assert_allclose(second, 0.01 * np.exp(-0.08 / (8.617333e-5 * 1000.0)), rtol=1e-5)
    # the std of the model is still available, unbiased
    crystal.calc = tempered
    np.testing.assert_allclose(tempered.get_property("forces_std", crystal),
                               GAPCalculator(model).get_property("forces_std", crystal))


def test_a_bias_that_drives_atoms_together_stops_the_trajectory(model):
    crushed = cu8(0.0, 0)
    crushed.positions[1] = crushed.positions[0] + [1.0, 0.0, 0.0]  # 1 A: less than half of 2 x 1.32 A
    crushed.calc = UncertaintyBias(model)
    with pytest.raises(StructureError, match="covalent radii.*trajectory is stopped"):
        crushed.get_forces()
    snapshots, stopped = run_md(UncertaintyBias(model), crushed, steps=10, interval=2, temperature=300,
                                random_state=0)
    assert stopped and snapshots == []
    with pytest.raises(ValueError, match="width must be a positive number"):
        DescriptorMetadynamics(model, width=0.0)
    with pytest.raises(ValueError, match="collective_variable must be one of"):
        DescriptorMetadynamics(model, collective_variable="cell")
    with pytest.raises(TypeError, match="fitted GAPRegressor"):
        UncertaintyBias(EMT())
