"""sigma_energy by cross-validation of the energies (gapy.gp.energy_noise through
GAPRegressor.maximize_evidence(energy_sigma="cross-validation")): units, weights, bounds,
warnings, streamed fits, extra terms and model files."""

import json
import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import gapy
from gapy import GAPRegressor, SOAP, Term, TwoBody
from gapy.datasets import load_si
from gapy.estimator import _candidate_seed
from gapy.gp import energy_noise
from gapy.gp.energy_noise import FOLDS

SETTINGS = dict(n_sparse=20, sigma_energy=0.01, sigma_force=0.2, random_state=0)
UPPER = "noise sigma of energy at its upper bound"


def si_model(**kw):
    return GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=3, l_max=2), **{**SETTINGS, **kw})


def cross_validated(model, frames, **kw):
    """``model`` fitted with the cross-validated sigma_energy; the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.maximize_evidence(frames, energy_sigma="cross-validation", **kw)
    return model, [str(record.message) for record in caught]


def record_of(model):
    return model.provenance_["evidence"]["sigma_energy_cross_validation"]


def relabelled(frames, keep_energy=lambda k: True, energy=None):
    """Copies of ``frames`` with their forces, and their energy where ``keep_energy(k)``
    (``energy(atoms)`` instead of the label if given)."""
    out = []
    for k, atoms in enumerate(frames):
        copy = atoms.copy()
        results = {"forces": atoms.get_forces()}
        if keep_energy(k):
            results["energy"] = atoms.get_potential_energy() if energy is None else energy(atoms)
        copy.calc = SinglePointCalculator(copy, **results)
        out.append(copy)
    return out


@pytest.fixture(scope="module", autouse=True)
def few_energies_suffice():
    """These small sets are cross-validated: at least 5 energies instead of MIN_ENERGIES."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(energy_noise, "MIN_ENERGIES", 5)
        yield


@pytest.fixture(scope="module")
def frames():
    return load_si("train")[:12]


@pytest.fixture(scope="module")
def plain(frames):
    return cross_validated(si_model(), frames)[0]


def test_held_out_energy_errors_are_per_atom_and_equal_refits_without_each_fold(frames, plain, monkeypatch):
    """End to end: each candidate's ``energy`` is the RMS per atom of the energies of a fit
    whose energy labels lack that fold (forces kept, e0 as fitted), at that sigma."""
    record = record_of(plain)
    assert len(record["candidates"]) == 7 and plain.sigma_energy == record["sigma"]
    energies = np.array([atoms.get_potential_energy() for atoms in frames])
    n_atoms = np.array([len(atoms) for atoms in frames])
    folds = np.array_split(np.random.default_rng(_candidate_seed(0)).permutation(len(frames)), FOLDS)
    params = {**plain.get_params(deep=False), "e0": dict(plain.e0_)}
    # the e0 held at its value, with the kernel of an estimated e0 (not conditioned on the lone atom)
    monkeypatch.setattr(GAPRegressor, "_e0_is_free_atom_energy", lambda self: False)
    for row in record["candidates"][::3]:
        held_out = np.zeros(len(frames))
        for fold in folds:
            model = GAPRegressor(**{**params, "sigma_energy": row["sigma"]})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(relabelled(frames, lambda k: k not in fold))
            held_out[fold] = model.predict([frames[k] for k in fold])
        assert row["energy"] == pytest.approx(np.sqrt(np.mean(((held_out - energies) / n_atoms) ** 2)), rel=1e-5)


def test_fewer_than_min_energies_keep_the_evidence_sigma(frames, monkeypatch):
    """By default 12 energies are too few to judge by: the evidence's sigma, with the reason."""
    monkeypatch.setattr(energy_noise, "MIN_ENERGIES", 50)
    model, _ = cross_validated(si_model(), frames)
    record = model.provenance_["evidence"]
    assert record["sigma_energy_cross_validation"]["candidates"] == []
    assert "fewer than 50 energies" in record["sigma_energy_cross_validation"]["reason"]
    assert model.sigma_energy == record["evidence_sigma_energy"]


def test_fewer_than_five_energies_keep_the_evidence_sigma_five_are_cross_validated(frames):
    four, _ = cross_validated(si_model(), frames[:4])
    record = four.provenance_["evidence"]
    assert record["sigma_energy_cross_validation"]["candidates"] == []
    assert "fewer than 5 energies" in record["sigma_energy_cross_validation"]["reason"]
    assert four.sigma_energy == record["evidence_sigma_energy"] == record["sigmas"]["sigma_energy"]
    five, _ = cross_validated(si_model(), frames[:5])
    assert len(record_of(five)["candidates"]) == 7 and "of the 5 energies" in record_of(five)["reason"]


def test_zero_weights_leave_structures_out_of_the_cross_validation(frames):
    weights = np.ones(len(frames))
    weights[:4] = 0.0
    weighted, _ = cross_validated(si_model(), frames, sample_weight=weights)
    kept, _ = cross_validated(si_model(), frames[4:])
    assert "of the 8 energies" in record_of(weighted)["reason"]
    assert record_of(weighted) == record_of(kept)


def test_uniform_weights_scale_the_sigmas_not_the_choice(frames, plain):
    """Weights of 4 halve every noise: the evidence's sigmas double, the scores stay."""
    weighted, _ = cross_validated(si_model(), frames, sample_weight=np.full(len(frames), 4.0))
    assert weighted.sigma_energy == pytest.approx(2 * plain.sigma_energy, rel=1e-3)
    assert [row["score"] for row in record_of(weighted)["candidates"]] == pytest.approx(
        [row["score"] for row in record_of(plain)["candidates"]], rel=1e-3)


def test_held_out_energy_errors_stay_per_atom_with_weights(frames, plain):
    weighted, _ = cross_validated(si_model(), frames, sample_weight=np.full(len(frames), 4.0))
    assert [row["energy"] for row in record_of(weighted)["candidates"]] == pytest.approx(
        [row["energy"] for row in record_of(plain)["candidates"]], rel=1e-3)


def test_a_fixed_sigma_energy_is_not_cross_validated(frames):
    model, _ = cross_validated(si_model(), frames, fixed=("sigma_energy",))
    assert model.sigma_energy == 0.01
    assert "sigma_energy_cross_validation" not in model.provenance_["evidence"]


def test_candidates_stay_within_the_bounds_and_the_answered_bound_warning_goes(frames):
    """The evidence on the upper bound of sigma_energy alone: its warning is dropped when
    the cross-validation chose lower (and given once otherwise), no candidate lies below
    the lower bound; with delta on a bound too, delta's is given and the energy's as before."""
    model, messages = cross_validated(si_model(), frames, bounds={"sigma_energy": (0.005, 0.02)})
    record = model.provenance_["evidence"]
    assert record["at_bounds"] == ["energy"] and record["evidence_sigma_energy"] == pytest.approx(0.02)
    assert [row["sigma"] for row in record_of(model)["candidates"]] == pytest.approx([0.02, 0.01, 0.005])
    lower = model.sigma_energy < 0.02  # the warning goes only when answered
    assert len([message for message in messages if UPPER in message]) == (0 if lower else 1)
    model, messages = cross_validated(si_model(), frames, bounds={"sigma_energy": (0.005, 0.02),
                                                                  "delta": (0.1, 1.0)})
    assert model.provenance_["evidence"]["at_bounds"] == ["delta", "energy"]
    bound = [message for message in messages if "evidence maximisation: delta at its upper bound 1" in message]
    assert len(bound) == 1 and (UPPER in bound[0]) == (model.sigma_energy == pytest.approx(0.02))


def test_identical_energies_per_atom_keep_the_other_warnings(frames):
    """Every energy -5 eV/atom: the evidence leaves sigma_energy on its upper bound, the
    cross-validation chooses lower; the warning of identical energies stays, once."""
    same = relabelled(frames, energy=lambda atoms: -5.0 * len(atoms))
    model, messages = cross_validated(si_model(sigma_energy=0.01), same)
    assert model.provenance_["evidence"]["at_bounds"] == ["energy"] and model.sigma_energy < 1.0
    assert not [message for message in messages if UPPER in message]
    assert len([message for message in messages if "is -5 eV/atom in all 12 structures" in message]) == 1


def test_rewarned_evidence_warnings_keep_their_module(frames):
    """The evidence's warnings, given again after the cross-validation, come from the
    module that gave them: a filter by module treats them as without it."""
    def given(energy_sigma):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")
            warnings.filterwarnings("always", module="gapy")
            si_model(sigma_force=None).maximize_evidence(frames, energy_sigma=energy_sigma,
                                                         bounds={"sigma_energy": (1e-3, 1.0)})
        return [str(record.message) for record in caught]

    evidence = given("evidence")
    assert any("noise sigma of energy at its lower bound" in message for message in evidence)
    assert given("cross-validation") == evidence


def test_a_file_gives_the_choice_of_the_list(frames, plain, tmp_path):
    import ase.io

    path = tmp_path / "train.xyz"
    ase.io.write(path, frames)
    streamed, _ = cross_validated(si_model(), str(path))
    assert record_of(streamed)["sigma"] == pytest.approx(record_of(plain)["sigma"], rel=1e-10)
    for streamed_row, row in zip(record_of(streamed)["candidates"], record_of(plain)["candidates"], strict=True):
        assert streamed_row == pytest.approx(row, rel=1e-8)


def test_a_generator_random_state_gives_reproducible_folds(frames):
    first, _ = cross_validated(si_model(random_state=np.random.default_rng(3)), frames)
    second, _ = cross_validated(si_model(random_state=np.random.default_rng(3)), frames)
    assert record_of(first) == record_of(second)


def test_config_type_sigma_is_scaled_with_its_kind_and_get_params_refit_the_model(frames):
    """The evidence keeps the config types' sigmas relative to the global ones: the model
    shows them scaled as their kind's sigma was, and a plain fit with its parameters is it."""
    types = sorted({atoms.info["config_type"] for atoms in frames})
    overrides = {types[0]: {"energy": 0.002, "force": 0.1}, types[-1]: {"energy": 0.002}}
    model, _ = cross_validated(si_model(config_type_sigma=overrides), frames)
    energy, force = model.sigma_energy / SETTINGS["sigma_energy"], model.sigma_force / SETTINGS["sigma_force"]
    assert abs(np.log(energy)) > 0.1 and abs(np.log(force)) > 0.1
    assert model.config_type_sigma == {types[0]: {"energy": pytest.approx(0.002 * energy),
                                                  "force": pytest.approx(0.1 * force)},
                                       types[-1]: {"energy": pytest.approx(0.002 * energy)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = GAPRegressor(**model.get_params(deep=False)).fit(frames)
    assert np.max(np.abs(refit.predict(frames) - model.predict(frames))) < 1e-6


def emt_cells(n=12, seed=0):
    """Rattled Cu-Ni cells of 4 atoms, EMT energies, forces and stresses."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.03 * rng.normal(), cubic=True)
        atoms.set_chemical_symbols(["Ni" if rng.random() < 0.5 else "Cu" for _ in atoms])
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        results = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


def test_two_body_several_species_and_e0_fit_survive_the_model_file(tmp_path):
    """Two deltas, two species, e0 fitted, virials: every candidate scores the forces and
    virials; the provenance is JSON and comes back from the model file."""
    settings = dict(n_sparse=10, sigma_energy=0.01, sigma_force=0.1, sigma_virial=0.05, e0="fit", random_state=0,
                    two_body=Term(TwoBody(["Cu", "Ni"], r_cut=3.5), delta=1.0, theta=0.5, n_sparse=8))
    cells = emt_cells()
    model, _ = cross_validated(GAPRegressor(SOAP(["Cu", "Ni"], r_cut=4.0, n_max=3, l_max=2), **settings), cells)
    record = model.provenance_["evidence"]
    assert set(record["deltas"]) == {"delta", "two_body__delta"}
    assert all({"sigma", "energy", "forces", "virial", "score", "score_error"} == set(row) for row in record_of(model)["candidates"])
    assert model.sigma_energy == record["sigmas"]["sigma_energy"] == record_of(model)["sigma"]
    path = tmp_path / "model.npz"
    model.save(path)
    assert gapy.load(path).provenance_["evidence"] == json.loads(json.dumps(record, allow_nan=False))


def test_active_learning_refit_recommend_cross_validates(tmp_path):
    from gapy.sampling import active_learning, label_structures

    def cu8(rattle, seed):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.rattle(rattle, seed=seed)
        return atoms

    train = label_structures([cu8(0.05, seed) for seed in range(5)], EMT())
    model = GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=20, sigma_energy=0.001,
                         sigma_force=0.01, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = active_learning(model, train, EMT(), [cu8(0.0, 0)], n_iterations=1, n_select=2, md_steps=10,
                                 refit="recommend", workdir=tmp_path / "work")
    record = result.model.provenance_["evidence"]
    assert result.model.provenance_["recommended"]["energy_sigma"] == "cross-validation"
    assert record["sigmas"]["sigma_energy"] == result.model.sigma_energy == record_of(result.model)["sigma"]
    assert gapy.load(tmp_path / "work" / "model.gapy").provenance_["evidence"] == json.loads(json.dumps(record))
