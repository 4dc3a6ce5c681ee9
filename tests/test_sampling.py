"""Uncertainty-driven sampling: scores, diverse selection, labelling, active learning."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from sklearn.base import clone

from gapy import GAPRegressor, GapyError, SOAP
from gapy.sampling import (
    active_learning,
    label_structures,
    run_md,
    select_per_run,
    select_structures,
    strained_copies,
    structure_fingerprints,
    uncertainty_scores,
)
from gapy.sparsify import fps_points


def cu8(rattle: float, seed: int):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(rattle, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def model():
    """A Cu model from two slightly rattled EMT structures: confident only near them."""
    train = label_structures([cu8(0.02, seed) for seed in range(2)], EMT(), config_type="initial")
    settings = GAPRegressor(SOAP(["Cu"], r_cut=4.5, n_max=4, l_max=3), n_sparse=40,
                            sigma_energy=0.001, sigma_force=0.01, random_state=0)
    return settings.fit(train)


def test_weighted_fps_takes_the_heaviest_first_and_skips_near_duplicates():
    rng = np.random.default_rng(0)
    cluster = rng.normal(size=(1, 5)) + 1e-6 * rng.normal(size=(4, 5))  # near-duplicates
    others = rng.normal(size=(3, 5))
    X = np.vstack([cluster, others])
    weights = np.array([1.0, 0.99, 0.98, 0.97, 0.5, 0.4, 0.3])
    chosen = fps_points(X, 3, weights=weights)
    assert 0 in chosen
    assert np.count_nonzero(chosen < 4) == 1  # one of the near-duplicates, not three
    # without weights the first point is random but the rule is unchanged
    assert np.count_nonzero(fps_points(X, 3, random_state=1) < 4) <= 1


def test_scores_are_the_model_standard_deviations(model):
    frames = [cu8(0.02, 0), cu8(0.2, 5)]
    results = model.predict_all(frames, return_std=True)
    forces = uncertainty_scores(model, frames, "forces")
    np.testing.assert_allclose(forces, [r["forces_std"].max() for r in results])
    energy = uncertainty_scores(model, frames, "energy")
    np.testing.assert_allclose(energy, [r["energy_std"] / 8 for r in results])
    local = uncertainty_scores(model, frames, "energies")
    np.testing.assert_allclose(local, [r["energies_std"].max() for r in results])
    # far from the training structures the model is less sure, by every score
    assert forces[1] > 2 * forces[0] and energy[1] > energy[0] and local[1] > local[0]
    with pytest.raises(ValueError, match="score must be one of"):
        uncertainty_scores(model, frames, "stress")


def test_selection_prefers_uncertain_and_different_structures(model):
    near = [cu8(0.02, 10 + k) for k in range(3)]  # like the training data
    far = cu8(0.25, 20)
    copies = [far.copy() for _ in range(3)]  # near-copies of the most uncertain frame
    for k, atoms in enumerate(copies):
        atoms.positions += 1e-4 * np.random.default_rng(k).normal(size=atoms.positions.shape)
    other = cu8(0.15, 30)
    candidates = near + copies + [other]
    plain = select_structures(model, candidates, 2, diverse=False)
    diverse = select_structures(model, candidates, 2)
    assert set(plain.indices) <= {3, 4, 5}  # the two top scores are two copies
    assert diverse.indices[0] in {3, 4, 5} and diverse.indices[1] == 6
    assert np.all(np.diff(diverse.scores[diverse.indices]) <= 0)  # most uncertain first
    # a threshold above every score selects nothing; one between keeps only the far ones
    assert len(select_structures(model, candidates, 2, threshold=1e6).indices) == 0
    cut = max(plain.scores[:3])
    assert set(select_structures(model, candidates, 10, threshold=cut).indices) == {3, 4, 5, 6}
    with pytest.raises(ValueError, match="positive integer"):
        select_structures(model, candidates, 0)


def test_per_run_selection_shares_the_labels_among_the_runs(model):
    near = [cu8(0.02, 10 + k) for k in range(4)]  # run 0: like the training data
    far = [cu8(0.25, 20 + k) for k in range(4)]  # run 1: far more uncertain
    middle = [cu8(0.1, 30 + k) for k in range(2)]  # run 2: in between, two candidates
    candidates, runs = near + far + middle, [0] * 4 + [1] * 4 + [2] * 2
    pooled = select_structures(model, candidates, 3)
    assert set(pooled.indices) <= set(range(4, 10)) and not set(pooled.indices) & {0, 1, 2, 3}
    scores, indices = select_per_run(model, candidates, runs, 3)
    np.testing.assert_allclose(scores, pooled.scores)
    assert sorted(runs[k] for k in indices) == [0, 1, 2]  # one label from every run
    assert np.all(np.diff(scores[indices]) <= 0)  # most uncertain first
    # 5 labels over 3 runs: the two most uncertain runs get 2, the last 1
    _, indices = select_per_run(model, candidates, runs, 5)
    assert sorted(runs[k] for k in indices) == [0, 1, 1, 2, 2]
    # a run short of candidates passes its share on; never more than there are
    _, indices = select_per_run(model, candidates, runs, 9)
    # (run 2, second most uncertain, has 2 for its 3: run 0, next in line, takes the third)
    assert sorted(runs[k] for k in indices) == [0, 0, 0, 0, 1, 1, 1, 2, 2] and len(set(indices)) == 9
    _, indices = select_per_run(model, candidates, runs, 20)
    assert sorted(indices) == list(range(10))
    # only structures above the threshold: none of run 0's
    cut = scores[:4].max()
    _, indices = select_per_run(model, candidates, runs, 3, threshold=cut)
    assert len(indices) == 3 and all(runs[k] > 0 for k in indices)
    with pytest.raises(ValueError, match="one run per frame"):
        select_per_run(model, candidates, runs[:-1], 3)
    with pytest.raises(ValueError, match="positive integer"):
        select_per_run(model, candidates, runs, 0)


def test_active_learning_with_per_run_selection_labels_from_every_start(model):
    train = label_structures([cu8(0.02, seed) for seed in range(2)], EMT(), config_type="initial")
    starts = [cu8(0.0, 0), strained_copies([cu8(0.0, 0)], [0.2])[0]]
    result = active_learning(clone(model), train, EMT(), starts, n_iterations=1, n_select=2, md_steps=20,
                             md_interval=5, temperature=600.0, random_state=0, selection="per_run")
    volumes = sorted(round(atoms.get_volume(), 3) for atoms in result.frames[len(train):])
    assert volumes == sorted(round(atoms.get_volume(), 3) for atoms in starts)


def test_fingerprints_are_unit_vectors_invariant_to_atom_order(model):
    atoms = cu8(0.1, 3)
    shuffled = atoms[np.random.default_rng(0).permutation(len(atoms))]
    fingerprints = structure_fingerprints(model.descriptor_, [atoms, shuffled])
    np.testing.assert_allclose(np.linalg.norm(fingerprints, axis=1), 1.0)
    np.testing.assert_allclose(fingerprints[0], fingerprints[1], atol=1e-12)


def test_labels_come_from_the_reference_calculator():
    atoms = cu8(0.1, 4)
    (labelled,) = label_structures([atoms], EMT())
    direct = atoms.copy()
    direct.calc = EMT()
    assert labelled.get_potential_energy() == pytest.approx(direct.get_potential_energy())
    np.testing.assert_allclose(labelled.get_forces(), direct.get_forces())
    np.testing.assert_allclose(labelled.get_stress(), direct.get_stress())
    assert labelled.info["config_type"] == "active_learning"
    assert atoms.calc is None  # the input is not touched

    class FailsOnSmallCells(EMT):
        def calculate(self, atoms=None, *args, **kwargs):
            if len(atoms) < 8:
                raise RuntimeError("SCF did not converge")
            super().calculate(atoms, *args, **kwargs)

    small = bulk("Cu", "fcc", a=3.6, cubic=True)
    with pytest.raises(GapyError, match=r"structure 1 \(Cu4\).*SCF did not converge"):
        label_structures([atoms, small], FailsOnSmallCells())


def test_md_snapshots_and_early_stop(model):
    snapshots, stopped = run_md(model, cu8(0.0, 0), steps=20, interval=5, temperature=300,
                                random_state=0)
    assert len(snapshots) == 4 and not stopped
    assert all(s.calc is None and len(s) == 8 for s in snapshots)
    assert not np.allclose(snapshots[0].positions, snapshots[-1].positions)
    # two atoms on top of each other: the calculator refuses, the run stops cleanly
    crushed = cu8(0.0, 0)
    crushed.positions[1] = crushed.positions[0] + [0.05, 0, 0]
    snapshots, stopped = run_md(model, crushed, steps=10, interval=2, temperature=300, random_state=0)
    assert stopped and snapshots == []
    # past max_force_std the run stops, keeping the snapshot that crossed it
    snapshots, stopped = run_md(model, cu8(0.0, 0), steps=40, interval=5, temperature=2000,
                                random_state=0, max_force_std=0.05)
    assert stopped and 1 <= len(snapshots) < 8
    last = uncertainty_scores(model, snapshots)
    assert last[-1] > 0.05 and np.all(last[:-1] <= 0.05)


def test_active_learning_lowers_the_error_on_unseen_md(model):
    test = label_structures(run_md(EMT(), cu8(0.0, 0), 100, 10, 800.0, 2.0, random_state=1)[0], EMT())
    train = label_structures([cu8(0.02, seed) for seed in range(2)], EMT(), config_type="initial")
    seen = []
    result = active_learning(model, train, EMT(), cu8(0.0, 0), n_iterations=2, n_select=3,
                             md_steps=60, md_interval=5, temperature=800, timestep=2.0,
                             random_state=0, callback=lambda it, m: seen.append(it))

    def force_rmse(fitted):
        predicted = fitted.predict_all(test, properties=("energy", "forces"))
        return np.sqrt(np.mean([(p["forces"] - a.get_forces()) ** 2 for p, a in zip(predicted, test)]))

    assert len(result.history) == 2 and seen == result.history
    assert len(result.frames) == len(train) + 6
    assert [a.info["config_type"] for a in result.frames[2:]] == ["active_learning"] * 6
    assert result.history[0].n_candidates == 12 and result.history[1].n_train == 5
    # the model grows confident where it learned, and better on MD it never saw
    assert result.history[1].max_score < 0.5 * result.history[0].max_score
    initial = force_rmse(clone(model).fit(train))
    assert force_rmse(result.model) < 0.3 * initial


def test_active_learning_stops_when_nothing_is_uncertain(model):
    train = label_structures([cu8(0.02, seed) for seed in range(2)], EMT())
    result = active_learning(model, train, EMT(), [cu8(0.0, 0)], n_iterations=3, md_steps=10,
                             md_interval=5, temperature=10, threshold=1e6, random_state=0)
    assert result.converged and len(result.history) == 1 and len(result.frames) == 2
    with pytest.raises(ValueError, match="n_select must be a positive integer"):
        active_learning(model, train, EMT(), [cu8(0.0, 0)], n_select=0)
    with pytest.raises(ValueError, match="starts"):
        active_learning(model, train, EMT(), [])


def test_two_species_selection_finds_the_unseen_composition():
    def alloy(gold, seed):
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True).repeat((2, 1, 1))
        atoms.symbols[list(gold)] = "Au"
        atoms.rattle(0.05, seed=seed)
        return atoms

    train = label_structures([alloy([0, 4], seed) for seed in range(3)], EMT())
    model = GAPRegressor(SOAP(["Cu", "Au"], r_cut=4.5, n_max=4, l_max=3), n_sparse=30, sigma_energy=0.001,
                         sigma_force=0.01, random_state=0).fit(train)
    seen = [alloy([0, 4], 10 + k) for k in range(3)]
    unseen = alloy([0, 1, 2, 3, 4, 5], 20)  # gold-rich: environments the model never saw
    selection = select_structures(model, seen + [unseen], 2)
    assert selection.indices[0] == 3
    fingerprints = structure_fingerprints(model.descriptor_, [seen[0], unseen])
    assert np.linalg.norm(fingerprints[0] - fingerprints[1]) > 0.1
