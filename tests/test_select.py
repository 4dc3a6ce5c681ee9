"""gapy select and gapy.sampling.select_structures on awkward pools: copies, unknown species."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from gapy import GAPRegressor, SOAP
from gapy.sampling import label_structures, select_per_run, select_structures, structure_fingerprints


def cu(rattle: float, seed: int):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def model():
    """A small Cu model from four slightly rattled EMT cells."""
    train = label_structures([cu(0.03, seed) for seed in range(4)], EMT())
    return GAPRegressor(SOAP(["Cu"], r_cut=4.0, n_max=3, l_max=2), n_sparse=10, random_state=0).fit(train)


def _assert_all_different(model, frames, indices):
    fingerprints = structure_fingerprints(model.descriptor_, [frames[k] for k in indices])
    distance = np.linalg.norm(fingerprints[:, None] - fingerprints[None], axis=-1)
    assert (distance + np.eye(len(indices)) > 1e-6).all(), indices


def test_diverse_selection_never_takes_a_structure_twice(model):
    a, b, c = cu(0.2, 10), cu(0.1, 11), cu(0.15, 12)
    pool = [a, a.copy(), b, b.copy(), c]  # the same snapshots twice
    selection = select_structures(model, pool, 4)
    assert len(selection.indices) == 3 and {k // 2 for k in selection.indices} == {0, 1, 2}
    _assert_all_different(model, pool, selection.indices)
    # fewer eligible than n: all of them were taken, copies included
    assert sorted(select_structures(model, [a, b, a.copy()], 3).indices) == [0, 1]
    # a copy with permuted atoms or shifted by a lattice vector is the same structure
    permuted = a[np.random.default_rng(0).permutation(len(a))]
    shifted = a.copy()
    shifted.positions += a.cell[0]
    pool = [a, permuted, shifted, b, c]
    selection = select_structures(model, pool, 4)
    assert len(selection.indices) == 3 and len(set(selection.indices) & {0, 1, 2}) == 1
    _assert_all_different(model, pool, selection.indices)
    # near-copies (1e-4 A apart) are different structures; without diversity copies are kept
    near = a.copy()
    near.positions += 1e-4 * np.random.default_rng(1).normal(size=near.positions.shape)
    assert sorted(select_structures(model, [a, near, b], 3).indices) == [0, 1, 2]
    assert len(select_structures(model, [a, a.copy(), b], 2, diverse=False).indices) == 2


def test_per_run_selection_takes_copies_once(model):
    a, b, c = cu(0.2, 10), cu(0.1, 11), cu(0.15, 12)
    frames = [a, b, a.copy(), c]  # runs started from the same snapshot share their first frame
    scores, indices = select_per_run(model, frames, [0, 0, 1, 1], 4)
    assert len(indices) == 3 and sorted(indices)[1:] == [1, 3]
    assert np.all(np.diff(scores[indices]) <= 0)
    _, indices = select_per_run(model, frames, [0, 0, 1, 1], 4, threshold=1e6)
    assert len(indices) == 0


def test_cli_unknown_species_of_the_model_advises(model, tmp_path, capsys):
    from ase.io import write

    from gapy.cli import main

    model.save(tmp_path / "cu.gapy")
    alloy = cu(0.05, 3)
    alloy.symbols[[1]] = "Au"
    alloy.info["config_type"] = "alloy"
    write(tmp_path / "pool.xyz", [cu(0.1, 2), alloy], format="extxyz")
    argv = ["select", str(tmp_path / "cu.gapy"), str(tmp_path / "pool.xyz"), "-n", "1", "-o", str(tmp_path / "s.xyz")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert (f"{tmp_path / 'pool.xyz'}: structure 1 (AuCu3, config_type=alloy) has species ['Au'] that the model does "
            f"not know (it was fitted for ['Cu']): refit it with 'gapy fit' on training structures that contain Au"
            in err)
    assert not (tmp_path / "s.xyz").exists()
