"""SOAP descriptor: gradients, invariances, smoothness, consistency and bad input."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell

from gapy import SOAP, StructureError
from gapy.testing import (
    assert_allclose_relative,
    finite_difference_positions,
    finite_difference_strain,
    random_rotation,
    rotated,
)

SETTINGS = dict(r_cut=4.5, n_max=5, l_max=5, atom_sigma=0.5, cutoff_width=1.0)


def make_soap(atoms, **kwargs):
    species = sorted(set(atoms.get_chemical_symbols()) | {"Si", "Ge"})
    return SOAP(species=species, **{**SETTINGS, **kwargs})


SCALED = dict(scaling_radius=2.5, scaling_exponent=5.0)  # radial scaling on


@pytest.mark.parametrize("normalize, scaling", [(True, {}), (False, {}), (True, SCALED)])
@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
def test_position_gradients_match_finite_differences(system, normalize, scaling, request):
    atoms = request.getfixturevalue(system)
    soap = make_soap(atoms, normalize=normalize, **scaling)
    _, grad = soap.compute(atoms, gradients="positions")
    analytic = grad.dense(len(atoms))  # (i, j, a, f)
    numeric = finite_difference_positions(soap.compute, atoms, step=1e-5)  # (j, a, i, f)
    assert_allclose_relative(analytic, numeric.transpose(2, 0, 1, 3), 1e-6, system)
    assert grad.dstrain is None


@pytest.mark.parametrize("normalize, scaling", [(True, {}), (False, {}), (True, SCALED)])
@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
def test_strain_gradients_match_finite_differences(system, normalize, scaling, request):
    atoms = request.getfixturevalue(system)
    soap = make_soap(atoms, normalize=normalize, **scaling)
    _, grad = soap.compute(atoms, gradients=True)
    numeric = finite_difference_strain(soap.compute, atoms, step=1e-5)  # (a, b, i, f)
    assert_allclose_relative(grad.dstrain, numeric.transpose(2, 0, 1, 3), 1e-6, system)


def test_gradient_rows_are_unique_and_sorted(triclinic_sige):
    soap = make_soap(triclinic_sige)
    _, grad = soap.compute(triclinic_sige, gradients=True)
    keys = grad.centers * len(triclinic_sige) + grad.neighbors
    assert np.all(np.diff(keys) > 0)
    assert set(zip(grad.centers, grad.neighbors)) >= {(i, i) for i in range(len(triclinic_sige))}


def test_position_only_gradients_equal_full_gradients(rattled_si):
    soap = make_soap(rattled_si)
    values_a, grad_a = soap.compute(rattled_si, gradients="positions")
    values_b, grad_b = soap.compute(rattled_si, gradients=("positions", "strain"))
    np.testing.assert_array_equal(values_a, values_b)
    np.testing.assert_array_equal(grad_a.dpos, grad_b.dpos)
    np.testing.assert_array_equal(values_a, soap.compute(rattled_si))


@pytest.mark.parametrize("system", ["rattled_si", "triclinic_sige", "cluster"])
@pytest.mark.parametrize("block_size", [1, 5, 1000])
@pytest.mark.parametrize("strain", [True, False])
def test_gradient_blocks_reassemble_the_whole_gradients(system, block_size, strain, request):
    """Halo centres of a block compute only the pair gradients of the block's atoms."""
    atoms = request.getfixturevalue(system)
    if system == "rattled_si":
        atoms = atoms * (2, 1, 1)
    soap = make_soap(atoms)
    _, whole = soap.compute(atoms, gradients=True)
    dense = np.zeros_like(whole.dense(len(atoms)))
    dstrain = np.full_like(whole.dstrain, np.nan)
    seen = []
    for block in soap.gradient_blocks(atoms, strain=strain, block_size=block_size):
        assert len(block.targets) <= block_size
        keys = list(zip(block.centers, block.targets[block.neighbors]))
        assert len(set(keys)) == len(keys)  # each (centre, neighbour) row once
        dense[block.centers, block.targets[block.neighbors]] += block.dpos
        if strain:
            assert block.dstrain.shape[0] == len(block.targets)
            dstrain[block.targets] = block.dstrain
        seen.extend(block.targets)
    assert sorted(seen) == list(range(len(atoms)))
    np.testing.assert_allclose(dense, whole.dense(len(atoms)), atol=1e-12)
    if strain:
        np.testing.assert_allclose(dstrain, whole.dstrain, atol=1e-12)


def test_forces_on_descriptor_sum_to_zero(triclinic_sige):
    """Translation invariance: the gradients of each centre sum to zero over atoms."""
    soap = make_soap(triclinic_sige)
    _, grad = soap.compute(triclinic_sige, gradients="positions")
    total = grad.dense(len(triclinic_sige)).sum(axis=1)
    assert np.abs(total).max() < 1e-12 * np.abs(grad.dpos).max() * len(triclinic_sige)


@pytest.mark.parametrize("system", ["triclinic_sige", "cluster"])
def test_rotation_and_translation_invariance(system, request):
    atoms = request.getfixturevalue(system)
    soap = make_soap(atoms)
    reference, grad = soap.compute(atoms, gradients=True)
    rotation = random_rotation(seed=5)
    moved = rotated(atoms, rotation)
    moved.positions += [0.3, -1.7, 2.2]
    values, grad_moved = soap.compute(moved, gradients=True)
    np.testing.assert_allclose(values, reference, atol=1e-12)
    # position gradients rotate as vectors, strain gradients as rank-2 tensors
    np.testing.assert_allclose(
        grad_moved.dpos, np.einsum("ab,kbf->kaf", rotation, grad.dpos), atol=1e-11
    )
    np.testing.assert_allclose(
        grad_moved.dstrain,
        np.einsum("ac,bd,icdf->iabf", rotation, rotation, grad.dstrain),
        atol=1e-10,
    )


def test_permutation_invariance(triclinic_sige):
    soap = make_soap(triclinic_sige)
    permutation = np.random.default_rng(0).permutation(len(triclinic_sige))
    permuted = triclinic_sige[permutation]
    values, grad = soap.compute(triclinic_sige, gradients=True)
    values_p, grad_p = soap.compute(permuted, gradients=True)
    np.testing.assert_allclose(values_p, values[permutation], atol=1e-13)
    dense = grad.dense(len(permuted))[np.ix_(permutation, permutation)]
    np.testing.assert_allclose(grad_p.dense(len(permuted)), dense, atol=1e-12)
    np.testing.assert_allclose(grad_p.dstrain, grad.dstrain[permutation], atol=1e-12)


def test_wrapping_atoms_into_the_cell_changes_nothing(triclinic_sige):
    soap = make_soap(triclinic_sige)
    shifted = triclinic_sige.copy()
    shifted.positions += np.array([1, -2, 1]) @ shifted.cell.array
    shifted.positions[3] += shifted.cell.array[0]
    np.testing.assert_allclose(soap.compute(shifted), soap.compute(triclinic_sige), atol=1e-12)


def test_supercell_gives_the_primitive_cell_descriptors():
    primitive = bulk("Si", "diamond", a=5.43)  # 2 atoms, cell much smaller than r_cut
    primitive.positions[1] += [0.05, -0.02, 0.03]
    soap = SOAP(["Si"], **SETTINGS)
    values, grad = soap.compute(primitive, gradients=True)
    supercell = make_supercell(primitive, np.array([[2, 0, 0], [0, 3, 0], [1, 0, 2]]))
    values_super, grad_super = soap.compute(supercell, gradients=True)
    n_copies = len(supercell) // len(primitive)
    np.testing.assert_allclose(values_super, np.tile(values, (n_copies, 1)), atol=1e-12)
    np.testing.assert_allclose(grad_super.dstrain, np.tile(grad.dstrain, (n_copies, 1, 1, 1)), atol=1e-10)


def test_descriptor_goes_smoothly_to_zero_at_the_cutoff():
    """A neighbour crossing r_cut changes the (unnormalised) features and gradients smoothly."""
    soap = SOAP(["Si"], **{**SETTINGS, "normalize": False})
    alone = soap.compute(Atoms("Si", positions=[[0, 0, 0]]))

    def dimer(distance):
        return Atoms("Si2", positions=[[0, 0, 0], [distance, 0, 0]])

    r_cut = SETTINGS["r_cut"]
    for gap in (1e-2, 1e-3, 1e-4):
        values, grad = soap.compute(dimer(r_cut - gap), gradients="positions")
        change = np.abs(values[0] - alone[0]).max()
        assert change < 50 * gap**2 * np.abs(alone).max()  # cosine cutoff: O(gap^2)
        assert np.abs(grad.dpos).max() < 50 * gap * np.abs(alone).max()
    values, grad = soap.compute(dimer(r_cut + 1e-3), gradients="positions")
    np.testing.assert_array_equal(values[0], alone[0])
    assert np.all(grad.dpos == 0.0)
    # and the neighbour matters inside the cutoff
    assert np.abs(soap.compute(dimer(r_cut - 0.5))[0] - alone[0]).max() > 1e-3


def test_threads_and_batches_give_identical_results(rattled_si, triclinic_sige):
    frames = [rattled_si, triclinic_sige]
    soap = SOAP(["Si", "Ge"], **SETTINGS)
    serial = [soap.compute(atoms, gradients=True) for atoms in frames]
    threaded = soap.compute(triclinic_sige, gradients=True, n_jobs=2)
    np.testing.assert_array_equal(threaded[0], serial[1][0])
    np.testing.assert_array_equal(threaded[1].dpos, serial[1][1].dpos)
    for many in (soap.compute_many(frames, gradients=True, n_jobs=1),
                 soap.compute_many(frames, gradients=True, n_jobs=2, progress=True)):
        for (values, grad), (values_ref, grad_ref) in zip(many, serial):
            np.testing.assert_array_equal(values, values_ref)
            np.testing.assert_array_equal(grad.dstrain, grad_ref.dstrain)


def test_inputs_are_not_modified(triclinic_sige):
    before = triclinic_sige.copy()
    SOAP(["Si", "Ge"], **SETTINGS).compute(triclinic_sige, gradients=True)
    assert before == triclinic_sige


def test_feature_count_and_labels():
    soap = SOAP(["Ge", 14], r_cut=4.0, n_max=3, l_max=2)
    k = 2 * 3
    assert soap.n_features == k * (k + 1) // 2 * 3
    labels = soap.feature_labels()
    assert labels.shape == (soap.n_features, 5)
    assert labels[0].tolist() == [14, 0, 14, 0, 0]
    assert labels[-1].tolist() == [32, 2, 32, 2, 2]
    assert len({tuple(row) for row in labels}) == soap.n_features
    assert eval(repr(soap), {"SOAP": SOAP}) == soap


def test_center_weight_changes_only_through_the_center():
    atoms = Atoms("Si", positions=[[0, 0, 0]])
    plain = SOAP(["Si"], **{**SETTINGS, "normalize": False})
    double = SOAP(["Si"], **{**SETTINGS, "normalize": False, "center_weight": 2.0})
    np.testing.assert_allclose(double.compute(atoms), 4.0 * plain.compute(atoms), rtol=1e-13)
    none = SOAP(["Si"], **{**SETTINGS, "normalize": False, "center_weight": 0.0})
    assert np.all(none.compute(atoms) == 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(r_cut=0.0), "r_cut must be a positive number, got 0.0"),
        (dict(r_cut=float("nan")), "r_cut must be a positive number, got nan"),
        (dict(n_max=0), "n_max must be an integer between 1 and 20, got 0"),
        (dict(n_max=2.5), "n_max must be an integer between 1 and 20, got 2.5"),
        (dict(l_max=-1), "l_max must be an integer between 0 and 20"),
        (dict(atom_sigma=-0.1), "atom_sigma must be a positive number"),
        (dict(cutoff_width=0.0), "cutoff_width must be a positive number"),
        (dict(cutoff_width=6.0), "cutoff_width=6.0 must not exceed r_cut"),
        (dict(species=[]), "species must be a non-empty list"),
        (dict(species="Si"), "species must be a non-empty list"),
        (dict(species=["Si", "Xx"]), "unknown species 'Xx'"),
        (dict(species=["Si", 14]), "species has duplicates"),
        (dict(atom_sigma=1e-4), "atom_sigma=0.0001 A is below 0.05 A"),
        (dict(scaling_radius=0.0), "scaling_radius must be a positive number"),
        (dict(scaling_radius=3.0, scaling_exponent=-1.0), "scaling_exponent must be a positive number"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs, match):
    arguments = dict(species=["Si"], r_cut=5.0, n_max=4, l_max=4)
    with pytest.raises(ValueError, match=match):
        SOAP(**{**arguments, **kwargs})


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match=r"r_cut must be a positive number, got '5' \(str\)"):
        SOAP(["Si"], r_cut="5")
    with pytest.raises(TypeError, match="n_max must be an integer between 1 and 20, got None"):
        SOAP(["Si"], n_max=None)


def test_a_cutoff_that_cannot_fit_in_memory_is_refused_before_any_work(rattled_si):
    with pytest.raises(StructureError, match=r"structure 3 \(Si8\): r_cut=1000.0 A gives about .* neighbour pairs"):
        SOAP(["Si"], r_cut=1000.0, n_max=2, l_max=0).compute(rattled_si, index=3)


def test_bad_structures_are_rejected_with_clear_messages(rattled_si):
    soap = SOAP(["Si"], r_cut=4.0, n_max=3, l_max=3)
    with pytest.raises(StructureError, match=r"structure 7 \(CSi7\): species \['C'\] not in"):
        carbon = rattled_si.copy()
        carbon.symbols[0] = "C"
        soap.compute(carbon, index=7)
    nan = rattled_si.copy()
    nan.positions[2, 1] = np.nan
    with pytest.raises(StructureError, match=r"'positions' is not finite for atoms \[2\]"):
        soap.compute(nan)
    close = rattled_si.copy()
    close.positions[1] = close.positions[0] + [0.05, 0, 0]
    with pytest.raises(StructureError, match="atoms 0 and 1 are 0.05 A apart"):
        soap.compute(close)
    flat = rattled_si.copy()
    flat.cell[2] = flat.cell[0] + flat.cell[1]
    with pytest.raises(StructureError, match="zero volume"):
        soap.compute(flat)
    with pytest.raises(ValueError, match="gradients must be True, False"):
        soap.compute(rattled_si, gradients="forces")
    with pytest.raises(TypeError, match="expected ase.Atoms"):
        soap.compute(rattled_si.positions)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("system", ["triclinic_sige", "cluster"])
def test_reverse_mode_contraction_equals_explicit_gradients(system, normalize, request):
    atoms = request.getfixturevalue(system)
    soap = make_soap(atoms, normalize=normalize)
    values, grad = soap.compute(atoms, gradients=True)
    weights = np.random.default_rng(1).normal(size=values.shape)
    forces, virial = soap.contract_gradients(atoms, weights)
    expected_forces = -np.einsum("kaf,kf->ka", grad.dpos, weights[grad.centers])
    expected_forces = np.array([expected_forces[grad.neighbors == j].sum(0) for j in range(len(atoms))])
    assert_allclose_relative(forces, expected_forces, 1e-10, "forces")
    assert_allclose_relative(virial, -np.einsum("iabf,if->ab", grad.dstrain, weights), 1e-10, "virial")
    with pytest.raises(ValueError, match="weights must have shape"):
        soap.contract_gradients(atoms, weights[:, :-1])
