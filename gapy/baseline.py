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
cosine switch ``S`` from 1 at ``r_inner`` to 0 at ``r_outer``.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from ._validation import check_number
from .gp.design import voigt
from .structures import neighbor_pairs

#: e^2 / (4 pi eps0) in eV Angstrom.
COULOMB = 14.399645
_PHI = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))


class ZBL:
    """ZBL pair repulsion with a smooth switch-off between ``r_inner`` and ``r_outer``.

    Parameters
    ----------
    r_inner : float
        Full repulsion below this distance (Angstrom).
    r_outer : float
        No repulsion beyond this distance (Angstrom); ``r_inner < r_outer``.

    Raises
    ------
    ValueError
        A distance that is not > 0, or ``r_inner >= r_outer``.
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

    def __init__(self, r_inner: float, r_outer: float):
        check_number("r_inner", r_inner, 0.0)
        check_number("r_outer", r_outer, 0.0)
        if not r_inner < r_outer:
            raise ValueError(f"ZBL needs r_inner < r_outer, got r_inner={r_inner}, r_outer={r_outer}")
        self.r_inner = float(r_inner)
        self.r_outer = float(r_outer)

    def get_params(self, deep: bool = True) -> dict:
        """Constructor arguments, so that ``ZBL(**zbl.get_params())`` is a copy.

        Parameters
        ----------
        deep : bool, default=True
            Ignored: a ``ZBL`` holds no nested estimators (scikit-learn's signature).

        Returns
        -------
        dict
            ``r_inner`` and ``r_outer`` (Angstrom), as floats.

        Examples
        --------
        >>> ZBL(r_inner=1.0, r_outer=1.5).get_params()
        {'r_inner': 1.0, 'r_outer': 1.5}
        """
        return {"r_inner": self.r_inner, "r_outer": self.r_outer}

    def __repr__(self) -> str:
        return f"ZBL(r_inner={self.r_inner}, r_outer={self.r_outer})"

    @classmethod
    def below_data(cls, frames: Sequence[Atoms], fraction: float = 0.8, width: float = 0.5) -> "ZBL":
        """Switched off below ``fraction`` of the shortest distance in ``frames``.

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
        return cls.below_distance(min(shortest_distance(atoms, k) for k, atoms in enumerate(frames)), fraction, width)

    @classmethod
    def below_distance(cls, shortest: float, fraction: float = 0.8, width: float = 0.5) -> "ZBL":
        """Switched off below ``fraction`` of the distance ``shortest`` (Angstrom).

        Parameters
        ----------
        shortest : float
            The shortest interatomic distance of the training data (Angstrom).
        fraction : float, default=0.8
            ``r_outer = fraction * shortest``.
        width : float, default=0.5
            ``r_inner = r_outer - width`` (Angstrom), at least ``r_outer / 2``.

        Returns
        -------
        ZBL

        Raises
        ------
        ValueError
            ``shortest`` is not finite (no pair within the cutoff in the data).

        Examples
        --------
        >>> ZBL.below_distance(2.0)
        ZBL(r_inner=1.1, r_outer=1.6)
        """
        if not np.isfinite(shortest):
            raise ValueError("no pair of atoms within the model's cutoff (at least 4 A) in the training structures: "
                             "no scale for a ZBL core")
        r_outer = fraction * shortest
        return cls(r_inner=max(r_outer - width, r_outer / 2), r_outer=r_outer)

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
        pairs = neighbor_pairs(atoms, self.r_outer, index)
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
        screening = 0.46850 / (z_i**0.23 + z_j**0.23)
        x = distance / screening
        phi = sum(c * np.exp(-d * x) for c, d in _PHI)
        dphi = sum(-c * d * np.exp(-d * x) for c, d in _PHI) / screening
        prefactor = COULOMB * z_i * z_j
        bare = prefactor * phi / distance
        dbare = prefactor * (dphi / distance - phi / distance**2)
        t = np.clip((distance - self.r_inner) / (self.r_outer - self.r_inner), 0.0, 1.0)
        switch = 0.5 * (1 + np.cos(np.pi * t))
        inside = (distance > self.r_inner) & (distance < self.r_outer)
        dswitch = np.where(inside, -0.5 * np.pi * np.sin(np.pi * t) / (self.r_outer - self.r_inner), 0.0)
        return bare * switch, dbare * switch + bare * dswitch


#: Radius (A) within which the shortest distance of the data is looked for, at the least.
SHORTEST_DISTANCE_RADIUS = 4.0


def shortest_distance(atoms: Atoms, index: Optional[int] = None, cutoff: float = SHORTEST_DISTANCE_RADIUS) -> float:
    """Shortest interatomic distance (Angstrom) within ``cutoff`` (at least 4 A), ``inf`` if none."""
    pairs = neighbor_pairs(atoms, max(cutoff, SHORTEST_DISTANCE_RADIUS), index)
    distance = np.linalg.norm(pairs.vectors, axis=1)
    return float(distance.min()) if distance.size else np.inf
