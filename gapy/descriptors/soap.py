"""SOAP power-spectrum descriptor with analytic position and strain gradients."""

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from joblib import effective_n_jobs
from tqdm.auto import tqdm

from ..exceptions import StructureError
from ..parallel import physical_memory, thread_map
from ..structures import (check_geometry, check_species, neighbor_pairs, spatial_blocks, species_indices,
                          structure_name)
from .._validation import check_choice, check_integer, check_number
from ._radial import RADIAL_BASES, radial_spline
from ._soap_numba import block_gradient_rows, compute_soap, contract_soap_gradients, gradient_rows
from ._ylm import solid_harmonic_prefactors

GradientsArg = Union[bool, str, Sequence[str]]


#: Grid points per Angstrom of the radial-integral spline table.
SPLINE_POINTS_PER_A = 100
#: Smallest Gaussian width (Angstrom) that table resolves (five grid steps).
MIN_ATOM_SIGMA = 5.0 / SPLINE_POINTS_PER_A
#: Memory for the position gradients of one block of :meth:`SOAP.gradient_blocks`.
GRADIENT_BLOCK_BYTES = 2**25

@dataclass
class SOAPGradients:
    """Sparse gradients of SOAP features of one structure.

    Returned by :meth:`SOAP.compute` with ``gradients``; every parameter is stored as an
    attribute of the same name.

    Parameters
    ----------
    centers : ndarray of int of shape (n_pairs,)
        Row ``k`` holds the derivative of the features of atom ``centers[k]`` with
        respect to the position of atom ``neighbors[k]`` (each atom's own position
        included). Sorted by centre, then neighbour.
    neighbors : ndarray of int of shape (n_pairs,)
        The atom whose position is varied in row ``k``; each (centre, neighbour) pair
        appears once, periodic images summed.
    dpos : ndarray of shape (n_pairs, 3, n_features)
        ``dpos[k, a] = d values[centers[k]] / d positions[neighbors[k], a]`` (1/Angstrom).
    dstrain : ndarray of shape (n_atoms, 3, 3, n_features) or None
        ``dstrain[i, a, b] = d values[i] / d epsilon[a, b]`` under the homogeneous
        deformation ``r -> (1 + epsilon) r`` of positions and cell. ``None`` unless
        strain gradients were asked for.
    targets : ndarray of int of shape (n_targets,) or None, default=None
        Gradients of one block of atoms (:meth:`SOAP.gradient_blocks`): only the
        positions of the atoms ``targets`` are varied, ``neighbors[k]`` is a place in
        ``targets``, and ``dstrain`` has the rows of the atoms ``targets``. ``None``:
        every atom.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from gapy import SOAP
    >>> values, grad = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3).compute(bulk("Si"), gradients=True)
    >>> grad.centers.tolist(), grad.neighbors.tolist()
    ([0, 0, 1, 1], [0, 1, 0, 1])
    >>> grad.dpos.shape, grad.dstrain.shape
    ((4, 3, 40), (2, 3, 3, 40))
    """

    centers: np.ndarray
    neighbors: np.ndarray
    dpos: np.ndarray
    dstrain: Optional[np.ndarray]
    targets: Optional[np.ndarray] = None

    def dense(self, n_atoms: int) -> np.ndarray:
        """Position gradients as a dense array of shape (n_atoms, n_atoms, 3, n_features).

        Meant for tests and small structures: memory grows as ``n_atoms^2``.

        Parameters
        ----------
        n_atoms : int
            Number of atoms of the structure.

        Returns
        -------
        ndarray of shape (n_atoms, n_atoms, 3, n_features)
            ``out[i, j, a] = d values[i] / d positions[j, a]`` (1/Angstrom), zero for
            atoms ``j`` outside the cutoff of ``i``.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> values, grad = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3).compute(bulk("Si"), gradients="positions")
        >>> grad.dense(2).shape
        (2, 2, 3, 40)
        """
        out = np.zeros((n_atoms, n_atoms, 3, self.dpos.shape[2]))
        out[self.centers, self.neighbors] = self.dpos
        return out


@lru_cache(maxsize=16)
def _radial_table(n_max, l_max, r_cut, atom_sigma, basis):
    return radial_spline(n_max, l_max, r_cut, atom_sigma, basis, SPLINE_POINTS_PER_A)


def _parse_gradients(gradients: GradientsArg) -> Tuple[bool, bool]:
    """Map the ``gradients`` argument to (positions, strain) flags."""
    if gradients is True:
        return True, True
    if gradients is False or gradients is None:
        return False, False
    names = {gradients} if isinstance(gradients, str) else set(gradients)
    unknown = names - {"positions", "strain"}
    if unknown:
        raise ValueError(
            f"gradients must be True, False, 'positions' or ('positions', 'strain'); "
            f"got unknown {sorted(unknown)}"
        )
    return True, "strain" in names


class SOAP:
    """Smooth Overlap of Atomic Positions power spectrum (Bartok et al. 2013).

    The neighbour density of each atom, a sum of Gaussians of width ``atom_sigma`` times
    a smooth cosine cutoff, is expanded on an orthonormalised radial basis (see
    ``radial_basis``) and real spherical harmonics; the features are the rotationally
    invariant power spectrum, one block per pair of neighbour species. See
    ``docs/soap.md`` for the formulas.

    Parameters
    ----------
    species : sequence of str or int
        Every chemical species that may occur, as symbols or atomic numbers.
    r_cut : float, default=5.0
        Cutoff radius in Angstrom.
    n_max : int, default=8
        Number of radial basis functions.
    l_max : int, default=6
        Largest angular momentum of the spherical harmonics.
    atom_sigma : float, default=0.5
        Width of the Gaussian on each neighbour, in Angstrom.
    cutoff_width : float, default=0.5
        Width of the cosine transition below ``r_cut`` (QUIP's
        ``cutoff_transition_width``), in Angstrom; ``0 < cutoff_width <= r_cut``.
    center_weight : float, default=1.0
        Weight of the central atom's own Gaussian in its density (QUIP's
        ``central_weight``).
    normalize : bool, default=True
        Divide each atom's feature vector by its Euclidean norm.
    radial_basis : {"gaussian", "gto"}, default="gaussian"
        Radial functions before orthonormalisation: equispaced Gaussians of width
        ``atom_sigma`` (as QUIP) or Gaussian-type orbitals ``r^n exp(-r^2/2 sigma_n^2)``.
    scaling_radius : float, optional
        Radial scaling of the neighbour density (Willatt et al. 2018): each neighbour's
        Gaussian is weighted by ``1 / (1 + (r / scaling_radius)^scaling_exponent)``, so
        that the many distant neighbours do not outweigh the few near ones. ``None``
        (default): no scaling, as QUIP's SOAP. dscribe's ``weighting={"function": "pow",
        "r0": scaling_radius, "m": scaling_exponent, "c": 1, "d": 1}``.
    scaling_exponent : float, default=4.0
        Exponent of the radial scaling (used with ``scaling_radius``).

    Attributes
    ----------
    atomic_numbers : ndarray of int of shape (n_species,)
        The atomic numbers of ``species``, sorted: the order of the species indices and
        of the feature blocks.

    Raises
    ------
    TypeError
        A numeric parameter is not a number.
    ValueError
        No species, duplicate or unknown species, or a parameter out of range
        (``n_max`` and ``l_max`` at most 20, ``atom_sigma`` at least 0.05 A,
        ``cutoff_width`` at most ``r_cut``).

    See Also
    --------
    gapy.GAPRegressor : The potential fitted on these features.

    References
    ----------
    A. P. Bartók, R. Kondor and G. Csányi, "On representing chemical environments",
    Phys. Rev. B 87, 184115 (2013).

    M. J. Willatt, F. Musil and M. Ceriotti, "Feature optimization for atomistic machine
    learning yields a data-driven construction of the periodic table of the elements",
    Phys. Chem. Chem. Phys. 20, 29661 (2018).

    Examples
    --------
    >>> from ase.build import bulk
    >>> from gapy import SOAP
    >>> soap = SOAP(species=["Si"], r_cut=4.0, n_max=4, l_max=3)
    >>> soap.compute(bulk("Si")).shape
    (2, 40)
    """

    def __init__(
        self,
        species: Sequence[Union[str, int]],
        r_cut: float = 5.0,
        n_max: int = 8,
        l_max: int = 6,
        atom_sigma: float = 0.5,
        cutoff_width: float = 0.5,
        center_weight: float = 1.0,
        normalize: bool = True,
        radial_basis: str = "gaussian",
        scaling_radius: Optional[float] = None,
        scaling_exponent: float = 4.0,
    ):
        numbers = check_species(species)
        check_number("r_cut", r_cut, low=0.0)
        check_integer("n_max", n_max, low=1, high=20)
        check_integer("l_max", l_max, low=0, high=20)
        check_number("atom_sigma", atom_sigma, low=0.0)
        if atom_sigma < MIN_ATOM_SIGMA:
            raise ValueError(
                f"atom_sigma={atom_sigma} A is below {MIN_ATOM_SIGMA} A: the radial integrals are tabulated "
                f"every {1 / SPLINE_POINTS_PER_A:g} A and cannot resolve narrower Gaussians (their quadrature "
                f"would also need {int(8 * (r_cut + 10 * atom_sigma) / atom_sigma):,} nodes); typical values "
                "are 0.3-0.7 A"
            )
        check_number("cutoff_width", cutoff_width, low=0.0)
        if cutoff_width > r_cut:
            raise ValueError(f"cutoff_width={cutoff_width} must not exceed r_cut={r_cut}")
        check_number("center_weight", center_weight)
        check_choice("radial_basis", radial_basis, RADIAL_BASES)
        if scaling_radius is not None:
            check_number("scaling_radius", scaling_radius, low=0.0)
        check_number("scaling_exponent", scaling_exponent, low=0.0)
        # stored as given, so that scikit-learn's clone() sees the same objects
        self.species = species
        self.r_cut = r_cut
        self.n_max = n_max
        self.l_max = l_max
        self.atom_sigma = atom_sigma
        self.cutoff_width = cutoff_width
        self.center_weight = center_weight
        self.normalize = normalize
        self.radial_basis = radial_basis
        self.scaling_radius = scaling_radius
        self.scaling_exponent = scaling_exponent
        self.atomic_numbers = np.array(sorted(numbers))

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments, so that ``SOAP(**soap.get_params())`` is a copy.

        Together with :meth:`set_params` this lets scikit-learn clone, grid-search
        (``descriptor__r_cut``) and print a ``GAPRegressor`` holding a ``SOAP``.

        Parameters
        ----------
        deep : bool, default=True
            Ignored: a ``SOAP`` holds no nested estimators (scikit-learn's signature).

        Returns
        -------
        dict
            Parameter name to value, as given to the constructor.

        Examples
        --------
        >>> from gapy import SOAP
        >>> soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
        >>> SOAP(**soap.get_params()) == soap
        True
        >>> soap.get_params()["r_cut"]
        4.0
        """
        return {
            "species": self.species,
            "r_cut": self.r_cut,
            "n_max": self.n_max,
            "l_max": self.l_max,
            "atom_sigma": self.atom_sigma,
            "cutoff_width": self.cutoff_width,
            "center_weight": self.center_weight,
            "normalize": self.normalize,
            "radial_basis": self.radial_basis,
            "scaling_radius": self.scaling_radius,
            "scaling_exponent": self.scaling_exponent,
        }

    def set_params(self, **params) -> "SOAP":
        """Change settings (validated as in the constructor); returns ``self``.

        Parameters
        ----------
        **params
            Constructor parameters to change (``r_cut=5.0``, ...).

        Returns
        -------
        SOAP
            ``self``, changed.

        Raises
        ------
        ValueError
            An unknown parameter, or a value the constructor rejects.
        TypeError
            A numeric parameter is not a number.

        Examples
        --------
        >>> from gapy import SOAP
        >>> SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3).set_params(r_cut=5.0).r_cut
        5.0
        """
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise ValueError(f"SOAP has no parameters {sorted(unknown)}")
        self.__init__(**{**self.get_params(), **params})
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"SOAP({args})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SOAP) and _canonical(self) == _canonical(other)

    __hash__ = None

    @property
    def n_features(self) -> int:
        """Number of features: ``K (K + 1) / 2 * (l_max + 1)`` with ``K = n_species n_max``.

        Examples
        --------
        >>> from gapy import SOAP
        >>> SOAP(["Si"], n_max=4, l_max=3).n_features, SOAP(["Si", "Ge"], n_max=4, l_max=3).n_features
        (40, 144)
        """
        n_channels = len(self.atomic_numbers) * self.n_max
        return n_channels * (n_channels + 1) // 2 * (self.l_max + 1)

    def feature_labels(self) -> np.ndarray:
        """Feature labels, ndarray of shape (n_features, 5): ``(Z1, n1, Z2, n2, l)``.

        Returns
        -------
        ndarray of int of shape (n_features, 5)
            For each feature, the atomic numbers and radial indices of its two density
            channels (``(Z1, n1) <= (Z2, n2)``) and its angular momentum ``l``, in the
            order of the feature vectors.

        Examples
        --------
        >>> from gapy import SOAP
        >>> SOAP(["Si"], n_max=4, l_max=3).feature_labels()[:3].tolist()
        [[14, 0, 14, 0, 0], [14, 0, 14, 0, 1], [14, 0, 14, 0, 2]]
        """
        labels = []
        n_channels = len(self.atomic_numbers) * self.n_max
        for k1 in range(n_channels):
            for k2 in range(k1, n_channels):
                for l in range(self.l_max + 1):
                    z1, n1 = self.atomic_numbers[k1 // self.n_max], k1 % self.n_max
                    z2, n2 = self.atomic_numbers[k2 // self.n_max], k2 % self.n_max
                    labels.append((z1, n1, z2, n2, l))
        return np.array(labels, dtype=np.int64)

    def species_indices(self, atoms: Atoms, index: Optional[int] = None) -> np.ndarray:
        """Index of each atom's species in ``atomic_numbers``, with a clear error.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure.
        index : int, optional
            The structure's place in a data set; only serves the error message.

        Returns
        -------
        ndarray of int of shape (n_atoms,)
            Position of each atom's atomic number in :attr:`atomic_numbers` (sorted).

        Raises
        ------
        TypeError
            ``atoms`` is not an ``ase.Atoms``.
        gapy.StructureError
            An atom's species is not among ``species``.

        Examples
        --------
        >>> from ase.build import molecule
        >>> from gapy import SOAP
        >>> SOAP(["O", "H"]).species_indices(molecule("H2O"))  # H (Z=1) is 0, O (Z=8) is 1
        array([1, 0, 0])
        """
        return species_indices(atoms, self.atomic_numbers, "SOAP", index, self.species)

    def compute(
        self,
        atoms: Atoms,
        gradients: GradientsArg = False,
        n_jobs: int = 1,
        *,
        index: Optional[int] = None,
    ):
        """SOAP features of every atom of one structure, and optionally their gradients.

        Parameters
        ----------
        atoms : ase.Atoms
            Periodic, partly periodic or isolated structure.
        gradients : bool, str or sequence of str, default=False
            ``True`` for position and strain gradients, ``"positions"`` for position
            gradients only, ``("positions", "strain")`` for both.
        n_jobs : int, default=1
            Threads splitting the atoms of this structure.
        index : int, optional
            Index of the structure in a data set, used in error messages.

        Returns
        -------
        values : ndarray of shape (n_atoms, n_features)
            Features of each atom (dimensionless; unit vectors with ``normalize``).
        gradients : SOAPGradients
            Only when ``gradients`` is not False.

        Raises
        ------
        TypeError
            ``atoms`` is not an ``ase.Atoms``.
        ValueError
            ``gradients`` names something other than ``"positions"`` and ``"strain"``.
        gapy.StructureError
            Unknown species, no atoms, non-finite positions, degenerate cell, overlapping
            atoms, or a neighbour list too large for half the machine's memory.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
        >>> values, grad = soap.compute(bulk("Si", cubic=True), gradients="positions")
        >>> values.shape, grad.dstrain is None
        ((8, 40), True)
        """
        with_gradients, with_strain = _parse_gradients(gradients)
        species = self.species_indices(atoms, index)
        self._check_size(atoms, index, with_gradients)
        pairs = neighbor_pairs(atoms, float(self.r_cut), index)
        n_atoms = len(atoms)
        n_features = self.n_features

        if with_gradients:
            row_centers, row_neighbors, pair_rows, self_rows = gradient_rows(
                pairs.offsets, pairs.neighbors
            )
        else:
            row_centers = row_neighbors = np.zeros(0, dtype=np.int64)
            pair_rows = np.full(len(pairs.centers), -1, dtype=np.int64)
            self_rows = np.zeros(n_atoms, dtype=np.int64)

        values = np.empty((n_atoms, n_features))
        dpos = np.zeros((row_centers.size, 3, n_features))
        dstrain = np.zeros((n_atoms if with_strain else 0, 3, 3, n_features))
        strain_rows = np.arange(n_atoms) if with_strain else self_rows
        self._run(np.arange(n_atoms), pairs, species, pair_rows, self_rows, strain_rows,
                  with_gradients, with_strain, values, dpos, dstrain, n_jobs)
        if not with_gradients:
            return values
        grad = SOAPGradients(
            centers=row_centers,
            neighbors=row_neighbors,
            dpos=dpos,
            dstrain=dstrain if with_strain else None,
        )
        return values, grad

    def _run(self, centers, pairs, species, pair_rows, self_rows, strain_rows, with_gradients,
             with_strain, values, dpos, dstrain, n_jobs=1, known=None) -> None:
        """The numba kernel on the atoms ``centers``, split over ``n_jobs`` threads.

        ``known``: ``(coefficients, flags)`` keeping each centre's density expansion
        across calls (see :func:`compute_soap`); ``None``: nothing kept.
        """
        basis = self._basis()
        if known is None:
            known = (np.zeros((0, 1, 1)), np.zeros(0, dtype=np.bool_))

        def run(first: int, last: int) -> None:
            compute_soap(
                centers, first, last, pairs.offsets, pairs.vectors, species[pairs.neighbors],
                pair_rows, self_rows, strain_rows, species, len(self.atomic_numbers), basis,
                bool(self.normalize), with_gradients, with_strain, values, dpos, dstrain, *known,
            )

        if n_jobs == 1 or len(centers) < 2:
            run(0, len(centers))
        else:
            bounds = np.linspace(0, len(centers), effective_n_jobs(n_jobs) + 1).astype(int)
            thread_map(lambda part: run(*part), list(zip(bounds[:-1], bounds[1:])), n_jobs)

    def gradient_blocks(
        self,
        atoms: Atoms,
        strain: bool = False,
        block_size: Optional[int] = None,
        *,
        positions: bool = True,
        index: Optional[int] = None,
    ) -> Iterator[SOAPGradients]:
        """Descriptor gradients of a large structure, one block of atoms at a time.

        Each block holds the gradients of every atom's features with respect to the
        positions of the block's atoms (and, with ``strain``, the strain gradients of
        the block's atoms' features): what the force rows and force prior variances of
        those atoms need. Blocks are compact in space, so the centres of the halo (one
        cutoff around the block) stay few; each atom's density expansion is computed
        once and kept for the next blocks (``(l_max + 1)^2 x n_species n_max`` numbers
        per atom), and a halo centre differentiates it only with respect to its
        neighbours in the block. Memory is that of one block, whatever the size of the
        structure.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure.
        strain : bool, default=False
            Also the strain gradients ``dstrain`` of the block's atoms.
        block_size : int, optional
            Atoms per block; default: as many as fit in :data:`GRADIENT_BLOCK_BYTES` of
            position gradients (at least 8).
        positions : bool, default=True
            ``False``: no position gradients (``dpos`` empty), only strain gradients.
        index : int, optional
            The structure's place in a data set; only serves error messages.

        Yields
        ------
        SOAPGradients
            With ``targets`` (the block's atoms, each atom in exactly one block);
            ``neighbors`` are places in ``targets``.

        Raises
        ------
        ValueError
            Neither ``positions`` nor ``strain``.
        gapy.StructureError
            As :meth:`compute`.

        Examples
        --------
        >>> import numpy as np
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
        >>> atoms = bulk("Si", cubic=True) * (2, 2, 2)
        >>> blocks = list(soap.gradient_blocks(atoms, block_size=16))
        >>> len(blocks), sorted(np.concatenate([b.targets for b in blocks]).tolist()) == list(range(64))
        (8, True)
        """
        if not (positions or strain):
            raise ValueError("gradient_blocks needs positions=True or strain=True")
        species = self.species_indices(atoms, index)
        self._check_size(atoms, index, False)
        pairs = neighbor_pairs(atoms, float(self.r_cut), index)
        n_atoms, n_features = len(atoms), self.n_features
        if block_size is None:
            rows_per_atom = len(pairs.centers) / n_atoms + 1
            block_size = max(8, int(GRADIENT_BLOCK_BYTES / (rows_per_atom * 3 * n_features * 8)))
        block_size = check_integer("block_size", block_size)
        values = np.empty((n_atoms, n_features))  # scratch: the kernel recomputes the centres' features
        # each atom's density expansion, kept for the blocks whose halo it is in
        n_lm, n_channels = (int(self.l_max) + 1) ** 2, len(self.atomic_numbers) * int(self.n_max)
        known = (np.empty((n_atoms, n_lm, n_channels)), np.zeros(n_atoms, dtype=np.bool_))
        target_index = np.full(n_atoms, -1)
        for targets in spatial_blocks(atoms, block_size):
            target_index[targets] = np.arange(len(targets))
            if positions:
                centers, row_centers, row_neighbors, pair_rows, self_rows = block_gradient_rows(
                    pairs.offsets, pairs.neighbors, target_index)
            else:
                centers, row_centers, row_neighbors = targets, np.zeros(0, dtype=int), np.zeros(0, dtype=int)
                pair_rows, self_rows = np.full(len(pairs.centers), -2), np.full(n_atoms, -1)
            strain_rows = target_index if strain else self_rows
            dpos = np.zeros((row_centers.size, 3, n_features))
            dstrain = np.zeros((len(targets) if strain else 0, 3, 3, n_features))
            self._run(centers, pairs, species, pair_rows, self_rows, strain_rows, True, strain,
                      values, dpos, dstrain, known=known)
            target_index[targets] = -1
            yield SOAPGradients(centers=row_centers, neighbors=row_neighbors, dpos=dpos,
                                dstrain=dstrain if strain else None, targets=targets)

    def _check_size(self, atoms: Atoms, index: Optional[int], with_gradients: bool) -> None:
        """Refuse a structure whose neighbour list (and gradients) could not fit in memory."""
        check_geometry(atoms, index)
        n_atoms = len(atoms)
        if atoms.pbc.all():
            volume = abs(atoms.cell.volume)
            pairs = n_atoms * (n_atoms / volume) * 4.0 / 3.0 * np.pi * float(self.r_cut) ** 3
        elif not atoms.pbc.any():
            pairs = float(n_atoms) * (n_atoms - 1)
        else:
            return  # partly periodic: no cheap estimate; vesin reports what it cannot allocate
        per_pair = 64 + (3 * self.n_features * 8 if with_gradients else 0)
        needed = pairs * per_pair
        budget = physical_memory() / 2
        if needed > budget:
            raise StructureError(
                f"{structure_name(atoms, index)}: r_cut={self.r_cut} A gives about {pairs:,.0f} neighbour pairs, "
                f"{needed / 2**30:,.1f} GiB{' with gradients' if with_gradients else ''}, more than half of this "
                f"machine's memory ({2 * budget / 2**30:.0f} GiB); use a cutoff of a few Angstrom (typically 4-6 A)"
            )

    def _basis(self) -> tuple:
        """Arguments of the numba kernels that define the expansion."""
        coefficients, step = _radial_table(
            int(self.n_max), int(self.l_max), float(self.r_cut), float(self.atom_sigma),
            self.radial_basis,
        )
        prefactors = solid_harmonic_prefactors(int(self.l_max))
        scaling_radius = 0.0 if self.scaling_radius is None else float(self.scaling_radius)
        return (coefficients, step, prefactors, float(self.r_cut), float(self.cutoff_width),
                float(self.center_weight), scaling_radius, float(self.scaling_exponent))

    def contract_gradients(self, atoms: Atoms, weights: np.ndarray, *, index: Optional[int] = None):
        """Forces and virial of an energy ``E = sum_i e(values[i])`` in reverse mode.

        No gradient array is formed: the cost is that of one :meth:`compute`, and the
        memory that of the neighbour list.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure.
        weights : ndarray of shape (n_atoms, n_features)
            ``de / d values[i]`` for each atom.
        index : int, optional
            The structure's place in a data set; only serves error messages.

        Returns
        -------
        forces : ndarray of shape (n_atoms, 3)
            ``-dE / d positions`` (eV/A when ``E`` is in eV).
        virial : ndarray of shape (3, 3)
            ``-dE / d epsilon`` (eV); the ASE stress is ``-virial / volume``.

        Raises
        ------
        ValueError
            ``weights`` does not have shape (n_atoms, n_features).
        gapy.StructureError
            As :meth:`compute`.

        Examples
        --------
        >>> import numpy as np
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
        >>> atoms = bulk("Si")
        >>> forces, virial = soap.contract_gradients(atoms, np.ones((2, soap.n_features)))
        >>> bool(np.allclose(forces, 0.0)), virial.shape  # perfect crystal: no forces
        (True, (3, 3))
        """
        species = self.species_indices(atoms, index)
        self._check_size(atoms, index, False)
        pairs = neighbor_pairs(atoms, float(self.r_cut), index)
        weights = np.ascontiguousarray(weights, dtype=float)
        if weights.shape != (len(atoms), self.n_features):
            raise ValueError(
                f"weights must have shape {(len(atoms), self.n_features)}, got {weights.shape}"
            )
        forces = np.zeros((len(atoms), 3))
        virial = np.zeros((3, 3))
        contract_soap_gradients(
            pairs.offsets, pairs.vectors, species[pairs.neighbors], pairs.neighbors, species,
            len(self.atomic_numbers), self._basis(), bool(self.normalize), weights, forces, virial,
        )
        return forces, virial

    def compute_many(
        self,
        frames: Sequence[Atoms],
        gradients: GradientsArg = False,
        n_jobs: int = 1,
        progress: bool = False,
    ) -> List:
        """:meth:`compute` for each structure, in parallel threads.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            The structures (any iterable).
        gradients : bool, str or sequence of str, default=False
            As in :meth:`compute`.
        n_jobs : int, default=1
            Number of threads (``-1``: all cores). The numba kernels release the GIL.
        progress : bool, default=False
            Show a tqdm progress bar.

        Returns
        -------
        list
            One result of :meth:`compute` per structure, in order: ndarray of shape
            (n_atoms, n_features), or ``(values, SOAPGradients)`` with ``gradients``.

        Raises
        ------
        ValueError
            A bad ``gradients`` value (before any work).
        gapy.StructureError
            As :meth:`compute`, naming the structure by its index in ``frames``.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
        >>> [values.shape for values in soap.compute_many([bulk("Si"), bulk("Si", cubic=True)], n_jobs=2)]
        [(2, 40), (8, 40)]
        """
        frames = list(frames)
        _parse_gradients(gradients)
        bar = tqdm(total=len(frames), desc="SOAP", unit="structure", disable=not progress)
        with bar:
            return thread_map(
                lambda item: self.compute(item[1], gradients, index=item[0]),
                list(enumerate(frames)), n_jobs, bar,
            )


def _canonical(soap: SOAP) -> tuple:
    params = soap.get_params()
    params["species"] = tuple(soap.atomic_numbers)
    return tuple(sorted((k, v if k in ("species", "radial_basis") or v is None else float(v))
                        for k, v in params.items()))
