"""Kernel rows of a squared-exponential instance term (2-body, 3-body) for one structure.

A term's energy is a sum over the instances ``t`` of a structure (pairs or triplets,
``gapy.descriptors.Instances``) of ``w_t g(x_t)``, with cutoff weights ``w_t``, features
``x_t`` and a latent function ``g`` that has the Gaussian-process prior

    cov(g(x), g(x')) = delta^2 k(x, x') = delta^2 exp(-sum_f (x_f - x'_f)^2 / (2 theta_f^2))

within a class of instances and 0 across classes. The sparse points ``s_m`` are
inducing points of ``g`` itself (no cutoff weight), so ``K_MM = delta^2 k(s_m, s_m')``
(:func:`instance_sparse_kernel`) and the rows of a structure are

- local energies: ``sum_t share(t, i) w_t delta^2 k(x_t, s_m)`` for each atom ``i``;
- total energy: ``sum_t w_t delta^2 k(x_t, s_m)``;
- forces: ``-d (total energy row) / d r_j``; virial: ``-d (total energy row) / d eps``,
  symmetrised, in Voigt order (xx, yy, zz, yz, xz, xy),

as :func:`gapy.gp.design.kernel_rows` gives for SOAP: the rows of several terms of one
model are concatenated along the sparse-point axis. The predicted energy is
``sum_m alpha_m (energy row)_m``: ``e(pair) = f_c(r) sum_m alpha_m delta^2 k(r, s_m)``.
"""

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..kernels import check_theta, squared_exponential_kernel
from ._terms_numba import gradient_coefficients, scaled_squared_distances, scatter_forces, scatter_rows

if TYPE_CHECKING:  # annotations only: gp works on arrays and never imports ASE
    from ..descriptors.instances import Instances

Theta = Union[float, Sequence[float], np.ndarray]


def check_sparse(sparse, sparse_classes, n_features: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sparse points as float (M, n_features) and classes as int (M,), with clear errors."""
    sparse = np.asarray(sparse, dtype=float)
    if sparse.ndim == 1 and n_features == 1:
        sparse = sparse[:, None]
    if sparse.ndim != 2 or sparse.shape[1] != n_features:
        raise ValueError(f"sparse must have shape (M, {n_features}), got {sparse.shape}")
    if not np.isfinite(sparse).all():
        raise ValueError("sparse points must be finite")
    sparse_classes = np.asarray(sparse_classes)
    if sparse_classes.shape != (len(sparse),) or not np.issubdtype(sparse_classes.dtype, np.integer):
        raise ValueError(
            f"sparse_classes must be {len(sparse)} integers (one per sparse point), got "
            f"{sparse_classes.dtype} of shape {sparse_classes.shape}"
        )
    return sparse, sparse_classes.astype(np.int64)


def check_delta(delta) -> float:
    """``delta`` (eV) must be a finite number > 0."""
    if isinstance(delta, bool) or not np.isscalar(delta) or not np.isfinite(delta) or delta <= 0:
        raise ValueError(f"delta must be a finite number > 0, got {delta!r}")
    return float(delta)


def instance_kernel_rows(
    instances: "Instances", sparse: np.ndarray, sparse_classes: np.ndarray, theta: Theta, delta: float
) -> Dict[str, np.ndarray]:
    """Kernel rows of one structure for a squared-exponential instance term.

    Parameters
    ----------
    instances : Instances
        From ``TwoBody.compute`` or ``ThreeBody.compute``; force rows need position
        gradients and virial rows strain gradients.
    sparse : ndarray of shape (M, n_features)
        Sparse points, in the units of the features.
    sparse_classes : ndarray of int of shape (M,)
        Class of each sparse point (as ``instances.classes``).
    theta : float or ndarray of shape (n_features,)
        Length scale of each feature, in the units of the features.
    delta : float
        Prior standard deviation of ``g`` (eV).

    Returns
    -------
    dict
        ``"energies"`` (n_atoms, M) and ``"energy"`` (M,) in eV; with position gradients
        ``"forces"`` (n_atoms, 3, M) in eV/Angstrom; with strain gradients ``"virial"``
        (6, M) in eV, Voigt order (xx, yy, zz, yz, xz, xy).

    Examples
    --------
    >>> from ase import Atoms
    >>> from gapy.descriptors import TwoBody
    >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
    >>> pairs = TwoBody(["Si"], r_cut=4.0).compute(dimer, gradients="positions")
    >>> rows = instance_kernel_rows(pairs, [[2.0], [3.0]], [0, 0], theta=1.0, delta=1.0)
    >>> rows["energies"].round(3).tolist()
    [[0.5, 0.303], [0.5, 0.303]]
    """
    sparse, sparse_classes, inv_theta2, scale = _checked(instances, sparse, sparse_classes, theta, delta)
    n_atoms, m = int(instances.n_atoms), len(sparse)
    with_gradients = instances.dvalues is not None
    with_strain = with_gradients and instances.dvalues_strain is not None

    energies = np.zeros((n_atoms, m))
    forces = np.zeros((n_atoms, 3, m)) if with_gradients else None
    virial = np.zeros((6, m)) if with_strain else None
    for rows, columns in _class_blocks(instances.classes, sparse_classes):
        centre = sparse[columns].mean(axis=0)  # centred features: no cancellation below
        points = sparse[columns] - centre
        for block in _chunks(rows, len(points)):
            _add_block(instances, block, instances.values[block] - centre, points, columns, inv_theta2,
                       with_gradients, with_strain, energies, forces, virial)
    energies *= scale
    out = {"energies": energies, "energy": energies.sum(axis=0)}
    if with_gradients:
        out["forces"] = scale * forces
    if with_strain:
        out["virial"] = scale * virial
    return out


def instance_weighted_gradients(
    instances: "Instances", sparse: np.ndarray, sparse_classes: np.ndarray, theta: Theta, delta: float,
    weights: np.ndarray,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Forces and virial of ``sum_i weights[i] . e_i``, ``e_i`` the local-energy kernel rows.

    The position and strain gradients of any combination of the rows ``"energies"`` of
    :func:`instance_kernel_rows` with per-atom coefficients, without forming the force rows
    ``(n_atoms, 3, M)``: each instance ``t`` needs only ``v_t = sum_s share_s
    weights[atom_s]`` and two contractions of its kernel row. Used for the gradient of the
    local-energy variances (:class:`gapy.sampling.UncertaintyBias`).

    Parameters
    ----------
    instances : Instances
        With position gradients (and strain gradients for the virial).
    sparse, sparse_classes, theta, delta
        As :func:`instance_kernel_rows`.
    weights : ndarray of shape (n_atoms, M)
        Coefficient of each atom's row.

    Returns
    -------
    forces : ndarray of shape (n_atoms, 3)
        ``-d/dr`` of the combination (eV/A when ``weights`` is dimensionless).
    virial : ndarray of shape (6,) or None
        ``-d/d eps`` (Voigt order), with strain gradients.

    Examples
    --------
    >>> from ase import Atoms
    >>> from gapy.descriptors import TwoBody
    >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
    >>> pairs = TwoBody(["Si"], r_cut=4.0).compute(dimer, gradients="positions")
    >>> rows = instance_kernel_rows(pairs, [[2.0], [3.0]], [0, 0], theta=1.0, delta=1.0)
    >>> alpha = np.array([1.0, -2.0])
    >>> forces, _ = instance_weighted_gradients(pairs, [[2.0], [3.0]], [0, 0], 1.0, 1.0, np.tile(alpha, (2, 1)))
    >>> bool(np.allclose(forces, rows["forces"] @ alpha))
    True
    """
    sparse, sparse_classes, inv_theta2, scale = _checked(instances, sparse, sparse_classes, theta, delta)
    n_features = instances.values.shape[1]
    with_strain = instances.dvalues_strain is not None
    if instances.dvalues is None:
        raise ValueError("instance_weighted_gradients needs instances with position gradients")
    forces, virial = np.zeros((int(instances.n_atoms), 3)), np.zeros(6)
    shares = np.asarray(instances.energy_shares, dtype=float)
    for rows, columns in _class_blocks(instances.classes, sparse_classes):
        centre = sparse[columns].mean(axis=0)
        points = sparse[columns] - centre
        prime = points * inv_theta2
        for block in _chunks(rows, len(points)):
            values = np.ascontiguousarray(instances.values[block] - centre)
            kernel = _kernel_block(values, points, inv_theta2)
            atoms = instances.atoms[block]
            combined = kernel * np.einsum("s,tsm->tm", shares, weights[:, columns][atoms])  # v_t[m] k[t, m]
            total, moment = combined.sum(axis=1), combined @ prime  # (n,), (n, F)
            n_slots = atoms.shape[1]
            alpha = np.empty((len(values), n_slots, 3))
            beta = np.zeros((len(values), n_slots, 3, -(-n_features // 3) * 3))
            strain = np.empty((len(values) if with_strain else 0, 6, 1 + n_features))
            gradient_coefficients(
                values, instances.weights[block], instances.dvalues[block], instances.dweights[block],
                instances.dvalues_strain[block] if with_strain else np.zeros((0, 3, 3, n_features)),
                instances.dweights_strain[block] if with_strain else np.zeros((0, 3, 3)),
                inv_theta2, with_strain, alpha, beta, strain,
            )
            derivative = alpha * total[:, None, None] + np.einsum("tsaf,tf->tsa", beta[..., :n_features], moment)
            np.add.at(forces, atoms, -derivative)
            if with_strain:
                virial -= strain[:, :, 0].T @ total + np.einsum("tvf,tf->v", strain[:, :, 1:], moment)
    return scale * forces, (scale * virial if with_strain else None)


def _checked(instances, sparse, sparse_classes, theta, delta):
    """Sparse points and classes checked, ``1 / theta^2`` and ``delta^2``."""
    n_features = instances.values.shape[1]
    sparse, sparse_classes = check_sparse(sparse, sparse_classes, n_features)
    return sparse, sparse_classes, 1.0 / check_theta(theta, n_features) ** 2, check_delta(delta) ** 2


def _kernel_block(values, points, inv_theta2) -> np.ndarray:
    """``exp(-sum_f (x_f - s_f)^2 / (2 theta_f^2))`` of contiguous ``values`` against ``points``."""
    kernel = np.empty((len(values), len(points)))
    scaled_squared_distances(values, np.ascontiguousarray(points.T), -0.5 * inv_theta2, kernel)
    return np.exp(kernel, out=kernel)


#: kernel entries computed at once (bounds the temporary arrays to a few tens of MB)
_BLOCK_ENTRIES = 1 << 20


def _class_blocks(classes, sparse_classes):
    """(instance indices, sparse point indices) of each class that has both.

    The sparse points of a class are a slice when they are contiguous (cheaper updates).
    """
    for c in np.unique(sparse_classes):
        rows = np.flatnonzero(classes == c)
        if len(rows):
            columns = np.flatnonzero(sparse_classes == c)
            if columns[-1] - columns[0] + 1 == len(columns):
                columns = slice(int(columns[0]), int(columns[-1]) + 1)
            yield rows, columns


def _chunks(rows, n_columns):
    """Pieces of ``rows`` of at most ``_BLOCK_ENTRIES / n_columns`` instances; a piece of
    consecutive instances is a slice, so that gathering its arrays makes no copies."""
    size = max(1, _BLOCK_ENTRIES // max(n_columns, 1))
    for start in range(0, len(rows), size):
        piece = rows[start:start + size]
        if piece[-1] - piece[0] + 1 == len(piece):
            piece = slice(int(piece[0]), int(piece[-1]) + 1)
        yield piece


def _add_block(instances, block, values, points, columns, inv_theta2, with_gradients, with_strain,
               energies, forces, virial):
    """Add the rows of the instances ``block`` against the sparse points ``columns``.

    With ``k[t, m]`` the kernel and ``s'_m = points[m] / theta^2``, the derivative of
    ``w_t k[t, m]`` along a position or strain component with derivatives ``dw``, ``dx``
    is ``k[t, m] (alpha + beta . s'_m)`` with ``alpha = dw - w_t x_t . dx / theta^2`` and
    ``beta = w_t dx``: a few coefficients per instance (numba ``gradient_coefficients``),
    combined with ``k`` by ``scatter_forces`` for the forces and one GEMM for the virial.
    """
    n_features = values.shape[1]
    values = np.ascontiguousarray(values)
    kernel = _kernel_block(values, points, inv_theta2)
    weights = instances.weights[block]
    atoms = np.ascontiguousarray(instances.atoms[block], dtype=np.int64)
    shares = np.asarray(instances.energy_shares, dtype=float)
    gathered = np.zeros((1, energies.shape[0], len(points)))
    scatter_rows(kernel, atoms, np.ascontiguousarray((weights[:, None] * shares[None, :])[:, :, None]), gathered)
    energies[:, columns] += gathered[0]
    if not with_gradients:
        return
    n_per_axis = 1 + n_features
    padded = -(-n_features // 3) * 3  # scatter_forces takes the features three at a time
    n_slots = atoms.shape[1]
    alpha = np.empty((len(values), n_slots, 3))
    beta = np.zeros((len(values), n_slots, 3, padded))
    strain = np.empty((len(values) if with_strain else 0, 6, n_per_axis))
    empty4, empty3 = np.zeros((0, 3, 3, n_features)), np.zeros((0, 3, 3))
    gradient_coefficients(
        values, weights, instances.dvalues[block], instances.dweights[block],
        instances.dvalues_strain[block] if with_strain else empty4,
        instances.dweights_strain[block] if with_strain else empty3,
        inv_theta2, with_strain, alpha, beta, strain,
    )
    prime = points * inv_theta2  # s'_m, (M_c, F)
    prime_t = np.zeros((padded, len(points)))
    prime_t[:n_features] = prime.T
    block_forces = np.zeros((energies.shape[0], 3, len(points)))
    scatter_forces(kernel, atoms, alpha, beta, prime_t, block_forces)
    forces[:, :, columns] += block_forces
    if not with_strain:
        return
    projected = (strain.reshape(len(values), 6 * n_per_axis).T @ kernel).reshape(6, n_per_axis, len(points))
    virial[:, columns] -= projected[:, 0] + (projected[:, 1:] * prime.T[None]).sum(axis=1)


def instance_sparse_kernel(
    sparse: np.ndarray, sparse_classes: np.ndarray, theta: Theta, delta: float
) -> np.ndarray:
    """``K_MM``: the prior covariance ``delta^2 k(s_m, s_m')`` of ``g`` at the sparse points.

    Parameters
    ----------
    sparse : ndarray of shape (M, n_features)
        Sparse points, in the units of the features; shape (M,) for one feature.
    sparse_classes : ndarray of int of shape (M,)
        Class of each sparse point.
    theta : float or ndarray of shape (n_features,)
        Length scale of each feature, in the units of the features.
    delta : float
        Prior standard deviation of ``g`` (eV).

    Returns
    -------
    ndarray of shape (M, M)
        In eV^2; zero between classes; ``delta^2`` on the diagonal.

    Raises
    ------
    ValueError
        Sparse points of the wrong shape or not finite, ``sparse_classes`` not one
        integer per point, a bad ``theta``, or ``delta`` not a finite number > 0.

    Examples
    --------
    >>> from gapy.gp.terms import instance_sparse_kernel
    >>> instance_sparse_kernel([[2.0], [3.0], [2.0]], [0, 0, 1], theta=1.0, delta=0.5).round(3).tolist()
    [[0.25, 0.152, 0.0], [0.152, 0.25, 0.0], [0.0, 0.0, 0.25]]
    """
    n_features = np.shape(sparse)[-1] if np.ndim(sparse) == 2 else 1
    sparse, sparse_classes = check_sparse(sparse, sparse_classes, n_features)
    kernel = squared_exponential_kernel(sparse, sparse_classes, sparse, sparse_classes, theta)
    return check_delta(delta) ** 2 * kernel


@dataclass
class InstanceSparseSet:
    """Sparse points of one squared-exponential instance term (2-body, 3-body).

    The GP-layer side of a :class:`gapy.Term`: its sparse points, length scales and
    ``delta``. A :class:`gapy.gp.SparseSet` holds one per extra term (``terms``); its
    kernel rows are concatenated after the SOAP rows, and ``K_MM`` is block-diagonal.

    Parameters
    ----------
    sparse : ndarray of shape (M, n_features)
        Sparse points of the latent function ``g``, in the units of the features.
    sparse_classes : ndarray of int of shape (M,)
        Class of each sparse point (species pair or triplet).
    theta : ndarray of shape (n_features,)
        Length scale of each feature.
    delta : float
        Prior standard deviation of ``g`` (eV).

    Examples
    --------
    >>> from ase import Atoms
    >>> from gapy.descriptors import TwoBody
    >>> from gapy.gp.terms import InstanceSparseSet
    >>> term = InstanceSparseSet(np.array([[2.0], [3.0]]), np.array([0, 0]), np.array([1.0]), 1.0)
    >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
    >>> term.rows(TwoBody(["Si"], r_cut=4.0).compute(dimer))["energy"].round(3).tolist()
    [1.0, 0.607]
    """

    sparse: np.ndarray
    sparse_classes: np.ndarray
    theta: np.ndarray
    delta: float

    def rows(self, instances: "Instances") -> Dict[str, np.ndarray]:
        """Kernel rows of one structure, see :func:`instance_kernel_rows`.

        Parameters
        ----------
        instances : Instances
            The term's instances of the structure (with gradients for force and virial rows).

        Returns
        -------
        dict of str to ndarray
            ``"energies"`` (n_atoms, M), ``"energy"`` (M,), and with gradients
            ``"forces"`` (n_atoms, 3, M) and ``"virial"`` (6, M).

        Examples
        --------
        >>> from ase import Atoms
        >>> from gapy.descriptors import TwoBody
        >>> term = InstanceSparseSet(np.array([[2.0]]), np.array([0]), np.array([1.0]), 2.0)
        >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
        >>> term.rows(TwoBody(["Si"], r_cut=4.0).compute(dimer))["energies"].tolist()
        [[2.0], [2.0]]
        """
        return instance_kernel_rows(instances, self.sparse, self.sparse_classes, self.theta, self.delta)

    def kernel_matrix(self) -> np.ndarray:
        """``K_MM`` of the sparse points (eV^2), see :func:`instance_sparse_kernel`.

        Returns
        -------
        ndarray of shape (M, M)
            ``delta^2 k(s_m, s_m')``, zero between classes.

        Examples
        --------
        >>> InstanceSparseSet(np.array([[2.0], [3.0]]), np.array([0, 1]), np.array([1.0]), 0.5).kernel_matrix()
        array([[0.25, 0.  ],
               [0.  , 0.25]])
        """
        return instance_sparse_kernel(self.sparse, self.sparse_classes, self.theta, self.delta)

    def modelled(self, instances: "Instances") -> "Instances":
        """The instances of the classes that have sparse points.

        A class without them (a rare pair left out, a pair absent from the training data)
        is not in the model: its instances carry neither a mean nor a prior.

        Parameters
        ----------
        instances : Instances
            One structure's instances of this term's descriptor.

        Returns
        -------
        Instances
            ``instances`` itself when every class is modelled.

        Examples
        --------
        >>> from ase import Atoms
        >>> from gapy.descriptors import TwoBody
        >>> term = InstanceSparseSet(np.array([[2.0]]), np.array([0]), np.array([1.0]), 1.0)  # class 0 only
        >>> found = TwoBody(["Si", "C"], r_cut=4.0).compute(Atoms("SiC", positions=[[0, 0, 0], [0, 0, 2.0]]))
        >>> found.classes, len(term.modelled(found).values)  # one Si-C pair: not modelled
        (array([1]), 0)
        """
        modelled = np.isin(instances.classes, self.sparse_classes)
        return instances if modelled.all() else _subset(instances, modelled)

    def prior_variances(self, instances: "Instances", quantities=("energies", "energy")) -> Dict[str, np.ndarray]:
        """Prior variances of the term's part of each quantity (eV^2, forces (eV/A)^2).

        Parameters
        ----------
        instances : Instances
            The term's instances of the structure (with position gradients for
            ``"forces"``, strain gradients for ``"virial"``).
        quantities : sequence of {"energies", "energy", "forces", "virial"}, default=("energies", "energy")
            The priors to compute.

        Returns
        -------
        dict of str to ndarray
            ``"energies"`` (n_atoms,), ``"energy"`` (1,), ``"forces"`` (3 n_atoms,),
            ``"virial"`` (6,), those asked for (the shapes of
            :meth:`gapy.gp.SparseSet.prior_variances`).

        Examples
        --------
        >>> from ase import Atoms
        >>> from gapy.descriptors import TwoBody
        >>> term = InstanceSparseSet(np.array([[2.0]]), np.array([0]), np.array([1.0]), 1.0)
        >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]])
        >>> term.prior_variances(TwoBody(["Si"], r_cut=4.0).compute(dimer))
        {'energies': array([0.25, 0.25]), 'energy': array([1.])}
        """
        from .term_variance import (instance_energy_prior_variance, instance_force_prior_variance,
                                    instance_local_energy_prior_variance, instance_virial_prior_variance)

        instances = self.modelled(instances)
        theta, delta = self.theta, self.delta
        compute = {
            "energies": lambda: instance_local_energy_prior_variance(instances, theta, delta),
            "energy": lambda: np.array([instance_energy_prior_variance(instances, theta, delta)]),
            "forces": lambda: instance_force_prior_variance(instances, theta, delta),
            "virial": lambda: instance_virial_prior_variance(instances, theta, delta),
        }
        return {quantity: compute[quantity]() for quantity in quantities}


def _subset(instances: "Instances", mask: np.ndarray) -> "Instances":
    """The instances where ``mask`` is true (every per-instance array indexed)."""
    per_instance = ("values", "classes", "weights", "atoms", "dvalues", "dweights", "dvalues_strain",
                    "dweights_strain")
    return replace(instances, **{name: getattr(instances, name)[mask] for name in per_instance
                                 if getattr(instances, name) is not None})
