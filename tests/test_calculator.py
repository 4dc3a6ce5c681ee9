"""GAPCalculator: derivatives, uncertainties, caching, MD, relaxation, model files, extxyz."""

import pickle

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.filters import FrechetCellFilter
from ase.io import read, write
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from sklearn.exceptions import NotFittedError

from gapy import GAPCalculator, GAPRegressor
from gapy.calculator import store_results
from gapy.testing import assert_allclose_relative

STD_KEYS = ("energy_std", "energies_std", "forces_std", "stress_std")


@pytest.fixture
def model(si_model):
    return si_model


@pytest.fixture
def si8():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=4)
    return atoms


def test_forces_are_minus_the_energy_gradient(model, si8):
    si8.calc = GAPCalculator(model)
    forces = si8.get_forces()
    assert_allclose_relative(forces, calculate_numerical_forces(si8, eps=1e-4), 1e-6, "forces")
    assert np.allclose(forces.sum(axis=0), 0.0, atol=1e-10)


def test_stress_is_the_strain_derivative(model, si8):
    si8.set_cell(si8.cell.array @ [[1.02, 0.01, 0.0], [0.0, 0.99, 0.02], [0.0, 0.0, 1.01]], scale_atoms=True)
    si8.calc = GAPCalculator(model)
    numerical = calculate_numerical_stress(si8, 1e-5)
    assert_allclose_relative(si8.get_stress(), numerical, 1e-5, "stress")


def test_std_path_gives_the_same_predictions(model, si8):
    fast = GAPCalculator(model)
    slow = GAPCalculator(model, compute_std=True)
    fast.calculate(si8, ["energy"])
    slow.calculate(si8, ["energy"])
    for key in ("energy", "energies", "forces", "stress"):
        np.testing.assert_allclose(slow.results[key], fast.results[key], rtol=1e-9, atol=1e-10)


def test_a_threaded_model_gives_the_same_results(model, si8):
    serial = GAPCalculator(model, compute_std=True)
    serial.calculate(si8, ["energy"])
    threaded_model = pickle.loads(pickle.dumps(model)).set_params(n_jobs=2)
    threaded = GAPCalculator(threaded_model, compute_std=True)
    threaded.calculate(si8, ["energy"])
    for key, value in serial.results.items():
        np.testing.assert_array_equal(threaded.results[key], value, err_msg=key)


def test_compute_std_fills_every_std(model, si8):
    si8.calc = GAPCalculator(model, compute_std=True)
    si8.get_potential_energy()
    results = si8.calc.results
    shapes = {"energy_std": (), "energies_std": (8,), "forces_std": (8, 3), "stress_std": (6,)}
    for key, shape in shapes.items():
        value = np.asarray(results[key])
        assert value.shape == shape, key
        assert np.all(np.isfinite(value)) and np.all(value >= 0), key
        assert value.max() > 0, key
    assert si8.calc.n_calculations == 1


def test_std_on_demand_without_compute_std(model, si8):
    si8.calc = GAPCalculator(model)
    si8.get_forces()
    assert not any(key in si8.calc.results for key in STD_KEYS)
    forces_std = si8.calc.get_property("forces_std", si8)
    assert forces_std.shape == (8, 3) and np.all(forces_std >= 0) and forces_std.max() > 0
    assert si8.calc.get_property("energy_std", si8) > 0  # computed along, no new calculation
    assert si8.calc.n_calculations == 2
    assert "stress_std" not in si8.calc.results  # not asked for: stress variances are costly
    assert si8.calc.get_property("stress_std", si8).shape == (6,)
    assert si8.calc.n_calculations == 3
    np.testing.assert_allclose(si8.get_forces(), si8.calc.results["forces"])


def test_variance_kind_is_passed_to_the_model(model, si8):
    sor = GAPCalculator(model, variance="sor").get_property("forces_std", si8)
    dtc = GAPCalculator(model, variance="dtc").get_property("forces_std", si8)
    assert np.all(dtc >= sor - 1e-12) and not np.allclose(dtc, sor)


def test_results_are_cached_until_the_structure_changes(model, si8):
    calc = GAPCalculator(model)
    si8.calc = calc
    energy = si8.get_potential_energy()
    si8.get_forces()
    si8.get_stress()
    si8.get_potential_energies()
    assert si8.get_potential_energy(force_consistent=True) == energy
    assert calc.n_calculations == 1
    si8.positions[0, 0] += 0.01
    assert si8.get_potential_energy() != energy
    assert calc.n_calculations == 2
    si8.get_forces()
    assert calc.n_calculations == 2


def test_stress_of_a_non_periodic_structure_is_not_implemented(model):
    cluster = bulk("Si", "diamond", a=5.43, cubic=True)
    cluster.pbc = False
    cluster.calc = GAPCalculator(model, compute_std=True)
    assert cluster.get_forces().shape == (8, 3)
    assert "stress_std" not in cluster.calc.results
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        cluster.get_stress()
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        cluster.calc.get_property("stress_std", cluster)


def test_nve_md_conserves_energy(model):
    """200 steps of 1 fs on 64 atoms: the total energy wanders far less than the kinetic."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    rng = np.random.default_rng(0)
    kt = 600 * units.kB  # equipartition leaves the lattice at ~300 K
    atoms.set_momenta(rng.normal(size=(64, 3)) * np.sqrt(atoms.get_masses()[:, None] * kt))
    Stationary(atoms)
    atoms.calc = GAPCalculator(model)
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    total, kinetic = [], []
    dynamics.attach(lambda: (total.append(atoms.get_total_energy()), kinetic.append(atoms.get_kinetic_energy())))
    dynamics.run(200)
    total, kinetic = np.array(total), np.array(kinetic)
    # measured: total-energy range 4e-3 eV and drift 1.3e-3 eV against a kinetic-energy
    # standard deviation of 0.76 eV (ratio 0.005). The range grows as dt^2 (ratio 0.023 at
    # 2 fs, which fails here); a sign or factor error in the forces fails by far more.
    assert kinetic.std() > 0.2
    assert np.ptp(total) < 0.02 * kinetic.std()
    assert abs(total[-1] - total[0]) / len(atoms) < 1e-4
    assert atoms.calc.n_calculations == 201


def test_bfgs_relaxes_positions_and_cell(model):
    """Strained, sheared and rattled diamond relaxes to small forces and stress.

    Each step costs ~0.1 s, most of it in FrechetCellFilter's matrix logarithm and
    exponential, so the tolerance is moderate (14 steps).
    """
    atoms = bulk("Si", "diamond", a=5.5, cubic=True)
    atoms.set_cell(atoms.cell.array @ [[1.0, 0.02, 0.0], [0.0, 0.98, 0.0], [0.0, 0.0, 1.02]], scale_atoms=True)
    atoms.rattle(0.03, seed=3)
    atoms.calc = GAPCalculator(model)
    start_force = np.abs(atoms.get_forces()).max()
    start_stress = np.abs(atoms.get_stress()).max()
    converged = BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=0.05, steps=40)
    assert converged
    assert np.abs(atoms.get_forces()).max() < 0.05 < 0.1 * start_force
    assert np.abs(atoms.get_stress()).max() < 0.2 * start_stress


def test_calculator_from_a_model_file(model, si8, tmp_path):
    path = tmp_path / "si.gapy"
    model.save(path)
    for source in (path, str(path)):
        calc = GAPCalculator(source, compute_std=True)
        calc.calculate(si8, ["energy"])
        reference = GAPCalculator(model, compute_std=True)
        reference.calculate(si8, ["energy"])
        for key, value in reference.results.items():
            np.testing.assert_allclose(calc.results[key], value, rtol=1e-12, atol=1e-14, err_msg=key)


def test_bad_construction_arguments(model, tmp_path):
    with pytest.raises(NotFittedError):
        GAPCalculator(GAPRegressor())
    with pytest.raises(TypeError, match="GAPRegressor or the path"):
        GAPCalculator(42)
    with pytest.raises(FileNotFoundError, match="missing.gapy"):
        GAPCalculator(tmp_path / "missing.gapy")
    with pytest.raises(ValueError, match="variance"):
        GAPCalculator(model, variance="full")


def test_store_results_round_trips_through_extxyz(model, si8, tmp_path):
    calc = GAPCalculator(model, compute_std=True)
    calc.calculate(si8, ["energy"])
    store_results(si8, calc.results)
    path = tmp_path / "out.xyz"
    write(path, si8, format="extxyz")
    back = read(path, format="extxyz")
    # extxyz writes per-atom arrays with 8 decimals, per-structure values in full
    assert back.get_potential_energy() == pytest.approx(calc.results["energy"], rel=1e-12)
    np.testing.assert_allclose(back.get_stress(), calc.results["stress"], rtol=1e-12)
    assert back.info["energy_std"] == pytest.approx(calc.results["energy_std"], rel=1e-12)
    np.testing.assert_allclose(back.info["stress_std"], calc.results["stress_std"], rtol=1e-12)
    for key in ("forces", "forces_std", "energies_std"):
        stored = back.get_forces() if key == "forces" else back.arrays[key]
        np.testing.assert_allclose(stored, calc.results[key], rtol=0, atol=1e-8, err_msg=key)


def test_store_results_replaces_old_stds_and_checks_lengths():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]])
    store_results(atoms, {"energy": -1.0, "energy_std": 0.1, "forces_std": np.ones((2, 3))})
    store_results(atoms, {"energy": -2.0})
    assert atoms.get_potential_energy() == -2.0
    assert "energy_std" not in atoms.info and "forces_std" not in atoms.arrays
    with pytest.raises(ValueError, match="3 rows but the structure has 2 atoms"):
        store_results(atoms, {"energy": -1.0, "forces_std": np.ones((3, 3))})


def test_changing_settings_with_set_clears_cached_results(model, si8):
    si8.calc = GAPCalculator(model, variance="sor")
    sor = si8.calc.get_property("forces_std", si8)
    assert si8.calc.parameters["variance"] == "sor"
    si8.calc.set(variance="local")
    local = si8.calc.get_property("forces_std", si8)
    assert si8.calc.n_calculations == 2 and not np.allclose(sor, local)
    with pytest.raises(ValueError, match="variance must be one of"):
        si8.calc.set(variance="full")
    with pytest.raises(TypeError, match="no parameters"):
        si8.calc.set(n_max=4)


def test_a_model_refitted_calibrated_or_reset_in_place_is_not_answered_from_the_cache(si8):
    """The calculator holds the caller's model: after model.fit or model.calibrate it returned
    the old model's energy and stds (ASE's cache checks only the atoms)."""
    from gapy import SOAP
    from gapy.datasets import load_si

    frames = load_si("train")
    model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=3, l_max=2), n_sparse=20, random_state=0).fit(frames[:4])
    si8.calc = GAPCalculator(model)
    first = si8.get_potential_energy(), si8.calc.get_property("forces_std", si8)
    assert si8.get_potential_energy() == first[0] and si8.calc.n_calculations == 2  # (energy, then its stds)
    model.fit(frames[:12])
    assert si8.get_potential_energy() == pytest.approx(model.predict([si8])[0], rel=1e-12) != first[0]
    model.calibrate(frames[12:24])
    np.testing.assert_allclose(si8.calc.get_property("forces_std", si8),
                               model.predict_all([si8], return_std=True)[0]["forces_std"], rtol=1e-12)
    model.set_params(std_noise=True)
    np.testing.assert_allclose(si8.calc.get_property("forces_std", si8),
                               model.predict_all([si8], return_std=True)[0]["forces_std"], rtol=1e-12)
    calls = si8.calc.n_calculations
    si8.get_forces(), si8.calc.get_property("forces_std", si8)
    assert si8.calc.n_calculations == calls  # an unchanged model is answered from the cache


def test_a_calculator_shared_between_threads_gives_each_its_own_result(model):
    """ASE's get_property calculates and then reads self.results: without a lock another
    thread's structure can land in between."""
    from concurrent.futures import ThreadPoolExecutor

    structures = []
    for k in range(6):
        atoms = bulk("Si", "diamond", a=5.3 + 0.05 * k, cubic=True)
        atoms.rattle(0.05, seed=k)
        structures.append(atoms)
    expected = [GAPCalculator(model).get_property("energy", atoms) for atoms in structures]
    shared = GAPCalculator(model)
    jobs = [k % len(structures) for k in range(120)]
    with ThreadPoolExecutor(4) as pool:
        energies = list(pool.map(lambda k: shared.get_property("energy", structures[k].copy()), jobs))
    np.testing.assert_allclose(energies, [expected[k] for k in jobs], rtol=1e-12)


def test_only_the_stds_asked_for_are_computed(model, si8):
    (only_local,) = model.predict_all([si8], return_std=("energies",))
    assert {key for key in only_local if key.endswith("_std")} == {"energies_std"}
    (every,) = model.predict_all([si8], return_std=True)
    np.testing.assert_allclose(only_local["energies_std"], every["energies_std"], rtol=1e-12)
    np.testing.assert_allclose(only_local["forces"], every["forces"], atol=1e-10)
    si8.calc = GAPCalculator(model)
    si8.calc.get_property("energies_std", si8)
    assert "forces_std" not in si8.calc.results and "forces" in si8.calc.results


def test_a_calculator_can_be_pickled_and_deep_copied(model, si8):
    """multiprocessing pickles calculators and ASE workflows deep-copy them: the lock must
    not stop either, and each copy has a lock of its own."""
    import copy

    calculator = GAPCalculator(model, compute_std=True)
    si8.calc = calculator
    energy, forces_std = si8.get_potential_energy(), si8.calc.get_property("forces_std", si8)
    for duplicate in (pickle.loads(pickle.dumps(calculator)), copy.deepcopy(calculator)):
        assert duplicate._lock is not calculator._lock and duplicate.compute_std
        atoms = si8.copy()
        atoms.calc = duplicate
        assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-12)
        np.testing.assert_allclose(duplicate.get_property("forces_std", atoms), forces_std, rtol=1e-12)
