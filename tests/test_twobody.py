"""2-body descriptor and its squared-exponential kernel rows: gradients, invariances,
brute-force reference, classes, cutoff, prior variances and bad input."""

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
)
from sklearn.base import clone

from gapy import StructureError
from gapy.descriptors import Instances, TwoBody
from gapy.descriptors.instances import cosine_cutoff
from gapy.gp.terms import instance_kernel_rows, instance_sparse_kernel
from gapy.kernels import squared_exponential_kernel
from gapy.sparsify import grid_points, instance_points
from gapy.testing import assert_allclose_relative, finite_difference_positions, finite_difference_strain

R_CUT = 5.0
WIDTH = 1.0
THETA = 0.6
DELTA = 0.7
#: the cluster is small: a shorter cutoff puts some of its pairs in the transition region
CUTOFFS = {"rattled_si": R_CUT, "triclinic_sige": R_CUT, "cluster": 3.2}


def make_pairs(species=("Si", "Ge"), **kwargs):
    return TwoBody(list(species), **{"r_cut": R_CUT, "cutoff_width": WIDTH, **kwargs})


def pairs_for(system):
    return make_pairs(r_cut=CUTOFFS[system])


def grid_for(descriptor, frames, n=9):
    values, classes = descriptor.collect(frames)
    return grid_points(values - 0.2, classes, n, descriptor.r_cut)  # a little below the data too


@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
def test_force_and_virial_rows_match_finite_differences(system, request):
    atoms = request.getfixturevalue(system)
    pairs = pairs_for(system)
    sparse, classes = grid_for(pairs, [atoms])
    rows = check_rows_against_finite_differences(pairs, atoms, sparse, classes, THETA, DELTA, system)
    # the transition region of the cutoff is exercised
    weights = pairs.compute(atoms).weights
    assert np.any((weights > 0.05) & (weights < 0.95))
    assert rows["forces"].shape == (len(atoms), 3, len(sparse))


@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
def test_descriptor_gradients_match_finite_differences(system, request):
    """Position and strain gradients of the distances and cutoff weights themselves."""
    atoms = request.getfixturevalue(system)
    pairs = pairs_for(system)
    instances = pairs.compute(atoms, gradients=True)

    def per_pair(moved):
        found = pairs.compute(moved)
        np.testing.assert_array_equal(found.atoms, instances.atoms)  # same pairs, same order
        return np.concatenate([found.values, found.weights[:, None]], axis=1)

    numeric = finite_difference_positions(per_pair, atoms, step=1e-5)  # (j, a, t, 2)
    dense = np.zeros((len(atoms), 3, len(instances), 2))
    for s in range(2):
        np.add.at(dense, (instances.atoms[:, s], slice(None), np.arange(len(instances))),
                  np.concatenate([instances.dvalues[:, s], instances.dweights[:, s, :, None]], axis=2))
    assert_allclose_relative(dense, numeric, 1e-6, "position gradients")
    strain = finite_difference_strain(per_pair, atoms, step=1e-5)  # (a, b, t, 2)
    analytic = np.concatenate([instances.dvalues_strain, instances.dweights_strain[..., None]], axis=3)
    assert_allclose_relative(analytic, strain.transpose(2, 0, 1, 3), 1e-6, "strain gradients")


@pytest.mark.parametrize("system", ["triclinic_sige", "cluster"])
def test_rotation_translation_permutation_and_wrapping(system, request):
    atoms = request.getfixturevalue(system)
    pairs = pairs_for(system)
    sparse, classes = grid_for(pairs, [atoms])
    check_invariances(pairs, atoms, sparse, classes, THETA, DELTA)


def test_supercell_gives_eight_times_the_energy_row():
    primitive = bulk("Si", "diamond", a=5.43)  # 2 atoms: pairs with an atom's own images
    primitive.positions[1] += [0.05, -0.02, 0.03]
    pairs = make_pairs(["Si"])
    assert np.any(pairs.compute(primitive).atoms[:, 0] == pairs.compute(primitive).atoms[:, 1])
    sparse, classes = grid_for(pairs, [primitive])
    check_supercell(pairs, primitive, sparse, classes, THETA, DELTA)


def test_each_pair_is_counted_once_with_its_images():
    """Pair count equals half the directed neighbour list, self-images included."""
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=4)
    found = make_pairs(["Si"]).compute(atoms)
    i, j, d = neighbor_list("ijd", atoms, R_CUT)
    assert 2 * len(found) == len(i)
    np.testing.assert_allclose(np.sort(found.values[:, 0]), np.sort(d)[::2], rtol=1e-12)
    assert np.all(found.atoms[:, 0] <= found.atoms[:, 1])


def brute_force_energies(atoms, species, r_cut, sparse, sparse_classes, theta, delta):
    """Local-energy rows from a plain loop over ase's directed neighbour list."""
    numbers = sorted(species)
    first, second, distances = neighbor_list("ijd", atoms, r_cut)
    out = np.zeros((len(atoms), len(sparse)))
    for i, j, r in zip(first, second, distances):
        a, b = sorted((numbers.index(atoms.numbers[i]), numbers.index(atoms.numbers[j])))
        pair_class = a * len(numbers) - a * (a - 1) // 2 + (b - a)
        if r >= r_cut - WIDTH:
            weight = 0.5 * (1 + np.cos(np.pi * (r - r_cut + WIDTH) / WIDTH))
        else:
            weight = 1.0
        for m in range(len(sparse)):
            if sparse_classes[m] == pair_class:
                kernel = np.exp(-((r - sparse[m, 0]) ** 2) / (2 * theta**2))
                out[i, m] += 0.5 * delta**2 * weight * kernel  # i -> j and j -> i: half each
    return out


@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
def test_energy_rows_equal_a_brute_force_loop(system, request):
    atoms = request.getfixturevalue(system)
    pairs = pairs_for(system)
    sparse, classes = grid_for(pairs, [atoms])
    rows = rows_of(pairs, atoms, sparse, classes, THETA, DELTA, gradients=False)
    expected = brute_force_energies(atoms, [14, 32], pairs.r_cut, sparse, classes, THETA, DELTA)
    assert_allclose_relative(rows["energies"], expected, 1e-12, system)
    assert set(rows) == {"energies", "energy"}


def test_classes_separate_species_pairs():
    dimer = Atoms("SiGe", positions=[[0, 0, 0], [0, 0, 2.4]])
    pairs = make_pairs()
    assert pairs.class_labels().tolist() == [[14, 14], [14, 32], [32, 32]]
    found = pairs.compute(dimer)
    assert found.classes.tolist() == [1]
    sparse = np.array([[2.4], [2.4], [2.4]])
    rows = instance_kernel_rows(pairs.compute(dimer, gradients=True), sparse, [0, 1, 2], THETA, DELTA)
    assert np.all(rows["energies"][:, [0, 2]] == 0) and np.all(rows["forces"][:, :, [0, 2]] == 0)
    np.testing.assert_allclose(rows["energies"][:, 1], [DELTA**2 / 2] * 2)  # k = 1, f_c = 1
    # the column order of the sparse points is kept whatever the class order
    shuffled = instance_kernel_rows(pairs.compute(dimer, gradients=True), sparse[[2, 1, 0]], [2, 1, 0], THETA, DELTA)
    np.testing.assert_array_equal(shuffled["forces"], rows["forces"][:, :, [2, 1, 0]])


def test_pairs_beyond_the_cutoff_contribute_nothing_and_the_cutoff_is_smooth():
    pairs = make_pairs(["Si"])
    sparse = np.array([[R_CUT - 0.3], [R_CUT]])

    def dimer(distance):
        return Atoms("Si2", positions=[[0, 0, 0], [distance, 0, 0]])

    outside = rows_of(pairs, dimer(R_CUT + 1e-3), sparse, [0, 0], THETA, DELTA)
    assert np.all(outside["energies"] == 0) and np.all(outside["forces"] == 0) and np.all(outside["virial"] == 0)
    for gap in (1e-2, 1e-3, 1e-4):
        rows = rows_of(pairs, dimer(R_CUT - gap), sparse, [0, 0], THETA, DELTA)
        assert np.abs(rows["energy"]).max() < 5 * gap**2 * DELTA**2  # cosine cutoff: O(gap^2)
        assert np.abs(rows["forces"]).max() < 5 * gap * DELTA**2
        assert np.abs(rows["forces"]).max() > 0.1 * gap * DELTA**2
    inside = rows_of(pairs, dimer(R_CUT - 0.5), sparse, [0, 0], THETA, DELTA)
    assert inside["energy"].min() > 0.1 * DELTA**2


def test_cutoff_function():
    r = np.array([0.5, 3.9, 4.0, 4.5, 5.0, 5.5])
    value, derivative = cosine_cutoff(r, 5.0, 1.0)
    np.testing.assert_allclose(value, [1, 1, 1, 0.5, 0, 0], atol=1e-15)
    np.testing.assert_allclose(derivative, [0, 0, 0, -np.pi / 2, 0, 0], atol=1e-15)
    h = 1e-6
    x = np.linspace(4.01, 4.99, 7)
    numeric = (cosine_cutoff(x + h, 5.0, 1.0)[0] - cosine_cutoff(x - h, 5.0, 1.0)[0]) / (2 * h)
    np.testing.assert_allclose(cosine_cutoff(x, 5.0, 1.0)[1], numeric, rtol=1e-8)


@pytest.mark.parametrize("system", ["triclinic_sige", "cluster"])
def test_prior_variances(system, request):
    atoms = request.getfixturevalue(system)
    forces, virial = check_prior_variances(pairs_for(system), atoms, THETA, DELTA, [(0, 0), (2, 1), (5, 2)])
    assert forces.shape == (len(atoms), 3) and np.all(forces > 0)
    assert virial.shape == (6,)


def test_force_and_virial_covariances_of_two_structures(triclinic_sige):
    other = triclinic_sige.copy()
    other.rattle(0.05, seed=7)
    check_covariances(pairs_for("triclinic_sige"), triclinic_sige, other, THETA, DELTA, [(0, 0), (1, 3), (5, 4)],
                      [((0, 0), (0, 0)), ((2, 1), (0, 2)), ((5, 2), (4, 0))])


def test_se_kernel_and_sparse_kernel():
    values = np.array([[1.0, 2.0], [0.5, 1.0]])
    sparse = np.array([[1.0, 2.5], [0.0, 0.0], [1.0, 2.0]])
    kernel = squared_exponential_kernel(values, [0, 1], sparse, [0, 1, 1], [1.0, 0.5])
    expected = np.array([
        [np.exp(-0.5 * (0.5 / 0.5) ** 2), 0.0, 0.0],
        [0.0, np.exp(-0.5 * (0.25 + 4.0)), np.exp(-0.5 * (0.25 + 4.0))],
    ])
    np.testing.assert_allclose(kernel, expected, rtol=1e-14)
    kmm = instance_sparse_kernel(sparse, [0, 1, 1], [1.0, 0.5], DELTA)
    np.testing.assert_allclose(np.diag(kmm), DELTA**2)
    np.testing.assert_allclose(kmm, kmm.T)
    assert kmm[0, 1] == 0.0 and kmm[1, 2] > 0
    with pytest.raises(ValueError, match="theta must be a number or 2 numbers"):
        squared_exponential_kernel(values, [0, 1], sparse, [0, 1, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="theta must be finite and > 0"):
        squared_exponential_kernel(values, [0, 1], sparse, [0, 1, 1], [1.0, 0.0])


def test_kernel_rows_without_gradients_equal_the_se_kernel(triclinic_sige):
    pairs = make_pairs()
    sparse, classes = grid_for(pairs, [triclinic_sige])
    found = pairs.compute(triclinic_sige)
    rows = instance_kernel_rows(found, sparse, classes, THETA, DELTA)
    kernel = squared_exponential_kernel(found.values, found.classes, sparse, classes, THETA)
    np.testing.assert_allclose(rows["energy"], DELTA**2 * found.weights @ kernel, rtol=1e-12)
    with_forces = rows_of(pairs, triclinic_sige, sparse, classes, THETA, DELTA, gradients="positions")
    np.testing.assert_array_equal(with_forces["energies"], rows["energies"])
    assert "virial" not in with_forces


def test_sparse_point_helpers(triclinic_sige, cluster):
    pairs = make_pairs()
    values, classes = pairs.collect([triclinic_sige, cluster])
    assert values.shape == (len(classes), 1) and set(classes) == {0, 1, 2}
    sparse, sparse_classes = grid_points(values, classes, 5, R_CUT)
    assert sparse.shape == (15, 1) and np.bincount(sparse_classes).tolist() == [5, 5, 5]
    for c in range(3):
        grid = sparse[sparse_classes == c, 0]
        np.testing.assert_allclose([grid.min(), grid.max()], [values[classes == c].min(), R_CUT])
    chosen, chosen_classes = instance_points(values, classes, 4, method="fps", random_state=0)
    assert np.bincount(chosen_classes).tolist() == [4, 4, 4]
    again, _ = instance_points(values, classes, 4, method="fps", random_state=0)
    np.testing.assert_array_equal(chosen, again)
    for row, c in zip(chosen, chosen_classes):
        assert np.any(np.all(values[classes == c] == row, axis=1))
    with pytest.raises(ValueError, match="n_sparse must be an integer >= 2"):
        grid_points(values, classes, 1, R_CUT)
    with pytest.raises(ValueError, match="needs one feature per instance"):
        grid_points(np.hstack([values, values]), classes, 5, R_CUT)


def test_parameters_clone_and_repr():
    pairs = TwoBody(["Ge", 14], r_cut=4.5, cutoff_width=0.5)
    assert pairs.get_params() == {"species": ["Ge", 14], "r_cut": 4.5, "cutoff_width": 0.5}
    copy = clone(pairs)
    assert copy == pairs and copy is not pairs
    assert eval(repr(pairs), {"TwoBody": TwoBody}) == pairs
    assert pairs.set_params(r_cut=6.0) is pairs and pairs.r_cut == 6.0
    assert pairs != TwoBody(["Si", "Ge"], r_cut=4.5, cutoff_width=0.5)
    with pytest.raises(ValueError, match="cutoff_width=0.5 must not exceed r_cut=0.4"):
        pairs.set_params(r_cut=0.4)
    with pytest.raises(ValueError, match="TwoBody has no parameters"):
        pairs.set_params(n_max=3)
    assert pairs.n_features == 1 and pairs.n_classes == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(r_cut=0.0), "r_cut must be a positive number, got 0.0"),
        (dict(r_cut=-1.0), "r_cut must be a positive number, got -1.0"),
        (dict(r_cut=float("inf")), "r_cut must be a positive number, got inf"),
        (dict(cutoff_width=0.0), "cutoff_width must be a positive number"),
        (dict(cutoff_width=6.0), "cutoff_width=6.0 must not exceed r_cut"),
        (dict(species=[]), "species must be a non-empty list"),
        (dict(species="Si"), "species must be a non-empty list"),
        (dict(species=["Si", "Xx"]), "unknown species 'Xx'"),
        (dict(species=["Si", 14]), "species has duplicates"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TwoBody(**{**dict(species=["Si"], r_cut=5.0), **kwargs})


def test_parameters_of_the_wrong_type_are_rejected():
    with pytest.raises(TypeError, match="r_cut must be a positive number, got '5'"):
        TwoBody(["Si"], r_cut="5")
    with pytest.raises(TypeError, match="cutoff_width must be a positive number, got None"):
        TwoBody(["Si"], cutoff_width=None)


def test_bad_structures_and_arguments_are_rejected(rattled_si):
    pairs = TwoBody(["Si"], r_cut=4.0)
    carbon = rattled_si.copy()
    carbon.symbols[0] = "C"
    with pytest.raises(StructureError, match=r"structure 7 \(CSi7\): species \['C'\] not in .*TwoBody\(species"):
        pairs.compute(carbon, index=7)
    close = rattled_si.copy()
    close.positions[1] = close.positions[0] + [0.05, 0, 0]
    with pytest.raises(StructureError, match="atoms 0 and 1 are 0.05 A apart"):
        pairs.compute(close)
    with pytest.raises(ValueError, match="gradients must be True, False"):
        pairs.compute(rattled_si, gradients="forces")
    with pytest.raises(TypeError, match="expected ase.Atoms"):
        pairs.compute(rattled_si.positions)
    found = pairs.compute(rattled_si)
    with pytest.raises(ValueError, match=r"sparse must have shape \(M, 1\)"):
        instance_kernel_rows(found, np.zeros((3, 2)), [0, 0, 0], THETA, DELTA)
    with pytest.raises(ValueError, match="sparse_classes must be 3 integers"):
        instance_kernel_rows(found, np.zeros((3, 1)), [0, 0], THETA, DELTA)
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        instance_kernel_rows(found, np.zeros((3, 1)), [0, 0, 0], THETA, 0.0)


def test_threads_inputs_and_gradient_options(rattled_si, triclinic_sige):
    pairs = make_pairs()
    before = triclinic_sige.copy()
    serial = [pairs.compute(a, gradients=True) for a in (rattled_si, triclinic_sige)]
    assert before == triclinic_sige
    threaded = pairs.compute_many([rattled_si, triclinic_sige], gradients=True, n_jobs=2)
    for a, b in zip(serial, threaded):
        assert isinstance(b, Instances)
        np.testing.assert_array_equal(a.dvalues_strain, b.dvalues_strain)
    positions_only = pairs.compute(triclinic_sige, gradients="positions")
    np.testing.assert_array_equal(positions_only.dvalues, serial[1].dvalues)
    assert positions_only.dvalues_strain is None and not positions_only.has_strain
    plain = pairs.compute(triclinic_sige)
    assert plain.dvalues is None and not plain.has_gradients
    np.testing.assert_array_equal(plain.values, serial[1].values)


def test_a_pair_potential_is_learned_from_energies_and_forces():
    """The rows and K_MM of a 2-body term fit a Lennard-Jones potential (DTC solution)."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    def labelled(seed):
        atoms = bulk("Ar", "fcc", a=3.2, cubic=True).repeat(2)
        atoms.rattle(0.12, seed=seed)
        atoms.calc = LennardJones(sigma=2.0, epsilon=0.05, rc=4.0, ro=3.0, smooth=True)
        return atoms, atoms.get_potential_energy(), atoms.get_forces()

    pairs = TwoBody(["Ar"], r_cut=4.5, cutoff_width=0.5)  # f_c = 1 where LJ is non-zero
    training = [labelled(seed) for seed in range(4)]
    sparse, classes = grid_points(*pairs.collect([a for a, _, _ in training]), 40, 4.5)
    theta, delta = 0.15, 0.5
    blocks, targets = [], []
    for atoms, energy, forces in training:
        rows = rows_of(pairs, atoms, sparse, classes, theta, delta, gradients="positions")
        blocks += [rows["energy"][None] / 1e-3, rows["forces"].reshape(-1, len(sparse)) / 1e-3]
        targets += [[energy / 1e-3], forces.ravel() / 1e-3]
    design, target = np.concatenate(blocks), np.concatenate(targets)
    kmm = instance_sparse_kernel(sparse, classes, theta, delta)
    # min |design alpha - target|^2 + alpha^T K_MM alpha, as a stacked least-squares problem
    factor = np.linalg.cholesky(kmm + 1e-8 * delta**2 * np.eye(len(sparse)))
    stacked = np.concatenate([design, factor.T])
    alpha = np.linalg.lstsq(stacked, np.concatenate([target, np.zeros(len(sparse))]), rcond=None)[0]

    test, energy, forces = labelled(10)
    rows = rows_of(pairs, test, sparse, classes, theta, delta, gradients="positions")
    predicted = rows["forces"] @ alpha
    assert np.sqrt(((predicted - forces) ** 2).mean()) < 0.01 * np.sqrt((forces**2).mean())
    assert abs(rows["energy"] @ alpha - energy) < 0.002 * abs(energy)


def test_a_rare_species_pair_beside_a_common_one_is_left_out_of_the_term_with_a_warning():
    """Cu with a little Au: the Au-Au pairs are few beside the Cu-Cu ones, which set the term's
    one delta; they are left out of the term (at distances without data it extrapolated them
    wildly), SOAP alone describes them, and the fit says so."""
    import warnings

    from ase.calculators.emt import EMT

    from gapy import GAPRegressor, SOAP, Term
    from gapy.sampling import label_structures

    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        atoms.symbols[[0, 1]] = "Au" if k == 0 else ["Au", "Cu"]  # one Au-Au neighbour pair, in one cell
        frames.append(atoms)
    frames = label_structures(frames, EMT())

    def fit(data):
        return GAPRegressor(SOAP(["Cu", "Au"], r_cut=3.0, n_max=2, l_max=2), n_sparse=5,
                            two_body=Term(TwoBody(["Cu", "Au"], r_cut=3.0), n_sparse=5)).fit(data)

    with pytest.warns(RuntimeWarning, match=r"two_body: few pairs of some species in the training data \(Au-Au: "
                                            r"\d+ pairs at 2\.\d\d-2\.\d\d A\): they are left out of the term"):
        model = fit(frames)
    labels = model.term_descriptors_["two_body"].class_labels().tolist()
    kept = [labels[c] for c in np.unique(model.gp_.terms[0].sparse_classes)]
    assert kept == [[29, 29], [29, 79]]  # Cu-Cu and Cu-Au, not Au-Au
    result = model.predict_all([frames[0]], return_std=True)[0]  # (its Au-Au pair: SOAP's alone)
    assert all(np.isfinite(result[name]).all() for name in ("energy", "forces", "energy_std", "forces_std"))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*few pairs")
        fit(frames[1:])  # no Au-Au pair at all: no term for it, nothing to warn of
        alloy = frames[0].copy()
        alloy.symbols[::2] = "Au"  # as many Au-Au as Cu-Cu pairs
        fit(label_structures([alloy], EMT()))


def test_round_off_in_the_force_variances_of_a_perfect_crystal_is_not_warned_of():
    """The forces of a perfect crystal have zero variance by symmetry; with a 2-body delta of
    15 eV (the evidence's choice on EMT Cu) their round-off, -1.8e-12 eV^2/A^2, was measured
    against the SOAP delta alone and warned of as an ill-conditioned K_MM."""
    import warnings

    from ase.calculators.emt import EMT

    from gapy import GAPRegressor, SOAP, Term
    from gapy.sampling import label_structures

    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    model = GAPRegressor(SOAP(["Cu"], r_cut=4.6, n_max=3, l_max=2), n_sparse=20, delta=0.25, sigma_energy=0.001,
                         sigma_force=0.01, two_body=Term(TwoBody(["Cu"], r_cut=4.6), n_sparse=17, theta=0.48,
                                                         delta=15.0)).fit(label_structures(frames, EMT()))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*were negative")
        (result,) = model.predict_all([bulk("Cu", "fcc", a=3.6, cubic=True)], return_std=True)
    assert result["forces_std"].max() < 1e-5


def test_a_species_pair_without_sparse_points_adds_no_prior_variance():
    """A rare pair left out of the term (no sparse points of its class) is not in the model: its
    energy is not predicted by the term, so its prior must not count in the term's variances."""
    from gapy.gp.terms import InstanceSparseSet

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[0] = "Au"
    atoms.rattle(0.05, seed=1)
    descriptor = TwoBody(["Cu", "Au"], r_cut=4.0)
    pairs = descriptor.compute(atoms, gradients=True)
    keep = pairs.classes == pairs.classes.max()  # (Cu-Cu; the Cu-Au pairs have no sparse points)
    assert 0 < keep.sum() < len(pairs)
    term = InstanceSparseSet(np.array([[2.5], [3.0]]), np.full(2, pairs.classes.max()), np.array([0.5]), 1.0)
    quantities = ("energies", "energy", "forces", "virial")
    priors = term.prior_variances(pairs, quantities)
    only_modelled = InstanceSparseSet(term.sparse, term.sparse_classes, term.theta, 1.0).prior_variances(
        Instances(**{name: (value[keep] if isinstance(value, np.ndarray) and len(value) == len(pairs) else value)
                     for name, value in vars(pairs).items()}), quantities)
    for quantity in quantities:
        np.testing.assert_allclose(priors[quantity], only_modelled[quantity], rtol=1e-12, atol=1e-14)
    both = InstanceSparseSet(np.array([[2.5], [2.5]]), np.unique(pairs.classes), np.array([0.5]), 1.0)
    assert priors["energy"][0] < 0.99 * both.prior_variances(pairs)["energy"][0]  # (the Cu-Au pairs count there)
