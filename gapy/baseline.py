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
        """Constructor arguments."""
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
        """
        shortest = min(_shortest_distance(atoms, k) for k, atoms in enumerate(frames))
        if not np.isfinite(shortest):
            raise ValueError("no pair of atoms within 4 A in the training structures: no scale for a ZBL core")
        r_outer = fraction * shortest
        return cls(r_inner=max(r_outer - width, r_outer / 2), r_outer=r_outer)

    def compute(self, atoms: Atoms, index: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-atom energies (eV, shape (n_atoms,): half of each pair to each atom), forces
        (eV/A, shape (n_atoms, 3)) and virial ``-dE/d eps`` (eV, Voigt (6,)); the stress is
        ``-virial / volume``."""
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
        """Switched ZBL energy of each pair (eV) and its derivative in the distance (eV/A)."""
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


def _shortest_distance(atoms: Atoms, index: int) -> float:
    pairs = neighbor_pairs(atoms, 4.0, index)
    distance = np.linalg.norm(pairs.vectors, axis=1)
    return float(distance.min()) if distance.size else np.inf
