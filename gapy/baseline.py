"""A fixed short-range repulsion that the GP corrects: the ZBL universal screened Coulomb
potential, switched off below the shortest distance of the training data.

No training structure has atoms much closer than a bond, so a GP alone predicts whatever
its prior gives there, and hot molecular dynamics can push atoms together. With a
baseline the model is ``E = E_ZBL + E_GAP``: the GP is fitted to the labels minus the
baseline and, where it has no data (below the switching radius), the repulsion remains.

    E_ZBL = sum_pairs S(r) Z_i Z_j e^2 / (4 pi eps0 r) phi(r / a),
    a = 0.46850 / (Z_i^0.23 + Z_j^0.23) A,
    phi(x) = 0.18175 e^-3.19980x + 0.50986 e^-0.94229x + 0.28022 e^-0.40290x + 0.02817 e^-0.20162x

(Ziegler, Biersack and Littmark, The Stopping and Range of Ions in Solids (1985)), with a
cosine switch ``S`` from 1 at ``r_inner`` to 0 at ``r_outer``; a species pair may have its
own ``r_inner`` and ``r_outer`` (molecules: C-H bonds of 1.1 A beside H2 at 0.74 A).
"""

from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols, covalent_radii

from ._validation import check_number
from .gp.design import voigt
from .structures import neighbor_pairs

#: e^2 / (4 pi eps0) in eV Angstrom.
COULOMB = 14.399645
#: A species pair gets its own ZBL switch when its shortest distance in the data (at most the
#: sum of the covalent radii) is more than this times the shortest distance of all pairs.
PAIR_LENGTH_RATIO = 1.2
_PHI = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))


class ZBL:
    """ZBL pair repulsion with a smooth switch-off between ``r_inner`` and ``r_outer``.

    Parameters
    ----------
    r_inner : float
        Full repulsion below this distance (Angstrom).
    r_outer : float
        No repulsion beyond this distance (Angstrom); ``r_inner < r_outer``.
    pairs : dict of str to (float, float), optional
        ``r_inner`` and ``r_outer`` of some species pairs, named by their symbols (``"H-C"``,
        either order); the other pairs have ``r_inner`` and ``r_outer``.

    Raises
    ------
    ValueError
        A distance that is not > 0, ``r_inner >= r_outer``, or an unknown species pair.
    TypeError
        A distance that is not a number.

    References
    ----------
    J. F. Ziegler, J. P. Biersack and U. Littmark, The Stopping and Range of Ions in
    Solids (Pergamon, New York, 1985).

    Examples
    --------
    >>> from ase import Atoms
    >>> zbl = ZBL(r_inner=1.0, r_outer=1.5)
    >>> energies, forces, virial = zbl.compute(Atoms("Si2", positions=[[0, 0, 0], [0, 0, 0.8]]))
    >>> bool(energies.sum() > 10.0), bool(forces[1, 2] > 0)
    (True, True)
    """

    def __init__(self, r_inner: float, r_outer: float, pairs: Optional[Mapping[str, Sequence[float]]] = None):
        self.r_inner, self.r_outer = _check_radii(r_inner, r_outer)
        self.pairs = pairs  # as given (scikit-learn's clone checks that it is the same object)
        self._pair_radii = {}  # (lighter, heavier atomic number) -> (r_inner, r_outer)
        for name, radii in (pairs or {}).items():
            if len(radii) != 2:
                raise ValueError(f"ZBL pairs[{name!r}] must be (r_inner, r_outer), got {radii!r}")
            self._pair_radii[_pair_key(name)] = _check_radii(*radii, name=f"ZBL pairs[{name!r}]")

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments, so that ``ZBL(**zbl.get_params())`` is a copy.

        Parameters
        ----------
        deep : bool, default=True
            Ignored: a ``ZBL`` holds no nested estimators (scikit-learn's signature).

        Returns
        -------
        dict
            ``r_inner`` and ``r_outer`` (Angstrom), as floats, and ``pairs`` when given.

        Examples
        --------
        >>> ZBL(r_inner=1.0, r_outer=1.5).get_params()
        {'r_inner': 1.0, 'r_outer': 1.5}
        >>> ZBL(r_inner=0.3, r_outer=0.6, pairs={"H-C": [0.43, 0.86]}).get_params()["pairs"]
        {'H-C': [0.43, 0.86]}
        """
        params = {"r_inner": self.r_inner, "r_outer": self.r_outer}
        if self.pairs is not None:
            params["pairs"] = self.pairs
        return params

    def __repr__(self) -> str:
        pairs = "" if self.pairs is None else f", pairs={self.pairs}"
        return f"ZBL(r_inner={self.r_inner}, r_outer={self.r_outer}{pairs})"

    @property
    def cutoff(self) -> float:
        """The largest ``r_outer`` of any pair (Angstrom): no repulsion beyond it.

        Examples
        --------
        >>> ZBL(r_inner=0.3, r_outer=0.6, pairs={"H-C": [0.43, 0.86]}).cutoff
        0.86
        """
        return max([self.r_outer] + [outer for _, outer in self._pair_radii.values()])

    @classmethod
    def below_data(cls, frames: Sequence[Atoms], fraction: float = 0.8, width: float = 0.5) -> "ZBL":
        """Switched off below ``fraction`` of the shortest distance in ``frames``.

        Each species pair of much longer bonds gets its own switch, as in :meth:`below_distance`.

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Training structures.
        fraction : float, default=0.8
            ``r_outer = fraction * shortest distance``: the repulsion never touches the
            training data.
        width : float, default=0.5
            ``r_inner = r_outer - width`` (Angstrom), at least ``r_outer / 2``.

        Returns
        -------
        ZBL
            With ``r_outer = fraction * shortest distance`` and
            ``r_inner = max(r_outer - width, r_outer / 2)``.

        Raises
        ------
        ValueError
            No pair of atoms within 4 Angstrom in ``frames`` (or no structure).
        gapy.StructureError
            A bad geometry, or two atoms closer than 0.1 Angstrom.

        Examples
        --------
        >>> from gapy.datasets import load_si
        >>> zbl = ZBL.below_data(load_si("train")[:4])  # shortest Si-Si distance 1.94 A
        >>> round(zbl.r_outer, 3), round(zbl.r_outer - zbl.r_inner, 3)
        (1.553, 0.5)
        """
        pair_shortest = merge_shortest(shortest_pair_distances(atoms, k) for k, atoms in enumerate(frames))
        return cls.below_distance(min(pair_shortest.values(), default=np.inf), fraction, width, pair_shortest)

    @classmethod
    def below_distance(cls, shortest: float, fraction: float = 0.8, width: float = 0.5,
                       pair_shortest: Optional[Mapping[Tuple[int, int], float]] = None) -> "ZBL":
        """Switched off below ``fraction`` of the distance ``shortest`` (Angstrom).

        A species pair of much longer bonds is switched off below ``fraction`` of its own.

        A pair whose shortest distance in the data is more than :data:`PAIR_LENGTH_RATIO` times
        ``shortest`` (C-H bonds of 1.1 A beside H2 at 0.74 A) is switched off below ``fraction``
        of its own shortest distance, capped at the sum of the two covalent radii (a pair seen
        only far apart keeps no repulsion at bond lengths). Without it the C-H pairs of
        molecules had no repulsion from 1.1 A down to 0.6 A, where the GP, without data,
        attracted the atoms (MD of ethane fell to C-H distances of 0.5 A). Closer pairs (the
        metals of an alloy) share the switch, which still starts at 0.67 of their bonds.

        Parameters
        ----------
        shortest : float
            The shortest interatomic distance of the training data (Angstrom).
        fraction : float, default=0.8
            ``r_outer = fraction * shortest``.
        width : float, default=0.5
            ``r_inner = r_outer - width`` (Angstrom), at least ``r_outer / 2``.
        pair_shortest : dict of (int, int) to float, optional
            The shortest distance of each species pair (atomic numbers, either order) in the
            data, as :func:`shortest_pair_distances` gives; default: every pair has ``shortest``.

        Returns
        -------
        ZBL
            With ``pairs`` for the species pairs whose ``r_outer`` is longer than the others'.

        Raises
        ------
        ValueError
            ``shortest`` is not finite (no pair within the cutoff in the data).

        Examples
        --------
        >>> ZBL.below_distance(2.0)
        ZBL(r_inner=1.1, r_outer=1.6)
        >>> ZBL.below_distance(0.74, pair_shortest={(1, 1): 0.74, (1, 6): 1.09, (6, 6): 5.0}).pairs
        {'H-C': [0.428, 0.856], 'C-C': [0.716, 1.216]}
        """
        if not np.isfinite(shortest):
            raise ValueError("no pair of atoms within the model's cutoff (at least 4 A) in the training structures: "
                             "no scale for a ZBL core")

        def radii(distance):
            r_outer = fraction * distance
            return max(r_outer - width, r_outer / 2), r_outer

        pairs = {}
        for (z_i, z_j), distance in (pair_shortest or {}).items():
            length = min(distance, covalent_radii[z_i] + covalent_radii[z_j])
            if length > PAIR_LENGTH_RATIO * shortest:
                pairs[_pair_name(z_i, z_j)] = [round(float(value), 6) for value in radii(length)]
        r_inner, r_outer = radii(shortest)
        return cls(r_inner=r_inner, r_outer=r_outer, pairs=pairs or None)

    def compute(self, atoms: Atoms, index: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-atom energies, forces and virial of the repulsion in one structure.

        Parameters
        ----------
        atoms : ase.Atoms
            Periodic, partly periodic or isolated structure.
        index : int, optional
            Index of the structure in a data set, used in error messages.

        Returns
        -------
        energies : ndarray of shape (n_atoms,)
            Per-atom energies (eV): half of each pair's energy to each of its atoms.
        forces : ndarray of shape (n_atoms, 3)
            Forces ``-dE/dr`` (eV/A).
        virial : ndarray of shape (6,)
            Virial ``-dE/d eps`` (eV), Voigt order (xx, yy, zz, yz, xz, xy); the stress
            is ``-virial / volume``.

        Raises
        ------
        gapy.StructureError
            A bad geometry, or two atoms closer than 0.1 Angstrom.

        Examples
        --------
        >>> from ase import Atoms
        >>> zbl = ZBL(r_inner=1.0, r_outer=1.5)
        >>> energies, forces, virial = zbl.compute(Atoms("Si2", positions=[[0, 0, 0], [0, 0, 0.8]]))
        >>> energies.round(2).tolist(), forces[:, 2].round(1).tolist()  # pushed apart
        ([56.08, 56.08], [-470.6, 470.6])
        >>> round(float(virial[2]), 1)  # zz; the other components are 0
        376.5
        """
        pairs = neighbor_pairs(atoms, self.cutoff, index)
        # the full list holds every pair twice (i-j and j-i, or an atom and both images of it)
        i, j, vectors = pairs.centers, pairs.neighbors, pairs.vectors
        weight = 0.5
        distance = np.linalg.norm(vectors, axis=1)
        energy, derivative = self.pair_energy(atoms.numbers[i], atoms.numbers[j], distance)
        energy, derivative = weight * energy, weight * derivative
        # dE/dr_j = derivative * unit, dE/dr_i = -derivative * unit
        pair_forces = -(derivative / np.where(distance > 0, distance, 1.0))[:, None] * vectors
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, j, pair_forces)
        np.add.at(forces, i, -pair_forces)
        virial = -np.einsum("p,pa,pb->ab", derivative / np.where(distance > 0, distance, 1.0), vectors, vectors)
        return np.bincount(i, weights=energy, minlength=len(atoms)), forces, voigt(virial)

    def pair_energy(self, z_i: np.ndarray, z_j: np.ndarray, distance: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Switched ZBL energy of each pair (eV) and its derivative in the distance (eV/A).

        Parameters
        ----------
        z_i, z_j : ndarray of int of shape (n_pairs,)
            Atomic numbers of the two atoms of each pair.
        distance : ndarray of shape (n_pairs,)
            Distance of each pair (Angstrom), > 0.

        Returns
        -------
        energy : ndarray of shape (n_pairs,)
            ``S(r) E_ZBL(r)`` (eV): the full pair energy, not split between the atoms.
        derivative : ndarray of shape (n_pairs,)
            Its derivative in ``r`` (eV/A).

        Examples
        --------
        >>> import numpy as np
        >>> zbl = ZBL(r_inner=1.0, r_outer=1.5)
        >>> z = np.array([14, 14, 14])
        >>> energy, derivative = zbl.pair_energy(z, z, np.array([0.5, 1.25, 2.0]))  # full, switching, off
        >>> energy.round(3).tolist(), derivative.round(3).tolist()
        ([470.493, 10.596, 0.0], [-2615.592, -101.767, 0.0])
        """
        r_inner, r_outer = np.full(np.shape(distance), self.r_inner), np.full(np.shape(distance), self.r_outer)
        if self._pair_radii:
            low, high = np.minimum(z_i, z_j), np.maximum(z_i, z_j)
            for (a, b), (inner, outer) in self._pair_radii.items():
                mask = (low == a) & (high == b)
                r_inner[mask], r_outer[mask] = inner, outer
        screening = 0.46850 / (z_i**0.23 + z_j**0.23)
        x = distance / screening
        phi = sum(c * np.exp(-d * x) for c, d in _PHI)
        dphi = sum(-c * d * np.exp(-d * x) for c, d in _PHI) / screening
        prefactor = COULOMB * z_i * z_j
        bare = prefactor * phi / distance
        dbare = prefactor * (dphi / distance - phi / distance**2)
        t = np.clip((distance - r_inner) / (r_outer - r_inner), 0.0, 1.0)
        switch = 0.5 * (1 + np.cos(np.pi * t))
        inside = (distance > r_inner) & (distance < r_outer)
        dswitch = np.where(inside, -0.5 * np.pi * np.sin(np.pi * t) / (r_outer - r_inner), 0.0)
        return bare * switch, dbare * switch + bare * dswitch


#: Radius (A) within which the shortest distance of the data is looked for, at the least.
SHORTEST_DISTANCE_RADIUS = 4.0


def shortest_distance(atoms: Atoms, index: Optional[int] = None, cutoff: float = SHORTEST_DISTANCE_RADIUS) -> float:
    """Shortest interatomic distance (Angstrom) within ``cutoff`` (at least 4 A), ``inf`` if none."""
    return min(shortest_pair_distances(atoms, index, cutoff).values(), default=np.inf)


def shortest_pair_distances(atoms: Atoms, index: Optional[int] = None,
                            cutoff: float = SHORTEST_DISTANCE_RADIUS) -> Dict[Tuple[int, int], float]:
    """Shortest distance (Angstrom) of each species pair within ``cutoff`` (at least 4 A).

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    index : int, optional
        Its place in a data set, named in error messages.
    cutoff : float
        Radius of the search (Angstrom); pairs farther apart are left out.

    Returns
    -------
    dict of (int, int) to float
        ``(lighter, heavier atomic number)`` to the pair's shortest distance.

    Examples
    --------
    >>> from ase.build import molecule
    >>> {pair: round(d, 2) for pair, d in shortest_pair_distances(molecule("CH4")).items()}
    {(1, 1): 1.78, (1, 6): 1.09}
    """
    pairs = neighbor_pairs(atoms, max(cutoff, SHORTEST_DISTANCE_RADIUS), index)
    if not len(pairs.centers):
        return {}
    distance = np.linalg.norm(pairs.vectors, axis=1)
    z_i, z_j = atoms.numbers[pairs.centers], atoms.numbers[pairs.neighbors]
    keys = np.minimum(z_i, z_j) * 1000 + np.maximum(z_i, z_j)
    result = {}
    for key in np.unique(keys):
        result[(int(key // 1000), int(key % 1000))] = float(distance[keys == key].min())
    return result


def merge_shortest(found: Iterable[Mapping[Tuple[int, int], float]]) -> Dict[Tuple[int, int], float]:
    """The shortest distance of each species pair over several structures.

    Parameters
    ----------
    found : iterable of dict
        :func:`shortest_pair_distances` of each structure (``None`` or empty for none).

    Returns
    -------
    dict of (int, int) to float
        Each species pair's shortest distance in any of them.

    Examples
    --------
    >>> merge_shortest([{(1, 6): 1.1}, {(1, 6): 1.05, (1, 1): 0.74}, None])
    {(1, 6): 1.05, (1, 1): 0.74}
    """
    merged: Dict[Tuple[int, int], float] = {}
    for distances in found:
        for pair, distance in (distances or {}).items():
            merged[pair] = min(distance, merged.get(pair, np.inf))
    return merged


#: :func:`closer_than_training` names a pair closer than this fraction of the training data's
#: shortest distance of its species pair (the closest pair of every mlearn Si and Mo test structure is
#: at 1.035 and 1.055 or more of the training's: none is named).
SHORT_DISTANCE_FRACTION = 0.9


class ShortDistanceWarning(RuntimeWarning):
    """Atoms closer than any pair of their species in the training data: the model extrapolates.

    A SOAP model without a repulsive core (``baseline="zbl"``, a 2-body term) can predict
    such a structure wrongly with a small std: normalised SOAP vectors change little when a
    structure is compressed. Given by ``gapy predict``, ``eval`` and ``select``.

    Examples
    --------
    >>> import warnings
    >>> from gapy.baseline import ShortDistanceWarning
    >>> warnings.filterwarnings("ignore", category=ShortDistanceWarning)  # doctest: +SKIP
    """


def closer_than_training(atoms: Atoms, training_shortest: Mapping[Tuple[int, int], float],
                         fraction: float = SHORT_DISTANCE_FRACTION, index: Optional[int] = None) -> Optional[str]:
    """The pair of ``atoms`` furthest below ``fraction`` of its species pair's shortest training distance.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    training_shortest : dict of (int, int) to float
        Shortest distance of each species pair in the training data
        (:attr:`gapy.GAPRegressor.pair_shortest_`); pairs it lacks are not compared.
    fraction : float, default=SHORT_DISTANCE_FRACTION
        Distances below ``fraction`` times the training's count.
    index : int, optional
        The structure's place in a data set, named in error messages.

    Returns
    -------
    str or None
        The pair, its distance and the training's shortest (``"Cu-Cu 1.09 A (shortest in
        training 2.27 A)"``), or None when no pair is that close.

    Examples
    --------
    >>> from ase.build import bulk
    >>> training = shortest_pair_distances(bulk("Cu", cubic=True))
    >>> closer_than_training(bulk("Cu", cubic=True, a=3.0), training)
    'Cu-Cu 2.12 A (shortest in training 2.55 A)'
    >>> closer_than_training(bulk("Cu", cubic=True, a=3.5), training) is None
    True
    """
    found = [(distance / training_shortest[pair], pair, distance)
             for pair, distance in shortest_pair_distances(atoms, index, 0.0).items() if pair in training_shortest]
    ratio, (z_i, z_j), distance = min(found, default=(np.inf, (0, 0), np.inf))
    if ratio >= fraction:
        return None
    return (f"{chemical_symbols[z_i]}-{chemical_symbols[z_j]} {distance:.2f} A (shortest in training "
            f"{training_shortest[(z_i, z_j)]:.2f} A)")


def _check_radii(r_inner, r_outer, name: str = "ZBL") -> Tuple[float, float]:
    """``(r_inner, r_outer)`` as floats, checked: both > 0 and ``r_inner < r_outer``."""
    check_number("r_inner", r_inner, 0.0)
    check_number("r_outer", r_outer, 0.0)
    if not r_inner < r_outer:
        raise ValueError(f"{name} needs r_inner < r_outer, got r_inner={r_inner}, r_outer={r_outer}")
    return float(r_inner), float(r_outer)


def _pair_key(name: str) -> Tuple[int, int]:
    """``(lighter, heavier)`` atomic numbers of a pair named ``"C-H"`` (either order)."""
    parts = name.split("-") if isinstance(name, str) else []
    if len(parts) != 2 or not all(part in chemical_symbols[1:] for part in parts):
        raise ValueError(f"ZBL pairs: {name!r} is not a species pair such as 'H-C'")
    numbers = sorted(chemical_symbols.index(part) for part in parts)
    return numbers[0], numbers[1]


def _pair_name(z_i: int, z_j: int) -> str:
    """``"H-C"``: the symbols of a species pair, lighter first."""
    low, high = sorted((int(z_i), int(z_j)))
    return f"{chemical_symbols[low]}-{chemical_symbols[high]}"
