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

Evaluation: with ``x~ = x / theta^2`` (features centred per class), ``sigma = a - x~ . b``
and ``Theta = diag(1 / theta^2)`` the summand is ``k L_t . R_t'`` with::

    L = [sigma, sigma x~, b, b (x) x~, b],   R = [sigma', b', sigma' x~', x~' (x) b', Theta b']

(``1 + 3F + F^2`` terms), so a prior is ``sum_t L_t . (K R)_t``: the kernel matrix in
blocks of rows (numpy's vectorised exp) and one matrix product per block.
"""

from typing import TYPE_CHECKING, Dict, Sequence

import numpy as np

from ..kernels import check_theta
from ._terms_numba import grouped_gradient_quadratic_forms, scaled_squared_distances
from .design import VOIGT
from .terms import Theta, check_delta

if TYPE_CHECKING:  # annotations only: gp works on arrays and never imports ASE
    from ..descriptors.instances import Instances


#: instances per block of the kernel matrix (blocks of 1024 x 1024: 8 MB)
_BLOCK = 1024


def _quadratic_forms(values, classes, a, b, theta, delta) -> np.ndarray:
    """``delta^2 sum_(t, t') k L_t . R_t'`` for each observable (column of ``a``): the
    diagonal of :func:`_covariance`."""
    return np.diag(_covariance(values, classes, a, b, theta, delta))


def _covariance(values, classes, a, b, theta, delta) -> np.ndarray:
    """``delta^2 sum_(t, t') k L_t[o] . R_t'[o']``: the prior covariance of the observables.

    Parameters
    ----------
    values : ndarray of shape (n, F)
    classes : ndarray of int of shape (n,)
    a : ndarray of shape (n, n_obs)
    b : ndarray of shape (n, n_obs, F) or None (no gradient part)

    Returns
    -------
    ndarray of shape (n_obs, n_obs)
    """
    n_features = values.shape[1]
    inv_theta2 = 1.0 / check_theta(theta, n_features) ** 2
    out = np.zeros((a.shape[1], a.shape[1]))
    for c in np.unique(classes):
        rows = np.flatnonzero(classes == c)
        x = values[rows] - values[rows].mean(axis=0)
        if b is None:
            left = right = a[rows][:, :, None]
        else:
            left, right = _factors(x * inv_theta2, a[rows], b[rows], inv_theta2)
        right = right.reshape(len(rows), -1)
        x = np.ascontiguousarray(x)
        # the summand is symmetric in (t, o) <-> (t', o'): a block above the diagonal
        # counts with its transpose
        bounds = list(range(0, len(rows), _BLOCK)) + [len(rows)]
        for i in range(len(bounds) - 1):
            first = slice(bounds[i], bounds[i + 1])
            for j in range(i, len(bounds) - 1):
                second = slice(bounds[j], bounds[j + 1])
                kernel = np.empty((first.stop - first.start, second.stop - second.start))
                scaled_squared_distances(x[first], np.ascontiguousarray(x[second].T), -0.5 * inv_theta2, kernel)
                np.exp(kernel, out=kernel)
                products = (kernel @ right[second]).reshape(left[first].shape)
                block = np.einsum("toq,tpq->op", left[first], products)
                out += block if i == j else block + block.T
    return check_delta(delta) ** 2 * out


def _per_atom_forms(instances, instance, atom, a, b, theta, delta) -> np.ndarray:
    """``_quadratic_forms`` of each atom's entries, shape (n_atoms, n_obs), in one numba pass.

    Entry ``e`` is instance ``instance[e]`` seen from atom ``atom[e]`` (sorted by atom),
    with coefficients ``a[e]`` (n_obs,) and ``b[e]`` (n_obs, F).
    """
    out = np.zeros((int(instances.n_atoms), a.shape[1]))
    bounds = np.searchsorted(atom, np.arange(len(out) + 1))
    factors = 1.0 / check_theta(theta, instances.values.shape[1]) ** 2
    grouped_gradient_quadratic_forms(np.ascontiguousarray(instances.values[instance], dtype=float),
                                     np.ascontiguousarray(instances.classes[instance]), np.ascontiguousarray(a),
                                     np.ascontiguousarray(b), bounds, factors, out)
    return check_delta(delta) ** 2 * out


def _factors(scaled, a, b, inv_theta2):
    """``L`` and ``R`` of the module docstring, each of shape (n, n_obs, 1 + 3F + F^2)."""
    n, n_obs, n_features = b.shape
    x = np.broadcast_to(scaled[:, None, :], b.shape)
    sigma = a - (x * b).sum(axis=2)
    outer_bx = (b[:, :, :, None] * x[:, :, None, :]).reshape(n, n_obs, n_features**2)
    outer_xb = (x[:, :, :, None] * b[:, :, None, :]).reshape(n, n_obs, n_features**2)
    left = np.concatenate([sigma[..., None], sigma[..., None] * x, b, outer_bx, b], axis=2)
    right = np.concatenate([sigma[..., None], b, sigma[..., None] * x, outer_xb, b * inv_theta2], axis=2)
    return left, right


def instance_energy_prior_variance(instances: "Instances", theta: Theta, delta: float) -> float:
    """Prior variance of the total energy of a term, in eV^2.

    ``delta^2 sum_(t, t') w_t w_t' k(x_t, x_t')`` over pairs of instances of one class.
    """
    weights = instances.weights[:, None]
    return float(_quadratic_forms(instances.values, instances.classes, weights, None, theta, delta)[0])


def instance_local_energy_prior_variance(instances: "Instances", theta: Theta, delta: float) -> np.ndarray:
    """Prior variance of each atom's local energy of a term, ndarray of shape (n_atoms,).

    ``delta^2 sum_(t, t') s_t s_t' w_t w_t' k(x_t, x_t')`` over the instances that give a
    share ``s`` of their energy to the atom (half of each pair, all of each triplet to
    its centre), in eV^2.
    """
    # as for the forces, an atom in two slots of one instance gives two entries (bilinear sum)
    instance, atom, share = _slots_by_atom(instances, np.asarray(instances.energy_shares, dtype=float))
    keep = share != 0.0
    instance, atom, share = instance[keep], atom[keep], share[keep]
    a = (share * instances.weights[instance])[:, None]
    b = np.zeros((len(a), 1, instances.values.shape[1]))
    return _per_atom_forms(instances, instance, atom, a, b, theta, delta)[:, 0]


def instance_force_prior_variance(instances: "Instances", theta: Theta, delta: float) -> np.ndarray:
    """Prior variance of every force component of a term, ndarray of shape (n_atoms * 3,).

    Needs position gradients. Ordered as ``forces.ravel()`` (atom-major), in (eV/A)^2.
    """
    if instances.dvalues is None:
        raise ValueError("force prior variances need instances computed with gradients='positions'")
    n_slots = instances.atoms.shape[1]
    # an atom filling two slots of one instance (its own periodic image) gives two entries
    # with the same x: the double sum is bilinear, so that equals one summed entry
    instance, atom, slot = _slots_by_atom(instances, np.arange(n_slots))
    a = -instances.dweights[instance, slot]
    b = -instances.weights[instance][:, None, None] * instances.dvalues[instance, slot]
    return _per_atom_forms(instances, instance, atom, a, b, theta, delta).ravel()


def instance_virial_prior_variance(instances: "Instances", theta: Theta, delta: float) -> np.ndarray:
    """Prior variance of each Voigt virial component (xx, yy, zz, yz, xz, xy) of a term.

    Needs strain gradients. ndarray of shape (6,), in eV^2.
    """
    a, b = _virial_functionals(instances)
    return _quadratic_forms(instances.values, instances.classes, a, b, theta, delta)


def instance_prior_covariance(frames: Sequence["Instances"], quantity: str, theta: Theta, delta: float) -> np.ndarray:
    """Prior covariance of the forces or virials of a term over several structures.

    Parameters
    ----------
    frames : sequence of Instances
        The term's instances of each structure, with position gradients for
        ``"forces"`` and strain gradients for ``"virial"``.
    quantity : {"forces", "virial"}
        Forces: the components of every atom, atom-major (``forces.ravel()``); virial:
        the six Voigt components.
    theta : float or ndarray of shape (n_features,)
        Length scale of each feature, in the units of the features.
    delta : float
        Prior standard deviation of the latent function ``g`` (eV).

    Returns
    -------
    ndarray of shape (n_obs, n_obs)
        The components of each structure in turn (``3 n_atoms`` or ``6`` per structure),
        in eV^2 (forces (eV/A)^2); the diagonal of each structure's block is
        :func:`instance_force_prior_variance` or :func:`instance_virial_prior_variance`.

    Examples
    --------
    Two dimers, one stretched: each pair's prior covariance couples their virials.

    >>> from ase import Atoms
    >>> from gapy.descriptors import TwoBody
    >>> pairs = TwoBody(["Si"], r_cut=4.0)
    >>> frames = [pairs.compute(Atoms("Si2", positions=[[0, 0, 0], [0, 0, z]], cell=[10, 10, 10], pbc=True),
    ...                         gradients=True) for z in (2.0, 2.2)]
    >>> covariance = instance_prior_covariance(frames, "virial", theta=1.0, delta=1.0)
    >>> covariance.shape, bool(covariance[2, 8] > 0)
    ((12, 12), True)
    """
    functionals = {"forces": _force_functionals, "virial": _virial_functionals}[quantity]
    parts = [functionals(instances) for instances in frames]
    n_obs = sum(a.shape[1] for a, _ in parts)
    n_features = frames[0].values.shape[1]
    a = np.zeros((sum(len(instances) for instances in frames), n_obs))
    b = np.zeros(a.shape + (n_features,))
    row = column = 0
    for a_k, b_k in parts:
        a[row:row + len(a_k), column:column + a_k.shape[1]] = a_k
        b[row:row + len(a_k), column:column + a_k.shape[1]] = b_k
        row, column = row + len(a_k), column + a_k.shape[1]
    values = np.concatenate([instances.values for instances in frames])
    classes = np.concatenate([instances.classes for instances in frames])
    return _covariance(values, classes, a, b, theta, delta)


def instance_prior_variances(instances: "Instances", theta: Theta, delta: float) -> Dict[str, object]:
    """All prior variances of a term for one structure, sharing the kernel evaluations.

    Parameters
    ----------
    instances : Instances
        From ``TwoBody.compute`` or ``ThreeBody.compute``; the force variances need
        position gradients and the virial variances strain gradients.
    theta : float or ndarray of shape (n_features,)
        Length scale of each feature, in the units of the features.
    delta : float
        Prior standard deviation of the latent function ``g`` (eV).

    Returns
    -------
    dict
        ``"energy"`` (float) and ``"energies"`` (n_atoms,) in eV^2; with position
        gradients ``"forces"`` (n_atoms * 3,), atom-major, in (eV/A)^2; with strain
        gradients ``"virial"`` (6,), Voigt order, in eV^2.

    Raises
    ------
    ValueError
        A bad ``theta``, or ``delta`` not a finite number > 0.

    Examples
    --------
    One pair well inside the cutoff (weight 1): its energy has the prior ``delta^2``,
    half of it goes to each atom, and ``d r / d z = -+1`` gives the force priors:

    >>> from ase import Atoms
    >>> from gapy.descriptors import TwoBody
    >>> from gapy.gp.term_variance import instance_prior_variances
    >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
    >>> pairs = TwoBody(["Si"], r_cut=4.0).compute(dimer, gradients=True)
    >>> priors = instance_prior_variances(pairs, theta=1.0, delta=1.0)
    >>> priors["energy"], priors["energies"].tolist(), priors["forces"].round(6).tolist()
    (1.0, [0.25, 0.25], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    """
    out = {"energies": instance_local_energy_prior_variance(instances, theta, delta)}
    if instances.dvalues_strain is not None:  # total energy and virial in one pass
        a, b = _virial_functionals(instances)
        a = np.concatenate([instances.weights[:, None], a], axis=1)
        b = np.concatenate([np.zeros((len(instances), 1, b.shape[2])), b], axis=1)
        both = _quadratic_forms(instances.values, instances.classes, a, b, theta, delta)
        out["energy"], out["virial"] = float(both[0]), both[1:]
    else:
        out["energy"] = instance_energy_prior_variance(instances, theta, delta)
    if instances.dvalues is not None:
        out["forces"] = instance_force_prior_variance(instances, theta, delta)
    return out


def _force_functionals(instances):
    """``a`` (n, 3 n_atoms) and ``b`` (n, 3 n_atoms, F) of every force component."""
    if instances.dvalues is None:
        raise ValueError("force prior covariances need instances computed with gradients='positions'")
    n, n_slots = instances.atoms.shape
    a = np.zeros((n, instances.n_atoms, 3))
    b = np.zeros((n, instances.n_atoms, 3, instances.values.shape[1]))
    for slot in range(n_slots):  # an atom in two slots of one instance: the entries add (bilinear)
        np.add.at(a, (np.arange(n), instances.atoms[:, slot]), -instances.dweights[:, slot])
        np.add.at(b, (np.arange(n), instances.atoms[:, slot]), -instances.weights[:, None, None]
                  * instances.dvalues[:, slot])
    return a.reshape(n, -1), b.reshape(n, 3 * instances.n_atoms, -1)


def _virial_functionals(instances):
    """``a`` (n, 6) and ``b`` (n, 6, F) of the symmetrised virial components."""
    if instances.dvalues_strain is None:
        raise ValueError("virial prior (co)variances need instances computed with gradients=True")
    a = np.stack([-(instances.dweights_strain[:, p, q] + instances.dweights_strain[:, q, p]) / 2
                  for p, q in VOIGT], axis=1)
    dvalues = np.stack([(instances.dvalues_strain[:, p, q] + instances.dvalues_strain[:, q, p]) / 2
                        for p, q in VOIGT], axis=1)
    return a, -instances.weights[:, None, None] * dvalues


def _slots_by_atom(instances, slot_values):
    """(instance, atom, slot_values[slot]) for every filled slot, sorted by atom."""
    n, n_slots = instances.atoms.shape
    instance = np.repeat(np.arange(n), n_slots)
    atom = instances.atoms.ravel()
    value = np.tile(slot_values, n)
    order = np.argsort(atom, kind="stable")
    return instance[order], atom[order], value[order]
