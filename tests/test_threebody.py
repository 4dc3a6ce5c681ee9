"""3-body descriptor and its squared-exponential kernel rows: gradients, invariances,
brute-force reference, classes, cutoff, prior variances and bad input."""

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list
from instance_checks import (
    check_invariances,
    check_prior_variances,
    check_covariances,
    check_rows_against_finite_differences,
    check_supercell,
    rows_of,
    sparse_near_instances,
)
from sklearn.base import clone

from gapy import StructureError
from gapy.descriptors import ThreeBody
from gapy.gp.terms import instance_kernel_rows
from gapy.sparsify import instance_points
from gapy.testing import assert_allclose_relative, finite_difference_positions, finite_difference_strain

WIDTH = 1.0
THETA = np.array([0.8, 0.5, 0.7])  # Angstrom, Angstrom^2, Angstrom
DELTA = 0.3
#: cutoffs that put some neighbours of each structure in the transition region
CUTOFFS = {"rattled_si": 4.0, "triclinic_sige": 4.0, "cluster": 3.2}


def triplets_for(system, species=("Si", "Ge")):
    return ThreeBody(list(species), r_cut=CUTOFFS[system], cutoff_width=WIDTH)


@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
def test_force_and_virial_rows_match_finite_differences(system, request):
    atoms = request.getfixturevalue(system)
    triplets = triplets_for(system)
    sparse, classes = sparse_near_instances(triplets, [atoms], per_class=6)
    check_rows_against_finite_differences(triplets, atoms, sparse, classes, THETA, DELTA, system)
    weights = triplets.compute(atoms).weights
    assert np.any((weights > 0.05) & (weights < 0.95))


@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
def test_descriptor_gradients_match_finite_differences(system, request):
    atoms = request.getfixturevalue(system)
    triplets = triplets_for(system)
    instances = triplets.compute(atoms, gradients=True)

    def per_triplet(moved):
        found = triplets.compute(moved)
        np.testing.assert_array_equal(found.atoms, instances.atoms)  # same triplets, same order
        return np.concatenate([found.values, found.weights[:, None]], axis=1)

    numeric = finite_difference_positions(per_triplet, atoms, step=1e-5)  # (j, a, t, 4)
    dense = np.zeros((len(atoms), 3, len(instances), 4))
    for s in range(3):
        np.add.at(dense, (instances.atoms[:, s], slice(None), np.arange(len(instances))),
                  np.concatenate([instances.dvalues[:, s], instances.dweights[:, s, :, None]], axis=2))
    for f in range(4):  # each feature and the weight separately (different scales)
        assert_allclose_relative(dense[..., f], numeric[..., f], 1e-6, f"position gradient {f}")
    strain = finite_difference_strain(per_triplet, atoms, step=1e-5).transpose(2, 0, 1, 3)
    analytic = np.concatenate([instances.dvalues_strain, instances.dweights_strain[..., None]], axis=3)
    for f in range(4):
        assert_allclose_relative(analytic[..., f], strain[..., f], 1e-6, f"strain gradient {f}")


@pytest.mark.parametrize("system", ["triclinic_sige", "cluster"])
def test_rotation_translation_permutation_and_wrapping(system, request):
    atoms = request.getfixturevalue(system)
    triplets = triplets_for(system)
    sparse, classes = sparse_near_instances(triplets, [atoms], per_class=5)
    check_invariances(triplets, atoms, sparse, classes, THETA, DELTA)


def test_supercell_gives_eight_times_the_energy_row():
    primitive = bulk("Si", "diamond", a=5.43)  # 2 atoms: triplets through an atom's own images
    primitive.positions[1] += [0.05, -0.02, 0.03]
    triplets = ThreeBody(["Si"], r_cut=4.0, cutoff_width=WIDTH)
    found = triplets.compute(primitive)
    assert np.any(found.atoms[:, 1] == found.atoms[:, 2])
    sparse, classes = sparse_near_instances(triplets, [primitive], per_class=8)
    check_supercell(triplets, primitive, sparse, classes, THETA, DELTA)


def brute_force_energies(atoms, numbers, r_cut, sparse, sparse_classes, theta, delta):
    """Local-energy rows from a plain triple loop over ase's neighbour list: every ordered
    pair of distinct neighbour entries of a centre, each giving half of its triplet."""
    n = len(numbers)
    centers, neighbors, vectors = neighbor_list("ijD", atoms, r_cut)

    def cutoff(r):
        return 1.0 if r < r_cut - WIDTH else 0.5 * (1 + np.cos(np.pi * (r - r_cut + WIDTH) / WIDTH))

    out = np.zeros((len(atoms), len(sparse)))
    for i in range(len(atoms)):
        mine = np.flatnonzero(centers == i)
        for p, q in itertools.permutations(mine, 2):
            r1, r2 = np.linalg.norm(vectors[p]), np.linalg.norm(vectors[q])
            x = np.array([r1 + r2, (r1 - r2) ** 2, np.linalg.norm(vectors[q] - vectors[p])])
            a, b = sorted((numbers.index(atoms.numbers[neighbors[p]]), numbers.index(atoms.numbers[neighbors[q]])))
            triplet_class = numbers.index(atoms.numbers[i]) * n * (n + 1) // 2 + a * n - a * (a - 1) // 2 + (b - a)
            weight = cutoff(r1) * cutoff(r2)
            for m in range(len(sparse)):
                if sparse_classes[m] == triplet_class:
                    kernel = np.exp(-0.5 * (((x - sparse[m]) / theta) ** 2).sum())
                    out[i, m] += 0.5 * delta**2 * weight * kernel
    return out


@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
def test_energy_rows_equal_a_brute_force_loop(system, request):
    atoms = request.getfixturevalue(system)
    triplets = triplets_for(system)
    sparse, classes = sparse_near_instances(triplets, [atoms], per_class=5)
    rows = rows_of(triplets, atoms, sparse, classes, THETA, DELTA, gradients=False)
    expected = brute_force_energies(atoms, [14, 32], triplets.r_cut, sparse, classes, THETA, DELTA)
    assert_allclose_relative(rows["energies"], expected, 1e-12, system)


def test_each_neighbour_pair_is_counted_once():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=4)
    found = ThreeBody(["Si"], r_cut=4.0).compute(atoms)
    counts = np.bincount(neighbor_list("i", atoms, 4.0), minlength=len(atoms))
    assert len(found) == (counts * (counts - 1) // 2).sum()
    np.testing.assert_array_equal(np.bincount(found.atoms[:, 0]), counts * (counts - 1) // 2)


def test_classes_and_symmetry():
    triplets = ThreeBody(["Ge", "Si"], r_cut=3.5)
    assert triplets.n_classes == 6 and triplets.n_features == 3
    assert triplets.class_labels().tolist() == [[14, 14, 14], [14, 14, 32], [14, 32, 32],
                                               [32, 14, 14], [32, 14, 32], [32, 32, 32]]
    bent = Atoms("SiSiGe", positions=[[0, 0, 0], [2.3, 0, 0], [-0.5, 2.2, 0.3]])
    swapped = bent[[0, 2, 1]]
    a, b = triplets.compute(bent), triplets.compute(swapped)
    # centre 0 with an Si and a Ge neighbour: class (Si; Si, Ge) = 1 either way
    assert a.classes[0] == b.classes[0] == 1 and a.atoms[0, 0] == b.atoms[0, 0] == 0
    np.testing.assert_allclose(a.values[0], b.values[0], rtol=1e-14)
    # a triplet of class (Si; Si, Ge) never meets (Si; Si, Si) or (Si; Ge, Ge) sparse points
    sparse = np.repeat(a.values[:1] + 0.1, 3, axis=0)  # off the value: a non-zero gradient
    rows = instance_kernel_rows(triplets.compute(bent, gradients=True), sparse, [0, 1, 2], 1.0, DELTA)
    assert np.all(rows["energies"][:, [0, 2]] == 0) and np.all(rows["forces"][:, :, [0, 2]] == 0)
    assert rows["energies"][0, 1] > 0 and np.all(rows["energies"][1:] == 0)  # all to the centre
    assert np.abs(rows["forces"][:, :, 1]).max() > 0


def test_triplets_beyond_the_cutoff_contribute_nothing_and_the_cutoff_is_smooth():
    r_cut = 3.5
    triplets = ThreeBody(["Si"], r_cut=r_cut, cutoff_width=WIDTH)
    sparse = np.array([[2.3 + r_cut, 1.4, 4.2], [5.0, 1.0, 4.0]])

    def trimer(distance):  # atom 2 leaves the sphere of atom 0 (and is never near atom 1)
        return Atoms("Si3", positions=[[0, 0, 0], [2.3, 0, 0], [0, distance, 0]])

    outside = rows_of(triplets, trimer(r_cut + 1e-3), sparse, [0, 0], THETA, DELTA)
    assert np.all(outside["energies"] == 0) and np.all(outside["forces"] == 0) and np.all(outside["virial"] == 0)
    for gap in (1e-2, 1e-3, 1e-4):
        rows = rows_of(triplets, trimer(r_cut - gap), sparse, [0, 0], THETA, DELTA)
        assert np.abs(rows["energy"]).max() < 5 * gap**2 * DELTA**2
        assert 0.01 * gap * DELTA**2 < np.abs(rows["forces"]).max() < 5 * gap * DELTA**2
    inside = rows_of(triplets, trimer(r_cut - 0.6), sparse, [0, 0], THETA, DELTA)
    assert inside["energy"].max() > 0.01 * DELTA**2


@pytest.mark.parametrize("system", ["triclinic_sige", "cluster"])
def test_prior_variances(system, request):
    atoms = request.getfixturevalue(system)
    forces, virial = check_prior_variances(triplets_for(system), atoms, THETA, DELTA, [(0, 0), (3, 2), (5, 1)])
    assert forces.shape == (len(atoms), 3) and np.all(forces > 0)
    assert np.all(virial > 0)


def test_force_and_virial_covariances_of_two_structures(triclinic_sige):
    other = triclinic_sige.copy()
    other.rattle(0.05, seed=7)
    check_covariances(triplets_for("triclinic_sige"), triclinic_sige, other, THETA, DELTA, [(0, 0), (1, 3), (5, 4)],
                      [((0, 0), (0, 0)), ((2, 1), (0, 2)), ((5, 2), (4, 0))])


def test_sparse_points_from_instances(triclinic_sige, cluster):
    triplets = ThreeBody(["Si", "Ge"], r_cut=3.5)
    values, classes = triplets.collect([triclinic_sige, cluster], n_jobs=2)
    assert values.shape == (len(classes), 3)
    for method in ("cur", "fps", "random"):
        sparse, sparse_classes = instance_points(values, classes, 3, method=method, theta=THETA, random_state=1)
        assert set(sparse_classes) == set(classes)
        for row, c in zip(sparse, sparse_classes):
            assert np.any(np.all(values[classes == c] == row, axis=1))


def test_parameters_clone_and_repr():
    triplets = ThreeBody(["Si"])
    assert triplets.get_params() == {"species": ["Si"], "r_cut": 4.0, "cutoff_width": 1.0}
    assert clone(triplets) == triplets
    assert eval(repr(triplets), {"ThreeBody": ThreeBody}) == triplets
    assert triplets.set_params(cutoff_width=0.5).cutoff_width == 0.5
    with pytest.raises(ValueError, match="r_cut must be a positive number"):
        ThreeBody(["Si"], r_cut=0.0)
    with pytest.raises(ValueError, match="cutoff_width=5.0 must not exceed r_cut=4.0"):
        ThreeBody(["Si"], cutoff_width=5.0)


def test_bad_structures_and_arguments_are_rejected(rattled_si):
    triplets = ThreeBody(["Si"], r_cut=3.0)
    germanium = rattled_si.copy()
    germanium.symbols[2] = "Ge"
    with pytest.raises(StructureError, match=r"structure 3 \(GeSi7\): species \['Ge'\] not in .*ThreeBody"):
        triplets.compute(germanium, index=3)
    close = rattled_si.copy()
    close.positions[1] = close.positions[0] + [0.05, 0, 0]
    with pytest.raises(StructureError, match="atoms 0 and 1 are 0.05 A apart"):
        triplets.compute(close)
    found = triplets.compute(rattled_si)
    with pytest.raises(ValueError, match="theta must be a number or 3 numbers"):
        instance_kernel_rows(found, found.values[:2], found.classes[:2], [1.0, 1.0], DELTA)
    with pytest.raises(ValueError, match="force prior variances need instances computed with gradients"):
        from gapy.gp.term_variance import instance_force_prior_variance
        instance_force_prior_variance(found, THETA, DELTA)


def test_blocked_evaluation_equals_one_block(triclinic_sige, monkeypatch):
    """Rows and priors computed in many small blocks equal the one-block results."""
    import gapy.gp.term_variance as term_variance
    import gapy.gp.terms as terms

    triplets = triplets_for("triclinic_sige")
    instances = triplets.compute(triclinic_sige, gradients=True)
    sparse, classes = sparse_near_instances(triplets, [triclinic_sige], per_class=6)
    rows = instance_kernel_rows(instances, sparse, classes, THETA, DELTA)
    priors = term_variance.instance_prior_variances(instances, THETA, DELTA)
    assert max(np.bincount(instances.classes)) > 3 * 7
    monkeypatch.setattr(terms, "_BLOCK_ENTRIES", 20)
    monkeypatch.setattr(term_variance, "_BLOCK", 7)
    blocked_rows = instance_kernel_rows(instances, sparse, classes, THETA, DELTA)
    blocked_priors = term_variance.instance_prior_variances(instances, THETA, DELTA)
    for key in rows:
        np.testing.assert_allclose(blocked_rows[key], rows[key], rtol=1e-12, atol=1e-14 * np.abs(rows[key]).max())
    for key in priors:
        np.testing.assert_allclose(blocked_priors[key], priors[key], rtol=1e-11)


def test_structures_with_too_many_triplets_are_refused(rattled_si, monkeypatch):
    import gapy.descriptors.threebody as threebody

    triplets = ThreeBody(["Si"], r_cut=4.0)
    n = len(triplets.compute(rattled_si))
    monkeypatch.setattr(threebody, "physical_memory", lambda: 2.0 * n * (64 + 288))  # room without strain
    assert len(triplets.compute(rattled_si, gradients="positions")) == n
    with pytest.raises(StructureError, match=rf"structure 4 \(Si8\): r_cut=4.0 A gives {n:,} triplets, .* with gradients"):
        triplets.compute(rattled_si, gradients=True, index=4)

