"""Prior variances ``k**`` of a squared-exponential instance term (2-body, 3-body).

Every prediction of a term is a linear functional of its latent function ``g`` (see
``gapy.gp.terms``)::

    L[g] = sum_t a_t g(x_t) + b_t . grad g(x_t)

- total energy: ``a_t = w_t``, ``b_t = 0``;
- local energy of atom ``i``: ``a_t = share(t, i) w_t``, ``b_t = 0``;
- force component ``(j, c)``: ``a_t = -d w_t / d r_jc``, ``b_t = -w_t d x_t / d r_jc``;
- virial component ``(a, b)``: ``a_t = -d w_t / d eps_ab``, ``b_t = -w_t d x_t / d eps_ab``
  (symmetrised);

so its prior variance is ``delta^2 sum_(t, t') [a a' k + a b'. d2k + a' b . d1k + b^T d1d2k b']``,
a double sum over the instances of the same class. The double sums are exact; they cost
``O(n^2)`` kernel evaluations in the number of instances involved (all of a structure's
instances for the energy and the virial, those touching one atom for its force).
"""

import numpy as np

from ..kernels import check_theta
from ._terms_numba import se_quadratic_forms
from .design import VOIGT
from .terms import check_delta


def _sorted_forms(values, classes, a, b, theta, delta) -> np.ndarray:
    """``delta^2`` times the quadratic forms of ``se_quadratic_forms`` (any class order)."""
    inv_theta2 = 1.0 / check_theta(theta, values.shape[1]) ** 2
    order = np.argsort(classes, kind="stable")
    classes = classes[order]
    n_classes = int(classes.max(initial=-1)) + 1
    offsets = np.searchsorted(classes, np.arange(n_classes + 1))
    with_b = b is not None
    out = np.zeros(a.shape[1])
    se_quadratic_forms(
        np.ascontiguousarray(values[order], dtype=float), offsets, np.ascontiguousarray(a[order]),
        np.ascontiguousarray(b[order]) if with_b else np.zeros((0, 1, 1)), inv_theta2, with_b, out,
    )
    return check_delta(delta) ** 2 * out


def instance_energy_prior_variance(instances, theta, delta) -> float:
    """Prior variance of the total energy of a term, in eV^2.

    ``delta^2 sum_(t, t') w_t w_t' k(x_t, x_t')`` over pairs of instances of one class.
    """
    return float(_sorted_forms(instances.values, instances.classes, instances.weights[:, None], None, theta, delta)[0])


def instance_local_energy_prior_variance(instances, theta, delta) -> np.ndarray:
    """Prior variance of each atom's local energy of a term, ndarray of shape (n_atoms,).

    ``delta^2 sum_(t, t') s_t s_t' w_t w_t' k(x_t, x_t')`` over the instances that give a
    share ``s`` of their energy to the atom (half of each pair, all of each triplet to
    its centre), in eV^2.
    """
    n_atoms = int(instances.n_atoms)
    # as for the forces, an atom in two slots of one instance gives two entries (bilinear sum)
    instance, atom, share = _slots_by_atom(instances, np.asarray(instances.energy_shares, dtype=float))
    keep = share != 0.0
    instance, atom, share = instance[keep], atom[keep], share[keep]
    out = np.zeros(n_atoms)
    bounds = np.searchsorted(atom, np.arange(n_atoms + 1))
    for i in range(n_atoms):
        rows = slice(bounds[i], bounds[i + 1])
        t = instance[rows]
        if len(t):
            a = (share[rows] * instances.weights[t])[:, None]
            out[i] = _sorted_forms(instances.values[t], instances.classes[t], a, None, theta, delta)[0]
    return out


def instance_force_prior_variance(instances, theta, delta) -> np.ndarray:
    """Prior variance of every force component of a term, ndarray of shape (n_atoms * 3,).

    Needs position gradients. Ordered as ``forces.ravel()`` (atom-major), in (eV/A)^2.
    """
    if instances.dvalues is None:
        raise ValueError("force prior variances need instances computed with gradients='positions'")
    n_atoms, n_slots = int(instances.n_atoms), instances.atoms.shape[1]
    # an atom filling two slots of one instance (its own periodic image) gives two entries
    # with the same x: the double sum is bilinear, so that equals one summed entry
    instance, atom, slot = _slots_by_atom(instances, np.arange(n_slots))
    a = -instances.dweights[instance, slot]
    b = -instances.weights[instance][:, None, None] * instances.dvalues[instance, slot]
    out = np.zeros((n_atoms, 3))
    bounds = np.searchsorted(atom, np.arange(n_atoms + 1))
    for j in range(n_atoms):
        rows = slice(bounds[j], bounds[j + 1])
        t = instance[rows]
        if len(t):
            out[j] = _sorted_forms(instances.values[t], instances.classes[t], a[rows], b[rows], theta, delta)
    return out.ravel()


def instance_virial_prior_variance(instances, theta, delta) -> np.ndarray:
    """Prior variance of each Voigt virial component (xx, yy, zz, yz, xz, xy) of a term.

    Needs strain gradients. ndarray of shape (6,), in eV^2.
    """
    if instances.dvalues_strain is None:
        raise ValueError("virial prior variances need instances computed with gradients=True")
    a = np.stack([-(instances.dweights_strain[:, p, q] + instances.dweights_strain[:, q, p]) / 2
                  for p, q in VOIGT], axis=1)
    dvalues = np.stack([(instances.dvalues_strain[:, p, q] + instances.dvalues_strain[:, q, p]) / 2
                        for p, q in VOIGT], axis=1)
    b = -instances.weights[:, None, None] * dvalues
    return _sorted_forms(instances.values, instances.classes, a, b, theta, delta)


def _slots_by_atom(instances, slot_values):
    """(instance, atom, slot_values[slot]) for every filled slot, sorted by atom."""
    n, n_slots = instances.atoms.shape
    instance = np.repeat(np.arange(n), n_slots)
    atom = instances.atoms.ravel()
    value = np.tile(slot_values, n)
    order = np.argsort(atom, kind="stable")
    return instance[order], atom[order], value[order]
