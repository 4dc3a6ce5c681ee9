"""The fitted sparse GP: sparse points, weights and what the predictive variance needs.

Arrays only; no ASE. The estimator turns structures into descriptor values and
gradients; :meth:`SparseGP.rows` turns those into kernel rows, and
:meth:`SparseGP.predict` turns rows (and prior variances) into means and variances.
"""

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from scipy.linalg import block_diag, solve_triangular

from ..kernels import dot_product_kernel
from .design import SplitPoints, gradient_rows, kernel_rows, split_points
from .terms import InstanceSparseSet
from .variance import (energy_prior_variance, force_prior_variance, isolated_self_kernel, isolated_terms,
                       local_prior_variance, virial_prior_variance, voigt_strain)

#: Kinds of predictive variance, see :meth:`SparseGP.predict`.
VARIANCE_KINDS = ("sor", "dtc", "local")

#: Arithmetic of force stds, see :meth:`SparseGP.gradient_variances`.
FORCE_STD_PRECISIONS = ("double", "mixed")

#: Negative variances larger than this fraction of the prior are reported when clipped;
#: smaller ones are round-off of ``k** - k* K_MM^-1 k*^T`` and clipped silently.
NEGATIVE_VARIANCE_TOLERANCE = 1e-6


#: Rows multiplied at once by :meth:`SparseGP.variance` (bounds its temporary array).
_VARIANCE_CHUNK = 2048


def _squared_norms_of_products(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``|rows[i] @ matrix|^2`` of every row, a chunk of rows at a time."""
    out = np.empty(len(rows))
    for start in range(0, len(rows), _VARIANCE_CHUNK):
        product = rows[start:start + _VARIANCE_CHUNK] @ matrix
        out[start:start + _VARIANCE_CHUNK] = np.einsum("ij,ij->i", product, product)
    return out


def check_variance_kind(kind: str) -> str:
    """Raise ``ValueError`` unless ``kind`` is one of :data:`VARIANCE_KINDS`.

    Parameters
    ----------
    kind : str
        The kind of variance to check.

    Returns
    -------
    str
        ``kind``.

    Raises
    ------
    ValueError
        ``kind`` is not ``"sor"``, ``"dtc"`` or ``"local"``.
    """
    if kind not in VARIANCE_KINDS:
        raise ValueError(f"variance must be one of {VARIANCE_KINDS}, got {kind!r}")
    return kind


def check_force_std_precision(precision: str) -> str:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`FORCE_STD_PRECISIONS`.

    Parameters
    ----------
    precision : str
        The arithmetic of force stds to check.

    Returns
    -------
    str
        ``precision``.

    Raises
    ------
    ValueError
        ``precision`` is not ``"double"`` or ``"mixed"``.

    Examples
    --------
    >>> check_force_std_precision("mixed")
    'mixed'
    """
    if precision not in FORCE_STD_PRECISIONS:
        raise ValueError(f"force_std_precision must be one of {FORCE_STD_PRECISIONS}, got {precision!r}")
    return precision


@dataclass
class SparseSet:
    """Sparse points of the dot-product kernel and the kernel rows against them.

    With ``isolated`` (the descriptor of a neighbourless atom of each species, ``q0``)
    the kernel is conditioned on a zero local energy there::

        K(q, x) = delta^2 [(q . x)^zeta - (q . q0)^zeta (q0 . x)^zeta]

    (the GP kernel given ``e(q0) = 0``; ``k(q0, q0) = delta^2``), so that an atom without
    neighbours contributes exactly its ``e0`` and its local energy has zero variance.
    (for normalised descriptors; in general the correction is divided by
    ``(q0 . q0)^zeta``, and a zero ``q0`` leaves the kernel as it is). The correction is
    a linear combination of kernel columns against ``q0``: every row (energies, forces,
    virial) is ``rows[:, :M] - rows[:, M:] @ B`` of the rows against the points
    ``[x; q0]``, with ``B[s, m] = (q0_s . x_m)^zeta / (q0_s . q0_s)^zeta`` for ``m`` of
    species ``s``.

    Made by ``GAPRegressor`` from the chosen sparse points; :func:`fit_sparse_gp` turns
    it into the fitted :class:`SparseGP` (``GAPRegressor.gp_``). Every parameter is
    stored as an attribute of the same name.

    Parameters
    ----------
    sparse : ndarray of shape (M, n_features)
        Sparse points (descriptor vectors).
    sparse_species : ndarray of int of shape (M,)
        Species index of each sparse point.
    zeta : int
        Kernel exponent.
    delta : float
        Kernel scale (eV): the prior standard deviation of a local energy.
    isolated : ndarray of shape (n_species, n_features) or None, default=None
        Descriptor of an isolated atom of each species; ``None``: the plain kernel
        (models written before the conditioning existed).
    terms : tuple of InstanceSparseSet, default=()
        Extra terms of the local energy (2-body, 3-body; :class:`gapy.Term`), each with
        its own sparse points: the rows of a structure are the SOAP rows followed by
        each term's rows (:meth:`rows` then needs the terms' instances), ``K_MM`` is
        block-diagonal and prior variances add (independent terms).

    Examples
    --------
    Two sparse points of one species, conditioned on a zero energy at ``q0 = (0, 1)``:

    >>> import numpy as np
    >>> from gapy.gp import SparseSet
    >>> points, species = np.array([[1.0, 0.0], [0.6, 0.8]]), np.zeros(2, dtype=int)
    >>> SparseSet(points, species, zeta=2, delta=0.5).kernel_matrix()
    array([[0.25, 0.09],
           [0.09, 0.25]])
    >>> basis = SparseSet(points, species, zeta=2, delta=0.5, isolated=np.array([[0.0, 1.0]]))
    >>> basis.kernel_matrix().round(4)
    array([[0.25  , 0.09  ],
           [0.09  , 0.1476]])
    >>> basis.kernel(np.array([[0.0, 1.0]]), np.zeros(1, dtype=int), points, species)  # K(q0, x) = 0
    array([[0., 0.]])
    """

    sparse: np.ndarray
    sparse_species: np.ndarray
    zeta: int
    delta: float
    isolated: Optional[np.ndarray] = None
    terms: Tuple[InstanceSparseSet, ...] = ()

    def term_slices(self) -> list:
        """Columns of each extra term in the concatenated rows (after the SOAP columns).

        Returns
        -------
        list of slice
            One per element of :attr:`terms`.

        Examples
        --------
        >>> import numpy as np
        >>> from gapy.gp.terms import InstanceSparseSet
        >>> pairs = InstanceSparseSet(np.array([[2.0], [3.0]]), np.zeros(2, dtype=int), np.ones(1), 1.0)
        >>> SparseSet(np.eye(2), np.zeros(2, dtype=int), zeta=2, delta=1.0, terms=(pairs,)).term_slices()
        [slice(2, 4, None)]
        """
        out, start = [], len(self.sparse)
        for term in self.terms:
            out.append(slice(start, start + len(term.sparse)))
            start += len(term.sparse)
        return out

    def _check_instances(self, instances):
        """One ``Instances`` per extra term, with a clear error otherwise."""
        if instances is None or len(instances) != len(self.terms):
            raise ValueError(f"this model has {len(self.terms)} extra terms: give their instances of the "
                             f"structure (one per term), got {None if instances is None else len(instances)}")
        return instances

    def _augmented(self):
        """Points ``[x; q0]``, their species and ``B`` (n_species, M); ``None`` without q0."""
        if self.isolated is None:
            return None
        n_species = len(self.isolated)
        points = np.concatenate([self.sparse, self.isolated])
        species = np.concatenate([self.sparse_species, np.arange(n_species)])
        overlap, _ = dot_product_kernel(self.isolated, np.arange(n_species), self.sparse, self.sparse_species,
                                        self.zeta)
        return points, species, overlap / isolated_self_kernel(self.isolated, self.zeta)[:, None]

    def _condition(self, rows: np.ndarray, overlap: np.ndarray) -> np.ndarray:
        """``rows[..., :M] - rows[..., M:] @ B``."""
        m = len(self.sparse)
        return rows[..., :m] - rows[..., m:] @ overlap

    def rows(self, values, species, grad=None, instances: Optional[Sequence] = None) -> Dict[str, np.ndarray]:
        """Kernel rows of one structure against the sparse points, see :func:`kernel_rows`.

        Parameters
        ----------
        values : ndarray of shape (n_atoms, n_features)
            Descriptor vector of each atom.
        species : ndarray of int of shape (n_atoms,)
            Species index of each atom.
        grad : SOAPGradients, optional
            Descriptor gradients; needed for the ``"forces"`` and ``"virial"`` rows.
        instances : sequence of Instances, optional
            With :attr:`terms`: each term's instances of the structure, with the same
            gradients as ``grad`` (their rows follow the SOAP rows).

        Returns
        -------
        dict of str to ndarray
            ``"energies"`` (n_atoms, M), ``"energy"`` (M,), and with ``grad``:
            ``"forces"`` (n_atoms, 3, M) and ``"virial"`` (6, M) when ``grad`` has strain
            gradients. Each row times ``alpha`` is a prediction (eV, eV/A, eV).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> gp, atoms = model.gp_, bulk("Si", cubic=True)
        >>> values, grad = model.descriptor_.compute(atoms, gradients=True)
        >>> species = model.descriptor_.species_indices(atoms)
        >>> {name: block.shape for name, block in gp.rows(values, species, grad).items()}
        {'energies': (8, 20), 'energy': (20,), 'forces': (8, 3, 20), 'virial': (6, 20)}
        """
        augmented = self._augmented()
        if augmented is None:
            rows = kernel_rows(values, species, self.sparse, self.sparse_species, self.zeta, self.delta, grad)
        else:
            points, point_species, overlap = augmented
            rows = kernel_rows(values, species, points, point_species, self.zeta, self.delta, grad)
            rows = {name: self._condition(block, overlap) for name, block in rows.items()}
        if not self.terms:
            return rows
        parts = [term.rows(found) for term, found in zip(self.terms, self._check_instances(instances))]
        for name in rows:
            if any(name not in part for part in parts):
                raise ValueError(f"the terms' instances need the gradients of the SOAP rows ({name!r} rows)")
        return {name: np.concatenate([block] + [part[name] for part in parts], axis=-1)
                for name, block in rows.items()}

    def gradient_rows(self, factor: np.ndarray, grad, n_atoms: int,
                      split: Optional[SplitPoints] = None) -> Dict[str, np.ndarray]:
        """Force and virial rows of one structure, or of one block of its atoms.

        The same rows as :meth:`rows`, from the ``factor`` of :meth:`local_kernel`
        (computed once for the structure) and gradients that may cover only a block of
        atoms (:meth:`gapy.SOAP.gradient_blocks`).

        Parameters
        ----------
        factor : ndarray of shape (n_atoms, M + n_species) or (n_atoms, M)
            The ``factor`` of :meth:`local_kernel`.
        grad : SOAPGradients
            Gradients of the structure or of a block of its atoms (``grad.targets``).
        n_atoms : int
            Atoms in the structure.
        split : SplitPoints, optional
            :func:`gapy.gp.design.split_points` of the points (sparse points, then
            ``q0``): mixed-precision force rows, see :meth:`SparseGP.gradient_variances`
            (virial rows stay float64). Default: float64 force rows.

        Returns
        -------
        dict of str to ndarray
            ``"forces"`` (n_targets, 3, M) for the atoms ``grad.targets`` (all atoms
            without targets) and, with strain gradients, ``"virial"`` (6, M): the part
            of the virial rows from those atoms' local energies.

        Examples
        --------
        >>> import numpy as np
        >>> from ase.build import bulk
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> gp, atoms = model.gp_, bulk("Si", cubic=True)
        >>> atoms.rattle(0.05, seed=0)
        >>> values, grad = model.descriptor_.compute(atoms, gradients=True)
        >>> species = model.descriptor_.species_indices(atoms)
        >>> _, factor = gp.local_kernel(values, species)
        >>> rows = gp.gradient_rows(factor, grad, len(atoms))
        >>> bool(np.allclose(rows["forces"], gp.rows(values, species, grad)["forces"]))
        True
        """
        augmented = self._augmented()
        if augmented is None:
            return gradient_rows(factor, self.sparse, grad, n_atoms, split)
        points, _, overlap = augmented
        return {name: self._condition(block, overlap)
                for name, block in gradient_rows(factor, points, grad, n_atoms, split).items()}

    def kernel_matrix(self) -> np.ndarray:
        """``K_MM`` of the sparse points, without jitter (block-diagonal with :attr:`terms`).

        Returns
        -------
        ndarray of shape (M, M)
            In eV^2.

        Examples
        --------
        >>> import numpy as np
        >>> basis = SparseSet(np.eye(2), np.zeros(2, dtype=int), zeta=2, delta=0.5)
        >>> basis.kernel_matrix()
        array([[0.25, 0.  ],
               [0.  , 0.25]])
        """
        soap = self.kernel(self.sparse, self.sparse_species, self.sparse, self.sparse_species)
        if not self.terms:
            return soap
        return block_diag(soap, *[term.kernel_matrix() for term in self.terms])

    def kernel(self, values, species, other, other_species) -> np.ndarray:
        """The kernel between two sets of environments.

        Parameters
        ----------
        values : ndarray of shape (n, n_features)
            Descriptor vectors ``q_i``.
        species : ndarray of int of shape (n,)
            Species index of each ``q_i``.
        other : ndarray of shape (n_other, n_features)
            Descriptor vectors ``p_j``.
        other_species : ndarray of int of shape (n_other,)
            Species index of each ``p_j``.

        Returns
        -------
        ndarray of shape (n, n_other)
            ``K(q_i, p_j)`` in eV^2, zero across species.

        Examples
        --------
        >>> import numpy as np
        >>> basis = SparseSet(np.eye(2), np.zeros(2, dtype=int), zeta=1, delta=1.0)
        >>> basis.kernel(np.array([[0.6, 0.8]]), np.zeros(1, dtype=int), np.eye(2), np.zeros(2, dtype=int))
        array([[0.6, 0.8]])
        """
        plain, _ = dot_product_kernel(values, species, other, other_species, self.zeta)
        if self.isolated is not None:
            a, _, inverse_c0 = isolated_terms(values, species, self.zeta, self.isolated)
            b, _, _ = isolated_terms(other, other_species, self.zeta, self.isolated)
            plain = plain - np.outer(a * inverse_c0, b) * (species[:, None] == other_species[None, :])
        return self.delta**2 * plain

    def local_kernel(self, values, species):
        """Local-energy kernel rows (n, M) and the factors of the energy gradient.

        Parameters
        ----------
        values : ndarray of shape (n, n_features)
            Descriptor vectors ``q_i``.
        species : ndarray of int of shape (n,)
            Species index of each.

        Returns
        -------
        kernel : ndarray of shape (n, M)
            ``K(q_i, x_m)``.
        factor : ndarray of shape (n, M + n_species) or (n, M)
            ``delta^2 zeta (q_i . p)^(zeta - 1)`` against the points ``p`` of
            :meth:`energy_gradient_weights` (the sparse points, then ``q0``).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20,
        ...                      e0=-0.79).fit(load_si("train")[:4])  # the isolated atom's e0: q0 too
        >>> atoms = bulk("Si", cubic=True)
        >>> values = model.descriptor_.compute(atoms)
        >>> kernel, factor = model.gp_.local_kernel(values, model.descriptor_.species_indices(atoms))
        >>> kernel.shape, factor.shape
        ((8, 20), (8, 21))
        """
        augmented = self._augmented()
        points, point_species = (self.sparse, self.sparse_species) if augmented is None else augmented[:2]
        kernel, factor = dot_product_kernel(values, species, points, point_species, self.zeta)
        scale = self.delta**2
        kernel = scale * (kernel if augmented is None else self._condition(kernel, augmented[2]))
        return kernel, scale * factor

    def contract_kernel_gradient(self, weights: np.ndarray, factor: np.ndarray) -> np.ndarray:
        """``sum_m weights[i, m] dK(q_i, x_m) / dq_i`` for every atom.

        Parameters
        ----------
        weights : ndarray of shape (n, M)
            A weight per atom and sparse point (for the local energies: ``alpha`` on every
            row).
        factor : ndarray of shape (n, M + n_species) or (n, M)
            The ``factor`` of :meth:`local_kernel`.

        Returns
        -------
        ndarray of shape (n, n_features)
            The contracted kernel gradients, ready for :meth:`gapy.SOAP.contract_gradients`.

        Examples
        --------
        >>> import numpy as np
        >>> basis = SparseSet(np.eye(2), np.zeros(2, dtype=int), zeta=2, delta=1.0)
        >>> q = np.array([[0.6, 0.8]])
        >>> _, factor = basis.local_kernel(q, np.zeros(1, dtype=int))
        >>> basis.contract_kernel_gradient(np.ones((1, 2)), factor)  # d/dq [(q.x1)^2 + (q.x2)^2] = 2q
        array([[1.2, 1.6]])
        """
        augmented = self._augmented()
        if augmented is None:
            return (factor * weights) @ self.sparse
        points, _, overlap = augmented
        return (factor * np.concatenate([weights, -weights @ overlap.T], axis=1)) @ points

    def local_prior_gradient(self, values, species) -> np.ndarray:
        """Gradient ``d K(q_i, q_i) / d q_i`` of each local energy's prior variance (eV^2).

        ``K(q, q) = delta^2 (q . q)^zeta``, conditioned on the isolated atoms' vectors
        ``q0`` when :attr:`isolated` is set (the ``"energies"`` of
        :meth:`prior_variances`). Used by :class:`gapy.sampling.UncertaintyBias` for the
        ``"local"`` and ``"dtc"`` variances.

        Parameters
        ----------
        values : ndarray of shape (n, n_features)
            Descriptor vector ``q_i`` of each atom.
        species : ndarray of int of shape (n,)
            Species index of each atom (used only with :attr:`isolated`).

        Returns
        -------
        ndarray of shape (n, n_features)
            ``d K(q_i, q_i) / d q_i`` of each atom, in eV^2 per descriptor unit.

        Examples
        --------
        >>> import numpy as np
        >>> species = np.zeros(1, dtype=int)
        >>> basis = SparseSet(np.eye(2), np.zeros(2, dtype=int), zeta=2, delta=1.0)
        >>> basis.local_prior_gradient(np.array([[0.6, 0.8]]), species)  # d/dq (q.q)^2 = 4 (q.q) q
        array([[2.4, 3.2]])
        >>> conditioned = SparseSet(np.eye(2), np.zeros(2, dtype=int), zeta=2, delta=1.0,
        ...                         isolated=np.array([[0.6, 0.8]]))
        >>> conditioned.local_prior_gradient(np.array([[0.6, 0.8]]), species).round(12)  # zero at q0
        array([[0., 0.]])
        """
        q = np.asarray(values)
        norm2 = np.einsum("ij,ij->i", q, q)
        gradient = 2 * self.zeta * norm2[:, None] ** (self.zeta - 1) * q
        if self.isolated is not None:
            a, g, inverse_c0 = isolated_terms(q, species, self.zeta, self.isolated)
            gradient -= (2 * a * g * inverse_c0)[:, None] * self.isolated[species]
        return self.delta**2 * gradient

    def prior_variances(self, values, species, grad=None, quantities=("energies", "energy"),
                        instances: Optional[Sequence] = None) -> Dict[str, np.ndarray]:
        """Prior variances ``k**`` of the rows of :meth:`rows`, for the quantities asked.

        Parameters
        ----------
        values : ndarray of shape (n_atoms, n_features)
            Descriptor vector of each atom.
        species : ndarray of int of shape (n_atoms,)
            Species index of each atom.
        grad : SOAPGradients, optional
            Needed for ``"forces"`` (``dpos``) and ``"virial"`` (``dstrain``).
        quantities : sequence of {"energies", "energy", "forces", "virial"}, default=("energies", "energy")
            The priors to compute (forces and virial are the costly ones).
        instances : sequence of Instances, optional
            With :attr:`terms`: each term's instances of the structure; the terms' priors
            are added (independent terms).

        Returns
        -------
        dict
            ``"energies"`` (n_atoms,), ``"energy"`` (1,), ``"forces"`` (3 n_atoms,),
            ``"virial"`` (6,), in eV^2 (forces: (eV/A)^2).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> gp, atoms = model.gp_, bulk("Si", cubic=True)
        >>> values, grad = model.descriptor_.compute(atoms, gradients=True)
        >>> species = model.descriptor_.species_indices(atoms)
        >>> priors = gp.prior_variances(values, species, grad, ["energies", "forces"])
        >>> priors["energies"].shape, priors["forces"].shape
        ((8,), (24,))
        """
        q0 = None if self.isolated is None else self.isolated
        compute = {
            "energies": lambda: local_prior_variance(values, species, self.zeta, self.delta, q0),
            "energy": lambda: np.array([energy_prior_variance(values, species, self.zeta, self.delta, q0)]),
            "forces": lambda: force_prior_variance(values, species, grad, self.zeta, self.delta, q0),
            "virial": lambda: virial_prior_variance(values, species, voigt_strain(grad.dstrain), self.zeta,
                                                    self.delta, q0),
        }
        out = {quantity: compute[quantity]() for quantity in quantities}
        if self.terms:
            for term, found in zip(self.terms, self._check_instances(instances)):
                for quantity, prior in term.prior_variances(found, quantities).items():
                    out[quantity] = out[quantity] + prior
        return out


@dataclass(kw_only=True)
class SparseGP(SparseSet):
    """A fitted projected-process (DTC) Gaussian process on the points of a :class:`SparseSet`.

    Made by :func:`fit_sparse_gp` (``GAPRegressor.gp_``); every parameter is stored as an
    attribute of the same name. The parameters after ``isolated`` are keyword-only.

    Parameters
    ----------
    sparse : ndarray of shape (M, n_features)
        Sparse points (descriptor vectors).
    sparse_species : ndarray of int of shape (M,)
        Species index of each sparse point.
    zeta : int
        Kernel exponent.
    delta : float
        Kernel scale (eV): the prior standard deviation of a local energy.
    isolated : ndarray of shape (n_species, n_features) or None, default=None
        Descriptor of an isolated atom of each species (see :class:`SparseSet`);
        ``None``: the plain kernel.
    terms : tuple of InstanceSparseSet, default=()
        Extra terms (see :class:`SparseSet`); ``M`` counts their sparse points too.
    alpha : ndarray of shape (M,)
        Weights: a local energy is ``sum_m alpha_m K(q, x_m)`` (SOAP points first, then
        each term's, :meth:`SparseSet.term_slices`).
    r_factor : ndarray of shape (M, M)
        Upper triangular ``R`` with ``R^T R = K_MM + K_MN Lambda^-1 K_NM``, the
        posterior precision of the weights.
    kmm_factor : ndarray of shape (M, M)
        Lower Cholesky factor ``L`` of ``K_MM`` (with jitter).
    n_observations : int, default=0
        Rows (energies, force and virial components) the model was fitted on.

    References
    ----------
    A. P. Bartók, M. C. Payne, R. Kondor and G. Csányi, "Gaussian approximation
    potentials: the accuracy of quantum mechanics, without the electrons", Phys. Rev.
    Lett. 104, 136403 (2010).

    J. Quiñonero-Candela and C. E. Rasmussen, "A unifying view of sparse approximate
    Gaussian process regression", J. Mach. Learn. Res. 6, 1939 (2005).

    Examples
    --------
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.datasets import load_si
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
    >>> gp = model.gp_
    >>> gp.sparse.shape, gp.alpha.shape, gp.zeta, gp.delta
    ((20, 40), (20,), 4, 1.0)
    """

    alpha: np.ndarray
    r_factor: np.ndarray
    kmm_factor: np.ndarray
    n_observations: int = 0

    @cached_property
    def _inverse_r(self) -> np.ndarray:
        """``R^-1`` (upper triangular): variances by one matrix product instead of a
        triangular solve, 3-4x faster for a few hundred rows, equally accurate."""
        return solve_triangular(self.r_factor, np.eye(len(self.r_factor)), lower=False)

    @cached_property
    def _inverse_l(self) -> np.ndarray:
        """``L^-1`` (lower triangular) of the Cholesky factor of ``K_MM``."""
        return solve_triangular(self.kmm_factor, np.eye(len(self.kmm_factor)), lower=True)

    @cached_property
    def _split_points(self) -> SplitPoints:
        """:func:`gapy.gp.design.split_points` of the SOAP points (then ``q0``), for mixed precision."""
        augmented = self._augmented()
        return split_points(self.sparse if augmented is None else augmented[0])

    @cached_property
    def _dtc_factor(self) -> np.ndarray:
        """``C`` with ``C C^T = K_MM^-1 - Sigma``: the DTC variance is ``k** - |k C|^2``.

        One projection instead of two. With ``B = L^T Sigma L = U diag(mu) U^T``
        (``mu`` in (0, 1], from ``R^-T L``), ``C = L^-T U diag(sqrt(1 - mu))``: no
        difference of large matrices is formed, and the round-off of ``1 - mu`` adds at
        most ``~eps k**`` to a variance.
        """
        whitened = self._inverse_r.T @ self.kmm_factor  # R^-T L
        mu, u = np.linalg.eigh(whitened.T @ whitened)
        return self._inverse_l.T @ (u * np.sqrt(np.clip(1.0 - mu, 0.0, None)))

    def energy_gradient_weights(self, factor: np.ndarray) -> np.ndarray:
        """``d e_i / d q_i`` for every atom, from the factor of :meth:`local_kernel`.

        Parameters
        ----------
        factor : ndarray of shape (n, M + n_species) or (n, M)
            The ``factor`` of :meth:`local_kernel`.

        Returns
        -------
        ndarray of shape (n, n_features)
            Gradient of each local energy with respect to its descriptor vector (eV),
            the ``weights`` of :meth:`gapy.SOAP.contract_gradients`, which turns them
            into forces and the virial.

        Examples
        --------
        >>> import numpy as np
        >>> from ase.build import bulk
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> gp, atoms = model.gp_, bulk("Si", cubic=True)
        >>> atoms.rattle(0.05, seed=1)
        >>> values = model.descriptor_.compute(atoms)
        >>> kernel, factor = gp.local_kernel(values, model.descriptor_.species_indices(atoms))
        >>> forces, virial = model.descriptor_.contract_gradients(atoms, gp.energy_gradient_weights(factor))
        >>> bool(np.allclose(forces, model.predict_all(atoms)[0]["forces"]))
        True
        """
        alpha = self.alpha[:len(self.sparse)]  # the SOAP part
        return self.contract_kernel_gradient(np.broadcast_to(alpha, (len(factor), len(alpha))), factor)

    def gradient_variances(self, values, species, factor, blocks, kind: str = "sor", *,
                           forces: bool = True, virial: bool = False,
                           precision: str = "double", name: Optional[str] = None) -> Dict[str, np.ndarray]:
        """Predictive variances of the forces and the virial of one structure, block by block.

        Memory is that of one block of gradients (and, for the ``"dtc"`` and ``"local"``
        virial variances, the symmetric strain gradients of every atom), however large
        the structure.

        Parameters
        ----------
        values : ndarray of shape (n_atoms, n_features)
            Descriptor vector of each atom.
        species : ndarray of int of shape (n_atoms,)
            Species index of each atom.
        factor : ndarray of shape (n_atoms, M + n_species) or (n_atoms, M)
            The ``factor`` of :meth:`local_kernel`.
        blocks : iterable of SOAPGradients
            Gradients of blocks of atoms covering the structure
            (:meth:`gapy.SOAP.gradient_blocks`, with ``strain`` for the virial).
        kind : {"sor", "dtc", "local"}, default="sor"
            Kind of variance, see :meth:`variance`.
        forces : bool, default=True
            Compute the force variances (in the arithmetic of ``precision``).
        virial : bool, default=False
            Compute the virial variances (always float64).
        precision : {"double", "mixed"}, default="double"
            Arithmetic of the force variances. ``"double"``: float64, the reference.
            ``"mixed"``: each descriptor gradient is projected on a float64 low-rank part
            of the sparse points and, in float32, on the residual
            (:func:`gapy.gp.design.split_points`); sums over centres, priors and the
            projection on the posterior factor stay float64. Force stds within ~0.5 % of
            ``"double"``, ~1.25x faster (their largest product 2x faster; see
            ``docs/gp.md``). ``GAPRegressor(force_std_precision=...)`` passes it.
        name : str, optional
            The structure, named in a warning of negative variances (:meth:`variance`).

        Returns
        -------
        dict of str to ndarray
            ``"forces"`` (n_atoms, 3) in (eV/A)^2 and ``"virial"`` (6,) in eV^2, those
            asked for.

        Examples
        --------
        >>> import numpy as np
        >>> from ase.build import bulk
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> gp, soap, atoms = model.gp_, model.descriptor_, bulk("Si", cubic=True) * (2, 2, 2)
        >>> atoms.rattle(0.05, seed=0)
        >>> values, species = soap.compute(atoms), soap.species_indices(atoms)
        >>> _, factor = gp.local_kernel(values, species)
        >>> blocks = soap.gradient_blocks(atoms, strain=True, block_size=16)
        >>> variances = gp.gradient_variances(values, species, factor, blocks, "dtc", virial=True)
        >>> variances["forces"].shape, variances["virial"].shape
        ((64, 3), (6,))
        """
        check_variance_kind(kind)
        precision = check_force_std_precision(precision)
        split = self._split_points if precision == "mixed" else None
        if self.terms:
            raise ValueError("gradient_variances covers SOAP-only models; with extra terms use the rows of "
                             "the whole structure (rows and prior_variances with the terms' instances)")
        n_atoms, m = len(values), len(self.alpha)
        q0 = self.isolated
        out = {}
        if forces:
            out["forces"] = np.zeros((n_atoms, 3))
        if virial:
            virial_rows = np.zeros((6, m))
            strain = np.zeros((n_atoms, 6, values.shape[1])) if kind != "sor" else None
        for grad in blocks:
            targets = np.arange(n_atoms) if grad.targets is None else grad.targets
            rows = self.gradient_rows(factor, grad, n_atoms, split)
            if forces:
                prior = (force_prior_variance(values, species, grad, self.zeta, self.delta, q0)
                         if kind != "sor" else None)
                out["forces"][targets] = self.variance(rows["forces"].reshape(-1, m), kind, prior,
                                                       name=name).reshape(-1, 3)
            if virial:
                virial_rows += rows["virial"]
                if strain is not None:
                    strain[targets] = voigt_strain(grad.dstrain)
        if virial:
            prior = (virial_prior_variance(values, species, strain, self.zeta, self.delta, q0)
                     if strain is not None else None)
            out["virial"] = self.variance(virial_rows, kind, prior, name=name)
        return out

    def predict(self, rows: np.ndarray, prior: Optional[np.ndarray] = None,
                kind: Optional[str] = None) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """Mean, and with ``kind`` the variance, of observations with kernel rows ``rows``.

        Parameters
        ----------
        rows : ndarray of shape (n, M)
            Kernel rows of the observations, e.g. from :meth:`rows` (one row, shape
            (M,), is accepted).
        prior : ndarray of shape (n,), optional
            Prior variances ``k**``; needed for the ``"dtc"`` and ``"local"`` kinds.
        kind : {"sor", "dtc", "local"}, optional
            Kind of variance (see :meth:`variance`); ``None``: the mean only.

        Returns
        -------
        mean : ndarray of shape (n,)
            ``rows @ alpha``: the predictions (eV for energies, without ``e0``; eV/A for
            forces; eV for virials).
        variance : ndarray of shape (n,)
            Their predictive variances (squared units); only with ``kind``.

        Raises
        ------
        ValueError
            An unknown ``kind``, or ``"dtc"`` or ``"local"`` without ``prior``.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> gp, atoms = model.gp_, bulk("Si", cubic=True)
        >>> values, grad = model.descriptor_.compute(atoms, gradients=True)
        >>> species = model.descriptor_.species_indices(atoms)
        >>> rows = gp.rows(values, species)["energies"]
        >>> prior = gp.prior_variances(values, species, quantities=["energies"])["energies"]
        >>> mean, variance = gp.predict(rows, prior, kind="dtc")
        >>> mean.shape, variance.shape
        ((8,), (8,))
        """
        rows = np.atleast_2d(rows)
        mean = rows @ self.alpha
        if kind is None:
            return mean
        return mean, self.variance(rows, kind, prior)

    def variance(self, rows: np.ndarray, kind: str = "sor", prior=None, *, name: Optional[str] = None) -> np.ndarray:
        """Predictive variance of observations with kernel rows ``rows`` (n, M).

        Parameters
        ----------
        rows : ndarray of shape (n, M)
            Kernel rows of the observations, e.g. from :meth:`rows`.
        kind : {"sor", "dtc", "local"}, default="sor"
            ``"sor"``: ``k* Sigma k*^T`` with ``Sigma = (K_MM + K_MN Lambda^-1 K_NM)^-1``,
            the posterior variance of the projected process (subset of regressors);
            ``"local"``: the Nystrom residual ``k** - k* K_MM^-1 k*^T`` (QUIP's
            ``local_gap_variance``); ``"dtc"``: their sum.
        prior : ndarray of shape (n,), optional
            Prior variances ``k**``; needed for ``"dtc"`` and ``"local"``.
        name : str, optional
            What the rows belong to (a structure), named in the warning below.

        Returns
        -------
        ndarray of shape (n,)
            Variances (eV^2 for energies). Negative values, which only round-off can
            produce, are set to zero, with a ``RuntimeWarning`` when they exceed
            :data:`NEGATIVE_VARIANCE_TOLERANCE` times the largest prior of the rows
            (at least ``1e-6 delta^2``, the largest delta of SOAP and the terms).

        Raises
        ------
        ValueError
            An unknown ``kind``, or ``"dtc"`` or ``"local"`` without ``prior``.

        Warns
        -----
        RuntimeWarning
            Significantly negative variances were set to zero (ill-conditioned ``K_MM``).

        References
        ----------
        J. Quiñonero-Candela and C. E. Rasmussen, "A unifying view of sparse approximate
        Gaussian process regression", J. Mach. Learn. Res. 6, 1939 (2005).

        F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
        uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
        906 (2019).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.datasets import load_si
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(load_si("train")[:4])
        >>> gp, atoms = model.gp_, bulk("Si", cubic=True)
        >>> values, grad = model.descriptor_.compute(atoms, gradients=True)
        >>> species = model.descriptor_.species_indices(atoms)
        >>> import numpy as np
        >>> rows = gp.rows(values, species)["energies"]
        >>> prior = gp.prior_variances(values, species, quantities=["energies"])["energies"]
        >>> dtc = gp.variance(rows, "dtc", prior)
        >>> bool(np.allclose(dtc, gp.variance(rows, "sor") + gp.variance(rows, "local", prior)))
        True
        """
        check_variance_kind(kind)
        rows = np.atleast_2d(rows)
        if kind == "sor":
            return _squared_norms_of_products(rows, self._inverse_r)  # |R^-T k|^2 = k Sigma k^T
        if prior is None:
            raise ValueError(f"variance kind {kind!r} needs the prior variances")
        prior = np.asarray(prior, dtype=float)
        # local: |L^-1 k|^2 = k K_MM^-1 k^T; dtc: k (K_MM^-1 - Sigma) k^T in one product
        explained = _squared_norms_of_products(rows, self._inverse_l.T if kind == "local" else self._dtc_factor)
        out = prior - explained
        # (round-off scales with the largest delta: a 2-body term's can be 60x SOAP's)
        delta = max([self.delta] + [term.delta for term in self.terms])
        scale = max(np.abs(prior).max(), explained.max(), 1e-6 * delta**2)
        significant = out < -NEGATIVE_VARIANCE_TOLERANCE * scale
        if significant.any():
            warnings.warn(
                f"{name + ': ' if name else ''}{significant.sum()} predicted variances were negative (down to "
                f"{out.min():.3g}) and were set to zero: K_MM is ill-conditioned; increase sparse_jitter",
                RuntimeWarning, stacklevel=2,
            )
        return np.maximum(out, 0.0)
