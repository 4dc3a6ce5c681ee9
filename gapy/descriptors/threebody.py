"""Triplet (3-body) descriptor, as QUIP's ``angle_3b``."""

from typing import Optional, Sequence, Union

import numpy as np
from ase import Atoms

from ..exceptions import StructureError
from ..structures import neighbor_pairs, structure_name
from ._threebody_numba import count_triplets, fill_triplets
from ..parallel import physical_memory
from .instances import (
    GradientsArg,
    InstanceDescriptor,
    Instances,
    cosine_cutoff,
    parse_gradients,
)


class ThreeBody(InstanceDescriptor):
    """Every triplet ``j-i-k`` of a centre ``i`` and two neighbours within ``r_cut``.

    For each atom ``i`` and each unordered pair of its neighbours ``j``, ``k`` (closer
    than ``r_cut`` to ``i``; periodic images included, each pair of neighbours once) the
    features are those of QUIP's ``angle_3b``, symmetric under ``j <-> k``::

        x = (r_ij + r_ik, (r_ij - r_ik)^2, r_jk)      (Angstrom, Angstrom^2, Angstrom)

    The weight is ``f_c(r_ij) f_c(r_ik)`` with the cosine cutoff of
    :class:`~gapy.descriptors.TwoBody`; the class is the centre's species and the
    unordered pair of neighbour species. A triplet's energy goes entirely to its centre.

    Parameters
    ----------
    species : sequence of str or int
        Every chemical species that may occur, as symbols or atomic numbers.
    r_cut : float, default=4.0
        Cutoff radius of ``r_ij`` and ``r_ik`` in Angstrom (``r_jk`` may reach ``2 r_cut``).
    cutoff_width : float, default=1.0
        Width of the cosine transition below ``r_cut``, in Angstrom;
        ``0 < cutoff_width <= r_cut``.

    Attributes
    ----------
    atomic_numbers : ndarray of int
        Sorted atomic numbers of ``species``.

    Notes
    -----
    The number of triplets grows as ``n_atoms * c (c - 1) / 2`` with ``c`` neighbours
    per atom: about 7,700 for 64 Si atoms at ``r_cut = 4`` (``c = 16``) and 24,000 at
    ``r_cut = 5.4`` (``c = 28``).

    Examples
    --------
    >>> from ase import Atoms
    >>> water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    >>> ThreeBody(["H", "O"], r_cut=2.0).compute(water).classes.tolist()  # H-O-H, O-H-H x2
    [3, 1, 1]
    """

    _name = "3-body"

    def __init__(
        self,
        species: Sequence[Union[str, int]],
        r_cut: float = 4.0,
        cutoff_width: float = 1.0,
    ):
        super().__init__(species, r_cut=r_cut, cutoff_width=cutoff_width)

    @property
    def n_features(self) -> int:
        """Number of features: 3.

        Examples
        --------
        >>> ThreeBody(["Si"]).n_features
        3
        """
        return 3

    @property
    def feature_names(self) -> list:
        """Names of the features.

        Examples
        --------
        >>> ThreeBody(["Si"]).feature_names
        ['r_ij + r_ik', '(r_ij - r_ik)^2', 'r_jk']
        """
        return ["r_ij + r_ik", "(r_ij - r_ik)^2", "r_jk"]

    @property
    def n_classes(self) -> int:
        """Number of classes: ``n * n (n + 1) / 2`` for ``n`` species.

        Examples
        --------
        >>> ThreeBody(["Si"]).n_classes, ThreeBody(["H", "O"]).n_classes
        (1, 6)
        """
        n = self.n_species
        return n * n * (n + 1) // 2

    def class_labels(self) -> np.ndarray:
        """Atomic numbers of each class, ndarray of int of shape (n_classes, 3).

        Returns
        -------
        ndarray of int of shape (n_classes, 3)
            Row ``c`` holds ``(Z_centre, Z1, Z2)`` of class ``c`` (the value in
            ``Instances.classes``): the centre's atomic number, then those of the two
            neighbours with ``Z1 <= Z2``.

        Examples
        --------
        >>> ThreeBody(["H", "O"]).class_labels().tolist()
        [[1, 1, 1], [1, 1, 8], [1, 8, 8], [8, 1, 1], [8, 1, 8], [8, 8, 8]]
        """
        z = self.atomic_numbers
        return np.array(
            [(z[c], z[a], z[b]) for c in range(len(z)) for a in range(len(z)) for b in range(a, len(z))],
            dtype=np.int64,
        )

    def compute(self, atoms: Atoms, gradients: GradientsArg = False, *,
                index: Optional[int] = None) -> Instances:
        """Triplets of one structure, and optionally their gradients.

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
            ``values`` of shape (n_triplets, 3), ``atoms`` of shape (n_triplets, 3) as
            ``(i, j, k)``, ``energy_shares = [1, 0, 0]``; gradient fields as asked.

        Raises
        ------
        StructureError
            Unknown species, non-finite positions, degenerate cell, overlapping atoms, or
            more triplets than half of the machine's memory holds.
        ValueError
            An unknown ``gradients`` value.

        Examples
        --------
        >>> from ase import Atoms
        >>> water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        >>> triplets = ThreeBody(["H", "O"], r_cut=2.0).compute(water, gradients="positions")
        >>> triplets.atoms.tolist()  # (centre, j, k)
        [[0, 1, 2], [1, 0, 2], [2, 0, 1]]
        >>> triplets.values.shape, triplets.dvalues.shape
        ((3, 3), (3, 3, 3, 3))
        """
        with_gradients, with_strain = parse_gradients(gradients)
        species = self.species_indices(atoms, index)
        pairs = neighbor_pairs(atoms, float(self.r_cut), index)
        distances = np.sqrt((pairs.vectors**2).sum(axis=1))
        cutoff, dcutoff = cosine_cutoff(distances, float(self.r_cut), float(self.cutoff_width))
        n = int(count_triplets(pairs.offsets))
        self._check_memory(atoms, index, n, with_gradients, with_strain)
        n_grad = n if with_gradients else 0
        n_strain = n if with_strain else 0
        values = np.empty((n, 3))
        classes = np.empty(n, dtype=np.int64)
        weights = np.empty(n)
        triplet_atoms = np.empty((n, 3), dtype=np.int64)
        dvalues = np.empty((n_grad, 3, 3, 3))
        dweights = np.empty((n_grad, 3, 3))
        dvalues_strain = np.empty((n_strain, 3, 3, 3))
        dweights_strain = np.empty((n_strain, 3, 3))
        fill_triplets(
            pairs.offsets, pairs.neighbors, np.ascontiguousarray(pairs.vectors), distances, cutoff,
            dcutoff, species.astype(np.int64), self.n_species, with_gradients, with_strain, values,
            classes, weights, triplet_atoms, dvalues, dweights, dvalues_strain, dweights_strain,
        )
        return Instances(
            values=values,
            classes=classes,
            weights=weights,
            atoms=triplet_atoms,
            energy_shares=np.array([1.0, 0.0, 0.0]),
            n_atoms=len(atoms),
            dvalues=dvalues if with_gradients else None,
            dweights=dweights if with_gradients else None,
            dvalues_strain=dvalues_strain if with_strain else None,
            dweights_strain=dweights_strain if with_strain else None,
        )

    def _check_memory(self, atoms: Atoms, index: Optional[int], n_triplets: int, with_gradients: bool,
                      with_strain: bool) -> None:
        """Refuse a structure whose triplets (and their gradients) would not fit in memory."""
        per_triplet = 64 + (288 if with_gradients else 0) + (288 if with_strain else 0)  # bytes
        needed = n_triplets * per_triplet
        budget = physical_memory() / 2
        if needed > budget:
            raise StructureError(
                f"{structure_name(atoms, index)}: r_cut={self.r_cut} A gives {n_triplets:,} triplets, "
                f"{needed / 2**30:,.1f} GiB{' with gradients' if with_gradients else ''}, more than half of "
                f"this machine's memory ({2 * budget / 2**30:.0f} GiB); use a shorter 3-body cutoff "
                "(typically 3-4 A)"
            )

