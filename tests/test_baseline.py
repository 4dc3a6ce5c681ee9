"""The ZBL short-range baseline: derivatives, switch, and a GAP that keeps atoms apart."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from sklearn.base import clone

import gapy
from gapy import GAPRegressor, SOAP
from gapy.baseline import ZBL
from gapy.datasets import load_si
from gapy.gp.design import voigt
from gapy.testing import assert_allclose_relative, finite_difference_positions, finite_difference_strain


@pytest.fixture
def squeezed():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.1, seed=2)
    atoms.positions[1] = atoms.positions[0] + [0.8, 0.6, 0.4]  # 1.08 A apart: inside the switch
    return atoms


def test_forces_and_virial_are_derivatives_of_the_energy(squeezed):
    zbl = ZBL(r_inner=0.9, r_outer=1.6)
    energies, forces, virial = zbl.compute(squeezed)
    numeric = -finite_difference_positions(lambda a: zbl.compute(a)[0].sum(), squeezed, 1e-6)
    assert_allclose_relative(forces, numeric, 1e-6, "forces")
    strain = finite_difference_strain(lambda a: zbl.compute(a)[0].sum(), squeezed, 1e-6)
    assert_allclose_relative(virial, -voigt(strain), 1e-6, "virial")
    assert np.allclose(forces.sum(axis=0), 0.0, atol=1e-9)


def test_the_switch_is_smooth_and_ends_at_r_outer():
    zbl = ZBL(r_inner=1.0, r_outer=1.5)
    z = np.array([14])
    distances = np.array([0.5, 0.99, 1.0, 1.25, 1.4999, 1.5, 2.0])
    energy, derivative = zbl.pair_energy(z, z, distances)
    assert energy[0] > energy[1] > energy[3] > 0 and energy[-1] == energy[-2] == 0.0
    assert energy[4] < 1e-6 * energy[3]
    h = 1e-7
    numeric = (zbl.pair_energy(z, z, distances + h)[0] - zbl.pair_energy(z, z, distances - h)[0]) / (2 * h)
    np.testing.assert_allclose(derivative, numeric, rtol=1e-5, atol=1e-4)  # C1 at r_outer: O(h) there
    with pytest.raises(ValueError, match="r_inner < r_outer"):
        ZBL(1.5, 1.0)


def test_a_gap_with_the_baseline_keeps_atoms_apart_and_fits_the_same(tmp_path):
    frames = load_si("train")[::4]
    settings = dict(n_sparse=30, e0={"Si": -0.79}, random_state=0)
    soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
    plain = GAPRegressor(soap, **settings).fit(frames)
    core = GAPRegressor(soap, baseline="zbl", **settings).fit(frames)
    shortest = min(a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)].min() for a in frames)
    assert core.baseline_.r_outer == pytest.approx(0.8 * shortest)
    # the baseline vanishes on the data: the same model there
    np.testing.assert_allclose(core.gp_.alpha, plain.gp_.alpha, rtol=1e-10)
    np.testing.assert_allclose(core.predict(frames[:2]), plain.predict(frames[:2]), rtol=1e-12)
    # two atoms pushed together: a steep repulsion, forces still the energy derivative
    close = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 1.0]], pbc=False)
    assert core.predict([close])[0] > plain.predict([close])[0] + 10.0
    (result,) = core.predict_all([close], return_std=True)
    numeric = -finite_difference_positions(lambda a: core.predict([a])[0], close, 1e-5)
    assert_allclose_relative(result["forces"], numeric, 1e-6, "forces")
    assert result["forces"][1, 2] > 0  # pushed apart
    # kept in files and by clone
    core.save(tmp_path / "core.gapy")
    loaded = gapy.load(tmp_path / "core.gapy")
    assert loaded.baseline_.r_outer == core.baseline_.r_outer
    assert loaded.predict([close])[0] == pytest.approx(core.predict([close])[0], rel=1e-12)
    explicit = GAPRegressor(soap, baseline=ZBL(0.8, 1.5), **settings)
    assert clone(explicit).baseline.get_params() == {"r_inner": 0.8, "r_outer": 1.5}
    explicit.fit(frames).save(tmp_path / "explicit.gapy")
    assert gapy.load(tmp_path / "explicit.gapy").baseline.r_outer == 1.5
    with pytest.raises(TypeError, match="baseline must be None, 'zbl' or a gapy.baseline.ZBL"):
        GAPRegressor(soap, baseline="lj", **settings).fit(frames)
