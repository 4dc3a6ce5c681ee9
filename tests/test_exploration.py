"""Biased exploration (metadynamics in descriptor space, uncertainty bias) and the
active-learning loop that survives failures and kills."""

import hashlib
import json
import re
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write
from sklearn.base import clone

from gapy import GAPCalculator, GapyError, GAPRegressor, SOAP, StructureError
from gapy.gp import voigt
from gapy.sampling import (DescriptorMetadynamics, ReferenceFailure, UncertaintyBias, active_learning,
                           label_structures, reference_results, run_md)
from gapy.sampling import loop
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


def check_bias_gradients(calc, model, atoms, step=1e-4):
    """Forces and stress of the biased calculator against finite differences of its
    energy; the bias part alone against those of ``bias_energy`` (and not tiny)."""
    atoms = atoms.copy()
    atoms.calc = calc
    forces, stress = atoms.get_forces(), atoms.get_stress()
    plain = atoms.copy()
    plain.calc = GAPCalculator(model)
    bias_forces, bias_stress = forces - plain.get_forces(), stress - plain.get_stress()
    volume = atoms.get_volume()
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


def _median_training_variance(model):
    """The median SoR variance of the local energy at the sparse points, by the GP's own
    ``rows``/``variance`` (not the calculator's path)."""
    gp = model.gp_
    rows = gp.rows(gp.sparse, gp.sparse_species)["energies"]
    return float(np.median(gp.variance(rows, "sor")))


def test_uncertainty_bias_default_scale_is_the_data_derived_rule(model):
    """Default B = 10 r / ln 2, r the median variance at the training (sparse) points:
    the bias is half its strength where the mean local variance is 10 r."""
    reference = _median_training_variance(model)
    assert 0.0 < reference < 1e-2 * model.gp_.delta**2  # far below the prior: not a fraction of delta^2
    for variance in ("dtc", "sor", "local"):
        calc = UncertaintyBias(model, strength=0.1, variance=variance)
        assert calc.reference_variance() == pytest.approx(reference, rel=1e-8)
        scale = 10.0 * reference / np.log(2.0)
        assert calc.effective_variance_scale == pytest.approx(scale, rel=1e-8)
        atoms = cu8(0.1, 7)
        stds = model.predict_all([atoms], return_std=("energies",), variance=variance)[0]["energies_std"]
        atoms.calc = calc
        assert calc.get_property("bias_energy", atoms) == pytest.approx(
            8 * 0.1 * (np.exp(-np.mean(stds**2) / scale) - 1), rel=1e-6)
    # half the strength exactly at a mean variance of 10 r
    assert np.exp(-10.0 * reference / UncertaintyBias(model).effective_variance_scale) == pytest.approx(0.5)
    # an explicit variance_scale is used as given
    assert UncertaintyBias(model, variance_scale=1e-3).effective_variance_scale == 1e-3


def test_uncertainty_bias_default_is_invariant_to_the_scale_of_the_model(model):
    """Scaling delta, the noise sigmas and the jitter by c multiplies every variance by
    c^2 and leaves the predictions alone: the default B scales by c^2 and the bias, its
    forces and stress, are unchanged. A calibration of the std scales B with it."""
    import copy

    c = 3.0
    train = label_structures([cu8(0.02, seed) for seed in range(2)], EMT())
    scaled = GAPRegressor(SOAP(["Cu"], r_cut=4.5, n_max=4, l_max=3), n_sparse=16, sigma_energy=0.001 * c,
                          sigma_force=0.01 * c, delta=c * model.gp_.delta, sparse_jitter=c**2 * model.sparse_jitter,
                          random_state=0).fit(train)
    atoms = cu8(0.1, 7)
    plain, bigger = UncertaintyBias(model, strength=0.1), UncertaintyBias(scaled, strength=0.1)
    np.testing.assert_allclose(bigger.local_variances(atoms), c**2 * plain.local_variances(atoms), rtol=1e-5)
    assert bigger.effective_variance_scale == pytest.approx(c**2 * plain.effective_variance_scale, rel=1e-5)
    results = []
    for calc in (plain, bigger):
        probe = atoms.copy()
        probe.calc = calc
        results.append((calc.get_property("bias_energy", probe), probe.get_forces(), probe.get_stress()))
    assert -0.8 < results[0][0] < -0.01  # the bias acts here, not saturated nor nil
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(results[1][2], results[0][2], rtol=1e-5, atol=1e-8)
    # a larger delta alone: B follows the model's variance on its data, not delta^2
    wide = GAPRegressor(SOAP(["Cu"], r_cut=4.5, n_max=4, l_max=3), n_sparse=16, sigma_energy=0.001,
                        sigma_force=0.01, delta=4.0 * model.gp_.delta, random_state=0).fit(train)
    ratio = UncertaintyBias(wide).effective_variance_scale / plain.effective_variance_scale
    assert ratio == pytest.approx(_median_training_variance(wide) / _median_training_variance(model), rel=1e-6)
    calibrated = copy.deepcopy(model)
    calibrated.std_scale_ = {**getattr(model, "std_scale_", {}), "energy": 2.0}
    probe = atoms.copy()
    probe.calc = UncertaintyBias(calibrated, strength=0.1)
    assert probe.calc.effective_variance_scale == pytest.approx(4.0 * plain.effective_variance_scale, rel=1e-8)
    assert probe.calc.get_property("bias_energy", probe) == pytest.approx(results[0][0], rel=1e-8)


def test_the_biased_calculators_keep_the_models_repulsive_baseline():
    """With GAPRegressor(baseline="zbl") the biased energy is the model's (ZBL included)
    plus the bias, and its forces and stress still match finite differences."""
    zbl_model = GAPRegressor(SOAP(["Cu"], r_cut=4.5, n_max=4, l_max=3), n_sparse=16, sigma_energy=0.001,
                             sigma_force=0.01, random_state=0, baseline="zbl").fit(
        label_structures([cu8(0.02, seed) for seed in range(2)], EMT()))
    squeezed = cu8(0.05, 5)
    squeezed.positions[1] = squeezed.positions[0] + [1.7, 0.0, 0.0]  # inside the ZBL core
    plain = squeezed.copy()
    plain.calc = GAPCalculator(zbl_model)
    assert zbl_model.baseline_.compute(squeezed)[0].sum() > 0.1  # the repulsion acts here
    for calc in (DescriptorMetadynamics(zbl_model, height=0.0, stride=0), UncertaintyBias(zbl_model, strength=0.0)):
        atoms = squeezed.copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(plain.get_potential_energy(), abs=1e-9)
        assert calc.get_property("model_energy", atoms) == pytest.approx(plain.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), plain.get_forces(), atol=1e-9)
        np.testing.assert_allclose(atoms.get_stress(), plain.get_stress(), atol=1e-9)
    calc = DescriptorMetadynamics(zbl_model, height=0.05, width=0.1, stride=0)
    calc.deposit(cu8(0.1, 3))
    check_bias_gradients(calc, zbl_model, squeezed)


@pytest.fixture(scope="module")
def multi_term_model():
    """A SOAP + 2-body + 3-body model with a ZBL core, as the recommended settings make."""
    from gapy import Term, ThreeBody, TwoBody
    return GAPRegressor(
        SOAP(["Cu"], r_cut=4.5, n_max=4, l_max=3), n_sparse=16, sigma_energy=0.001, sigma_force=0.01,
        random_state=0, baseline="zbl", two_body=Term(TwoBody(["Cu"], r_cut=4.5), delta=0.5, theta=0.5, n_sparse=10),
        three_body=Term(ThreeBody(["Cu"], r_cut=3.0), delta=0.2, theta=1.0, n_sparse=8),
    ).fit(rattled_cu())


def rattled_cu():
    return label_structures([cu8(0.05, seed) for seed in range(3)], EMT())


def test_the_biased_calculators_drive_models_with_extra_terms(multi_term_model):
    """With 2-/3-body terms the biased energy is the whole model's plus the bias, and its
    forces and stress match finite differences; the uncertainty bias acts on the variance
    of the whole local energy (the terms' shares and their covariance with SOAP's)."""
    model = multi_term_model
    atoms = cu8(0.1, 7)
    plain = atoms.copy()
    plain.calc = GAPCalculator(model)
    for calc in (DescriptorMetadynamics(model, height=0.0, stride=0),
                 UncertaintyBias(model, strength=0.0, variance_scale=1.0)):
        unbiased = atoms.copy()
        unbiased.calc = calc
        assert unbiased.get_potential_energy() == pytest.approx(plain.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(unbiased.get_forces(), plain.get_forces(), atol=1e-9)
        np.testing.assert_allclose(unbiased.get_stress(), plain.get_stress(), atol=1e-9)
    soap_only = clone(model).set_params(two_body=None, three_body=None).fit(rattled_cu())
    assert np.abs(plain.get_forces() - GAPCalculator(soap_only).get_forces(atoms)).max() > 0.01  # terms matter
    metadynamics = DescriptorMetadynamics(model, height=0.05, width=0.1, stride=0)
    metadynamics.deposit(cu8(0.1, 3))
    check_bias_gradients(metadynamics, model, atoms)
    predicted = {kind: model.predict_all([atoms], return_std=("energies",), variance=kind)[0]["energies_std"] ** 2
                 for kind in ("sor", "dtc", "local")}
    biased = {kind: UncertaintyBias(model, variance=kind, variance_scale=1.0).local_variances(atoms)
              for kind in ("sor", "dtc", "local")}
    np.testing.assert_allclose(biased["sor"], predicted["sor"], rtol=1e-6)  # the whole local energy's
    # the Nystrom part is SOAP's: the terms' residual is left out, nothing else
    assert np.all(biased["local"] <= predicted["local"] + 1e-12)
    np.testing.assert_allclose(predicted["dtc"] - biased["dtc"], predicted["local"] - biased["local"], atol=1e-10)
    for variance in ("dtc", "sor", "local"):
        scale = 0.3 * float(np.mean(biased[variance]))  # on the slope of the bias
        check_bias_gradients(UncertaintyBias(model, strength=0.1, variance_scale=scale, variance=variance),
                             model, atoms, step=3e-5)  # (a weak stress: the O(step^2) error shows at 1e-4)
    with pytest.raises(ValueError, match="needs variance_scale or reference_frames"):
        UncertaintyBias(model)
    reference = UncertaintyBias(model, reference_frames=rattled_cu(), variance="sor").reference_variance()
    expected = np.median(np.concatenate([b ** 2 for b in (r["energies_std"] for r in model.predict_all(
        rattled_cu(), return_std=("energies",), variance="sor"))]))
    assert reference == pytest.approx(expected, rel=1e-6)


def test_the_biased_calculators_can_be_pickled_and_deep_copied(model):
    import copy
    import pickle

    atoms = cu8(0.05, 3)
    for calculator in (DescriptorMetadynamics(model, height=0.01, width=0.1, stride=1), UncertaintyBias(model)):
        atoms.calc = calculator
        atoms.get_potential_energy()  # (metadynamics deposits a Gaussian: the copies carry it)
        for copied in (pickle.loads(pickle.dumps(calculator)), copy.deepcopy(calculator)):
            assert copied._lock is not calculator._lock
            probe = cu8(0.05, 4)
            probe.calc, expected = copied, probe.copy()
            expected.calc = calculator
            assert probe.get_potential_energy() == pytest.approx(expected.get_potential_energy(), rel=1e-12)


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


# ------------------------------------------------------------------ the loop that survives

class CountingEMT(EMT):
    """EMT that appends a line per finished calculation to a file (and can kill its process)."""

    def __init__(self, path, kill_at=None, fail_at=(), nan_at=()):
        super().__init__()
        self.path, self.kill_at, self.fail_at, self.nan_at = str(path), kill_at, set(fail_at), set(nan_at)

    def calls(self):
        try:
            with open(self.path) as stream:
                return stream.read().split()
        except FileNotFoundError:
            return []

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        call = len(self.calls()) + 1
        if call == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # as a scheduler would: no cleanup, no warning
        super().calculate(atoms, properties, system_changes)
        if call in self.fail_at:
            with open(self.path, "a") as stream:
                stream.write(f"{call}-failed\n")
            raise RuntimeError("SCF did not converge")
        if call in self.nan_at:
            self.results["forces"] = self.results["forces"] * np.nan
        digest = hashlib.sha256(np.round(atoms.positions, 6).tobytes()).hexdigest()[:16]
        with open(self.path, "a") as stream:
            stream.write(digest + "\n")


def run_loop(reference, workdir=None, model_zeta=4, **options):
    train = label_structures([cu8(0.02, seed) for seed in range(2)], EMT())
    settings = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), zeta=model_zeta, n_sparse=12,
                            sigma_energy=0.001, sigma_force=0.01, random_state=0)
    options = {"n_iterations": 3, "n_select": 3, "md_steps": 30, "md_interval": 3, "temperature": [600.0, 1200.0],
               "timestep": 2.0, "random_state": 7, **options}
    return active_learning(settings, train, reference, [cu8(0.0, 0)], workdir=workdir, **options)


def same_frames(a, b):
    """The same structures; labels equal to round-off (EMT's neighbour list depends on its history)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
        np.testing.assert_allclose(x.get_forces(), y.get_forces(), rtol=0, atol=1e-12)
        assert x.get_potential_energy() == pytest.approx(y.get_potential_energy(), rel=0, abs=1e-12)


METAD = {"driver": "metad", "driver_options": {"height": 0.02, "width": 0.1, "stride": 3}}


def test_a_killed_run_resumes_without_repeating_a_reference_calculation(tmp_path, monkeypatch, caplog):
    workdir, counts = tmp_path / "run", tmp_path / "calls.txt"
    script = tmp_path / "killed.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_exploration import CountingEMT, run_loop\n"
        f"run_loop(CountingEMT({str(counts)!r}, kill_at=5), {str(workdir)!r}, **{METAD!r})\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.run([sys.executable, str(script)], env=environment, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    before = CountingEMT(counts).calls()
    assert len(before) == 4  # iteration 0 (3 labels) and one label of iteration 1, then killed
    state = json.loads((workdir / "state.json").read_text())
    assert state["iteration"] == 1 and state["phase"] == "label"

    resumed = run_loop(CountingEMT(counts), workdir, **METAD)
    calls = CountingEMT(counts).calls()
    assert len(calls) == len(set(calls)) == 9  # 3 iterations x 3, none twice
    uninterrupted = run_loop(CountingEMT(tmp_path / "other.txt"), None, **METAD)
    same_frames(resumed.frames, uninterrupted.frames)
    assert [h.n_train for h in resumed.history] == [h.n_train for h in uninterrupted.history] == [2, 5, 8]
    np.testing.assert_allclose(resumed.history[2].selected_scores, uninterrupted.history[2].selected_scores)
    # a finished run resumes to the same result without any reference call; more iterations continue it
    # ... and without a fit: the workdir kept the model of the last refit
    with monkeypatch.context() as patch:
        patch.setattr(loop, "_refit", lambda *args, **kwargs: pytest.fail("refitted a kept model"))
        again = run_loop(CountingEMT(counts), workdir, **METAD)
    same_frames(again.frames, resumed.frames)
    assert len(CountingEMT(counts).calls()) == 9
    probe = [cu8(0.1, 5)]
    expected = resumed.model.predict_all(probe)[0]["forces"]
    np.testing.assert_array_equal(again.model.predict_all(probe)[0]["forces"], expected)
    # a damaged model file is fitted again, with a warning
    model_file = workdir / "model.gapy"
    model_file.write_bytes(model_file.read_bytes()[:-100])
    with caplog.at_level("WARNING", logger="gapy"):
        refitted = run_loop(CountingEMT(counts), workdir, **METAD)
    assert "cannot read model.gapy" in caplog.text and "fitting the model again" in caplog.text
    np.testing.assert_allclose(refitted.model.predict_all(probe)[0]["forces"], expected, rtol=1e-10, atol=1e-12)


class SleepingEMT(EMT):
    """A reference that takes a minute (a DFT calculation, as far as the loop can tell)."""

    def __init__(self, seconds=60.0, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        time.sleep(self.seconds)
        super().calculate(atoms, properties, system_changes)


def test_a_second_run_on_a_workdir_in_use_is_refused_and_a_killed_run_leaves_no_lock(tmp_path):
    workdir = tmp_path / "run"
    script = tmp_path / "slow.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_exploration import SleepingEMT, run_loop\n"
        f"run_loop(SleepingEMT(), {str(workdir)!r}, n_iterations=1, n_select=1)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen([sys.executable, str(script)], env=environment, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (workdir / "pending.xyz").exists():  # labelling: the run holds the directory
            assert process.poll() is None and time.time() < deadline, process.stderr.read() if process.poll() else ""
            time.sleep(0.2)
        with pytest.raises(GapyError, match=rf"workdir .*run is in use by another run \(process {process.pid} on "):
            run_loop(EMT(), workdir, n_iterations=1, n_select=1)
    finally:
        process.kill()
        process.wait()
    result = run_loop(SleepingEMT(0.0), workdir, n_iterations=1, n_select=1)  # resumed: the kill released the lock
    assert len(result.frames) == 3


def test_failed_reference_calculations_are_recorded_and_the_loop_goes_on(tmp_path, caplog):
    counts = tmp_path / "calls.txt"
    uncertainty = {"driver": "uncertainty", "driver_options": {"strength": 0.05}}
    # in child processes (reference_timeout): failures come back from there too
    result = run_loop(CountingEMT(counts, fail_at={2}, nan_at={4}), tmp_path / "run", n_iterations=2,
                      reference_timeout=120, **uncertainty)
    kinds = [(f["id"].split(":")[0], f["kind"]) for f in result.failures]
    assert kinds == [("0", "exception"), ("1", "non-finite")]
    assert "SCF did not converge" in result.failures[0]["message"]
    assert len(result.frames) == 2 + 4 and [h.n_failed for h in result.history] == [1, 1]
    assert "recorded as failed" in caplog.text
    labelled = read(tmp_path / "run" / "labelled.xyz", ":")
    assert len(labelled) == 4 and all(np.isfinite(a.get_forces()).all() for a in labelled)
    # the failures are in the state: a resume does not retry them
    run_loop(CountingEMT(counts), tmp_path / "run", n_iterations=2, **uncertainty)
    assert len(CountingEMT(counts).calls()) == 6
    failed = read(tmp_path / "run" / "failed.xyz", ":")  # the structures are kept, to look at or retry
    assert [(a.info["al_id"], a.info["al_failure"]) for a in failed] == [(f["id"], f["kind"]) for f in result.failures]


def test_failed_reference_calculations_are_tried_again_on_request(tmp_path):
    counts, workdir = tmp_path / "calls.txt", tmp_path / "run"
    first = run_loop(CountingEMT(counts, fail_at={2, 4}), workdir, n_iterations=2)
    ids = [failure["id"] for failure in first.failures]
    assert len(ids) == 2 and len(first.frames) == 2 + 4
    # the second retry (call 8) fails again; the first succeeds and joins the training set
    result = run_loop(CountingEMT(counts, fail_at={8}), workdir, n_iterations=2, retry_failed=True)
    assert len(CountingEMT(counts).calls()) == 8
    assert [(f["id"], f["attempts"]) for f in result.failures] == [(ids[1], 2)]
    assert [a.info["al_id"] for a in result.frames[6:]] == [ids[0]]
    failed = {a.info["al_id"]: a for a in read(workdir / "failed.xyz", ":")}
    np.testing.assert_array_equal(result.frames[6].positions, failed[ids[0]].positions)
    assert state_failures(workdir) == result.failures  # (durable)
    result = run_loop(CountingEMT(counts), workdir, n_iterations=2, retry_failed=True)
    assert len(CountingEMT(counts).calls()) == 9 and not result.failures and len(result.frames) == 2 + 6
    with pytest.raises(ValueError, match="give workdir"):
        run_loop(EMT(), None, retry_failed=True)


def test_failures_of_a_work_directory_without_failed_structures_are_kept_with_a_warning(tmp_path, caplog):
    counts, workdir = tmp_path / "calls.txt", tmp_path / "run"
    first = run_loop(CountingEMT(counts, fail_at={2}), workdir, n_iterations=1)
    (workdir / "failed.xyz").unlink()  # (as written before the structures were kept)
    result = run_loop(CountingEMT(counts), workdir, n_iterations=1, retry_failed=True)
    assert result.failures == first.failures and len(CountingEMT(counts).calls()) == 3
    assert "cannot be tried again: this work directory was written before" in caplog.text


def test_a_retry_killed_after_its_label_does_not_label_twice(tmp_path):
    from gapy.sampling._workdir import Workdir

    counts, workdir = tmp_path / "calls.txt", tmp_path / "run"
    first = run_loop(CountingEMT(counts, fail_at={2, 4}), workdir, n_iterations=2)
    ids = [failure["id"] for failure in first.failures]
    failed = {a.info["al_id"]: a for a in read(workdir / "failed.xyz", ":")}
    (relabelled,) = label_structures([failed[ids[0]]], EMT())  # labelled, then killed before the record went
    relabelled.info = {"al_id": ids[0], "config_type": "active_learning"}
    Workdir(workdir, {}).append_labelled(relabelled)
    result = run_loop(CountingEMT(counts), workdir, n_iterations=2, retry_failed=True)
    assert len(CountingEMT(counts).calls()) == 7  # only the other one
    assert not result.failures and [a.info.get("al_id") for a in result.frames].count(ids[0]) == 1


def state_failures(workdir):
    from gapy.sampling._workdir import read_state_file

    return read_state_file(workdir)["failures"]


def test_the_work_directory_files_have_the_permissions_of_a_plain_write(tmp_path):
    run_loop(EMT(), tmp_path / "run", n_iterations=1, n_select=1)
    (tmp_path / "plain").write_text("x")
    plain = (tmp_path / "plain").stat().st_mode & 0o777
    for name in ("state.json", "labelled.xyz", "pending.xyz"):  # (not owner-only, as mkstemp makes them)
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == plain, name


def test_a_partly_written_last_label_is_dropped_and_damage_elsewhere_refused(tmp_path, caplog):
    from gapy.sampling._workdir import Workdir

    store = Workdir(tmp_path, {"a": 1})
    frames = label_structures([cu8(0.05, seed) for seed in range(3)], EMT())
    for k, atoms in enumerate(frames):
        atoms.info["al_id"] = f"0:{k}"
        store.append_labelled(atoms)
    path = tmp_path / "labelled.xyz"
    text = path.read_text()
    path.write_text(text[:-40])  # killed while appending the third
    assert [a.info["al_id"] for a in store.read_labelled()] == ["0:0", "0:1"]
    assert "partly written" in caplog.text and len(read(path, ":")) == 2
    assert (tmp_path / "labelled.xyz.cut").read_text() == text[len(path.read_text()):-40]  # set aside, not lost
    # an editor that drops the final newline: the structure is whole, and kept
    path.write_text(text[:-1])
    assert [a.info["al_id"] for a in store.read_labelled()] == ["0:0", "0:1", "0:2"]
    assert path.read_text() == text  # (the newline back, for the next append)
    # a structure added by hand (no al_id) at the end is refused, not dropped
    extra = frames[0].copy()
    del extra.info["al_id"]
    write(path, extra, format="extxyz", append=True)
    before = path.read_text()
    with pytest.raises(GapyError, match=r"labelled.xyz has a structure that gapy did not write \(structure 3"):
        store.read_labelled()
    assert path.read_text() == before
    lines = text.splitlines(keepends=True)
    path.write_text("".join(lines[:3] + lines[4:]))  # a line missing in the first structure
    with pytest.raises(GapyError, match="damaged at structure 0"):
        store.read_labelled()


def test_a_label_edited_by_hand_gives_a_refit_not_the_kept_model(tmp_path):
    """The kept model was reused when the number of labelled structures agreed, so the final
    model did not match the final training set after a label was corrected in labelled.xyz."""
    run_loop(EMT(), tmp_path / "run", n_iterations=1, n_select=2)
    path = tmp_path / "run" / "labelled.xyz"
    frames = read(path, ":")
    before = (tmp_path / "run" / "model.gapy").read_bytes()
    assert run_loop(EMT(), tmp_path / "run", n_iterations=1, n_select=2).model is not None
    assert (tmp_path / "run" / "model.gapy").read_bytes() == before  # the same labels: kept
    frames[0].calc.results["energy"] += 5.0
    write(path, frames, format="extxyz")
    result = run_loop(EMT(), tmp_path / "run", n_iterations=1, n_select=2)
    assert (tmp_path / "run" / "model.gapy").read_bytes() != before
    refit = clone(result.model).fit(result.frames)
    np.testing.assert_allclose(result.model.predict(frames[:1]), refit.predict(frames[:1]), rtol=1e-9)


@pytest.mark.filterwarnings("ignore:evidence maximisation")  # a sigma on a bound: 2-6 structures
def test_refit_by_the_evidence_chooses_the_sigmas_at_every_iteration(tmp_path):
    fits = []
    result = run_loop(EMT(), tmp_path / "run", n_iterations=2, refit="evidence",
                      callback=lambda iteration, model: fits.append(model))
    for model in fits + [result.model]:
        assert "evidence" in model.provenance_ and model.sigma_force != 0.01  # not the given sigma
    assert fits[0].sigma_force != fits[1].sigma_force  # chosen again on the grown training set
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["settings"]["refit"] == "evidence"
    with pytest.raises(GapyError, match=r"different refit\): refit: \"evidence\" in the workdir, unset \(the def"):
        run_loop(EMT(), tmp_path / "run", n_iterations=2)
    # the default is not in the settings: work directories written before the option resume
    run_loop(EMT(), tmp_path / "plain", n_iterations=1)
    assert "refit" not in json.loads((tmp_path / "plain" / "state.json").read_text())["settings"]
    with pytest.raises(ValueError, match="refit"):
        run_loop(EMT(), n_iterations=1, refit="bayes")


@pytest.mark.filterwarnings("ignore:evidence maximisation")
def test_refit_by_the_recommendation_chooses_every_setting_from_the_grown_data(tmp_path):
    fits = []
    result = run_loop(EMT(), tmp_path / "run", n_iterations=2, n_select=2, refit="recommend",
                      overrides={"descriptor__n_max": 4, "descriptor__l_max": 3},
                      callback=lambda iteration, model: fits.append(model))
    for model in fits + [result.model]:
        assert "recommended" in model.provenance_ and "evidence" in model.provenance_
        assert model.two_body is not None and model.baseline == "zbl"  # as gapy fit recommends
        assert model.descriptor.r_cut != 4.0 and model.descriptor.n_max == 4  # chosen, and overridden
    assert len(fits[1].gp_.sparse) > len(fits[0].gp_.sparse)  # a quarter of the environments: grows
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["settings"]["refit"] == "recommend" and "descriptor__n_max" in state["settings"]["overrides"]
    with pytest.raises(GapyError, match=r"different overrides"):
        run_loop(EMT(), tmp_path / "run", n_iterations=2, n_select=2, refit="recommend")
    # the uncertainty bias drives the recommended model too (its scale from the training structures)
    result = run_loop(EMT(), n_iterations=1, n_select=1, refit="recommend", driver="uncertainty",
                      overrides={"descriptor__n_max": 4, "descriptor__l_max": 3})
    assert result.model.two_body is not None and result.history[0].n_candidates > 0
    with pytest.raises(ValueError, match="overrides apply to refit='recommend' only"):
        run_loop(EMT(), n_iterations=1, overrides={"descriptor__r_cut": 4.0})


def test_a_workdir_of_another_run_is_refused(tmp_path):
    run_loop(EMT(), tmp_path / "run", n_iterations=1)
    with pytest.raises(GapyError, match=r"holds another run \(different md_steps\).*30 in the workdir, 40 now"):
        run_loop(EMT(), tmp_path / "run", n_iterations=1, md_steps=40)
    with pytest.raises(GapyError, match=r"different model.zeta\): model.zeta: \"4\" in the workdir, \"2\" now"):
        run_loop(EMT(), tmp_path / "run", n_iterations=1, model_zeta=2)
    # another reference (its class or parameters) would mix labels of two methods
    with pytest.raises(GapyError, match=r"different reference.parameters.asap_cutoff\).*\"False\" in the wor"):
        run_loop(EMT(asap_cutoff=True), tmp_path / "run", n_iterations=1)
    with pytest.raises(GapyError, match=r"different reference.calculator\).*emt.EMT.*labelled.xyz added"):
        run_loop(NoStressEMT(), tmp_path / "run", n_iterations=1)
    # a work directory written before the reference was recorded resumes (and records it)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    del state["settings"]["reference"]
    (tmp_path / "run" / "state.json").write_text(json.dumps(state))
    run_loop(EMT(), tmp_path / "run", n_iterations=2)
    assert "reference" in json.loads((tmp_path / "run" / "state.json").read_text())["settings"]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "state.json").write_text('{"format": "something else"}')
    with pytest.raises(GapyError, match="not a gapy active-learning state"):
        run_loop(EMT(), tmp_path / "foreign")


def test_a_reference_past_its_timeout_is_killed_and_recorded(tmp_path):
    class Slow(EMT):
        def calculate(self, atoms=None, *args, **kwargs):
            if len(atoms) and atoms.positions[0, 0] > -1e9:  # every structure: sleep past the timeout
                time.sleep(30)
            super().calculate(atoms, *args, **kwargs)

    atoms = cu8(0.05, 1)
    start = time.perf_counter()
    with pytest.raises(ReferenceFailure, match="timed out after 0.5 s") as error:
        reference_results(atoms, Slow(), timeout=0.5)
    assert error.value.kind == "timeout" and time.perf_counter() - start < 10
    results = reference_results(atoms, EMT(), timeout=30)
    direct = atoms.copy()
    direct.calc = EMT()
    np.testing.assert_allclose(results["forces"], direct.get_forces())


def test_a_reference_child_ends_with_the_run_that_started_it(tmp_path):
    """With a timeout the reference runs in its own process group: a killed run left it running
    (its result going nowhere, the work directory's lock held) and Ctrl-C did not reach it."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, time\n"
        "from ase.build import bulk\n"
        "from ase.calculators.emt import EMT\n"
        "from gapy.sampling import reference_results\n"
        "class Slow(EMT):\n"
        "    def calculate(self, *args, **kwargs):\n"
        "        import os\n"
        "        open(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "        time.sleep(60)\n"
        "reference_results(bulk('Cu', cubic=True), Slow(), timeout=120)\n")
    for stop in (signal.SIGKILL, signal.SIGINT):
        marker = tmp_path / f"child-{stop}"
        run = subprocess.Popen([sys.executable, str(script), str(marker)])
        deadline = time.time() + 60
        while not marker.exists() or not marker.read_text():
            assert time.time() < deadline and run.poll() is None
            time.sleep(0.1)
        child = int(marker.read_text())
        run.send_signal(stop)
        run.wait(timeout=30)
        deadline = time.time() + 10
        while _alive(child):
            assert time.time() < deadline, f"the reference child outlived its run ({stop})"
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # (a zombie has ended)
    except FileNotFoundError:
        return False


class NoStressEMT(EMT):
    """A reference without stress (as many molecular or cluster codes)."""
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        super().calculate(atoms, [name for name in properties if name != "stress"], system_changes)
        self.results.pop("stress", None)


class RelaxingEMT(EMT):
    """A reference that relaxes the structure it is given (a single point was asked)."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        atoms.positions[0] += 0.05
        super().calculate(atoms, properties, system_changes)


@pytest.mark.parametrize("timeout", [None, 60])
def test_a_reference_without_stress_labels_energy_and_forces_and_one_that_moves_atoms_fails(timeout):
    atoms = cu8(0.05, 1)
    results = reference_results(atoms, NoStressEMT(), timeout=timeout)
    assert sorted(results) == ["energy", "forces"] and np.isfinite(results["forces"]).all()
    with pytest.raises(ReferenceFailure, match=r"moved the atoms \(by up to 0.0866 A\).*single-point") as error:
        reference_results(atoms, RelaxingEMT(), timeout=timeout)
    assert error.value.kind == "moved"
    wrapped = atoms.copy()
    wrapped.positions[0] += atoms.cell[0]  # outside the cell: a calculator that wraps it has not moved it
    assert reference_results(wrapped, EMT(), timeout=timeout)["energy"] == pytest.approx(results["energy"])


def test_the_loop_keeps_labels_of_a_reference_without_stress_and_records_one_that_moves_atoms():
    result = run_loop(NoStressEMT(), n_iterations=1)
    assert len(result.frames) == 2 + 3 and not result.failures
    assert all("stress" not in atoms.calc.results for atoms in result.frames[2:])
    result = run_loop(RelaxingEMT(), n_iterations=1)
    assert len(result.frames) == 2 and [failure["kind"] for failure in result.failures] == ["moved"] * 3


def test_the_loop_stores_labels_under_the_models_label_keys():
    train = []
    for atoms in label_structures([cu8(0.02, seed) for seed in range(2)], EMT()):
        bare = cu8(0.0, 0)
        bare.positions = atoms.positions
        bare.info["REF_energy"] = atoms.get_potential_energy()
        bare.arrays["REF_forces"] = atoms.get_forces()
        bare.info["REF_stress"] = atoms.get_stress()
        train.append(bare)
    settings = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=12, sigma_energy=0.001,
                            sigma_force=0.01, energy_key="REF_energy", forces_key="REF_forces",
                            stress_key="REF_stress")
    test = label_structures([cu8(0.1, 9)], EMT())
    with pytest.raises(StructureError, match=r"test set: structure 0 \(Cu8.*has no energy under 'REF_energy'"):
        active_learning(settings, train, EMT(), [cu8(0.0, 0)], test_frames=test)  # at once, before any MD
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*no label to fit")  # every labelled structure is fitted
        result = active_learning(settings, train, EMT(), [cu8(0.0, 0)], n_iterations=2, n_select=2, md_steps=12,
                                 md_interval=3, timestep=2.0, temperature=1000.0, random_state=0)
    labelled = result.frames[2:]
    assert len(labelled) == 4 and [h.n_train for h in result.history] == [2, 4]
    reference = label_structures(labelled, EMT())
    for atoms, expected in zip(labelled, reference):
        assert atoms.info["REF_energy"] == pytest.approx(expected.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(atoms.arrays["REF_forces"], expected.get_forces(), atol=1e-8)
        np.testing.assert_allclose(atoms.info["REF_stress"], expected.get_stress(), atol=1e-8)


def test_md_that_leaves_physical_geometries_stops_before_labelling_them():
    start = bulk("Cu", cubic=True).repeat(2)
    snapshots, stopped = run_md(EMT(), start, 200, 5, 3000.0, timestep=20.0, random_state=0)
    assert stopped and 0 < len(snapshots) < 40  # a 20 fs step: atoms collide within 40 steps
    for atoms in snapshots:
        distances = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)]
        assert distances.min() > 0.5 * 2 * 1.32  # half the sum of Cu's covalent radii
    unchecked, stopped = run_md(EMT(), start, 200, 5, 3000.0, timestep=20.0, random_state=0,
                                min_distance_factor=0.0)
    assert not stopped and len(unchecked) == 40  # what would have been labelled without the check
    with pytest.raises(ValueError, match="interval=30 is larger than steps=20: the MD would take no snapshot"):
        run_md(EMT(), start, 20, 30, 300.0)
    with pytest.raises(ValueError, match="md_interval=30 is larger than md_steps=20"):
        run_loop(EMT(), md_steps=20, md_interval=30)


def test_the_loop_refuses_a_reference_by_name_and_starts_with_unknown_species():
    train = label_structures([cu8(0.02, 0)], EMT())
    with pytest.raises(TypeError, match="reference must be an ASE calculator, got str 'emt'.*reference_calculator"):
        active_learning(SETTINGS, train, "emt", [cu8(0.0, 0)])
    gold = cu8(0.0, 0)
    gold[0].symbol = "Au"
    for refit in ("fit", "recommend"):
        with pytest.raises(ValueError, match=r"starts\[0\] \(AuCu7\) has species \['Au'\] that no training"):
            active_learning(SETTINGS, train, EMT(), [gold], refit=refit)


def test_gapy_learn_runs_from_a_toml_file_logs_and_resumes(tmp_path, monkeypatch, capsys):
    from ase.io import write

    from gapy.cli import main

    monkeypatch.chdir(tmp_path)
    write("train.xyz", label_structures([cu8(0.02, seed) for seed in range(2)], EMT()))
    write("starts.xyz", cu8(0.0, 0))
    write("test.xyz", label_structures([cu8(0.1, 9)], EMT()))
    config = """
reference = "emt"
train = "train.xyz"
starts = "starts.xyz"
test = "test.xyz"
workdir = "run"
temperatures = [800]
strains = [0.0, 0.02]
driver = "uncertainty"
iterations = 2
batch = 2
md_steps = 20
md_interval = 4
timestep = 2.0
progress = false
[model]
r_cut = 4.0
n_max = 3
l_max = 2
n_sparse = 12
sigma_force = 0.01
[uncertainty]
strength = 0.05
"""
    Path("learn.toml").write_text(config)
    assert main(["learn", "learn.toml"]) == 0
    out = capsys.readouterr().out
    assert "2 iterations done; 4 structures labelled, 0 reference calculations failed" in out
    log = Path("run/log.csv").read_text().splitlines()
    assert log[0].startswith("iteration,n_train,n_candidates,max_score") and len(log) == 4
    assert log[3].startswith("final,6,")
    assert all(Path("run", name).is_file() for name in ("learning_curve.png", "model.gapy", "train.xyz"))
    assert len(read("run/train.xyz", ":")) == 6
    # resumed with one more iteration: only that one runs
    assert main(["learn", "learn.toml", "--iterations", "3"]) == 0
    assert "3 iterations done; 6 structures labelled" in capsys.readouterr().out
    # another run's workdir, a typo, a bad value, a bad reference: one clear line each
    for old, new, message in [
        ("md_steps = 20", "md_steps = 30", r"run holds another run \(different md_steps\)"),
        ("md_steps = 20", "md_stepz = 20", "unknown key 'md_stepz'; did you mean 'md_steps'?"),
        ("strength = 0.05", "strength = -1", r"\[uncertainty\]: strength must be a non-negative number"),
        ('reference = "emt"', 'reference = "nowhere:calc"', "cannot import 'nowhere'"),
        ('reference = "emt"', 'reference = "json:loads"', r"'json:loads': loads\(\) raised TypeError"),
        ("progress = false", 'progress = false\nrefit = "bayes"', "refit must be one of"),
        ("progress = false", 'progress = false\nrefit = "evidence"', r"different refit"),
    ]:
        Path("learn.toml").write_text(config.replace(old, new))
        assert main(["learn", "learn.toml"]) == 1
        assert re.search(message, capsys.readouterr().err)
    # a bad label of the test set: named with its file, before any work
    broken = read("test.xyz")
    broken.calc.results["forces"][0, 0] = np.nan
    write("broken.xyz", broken)
    Path("learn.toml").write_text(config.replace('test = "test.xyz"', 'test = "broken.xyz"').replace('"run"', '"run2"'))
    assert main(["learn", "learn.toml"]) == 1
    assert "broken.xyz: structure 0 (Cu8, config_type=active_learning): field 'forces' contains NaN" in (
        capsys.readouterr().err)
    assert not Path("run2/state.json").exists()


@pytest.mark.filterwarnings("ignore:evidence maximisation")
def test_gapy_learn_recommends_the_model_unless_its_settings_are_given(tmp_path, monkeypatch, capsys):
    from ase.io import write

    from gapy import load as load_model
    from gapy.cli import main

    monkeypatch.chdir(tmp_path)
    write("train.xyz", label_structures([cu8(0.02, seed) for seed in range(2)], EMT()))
    config = """
reference = "emt"
train = "train.xyz"
workdir = "run"
temperatures = [800]
iterations = 1
batch = 1
md_steps = 10
md_interval = 5
timestep = 2.0
progress = false
[model]
n_jobs = 1
"""
    Path("learn.toml").write_text(config)
    assert main(["learn", "learn.toml"]) == 0
    assert "; refit recommend; " in capsys.readouterr().out
    model = load_model("run/model.gapy")
    assert "recommended" in model.provenance_ and model.two_body is not None  # as gapy fit without settings
    assert json.loads(Path("run/state.json").read_text())["settings"]["refit"] == "recommend"
    # settings given with refit = "recommend" replace the recommended ones
    text = config.replace('"run"', '"given"').replace("progress = false", 'progress = false\nrefit = "recommend"')
    Path("learn.toml").write_text(text + "n_max = 4\nl_max = 3\n")
    assert main(["learn", "learn.toml"]) == 0
    model = load_model("given/model.gapy")
    assert (model.descriptor.n_max, model.descriptor.l_max) == (4, 3) and "recommended" in model.provenance_
    # given settings without refit: fitted as given (the earlier default)
    Path("learn.toml").write_text(config.replace('"run"', '"plain"') + "n_max = 4\nl_max = 3\nn_sparse = 8\n")
    assert main(["learn", "learn.toml"]) == 0
    assert "recommended" not in load_model("plain/model.gapy").provenance_
    Path("learn.toml").write_text(text + 'species = "Cu"\n')
    assert main(["learn", "learn.toml"]) == 1
    assert "species: refit = 'recommend' models the species of the training structures" in capsys.readouterr().err


def failing_emt():
    """A reference for ``gapy learn`` whose first calculation fails."""
    return CountingEMT(os.environ["GAPY_TEST_CALLS"], fail_at={1})


def test_gapy_learn_reports_a_failed_reference_calculation_on_one_line(tmp_path, monkeypatch, capsys):
    from ase.io import write

    from gapy.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("GAPY_TEST_CALLS", str(tmp_path / "calls.txt"))
    from ase.cluster import Icosahedron

    write("train.xyz", label_structures([cu8(0.02, seed) for seed in range(2)], EMT()))
    write("starts.xyz", [cu8(0.0, 0), Icosahedron("Cu", 2)])
    Path("learn.toml").write_text('reference = "test_exploration:failing_emt"\ntrain = "train.xyz"\n'
                                  'starts = "starts.xyz"\nstrains = [0.0, 0.05]\n'
                                  'workdir = "run"\niterations = 1\nbatch = 2\nmd_steps = 10\nmd_interval = 5\n'
                                  'progress = true\n[model]\nr_cut = 4.0\nn_max = 3\nl_max = 2\nn_sparse = 8\n')
    assert main(["learn", "learn.toml"]) == 0
    captured = capsys.readouterr()
    assert "note: 1 of the 2 starts are not periodic in all directions: they run once, unstrained" in captured.out
    assert "1 structures labelled, 1 reference calculations failed" in captured.out
    lines = [line for line in captured.err.replace("\r", "\n").splitlines() if "recorded as failed" in line]
    assert len(lines) == 1 and lines[0].startswith("gapy learn: warning: active learning: structure 0:"), lines
    assert "SCF did not converge" in lines[0]
    assert "their structures are in run/failed.xyz" in captured.out and "--retry-failed" in captured.out
    assert main(["learn", "learn.toml", "--retry-failed"]) == 0  # (call 3 of the counting reference: no failure)
    assert "2 structures labelled, 0 reference calculations failed;" in capsys.readouterr().out


def test_gapy_learn_config_accepts_threshold_zero_and_warns_of_an_unused_bias_table(tmp_path):
    from gapy.cli.learn import read_learn_config

    path = tmp_path / "learn.toml"
    path.write_text('reference = "emt"\ntrain = "t.xyz"\nworkdir = "w"\nthreshold = 0\n[metad]\nheight = 0.01\n')
    with pytest.warns(UserWarning, match=r"\[metad\] is not used: driver = 'md'"):
        settings = read_learn_config(path)
    assert settings["threshold"] == 0 and settings["driver_options"] == {}


def test_strained_copies_scale_periodic_cells_only():
    from ase.cluster import Icosahedron

    from gapy.sampling import strained_copies

    crystal, cluster = cu8(0.0, 0), Icosahedron("Cu", 2)
    copies = strained_copies([crystal, cluster], [-0.02, 0.1])
    assert len(copies) == 3 and [a.info["strain"] for a in copies] == [-0.02, 0.1, 0.0]
    np.testing.assert_allclose(copies[1].cell.array, 1.1 * crystal.cell.array)
    np.testing.assert_allclose(copies[1].positions, 1.1 * crystal.positions)
    assert crystal.info == {} and copies[2].positions.tolist() == cluster.positions.tolist()
    with pytest.raises(ValueError, match="strain must be a number > -1.0"):
        strained_copies([crystal], [-1.0])
