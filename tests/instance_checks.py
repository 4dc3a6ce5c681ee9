"""Checks shared by the 2-body and 3-body tests (imported by test_twobody/test_threebody)."""

import numpy as np
from ase.build import make_supercell

from gapy.gp.design import VOIGT
from gapy.gp.term_variance import (
    _quadratic_forms,
    instance_energy_prior_variance,
    instance_force_prior_variance,
    instance_local_energy_prior_variance,
    instance_prior_variances,
    instance_prior_covariance,
    instance_virial_prior_variance,
)
from gapy.gp.terms import instance_kernel_rows
from gapy.testing import (
    assert_allclose_relative,
    finite_difference_positions,
    finite_difference_strain,
    random_rotation,
    rotated,
)


def full_tensor(voigt_vector):
    """Symmetric 3x3 tensor from its Voigt vector (xx, yy, zz, yz, xz, xy)."""
    out = np.zeros((3, 3))
    for value, (a, b) in zip(voigt_vector, VOIGT):
        out[a, b] = out[b, a] = value
    return out


def voigt(tensor):
    """Voigt vector of a symmetric 3x3 tensor."""
    return np.array([tensor[a, b] for a, b in VOIGT])


def rows_of(descriptor, atoms, sparse, sparse_classes, theta, delta, gradients=True):
    instances = descriptor.compute(atoms, gradients=gradients)
    return instance_kernel_rows(instances, sparse, sparse_classes, theta, delta)


def sparse_near_instances(descriptor, frames, per_class, seed=0, jitter=0.05):
    """Sparse points drawn from the instances of ``frames`` and moved a little."""
    rng = np.random.default_rng(seed)
    values, classes = descriptor.collect(frames)
    points, labels = [], []
    for c in np.unique(classes):
        rows = np.flatnonzero(classes == c)
        picked = rng.choice(rows, size=min(per_class, len(rows)), replace=False)
        points.append(values[picked] + jitter * rng.normal(size=(len(picked), values.shape[1])))
        labels.append(classes[picked])
    return np.concatenate(points), np.concatenate(labels)


def check_rows_against_finite_differences(descriptor, atoms, sparse, sparse_classes, theta, delta, what):
    rows = rows_of(descriptor, atoms, sparse, sparse_classes, theta, delta)

    def energy(moved):
        return rows_of(descriptor, moved, sparse, sparse_classes, theta, delta, False)["energy"]

    numeric = finite_difference_positions(energy, atoms, step=1e-5)  # (j, a, M)
    assert_allclose_relative(rows["forces"], -numeric, 1e-6, f"{what} forces")
    strain = finite_difference_strain(energy, atoms, step=1e-5)  # (a, b, M)
    expected = -np.array([(strain[a, b] + strain[b, a]) / 2
                          for a, b in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))])
    assert_allclose_relative(rows["virial"], expected, 1e-6, f"{what} virial")
    np.testing.assert_allclose(rows["energies"].sum(axis=0), rows["energy"], rtol=1e-13, atol=1e-300)
    # forces on a free structure sum to zero (translation invariance)
    assert np.abs(rows["forces"].sum(axis=0)).max() < 1e-10 * np.abs(rows["forces"]).max()
    return rows


def check_invariances(descriptor, atoms, sparse, sparse_classes, theta, delta):
    """Rotation with translation, permutation and wrapping into the cell."""
    reference = rows_of(descriptor, atoms, sparse, sparse_classes, theta, delta)
    scale = np.abs(reference["forces"]).max()
    rotation = random_rotation(seed=5)
    moved = rotated(atoms, rotation)
    moved.positions += [0.3, -1.7, 2.2]
    rows = rows_of(descriptor, moved, sparse, sparse_classes, theta, delta)
    np.testing.assert_allclose(rows["energies"], reference["energies"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(rows["forces"], np.einsum("ab,jbm->jam", rotation, reference["forces"]),
                               atol=1e-11 * scale)
    for m in range(len(sparse)):
        tensor = rotation @ full_tensor(reference["virial"][:, m]) @ rotation.T
        np.testing.assert_allclose(rows["virial"][:, m], voigt(tensor), atol=1e-10 * scale)

    permutation = np.random.default_rng(0).permutation(len(atoms))
    rows = rows_of(descriptor, atoms[permutation], sparse, sparse_classes, theta, delta)
    np.testing.assert_allclose(rows["energies"], reference["energies"][permutation], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(rows["forces"], reference["forces"][permutation], atol=1e-11 * scale)
    np.testing.assert_allclose(rows["virial"], reference["virial"], atol=1e-11 * scale)

    if atoms.pbc.all():
        shifted = atoms.copy()
        shifted.positions += np.array([1, -2, 1]) @ shifted.cell.array
        shifted.positions[3] += shifted.cell.array[0]
        rows = rows_of(descriptor, shifted, sparse, sparse_classes, theta, delta)
        for key in ("energies", "forces", "virial"):
            np.testing.assert_allclose(rows[key], reference[key], atol=1e-11 * np.abs(reference[key]).max())


def check_supercell(descriptor, primitive, sparse, sparse_classes, theta, delta):
    """A 2x2x2 supercell: 8 times the energy and virial rows, tiled local energies and forces."""
    reference = rows_of(descriptor, primitive, sparse, sparse_classes, theta, delta)
    supercell = make_supercell(primitive, 2 * np.eye(3))
    rows = rows_of(descriptor, supercell, sparse, sparse_classes, theta, delta)
    assert_allclose_relative(rows["energy"], 8 * reference["energy"], 1e-12, "supercell energy")
    assert_allclose_relative(rows["virial"], 8 * reference["virial"], 1e-11, "supercell virial")
    assert_allclose_relative(rows["energies"], np.tile(reference["energies"], (8, 1)), 1e-12, "energies")
    assert_allclose_relative(rows["forces"], np.tile(reference["forces"], (8, 1, 1)), 1e-10, "forces")


def prior_covariance(first, second, theta, delta):
    """delta^2 sum_(t, t') w_t w_t' k(x_t, x_t'): covariance of two total energies, by brute force."""
    theta = np.broadcast_to(np.asarray(theta, dtype=float), (first.values.shape[1],))
    diff = (first.values[:, None, :] - second.values[None, :, :]) / theta
    kernel = np.exp(-0.5 * (diff**2).sum(axis=2)) * (first.classes[:, None] == second.classes[None, :])
    return delta**2 * first.weights @ kernel @ second.weights


def mixed_difference(moved, theta, delta, h):
    """Central mixed second difference of the energy covariance, from the +h and -h structures."""
    plus, minus = moved
    return (prior_covariance(plus, plus, theta, delta) - 2 * prior_covariance(plus, minus, theta, delta)
            + prior_covariance(minus, minus, theta, delta)) / (4 * h * h)


def share_matrix(instances):
    """S[i, t]: the share of instance t's energy that atom i receives."""
    out = np.zeros((instances.n_atoms, len(instances)))
    for s, share in enumerate(instances.energy_shares):
        np.add.at(out, (instances.atoms[:, s], np.arange(len(instances))), share)
    return out


def check_prior_variances(descriptor, atoms, theta, delta, components):
    """Energy and local-energy priors by brute force; force and virial priors by finite
    differences of the covariance of total energies (mixed second derivatives)."""
    instances = descriptor.compute(atoms, gradients=True)
    energy = instance_energy_prior_variance(instances, theta, delta)
    np.testing.assert_allclose(energy, prior_covariance(instances, instances, theta, delta), rtol=1e-11)
    theta_row = np.broadcast_to(np.asarray(theta, dtype=float), (instances.values.shape[1],))
    diff = (instances.values[:, None, :] - instances.values[None, :, :]) / theta_row
    kernel = np.exp(-0.5 * (diff**2).sum(axis=2)) * (instances.classes[:, None] == instances.classes[None, :])
    weighted = share_matrix(instances) * instances.weights
    local = delta**2 * np.einsum("it,ts,is->i", weighted, kernel, weighted)
    assert local.min() > 0
    np.testing.assert_allclose(instance_local_energy_prior_variance(instances, theta, delta), local, rtol=1e-11)

    h = 1e-3
    forces = instance_force_prior_variance(instances, theta, delta).reshape(-1, 3)
    for j, c in components:
        moved = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[j, c] += sign * h
            moved.append(descriptor.compute(displaced))
        mixed = mixed_difference(moved, theta, delta, h)
        assert mixed > 1e-3
        np.testing.assert_allclose(forces[j, c], mixed, rtol=1e-4, err_msg=f"force prior ({j}, {c})")

    virial = instance_virial_prior_variance(instances, theta, delta)
    for k, (a, b) in enumerate(((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))):
        moved = []
        for sign in (1, -1):
            deformation = np.eye(3)
            deformation[a, b] += sign * h / 2
            deformation[b, a] += sign * h / 2  # symmetric strain s: d/ds is the symmetrised virial
            displaced = atoms.copy()
            displaced.positions = atoms.positions @ deformation.T
            displaced.cell = atoms.cell.array @ deformation.T
            moved.append(descriptor.compute(displaced))
        mixed = mixed_difference(moved, theta, delta, h)
        np.testing.assert_allclose(virial[k], mixed, rtol=1e-4, err_msg=f"virial prior {(a, b)}")
    # the per-atom numba passes against the blocked double sum of every atom's instances
    for i in range(instances.n_atoms):
        touching = np.flatnonzero((instances.atoms == i).any(axis=1))
        slots = [(t, s) for t in touching for s in range(instances.atoms.shape[1]) if instances.atoms[t, s] == i]
        t, s = np.array(slots).T
        a = -instances.dweights[t, s]
        b = -instances.weights[t][:, None, None] * instances.dvalues[t, s]
        expected = _quadratic_forms(instances.values[t], instances.classes[t], a, b, theta, delta)
        np.testing.assert_allclose(forces[i], expected, rtol=1e-10, atol=1e-14, err_msg=f"force prior of atom {i}")
    together = instance_prior_variances(instances, theta, delta)
    np.testing.assert_allclose(together["energy"], energy, rtol=1e-12)
    np.testing.assert_allclose(together["energies"], local, rtol=1e-11)
    np.testing.assert_allclose(together["forces"], forces.ravel(), rtol=1e-12)
    np.testing.assert_allclose(together["virial"], virial, rtol=1e-12)
    return forces, virial


def strained(atoms, component, size):
    """``atoms`` under the symmetric strain ``size`` of one Voigt component (off-diagonal: half each side)."""
    a, b = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))[component]
    deformation = np.eye(3)
    deformation[a, b] += size / 2
    deformation[b, a] += size / 2
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ deformation.T, scale_atoms=True)
    return out


def check_covariances(descriptor, atoms, other, theta, delta, virial_pairs, force_pairs):
    """The force and virial covariances of a term between two structures: symmetric, their
    diagonal blocks hold the prior variances, and each entry of ``virial_pairs`` (Voigt
    components of ``atoms`` and ``other``) and of ``force_pairs`` ((atom, axis) of each)
    is the mixed second difference of the energies' covariance under both moves."""
    first, second = descriptor.compute(atoms, gradients=True), descriptor.compute(other, gradients=True)
    h = 1e-3
    for quantity, pairs, variance in (("virial", virial_pairs, instance_virial_prior_variance),
                                      ("forces", force_pairs, instance_force_prior_variance)):
        covariance = instance_prior_covariance([first, second], quantity, theta, delta)
        size = 6 if quantity == "virial" else 3 * len(atoms)
        np.testing.assert_allclose(covariance, covariance.T, rtol=1e-12, atol=1e-14 * np.abs(covariance).max())
        np.testing.assert_allclose(np.diag(covariance[:size, :size]), variance(first, theta, delta), rtol=1e-10)
        for k, l in pairs:
            moved = [[descriptor.compute(_moved(structure, c, sign * h)) for sign in (1, -1)]
                     for structure, c in ((atoms, k), (other, l))]
            mixed = sum(sign_a * sign_b * prior_covariance(moved[0][i], moved[1][j], theta, delta)
                        for i, sign_a in enumerate((1, -1)) for j, sign_b in enumerate((1, -1))) / (4 * h * h)
            assert abs(mixed) > 1e-4
            index = (k if quantity == "virial" else 3 * k[0] + k[1],
                     size + (l if quantity == "virial" else 3 * l[0] + l[1]))
            np.testing.assert_allclose(covariance[index], mixed, rtol=1e-4, err_msg=f"{quantity} covariance {(k, l)}")


def _moved(atoms, change, size):
    """``atoms`` strained in a Voigt component (int) or with one atom moved along an axis ((atom, axis))."""
    if isinstance(change, tuple):
        out = atoms.copy()
        out.positions[change] += size
        return out
    return strained(atoms, change, size)
