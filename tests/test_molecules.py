"""Molecules, light elements and non-periodic data: what a chemist brings (EMT labels of H, C, N, O)."""

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from gapy import recommend
from gapy.baseline import ZBL


def labelled(atoms: Atoms) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def rattled(name: str, n: int, scale: float = 0.05, seed: int = 0):
    frames = []
    for k in range(n):
        atoms = molecule(name)
        atoms.rattle(scale, seed=seed + k)
        frames.append(labelled(atoms))
    return frames


def pulled(name: str, i: int, j: int, distance: float) -> Atoms:
    """``molecule(name)`` with atom ``j`` moved along its bond to ``i`` to ``distance`` (A)."""
    atoms = molecule(name)
    bond = atoms.positions[j] - atoms.positions[i]
    atoms.positions[j] = atoms.positions[i] + bond / np.linalg.norm(bond) * distance
    return atoms


def test_c_h_pairs_are_repelled_below_their_bonds_when_h2_is_in_the_data():
    """H2 (0.74 A) beside C-H bonds (1.1 A): the ZBL switch of the shortest pair left the C-H pairs
    without repulsion from 1.1 A down to 0.6 A, where the GP attracted them (MD of ethane fell to
    C-H distances of 0.5 A); each pair of bonds much longer than the shortest has its own switch."""
    frames = rattled("CH4", 4) + rattled("H2", 2, 0.02)
    recommendation = recommend(frames)
    zbl = recommendation.model.baseline
    assert isinstance(zbl, ZBL) and "H-C" in zbl.pairs and "H-H" not in zbl.pairs
    shortest_ch = min(np.linalg.norm(a.positions[1:] - a.positions[0], axis=1).min() for a in frames[:4])
    assert 0.7 < zbl.pairs["H-C"][1] <= 0.8 * shortest_ch
    model = recommendation.model.set_params(descriptor__n_max=3, descriptor__l_max=2, n_sparse=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(frames)
    assert model.baseline_.get_params() == zbl.get_params()
    # zero on the data: the same fit as with the switch of the shortest pair
    on_data = model.baseline_.compute(frames[0])
    assert not np.any(on_data[0]) and not np.any(on_data[1])
    close = pulled("CH4", 0, 1, 0.7)
    (result,) = model.predict_all([close])
    bond = close.positions[1] - close.positions[0]
    assert result["forces"][1] @ bond / np.linalg.norm(bond) > 10.0  # pushed apart, strongly


def test_pair_switches_are_kept_in_files_and_by_clone(tmp_path):
    from sklearn.base import clone

    import gapy

    zbl = ZBL.below_distance(0.74, pair_shortest={(1, 1): 0.74, (1, 6): 1.09, (6, 6): 5.0, (6, 8): 0.8})
    # C-C seen only 5 A apart: capped at the covalent bond; C-O within 1.2 x the shortest: shared switch
    assert zbl.pairs == {"H-C": [0.428, 0.856], "C-C": [0.716, 1.216]}
    assert repr(zbl).endswith("pairs={'H-C': [0.428, 0.856], 'C-C': [0.716, 1.216]})")  # floats, not np.float64
    z = np.array([6, 1, 8])
    energy, _ = zbl.pair_energy(z, np.array([1, 6, 6]), np.array([0.8, 0.8, 0.8]))
    assert energy[0] == energy[1] > 0 and energy[2] == 0.0
    frames = rattled("CH4", 2) + rattled("H2", 1, 0.02)
    model = gapy.GAPRegressor(gapy.SOAP(["H", "C"], r_cut=3.0, n_max=3, l_max=2), n_sparse=5, baseline=zbl)
    assert clone(model).baseline.get_params() == zbl.get_params()
    model.fit(frames).save(tmp_path / "m.gapy")
    loaded = gapy.load(tmp_path / "m.gapy")
    close = pulled("CH4", 0, 1, 0.7)
    assert loaded.predict([close])[0] == pytest.approx(model.predict([close])[0], rel=1e-12)
    assert loaded.baseline_.pairs == zbl.pairs
    with pytest.raises(ValueError, match="not a species pair"):
        ZBL(0.3, 0.6, pairs={"CH": [0.4, 0.8]})
    with pytest.raises(ValueError, match="r_inner < r_outer"):
        ZBL(0.3, 0.6, pairs={"C-H": [0.8, 0.4]})


def test_recommend_warns_of_lone_molecules_that_see_their_periodic_images():
    """A plane-wave code's gas-phase molecule in a 9 A box: the recommended cutoff (6.9 A for
    small molecules) reached the images, and the model learnt an interaction with them (test
    forces 0.70 against 0.61 eV/A with pbc=False) without a word."""
    gas = rattled("CH4", 3) + rattled("C2H6", 3) + rattled("H2O", 2)
    boxed = []
    for atoms in gas:
        atoms = atoms.copy()
        atoms.set_cell([7.0, 7.0, 7.0])  # images within the recommended 5.7 A
        atoms.pbc = True
        atoms.center()
        atoms.positions += 3.0  # across the boundary: the molecule is made whole through the bonds
        atoms.wrap()
        boxed.append(labelled(atoms))
    with pytest.warns(RuntimeWarning, match=r"lone molecule in a periodic box .* set pbc=False"):
        recommend(boxed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        recommend(gas)  # no box, no images
        liquid = Atoms(cell=[5.0, 5.0, 5.0], pbc=True)  # several molecules: their neighbours are real
        for k, shift in enumerate(([0.5, 0.5, 0.5], [3.0, 3.0, 3.0], [0.5, 3.0, 3.0])):
            water = molecule("H2O")
            water.translate(shift)
            liquid += water
        liquid.wrap()
        recommend([labelled(liquid)] + gas)


def test_coverage_names_the_species_that_the_training_set_lacks(tmp_path, capsys):
    """New molecules with an element the training set lacks: the summary said 'median inf' and
    listed atoms at distance inf without saying why."""
    from ase.io import write

    from gapy.cli import main

    write(tmp_path / "train.xyz", rattled("CH4", 3))
    write(tmp_path / "new.xyz", rattled("H2O", 2) + rattled("CH4", 1, seed=7))
    argv = ["coverage", str(tmp_path / "train.xyz"), str(tmp_path / "new.xyz"), "-o", str(tmp_path / "out"),
            "--r-cut", "3.0", "--n-max", "3", "--l-max", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"2 of them (18.2%) have no training environments to compare with (distance inf): species O not in " \
           f"{tmp_path / 'train.xyz'}" in printed


def test_a_hand_set_zbl_baseline_switches_each_pair_of_much_longer_bonds_as_recommend_does():
    from gapy import SOAP, GAPRegressor

    frames = rattled("CH4", 4) + rattled("H2", 2, 0.02)
    model = GAPRegressor(SOAP(["H", "C"], r_cut=3.5, n_max=3, l_max=2), n_sparse=10, baseline="zbl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(frames)
    assert model.baseline_.pairs == recommend(frames).model.baseline.pairs and "H-C" in model.baseline_.pairs
    close = pulled("CH4", 0, 1, 0.75)
    (result,) = model.predict_all([close])
    bond = close.positions[1] - close.positions[0]
    assert result["forces"][1] @ bond > 0  # pushed apart, not pulled in
