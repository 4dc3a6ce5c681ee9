"""GAPRegressor as a scikit-learn estimator: clone, params, fitted checks, pickle, CV."""

import pickle

import joblib
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils.validation import check_is_fitted

import gapy
from gapy import GAPRegressor, SOAP, Term, ThreeBody, TwoBody
from gapy.datasets import load_si


def small_model(**params) -> GAPRegressor:
    soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
    return GAPRegressor(soap, n_sparse=20, e0={"Si": -0.79}, random_state=0, **params)


@pytest.fixture(scope="module")
def frames():
    """Nine bundled DFT structures of all four config_types, as a plain list."""
    return load_si("train")[::4][:9]


@pytest.fixture
def fitted(si_model):
    return si_model


def test_clone_copies_parameters_not_state(fitted):
    copy = clone(fitted)
    assert copy.get_params(deep=False).keys() == fitted.get_params(deep=False).keys()
    assert copy.descriptor is not fitted.descriptor
    assert copy.descriptor == fitted.descriptor
    assert copy.e0 == {"Si": -0.79}
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)


def test_get_and_set_nested_parameters():
    model = small_model()
    params = model.get_params()
    assert params["descriptor__r_cut"] == 4.0 and params["zeta"] == 4
    model.set_params(descriptor__r_cut=3.5, zeta=2)
    assert model.descriptor.r_cut == 3.5 and model.zeta == 2
    assert model.get_params()["descriptor__r_cut"] == 3.5
    with pytest.raises(ValueError, match="r_cut"):
        model.set_params(descriptor__r_cut=-1.0)


def test_unfitted_model_raises_not_fitted(frames):
    model = small_model()
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    with pytest.raises(NotFittedError):
        model.predict(frames)
    check_is_fitted(small_model().fit(frames[:2]))


def test_pickle_round_trip_gives_the_same_predictions(fitted, frames, tmp_path):
    expected = fitted.predict_all(frames[:3], return_std=True)
    for copy in (pickle.loads(pickle.dumps(fitted)), _joblib_round_trip(fitted, tmp_path)):
        for got, want in zip(copy.predict_all(frames[:3], return_std=True), expected):
            assert got.keys() == want.keys()
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _joblib_round_trip(model, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    return joblib.load(path)


def test_score_is_negative_energy_rmse_per_atom(fitted, frames):
    assert "higher is better" in GAPRegressor.score.__doc__
    n_atoms = np.array([len(atoms) for atoms in frames])
    reference = np.array([atoms.get_potential_energy() for atoms in frames]) / n_atoms
    rmse = np.sqrt(np.mean((fitted.predict(frames) / n_atoms - reference) ** 2))
    assert fitted.score(frames) == pytest.approx(-rmse, rel=1e-12)
    assert fitted.score(frames) < 0


def test_cross_val_score_on_a_list_of_atoms(frames):
    scores = cross_val_score(small_model(), frames, cv=KFold(3))
    assert scores.shape == (3,)
    assert np.all(np.isfinite(scores)) and np.all(scores < 0)
    assert np.all(scores > -0.5)  # eV/atom: a fitted model, not noise


def test_grid_search_picks_the_highest_score(frames):
    search = GridSearchCV(small_model(), {"zeta": [2, 4]}, cv=3).fit(frames)
    means = search.cv_results_["mean_test_score"]
    assert search.best_params_["zeta"] == [2, 4][int(np.argmax(means))]
    assert search.best_estimator_.zeta == search.best_params_["zeta"]
    check_is_fitted(search.best_estimator_)
    assert search.score(frames) == pytest.approx(search.best_estimator_.score(frames))


def test_grid_search_over_a_descriptor_parameter(frames):
    # cutoff_width, not r_cut: a new r_cut costs seconds of radial-basis tabulation
    search = GridSearchCV(small_model(), {"descriptor__cutoff_width": [0.5, 1.0]}, cv=KFold(2)).fit(frames)
    best = search.best_params_["descriptor__cutoff_width"]
    assert search.best_estimator_.descriptor_.cutoff_width == best
    assert len(set(search.cv_results_["mean_test_score"])) == 2


@pytest.mark.parametrize("check", [
    "check_parameters_default_constructible",
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_repr",
    "check_do_not_raise_errors_in_init_or_set_params",
])
def test_scikit_learn_estimator_checks(check):
    """The checks of sklearn.utils.estimator_checks that do not need numeric X arrays."""
    from sklearn.utils import estimator_checks

    getattr(estimator_checks, check)("GAPRegressor", small_model())


def test_fit_leaves_its_inputs_and_parameters_unchanged(frames):
    model = small_model(sigma_virial=0.1)
    params = {k: (v.get_params() if hasattr(v, "get_params") else v) for k, v in model.get_params(deep=False).items()}
    before = [(a.positions.copy(), a.cell.array.copy(), dict(a.info), {k: v.copy() for k, v in a.arrays.items()},
               {k: np.copy(v) for k, v in a.calc.results.items()}) for a in frames]
    model.fit(frames)
    after = {k: (v.get_params() if hasattr(v, "get_params") else v) for k, v in model.get_params(deep=False).items()}
    assert after == params
    for atoms, (positions, cell, info, arrays, results) in zip(frames, before):
        np.testing.assert_array_equal(atoms.positions, positions)
        np.testing.assert_array_equal(atoms.cell.array, cell)
        assert atoms.info == info and atoms.arrays.keys() == arrays.keys()
        for key, value in arrays.items():
            np.testing.assert_array_equal(atoms.arrays[key], value)
        assert atoms.calc.results.keys() == results.keys()
        for key, value in results.items():
            np.testing.assert_array_equal(atoms.calc.results[key], value)


@pytest.mark.parametrize("weights, message", [
    ([1.0, 1.0], r"shape \(9,\), got \(2,\)"),
    ([0.0] * 9, "all weights are zero"),
    ([-1.0] + [1.0] * 8, "non-negative"),
    ([np.nan] + [1.0] * 8, "finite"),
])
def test_score_refuses_bad_sample_weights_with_a_clear_message(fitted, frames, weights, message):
    """A short, negative or all-zero weight vector was a numpy TypeError, a ZeroDivisionError
    or a silently meaningless score."""
    with pytest.raises(ValueError, match=message):
        fitted.score(frames, sample_weight=weights)
    assert fitted.score(frames, sample_weight=[2.0] * 9) == pytest.approx(fitted.score(frames), rel=1e-12)


def test_score_before_fit_is_not_fitted_even_without_labels(frames):
    unlabelled = [atoms.copy() for atoms in frames]
    with pytest.raises(NotFittedError):
        small_model().score(unlabelled)


def test_a_failed_refit_leaves_the_fitted_model_as_it_was(frames):
    """A refit that fails (a typo in maximize_evidence's names, a label kind the new data lack)
    left the new data's e0 beside the old GP: predictions 18-173 eV off, without a word."""
    from gapy.exceptions import StructureError

    model = small_model(sigma_virial=0.05).set_params(e0="average").fit(frames)
    before, params = model.predict(frames), model.get_params(deep=False)
    with pytest.raises(ValueError, match=r"\['sigma_forces'\] are not among the optimised"):
        model.maximize_evidence(frames[:4], fixed=("sigma_forces",))
    shifted = [atoms.copy() for atoms in frames[:5]]
    for atoms, original in zip(shifted, frames):  # energies of another scale, and no stress
        atoms.calc = SinglePointCalculator(atoms, energy=original.get_potential_energy() - 50.0,
                                           forces=original.get_forces())
    with pytest.raises(StructureError, match="stress"):
        model.fit(shifted)
    with pytest.raises(StructureError, match="stress"):
        model.maximize_evidence(shifted)
    assert np.array_equal(model.predict(frames), before) and model.get_params(deep=False) == params


def test_maximize_evidence_leaves_the_callers_term_unchanged(frames):
    term = Term(TwoBody(["Si"], r_cut=4.0), n_sparse=10, delta=1.0)
    model = small_model(two_body=term).maximize_evidence(frames)
    assert term.delta == 1.0 and model.two_body.delta != 1.0 and model.two_body is not term
    assert hasattr(model, "evidence_") and not hasattr(small_model().fit(frames), "evidence_")
    model.fit(frames)  # a plain refit: the evidence of the earlier search is not its own
    assert not hasattr(model, "evidence_") and "evidence" not in model.provenance_


def test_a_model_saved_after_its_terms_were_set_again_reloads_as_fitted(frames, tmp_path):
    """save() paired the current term parameters with the fitted terms: a file that load refused."""
    model = small_model(two_body=Term(TwoBody(["Si"], r_cut=4.0), n_sparse=10)).fit(frames)
    expected = model.predict(frames)
    model.set_params(two_body=None)
    model.save(tmp_path / "a.gapy")
    model.set_params(three_body=Term(ThreeBody(["Si"], r_cut=3.0)))
    model.save(tmp_path / "b.gapy")
    for name in ("a.gapy", "b.gapy"):
        loaded = gapy.load(tmp_path / name)
        assert np.array_equal(loaded.predict(frames), expected)
        assert loaded.two_body is not None and loaded.three_body is None


def test_n_jobs_none_means_one_thread_as_in_scikit_learn(frames):
    assert np.array_equal(small_model(n_jobs=None).fit(frames).predict(frames),
                          small_model(n_jobs=1).fit(frames).predict(frames))


def test_a_drawn_seed_is_recorded_and_refits_the_same_model(frames):
    first = small_model().set_params(random_state=None).fit(frames)
    seed = first.provenance_["training"]["seed"]
    assert first.random_state is None and isinstance(seed, int)
    again = small_model().set_params(random_state=seed).fit(frames)
    assert np.array_equal(again.gp_.sparse, first.gp_.sparse)
    assert np.array_equal(again.predict(frames), first.predict(frames))
    assert small_model().fit(frames).provenance_["training"]["seed"] == 0
