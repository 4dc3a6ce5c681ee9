"""Training-set coverage: PCA maps, kernel distances to the training set, GDF weights.

:class:`CoverageMap` projects SOAP vectors of atomic environments (or of whole
structures) on the principal components of a training set and measures how far each
new environment is from its nearest training environment; :func:`gdf_weights` and
:func:`structure_weights` give the Gaussian density function weights of Jeong et al.
(2018) that down-weight over-represented environments in a fit. Every pairwise quantity
is computed in chunks of rows, so memory stays ``O(chunk x n_reference)``, never
``O(N^2)``. Formulas in ``docs/coverage.md``.
"""

import csv
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from .descriptors import SOAP
from .exceptions import StructureError
from .structures import as_frames
from ._validation import check_choice, check_integer, check_number
from .kernels import check_zeta, kernel_distance_squared, mean_unit_rows
from .metrics import config_type_of
from .structures import atomic_number

#: Largest number of pair entries (rows x reference rows) held in memory at once
#: (2**22 float64 = 32 MiB per array).
CHUNK_ELEMENTS = 2**22

#: Default cap on the reference environments per species (see ``max_reference``).
MAX_REFERENCE = 20000

LEVELS = ("atoms", "structures")


def _chunks(n_rows: int, n_reference: int):
    """Slices of ``range(n_rows)`` with at most :data:`CHUNK_ELEMENTS` pair entries each."""
    step = max(1, CHUNK_ELEMENTS // max(1, n_reference))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def nearest_distance(
    values: np.ndarray,
    species: np.ndarray,
    reference: np.ndarray,
    reference_species: np.ndarray,
    zeta: int = 4,
    *,
    exclude: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Kernel distance of each row to its nearest reference row of the same species.

    ``d(q, x)^2 = k(q, q) + k(x, x) - 2 k(q, x)`` with ``k(q, x) = (q . x)^zeta``, i.e.
    ``sqrt(2 - 2 (q . x)^zeta)`` for normalised vectors (between 0 and ``sqrt(2)`` when
    ``q . x >= 0``). The kernel across species is zero, so only reference rows of the
    same species count. Computed in chunks of rows.

    Parameters
    ----------
    values : ndarray of shape (n, n_features)
        Query rows, e.g. SOAP vectors (normalised, as ``SOAP(normalize=True)`` gives).
    species : ndarray of int of shape (n,)
        Species label of each query row (any integer code, e.g. the descriptor's species
        index or the atomic number, as long as ``reference_species`` uses the same).
    reference : ndarray of shape (m, n_features)
        E.g. training environments, or a model's sparse points (``model.gp_.sparse``).
    reference_species : ndarray of int of shape (m,)
        Species label of each reference row.
    zeta : int, default=4
        Kernel exponent.
    exclude : ndarray of int of shape (n,), optional
        Reference row to ignore for each row (``-1``: none), for leave-one-out distances
        of the reference set itself.

    Returns
    -------
    distance : ndarray of shape (n,)
        Kernel distance (dimensionless) to the nearest reference row of the same
        species; ``inf`` where no reference row has the row's species.
    nearest : ndarray of int of shape (n,)
        Index of the nearest reference row, ``-1`` where there is none.

    Raises
    ------
    TypeError
        ``zeta`` is not a number.
    ValueError
        ``zeta`` is not a positive integer.

    See Also
    --------
    CoverageMap.distance : The same distance for structures, from their SOAP vectors.

    Examples
    --------
    >>> from gapy.coverage import nearest_distance
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> nearest_distance(x, np.zeros(2, int), x[:1], np.zeros(1, int), zeta=1)[0].round(3)
    array([0.   , 1.414])
    """
    zeta = check_zeta(zeta)
    values = np.asarray(values, dtype=float)
    reference = np.asarray(reference, dtype=float)
    species, reference_species = np.asarray(species), np.asarray(reference_species)
    distance = np.full(len(values), np.inf)
    nearest = np.full(len(values), -1, dtype=np.int64)
    for s in np.unique(species):
        rows = np.flatnonzero(species == s)
        columns = np.flatnonzero(reference_species == s)
        if columns.size == 0:
            continue
        x = reference[columns]
        position = np.full(len(reference), -1, dtype=np.int64)  # reference row -> column
        position[columns] = np.arange(columns.size)
        for part in _chunks(rows.size, columns.size):
            squared = kernel_distance_squared(values[rows[part]], x, zeta)
            if exclude is not None:
                own = np.asarray(exclude)[rows[part]]
                own = np.where(own >= 0, position[np.maximum(own, 0)], -1)
                hit = np.flatnonzero(own >= 0)
                squared[hit, own[hit]] = np.inf
            best = np.argmin(squared, axis=1)
            smallest = squared[np.arange(len(best)), best]
            found = np.isfinite(smallest)
            distance[rows[part]] = np.where(found, np.sqrt(np.maximum(smallest, 0.0)), np.inf)
            nearest[rows[part]] = np.where(found, columns[best], -1)
    return distance, nearest


def _subsample(species: np.ndarray, max_reference: int, random_state) -> np.ndarray:
    """Sorted row indices: all rows of a species, or ``max_reference`` of them at random."""
    rng = np.random.default_rng(random_state)
    chosen = []
    for s in np.unique(species):
        rows = np.flatnonzero(species == s)
        if rows.size > max_reference:
            rows = np.sort(rng.choice(rows, size=max_reference, replace=False))
        chosen.append(rows)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _check_max_reference(max_reference) -> int:
    return check_integer("max_reference", max_reference, 2)


def _descriptor_for(descriptor: Optional[SOAP], frames: List[Atoms]) -> SOAP:
    if descriptor is None:
        return SOAP(species=sorted({int(z) for atoms in frames for z in atoms.numbers}))
    if not isinstance(descriptor, SOAP):
        raise TypeError(f"descriptor must be a gapy.SOAP, got {type(descriptor).__name__}")
    return descriptor


def _atom_features(descriptor: SOAP, frames: List[Atoms], n_jobs: int):
    """SOAP rows of every atom, their species index and (structure, atom) indices.

    Species are checked first, so an unknown species is named before any SOAP work.
    """
    species = [descriptor.species_indices(atoms, k) for k, atoms in enumerate(frames)]
    values = descriptor.compute_many(frames, n_jobs=n_jobs)
    structure = np.concatenate([np.full(len(atoms), k) for k, atoms in enumerate(frames)])
    atom = np.concatenate([np.arange(len(atoms)) for atoms in frames])
    return np.concatenate(values), np.concatenate(species), structure, atom


class CoverageMap(BaseEstimator):
    """PCA map of a training set's SOAP vectors and kernel distances to it.

    ``fit`` computes the SOAP vectors of the training environments (``level="atoms"``:
    one row per atom; ``"structures"``: one row per structure, the mean of its atoms'
    normalised SOAP vectors, renormalised), fits a PCA on them and stores them as the
    reference set. ``transform`` projects new structures on the same components and
    ``distance`` gives each new row's kernel distance to its nearest training row of the
    same central species, ``sqrt(2 - 2 (q . x)^zeta)`` for normalised vectors: 0 for an
    environment seen in training, up to ``sqrt(2)`` for an unrelated one.

    Large sets: at most ``max_reference`` rows per species are used to fit the PCA and
    as the distance reference, a random subsample seeded by ``random_state`` (distances
    are then upper bounds of those to the full set). Distances are computed in chunks,
    so no ``N x N`` matrix is built; the time is ``O(N x max_reference)``.

    Parameters
    ----------
    descriptor : SOAP, optional
        Default: ``SOAP`` with the species of the training data. Use the model's
        (``CoverageMap.from_model``) so distances are those the GP kernel sees.
    n_components : int, default=2
        Principal components kept.
    level : {"atoms", "structures"}, default="atoms"
        Map atomic environments or whole structures.
    species : str or int, optional
        Keep only atoms of this central species (symbol or atomic number); by default
        all atoms, in one PCA (the first components then often separate the species).
        With ``level="structures"``, structures without this species are left out.
    zeta : int, default=4
        Kernel exponent of the distance (the model's ``zeta``).
    max_reference : int, default=20000
        Cap on the training rows per species used for the PCA and as distance reference.
    random_state : int, Generator or None, default=None
        Seed of that subsample (the PCA itself is an exact, deterministic SVD).
    n_jobs : int, default=1
        Threads for the SOAP vectors.

    Attributes
    ----------
    descriptor_ : SOAP
        The descriptor used: ``descriptor``, or the default one built in ``fit``.
    pca_ : sklearn.decomposition.PCA
        The fitted PCA.
    embedding_ : ndarray of shape (n_rows, n_components)
        PCA coordinates of every training row.
    train_distance_ : ndarray of shape (n_rows,)
        Leave-one-out distance of each training row to its nearest other training row
        (0 for duplicated environments).
    threshold_ : float
        Largest finite ``train_distance_``: new rows beyond it are farther from the
        training set than any training row is from the rest.
    row_index_ : ndarray of int of shape (n_rows, 2)
        (structure, atom) of each training row; atom is -1 with ``level="structures"``.
    row_species_ : ndarray of int of shape (n_rows,)
        Atomic number of each training row (0 with ``level="structures"``).
    config_type_ : ndarray of str of shape (n_rows,)
        ``atoms.info["config_type"]`` of each training row's structure, or ``"(none)"``.
    reference_ : ndarray of shape (n_reference, n_features)
        Training rows the distances are measured to.
    reference_species_ : ndarray of int of shape (n_reference,)
        Species index (in ``descriptor_.species``) of each reference row; 0 for every
        row with ``level="structures"``.

    See Also
    --------
    gdf_weights : Weights that even out the density of training environments.
    gapy.plots.coverage_plot : Plot of a map, coloured by distance.

    References
    ----------
    A. P. Bartók, R. Kondor and G. Csányi, "On representing chemical environments",
    Phys. Rev. B 87, 184115 (2013) (the SOAP kernel whose distance is measured).

    Examples
    --------
    >>> from ase.build import bulk
    >>> from gapy import SOAP
    >>> from gapy.coverage import CoverageMap
    >>> soap = SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)
    >>> train = [bulk("Si", cubic=True), bulk("Si", "fcc", a=3.9)]
    >>> coverage = CoverageMap(soap).fit(train)
    >>> coverage.transform(train[:1]).shape
    (8, 2)
    >>> bool(coverage.distance(train[:1]).max() < 1e-6)  # structures seen in training: distance ~0
    True
    """

    def __init__(
        self,
        descriptor: Optional[SOAP] = None,
        *,
        n_components: int = 2,
        level: str = "atoms",
        species: Optional[Union[str, int]] = None,
        zeta: int = 4,
        max_reference: int = MAX_REFERENCE,
        random_state=None,
        n_jobs: int = 1,
    ):
        self.descriptor = descriptor
        self.n_components = n_components
        self.level = level
        self.species = species
        self.zeta = zeta
        self.max_reference = max_reference
        self.random_state = random_state
        self.n_jobs = n_jobs

    @classmethod
    def from_model(cls, model, **kwargs) -> "CoverageMap":
        """A map with the descriptor and ``zeta`` of a fitted :class:`~gapy.GAPRegressor`.

        Distances of the map are then those the model's kernel sees.

        Parameters
        ----------
        model : GAPRegressor
            A fitted model; its ``descriptor_`` and ``zeta`` are used.
        **kwargs
            Other constructor arguments (``n_components``, ``level``, ``species``,
            ``max_reference``, ``random_state``, ``n_jobs``; ``zeta`` overrides the
            model's).

        Returns
        -------
        CoverageMap
            An unfitted map: call :meth:`fit` on the training structures.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            ``model`` is not fitted.

        Examples
        --------
        >>> from gapy import GAPRegressor, SOAP
        >>> from gapy.coverage import CoverageMap
        >>> from gapy.datasets import load_si
        >>> train = load_si("train")[:4]
        >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(train)
        >>> coverage = CoverageMap.from_model(model, level="structures").fit(train)
        >>> coverage.zeta, coverage.embedding_.shape
        (4, (4, 2))
        """
        check_is_fitted(model, "gp_")
        return cls(model.descriptor_, **{"zeta": model.zeta, **kwargs})

    def fit(self, frames: Sequence[Atoms], y=None) -> "CoverageMap":
        """Compute the training rows, fit the PCA and the leave-one-out distances.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Training structures.
        y : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        CoverageMap
            ``self``, fitted.

        Raises
        ------
        TypeError
            An element of ``frames`` is not an ``ase.Atoms``, ``descriptor`` is not a
            :class:`~gapy.SOAP`, or a parameter has the wrong type.
        ValueError
            Bad parameters, no structures, fewer rows than ``n_components`` (or than 2),
            more components than SOAP features, or a ``species`` the descriptor does
            not know.
        gapy.StructureError
            A structure has a species the descriptor does not know (named by index), or
            no structure has an atom of ``species`` (naming the species they have).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> from gapy.coverage import CoverageMap
        >>> train = [bulk("Si", cubic=True), bulk("Si", "fcc", a=3.9)]
        >>> coverage = CoverageMap(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3)).fit(train)
        >>> coverage.embedding_.shape, coverage.row_index_.shape
        ((9, 2), (9, 2))
        """
        frames = as_frames(frames)
        check_choice("level", self.level, LEVELS)
        zeta = check_zeta(self.zeta)
        max_reference = _check_max_reference(self.max_reference)
        n_components = check_integer("n_components", self.n_components, 1)
        descriptor = _descriptor_for(self.descriptor, frames)
        self.descriptor_ = descriptor
        self._zeta = zeta
        values, species, index = self._rows(frames, "training structures")
        if len(values) < max(n_components, 2):
            raise ValueError(
                f"{len(values)} training rows (level={self.level!r}, species={self.species!r}) "
                f"are too few for n_components={n_components}"
            )
        if n_components > values.shape[1]:
            raise ValueError(f"n_components={n_components} exceeds the {values.shape[1]} SOAP features")
        chosen = _subsample(species, max_reference, self.random_state)
        # the exact SVD: deterministic, and O(n_rows n_features^2) on the capped rows
        self.pca_ = PCA(n_components=n_components, svd_solver="full").fit(values[chosen])
        self.reference_ = values[chosen]
        self.reference_species_ = species[chosen]
        self_row = np.full(len(values), -1, dtype=np.int64)
        self_row[chosen] = np.arange(chosen.size)
        self.train_distance_, _ = nearest_distance(
            values, species, self.reference_, self.reference_species_, zeta, exclude=self_row
        )
        finite = self.train_distance_[np.isfinite(self.train_distance_)]
        self.threshold_ = float(finite.max()) if finite.size else float("inf")
        self.embedding_ = self.pca_.transform(values)
        self.row_index_ = index
        self.row_species_ = self._atomic_numbers(species)
        self.config_type_ = np.array([config_type_of(frames[k]) for k in index[:, 0]], dtype=str)
        return self

    def _species_filter(self) -> Optional[int]:
        if self.species is None:
            return None
        z = atomic_number(self.species)
        if z not in self.descriptor_.atomic_numbers:
            raise ValueError(
                f"species={self.species!r} is not among the descriptor's species "
                f"{list(self.descriptor_.species)}"
            )
        return int(np.searchsorted(self.descriptor_.atomic_numbers, z))

    def _rows(self, frames: List[Atoms], what: str = "structures"):
        """Feature rows, their species index and (structure, atom) index.

        ``what`` names ``frames`` in the error when none has an atom of ``species``.
        """
        keep_species = self._species_filter()
        if keep_species is not None:
            z = int(self.descriptor_.atomic_numbers[keep_species])
            if not any((atoms.numbers == z).any() for atoms in frames):
                present = sorted({int(n) for atoms in frames for n in atoms.numbers})
                raise StructureError(
                    f"no atom of species {chemical_symbols[z]} (species={self.species!r}) in the {len(frames)} "
                    f"{what}: they have {[chemical_symbols[n] for n in present]}"
                )
        values, species, structure, atom = _atom_features(self.descriptor_, frames, self.n_jobs)
        if keep_species is not None:
            keep = species == keep_species
            values, species, structure, atom = values[keep], species[keep], structure[keep], atom[keep]
        if self.level == "atoms":
            return values, species, np.column_stack([structure, atom])
        present = np.unique(structure)
        rows = mean_unit_rows(values, structure, len(frames))[present]
        index = np.column_stack([present, np.full(present.size, -1)])
        return rows, np.zeros(present.size, dtype=np.int64), index

    def _atomic_numbers(self, species: np.ndarray) -> np.ndarray:
        if self.level == "structures":
            return np.zeros(len(species), dtype=np.int64)
        return self.descriptor_.atomic_numbers[species]

    def transform(self, frames: Sequence[Atoms], return_distance: bool = False):
        """PCA coordinates of the rows of new structures (and their distances).

        Rows are the atoms of ``frames[0]``, then of ``frames[1]``, ... (only atoms of
        ``species`` if set), or one row per structure with ``level="structures"``; see
        :meth:`row_index`.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Structures to map (an ``ase.Atoms`` alone counts as one).
        return_distance : bool, default=False
            Also return :meth:`distance` (computed from the same SOAP vectors).

        Returns
        -------
        coordinates : ndarray of shape (n_rows, n_components)
            Coordinates of each row on the principal components of the training rows.
        distance : ndarray of shape (n_rows,)
            Kernel distance to the nearest training row; only with
            ``return_distance=True``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The map is not fitted.
        gapy.StructureError
            A structure has a species the descriptor does not know, or no structure has
            an atom of ``species`` (naming the species they have).

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> from gapy.coverage import CoverageMap
        >>> coverage = CoverageMap(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3))
        >>> coverage = coverage.fit([bulk("Si", cubic=True), bulk("Si", "fcc", a=3.9)])
        >>> coordinates, distance = coverage.transform(bulk("Si", "bcc", a=3.1), return_distance=True)
        >>> coordinates.shape, distance.shape
        ((1, 2), (1,))
        """
        check_is_fitted(self, "pca_")
        values, species, _ = self._rows(as_frames(frames))
        coordinates = self.pca_.transform(values)
        if not return_distance:
            return coordinates
        distance, _ = nearest_distance(values, species, self.reference_, self.reference_species_, self._zeta)
        return coordinates, distance

    def distance(self, frames: Sequence[Atoms]) -> np.ndarray:
        """Kernel distance of each row to the nearest training row of the same species.

        ``sqrt(2 - 2 (q . x)^zeta)`` for the normalised SOAP vector ``q`` of a row and its
        nearest training row ``x`` (see :func:`nearest_distance`).

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Structures to measure (an ``ase.Atoms`` alone counts as one).

        Returns
        -------
        ndarray of shape (n_rows,)
            Between 0 (seen in training) and about ``sqrt(2)``; ``inf`` for a central
            species absent from the training rows. Rows as in :meth:`transform`.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The map is not fitted.
        gapy.StructureError
            A structure has a species the descriptor does not know, or no structure has
            an atom of ``species``.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> from gapy.coverage import CoverageMap
        >>> coverage = CoverageMap(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3))
        >>> coverage = coverage.fit([bulk("Si", cubic=True), bulk("Si", "fcc", a=3.9)])
        >>> distance = coverage.distance([bulk("Si"), bulk("Si", "bcc", a=3.1)])
        >>> distance.round(2)  # the two diamond atoms were seen in training, bcc was not
        array([0.  , 0.  , 0.23])
        """
        return self.transform(frames, return_distance=True)[1]

    def row_index(self, frames: Sequence[Atoms]) -> np.ndarray:
        """(structure, atom) of each row :meth:`transform` returns for ``frames``.

        Computed from the species alone, without SOAP vectors.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            The structures given (or to be given) to :meth:`transform`.

        Returns
        -------
        ndarray of int of shape (n_rows, 2)
            Index of the structure in ``frames`` and of the atom in it; atom is -1 with
            ``level="structures"``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The map is not fitted.
        gapy.StructureError
            A structure has a species the descriptor does not know.

        Examples
        --------
        >>> from ase.build import bulk
        >>> from gapy import SOAP
        >>> from gapy.coverage import CoverageMap
        >>> coverage = CoverageMap(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3))
        >>> coverage = coverage.fit([bulk("Si", cubic=True), bulk("Si", "fcc", a=3.9)])
        >>> coverage.row_index([bulk("Si"), bulk("Si", "fcc", a=3.9)]).tolist()
        [[0, 0], [0, 1], [1, 0]]
        """
        check_is_fitted(self, "pca_")
        frames = as_frames(frames)
        keep_species = self._species_filter()
        index = []
        for k, atoms in enumerate(frames):
            species = self.descriptor_.species_indices(atoms, k)
            atoms_kept = np.arange(len(atoms)) if keep_species is None else np.flatnonzero(species == keep_species)
            if self.level == "atoms":
                index.extend((k, i) for i in atoms_kept)
            elif atoms_kept.size:
                index.append((k, -1))
        return np.array(index, dtype=np.int64).reshape(-1, 2)


def _check_sigma(sigma) -> None:
    check_number("sigma", sigma, 0.0)


def _check_power(power, max_weight) -> None:
    check_number("power", power, 0.0, low_inclusive=True)
    check_number("max_weight", max_weight, 1.0, allow_none=True)


def gaussian_density(
    values: np.ndarray,
    species: np.ndarray,
    sigma: float,
    *,
    max_reference: int = MAX_REFERENCE,
    random_state=None,
) -> np.ndarray:
    """Gaussian density of each row among the rows of its species (arrays only).

    ``rho_i = mean_j exp(-|q_i - q_j|^2 / (2 sigma^2))`` over the rows ``j`` of the same
    species (``i`` included), or over a seeded random subsample of ``max_reference`` of
    them; ``rho_i`` is at least ``1 / n_reference`` (its own term, which a subsample may
    lack). Computed in chunks of rows. :func:`gdf_weights` applies it to atoms; it
    serves any other rows too, e.g. structure fingerprints
    (``gapy.sampling.structure_fingerprints``).

    Parameters
    ----------
    values : ndarray of shape (n, n_features)
        Rows, e.g. SOAP vectors of atoms or structure fingerprints.
    species : ndarray of int of shape (n,)
        Species label of each row; densities are computed within each species.
    sigma : float
        Gaussian width, in units of ``values``.
    max_reference : int, default=20000
        Cap on the reference rows per species (a random subsample above it).
    random_state : int, Generator or None, default=None
        Seed of that subsample.

    Returns
    -------
    ndarray of shape (n,)
        Density of each row, in ``(0, 1]``.

    Raises
    ------
    TypeError
        ``sigma`` or ``max_reference`` is not a number.
    ValueError
        ``sigma`` is not positive, or ``max_reference`` is not an integer >= 2.

    References
    ----------
    W. Jeong, K. Lee, D. Yoo, D. Lee and S. Han, "Toward reliable and transferable
    machine learning potentials: uniform training by overcoming sampling bias",
    J. Phys. Chem. C 122, 22790 (2018).

    Examples
    --------
    >>> from gapy.coverage import gaussian_density
    >>> import numpy as np
    >>> values = np.array([[0.0], [0.0], [1.0]])
    >>> gaussian_density(values, np.zeros(3, int), sigma=0.1).round(3)
    array([0.667, 0.667, 0.333])
    """
    _check_sigma(sigma)
    max_reference = _check_max_reference(max_reference)
    values, species = np.asarray(values, dtype=float), np.asarray(species)
    chosen = _subsample(species, max_reference, random_state)
    density = np.empty(len(values))
    scale = -0.5 / float(sigma) ** 2
    for s in np.unique(species):
        rows = np.flatnonzero(species == s)
        x = values[chosen[species[chosen] == s]]
        xx = np.einsum("ij,ij->i", x, x)
        for part in _chunks(rows.size, len(x)):
            q = values[rows[part]]
            squared = np.einsum("ij,ij->i", q, q)[:, None] + xx[None, :] - 2.0 * q @ x.T
            density[rows[part]] = np.maximum(np.exp(scale * np.maximum(squared, 0.0)).mean(axis=1), 1.0 / len(x))
    return density


def density_weights(
    density: np.ndarray,
    species: Optional[np.ndarray] = None,
    *,
    power: float = 1.0,
    max_weight: Optional[float] = 10.0,
) -> np.ndarray:
    """Weights ``rho^(-power)`` scaled to mean 1 per species, optionally clipped.

    With ``max_weight`` the weights are clipped at that value and scaled to mean 1
    again. See :func:`gdf_weights`.

    Parameters
    ----------
    density : ndarray of shape (n,)
        Positive, finite densities, e.g. from :func:`gaussian_density`.
    species : ndarray of int of shape (n,), optional
        Species label of each row: the weights have mean 1 within each species. By
        default all rows are one species.
    power : float, default=1.0
        Exponent of ``1 / rho``; 0 gives all ones.
    max_weight : float or None, default=10.0
        Clip the weights (relative to the mean, so at least 1) at this value; ``None``:
        no clipping.

    Returns
    -------
    ndarray of shape (n,)
        Weights, mean 1 over the rows of each species.

    Raises
    ------
    TypeError
        ``power`` or ``max_weight`` is not a number.
    ValueError
        ``power`` is negative, ``max_weight`` is not above 1, or ``density`` is not a
        1-d array of positive, finite numbers.

    Examples
    --------
    >>> from gapy.coverage import density_weights
    >>> import numpy as np
    >>> density_weights(np.array([1.0, 0.5, 0.25]), max_weight=None).round(3)
    array([0.429, 0.857, 1.714])
    """
    _check_power(power, max_weight)
    density = np.asarray(density, dtype=float)
    if density.ndim != 1 or not np.all(density > 0) or not np.all(np.isfinite(density)):
        raise ValueError("density must be a 1-d array of positive, finite numbers")
    species = np.zeros(len(density), dtype=np.int64) if species is None else np.asarray(species)
    weights = np.empty(len(density))
    for s in np.unique(species):
        rows = np.flatnonzero(species == s)
        w = density[rows] ** -float(power)
        w /= w.mean()
        if max_weight is not None:
            w = np.minimum(w, float(max_weight))
            w /= w.mean()
        weights[rows] = w
    return weights


def gdf_weights(
    frames: Sequence[Atoms],
    descriptor: SOAP,
    sigma: float = 0.05,
    *,
    power: float = 1.0,
    max_weight: Optional[float] = 10.0,
    max_reference: int = MAX_REFERENCE,
    random_state=None,
    n_jobs: int = 1,
    return_density: bool = False,
):
    """Gaussian density function (GDF) weights of every atom (Jeong et al. 2018).

    The density of atom ``i`` among the training environments of its species is
    ``rho_i = mean_j exp(-|q_i - q_j|^2 / (2 sigma^2))`` (``j`` runs over all of them,
    ``i`` included, so ``rho_i`` is in ``(0, 1]``). The weight is
    ``w_i = rho_i^(-power)``, scaled to mean 1 within each species, then (with
    ``max_weight``) clipped at ``max_weight`` and scaled to mean 1 again, so rare
    environments weigh at most about ``max_weight`` times the average. ``power < 1``
    softens the weighting; ``power=0`` gives all ones.

    Above ``max_reference`` environments of a species, ``j`` runs over a random subsample
    of that size (seeded by ``random_state``), and ``rho_i`` is at least ``1 /
    max_reference`` (the atom's own term); distances are computed in chunks, so memory is
    ``O(chunk x max_reference)``.

    Parameters
    ----------
    frames : sequence of ase.Atoms
        Training structures.
    descriptor : SOAP
        With ``normalize=True`` (the default) ``|q_i - q_j|^2 = 2 - 2 q_i . q_j`` lies
        in ``[0, 4]``, so ``sigma`` is comparable across descriptor settings.
    sigma : float, default=0.05
        Width of the Gaussian, in units of the (dimensionless) SOAP vectors. Too small:
        only exact duplicates count, so only duplicated environments are down-weighted;
        too large: every environment sees all others and all weights tend to 1. On the
        bundled Si data (SOAP r_cut=5.4 A, n_max=l_max=8) the nearest-neighbour distance
        ``|q_i - q_j|`` has median 0.017 and 90th percentile 0.11, and the median over all
        pairs is 0.23; see ``docs/coverage.md``.
    power : float, default=1.0
        Exponent of ``1 / rho`` (SIMPLE-NN uses 1, with a sigmoid modifier instead).
    max_weight : float or None, default=10.0
        Clip the weights (relative to the mean) at this value; ``None``: no clipping.
    max_reference : int, default=20000
        Cap on the reference environments per species.
    random_state : int, Generator or None, default=None
        Seed of the reference subsample.
    n_jobs : int, default=1
        Threads for the SOAP vectors.
    return_density : bool, default=False
        Also return ``rho`` per atom.

    Returns
    -------
    weights : list of ndarray of shape (n_atoms,)
        One array per structure; mean 1 over the atoms of each species.
    density : list of ndarray of shape (n_atoms,)
        Only with ``return_density=True``.

    Raises
    ------
    TypeError
        An element of ``frames`` is not an ``ase.Atoms``, ``descriptor`` is not a
        :class:`~gapy.SOAP`, or a parameter is not a number.
    ValueError
        ``sigma``, ``power``, ``max_weight`` or ``max_reference`` out of range, or no
        structures.
    gapy.StructureError
        A structure has a species the descriptor does not know (named by index).

    References
    ----------
    W. Jeong, K. Lee, D. Yoo, D. Lee and S. Han, "Toward reliable and transferable
    machine learning potentials: uniform training by overcoming sampling bias",
    J. Phys. Chem. C 122, 22790 (2018).

    Examples
    --------
    >>> from gapy.coverage import gdf_weights
    >>> from ase.build import bulk
    >>> from gapy import SOAP
    >>> crystal = bulk("Si", cubic=True)
    >>> rattled = crystal.copy()
    >>> rattled.rattle(0.1, seed=0)
    >>> w = gdf_weights([crystal, crystal, rattled], SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3))
    >>> bool(w[0].max() < w[2].min())  # the duplicated crystal atoms weigh less
    True
    """
    frames = as_frames(frames)
    _check_sigma(sigma)
    _check_power(power, max_weight)
    _check_max_reference(max_reference)
    descriptor = _descriptor_for(descriptor, frames)
    values, species, _, _ = _atom_features(descriptor, frames, n_jobs)
    density = gaussian_density(values, species, sigma, max_reference=max_reference, random_state=random_state)
    weights = density_weights(density, species, power=power, max_weight=max_weight)
    split = np.cumsum([len(atoms) for atoms in frames])[:-1]
    per_structure = np.split(weights, split)
    if return_density:
        return per_structure, np.split(density, split)
    return per_structure


def structure_weights(atom_weights: Sequence[np.ndarray]) -> np.ndarray:
    """Per-structure weights: the mean of each structure's atom weights, scaled to mean 1.

    Directly usable as ``GAPRegressor.fit(frames, sample_weight=...)``, which divides
    every sigma of structure ``k`` by ``sqrt(w[k])``.

    Parameters
    ----------
    atom_weights : sequence of ndarray of shape (n_atoms,)
        E.g. from :func:`gdf_weights`.

    Returns
    -------
    ndarray of shape (n_structures,)
        Mean atom weight of each structure, divided by the mean over structures.

    Raises
    ------
    ValueError
        No structures, an empty, non-finite or negative weight array, or all weights
        zero.

    Examples
    --------
    >>> from gapy.coverage import structure_weights
    >>> import numpy as np
    >>> structure_weights([np.array([1.0, 3.0]), np.array([0.5])]).round(3)
    array([1.6, 0.4])
    """
    atom_weights = [np.asarray(w, dtype=float) for w in atom_weights]
    if not atom_weights:
        raise ValueError("no structures given")
    for k, w in enumerate(atom_weights):
        if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(
                f"atom_weights[{k}] must be a non-empty 1-d array of finite, non-negative weights"
            )
    means = np.array([w.mean() for w in atom_weights])
    if means.sum() <= 0:
        raise ValueError("all atom weights are zero")
    return means / means.mean()


def local_energy_std(model, frames: Sequence[Atoms], index: np.ndarray) -> np.ndarray:
    """The model's local-energy std (eV) of each ``(structure, atom)`` row of ``index``.

    Rows with atom ``-1`` (whole structures, ``level="structures"``) get the total-energy
    std per atom (eV/atom).

    Parameters
    ----------
    model : GAPRegressor
        A fitted model.
    frames : sequence of ase.Atoms
        The structures ``index`` refers to.
    index : ndarray of int of shape (n_rows, 2)
        ``(structure, atom)`` per row, as :meth:`CoverageMap.row_index`.

    Returns
    -------
    ndarray of shape (n_rows,)
        Standard deviation of the local energy of each atom (eV), or of the total
        energy per atom (eV/atom) for rows with atom ``-1``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        ``model`` is not fitted.

    References
    ----------
    F. Musil, M. J. Willatt, M. A. Langovoy and M. Ceriotti, "Fast and accurate
    uncertainty estimation in chemical machine learning", J. Chem. Theory Comput. 15,
    906 (2019).

    Examples
    --------
    >>> from gapy.coverage import local_energy_std
    >>> import numpy as np
    >>> from gapy import GAPRegressor, SOAP
    >>> from gapy.datasets import load_si
    >>> train = load_si("train")[:4]
    >>> model = GAPRegressor(SOAP(["Si"], r_cut=4.0, n_max=4, l_max=3), n_sparse=20).fit(train)
    >>> std = local_energy_std(model, train[:1], np.array([[0, 0], [0, 1], [0, -1]]))
    >>> std.shape, bool(np.all(std > 0))
    ((3,), True)
    """
    predictions = model.predict_all(frames, return_std=True, properties=("energy", "energies"))
    return np.array([predictions[k]["energies_std"][i] if i >= 0
                     else predictions[k]["energy_std"] / len(frames[k]) for k, i in index])


def write_coverage_csv(path: Union[str, os.PathLike], n_components: int, table, energy_std=None) -> None:
    """Write a coverage table: one row per environment (or structure) of each set.

    Columns: ``set, structure, atom, species, config_type, pc1..pcN, distance,
    energy_std`` (``species`` is empty for whole structures, ``energy_std`` outside the
    set named ``"new"`` or without ``energy_std``). Numbers have 6 significant digits.

    Parameters
    ----------
    path : str or os.PathLike
        CSV file to write (overwritten).
    n_components : int
        Principal components per row.
    table : sequence of tuples
        ``(set_name, index, atomic_numbers, config_types, coordinates, distances)`` per
        set (e.g. ``"train"`` and ``"new"``), ``index`` as :meth:`CoverageMap.row_index`,
        ``atomic_numbers`` as :attr:`CoverageMap.row_species_` (0: no species),
        ``coordinates`` as :meth:`CoverageMap.transform`.
    energy_std : ndarray of shape (n_rows,), optional
        :func:`local_energy_std` (eV) of the rows of the set named ``"new"``.

    Examples
    --------
    >>> from gapy.coverage import write_coverage_csv
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> table = [("train", np.array([[0, 0], [0, 1]]), np.array([14, 14]),
    ...           np.array(["bulk", "bulk"]), np.zeros((2, 2)), np.zeros(2))]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_coverage_csv(Path(tmp) / "coverage.csv", 2, table)
    ...     print((Path(tmp) / "coverage.csv").read_text().strip())
    set,structure,atom,species,config_type,pc1,pc2,distance,energy_std
    train,0,0,Si,bulk,0,0,0,
    train,0,1,Si,bulk,0,0,0,
    """
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["set", "structure", "atom", "species", "config_type"]
                        + [f"pc{i + 1}" for i in range(n_components)] + ["distance", "energy_std"])
        for name, index, numbers, config, xy, dist in table:
            std = energy_std if name == "new" and energy_std is not None else None
            for row in range(len(index)):
                writer.writerow([name, int(index[row, 0]), int(index[row, 1]),
                                 chemical_symbols[numbers[row]] if numbers[row] else "", config[row]]
                                + [f"{x:.6g}" for x in xy[row]] + [f"{dist[row]:.6g}"]
                                + [f"{std[row]:.6g}" if std is not None else ""])
