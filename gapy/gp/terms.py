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

from typing import Dict

import numpy as np

from ..kernels import check_theta, squared_exponential_kernel
from ._terms_numba import se_rows
from .design import VOIGT


def check_sparse(sparse, sparse_classes, n_features: int):
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


def instance_kernel_rows(instances, sparse, sparse_classes, theta, delta) -> Dict[str, np.ndarray]:
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
    n_features = instances.values.shape[1]
    sparse, sparse_classes = check_sparse(sparse, sparse_classes, n_features)
    inv_theta2 = 1.0 / check_theta(theta, n_features) ** 2
    scale = check_delta(delta) ** 2
    n_atoms, m = int(instances.n_atoms), len(sparse)
    with_gradients = instances.dvalues is not None
    with_strain = with_gradients and instances.dvalues_strain is not None

    order = np.argsort(sparse_classes, kind="stable")
    n_classes = int(max(sparse_classes.max(initial=-1), instances.classes.max(initial=-1))) + 1
    class_offsets = np.searchsorted(sparse_classes[order], np.arange(n_classes + 1))

    energies = np.zeros((n_atoms, m))
    forces = np.zeros((n_atoms if with_gradients else 0, 3, m))
    virial = np.zeros((3, 3, m))
    empty4, empty3 = np.zeros((0, 1, 1, 1)), np.zeros((0, 1, 1))
    se_rows(
        np.ascontiguousarray(instances.values, dtype=float), instances.classes.astype(np.int64),
        np.ascontiguousarray(instances.weights, dtype=float), instances.atoms.astype(np.int64),
        np.asarray(instances.energy_shares, dtype=float),
        instances.dvalues if with_gradients else empty4,
        instances.dweights if with_gradients else empty3,
        instances.dvalues_strain if with_strain else empty4,
        instances.dweights_strain if with_strain else empty3,
        np.ascontiguousarray(sparse[order]), class_offsets, inv_theta2, with_gradients, with_strain,
        energies, forces, virial,
    )
    inverse = np.argsort(order)  # column m of the sorted points is sparse point order[m]
    energies = scale * energies[:, inverse]
    rows = {"energies": energies, "energy": energies.sum(axis=0)}
    if with_gradients:
        rows["forces"] = scale * forces[:, :, inverse]
    if with_strain:
        virial = scale * virial[:, :, inverse]
        rows["virial"] = np.array([(virial[a, b] + virial[b, a]) / 2 for a, b in VOIGT])
    return rows


def instance_sparse_kernel(sparse, sparse_classes, theta, delta) -> np.ndarray:
    """``K_MM``: the prior covariance ``delta^2 k(s_m, s_m')`` of ``g`` at the sparse points.

    Parameters
    ----------
    sparse : ndarray of shape (M, n_features)
    sparse_classes : ndarray of int of shape (M,)
    theta : float or ndarray of shape (n_features,)
    delta : float
        eV.

    Returns
    -------
    ndarray of shape (M, M)
        In eV^2; zero between classes; ``delta^2`` on the diagonal.
    """
    sparse, sparse_classes = check_sparse(sparse, sparse_classes, np.shape(sparse)[-1] if np.ndim(sparse) == 2 else 1)
    return check_delta(delta) ** 2 * squared_exponential_kernel(sparse, sparse_classes, sparse, sparse_classes, theta)
