"""Pair-distance (2-body) descriptor, as QUIP's ``distance_2b``."""

from typing import Optional

import numpy as np
from ase import Atoms

from ..structures import neighbor_pairs
from .instances import (
    GradientsArg,
    InstanceDescriptor,
    Instances,
    cosine_cutoff,
    parse_gradients,
    unordered_pair_index,
)


class TwoBody(InstanceDescriptor):
    """Every pair of atoms closer than ``r_cut``, described by its distance.

    Each pair ``i-j`` (periodic images included, an atom and its own image too) is one
    instance, counted once. Its single feature is the distance ``r`` (Angstrom), its
    class the unordered pair of species and its weight the cosine cutoff ``f_c(r)``,
    which is 1 below ``r_cut - cutoff_width`` and falls smoothly to 0 at ``r_cut``. A
    pair's energy ``f_c(r) g(r)`` goes half to each of its two atoms.

    Parameters
    ----------
    species : sequence of str or int
        Every chemical species that may occur, as symbols or atomic numbers.
    r_cut : float, default=5.0
        Cutoff radius in Angstrom.
    cutoff_width : float, default=1.0
        Width of the cosine transition below ``r_cut``, in Angstrom;
        ``0 < cutoff_width <= r_cut``.

    Attributes
    ----------
    atomic_numbers : ndarray of int
        Sorted atomic numbers of ``species``.

    References
    ----------
    Bartok and Csanyi, "Gaussian approximation potentials: a brief tutorial
    introduction", Int. J. Quantum Chem. 115, 1051 (2015).

    Examples
    --------
    >>> from ase import Atoms
    >>> pairs = TwoBody(["Si"], r_cut=3.0).compute(Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.0]]))
    >>> pairs.values.tolist(), pairs.atoms.tolist()
    ([[2.0]], [[0, 1]])
    """

    _name = "2-body"

    @property
    def n_features(self) -> int:
        """Number of features: 1 (the distance).

        Examples
        --------
        >>> TwoBody(["Si"]).n_features
        1
        """
        return 1

    @property
    def feature_names(self) -> list:
        """Names of the features.

        Examples
        --------
        >>> TwoBody(["Si"]).feature_names
        ['r']
        """
        return ["r"]

    @property
    def n_classes(self) -> int:
        """Number of classes: unordered species pairs, ``n (n + 1) / 2``.

        Examples
        --------
        >>> TwoBody(["Si"]).n_classes, TwoBody(["Si", "C"]).n_classes
        (1, 3)
        """
        n = self.n_species
        return n * (n + 1) // 2

    def class_labels(self) -> np.ndarray:
        """Atomic numbers of each class, ndarray of int of shape (n_classes, 2), ``Z1 <= Z2``.

        Returns
        -------
        ndarray of int of shape (n_classes, 2)
            Row ``c`` holds the atomic numbers ``(Z1, Z2)`` of class ``c`` (the value in
            ``Instances.classes``), ``Z1 <= Z2``.

        Examples
        --------
        >>> TwoBody(["Si", "C"]).class_labels().tolist()  # C-C, C-Si, Si-Si
        [[6, 6], [6, 14], [14, 14]]
        """
        z = self.atomic_numbers
        return np.array([(z[a], z[b]) for a in range(len(z)) for b in range(a, len(z))], dtype=np.int64)

    def compute(self, atoms: Atoms, gradients: GradientsArg = False, *,
                index: Optional[int] = None) -> Instances:
        """Pairs of one structure, and optionally their gradients.

        Parameters
        ----------
        atoms : ase.Atoms
            Periodic, partly periodic or isolated structure.
        gradients : bool, str or sequence of str, default=False
            ``True`` for position and strain gradients, ``"positions"`` for position
            gradients only, ``("positions", "strain")`` for both.
        index : int, optional
            Index of the structure in a data set, used in error messages.

        Returns
        -------
        Instances
            ``values`` of shape (n_pairs, 1) in Angstrom, ``atoms`` of shape
            (n_pairs, 2) with ``i <= j``, ``energy_shares = [0.5, 0.5]``; the gradient
            fields are set as asked.

        Raises
        ------
        StructureError
            Unknown species, non-finite positions, degenerate cell, overlapping atoms.
        ValueError
            An unknown ``gradients`` value.

        Examples
        --------
        >>> from ase import Atoms
        >>> dimer = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.5]])
        >>> pairs = TwoBody(["Si"], r_cut=3.0, cutoff_width=1.0).compute(dimer, gradients=True)
        >>> pairs.values.tolist(), pairs.weights.round(3).tolist()  # in the cosine transition
        ([[2.5]], [0.5])
        >>> pairs.dvalues.shape, pairs.dvalues_strain.shape
        ((1, 2, 3, 1), (1, 3, 3, 1))
        """
        with_gradients, with_strain = parse_gradients(gradients)
        species = self.species_indices(atoms, index)
        pairs = neighbor_pairs(atoms, float(self.r_cut), index)
        first, second, vectors = pairs.centers, pairs.neighbors, pairs.vectors
        # each pair appears as (i, j, v) and (j, i, -v): keep i < j, and for an atom's
        # own image (i == i) the copy whose vector is lexicographically positive (the
        # negated vector is exact, so exactly one copy passes)
        positive = (vectors[:, 0] > 0) | (
            (vectors[:, 0] == 0) & ((vectors[:, 1] > 0) | ((vectors[:, 1] == 0) & (vectors[:, 2] > 0)))
        )
        keep = (first < second) | ((first == second) & positive)
        first, second, vectors = first[keep], second[keep], vectors[keep]
        distance = np.sqrt((vectors**2).sum(axis=1))
        weight, dweight = cosine_cutoff(distance, float(self.r_cut), float(self.cutoff_width))
        out = Instances(
            values=distance[:, None],
            classes=unordered_pair_index(species[first], species[second], self.n_species),
            weights=weight,
            atoms=np.stack([first, second], axis=1),
            energy_shares=np.array([0.5, 0.5]),
            n_atoms=len(atoms),
        )
        if not with_gradients:
            return out
        unit = vectors / distance[:, None]
        out.dvalues = np.stack([-unit, unit], axis=1)[:, :, :, None]
        out.dweights = out.dvalues[:, :, :, 0] * dweight[:, None, None]
        if with_strain:
            # the deformation maps v -> (1 + eps) v, so d r / d eps[a, b] = u_a v_b
            strain = unit[:, :, None] * vectors[:, None, :]
            out.dvalues_strain = strain[:, :, :, None]
            out.dweights_strain = strain * dweight[:, None, None]
        return out
