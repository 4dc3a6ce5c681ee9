"""Models with extra terms: SOAP + 2-body (+ 3-body) local energies in one sparse GP."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import gapy
from gapy import GAPRegressor, SOAP, StructureError, Term, ThreeBody, TwoBody
from gapy.testing import assert_allclose_relative, finite_difference_positions, finite_difference_strain

SOAP_SETTINGS = dict(r_cut=3.5, n_max=3, l_max=2)


def _labelled(atoms, energy):
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, energy=energy)
    return atoms


def _toy_labels(atoms):
    """Energy, forces and stress of a smooth pair potential (finite differences free: analytic via ASE)."""
    from ase.calculators.lj import LennardJones

    calc = LennardJones(sigma=2.1, epsilon=0.3, rc=3.5, smooth=True)
    atoms = atoms.copy()
    atoms.calc = calc
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


@pytest.fixture(scope="module")
def frames():
    out = []
    for k in range(5):
        atoms = bulk("Si", "diamond", a=5.43 + 0.05 * k)
        atoms.rattle(0.15, seed=k)
        out.append(_toy_labels(atoms))
    return out


def _model(**kw):
    params = dict(n_sparse=8, sigma_energy=0.005, sigma_force=0.05, sigma_virial=0.05, e0=0.0,
                  two_body=Term(TwoBody(["Si"], r_cut=3.5), delta=2.0, theta=0.5, n_sparse=8))
    params.update(kw)
    return GAPRegressor(SOAP(["Si"], **SOAP_SETTINGS), **params)


@pytest.fixture(scope="module")
def fitted(frames):
    three = Term(ThreeBody(["Si"], r_cut=3.0), delta=0.3, theta=0.7, n_sparse=8)
    return _model(three_body=three).fit(frames)


def test_terms_are_fitted_with_their_own_sparse_points(fitted):
    gp = fitted.gp_
    assert [term.sparse.shape[1] for term in gp.terms] == [1, 3]
    assert len(gp.alpha) == len(gp.sparse) + sum(len(term.sparse) for term in gp.terms)
    assert sorted(fitted.term_descriptors_) == ["three_body", "two_body"]
    kmm = gp.kernel_matrix()
    m = len(gp.sparse)
    assert np.all(kmm[:m, m:] == 0)  # block-diagonal: independent terms


def test_forces_and_stress_are_derivatives_of_the_energy(fitted, frames):
    atoms = frames[2].copy()
    atoms.rattle(0.05, seed=9)
    result = fitted.predict_all([atoms])[0]
    numeric = -finite_difference_positions(lambda a: fitted.predict([a])[0], atoms, 1e-5)
    assert_allclose_relative(result["forces"], numeric, 1e-6, "forces")
    strain = finite_difference_strain(lambda a: fitted.predict([a])[0], atoms, 1e-5) / atoms.get_volume()
    voigt = np.array([strain[0, 0], strain[1, 1], strain[2, 2], strain[1, 2], strain[0, 2], strain[0, 1]])
    assert_allclose_relative(result["stress"], voigt, 1e-6, "stress")
    assert abs(result["energies"].sum() - result["energy"]) < 1e-9


def test_tiny_term_delta_gives_the_soap_only_model(frames):
    soap_only = _model(two_body=None).fit(frames)
    tiny = _model(two_body=Term(TwoBody(["Si"], r_cut=3.5), delta=1e-7, theta=0.5, n_sparse=8)).fit(frames)
    test = frames[4].copy()
    test.rattle(0.03, seed=1)
    a, b = soap_only.predict_all([test], return_std=True)[0], tiny.predict_all([test], return_std=True)[0]
    for key in ("energy", "forces", "stress", "energy_std", "forces_std", "stress_std"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-9, err_msg=key)


def test_save_and_load_give_identical_predictions(fitted, frames, tmp_path):
    fitted.save(tmp_path / "model.gapy")
    loaded = gapy.load(tmp_path / "model.gapy")
    assert loaded.get_params() == fitted.get_params()
    header, _ = gapy.io.read_state(tmp_path / "model.gapy")
    assert header["format_version"] == 4
    first = fitted.predict_all(frames[:2], return_std=True)
    second = loaded.predict_all(frames[:2], return_std=True)
    for a, b in zip(first, second):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_soap_only_models_are_still_written_as_format_3(frames, tmp_path):
    model = _model(two_body=None, n_sparse=5).fit(frames[:2])
    model.save(tmp_path / "soap.gapy")
    header, arrays = gapy.io.read_state(tmp_path / "soap.gapy")
    assert header["format_version"] == 3 and "terms" not in header
    assert "two_body" not in header["params"] and not any(name.startswith("two_body") for name in arrays)


def test_edited_term_in_a_model_file_is_refused(fitted, tmp_path):
    header, arrays = fitted.to_state()
    arrays["two_body_sparse"] = arrays["two_body_sparse"][:, [0, 0]]
    with pytest.raises(gapy.ModelFileError, match="two_body"):
        GAPRegressor.from_state(header, arrays)


def test_clone_set_params_and_grid_search_over_a_nested_term_parameter(frames):
    model = _model(sigma_virial=None, n_sparse=5)
    copy = clone(model).set_params(two_body__delta=3.0, two_body__descriptor__r_cut=3.2)
    assert copy.two_body.delta == 3.0 and copy.two_body.descriptor.r_cut == 3.2
    assert model.two_body.delta == 2.0 and model.two_body.descriptor.r_cut == 3.5  # the original is unchanged
    search = GridSearchCV(model, {"two_body__theta": [0.3, 0.6]}, cv=2).fit(frames[:4])
    assert search.best_params_["two_body__theta"] in (0.3, 0.6)
    assert search.best_estimator_.gp_.terms[0].theta.tolist() == [search.best_params_["two_body__theta"]]


def test_a_cutoff_that_sees_no_pair_is_refused(frames):
    model = _model(two_body=Term(TwoBody(["Si"], r_cut=1.0, cutoff_width=0.5), n_sparse=4))
    with pytest.raises(ValueError, match="two_body: no pair .* r_cut=1.0"):
        model.fit(frames[:2])


def test_a_species_the_term_does_not_know_is_refused(frames):
    model = GAPRegressor(SOAP(["Si", "C"], **SOAP_SETTINGS), n_sparse=4, e0=0.0,
                         two_body=Term(TwoBody(["Si"], r_cut=3.5), n_sparse=4))
    carbide = frames[0].copy()
    carbide.numbers[0] = 6
    carbide.calc = SinglePointCalculator(carbide, energy=1.0, forces=np.zeros((len(carbide), 3)))
    with pytest.raises(StructureError, match="C"):
        model.fit([frames[1], carbide])
    fitted = model.fit(frames[:2])
    with pytest.raises(StructureError, match="C"):
        fitted.predict([carbide])


@pytest.mark.parametrize("term, message", [
    (Term(ThreeBody(["Si"])), "two_body.descriptor must be a gapy.TwoBody"),
    (Term(TwoBody(["Si"]), delta=0.0), "two_body.delta"),
    (Term(TwoBody(["Si"]), theta=[0.5, 0.5]), "two_body.theta"),
    (Term(TwoBody(["Si"]), n_sparse=1), "two_body.n_sparse"),
])
def test_bad_term_parameters_are_refused(frames, term, message):
    with pytest.raises((TypeError, ValueError), match=message):
        _model(two_body=term).fit(frames[:1])


def _pair_covariance(a, b, pairs, delta, theta):
    """Prior covariance of the 2-body energies of two structures, from the pairs' distances."""
    x, y = pairs.compute(a), pairs.compute(b)
    kernel = np.exp(-((x.values[:, 0][:, None] - y.values[:, 0][None, :]) ** 2) / (2 * theta**2))
    return delta**2 * x.weights @ kernel @ y.weights


def test_variances_equal_dense_gp_with_the_sum_of_kernels():
    """Trained on energies of structures whose every SOAP environment is sparse and whose
    every pair distance is a sparse point of the 2-body term, the sparse GP is the exact
    GP of the summed kernel for any linear functional: every variance kind, forces and
    stress included. The dense reference is built from the descriptors and finite
    differences, independently of the kernel rows and priors."""
    r_cut, grid, delta2, theta, sigma = 3.5, 4, 1.5, 0.6, 0.01
    distances = np.linspace(2.0, r_cut, grid)  # the grid the fit builds: shortest .. r_cut
    frames = []
    for k, d in enumerate(distances[:-1]):
        dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, d]])
        frames.append(_labelled(dimer, -1.0 + 0.1 * k))
    triangle = Atoms("Si3", positions=[[0, 0, 0], [distances[1], 0, 0],
                                       [distances[1] / 2, distances[1] * np.sqrt(3) / 2, 0]])
    frames.append(_labelled(triangle, -2.0))
    soap = SOAP(["Si"], **SOAP_SETTINGS)
    pairs = TwoBody(["Si"], r_cut=r_cut)
    zeta, delta = 2, 0.7
    model = GAPRegressor(soap, n_sparse=1000, sigma_energy=sigma, sigma_force=None, zeta=zeta, delta=delta,
                         e0=0.0, sparse_jitter=1e-12, sigma_per_atom=False,
                         two_body=Term(pairs, delta=delta2, theta=theta, n_sparse=grid)).fit(frames)
    np.testing.assert_allclose(model.gp_.terms[0].sparse.ravel(), distances)
    q0 = soap.compute(Atoms("Si"))[0]

    def covariance(a, b):
        q, p = soap.compute(a), soap.compute(b)
        many = delta**2 * (((q @ p.T) ** zeta).sum() - ((q @ q0) ** zeta).sum() * ((p @ q0) ** zeta).sum())
        return many + _pair_covariance(a, b, pairs, delta2, theta)

    gram = np.array([[covariance(a, b) for b in frames] for a in frames]) + sigma**2 * np.eye(len(frames))
    test = bulk("Si", "diamond", a=5.3)
    test.rattle(0.1, seed=3)

    def posterior(first, second):  # d^2 / (d first d second) of the posterior covariance, by finite differences
        prior = sum(s * t * covariance(a, b) for s, a in first for t, b in second)
        cross_a = np.array([sum(s * covariance(a, f) for s, a in first) for f in frames])
        cross_b = np.array([sum(t * covariance(b, f) for t, b in second) for f in frames])
        return prior - cross_a @ np.linalg.solve(gram, cross_b)

    h = 1e-4
    moved = []
    for sign in (1, -1):
        b = test.copy()
        b.positions[1, 2] += sign * h
        moved.append(b)
    force = [(-1 / (2 * h), moved[0]), (1 / (2 * h), moved[1])]
    volume = test.get_volume()
    strained = []
    for sign in (1, -1):
        b = test.copy()
        deformation = np.eye(3)
        deformation[0, 0] += sign * h
        b.set_cell(test.cell.array @ deformation.T, scale_atoms=True)
        strained.append(b)
    stress = [(1 / (2 * h * volume), strained[0]), (-1 / (2 * h * volume), strained[1])]
    exact = {"energy": posterior([(1.0, test)], [(1.0, test)]), "force": posterior(force, force),
             "stress": posterior(stress, stress)}
    sor_and_local = {}
    for kind in ("dtc", "sor", "local"):
        result = model.predict_all([test], return_std=True, variance=kind)[0]
        sor_and_local[kind] = (result["energy_std"] ** 2, result["forces_std"][1, 2] ** 2,
                               result["stress_std"][0] ** 2)
    dtc = sor_and_local["dtc"]
    np.testing.assert_allclose(dtc, [exact["energy"], exact["force"], exact["stress"]], rtol=2e-3)
    np.testing.assert_allclose(np.add(sor_and_local["sor"], sor_and_local["local"]), dtc, rtol=1e-8)
    assert sor_and_local["local"][0] > 0.1 * dtc[0]  # a test structure unlike the data: the residual matters


def test_posterior_draws_of_a_multi_term_model_reproduce_its_predicted_stds(fitted):
    """validate's model_std draws the terms' weights and prior with SOAP's: the draws'
    spread is the model's own std (with the Nystrom residual), on two structures drawn jointly."""
    from ase.build import bulk

    from gapy.validation import validate
    from gapy.validation._uncertainty import PosteriorDraws

    frames = [bulk("Si", "diamond", a=5.43, cubic=True), bulk("Si", "diamond", a=5.6, cubic=True)]
    for seed, atoms in enumerate(frames):
        atoms.rattle(0.1, seed=seed + 3)
    n = 4000
    draws = PosteriorDraws(fitted, n, random_state=1).predict(frames, ("energy", "forces", "stress"))
    properties = ("energy", "forces", "stress")
    for k, atoms in enumerate(frames):
        (dtc,) = fitted.predict_all([atoms], return_std=True, variance="dtc", properties=properties)
        (sor,) = fitted.predict_all([atoms], return_std=True, variance="sor", properties=properties)
        energies = np.array([d[k]["energy"] for d in draws])
        forces = np.array([d[k]["forces"] for d in draws])
        stresses = np.array([d[k]["stress"] for d in draws])
        assert energies.std() == pytest.approx(dtc["energy_std"], rel=0.1)
        assert dtc["stress_std"].max() > 1.1 * sor["stress_std"].max()  # the residual matters
        np.testing.assert_allclose(stresses.std(axis=0), dtc["stress_std"], rtol=0.1)
        assert energies.mean() == pytest.approx(dtc["energy"], abs=4 * dtc["energy_std"] / np.sqrt(n))
        assert sor["forces_std"].max() > 1e-4
        assert dtc["forces_std"].max() > 1.1 * sor["forces_std"].max()
        np.testing.assert_allclose(forces.std(axis=0), dtc["forces_std"], rtol=0.15, atol=1e-3 * dtc["forces_std"].max())
    report = validate(fitted, bulk("Si", "diamond", a=5.43), properties=["eos"], plots=False, progress=False)
    assert report.results["bulk_modulus"].model is not None
    assert report.results["bulk_modulus"].model_std > 0


@pytest.mark.parametrize("descriptor, n_features", [(TwoBody(["Si"], r_cut=4.0), 1), (ThreeBody(["Si"], r_cut=3.0), 3)])
def test_weighted_gradients_of_local_rows_match_finite_differences(descriptor, n_features):
    """Forces and virial of sum_i w_i . e_i (per-atom coefficients on the local-energy
    rows), as the uncertainty bias needs them, against finite differences."""
    from gapy.gp import voigt
    from gapy.gp.terms import instance_kernel_rows, instance_weighted_gradients

    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.1, seed=1)
    rng = np.random.default_rng(0)
    sparse, classes = rng.uniform(2.0, 4.5, (6, n_features)), np.zeros(6, dtype=int)
    weights = rng.normal(size=(len(atoms), 6))

    def combination(a):
        return float((instance_kernel_rows(descriptor.compute(a), sparse, classes, 0.7, 1.3)["energies"]
                      * weights).sum())

    forces, virial = instance_weighted_gradients(descriptor.compute(atoms, gradients=True), sparse, classes, 0.7,
                                                 1.3, weights)
    assert_allclose_relative(forces, -finite_difference_positions(combination, atoms, 1e-5), 1e-6, "forces")
    assert_allclose_relative(virial, -voigt(finite_difference_strain(combination, atoms, 1e-5)), 1e-6, "virial")
